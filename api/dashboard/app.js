/* api/dashboard/app.js — the dashboard's views and router.
 *
 *   #/               overview: backend, devices and their memory, datasets,
 *                    running jobs and the queue (polled every 2 s)
 *   #/jobs?state=&type=&page=   the job table, filtered and paged (polled)
 *   #/jobs/<id>      one job: live curves of every metric series, progress
 *                    and ETA, event log, results, checkpoints, plan and spec,
 *                    cancel (fed by the job's event stream)
 *   #/submit         a job spec as JSON, the API's validation error shown at
 *                    the field it names
 *
 * Everything shown comes from the JSON API through TD.api and is put into
 * the page as text (TD.ui.h), never as markup. */
'use strict';

(function () {
  const api = TD.api, ui = TD.ui, h = ui.h;
  const JOB_STATES = ['queued', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled', 'interrupted'];
  const JOB_TYPES = ['train', 'eval', 'debug', 'infer'];
  const PAGE = 20;
  const JOINTS = ['wrist', 'thumb 1', 'thumb 2', 'thumb 3', 'thumb tip', 'index 1', 'index 2', 'index 3',
                  'index tip', 'middle 1', 'middle 2', 'middle 3', 'middle tip', 'ring 1', 'ring 2', 'ring 3',
                  'ring tip', 'little 1', 'little 2', 'little 3', 'little tip'];

  const enc = encodeURIComponent;
  const jobLink = function (id) { return h('a', { href: '#/jobs/' + enc(id), class: 'mono' }, id); };
  const section = function (title, id, extra) {
    const body = h('div', { class: 'section-body', id: id });
    return { el: h('section', { class: 'card' }, h('h2', null, title, extra || null), body), body: body };
  };
  const errorLine = function (e) {
    return h('p', { class: 'error' }, e.status ? 'HTTP ' + e.status + ' ' + e.code + ': ' + e.message : e.message);
  };

  /* ======================================================================= */
  /* overview                                                                */
  /* ======================================================================= */
  function overview(root) {
    const sDaemon = section('Daemon', 'daemon');
    const sDevices = section('Devices', 'devices');
    const sDatasets = section('Datasets', 'datasets');
    const sRunning = section('Running jobs', 'running');
    const sQueue = section('Queue', 'queue');
    root.append(h('div', { class: 'grid2' }, sDaemon.el, sDevices.el), sDatasets.el, sRunning.el, sQueue.el);

    async function tick() {
      const r = await Promise.allSettled([api.get('/v1/status'), api.get('/v1/datasets'),
                                          api.get('/v1/jobs?state=queued&limit=100')]);
      if (r[0].status === 'fulfilled') {
        const st = r[0].value;
        ui.fill(sDaemon.body, h('dl', { class: 'kv' },
          h('dt', null, 'version'), h('dd', { id: 'st-version' }, st.version),
          h('dt', null, 'backend'), h('dd', { id: 'st-backend' }, st.backend),
          h('dt', null, 'uptime'), h('dd', null, ui.duration(st.uptime_s)),
          h('dt', null, 'running'), h('dd', null, String((st.running || []).length)),
          h('dt', null, 'queued'), h('dd', { id: 'st-queue' }, String(st.queue_length)),
          st.stopping ? [h('dt', null, 'state'), h('dd', { class: 'warn' }, 'stopping')] : null));
        ui.fill(sDevices.body, (st.devices || []).map(function (d) {
          return h('div', { class: 'device', dataset: { index: d.index } },
            h('div', { class: 'device-head' }, h('strong', null, 'device ' + d.index), ' ', d.name,
              d.job ? [' · running ', jobLink(d.job)] : h('span', { class: 'muted' }, ' · idle')),
            ui.memBar(d.memory));
        }));
        renderRunning(st.running || []);
      } else {
        ui.fill(sDaemon.body, errorLine(r[0].reason));
      }
      if (r[1].status === 'fulfilled') renderDatasets(r[1].value.datasets || []);
      else ui.fill(sDatasets.body, errorLine(r[1].reason));
      if (r[2].status === 'fulfilled') renderQueue(r[2].value.jobs || []);
      else ui.fill(sQueue.body, errorLine(r[2].reason));
    }

    function renderDatasets(list) {
      if (!list.length) { ui.fill(sDatasets.body, h('p', { class: 'muted' }, 'No dataset loaded. POST /v1/datasets loads one.')); return; }
      const rows = list.map(function (d) {
        const src = d.source || {};
        const source = src.path ? src.path
          : src.synthetic ? 'synthetic ' + src.synthetic.samples + ' × ' + src.synthetic.image_size + 'px, seed ' + src.synthetic.seed
          : src.import ? 'import ' + (src.import.manifest || '') : '';
        const size = Array.isArray(d.image_size) ? d.image_size.join('×') : '–';
        const prog = d.state === 'loading'
          ? ui.bar(d.progress, (d.phase || 'loading') + ' ' + Math.round(100 * (d.progress || 0)) + '%')
          : d.state === 'ready' ? ui.bar(1, 'loaded ' + ui.time(d.loaded_at)) : ui.bar(d.progress || 0, d.phase || '');
        return h('tr', { dataset: { name: d.name, state: d.state } },
          h('td', { class: 'mono name' }, d.name),
          h('td', null, ui.badge(d.state)),
          h('td', { class: 'num' }, d.samples === null || d.samples === undefined ? '–' : String(d.samples)),
          h('td', { class: 'num' }, size),
          h('td', { class: 'num' }, ui.bytes(d.bytes)),
          h('td', { class: 'num' }, d.gb_per_s ? ui.num(d.gb_per_s, 3) + ' GB/s' : '–'),
          h('td', null, prog),
          h('td', { class: 'source' }, source,
            d.masked_joints ? h('div', { class: 'muted' }, d.masked_joints + ' joints masked (non-finite labels)') : null,
            d.error ? h('div', { class: 'error' }, d.error) : null));
      });
      ui.fill(sDatasets.body, ui.table(['name', 'state', 'samples', 'image', 'size', 'load rate', 'progress', 'source'],
                                       rows, { id: 'datasets-table', class: 'wide' }));
    }

    function renderRunning(list) {
      if (!list.length) { ui.fill(sRunning.body, h('p', { class: 'muted' }, 'Nothing running.')); return; }
      ui.fill(sRunning.body, ui.table(['job', 'type', 'dataset', 'device', 'progress'], list.map(function (j) {
        return h('tr', { dataset: { id: j.id } }, h('td', null, jobLink(j.id), j.cancelling ? h('span', { class: 'warn' }, ' cancelling') : null),
          h('td', null, j.type), h('td', { class: 'mono' }, j.dataset), h('td', { class: 'num' }, String(j.device)),
          h('td', { class: 'progress-cell' }, ui.jobProgress(j.progress, 'running')));
      }), { id: 'running-table', class: 'wide' }));
    }

    function renderQueue(list) {
      if (!list.length) { ui.fill(sQueue.body, h('p', { class: 'muted' }, 'The queue is empty.')); return; }
      list = list.slice().sort(function (a, b) { return (b.priority - a.priority) || (a.id < b.id ? -1 : 1); });
      ui.fill(sQueue.body, ui.table(['#', 'job', 'type', 'dataset', 'priority', 'submitted', 'submission id'], list.map(function (j, i) {
        return h('tr', { dataset: { id: j.id } }, h('td', { class: 'num' }, String(i + 1)), h('td', null, jobLink(j.id)),
          h('td', null, j.type), h('td', { class: 'mono' }, j.dataset), h('td', { class: 'num' }, String(j.priority)),
          h('td', null, ui.time(j.created_at)), h('td', { class: 'mono' }, j.submission_id || ''));
      }), { id: 'queue-table', class: 'wide' }));
    }

    const p = ui.poll(tick, 2000);
    return function () { p.stop(); };
  }

  /* ======================================================================= */
  /* jobs table                                                              */
  /* ======================================================================= */
  function jobs(root, q) {
    const state = JOB_STATES.indexOf(q.get('state')) >= 0 ? q.get('state') : '';
    const type = JOB_TYPES.indexOf(q.get('type')) >= 0 ? q.get('type') : '';
    const page = Math.max(0, parseInt(q.get('page') || '0', 10) || 0);
    const go = function (s, t, pg) {
      const p = new URLSearchParams();
      if (s) p.set('state', s);
      if (t) p.set('type', t);
      if (pg) p.set('page', String(pg));
      const qs = p.toString();
      location.hash = '#/jobs' + (qs ? '?' + qs : '');
    };
    const select = function (id, label, values, cur) {
      return h('label', null, label + ' ',
        h('select', { id: id }, h('option', { value: '' }, 'all'),
          values.map(function (v) { const o = h('option', { value: v }, v); if (v === cur) o.selected = true; return o; })));
    };
    const filters = h('form', { class: 'filters', id: 'job-filters' },
      select('f-state', 'state', JOB_STATES, state), select('f-type', 'type', JOB_TYPES, type));
    filters.addEventListener('change', function () {
      go(filters.querySelector('#f-state').value, filters.querySelector('#f-type').value, 0);
    });
    filters.addEventListener('submit', function (e) { e.preventDefault(); });
    const prev = h('button', { type: 'button', id: 'page-prev', onclick: function () { go(state, type, page - 1); } }, '‹ newer');
    const next = h('button', { type: 'button', id: 'page-next', onclick: function () { go(state, type, page + 1); } }, 'older ›');
    const info = h('span', { id: 'page-info', class: 'muted' });
    const body = h('div', { id: 'jobs' });
    root.append(h('section', { class: 'card' }, h('h2', null, 'Jobs'), filters, body,
                  h('div', { class: 'pager' }, prev, info, next)));

    async function tick() {
      const p = new URLSearchParams({ limit: String(PAGE), offset: String(page * PAGE) });
      if (state) p.set('state', state);
      if (type) p.set('type', type);
      let r;
      try { r = await api.get('/v1/jobs?' + p.toString()); } catch (e) { ui.fill(body, errorLine(e)); throw e; }
      const list = r.jobs || [], total = r.total || 0;
      prev.disabled = page <= 0;
      next.disabled = (page + 1) * PAGE >= total;
      info.textContent = total ? (page * PAGE + 1) + '–' + (page * PAGE + list.length) + ' of ' + total : '';
      if (!list.length) { ui.fill(body, h('p', { class: 'muted' }, 'No jobs' + (state || type ? ' match the filter.' : ' yet.'))); return; }
      ui.fill(body, ui.table(['job', 'type', 'dataset', 'state', 'progress', 'priority', 'submitted', 'submission id'], list.map(function (j) {
        return h('tr', { dataset: { id: j.id, state: j.state, type: j.type } },
          h('td', null, jobLink(j.id)), h('td', null, j.type), h('td', { class: 'mono' }, j.dataset),
          h('td', null, ui.badge(j.state)),
          h('td', { class: 'progress-cell' }, j.type === 'train' || j.state === 'running' ? ui.jobProgress(j.progress, j.state) : ''),
          h('td', { class: 'num' }, String(j.priority)), h('td', null, ui.time(j.created_at)),
          h('td', { class: 'mono sub' }, j.submission_id || ''));
      }), { id: 'jobs-table', class: 'wide' }));
    }
    const pl = ui.poll(tick, 2000);
    return function () { pl.stop(); };
  }

  /* ======================================================================= */
  /* one job                                                                 */
  /* ======================================================================= */
  const GROUPS = [
    { key: 'loss', title: 'Loss', test: /^loss/ },
    { key: 'val_mpjpe', title: 'Validation MPJPE (mm)', test: /^val_.*mpjpe/ },
    { key: 'lr', title: 'Learning rate', test: /^lr/, logY: true },
    { key: 'grad_norm', title: 'Gradient norm', test: /grad_norm/ },
    { key: 'val_auc', title: 'Validation AUC 0–50 mm', test: /^val_auc/ },
  ];
  function groupOf(name) {
    for (let i = 0; i < GROUPS.length; i++) if (GROUPS[i].test.test(name)) return { key: GROUPS[i].key, rank: i, g: GROUPS[i] };
    return { key: name.replace(/[^A-Za-z0-9_-]/g, '_'), rank: GROUPS.length, g: { title: name } };
  }

  function job(root, q, id) {
    let rec = null, closed = false, ckTimer = null, stream = null;
    const cleanups = [];
    const head = h('div', { class: 'job-head' });
    const title = h('h1', null, 'Job ', h('span', { class: 'mono' }, id), ' ');
    const stateEl = h('span', { id: 'job-state' });
    const cancelBtn = h('button', { type: 'button', id: 'cancel-btn', class: 'danger', hidden: true }, 'Cancel job');
    const streamEl = h('span', { id: 'stream-state', class: 'stream', dataset: { state: 'connecting' } }, 'connecting…');
    const msg = h('p', { id: 'job-msg', class: 'error', role: 'alert' });
    const progEl = h('div', { id: 'job-progress' });
    const facts = h('dl', { class: 'kv wide', id: 'job-facts' });
    const errEl = h('pre', { id: 'job-error', class: 'error-box', hidden: true });
    head.append(h('div', { class: 'title-row' }, title, stateEl, h('span', { class: 'spacer' }), streamEl, cancelBtn), msg, progEl, errEl, facts);
    const charts = h('div', { id: 'charts', class: 'charts' }, h('p', { class: 'muted placeholder' }, 'No metric yet.'));
    /* hidden until a series has two points (an eval job's metrics are single values, shown as results) */
    const curves = h('section', { class: 'card', id: 'curves' }, h('h2', null, 'Curves'), charts);
    const sResult = section('Results', 'result');
    const sCk = section('Checkpoints', 'checkpoints');
    const logList = h('ol', { id: 'event-log', class: 'log' });
    const logCount = h('span', { class: 'muted', id: 'event-count' });
    const sPlan = section('Dtype plan and spec', 'plan');
    const root2 = h('div', { id: 'job', dataset: { id: id, state: '', lastEventId: '0' } },
      h('section', { class: 'card' }, head),
      curves,
      sResult.el, sCk.el,
      h('section', { class: 'card' }, h('h2', null, 'Event log ', logCount), logList),
      sPlan.el);
    sResult.el.hidden = true;
    root.append(root2);
    const curvesInit = function () { if (rec && rec.type !== 'train' && !charts.querySelector('.chart-card')) curves.hidden = true; };

    /* ---- the record --------------------------------------------------- */
    function setState(st) {
      root2.dataset.state = st;
      ui.fill(stateEl, ui.badge(st));
      cancelBtn.hidden = !(st === 'queued' || st === 'running');
    }
    function renderProgress(pr, st) {
      if (!rec) return;
      ui.fill(progEl, rec.type === 'train' || st === 'running' || (pr && pr.step) ? ui.jobProgress(pr, st) : null);
    }
    function renderRecord() {
      const j = rec;
      setState(j.state);
      renderProgress(j.progress, j.state);
      const kv = [['type', j.type], ['dataset', j.dataset], ['submission id', j.submission_id], ['priority', j.priority],
                  ['device', j.device], ['submitted', ui.time(j.created_at)], ['started', ui.time(j.started_at)],
                  ['finished', ui.time(j.finished_at)], ['resumed from', j.resumed_from || j.resume_checkpoint]];
      ui.fill(facts, kv.filter(function (x) { return x[1] !== null && x[1] !== undefined && x[1] !== ''; }).map(function (x) {
        return [h('dt', null, x[0]), h('dd', { class: x[0] === 'submission id' ? 'mono sub' : null }, String(x[1]))];
      }));
      errEl.hidden = !j.error;
      errEl.textContent = j.error ? (typeof j.error === 'string' ? j.error : JSON.stringify(j.error, null, 2)) : '';
      const plan = j.plan || {};
      ui.fill(sPlan.body, h('div', { class: 'grid2' },
        h('div', null, h('h3', null, 'Dtype plan'), ui.table(['', 'dtype'], Object.keys(plan).map(function (k) {
          return h('tr', null, h('td', null, k.replace(/_/g, ' ')), h('td', { class: 'mono' }, plan[k] === null ? '–' : String(plan[k])));
        }), { id: 'plan-table' })),
        h('div', null, h('h3', null, 'Spec'), h('pre', { id: 'spec', class: 'code' }, JSON.stringify(j.spec, null, 2)))));
      if (j.result) renderResult(j, j.result);
    }
    async function loadRecord() {
      try {
        rec = await api.get('/v1/jobs/' + enc(id));
        msg.textContent = '';
        curvesInit();
        renderRecord();
      } catch (e) {
        if (e.status === 404) { msg.textContent = 'No job ' + id + '.'; closed = true; if (stream) stream.close(); }
        else if (e.status !== 401) msg.textContent = e.message;
        throw e;
      }
    }

    /* ---- cancel ------------------------------------------------------- */
    let armed = null;
    cancelBtn.addEventListener('click', async function () {
      if (!armed) {
        cancelBtn.textContent = 'Click again to cancel';
        cancelBtn.classList.add('armed');
        armed = setTimeout(function () { armed = null; cancelBtn.textContent = 'Cancel job'; cancelBtn.classList.remove('armed'); }, 4000);
        return;
      }
      clearTimeout(armed); armed = null;
      cancelBtn.disabled = true;
      cancelBtn.textContent = 'Cancelling…';
      try {
        const j = await api.post('/v1/jobs/' + enc(id) + '/cancel');
        if (j && j.state) setState(j.state);
      } catch (e) {
        msg.textContent = 'cancel: ' + e.message;
      } finally {
        cancelBtn.disabled = false;
        cancelBtn.textContent = 'Cancel job';
        cancelBtn.classList.remove('armed');
      }
    });

    /* ---- curves ------------------------------------------------------- */
    const series = new Map();     /* name -> {name, points, chart} */
    const chartCards = new Map(); /* group key -> {card, chart, series[], rank} */
    const dirty = new Set();
    let flushTimer = null;

    function chartCard(name) {
      const g = groupOf(name);
      let c = chartCards.get(g.key);
      if (c) return c;
      const canvas = h('canvas', { 'aria-label': g.g.title, role: 'img' });
      const logBox = h('input', { type: 'checkbox' });
      logBox.checked = !!g.g.logY;
      const card = h('div', { class: 'chart-card', id: 'chart-' + g.key, dataset: { chart: g.key, points: 0, series: '', rank: g.rank } },
        h('div', { class: 'chart-head' }, h('h3', null, g.g.title), h('label', { class: 'muted small' }, logBox, ' log')),
        h('div', { class: 'chart-box' }, canvas));
      const ph = charts.querySelector('.placeholder');
      if (ph) ph.remove();
      /* keep the cards in group order */
      let before = null;
      for (const other of charts.children) if (Number(other.dataset.rank) > g.rank) { before = other; break; }
      charts.insertBefore(card, before);
      c = { card: card, chart: ui.chartsAvailable() ? ui.lineChart(canvas, { logY: g.g.logY }) : null, series: [], rank: g.rank };
      logBox.addEventListener('change', function () {
        if (!c.chart) return;
        c.chart.options.scales.y.type = logBox.checked ? 'logarithmic' : 'linear';
        c.chart.update('none');
      });
      chartCards.set(g.key, c);
      return c;
    }

    function addPoint(name, step, value) {
      if (typeof step !== 'number' || typeof value !== 'number' || !isFinite(value)) return;
      let s = series.get(name);
      if (!s) {
        const c = chartCard(name);
        s = { name: name, points: [], card: c };
        series.set(name, s);
        c.series.push(s);
        if (c.chart) c.chart.data.datasets.push(ui.datasetStyle(c.series.length - 1, name));
      }
      const pts = s.points;
      if (pts.length && step <= pts[pts.length - 1].x) {
        /* a resumed run repeats the steps after its checkpoint: the new values replace them */
        let i = pts.length;
        while (i > 0 && pts[i - 1].x >= step) i--;
        pts.length = i;
      }
      pts.push({ x: step, y: value });
      dirty.add(s.card);
      if (!flushTimer) flushTimer = setTimeout(flush, 250);
    }

    function flush() {
      flushTimer = null;
      for (const c of dirty) {
        let n = 0;
        c.series.forEach(function (s, i) {
          n += s.points.length;
          if (s.points.length > 1) curves.hidden = false;
          if (!c.chart) return;
          const ds = c.chart.data.datasets[i];
          ds.data = s.points;
          ds.pointRadius = s.points.length < 40 ? 2.5 : 0;   /* sparse series (validation) show their points */
        });
        if (c.chart) {
          /* a train job's curves span its whole run from the start */
          const total = rec && ((rec.progress && rec.progress.total_steps) || (rec.spec && rec.spec.steps));
          if (typeof total === 'number' && total > 0) c.chart.options.scales.x.suggestedMax = total;
          c.chart.update('none');
        }
        c.card.dataset.points = String(n);
        c.card.dataset.lastStep = String(Math.max.apply(null, c.series.map(function (s) {
          return s.points.length ? s.points[s.points.length - 1].x : 0;
        })));
        c.card.dataset.series = c.series.map(function (s) { return s.name; }).join(',');
      }
      dirty.clear();
    }

    /* ---- the event stream --------------------------------------------- */
    let nEvents = 0;
    function logEvent(ev) {
      const d = ev.data || {};
      let text;
      if (ev.type === 'state') text = (d.from ? d.from + ' → ' : '') + d.state + (d.reason ? ' (' + d.reason + ')' : '') + (d.error ? ': ' + d.error : '');
      else if (ev.type === 'log') text = d.message !== undefined ? String(d.message) : JSON.stringify(d);
      else if (ev.type === 'checkpoint') {
        const m = d.metrics || {};
        text = 'checkpoint ' + d.id + ' at step ' + d.step + (typeof m.val_mpjpe === 'number' ? ' · val MPJPE ' + ui.fixed(m.val_mpjpe, 1) + ' mm' : '');
      } else text = JSON.stringify(d);
      const atEnd = logList.scrollTop + logList.clientHeight >= logList.scrollHeight - 8;
      const level = d.level === 'warning' || d.level === 'error' ? ' lvl-' + d.level : '';
      logList.append(h('li', { dataset: { id: ev.id, type: ev.type }, class: 'ev-' + ev.type.replace(/[^a-z]/g, '') + level },
        h('span', { class: 'ev-id mono' }, String(ev.id)), h('span', { class: 'ev-type' }, ev.type), h('span', { class: 'ev-text' }, text)));
      while (logList.childElementCount > 1000) logList.firstElementChild.remove();
      if (atEnd) logList.scrollTop = logList.scrollHeight;
    }

    function onEvent(ev) {
      nEvents++;
      root2.dataset.lastEventId = String(ev.id);
      const d = ev.data || {};
      switch (ev.type) {
      case 'metric':
        addPoint(String(d.name), d.step, d.value);
        break;
      case 'progress':
        renderProgress(d, root2.dataset.state || 'running');
        break;
      case 'state':
        setState(d.state);
        logEvent(ev);
        loadRecord().catch(function () {});
        refreshCheckpoints();
        break;
      case 'checkpoint':
        logEvent(ev);
        refreshCheckpoints();
        break;
      default:
        logEvent(ev);
      }
      logCount.textContent = nEvents + ' events (metrics and progress not listed)';
    }

    function setStream(s) {
      streamEl.dataset.state = s;
      streamEl.textContent = s === 'live' ? '● live' : s === 'reconnecting' ? '○ reconnecting…' : s === 'ended' ? 'stream ended' : s;
      if (s === 'live') loadRecord().catch(function () {});   /* after a reconnect: the record may have moved on */
    }

    /* ---- checkpoints --------------------------------------------------- */
    function refreshCheckpoints() {
      if (ckTimer) return;
      ckTimer = setTimeout(async function () {
        ckTimer = null;
        if (closed) return;
        let r;
        try { r = await api.get('/v1/checkpoints?job=' + enc(id)); } catch (e) { return; }
        const list = r.checkpoints || [];
        if (!list.length) { ui.fill(sCk.body, h('p', { class: 'muted' }, 'No checkpoint.')); return; }
        ui.fill(sCk.body, ui.table(['checkpoint', 'step', 'written', 'size', 'val MPJPE', 'files'], list.map(function (c) {
          const m = c.metrics || {};
          return h('tr', { dataset: { id: c.id } }, h('td', { class: 'mono' }, c.id), h('td', { class: 'num' }, String(c.step)),
            h('td', null, ui.time(c.created_at)), h('td', { class: 'num' }, ui.bytes(c.bytes)),
            h('td', { class: 'num' }, typeof m.val_mpjpe === 'number' ? ui.fixed(m.val_mpjpe, 1) + ' mm' : '–'),
            h('td', { class: 'files' }, (c.files || []).map(function (f) {
              const href = '/v1/checkpoints/' + enc(c.id) + '/files/' + enc(f.name);
              return h('a', { href: href, download: f.name, class: 'dl', title: f.sha256 ? 'sha256 ' + f.sha256 : null,
                              onclick: function (e) {
                                if (!api.token()) return;          /* no token: the plain link works */
                                e.preventDefault();
                                api.download(href, f.name).catch(function (err) { msg.textContent = err.message; });
                              } }, f.name + ' (' + ui.bytes(f.bytes) + ')');
            })));
        }), { id: 'ckpt-table', class: 'wide' }));
      }, 300);
    }

    /* ---- results ------------------------------------------------------- */
    let resultShown = null;
    function renderResult(j, res) {
      const key = j.state + ':' + JSON.stringify(res).length;
      if (resultShown === key) return;
      resultShown = key;
      sResult.el.hidden = false;
      const ev = res && typeof res.mpjpe_mm === 'number' ? res : res && res.val && typeof res.val.mpjpe_mm === 'number' ? res.val : null;
      const parts = [];
      if (j.type === 'train') {
        parts.push(h('dl', { class: 'kv wide' },
          h('dt', null, 'final loss'), h('dd', null, ui.num(res.final_loss, 4)),
          h('dt', null, 'best val MPJPE'), h('dd', null, typeof res.best_val_mpjpe === 'number' ? ui.fixed(res.best_val_mpjpe, 2) + ' mm (step ' + res.best_step + ')' : '–'),
          h('dt', null, 'steps'), h('dd', null, res.step + ' / ' + res.total_steps + (res.stopped ? ' (stopped)' : '')),
          h('dt', null, 'images/s'), h('dd', null, ui.num(res.images_per_s, 4)),
          h('dt', null, 'wall time'), h('dd', null, ui.duration(res.wall_s))));
      }
      if (ev) parts.push(evalBlock(ev, j.type === 'train' ? 'Validation split' : null));
      if (j.type === 'debug' && res) parts.push(debugBlock(res));
      parts.push(h('details', { class: 'raw' }, h('summary', null, 'result document (JSON)'),
                   h('pre', { class: 'code', id: 'result-json' }, JSON.stringify(res, null, 2))));
      if (!ev && j.type !== 'train' && j.type !== 'debug') parts[parts.length - 1].open = true;
      ui.fill(sResult.body, parts);
    }

    function evalBlock(r, caption) {
      const tiles = h('div', { class: 'tiles' },
        tile('MPJPE', ui.fixed(r.mpjpe_mm, 2) + ' mm', 'result-mpjpe'),
        tile('PA-MPJPE', ui.fixed(r.pa_mpjpe_mm, 2) + ' mm', 'result-pa-mpjpe'),
        tile('AUC 0–50 mm', ui.fixed(r.auc_0_50mm, 3), 'result-auc'),
        tile('mean-predictor floor', ui.fixed(r.mean_predictor_mpjpe_mm, 2) + ' mm', 'result-floor',
             typeof r.mpjpe_mm === 'number' && r.mean_predictor_mpjpe_mm ? Math.round(100 * r.mpjpe_mm / r.mean_predictor_mpjpe_mm) + ' % of the floor' : null),
        tile('samples', String(r.samples) + (r.samples_with_hand !== undefined ? ' (' + r.samples_with_hand + ' with a hand)' : ''), 'result-samples',
             r.valid_joints !== undefined ? r.valid_joints + ' valid joints' : null));
      const pckCanvas = h('canvas', { role: 'img', 'aria-label': 'PCK curve' });
      const pjCanvas = h('canvas', { role: 'img', 'aria-label': 'per-joint MPJPE' });
      const thr = r.pck_thresholds_mm || Object.keys(r.pck || {}).map(Number).sort(function (a, b) { return a - b; });
      const pck = thr.map(function (t) { return { x: t, y: 100 * ((r.pck || {})[String(t)] || 0) }; });
      const pj = r.per_joint_mpjpe_mm || [];
      const block = h('div', { class: 'eval' }, caption ? h('h3', null, caption) : null, tiles,
        h('div', { class: 'grid2' },
          h('div', { class: 'chart-card', id: 'chart-pck', dataset: { points: pck.length } },
            h('div', { class: 'chart-head' }, h('h3', null, 'PCK (% of joints within the threshold)')), h('div', { class: 'chart-box' }, pckCanvas)),
          h('div', { class: 'chart-card', id: 'chart-per-joint', dataset: { points: pj.length } },
            h('div', { class: 'chart-head' }, h('h3', null, 'Per-joint MPJPE (mm)')), h('div', { class: 'chart-box' }, pjCanvas))));
      if (ui.chartsAvailable()) {
        requestAnimationFrame(function () {
          if (closed) return;
          cleanups.push(chartDestroyer(new window.Chart(pckCanvas, {
            type: 'line',
            data: { datasets: [{ label: 'PCK', data: pck, borderColor: ui.PALETTE[0], backgroundColor: ui.PALETTE[0], pointRadius: 3 }] },
            options: { animation: false, parsing: false, responsive: true, maintainAspectRatio: false,
                       plugins: { legend: { display: false } },
                       scales: { x: { type: 'linear', title: { display: true, text: 'threshold (mm)' } },
                                 y: { min: 0, max: 100, title: { display: true, text: '%' } } } },
          })));
          const floor = r.mean_predictor_mpjpe_mm;
          const dsets = [{ type: 'bar', label: 'MPJPE per joint', data: pj, backgroundColor: pj.map(function (_, i) { return i && i % 4 === 0 ? ui.PALETTE[1] : ui.PALETTE[0]; }) }];
          if (typeof floor === 'number') dsets.push({ type: 'line', label: 'mean-predictor floor', data: pj.map(function () { return floor; }), borderColor: ui.PALETTE[7], borderDash: [6, 4], pointRadius: 0 });
          cleanups.push(chartDestroyer(new window.Chart(pjCanvas, {
            type: 'bar',
            data: { labels: pj.map(function (_, i) { return JOINTS[i] || String(i); }), datasets: dsets },
            options: { animation: false, responsive: true, maintainAspectRatio: false,
                       plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
                       scales: { x: { ticks: { autoSkip: false, maxRotation: 60, minRotation: 60, font: { size: 10 } } },
                                 y: { beginAtZero: true, title: { display: true, text: 'mm' } } } },
          })));
        });
      }
      return block;
    }
    function debugBlock(r) {
      const pd = r.prediction_diversity || {};
      const acts = r.activations || [];
      const nonfinite = acts.reduce(function (a, x) { return a + (x.nan || 0) + (x.inf || 0); }, 0);
      const count = function (x) { return Array.isArray(x) ? x.length : typeof x === 'number' ? x : 0; };
      const tiles = h('div', { class: 'tiles' },
        tile('loss', ui.num(r.loss, 4), 'debug-loss'),
        tile('total grad norm', ui.num(r.grad_norm_total, 4), 'debug-grad'),
        tile('prediction diversity', ui.fixed(pd.std_mm, 1) + ' mm', 'debug-diversity',
             (pd.flag || '') + (typeof pd.target_std_mm === 'number' ? ' · labels ' + ui.fixed(pd.target_std_mm, 1) + ' mm' : '')),
        tile('NaN/Inf activations', String(nonfinite), 'debug-nonfinite'),
        tile('vanishing / exploding tensors', count(r.tensors_vanishing) + ' / ' + count(r.tensors_exploding), 'debug-flags'));
      const rows = acts.map(function (a) {
        return h('tr', null, h('td', { class: 'mono' }, a.name), h('td', { class: 'num' }, ui.num(a.mean)), h('td', { class: 'num' }, ui.num(a.std)),
          h('td', { class: 'num' }, ui.num(a.min)), h('td', { class: 'num' }, ui.num(a.max)), h('td', { class: 'num' }, String(a.nan)),
          h('td', { class: 'num' }, String(a.inf)), h('td', { class: 'num' }, ui.fixed(a.zero_fraction, 3)));
      });
      return h('div', { class: 'debug' }, tiles, h('h3', null, 'Activations (fp32)'),
               ui.table(['tensor', 'mean', 'std', 'min', 'max', 'NaN', 'Inf', 'zeros'], rows, { id: 'debug-activations', class: 'wide' }));
    }
    function tile(label, value, tid, sub) {
      return h('div', { class: 'tile', id: tid }, h('div', { class: 'tile-label' }, label), h('div', { class: 'tile-value' }, value),
               sub ? h('div', { class: 'tile-sub muted' }, sub) : null);
    }
    function chartDestroyer(c) { return function () { c.destroy(); }; }

    /* ---- start --------------------------------------------------------- */
    loadRecord().then(function () {
      if (closed) return;
      refreshCheckpoints();
      stream = api.stream(id, { onEvent: onEvent, onStatus: setStream });
    }).catch(function (e) {
      if (e.status === 401 || e.status === 0) {
        /* no token yet or no daemon: the stream retries by itself */
        if (!closed && !stream) stream = api.stream(id, { onEvent: onEvent, onStatus: setStream });
      }
    });

    return function () {
      closed = true;
      if (stream) stream.close();
      clearTimeout(flushTimer); clearTimeout(ckTimer); clearTimeout(armed);
      for (const c of chartCards.values()) if (c.chart) c.chart.destroy();
      for (const f of cleanups) f();
    };
  }

  /* ======================================================================= */
  /* submit                                                                  */
  /* ======================================================================= */
  function submit(root) {
    const ta = h('textarea', { id: 'spec-input', spellcheck: 'false', rows: 22, 'aria-describedby': 'submit-error' });
    const err = h('p', { id: 'submit-error', class: 'error', role: 'alert' });
    const outlineEl = h('div', { id: 'spec-outline' });
    const btn = h('button', { type: 'submit', id: 'submit-btn' }, 'Submit job');
    const form = h('form', { id: 'submit-form' }, ta, h('div', { class: 'actions' }, btn,
      h('span', { class: 'muted' }, 'POST /v1/jobs — the daemon validates the spec; unknown fields are refused.')));
    let ctx = { dataset: 'demo', checkpoint: 'c-000001' };
    const templates = {
      train: function () { return { type: 'train', dataset: ctx.dataset, model: { backbone: 'dinov2-tiny', heads: ['hand'] },
                                    batch_size: 32, steps: 300, eval_every: 100, checkpoint_every: 100,
                                    optim: { lr: { backbone: 5e-4, heads: 2e-3 }, warmup_steps: 20 } }; },
      eval: function () { return { type: 'eval', dataset: ctx.dataset, checkpoint: ctx.checkpoint, batch_size: 64 }; },
      debug: function () { return { type: 'debug', dataset: ctx.dataset, checkpoint: ctx.checkpoint, batches: 2 }; },
      infer: function () { return { type: 'infer', dataset: ctx.dataset, checkpoint: ctx.checkpoint, indices: [0, 1, 2], outputs: ['joints'] }; },
    };
    const tbar = h('div', { class: 'templates' }, 'template: ', Object.keys(templates).map(function (k) {
      return h('button', { type: 'button', class: 'link', dataset: { template: k }, onclick: function () { use(k); } }, k);
    }));
    let shown = '';   /* the template text as put in; replaced by a better one only while untouched */
    function use(k) { ta.value = shown = JSON.stringify(templates[k](), null, 2); clearError(); }
    function clearError() { err.textContent = ''; outlineEl.replaceChildren(); ta.removeAttribute('aria-invalid'); }
    root.append(h('section', { class: 'card' }, h('h1', null, 'Submit a job'),
      h('p', null, 'A job spec as JSON (SPEC §4). Start from a template, edit, submit; the job page opens when the daemon accepts it.'),
      tbar, form, err, outlineEl));
    use('train');
    (async function () {
      try {
        const ds = await api.get('/v1/datasets');
        const ready = (ds.datasets || []).filter(function (d) { return d.state === 'ready'; });
        if (ready.length) ctx.dataset = ready[0].name;
        const ck = await api.get('/v1/checkpoints');
        const l = ck.checkpoints || [];
        if (l.length) ctx.checkpoint = l[l.length - 1].id;
        if (ta.value === shown) use('train');
      } catch (e) { /* the template keeps its placeholders */ }
      form.dataset.ready = '1';
    })();

    /* Selects the text of the field path in the textarea (best effort). */
    function selectField(field) {
      const m = /([^.[\]]+)(?:\[\d+\])?$/.exec(field || '');
      if (!m) return;
      const i = ta.value.indexOf('"' + m[1] + '"');
      if (i >= 0) { ta.focus(); ta.setSelectionRange(i, i + m[1].length + 2); }
    }
    function selectLineCol(line, col) {
      const lines = ta.value.split('\n');
      let pos = 0;
      for (let i = 0; i < Math.min(line - 1, lines.length); i++) pos += lines[i].length + 1;
      pos += Math.max(0, col - 1);
      ta.focus();
      ta.setSelectionRange(pos, pos + 1);
    }

    form.addEventListener('submit', async function (e) {
      e.preventDefault();
      clearError();
      btn.disabled = true;
      try {
        const j = await api.post('/v1/jobs', ta.value);
        location.hash = '#/jobs/' + enc(j.id);
      } catch (ex) {
        ta.setAttribute('aria-invalid', 'true');
        err.textContent = (ex.status ? 'HTTP ' + ex.status + ' ' + ex.code : ex.code) + (ex.field ? ' at ' + ex.field : '') + ': ' + ex.message;
        err.dataset.code = ex.code || '';
        let spec;
        try { spec = JSON.parse(ta.value); } catch (pe) { spec = undefined; }
        if (spec !== undefined && (ex.field !== null || ex.status === 400 || ex.status === 422)) {
          outlineEl.append(h('h3', null, 'Your spec, with the error at its field'),
                           ui.outline(spec, ex.field !== null ? ex.field : '', ex.message));
          selectField(ex.field);
        } else {
          const m = /line (\d+), column (\d+)/.exec(ex.message || '');
          if (m) selectLineCol(Number(m[1]), Number(m[2]));
        }
      } finally {
        btn.disabled = false;
      }
    });
    return function () {};
  }

  /* ======================================================================= */
  /* router, connection state, token                                         */
  /* ======================================================================= */
  const view = document.getElementById('view');
  let unmount = null;

  function decodeOr(x) { try { return decodeURIComponent(x); } catch (e) { return x; } }

  function route() {
    if (unmount) { try { unmount(); } catch (e) { console.error(e); } unmount = null; }
    view.replaceChildren();
    const hash = location.hash || '#/';
    const qi = hash.indexOf('?');
    const path = qi >= 0 ? hash.slice(1, qi) : hash.slice(1);
    const q = new URLSearchParams(qi >= 0 ? hash.slice(qi + 1) : '');
    let m, nav = 'overview';
    if (path === '/' || path === '') unmount = overview(view);
    else if (path === '/jobs' || path === '/jobs/') { nav = 'jobs'; unmount = jobs(view, q); }
    else if ((m = /^\/jobs\/([^/]+)$/.exec(path))) { nav = 'jobs'; unmount = job(view, q, decodeOr(m[1])); }
    else if (path === '/submit') { nav = 'submit'; unmount = submit(view); }
    else { view.append(h('section', { class: 'card' }, h('p', null, 'Nothing here. '), h('a', { href: '#/' }, 'Overview'))); }
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.nav === nav);
    document.title = 'traind · ' + (m ? m[1] : nav);
  }

  const connEl = document.getElementById('conn');
  const CONN_TEXT = { live: '● connected', down: '○ traind unreachable — retrying', auth: 'token required', connecting: 'connecting…' };
  api.on('conn', function (s) {
    connEl.dataset.state = s;
    connEl.textContent = CONN_TEXT[s] || s;
  });

  const authBox = document.getElementById('auth');
  const authForm = document.getElementById('auth-form');
  const authInput = document.getElementById('auth-token');
  const authErr = document.getElementById('auth-error');
  const forget = document.getElementById('forget-token');
  api.on('auth', function (a) {
    if (!authBox.hidden) return;
    authErr.textContent = a.rejected ? 'The token was refused (HTTP 401).' : '';
    if (a.rejected) api.setToken('');
    authBox.hidden = false;
    authInput.value = '';
    authInput.focus();
  });
  authForm.addEventListener('submit', function (e) {
    e.preventDefault();
    const t = authInput.value.trim();
    if (!t) return;
    authInput.value = '';
    authBox.hidden = true;
    api.setToken(t);
    route();   /* start again with the token */
  });
  api.on('token', function (has) { forget.hidden = !has; });
  forget.hidden = !api.token();
  forget.addEventListener('click', function () { api.setToken(''); route(); });

  window.addEventListener('hashchange', route);
  route();
})();
