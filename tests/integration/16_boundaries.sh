#!/usr/bin/env bash
# tests/integration/16_boundaries.sh — nothing reaches past traind's HTTP
# boundaries (issue 13, HTTP part), against real daemons on loopback:
#   browser-borne requests: bodies that are not application/json (415) and
#   bodyless state changes with a simple content type (415) create nothing; a
#   foreign Origin (403) or Host (421: DNS rebinding) cancels, deletes and
#   reads nothing, on every route (health and the event stream included);
#   --allow-host / --allow-origin (here from a config file) let a reverse
#   proxy's names through; headless Chromium on a page of another origin tries
#   no-cors POSTs, a text/plain form, a CORS DELETE and a rebound host name,
#   and the daemon creates, cancels and deletes nothing;
#   bounded cost: with a token, an unauthenticated 60 MB body is answered 401
#   on its headers (nothing of it is read: the daemon's RSS stays put), per-
#   route body limits (413 on the declared length, chunked bodies cut off),
#   RSS back down after rejected large bodies, slow requests closed by
#   --request-timeout-s while an event stream outlives it, and /v1/health
#   still answered while one client holds 200 slow connections; the
#   dashboard's cancel (bodyless: 200; with a "{}" body: 413); a browser's
#   pool at --max-connections-per-ip (idle kept-alive connections closed by
#   the deadline or for a newer one, never the event stream; an ended job's
#   whole replay served).
. "$(dirname "$0")/lib.sh"

