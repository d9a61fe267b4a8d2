#!/usr/bin/env bash
# tests/integration/33_durable.sh — an acknowledged submission is never lost:
# clients submit jobs (each with a submission_id) as fast as they can while
# the daemon is killed with SIGKILL, three times. After each restart every job
# whose 201/200 reached a client is in the store under that submission_id,
# no submission_id is there twice, and retrying the submissions that got no
# answer (as a client would after a crash) creates each at most once.
. "$(dirname "$0")/lib.sh"

start_daemon || bail "daemon did not start"
load_synth syn 16 "$IMG" 33
ok $? "dataset ready"

cat >"$TDIR/submit.py" <<'EOF'
import http.client, json, sys, time
port, prefix, first, ack_path = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
ack = open(ack_path, "a")
i = first
while True:
    sid = "%s-%d" % (prefix, i)
    body = json.dumps({"type": "debug", "dataset": "syn", "model": {"backbone": "dinov2-tiny"},
                       "batches": 1, "priority": -1, "submission_id": sid})
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/v1/jobs", body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
    except Exception:
        print(i)          # the first submission without an answer
        sys.exit(0)
    if r.status in (200, 201):
        ack.write("%s %s\n" % (sid, json.loads(data)["id"]))
        ack.flush()
    i += 1
EOF

next=0
for round in 1 2 3; do
    ack="$TDIR/ack$round"
    : >"$ack"
    python3 "$TDIR/submit.py" "$PORT" "r$round" 0 "$ack" >"$TDIR/unanswered$round" &
    client=$!
    # the kill lands 0.7, 0.9, 1.1 s after the first acknowledgement (not after the
    # client's start: on a loaded machine python alone may take longer than that)
    wait_for 30 test -s "$ack"
    sleep "$(awk -v r="$round" 'BEGIN{printf "%.1f", 0.5 + 0.2 * r}')"
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=
    wait "$client"
    n_ack=$(wc -l <"$ack")
    diag "round $round: $n_ack submissions acknowledged before the kill"
    start_daemon || bail "daemon did not restart (round $round)"
    lost=0
    while read -r sid id; do
        got=$(sql "SELECT id FROM jobs WHERE submission_id='$sid';")
        [ "$got" = "$id" ] || { lost=$((lost + 1)); diag "  $sid: acknowledged as $id, store has '$got'"; }
    done <"$ack"
    check "round $round: acknowledged submissions were made ($n_ack)" test "$n_ack" -gt 0
    is "$lost" 0 "round $round: every acknowledged submission survived the kill under its id"
    dup=$(sql "SELECT count(*) FROM (SELECT submission_id FROM jobs WHERE submission_id IS NOT NULL GROUP BY submission_id HAVING count(*) > 1);")
    is "$dup" 0 "round $round: no submission_id twice"
    # the client retries what got no answer: at most one job for it
    first=$(cat "$TDIR/unanswered$round")
    for k in 0 1; do
        sid="r$round-$((first + k))"
        body="{\"type\":\"debug\",\"dataset\":\"syn\",\"model\":{\"backbone\":\"dinov2-tiny\"},\"batches\":1,\"priority\":-1,\"submission_id\":\"$sid\"}"
        api POST /v1/jobs "$body"
        api POST /v1/jobs "$body"
        is "$(sql "SELECT count(*) FROM jobs WHERE submission_id='$sid';")" 1 "round $round: retried $sid twice: one job"
    done
done
check "sqlite: integrity_check" test "$(sql 'PRAGMA integrity_check;')" = ok
stop_daemon
is "$DAEMON_RC" 0 "clean exit"
done_testing
