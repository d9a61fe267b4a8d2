#!/usr/bin/env python3
"""tests/integration/browser.py — headless Chromium driven over the DevTools
protocol, for the dashboard test (90_dashboard.sh). Standard library only:
Chromium is started with --remote-debugging-pipe, so the protocol's JSON
messages (NUL-terminated) go over two pipes (its fds 3 and 4) instead of a
websocket, and no port is opened.

It reads one command per line on stdin and answers one JSON line on stdout:

    open URL                 a fresh tab in a fresh browser context (its own
                             sessionStorage), navigated to URL; waits for load
    nav URL                  navigates the current tab
    eval JS                  the value of the expression (awaited if a promise)
    wait SECONDS JS          polls JS every 100 ms until truthy; {"ok": bool, "value": last}
    shot FILE [W H [view]]   PNG of the page at width W: its full height, or with
                             "view" the W x H viewport
    clear                    forgets the requests seen so far
    errors                   JS exceptions, console errors and CSP violations since
                             the last "errors"
    requests                 the HTTP requests of the tab since open (or clear): url,
                             method, status, its Authorization, Last-Event-ID and
                             Content-Type headers (or null), whether it had a body
    quit

Answers are {"ok": true, "value": …} or {"ok": false, "error": "…"}.
Environment: CHROMIUM (default: chromium, chromium-browser, google-chrome),
BROWSER_LOG (Chromium's own stderr, default /dev/null)."""
import base64
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time


