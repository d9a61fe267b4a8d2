/* api/dashboard/ui.js — the dashboard's building blocks (TD.ui): DOM
 * construction that only ever creates text nodes and attributes (never
 * markup from data: a job name holding "<script>" shows as text), number,
 * size and time formats, state badges, progress bars, the memory bar, the
 * Chart.js charts (Chart.js comes from Debian's libjs-chart.js, built into
 * traind) and the field-annotated outline of a rejected job spec. */
'use strict';

window.TD = window.TD || {};

TD.ui = (function () {
  /* h('a', {href: '#/x', class: 'c', dataset: {id: 1}, onclick: fn}, 'text', child...)
   * Strings become text nodes; null/false children are skipped. */
  function h(tag, props) {
    const el = document.createElement(tag);
    if (props) {
      for (const k of Object.keys(props)) {
        const v = props[k];
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'dataset') { for (const d of Object.keys(v)) el.dataset[d] = String(v[d]); }
        else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else if (k === 'value') el.value = v;
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (let i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }
  function append(el, c) {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) { for (const x of c) append(el, x); return; }
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  function fill(el) {
    el.replaceChildren();
    for (let i = 1; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }

  /* ---- formats ---------------------------------------------------------- */
  function num(x, digits) {
    if (typeof x !== 'number' || !isFinite(x)) return '–';
    if (digits === undefined) digits = 3;
    const a = Math.abs(x);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(2);
    if (Number.isInteger(x)) return String(x);
    return Number(x.toPrecision(digits + 1)).toString();
  }
  function fixed(x, d) {
    return typeof x === 'number' && isFinite(x) ? x.toFixed(d) : '–';
  }
  function bytes(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(n >= 100 ? 0 : 1)) + ' ' + u[i];
  }
  function duration(s) {
    if (typeof s !== 'number' || !isFinite(s) || s < 0) return '–';
    s = Math.round(s);
    const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
    const p = function (x) { return String(x).padStart(2, '0'); };
    return hh ? hh + ':' + p(mm) + ':' + p(ss) : mm + ':' + p(ss);
  }
  function time(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    const today = new Date();
    const t = d.toLocaleTimeString([], { hour12: false });
    return d.toDateString() === today.toDateString() ? t : d.toLocaleDateString() + ' ' + t;
  }

  /* ---- small widgets ---------------------------------------------------- */
  function badge(state) {
    return h('span', { class: 'badge state-' + String(state || 'unknown').replace(/[^a-z_]/g, ''),
                       dataset: { state: state || '' } }, state || '?');
  }

  /* A progress bar: fraction in [0,1] or null (unknown). */
  function bar(fraction, label) {
    const p = h('progress', { max: 1000 });
    if (typeof fraction === 'number' && isFinite(fraction)) p.value = Math.round(Math.max(0, Math.min(1, fraction)) * 1000);
    return h('span', { class: 'progress' }, p, label ? h('span', { class: 'progress-label' }, label) : null);
  }

  /* Progress of a job record or status entry: "120/300 · ep 3 · 812 img/s · ETA 0:09" */
  function jobProgress(pr, state) {
    pr = pr || {};
    const total = pr.total_steps, step = pr.step || 0;
    let frac = total ? step / total : null;
    if (state === 'succeeded') frac = 1;
    const parts = [];
    parts.push(total ? step + '/' + total : String(step));
    if (pr.epoch !== null && pr.epoch !== undefined) parts.push('ep ' + pr.epoch);
    if (typeof pr.images_per_s === 'number') parts.push(num(pr.images_per_s, 3) + ' img/s');
    if (typeof pr.eta_s === 'number' && (state === 'running' || state === undefined)) parts.push('ETA ' + duration(pr.eta_s));
    return bar(frac, parts.join(' · '));
  }

  /* Memory of a device: resident datasets / running job / other use / free. */
  function memBar(mem) {
    const total = mem && mem.total;
    if (!total) return h('span', { class: 'muted' }, 'memory unknown');
    const ds = mem.datasets || 0, job = mem.job || 0;
    const used = typeof mem.used === 'number' ? mem.used : ds + job;
    const other = Math.max(0, used - ds - job), free = Math.max(0, total - Math.max(used, ds + job));
    const segs = [['datasets', 'resident datasets', ds], ['job', 'running job', job],
                  ['other', 'other', other], ['free', 'free', free]];
    const barEl = h('div', { class: 'membar', role: 'img',
                             'aria-label': 'memory: ' + segs.map(function (s) { return s[1] + ' ' + bytes(s[2]); }).join(', ') });
    const legend = h('div', { class: 'legend' });
    for (const s of segs) {
      const seg = h('span', { class: 'seg seg-' + s[0], title: s[1] + ': ' + bytes(s[2]), dataset: { bytes: s[2] } });
      seg.style.width = (100 * s[2] / total).toFixed(3) + '%';
      barEl.append(seg);
      legend.append(h('span', { class: 'key' }, h('i', { class: 'swatch seg-' + s[0] }), s[1] + ' ' + bytes(s[2])));
    }
    legend.append(h('span', { class: 'key muted' }, 'total ' + bytes(total)));
    return h('div', { class: 'mem' }, barEl, legend);
  }

  function table(headers, rows, attrs) {
    return h('table', attrs || {},
      h('thead', null, h('tr', null, headers.map(function (x) { return h('th', null, x); }))),
      h('tbody', null, rows));
  }

  /* Polls fn every ms (after it settles) until stop(). */
  function poll(fn, ms) {
    let stopped = false, timer = null;
    async function tick() {
      if (stopped) return;
      try { await fn(); } catch (e) { if (!(e instanceof TD.api.ApiError)) console.error(e); }
      if (!stopped) timer = setTimeout(tick, ms);
    }
    tick();
    return {
      stop: function () { stopped = true; clearTimeout(timer); },
      now: function () { clearTimeout(timer); tick(); },
    };
  }

  /* ---- charts (Chart.js) -------------------------------------------------- */
  const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];

  function chartsAvailable() { return typeof window.Chart === 'function'; }

  /* A line chart of step -> value series, decimated by Chart.js when long.
   * opts: {logY, yTitle}. */
  function lineChart(canvas, opts) {
    return new window.Chart(canvas, {
      type: 'line',
      data: { datasets: [] },
      options: {
        animation: false,
        parsing: false,
        normalized: true,
        responsive: true,
        maintainAspectRatio: false,
        spanGaps: true,
        interaction: { mode: 'nearest', axis: 'x', intersect: false },
        elements: { point: { radius: 0, hitRadius: 4 }, line: { borderWidth: 1.6, tension: 0 } },
        plugins: {
          decimation: { enabled: true, algorithm: 'lttb', samples: 600, threshold: 1200 },
          legend: { position: 'bottom', labels: { boxWidth: 12, boxHeight: 2 } },
          tooltip: { callbacks: { title: function (items) { return items.length ? 'step ' + items[0].parsed.x : ''; } } },
        },
        scales: {
          x: { type: 'linear', title: { display: true, text: 'step' }, ticks: { maxTicksLimit: 8 } },
          y: { type: opts.logY ? 'logarithmic' : 'linear', title: { display: !!opts.yTitle, text: opts.yTitle || '' },
               ticks: { maxTicksLimit: 6, callback: axisTick } },
        },
      },
    });
  }

  /* y tick labels: short on a log axis too (1e-4, not 0.000100) */
  function axisTick(v) {
    if (typeof v !== 'number') return v;
    if (this.type === 'logarithmic') {
      const e = Math.floor(Math.log10(v)), m = v / Math.pow(10, e);
      if (Math.abs(m - 1) > 1e-6 && Math.abs(m - 2) > 1e-6 && Math.abs(m - 5) > 1e-6) return '';
      return Math.abs(e) >= 3 ? Math.round(m) + 'e' + e : String(Number(v.toPrecision(2)));
    }
    return num(v, 3);
  }

  function datasetStyle(i, name) {
    const c = PALETTE[i % PALETTE.length];
    const ds = { label: name, borderColor: c, backgroundColor: c, data: [] };
    if (/mean_predictor/.test(name)) ds.borderDash = [6, 4];
    return ds;
  }

  /* ---- the outline of a rejected spec ----------------------------------- */
  /* Renders value as a nested list whose <li data-field="a.b[2]"> carry the
   * API's field paths; the node of errField gets class field-error and the
   * message beside it. A field that is not in the spec (a missing one) is
   * added under its nearest parent, marked missing. */
  function outline(value, errField, errMsg) {
    const nodes = new Map();
    function node(key, v, path) {
      const li = h('li', { dataset: { field: path } });
      if (key !== null) li.append(h('span', { class: 'k' }, key), h('span', { class: 'p' }, ': '));
      if (v !== null && typeof v === 'object' && !(Array.isArray(v) && v.every(function (x) { return x === null || typeof x !== 'object'; }))) {
        const ul = h('ul');
        const arr = Array.isArray(v);
        for (const k of Object.keys(v)) {
          const p = arr ? path + '[' + k + ']' : (path ? path + '.' + k : k);
          ul.append(node(arr ? '[' + k + ']' : k, v[k], p));
        }
        li.append(h('span', { class: 'p' }, arr ? '[' : '{'), ul, h('span', { class: 'p' }, arr ? ']' : '}'));
      } else {
        li.append(h('span', { class: 'v' }, JSON.stringify(v)));
      }
      nodes.set(path, li);
      return li;
    }
    const root = h('ul', { class: 'outline' }, node(null, value, ''));
    const mark = function (li, field, missing) {
      li.classList.add('field-error');
      li.dataset.error = field;
      if (missing) li.classList.add('missing');
      li.append(h('span', { class: 'field-msg', role: 'alert' }, errMsg));
    };
    if (errField !== null && errField !== undefined) {
      if (nodes.has(errField)) {
        mark(nodes.get(errField), errField, false);
      } else {
        /* the nearest existing ancestor: "a.b[2].c" -> "a.b[2]" -> "a.b" -> "a" -> "" */
        let p = errField;
        while (p && !nodes.has(p)) p = p.replace(/(\.[^.[\]]*|\[[^\]]*\])$|^[^.[\]]*$/, '');
        const parent = nodes.get(p) || nodes.get('');
        const ul = parent.querySelector(':scope > ul');
        if (ul) {
          const rest = errField.slice(p ? p.length : 0).replace(/^\./, '');
          const li = h('li', { dataset: { field: errField } }, h('span', { class: 'k' }, rest),
                       h('span', { class: 'p' }, ': '), h('span', { class: 'v muted' }, '(missing)'));
          ul.append(li);
          mark(li, errField, true);
        } else {
          mark(parent, errField, false);
        }
      }
    }
    return root;
  }

  return {
    h: h, fill: fill, num: num, fixed: fixed, bytes: bytes, duration: duration, time: time,
    badge: badge, bar: bar, jobProgress: jobProgress, memBar: memBar, table: table, poll: poll,
    chartsAvailable: chartsAvailable, lineChart: lineChart, datasetStyle: datasetStyle,
    PALETTE: PALETTE, outline: outline,
  };
})();
