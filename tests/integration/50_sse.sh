#!/usr/bin/env bash
# tests/integration/50_sse.sh — Server-Sent Events of GET /v1/jobs/{id}/events:
# increasing ids, event types, the stream ends after the terminal state, and a
# client that drops the connection every few events and reconnects with
# Last-Event-ID misses no event and sees none twice (checked against a full
# read of the stream after the job ended and against job_events in SQLite).
. "$(dirname "$0")/lib.sh"

start_daemon || bail "daemon did not start"
load_synth syn "$NSAMP" "$IMG" 41
ok $? "dataset ready"

# sse_client URL OUT [DROP_EVERY] [LAST_ID]: reads the stream, reconnecting
# with Last-Event-ID after every DROP_EVERY events (0 = never), until the
# server ends it after a terminal state. Writes one JSON line per event.
cat >"$TDIR/sse_client.py" <<'EOF'
import http.client, json, sys, time, urllib.parse
url, out, drop = sys.argv[1], sys.argv[2], int(sys.argv[3])
last = sys.argv[4] if len(sys.argv) > 4 else None
u = urllib.parse.urlsplit(url)
events, connects = [], 0
terminal = False
deadline = time.time() + 600
while not terminal and time.time() < deadline:
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    h = {"Accept": "text/event-stream"}
    if last is not None:
        h["Last-Event-ID"] = last
    c.request("GET", u.path, headers=h)
    r = c.getresponse()
    connects += 1
    if r.status != 200:
        print("HTTP", r.status, r.read()[:200], file=sys.stderr); sys.exit(2)
    ev, got, ended = {}, 0, True
    while True:
        line = r.fp.readline()
        if not line:
            break                      # server closed the stream
        line = line.decode().rstrip("\r\n")
        if line == "":
            if "data" in ev or "event" in ev:
                events.append({"id": ev.get("id"), "event": ev.get("event", "message"),
                               "data": ev.get("data"), "conn": connects})
                if ev.get("id") is not None:
                    last = ev["id"]
                if ev.get("event") == "state" and json.loads(ev["data"]).get("state") in ("succeeded", "failed", "cancelled"):
                    terminal = True
                got += 1
                if drop and got >= drop and not terminal:
                    ended = False
                    break              # drop the connection mid-stream
            ev = {}
            continue
        if line.startswith(":"):
            continue
        k, _, v = line.partition(":")
        v = v[1:] if v.startswith(" ") else v
        ev[k] = ev[k] + "\n" + v if k == "data" and k in ev else v
    c.close()
    if ended and not terminal:
        time.sleep(0.2)                # stream ended without a terminal state: retry
with open(out, "w") as f:
    for e in events:
        f.write(json.dumps(e) + "\n")
print(connects)
EOF

submit "$(train_spec syn 40 '"checkpoint_every":10,"eval_every":10')"; tid=$JOB
is "$STATUS" 201 "train job submitted"
EV="$URL/v1/jobs/$tid/events"
conns=$(timeout 900 python3 "$TDIR/sse_client.py" "$EV" "$TDIR/dropping.jsonl" 3)
ok $? "dropping client read until the terminal state"
check "it reconnected several times ($conns connections)" test "${conns:-0}" -ge 3
is "$(wait_job "$tid" 300)" succeeded "job succeeded"

timeout 120 python3 "$TDIR/sse_client.py" "$EV" "$TDIR/full.jsonl" 0 >/dev/null
ok $? "a fresh client reads the whole stream of the finished job, and it ends"
ids() { jq -r '.id' "$1"; }
check "ids strictly increase in the full stream" \
    bash -c 'prev=-1; while read -r i; do [ "$i" -gt "$prev" ] || exit 1; prev=$i; done' < <(ids "$TDIR/full.jsonl")
check "the reconnecting client got exactly the same ids (none missed, none twice)" \
    diff <(ids "$TDIR/full.jsonl") <(ids "$TDIR/dropping.jsonl")
check "... with the same payloads" \
    diff <(jq -c '[.id,.event,.data]' "$TDIR/full.jsonl") <(jq -c '[.id,.event,.data]' "$TDIR/dropping.jsonl")
is "$(ids "$TDIR/full.jsonl" | wc -l | tr -d ' ')" "$(sql "SELECT count(*) FROM job_events WHERE job='$tid';")" \
   "as many events as job_events rows in SQLite"
check "ids are those of SQLite" diff <(ids "$TDIR/full.jsonl") <(sql "SELECT id FROM job_events WHERE job='$tid' ORDER BY id;")
types=$(jq -r .event "$TDIR/full.jsonl" | sort -u | tr '\n' ' ')
for t in state progress metric checkpoint; do
    check "stream has '$t' events" grep -qw "$t" <<<"$types"
done
check "first event is the queued state" jq -e -s '.[0].event=="state" and (.[0].data|fromjson|.state)=="queued"' "$TDIR/full.jsonl"
check "last event is the succeeded state" jq -e -s '.[-1].event=="state" and (.[-1].data|fromjson|.state)=="succeeded"' "$TDIR/full.jsonl"
check "progress events carry step, total_steps, images_per_s, eta_s" \
    jq -e -s '[.[]|select(.event=="progress")|.data|fromjson]|length>0 and all(.[]; has("step") and has("total_steps") and has("images_per_s") and has("eta_s"))' "$TDIR/full.jsonl"

# Last-Event-ID in the middle: exactly the events after it
mid=$(sed -n '5p' "$TDIR/full.jsonl" | jq -r .id)
curl -s -m 60 -N -H "Last-Event-ID: $mid" "$EV" | awk -F': ' '/^id:/{print $2}' | tr -d '\r' >"$TDIR/after.ids"
check "Last-Event-ID $mid: exactly the events after it" diff <(ids "$TDIR/full.jsonl" | awk -v m="$mid" '$1>m') "$TDIR/after.ids"
last=$(tail -n1 "$TDIR/full.jsonl" | jq -r .id)
n=$(curl -s -m 30 -N -H "Last-Event-ID: $last" "$EV" | grep -c '^id:')
is "$n" 0 "Last-Event-ID of the final event: no events, and the stream ends"
code=$(curl -s -m 30 -o /dev/null -w '%{content_type}' "$EV")
check "content type text/event-stream ($code)" grep -q '^text/event-stream' <<<"$code"
expect_error 400 'bad_request|invalid_field' "Last-Event-ID that is not a number" GET "/v1/jobs/$tid/events" "" -H "Last-Event-ID: abc"

check "daemon still serving" daemon_alive
stop_daemon TERM
is "$DAEMON_RC" 0 "traind exits 0 after SIGTERM"
done_testing