class Browser:
    def __init__(self, profile):
        exe = os.environ.get("CHROMIUM") or next(
            (p for p in ("chromium", "chromium-browser", "google-chrome") if shutil.which(p)), None)
        if not exe:
            raise RuntimeError("no chromium found (apt-get install chromium)")
        cmd_r, self.cmd_w = os.pipe()     # we write commands, Chromium reads fd 3
        self.res_r, res_w = os.pipe()     # Chromium writes fd 4, we read

        def child():
            a = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 10)
            b = fcntl.fcntl(res_w, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [exe, "--headless", "--remote-debugging-pipe", "--user-data-dir=" + profile,
                "--no-first-run", "--no-default-browser-check", "--disable-gpu",
                "--disable-dev-shm-usage", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
                "--password-store=basic", "--use-mock-keychain", "--window-size=1280,900",
                "--disable-features=Translate,MediaRouter,OptimizationHints", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")
        log = open(os.environ.get("BROWSER_LOG", os.devnull), "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     preexec_fn=child, pass_fds=(3, 4))
        os.close(cmd_r)
        os.close(res_w)
        self.next_id = 0
        self.lock = threading.Lock()
        self.cv = threading.Condition(self.lock)
        self.replies = {}
        self.session = None
        self.problems = []       # exceptions, console errors, CSP violations
        self.requests = {}       # requestId -> record
        self.order = []
        self.dead = False
        threading.Thread(target=self._reader, daemon=True).start()

    # ---- protocol ---------------------------------------------------------
    def _reader(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.res_r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self.cv:
                    self.dead = True
                    self.cv.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                with self.cv:
                    if "id" in msg:
                        self.replies[msg["id"]] = msg
                        self.cv.notify_all()
                    else:
                        self._event(msg)

    def _event(self, m):
        method, p = m.get("method"), m.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.problems.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.problems.append("console.%s: %s" % (p.get("type"), " ".join(
                str(a.get("value", a.get("description", ""))) for a in p.get("args", []))))
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            if e.get("level") == "error" or e.get("source") == "security":
                self.problems.append("log[%s/%s]: %s %s" % (e.get("source"), e.get("level"), e.get("text"), e.get("url", "")))
        elif method == "Network.requestWillBeSent":
            r = p.get("request", {})
            hd = {k.lower(): v for k, v in r.get("headers", {}).items()}
            rec = self.requests.get(p["requestId"])
            if rec is None:
                rec = {"url": r.get("url"), "method": r.get("method"), "status": None}
                self.requests[p["requestId"]] = rec
                self.order.append(p["requestId"])
            rec["auth"] = hd.get("authorization")
            rec["last_event_id"] = hd.get("last-event-id")
            rec["has_body"] = bool(r.get("hasPostData"))
            rec["content_type"] = hd.get("content-type")
        elif method == "Network.requestWillBeSentExtraInfo":
            rec = self.requests.get(p["requestId"])
            hd = {k.lower(): v for k, v in p.get("headers", {}).items()}
            if rec is not None and "authorization" in hd:
                rec["auth"] = hd["authorization"]
        elif method == "Network.responseReceived":
            rec = self.requests.get(p["requestId"])
            if rec is not None:
                rec["status"] = p.get("response", {}).get("status")

    def send(self, method, params=None, session=True, timeout=60):
        with self.cv:
            self.next_id += 1
            mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        with self.cv:
            while mid not in self.replies:
                if self.dead:
                    raise RuntimeError("chromium exited")
                left = deadline - time.time()
                if left <= 0:
                    raise RuntimeError("no answer to %s within %ss" % (method, timeout))
                self.cv.wait(left)
            rep = self.replies.pop(mid)
        if "error" in rep:
            raise RuntimeError("%s: %s" % (method, rep["error"].get("message")))
        return rep.get("result", {})

    # ---- commands ---------------------------------------------------------
    def open(self, url):
        if self.session:
            self.send("Target.closeTarget", {"targetId": self.target}, session=False)
            self.session = None
        with self.lock:
            self.requests, self.order = {}, []
        ctx = self.send("Target.createBrowserContext", {}, session=False)["browserContextId"]
        self.target = self.send("Target.createTarget", {"url": "about:blank", "browserContextId": ctx},
                                session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": self.target, "flatten": True},
                                 session=False)["sessionId"]
        for dom in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            self.send(dom)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        return self.nav(url)

    def nav(self, url):
        self.send("Page.navigate", {"url": url})
        return self.wait(30, "document.readyState === 'complete'")

    def eval(self, expr):
        r = self.send("Runtime.evaluate", {"expression": expr, "awaitPromise": True,
                                           "returnByValue": True, "userGesture": True})
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError("JS: " + (d.get("exception", {}).get("description") or d.get("text", "")))
        return r.get("result", {}).get("value")

    def wait(self, seconds, expr):
        deadline = time.time() + float(seconds)
        # truthiness as JavaScript sees it; a DOM node comes back as true
        wrapped = ("(async () => { const v = await (%s); "
                   "return [!!v, v && typeof v === 'object' && v.nodeType ? true : v]; })()" % expr)
        v = None
        while True:
            try:
                t, v = self.eval(wrapped)
            except RuntimeError as e:
                t, v = False, str(e)
                if "chromium exited" in v:
                    raise
            if t:
                return {"ok": True, "value": v}
            if time.time() >= deadline:
                return {"ok": False, "value": v}
            time.sleep(0.1)

    def shot(self, path, w=1280, h=900, full="full"):
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": int(w), "height": int(h), "deviceScaleFactor": 1, "mobile": False})
        height = self.eval("Math.ceil(document.documentElement.scrollHeight)") or int(h)
        if full != "full":
            height = int(h)
        r = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                      "clip": {"x": 0, "y": 0, "width": int(w), "height": max(int(h), height), "scale": 1}})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        return path

    def close(self):
        try:
            self.send("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main():
    # a TERM (the test's clean-up) still closes Chromium and removes its profile
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    profile = tempfile.mkdtemp(prefix="traind-chromium-")
    b = None

    def out(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    try:
        b = Browser(profile)
        b.send("Browser.getVersion", session=False, timeout=60)
        out({"ok": True, "value": "ready"})
        for line in sys.stdin:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            cmd, _, arg = line.partition(" ")
            try:
                if cmd == "open":
                    out(b.open(arg))
                elif cmd == "nav":
                    out(b.nav(arg))
                elif cmd == "eval":
                    out({"ok": True, "value": b.eval(arg)})
                elif cmd == "wait":
                    secs, _, expr = arg.partition(" ")
                    out(b.wait(secs, expr))
                elif cmd == "shot":
                    a = arg.split()
                    out({"ok": True, "value": b.shot(*a)})
                elif cmd == "errors":       # those since the last "errors"
                    with b.lock:
                        out({"ok": True, "value": list(b.problems)})
                        b.problems = []
                elif cmd == "requests":
                    with b.lock:
                        out({"ok": True, "value": [b.requests[i] for i in b.order]})
                elif cmd == "clear":
                    with b.lock:
                        b.requests, b.order = {}, []
                    out({"ok": True, "value": True})
                elif cmd == "quit":
                    out({"ok": True, "value": "bye"})
                    break
                else:
                    out({"ok": False, "error": "unknown command " + cmd})
            except Exception as e:      # report, keep serving
                out({"ok": False, "error": str(e)})
    except Exception as e:
        out({"ok": False, "error": str(e)})
    finally:
        if b:
            b.close()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
