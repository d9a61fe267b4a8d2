#!/usr/bin/env bash
# tests/integration/40_concurrency.sh — 200 concurrent submissions (each sent
# twice at the same time, with a submission_id): none lost, none duplicated,
# every duplicate answered with the first one's job; a reused submission_id
# with another spec is 409; idempotent resubmission; 200 concurrent cancels.
# The jobs queue behind a running train job, so nothing but the HTTP/store
# path is exercised under load.
. "$(dirname "$0")/lib.sh"

N=200
start_daemon || bail "daemon did not start"
load_synth syn "$NSAMP" "$IMG" 31
ok $? "dataset ready"

submit "$(train_spec syn 1000000 '"checkpoint_every":1000000')"; blk=$JOB
wait_job_state "$blk" running 60
ok $? "blocking job running"

mkdir -p "$TDIR/sub"
spec_of() { printf '{"type":"debug","dataset":"syn","model":{"backbone":"dinov2-tiny","heads":["hand"]},"batches":1,"batch_size":4,"priority":%d,"submission_id":"sub-%03d","seed":%d}' $(( $1 % 7 )) "$1" "$1"; }
export -f spec_of
export URL TDIR
# 2*N requests, 64 at a time; each writes "status id" to its own file.
seq 0 $((2 * N - 1)) | xargs -P 64 -I{} bash -c '
    i=$(( {} % '"$N"' )); k={}
    out=$(curl -s -m 120 -o "$TDIR/sub/$k.json" -w "%{http_code}" -H "Content-Type: application/json" \
          --data-binary "$(spec_of "$i")" "$URL/v1/jobs")
    printf "%s %s %s\n" "$out" "$i" "$(jq -r ".id // \"-\"" "$TDIR/sub/$k.json" 2>/dev/null)" >"$TDIR/sub/$k.res"'
cat "$TDIR"/sub/*.res >"$TDIR/all.res"
is "$(wc -l <"$TDIR/all.res" | tr -d ' ')" $((2 * N)) "$((2 * N)) answers"
is "$(awk '$1==201' "$TDIR/all.res" | wc -l | tr -d ' ')" "$N" "exactly $N answered 201 Created"
is "$(awk '$1==200' "$TDIR/all.res" | wc -l | tr -d ' ')" "$N" "exactly $N answered 200 (existing job)"
check "no other status" test "$(awk '$1!=200 && $1!=201' "$TDIR/all.res" | wc -l)" -eq 0
is "$(awk '{print $3}' "$TDIR/all.res" | sort -u | wc -l | tr -d ' ')" "$N" "$N distinct job ids"
is "$(awk '{print $2" "$3}' "$TDIR/all.res" | sort -u | wc -l | tr -d ' ')" "$N" "both requests of a submission got the same id"

api GET "/v1/jobs?state=queued&limit=1000"
is "$(jb '.jobs|length')" "$N" "GET /v1/jobs lists all $N queued"
check "listed ids are the returned ids" \
    diff <(jb '.jobs[].id' | sort) <(awk '{print $3}' "$TDIR/all.res" | sort -u)
api GET /v1/status
is "$(jb .queue_length)" "$N" "status: queue length $N"
is "$(sql "SELECT count(*) FROM jobs WHERE submission_id LIKE 'sub-%';")" "$N" "sqlite: $N rows"
is "$(sql "SELECT count(DISTINCT submission_id) FROM jobs WHERE submission_id LIKE 'sub-%';")" "$N" "sqlite: one row per submission id"
is "$(sql "SELECT count(*) FROM job_events e JOIN jobs j ON j.id=e.job WHERE j.submission_id LIKE 'sub-%' AND e.type='state';")" "$N" \
   "sqlite: one 'queued' state event per job"

# idempotency: same id + same spec -> 200 and the same job; other spec -> 409
api POST /v1/jobs "$(spec_of 17)"
is "$STATUS" 200 "resubmission with the same spec -> 200"
is "$(jb .id)" "$(awk '$2==17{print $3; exit}' "$TDIR/all.res")" "... returns the existing job"
expect_error 409 conflict "same submission_id, other spec" POST /v1/jobs \
    '{"type":"debug","dataset":"syn","model":{"backbone":"dinov2-tiny","heads":["hand"]},"batches":2,"batch_size":4,"priority":3,"submission_id":"sub-017","seed":17}'
api GET "/v1/jobs?limit=1000"
is "$(jb '.jobs|length')" $((N + 1)) "nothing new was created by them"

# 200 concurrent cancels of the queued jobs
awk '$1==201{print $3}' "$TDIR/all.res" | xargs -P 64 -I{} \
    curl -s -m 60 -o /dev/null -w '%{http_code}\n' -X POST "$URL/v1/jobs/{}/cancel" >"$TDIR/cancel.res"
is "$(grep -c '^200$' "$TDIR/cancel.res")" "$N" "$N concurrent cancels -> 200"
api GET "/v1/jobs?state=cancelled&limit=1000"
is "$(jb '.jobs|length')" "$N" "all $N cancelled"
api GET /v1/status
is "$(jb .queue_length)" 0 "queue empty"

api POST "/v1/jobs/$blk/cancel"
is "$(wait_job "$blk" 120)" cancelled "blocking job cancelled"
check "sqlite: integrity_check ok" test "$(sql 'PRAGMA integrity_check;')" = ok
check "daemon still serving" daemon_alive
stop_daemon TERM
is "$DAEMON_RC" 0 "traind exits 0 after SIGTERM"
done_testing