JSON=(-H 'Content-Type: application/json')
ds_body() { printf '{"name":"%s","synthetic":{"samples":8,"image_size":28,"seed":1}}' "$1"; }
code_of() { curl -s -m 60 -o "$TDIR/last_body" -w '%{http_code}' "$@"; }   # prints the status
exists() { [ "$(code_of "$URL/v1/datasets/$1")" = 200 ]; }
metric() {   # metric CODE -> traind_http_requests_total{code=CODE} (0 when absent)
    curl -s -m 10 "$URL/metrics" | awk -v c="$1" '$1 == "traind_http_requests_total{code=\"" c "\"}" {v=$2} END {print v+0}'
}
dropped() {   # dropped REASON -> traind_http_connections_dropped_total{reason=REASON}
    curl -s -m 10 "$URL/metrics" | awk -v r="$1" '$1 == "traind_http_connections_dropped_total{reason=\"" r "\"}" {v=$2} END {print v+0}'
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON_PID/status"; }

# ---- flags: shown in --help, bad values refused naming the flag -------------------------------
help=$("$TRAIND_BIN" --help)
for f in --allow-host --allow-origin --max-connections-per-ip --request-timeout-s; do
    grep -q -- "$f" <<<"$help"; ok $? "traind --help shows $f"
done
for bad in "--allow-host evil.example/x" "--allow-host a:0" "--allow-origin null" \
           "--allow-origin http://x.example/path" "--allow-origin x.example" \
           "--max-connections-per-ip 0" "--request-timeout-s 0" "--request-timeout-s soon"; do
    refuses_flag "$bad"
done

# ---- daemon 1: the defaults (no token, loopback), a 4 s request deadline -----------------------
start_daemon --request-timeout-s 4 --log-level debug || bail "daemon did not start"
load_synth syn 32 28 3
ok $? "dataset ready"
submit "$(train_spec syn 1000000 '"checkpoint_every":1000000')"; JOBID=$JOB
wait_job_state "$JOBID" running 60
ok $? "a long train job is running (the target of cancels)"
still_running() { [ "$(job_state "$JOBID")" = running ]; }

# bodies must be application/json, checked before the body is read
is "$(code_of -X POST -H 'Content-Type: text/plain' --data-binary "$(ds_body t1)" "$URL/v1/datasets")" 415 \
   "POST /v1/datasets, JSON as text/plain -> 415"
check "... body is the JSON error unsupported_media_type" jq -e '.error.code=="unsupported_media_type" and (.error.message|length>0)' "$TDIR/last_body"
is "$(code_of -X POST --data-binary "$(ds_body t2)" "$URL/v1/datasets")" 415 "JSON as application/x-www-form-urlencoded (curl -d) -> 415"
is "$(code_of -X POST -H 'Content-Type:' --data-binary "$(ds_body t3)" "$URL/v1/datasets")" 415 "JSON without a Content-Type -> 415"
is "$(code_of -X POST -F "x=$(ds_body t4)" "$URL/v1/datasets")" 415 "multipart/form-data -> 415"
is "$(code_of -X POST -H 'Content-Type: text/plain' --data-binary "$(train_spec syn 1)" "$URL/v1/jobs")" 415 "POST /v1/jobs as text/plain -> 415"
for n in t1 t2 t3 t4; do ! exists "$n"; ok $? "... dataset $n was not created"; done
is "$(code_of -X POST -H 'Content-Type: application/json; charset=utf-8' --data-binary "$(ds_body ok1)" "$URL/v1/datasets")" 202 \
   "application/json with a charset -> 202"
is "$(code_of -X POST -H 'Content-Type: text/plain' "$URL/v1/jobs/$JOBID/cancel")" 415 "bodyless cancel with text/plain -> 415"
is "$(code_of -X POST -H 'Content-Type: application/x-www-form-urlencoded' -H 'Sec-Fetch-Site: cross-site' "$URL/v1/jobs/$JOBID/cancel")" 415 \
   "bodyless form-urlencoded cancel from a browser (Sec-Fetch-Site) -> 415"
is "$(code_of -X DELETE -H 'Content-Type: multipart/form-data; boundary=x' "$URL/v1/datasets/syn")" 415 "bodyless DELETE with multipart -> 415"
check "... the job is still running" still_running
check "... the dataset is still there" exists syn

# foreign Origin: 403, nothing cancelled or deleted
is "$(code_of -X POST -H 'Origin: http://evil.example' "$URL/v1/jobs/$JOBID/cancel")" 403 "cancel with Origin http://evil.example -> 403"
check "... names the origin" grep -q 'evil.example' "$TDIR/last_body"
is "$(code_of -X POST -H 'Origin: http://localhost:3000' "$URL/v1/jobs/$JOBID/cancel")" 403 "cancel from another local web app's origin -> 403"
is "$(code_of -X DELETE -H 'Origin: null' "$URL/v1/datasets/syn")" 403 "DELETE with Origin null -> 403"
is "$(code_of -X DELETE -H 'Origin: http://evil.example' "$URL/v1/datasets/syn")" 403 "DELETE with a foreign Origin -> 403"
is "$(code_of -X POST -H 'Origin: http://evil.example' "${JSON[@]}" --data-binary "$(ds_body evil0)" "$URL/v1/datasets")" 403 "POST /v1/datasets with a foreign Origin -> 403"
is "$(code_of -H 'Origin: http://evil.example' "$URL/v1/jobs/$JOBID/events")" 403 "event stream with a foreign Origin -> 403"
check "... the job is still running" still_running
check "... the dataset is still there" exists syn
! exists evil0; ok $? "... nothing created"
is "$(code_of -X POST -H "Origin: http://127.0.0.1:$PORT" "${JSON[@]}" --data-binary "$(ds_body own1)" "$URL/v1/datasets")" 202 \
   "the daemon's own origin -> 202"

# foreign Host (DNS rebinding): 421 on every route
for req in "GET /v1/status" "GET /v1/health" "GET /v1/jobs/$JOBID/events" "DELETE /v1/datasets/syn" \
           "POST /v1/jobs/$JOBID/cancel"; do
    set -- $req
    is "$(code_of -X "$1" -H 'Host: evil.example' "$URL$2")" 421 "$req with Host evil.example -> 421"
done
check "... misdirected_request in the error format" jq -e '.error.code=="misdirected_request"' "$TDIR/last_body"
is "$(code_of -H "Host: evil.example:$PORT" "$URL/v1/status")" 421 "Host evil.example with the daemon's port -> 421"
is "$(code_of -H "Host: localhost:$((PORT == 65535 ? 1 : PORT + 1))" "$URL/v1/status")" 421 "Host localhost with another port -> 421"
check "... the job is still running" still_running
check "... the dataset is still there" exists syn
for h in "localhost:$PORT" "127.0.0.1:$PORT" "[::1]:$PORT" "LOCALHOST:$PORT" "127.0.0.1" "localhost"; do
    is "$(code_of -H "Host: $h" "$URL/v1/status")" 200 "Host $h -> 200"
done

# per-route body limits, on the declared length, before reading
python3 - "$PORT" >"$TDIR/declared.out" <<'EOF'
import socket, sys
port = int(sys.argv[1])
def ask(head):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(head.encode())          # the headers only: the body is never sent
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            data += d
    except socket.timeout:
        return "timeout"
    finally:
        s.close()
    return data.split(b" ")[1].decode() if data.startswith(b"HTTP/") else "none"
h = "Host: 127.0.0.1:%d\r\nContent-Type: application/json\r\nConnection: close\r\n" % port
print(ask("POST /v1/jobs HTTP/1.1\r\n" + h + "Content-Length: %d\r\n\r\n" % (65 << 20)))
print(ask("POST /v1/datasets HTTP/1.1\r\n" + h + "Content-Length: 70000\r\n\r\n"))
EOF
is "$(sed -n 1p "$TDIR/declared.out")" 413 "POST /v1/jobs declaring 65 MiB: 413 with the body unsent"
is "$(sed -n 2p "$TDIR/declared.out")" 413 "POST /v1/datasets declaring 70000 bytes (limit 64 KiB): 413 with the body unsent"
head -c 70000 /dev/zero | tr '\0' ' ' >"$TDIR/70k.json"
is "$(code_of -X POST "${JSON[@]}" --data-binary @"$TDIR/70k.json" "$URL/v1/datasets")" 413 "POST /v1/datasets with a 70000-byte body -> 413"
is "$(code_of -X POST "${JSON[@]}" -d '{}' "$URL/v1/jobs/$JOBID/cancel")" 413 "cancel with a body (it takes none) -> 413"
is "$(code_of -X DELETE "${JSON[@]}" -d '{}' "$URL/v1/datasets/syn")" 413 "DELETE with a body -> 413"
is "$(code_of -X POST "${JSON[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$TDIR/70k.json" "$URL/v1/datasets")" 413 \
   "chunked 70000-byte dataset body -> 413"
head -c 8000000 /dev/zero | tr '\0' ' ' >"$TDIR/8m.json"
code=$(code_of -X POST "${JSON[@]}" -H 'Expect:' -H 'Transfer-Encoding: chunked' --data-binary @"$TDIR/8m.json" "$URL/v1/datasets")
[ "$code" = 000 ] || [ "$code" = 413 ]; ok $? "chunked 8 MB dataset body: cut off (got $code)"
grep -q 'chunked body went .* past the limit of 65536: connection closed' "$DLOG"; ok $? "... the log says it was cut off at the limit"
check "... the job is still running" still_running
check "... the dataset is still there" exists syn

# requests that keep to the rules still work: curl -X POST (no body, no type), trainctl
api GET /v1/health
is "$STATUS" 200 "health"

# SSE: the request deadline (4 s) is for receiving the request, not for the stream
timeout 7 curl -sN "$URL/v1/jobs/$JOBID/events" >"$TDIR/sse.txt" 2>/dev/null
rc=$?
is "$rc" 124 "an event stream stays open past the 4 s request deadline (curl still reading at 7 s)"
check "... and carried events" grep -q '^event: ' "$TDIR/sse.txt"

# slow requests: closed by the deadline, never idle long enough for --idle-timeout-s (120 s)
cat >"$TDIR/slow.py" <<'EOF'
# slow.py PORT N SRC INTERVAL DURATION STATUSFILE: N connections from SRC that
# send a request's header lines one every INTERVAL s and never finish it; prints
# JSON: how many connected, were closed within 0.5 s (refused), were closed later
# (with their ages), were still open at the end, and the most open at once.
import json, os, select, socket, sys, time
port, n, src, interval, duration, status = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], \
    float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
conns, refused = [], 0
for i in range(n):
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port)
    s.setblocking(False)
    conns.append({"s": s, "t0": time.time(), "closed": None})
t_end, next_send, most = time.time() + duration, time.time() + interval, 0
while time.time() < t_end:
    open_ = [c for c in conns if c["closed"] is None]
    most = max(most, len(open_))
    tmp = status + ".tmp"
    with open(tmp, "w") as f: f.write("%d\n" % len(open_))
    os.replace(tmp, status)
    if not open_: break
    r, _, _ = select.select([c["s"] for c in open_], [], [], 0.25)
    now = time.time()
    for c in open_:
        if c["s"] in r:
            try:
                if c["s"].recv(4096) == b"": c["closed"] = now - c["t0"]
            except OSError:
                c["closed"] = now - c["t0"]
    if now >= next_send:
        next_send = now + interval
        for c in conns:
            if c["closed"] is None:
                try: c["s"].send(b"X-Slow: 1\r\n")
                except OSError: c["closed"] = now - c["t0"]
ages = [c["closed"] for c in conns if c["closed"] is not None and c["closed"] >= 0.5]
print(json.dumps({"connected": len(conns), "refused": sum(1 for c in conns if c["closed"] is not None and c["closed"] < 0.5),
                  "closed_later": len(ages), "min_age": min(ages) if ages else None,
                  "max_age": max(ages) if ages else None,
                  "open_at_end": sum(1 for c in conns if c["closed"] is None), "most_open": most}))
EOF
res=$(python3 "$TDIR/slow.py" "$PORT" 5 127.0.0.1 0.5 20 "$TDIR/slow5.status")
diag "5 slow requests: $res"
is "$(jq .closed_later <<<"$res")" 5 "5 requests sent a header line every 0.5 s: all 5 closed by the daemon"
check "... after the 4 s deadline, not before (ages $(jq -c '[.min_age,.max_age]' <<<"$res"))" \
    jq -e '.min_age >= 3.5 and .max_age < 15' <<<"$res"
grep -q 'did not send a whole request within 4 s' "$DLOG"; ok $? "... the log says why"
check "... and /metrics counts them (request_timeout: $(dropped request_timeout))" test "$(dropped request_timeout)" -ge 5

# ---- headless Chromium: a page of another origin attacks the daemon ---------------------------------
if command -v chromium >/dev/null 2>&1; then
    HS=$(free_port)
    mkdir -p "$TDIR/www"
    cat >"$TDIR/www/attack.html" <<EOF
<!doctype html><html><body><div id=out>started</div>
<iframe name=sink style="display:none"></iframe>
<form id=f method=POST enctype="text/plain" target=sink action="http://127.0.0.1:$PORT/v1/datasets">
<input name='{"name":"evilform","synthetic":{"samples":8,"image_size":28,"seed":1},"x":"' value='"}'></form>
<script>
const T = "http://127.0.0.1:$PORT";
const body = (n) => JSON.stringify({name: n, synthetic: {samples: 8, image_size: 28, seed: 1}});
async function go() {
  const out = [];
  async function t(label, url, opts) {
    try { const r = await fetch(url, opts); out.push(label + ":" + r.type); }
    catch (e) { out.push(label + ":blocked"); }
  }
  await t("nocors", T + "/v1/datasets", {mode: "no-cors", method: "POST", body: body("evil1")});
  await t("nocors-text", T + "/v1/datasets", {mode: "no-cors", method: "POST",
          headers: {"Content-Type": "text/plain"}, body: body("evil2")});
  await t("nocors-form", T + "/v1/datasets", {mode: "no-cors", method: "POST",
          headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: body("evil3")});
  await t("nocors-cancel", T + "/v1/jobs/$JOBID/cancel", {mode: "no-cors", method: "POST"});
  await t("cors-json", T + "/v1/datasets", {method: "POST", headers: {"Content-Type": "application/json"},
          body: body("evil4")});
  await t("cors-delete", T + "/v1/datasets/syn", {method: "DELETE"});
  await t("rebound", "http://rebound.example:$PORT/v1/datasets", {mode: "no-cors", method: "POST", body: body("evil5")});
  document.getElementById("f").submit();
  await new Promise(r => setTimeout(r, 1500));
  document.getElementById("out").textContent = "DONE " + out.join(" ");
}
go();
</script></body></html>
EOF
    (cd "$TDIR/www" && exec python3 -m http.server "$HS" --bind 127.0.0.1 >"$TDIR/http.server.log" 2>&1) &
    _bg_pids+=("$!")
    wait_for 20 curl -sf -o /dev/null "http://127.0.0.1:$HS/attack.html"
    ok $? "the attacker's page is served from another loopback port ($HS)"
    n403=$(metric 403) n421=$(metric 421)
    timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$TDIR/chromium" \
        --host-resolver-rules="MAP rebound.example 127.0.0.1" --virtual-time-budget=15000 \
        --dump-dom "http://127.0.0.1:$HS/attack.html" >"$TDIR/dom.html" 2>"$TDIR/chromium.log"
    out=$(grep -o 'id="out">DONE[^<]*' "$TDIR/dom.html" | sed 's/^id="out">//')
    diag "page: ${out:-$(tail -n 3 "$TDIR/chromium.log")}"
    [ -n "$out" ]; ok $? "Chromium ran the page's requests to the end"
    for n in evil1 evil2 evil3 evil4 evil5 evilform; do ! exists "$n"; ok $? "... dataset $n was not created"; done
    check "... the job was not cancelled" still_running
    check "... the dataset was not deleted" exists syn
    m403=$(metric 403) m421=$(metric 421)
    check "... the daemon saw the browser's requests and refused them (403: $n403 -> $m403, 421: $n421 -> $m421)" \
        test "$((m403 - n403))" -ge 6 -a "$((m421 - n421))" -ge 1
else
    skip "chromium not installed (scripts/install-deps.sh installs it)"
fi

# the dashboard's cancel: a same-origin fetch() POST as Chromium sends it (Origin,
# Sec-Fetch-*). With the "{}" body the page once sent it is 413 (cancel takes no
# body) and cancels nothing; bodyless it cancels (here a job queued behind JOBID).
submit '{"type":"debug","dataset":"syn","batches":1}'; QJ=$JOB
is "$(job_state "$QJ")" queued "a debug job $QJ waits behind the train job"
PAGE=(-X POST -H "Origin: http://127.0.0.1:$PORT" -H 'Sec-Fetch-Site: same-origin' -H 'Sec-Fetch-Mode: cors')
is "$(code_of "${PAGE[@]}" "${JSON[@]}" -d '{}' "$URL/v1/jobs/$QJ/cancel")" 413 "the page's cancel with a {} body -> 413"
is "$(job_state "$QJ")" queued "... $QJ is not cancelled"
is "$(code_of "${PAGE[@]}" -H 'Content-Length: 0' "$URL/v1/jobs/$QJ/cancel")" 200 "the page's bodyless cancel -> 200"
is "$(wait_job "$QJ" 60)" cancelled "... $QJ is cancelled"

# trainctl, unchanged, still cancels (it sends an empty form-urlencoded POST)
tctl cancel "$JOBID" >/dev/null 2>"$TDIR/tctl.err"
ok $? "trainctl cancel works$( [ -s "$TDIR/tctl.err" ] && printf ' (%s)' "$(head -c 200 "$TDIR/tctl.err")")"
is "$(wait_job "$JOBID" 120)" cancelled "... the job is cancelled"
is "$(code_of -X DELETE "$URL/v1/datasets/own1")" 200 "curl -X DELETE (no body, no type) works"
stop_daemon
is "$DAEMON_RC" 0 "daemon 1: clean exit"

# ---- daemon 2: a reverse proxy's names from a config file ------------------------------------------
cat >"$TDIR/proxy.conf" <<'EOF'
# behind https://traind.example.com (a reverse proxy that passes Host through)
allow-host = traind.example.com
allow-host = tunnel.local:18470
allow-origin = https://traind.example.com
EOF
STATE=$TDIR/state2 PORT=
start_daemon --config "$TDIR/proxy.conf" || bail "daemon 2 did not start"
is "$(code_of -H 'Host: traind.example.com' "$URL/v1/status")" 200 "allow-host traind.example.com: Host traind.example.com -> 200"
is "$(code_of -H 'Host: traind.example.com:443' "$URL/v1/status")" 200 "... with any port (the entry has none) -> 200"
is "$(code_of -H 'Host: tunnel.local:18470' "$URL/v1/status")" 200 "allow-host tunnel.local:18470 -> 200"
is "$(code_of -H 'Host: tunnel.local:18471' "$URL/v1/status")" 421 "... another port of it -> 421"
is "$(code_of -H 'Host: other.example.com' "$URL/v1/status")" 421 "a name not allowed -> 421"
is "$(code_of -X POST -H 'Host: traind.example.com' -H 'Origin: https://traind.example.com' "${JSON[@]}" \
      --data-binary "$(ds_body viaproxy)" "$URL/v1/datasets")" 202 "allow-origin https://traind.example.com -> 202"
is "$(code_of -X POST -H 'Host: tunnel.local:18470' -H 'Origin: http://tunnel.local:18470' "${JSON[@]}" \
      --data-binary "$(ds_body viatunnel)" "$URL/v1/datasets")" 202 "the origin of an allowed Host (http://tunnel.local:18470) -> 202"
is "$(code_of -X POST -H 'Host: traind.example.com' -H 'Origin: https://evil.example.com' "${JSON[@]}" \
      --data-binary "$(ds_body evil6)" "$URL/v1/datasets")" 403 "another origin behind the proxy -> 403"
! exists evil6; ok $? "... not created"
stop_daemon
is "$DAEMON_RC" 0 "daemon 2: clean exit"

# ---- daemon 3: a token; bodies answered on their headers; memory given back ---------------------
printf 'b0undary-token-%s\n' "$RANDOM$RANDOM" >"$TDIR/token"
chmod 600 "$TDIR/token"
TOKEN_V=$(head -n1 "$TDIR/token")
STATE=$TDIR/state3 PORT=
# ASan's quarantine off (as 45_soak): freed memory is reused and RSS means what it says
ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=0:thread_local_quarantine_size_kb=0" \
    start_daemon --token-file "$TDIR/token" || bail "daemon 3 did not start"
head -c 60000000 /dev/zero | tr '\0' ' ' >"$TDIR/60m.json"
is "$(code_of -X POST "${JSON[@]}" -H 'Expect:' --data-binary @"$TDIR/60m.json" "$URL/v1/jobs")" 401 \
   "no token, 60 MB body sent at once (no Expect): 401"
# eight clients at once: each sends the headers of a 60 MB body and waits for an answer
# before sending any of it (were the body read first, no answer would come)
python3 - "$PORT" >"$TDIR/half.out" <<'EOF'
import socket, sys, threading
port, res = int(sys.argv[1]), []
def client():
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
              b"Content-Length: 60000000\r\n\r\n" % port)
    try:
        ans = s.recv(4096)
    except socket.timeout:
        ans = b"timeout"
    s.close()
    res.append(ans.split(b" ")[1].decode() if ans.startswith(b"HTTP/") else ans[:20].decode(errors="replace"))
