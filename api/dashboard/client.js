/* api/dashboard/client.js — the dashboard's HTTP client (TD.api): JSON
 * requests to the traind API, the bearer token, the connection state shown
 * in the header, and job event streams read through fetch().
 *
 * Token: asked for when a request gets 401, kept in sessionStorage (this tab
 * only) and sent as "Authorization: Bearer" on every request, event streams
 * included; it never goes into a URL. EventSource cannot send headers, so
 * the Server-Sent Events of /v1/jobs/{id}/events are parsed here from a
 * streamed fetch body; a dropped stream (network, daemon restart) is opened
 * again with Last-Event-ID = the last id seen, so no event is missed or seen
 * twice. A request body goes as application/json (the daemon refuses others);
 * a request without one (cancel) sends none and no Content-Type: the daemon
 * answers a body on a route that takes none with 413 on its headers. */
'use strict';

window.TD = window.TD || {};

TD.api = (function () {
  const TOKEN_KEY = 'traind.token';
  const FINAL = ['succeeded', 'failed', 'cancelled'];
  const listeners = { conn: [], auth: [], token: [] };
  let token = '';
  try { token = sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { token = ''; }
  let conn = 'connecting';

  function emit(kind, arg) {
    for (const fn of listeners[kind]) {
      try { fn(arg); } catch (e) { console.error(e); }
    }
  }
  function on(kind, fn) { listeners[kind].push(fn); }

  function setConn(state) {
    if (state === conn) return;
    conn = state;
    emit('conn', state);
  }

  function needAuth(rejected) {
    setConn('auth');
    emit('auth', { rejected: rejected });
  }

  function setToken(t) {
    token = t || '';
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: keep it in memory */ }
    emit('token', !!token);
  }

  class ApiError extends Error {
    constructor(status, code, message, field) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field || null;
    }
  }

  function headers(extra) {
    const h = Object.assign({}, extra);
    if (token) h.Authorization = 'Bearer ' + token;
    return h;
  }

  /* body: undefined (none: no body, no Content-Type), a string (sent as is:
   * the API validates it) or a value (JSON-encoded). Resolves with the parsed
   * JSON answer; rejects with an ApiError (status 0 when traind cannot be
   * reached). */
  async function request(method, path, body) {
    const init = {
      method: method,
      headers: headers({ Accept: 'application/json' }),
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
    }
    let resp, text;
    try {
      resp = await fetch(path, init);
      text = await resp.text();
    } catch (e) {
      setConn('down');
      throw new ApiError(0, 'unreachable', 'traind cannot be reached');
    }
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (resp.status === 401) {
      needAuth(!!token);
      throw new ApiError(401, 'unauthorized', 'a token is required');
    }
    setConn('live');
    if (!resp.ok) {
      const e = (data && data.error) || {};
      throw new ApiError(resp.status, e.code || 'http_' + resp.status,
                         e.message || ('HTTP ' + resp.status), e.field);
    }
    return data;
  }

  /* A file download that carries the token: fetched into a blob, then saved
   * under its name. Without a token a plain link does the same. */
  async function download(path, name) {
    let resp;
    try {
      resp = await fetch(path, { headers: headers({}), cache: 'no-store', credentials: 'omit' });
    } catch (e) {
      setConn('down');
      throw new ApiError(0, 'unreachable', 'traind cannot be reached');
    }
    if (resp.status === 401) { needAuth(!!token); throw new ApiError(401, 'unauthorized', 'a token is required'); }
    if (!resp.ok) throw new ApiError(resp.status, 'http_' + resp.status, 'download failed: HTTP ' + resp.status);
    const url = URL.createObjectURL(await resp.blob());
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
  }

  function sleep(ms, signal) {
    return new Promise(function (resolve) {
      const t = setTimeout(resolve, ms);
      if (signal) signal.addEventListener('abort', function () { clearTimeout(t); resolve(); });
    });
  }

  /* Follows a job's events until the job is final (succeeded, failed,
   * cancelled) or close() is called. handlers: onEvent({id, type, data}),
   * onStatus('live' | 'reconnecting' | 'ended'), onOpen(request number).
   * Returns { close(), lastId() }. */
  function stream(jobId, handlers) {
    const ctl = new AbortController();
    let lastId = 0, closed = false, finalSeen = false, opens = 0;
    const path = '/v1/jobs/' + encodeURIComponent(jobId) + '/events';
    const status = function (s) { if (handlers.onStatus) handlers.onStatus(s); };

    function dispatch(ev) {
      if (ev.id !== null) {
        const id = Number(ev.id);
        if (!(id > lastId)) return;       /* already seen (a resumed stream never repeats, but be sure) */
        lastId = id;
      }
      let data = null;
      try { data = JSON.parse(ev.data.join('\n')); } catch (e) { data = null; }
      if (ev.type === 'state' && data && FINAL.indexOf(data.state) >= 0) finalSeen = true;
      try { handlers.onEvent({ id: lastId, type: ev.type, data: data }); } catch (e) { console.error(e); }
    }

    async function readOnce() {
      const h = headers({ Accept: 'text/event-stream' });
      if (lastId > 0) h['Last-Event-ID'] = String(lastId);
      const resp = await fetch(path, { headers: h, cache: 'no-store', credentials: 'omit', signal: ctl.signal });
      if (resp.status === 401) { needAuth(!!token); return 'auth'; }
      if (resp.status === 404) { setConn('live'); return 'gone'; }
      if (!resp.ok || !resp.body) return 'retry';
      setConn('live');
      opens++;
      if (handlers.onOpen) handlers.onOpen(opens);
      status('live');
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      let ev = { id: null, type: 'message', data: [] };
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        buf += dec.decode(r.value, { stream: true });
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          let line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line === '') {
            if (ev.data.length) dispatch(ev);
            ev = { id: null, type: 'message', data: [] };
          } else if (line[0] !== ':') {
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            let value = c < 0 ? '' : line.slice(c + 1);
            if (value[0] === ' ') value = value.slice(1);
            if (field === 'id') ev.id = value;
            else if (field === 'event') ev.type = value;
            else if (field === 'data') ev.data.push(value);
          }
        }
      }
      return 'ended';
    }

    (async function run() {
      let delay = 500;
      while (!closed) {
        let how;
        const before = lastId;
        try {
          how = await readOnce();
        } catch (e) {
          if (closed) return;
          setConn('down');
          how = 'retry';
        }
        if (closed) return;
        if (finalSeen || how === 'gone') { status('ended'); return; }
        /* A stream that brought news is opened again at once; one that ends
         * without (the daemon stopping, an interrupted job waiting for a
         * restart) or cannot be opened is retried less and less often. */
        if (lastId > before) delay = 500;
        status('reconnecting');
        await sleep(delay, ctl.signal);
        delay = Math.min(delay * 2, 5000);
      }
    })();

    return {
      close: function () { closed = true; ctl.abort(); },
      lastId: function () { return lastId; },
    };
  }

  return {
    ApiError: ApiError,
    on: on,
    get: function (path) { return request('GET', path); },
    /* cancel takes no body (a body there is 413); POST /v1/jobs takes the spec */
    post: function (path, body) { return request('POST', path, body); },
    del: function (path) { return request('DELETE', path); },
    download: download,
    stream: stream,
    token: function () { return token; },
    setToken: setToken,
    conn: function () { return conn; },
    sleep: sleep,
    FINAL: FINAL,
  };
})();
