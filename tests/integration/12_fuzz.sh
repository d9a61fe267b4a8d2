#!/usr/bin/env bash
# tests/integration/12_fuzz.sh — random and hostile input against the real
# server: request bodies of random bytes, truncated and mutated JSON, invalid
# UTF-8, NUL bytes, 100000-deep nesting, huge numbers, to every POST route and
# a few paths that take none; and garbage on the raw socket (no HTTP at all,
# broken request lines, a header that never ends). Every answer must be a
# 2xx or a 4xx with the JSON error body (no 5xx), nothing may be created by a
# rejected body, and the daemon must keep serving with clean sanitizer logs.
. "$(dirname "$0")/lib.sh"

start_daemon --idle-timeout-s 2 || bail "daemon did not start"
load_synth syn "$NSAMP" "$IMG" 5
ok $? "dataset ready"
api GET /v1/jobs
jobs_before=$(jb '.total')

cat >"$TDIR/fuzz.py" <<'EOF'
import http.client, json, random, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
random.seed(12345)
valid = [
    b'{"type":"train","dataset":"syn","model":{"backbone":"dinov2-tiny"},"steps":1}',
    b'{"name":"d2","synthetic":{"samples":8,"image_size":28,"seed":1}}',
    b'{"type":"infer","dataset":"syn","checkpoint":"c-1","indices":[0]}',
]
routes = [("POST", "/v1/jobs"), ("POST", "/v1/datasets"), ("POST", "/v1/jobs/j-000001/cancel"),
          ("PUT", "/v1/jobs"), ("DELETE", "/v1/datasets/%00"), ("GET", "/v1/jobs?limit=%ff&offset=-1"),
          ("GET", "/v1/jobs/../../etc/passwd"), ("GET", "/v1/checkpoints/%2e%2e/files/x")]

def body():
    k = random.randrange(9)
    v = random.choice(valid)
    if k == 0: return bytes(random.randrange(256) for _ in range(random.randrange(1, 300)))
    if k == 1: return v[:random.randrange(len(v))]                      # truncated
    if k == 2:                                                           # one byte changed
        i = random.randrange(len(v)); return v[:i] + bytes([random.randrange(256)]) + v[i + 1:]
    if k == 3: return v.replace(b'"syn"', b'"\xff\xfe\x00syn"')          # invalid UTF-8, NUL
    if k == 4: return b"[" * 100000 + b"]" * 100000                      # deep nesting
    if k == 5: return v.replace(b"1}", b"1" + b"9" * 400 + b"}")         # huge number
    if k == 6: return b'{"type":"train","dataset":"syn","steps":1e999}'
    if k == 7: return b'{"type":' + json.dumps("x" * 100000).encode() + b'}'
    return b""

bad = []
counts = {}
for i in range(n):
    m, path = random.choice(routes)
    b = body()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request(m, path, body=b, headers={"Content-Type": random.choice(
            ["application/json", "text/plain", "application/json; charset=latin1"])})
        r = c.getresponse()
        data = r.read()
    except Exception as e:
        bad.append("%s %s: %r" % (m, path, e)); c.close(); continue
    c.close()
    counts[r.status] = counts.get(r.status, 0) + 1
    if r.status >= 500:
        bad.append("%s %s -> %d %r" % (m, path, r.status, data[:200]))
    elif r.status >= 400:
        try:
            e = json.loads(data)["error"]
            assert e["code"] and e["message"]
        except Exception:
            bad.append("%s %s -> %d, not the JSON error format: %r" % (m, path, r.status, data[:200]))

# garbage on the raw socket: the server must cope (any answer or a close)
for junk in [b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
             b"POST /v1/jobs HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
             b"POST /v1/jobs HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n{",
             b"GET /v1/health HTTP/1.1\r\nX: " + b"a" * 200000 + b"\r\n\r\n",
             b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX: never ends"]:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(junk)
        s.settimeout(10)
        while s.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        pass
    s.close()
print(json.dumps({"counts": counts, "bad": bad[:5], "nbad": len(bad)}, sort_keys=True))
EOF

res=$(python3 "$TDIR/fuzz.py" "$PORT" 600)
ok $? "600 random requests and 7 raw-socket garbage sends were made"
diag "status counts: $(jq -c .counts <<<"$res")"
is "$(jq .nbad <<<"$res")" 0 "every answer is 2xx or a 4xx with the JSON error body (first problems: $(jq -c .bad <<<"$res"))"
api GET /v1/health
is "$STATUS" 200 "the daemon still serves"
api GET /v1/datasets/syn
is "$(jb .state)" ready "the resident dataset is untouched"
api GET /v1/jobs
jobs_after=$(jb '.total')
# only a body that was valid can have created a job (train from an intact spec);
# everything created must be a well-formed record
check "every job the fuzz created is a well-formed record" \
    jq -e '(.jobs | map(select(.id and .state and .type)) | length) == (.jobs | length)' <<<"$BODY"
diag "jobs: $jobs_before before, $jobs_after after"
stop_daemon
is "$DAEMON_RC" 0 "clean exit"
done_testing