ts = [threading.Thread(target=client) for _ in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
print(" ".join(sorted(res)))
EOF
is "$(cat "$TDIR/half.out")" "401 401 401 401 401 401 401 401" "8 unauthenticated 60 MB bodies: each answered 401 before a byte of it was sent"
# the reported attack: eight clients send 30 MB of a 60 MB body each, without
# waiting, and hold their connections; the daemon's RSS is read while they hold
rss0=$(rss_kb)
python3 - "$PORT" "$TDIR/held" >"$TDIR/half2.out" <<'EOF' &
import socket, sys, threading, time
port, flag = int(sys.argv[1]), sys.argv[2]
sent, held = [], threading.Barrier(9)
def client():
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    n = 0
    try:
        s.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 60000000\r\n\r\n" % port)
        for _ in range(30):
            s.sendall(b" " * (1 << 20))
            n += 1
    except OSError:
        pass
    sent.append(n)
    held.wait()
    time.sleep(3)       # hold the connection while the daemon's RSS is read
    s.close()
ts = [threading.Thread(target=client) for _ in range(8)]
[t.start() for t in ts]
held.wait()
open(flag, "w").write("held\n")
[t.join() for t in ts]
print(" ".join(str(x) for x in sorted(sent)))
EOF
halfpid=$!
wait_for 120 test -f "$TDIR/held"
rss1=$(rss_kb)
wait "$halfpid"
diag "MiB of body each client got out: $(cat "$TDIR/half2.out"); rss ${rss0} -> ${rss1} kB"
check "8 clients holding half-sent 60 MB bodies: the daemon read none of them (RSS ${rss0} -> ${rss1} kB, < 32 MB more)" \
    test "$((rss1 - rss0))" -lt 32768
AUTH=(-H "Authorization: Bearer $TOKEN_V")
is "$(code_of "${AUTH[@]}" -X POST "${JSON[@]}" -H 'Content-Length: 70000000' -H 'Expect:' --data-binary '' "$URL/v1/jobs" 2>/dev/null)" 413 \
   "with the token, a 70 MB declared job body -> 413"
# accepted and rejected large bodies: the memory comes back
is "$(code_of "${AUTH[@]}" -X POST "${JSON[@]}" --data-binary @"$TDIR/60m.json" "$URL/v1/jobs")" 400 \
   "with the token, a 60 MB body of blanks is read and refused (400, not JSON)"
head -c 70000000 /dev/zero | tr '\0' ' ' >"$TDIR/70m.json"
code=$(code_of "${AUTH[@]}" -X POST "${JSON[@]}" -H 'Expect:' -H 'Transfer-Encoding: chunked' --data-binary @"$TDIR/70m.json" "$URL/v1/jobs")
[ "$code" = 000 ] || [ "$code" = 413 ]; ok $? "with the token, a chunked 70 MB job body is cut off at the 64 MiB limit (got $code)"
rm -f "$TDIR/60m.json" "$TDIR/70m.json"
sleep 1
rss2=$(rss_kb)
diag "after two 60+ MB bodies: rss ${rss0} -> ${rss2} kB"
check "... the daemon gave their memory back (RSS ${rss0} -> ${rss2} kB, < 32 MB more)" test "$((rss2 - rss0))" -lt 32768
api GET /v1/health
is "$STATUS" 200 "health needs no token"
stop_daemon
is "$DAEMON_RC" 0 "daemon 3: clean exit"

# ---- daemon 4: one client holds 200 slow connections --------------------------------------------
STATE=$TDIR/state4 PORT=
start_daemon --request-timeout-s 10 || bail "daemon 4 did not start"
python3 "$TDIR/slow.py" "$PORT" 200 127.0.0.1 1 25 "$TDIR/slow200.status" >"$TDIR/slow200.json" &
slowpid=$!
_bg_pids+=("$slowpid")
wait_for 60 test -s "$TDIR/slow200.status"   # written once all 200 have connected
sleep 1.5   # the held ones are now over API_EVICT_MIN_AGE_S (1 s) old
held=$(cat "$TDIR/slow200.status" 2>/dev/null)
diag "slow connections open: $held"
check "the client holds at most --max-connections-per-ip (128) of its 200 ($held)" test "${held:-999}" -le 128 -a "${held:-0}" -ge 64
is "$(code_of "$URL/v1/health")" 200 "/v1/health from the same address (127.0.0.1) is answered"
is "$(code_of "$URL/v1/status")" 200 "/v1/status from the same address is answered"
is "$(code_of --interface 127.0.0.2 "$URL/v1/health")" 200 "/v1/health from another address (127.0.0.2) is answered"
tctl status >/dev/null 2>&1
ok $? "trainctl status is answered"
wait "$slowpid"
res=$(cat "$TDIR/slow200.json")
diag "200 slow connections: $res"
is "$(jq .open_at_end <<<"$res")" 0 "every slow connection was closed by the daemon (per-client limit or deadline)"
check "... those it held were closed by the 10 s deadline at the latest (oldest $(jq .max_age <<<"$res") s)" \
    jq -e '.max_age < 20' <<<"$res"
n_closed=$(dropped per_client_closed) n_refused=$(dropped per_client_refused) n_expired=$(dropped request_timeout)
diag "dropped: per_client_closed $n_closed, per_client_refused $n_refused, request_timeout $n_expired"
check "... /metrics counts them: some closed for newer connections, the rest refused or timed out" \
    test "$n_closed" -ge 1 -a "$((n_closed + n_refused + n_expired))" -ge 200
api GET /v1/health
is "$STATUS" 200 "still serving"
stop_daemon
is "$DAEMON_RC" 0 "daemon 4: clean exit"

# ---- daemon 5: a browser's connection pool at the per-client limit --------------------------------
# What the dashboard holds: an event stream of a running job and kept-alive
# connections between its requests (Chromium: 6 to a host). The deadline and
# the per-client limit close idle kept-alive connections, never the stream,
# and a new request of the same client is served: an ended job's whole replay.
STATE=$TDIR/state5 PORT=
start_daemon --max-connections-per-ip 6 --request-timeout-s 3 || bail "daemon 5 did not start"
load_synth syn 32 28 3
ok $? "daemon 5: dataset ready"
submit '{"type":"debug","dataset":"syn","batches":1}'; EJ=$JOB
is "$(wait_job "$EJ" 120)" succeeded "an ended job $EJ (debug)"
submit "$(train_spec syn 1000000 '"checkpoint_every":1000000')"; LJ=$JOB
wait_job_state "$LJ" running 60
ok $? "a running train job $LJ (the stream's)"
cat >"$TDIR/pool.py" <<'EOF'
# pool.py PORT LIVE_JOB ENDED_JOB PER_IP DEADLINE_S: prints JSON of what a
# browser-like pool of one client saw (see the checks in 16_boundaries.sh).
import http.client, json, socket, sys, time
port, live, ended, per_ip, deadline = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
out = {}
def kept(n):   # n kept-alive connections, each after one answered request
    cs = []
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        c.request("GET", "/v1/health")
        r = c.getresponse(); r.read()
        cs.append((c, r.status))
    return cs
def closed(c):   # the daemon closed it: EOF (or a reset) is waiting
    c.sock.setblocking(False)
    try: return c.sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError: return False
    except OSError: return True
    finally: c.sock.setblocking(True)
def stream_reads(s):   # still open: what came so far is read, then new bytes arrive
    s.setblocking(False)  # (an event, or the heartbeat within 10 s) and no EOF
    try:
        while True:
            if s.recv(65536) == b"": return False
    except BlockingIOError: pass
    except OSError: return False
    s.settimeout(15)
    try: return len(s.recv(65536)) > 0
    except OSError: return False
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.sendall(("GET /v1/jobs/%s/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n\r\n" % (live, port)).encode())
out["stream_status"] = s.recv(65536).split(b"\r\n", 1)[0].decode()
cs = kept(per_ip - 1)
out["kept_served"] = all(st == 200 for _, st in cs)
time.sleep(deadline + 1.5)
out["kept_closed_after_deadline"] = sum(closed(c) for c, _ in cs)
out["stream_after_deadline"] = stream_reads(s)
cs = kept(per_ip - 1)
time.sleep(1.2)   # older than API_EVICT_MIN_AGE_S: may be closed for a newer connection
n = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
n.request("GET", "/v1/jobs/%s/events" % ended, headers={"Accept": "text/event-stream"})
r = n.getresponse()
body = r.read().decode()   # to EOF: the replay of an ended job ends by itself
out["replay_status"] = r.status
out["replay_ids"] = [int(l[4:]) for l in body.split("\n") if l.startswith("id: ")]
out["replay_last"] = [l for l in body.split("\n") if l.startswith("data: ")][-1:]
out["kept_closed_for_new"] = sum(closed(c) for c, _ in cs)
out["stream_after_new"] = stream_reads(s)
print(json.dumps(out))
EOF
res=$(timeout 120 python3 "$TDIR/pool.py" "$PORT" "$LJ" "$EJ" 6 3)
diag "pool: $res"
is "$(jq -r .stream_status <<<"$res")" "HTTP/1.1 200 OK" "the event stream of $LJ is open"
is "$(jq -r .kept_served <<<"$res")" true "... with 5 kept-alive connections beside it (6 = the limit), each answered"
is "$(jq -r .kept_closed_after_deadline <<<"$res")" 5 "past the 3 s deadline the daemon closed the 5 idle ones"
is "$(jq -r .stream_after_deadline <<<"$res")" true "... and the stream still delivers"
is "$(jq -r .replay_status <<<"$res")" 200 "at the limit again, a new connection is served"
check "... room was made by closing an idle kept-alive connection (closed: $(jq .kept_closed_for_new <<<"$res"))" \
    jq -e '.kept_closed_for_new >= 1' <<<"$res"
is "$(jq -c .replay_ids <<<"$res")" "$(sql "SELECT json_group_array(id) FROM (SELECT id FROM job_events WHERE job = '$EJ' ORDER BY id)")" \
   "... with the ended job's whole replay, every event in order, to its end"
check "... the last one is its final state" jq -e '.replay_last[0] | test("\"state\":\"succeeded\"")' <<<"$res"
is "$(jq -r .stream_after_new <<<"$res")" true "... and the stream still delivers"
api POST "/v1/jobs/$LJ/cancel"
is "$(wait_job "$LJ" 120)" cancelled "daemon 5: the train job cancelled"
stop_daemon
is "$DAEMON_RC" 0 "daemon 5: clean exit"
done_testing
