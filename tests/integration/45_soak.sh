#!/usr/bin/env bash
# tests/integration/45_soak.sh — a daemon left running for weeks must not
# grow: tens of thousands of requests of every kind (reads, 4xx errors of
# every sort, 404s, event streams of finished jobs, Prometheus) over
# keep-alive and fresh connections, 8 clients at once, leave its resident memory, open file
# descriptors and threads where a warm-up left them. (LeakSanitizer at exit
# finds memory nobody points to any more; this finds memory and descriptors
# that are still held.) Then a dozen jobs: every worker reaped, no
# descriptor left from their pipes. ASan's quarantine is turned off for this daemon so
# that freed memory is reused and RSS means what it says.
. "$(dirname "$0")/lib.sh"

ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=0:thread_local_quarantine_size_kb=0" start_daemon ||
    bail "daemon did not start"
load_synth syn "$NSAMP" "$IMG" 3
ok $? "dataset ready"
submit "$(train_spec syn 4 '"checkpoint_every":2')"
JOB_ID=$JOB
is "$(wait_job "$JOB_ID" 300)" succeeded "a short train job (records, metrics, checkpoints to read)"

cat >"$TDIR/soak.py" <<'EOF'
import http.client, json, sys, threading
port, n, job = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
reqs = [
    ("GET", "/v1/health", None), ("GET", "/v1/status", None), ("GET", "/v1/datasets", None),
    ("GET", "/v1/datasets/syn", None), ("GET", "/v1/jobs?limit=5", None), ("GET", "/v1/jobs/" + job, None),
    ("GET", "/v1/jobs/" + job + "/metrics?name=loss", None), ("GET", "/v1/checkpoints?job=" + job, None),
    ("GET", "/metrics", None), ("GET", "/v1/jobs/" + job + "/events", None),
    ("GET", "/v1/jobs/j-999999", None), ("GET", "/v1/nope", None), ("DELETE", "/v1/health", None),
    ("POST", "/v1/jobs", b"{not json"), ("POST", "/v1/jobs", b'{"type":"train","dataset":"syn","bogus":1}'),
    ("POST", "/v1/jobs", b'{"type":"eval","dataset":"nope","checkpoint":"c-9"}'),
    ("POST", "/v1/datasets", b'{"name":"x","path":"/etc"}'), ("POST", "/v1/datasets", b"[]"),
    ("GET", "/v1/jobs?state=bogus", None), ("POST", "/v1/jobs/j-999999/cancel", None),
]
def client(k, count, codes):
    conn = None
    for i in range(count):
        if conn is None or i % 50 == 0:          # keep-alive runs, and fresh connections
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        m, path, body = reqs[(i + k) % len(reqs)]
        hdr = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(m, path, body=body, headers=hdr)
        r = conn.getresponse()
        r.read()
        codes[r.status] = codes.get(r.status, 0) + 1
        if r.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = None
    conn.close()

nthreads = 8                                     # concurrent clients: the store's read pool fills
per = [dict() for _ in range(nthreads)]
ts = [threading.Thread(target=client, args=(k, n // nthreads, per[k])) for k in range(nthreads)]
for t in ts: t.start()
for t in ts: t.join()
codes = {}
for d in per:
    for c, v in d.items():
        codes[c] = codes.get(c, 0) + v
if sum(codes.values()) != n // nthreads * nthreads:
    sys.exit("only %d of %d requests answered" % (sum(codes.values()), n))
print(json.dumps(codes, sort_keys=True))
EOF

proc_rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON_PID/status"; }
# descriptors other than the database's (the store opens up to 8 read-only
# connections on demand, each holding traind.db and its -wal: a bounded pool)
proc_fds() { ls -l "/proc/$DAEMON_PID/fd" | awk 'NR > 1 && $NF !~ /traind\.db/' | wc -l; }
proc_db_fds() { ls -l "/proc/$DAEMON_PID/fd" | awk 'NR > 1 && $NF ~ /traind\.db/' | wc -l; }
proc_threads() { awk '/^Threads:/ {print $2}' "/proc/$DAEMON_PID/status"; }
settle() { sleep 1.5; }   # connection threads finish after the client hangs up

codes=$(python3 "$TDIR/soak.py" "$PORT" 4000 "$JOB_ID")
ok $? "warm-up: 4000 requests answered ($codes)"
settle
rss0=$(proc_rss_kb) fds0=$(proc_fds) thr0=$(proc_threads)
codes=$(python3 "$TDIR/soak.py" "$PORT" 20000 "$JOB_ID")
ok $? "soak: 20000 more requests answered ($codes)"
check "every kind of answer came back (2xx, 400, 403, 404, 405)" \
    jq -e 'has("200") and has("400") and has("403") and has("404") and has("405")' <<<"$codes"
settle
rss1=$(proc_rss_kb) fds1=$(proc_fds) thr1=$(proc_threads)
diag "rss ${rss0} -> ${rss1} kB, fds ${fds0} -> ${fds1}, threads ${thr0} -> ${thr1}"
# 20000 requests: a leak of even 200 bytes a request would show as 4 MB.
check "resident memory does not grow with requests (${rss0} -> ${rss1} kB, < 3 MB)" \
    test "$((rss1 - rss0))" -lt 3072
check "no file descriptor is left open (${fds0} -> ${fds1}, not counting the database's)" test "$fds1" -le "$fds0"
dbf=$(proc_db_fds)
check "database descriptors stay within the pool (${dbf} <= 3 x (8 readers + writer))" test "$dbf" -le 27
check "connection threads return (${thr0} -> ${thr1})" test "$thr1" -le "$thr0"

# Jobs come and go for weeks: each worker is reaped and its pipes closed.
ck=$(curl -s "$URL/v1/checkpoints?job=$JOB_ID" | jq -r '.checkpoints[0].id')
fds0=$(proc_fds) rss0=$(proc_rss_kb)
ids=()
for i in $(seq 1 12); do
    submit "{\"type\":\"infer\",\"dataset\":\"syn\",\"checkpoint\":\"$ck\",\"indices\":[$i]}"
    ids+=("$JOB")
done
all=0
for id in "${ids[@]}"; do [ "$(wait_job "$id" 300)" = succeeded ] || all=1; done
ok $all "12 infer jobs one after another all succeed"
settle
zombies=$(ps -o stat= --ppid "$DAEMON_PID" 2>/dev/null | grep -c '^Z')
is "$zombies" 0 "no zombie worker left behind"
children=$(pgrep -P "$DAEMON_PID" | wc -l)
is "$children" 0 "no worker process outlives its job"
fds1=$(proc_fds) rss1=$(proc_rss_kb)
check "no descriptor left by the workers' pipes (${fds0} -> ${fds1})" test "$fds1" -le "$fds0"
diag "after 12 jobs: rss ${rss0} -> ${rss1} kB"

api GET /v1/health
is "$STATUS" 200 "still serving"
stop_daemon
is "$DAEMON_RC" 0 "clean exit"
done_testing
