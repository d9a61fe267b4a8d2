#!/usr/bin/env bash
# tests/integration/18_bounds.sh — requests with bounded cost (SPEC §3), on a
# real daemon:
#   - a 32 MiB job spec of 16.7M indices is refused at once (400 naming
#     `indices` and the limit) and the daemon's peak RSS stays bounded; 4097
#     explicit indices are refused by the validator; indices past the dataset
#     are 422 naming the entry;
#   - ranges [begin, end) select the right samples: infer by ranges equals
#     infer by the explicit list, prediction for prediction;
#   - GET /v1/jobs?limit=1000 over large-spec jobs returns summaries (no
#     spec), and neither it nor 4 SSE streams open on a large-spec job read a
#     job record (traind_job_records_read_total does not move; the daemon's CPU
#     time over the window is reported, not asserted);
#   - batch_size 4096 on a 64-sample dataset runs with the effective batch 58,
#     recorded in the spec and said in the job's events;
#   - a job whose memory estimate exceeds the room (--job-memory-gb) is refused
#     507 before any worker starts, and a queued one that no longer fits at
#     start fails with the estimate instead of starting;
#   - retention (--keep-jobs 5): after 9 ended jobs only the 5 newest remain
#     with their events and metrics, plus a train job whose checkpoint is still
#     recorded; the ended infer job's spec kept sha256 but not the pixels, and
#     its resubmission (same submission_id) still matches; deleting the
#     checkpoint lets the train job go with its files.
. "$(dirname "$0")/lib.sh"

sqlis() { [ "$(sql "$1")" = "$2" ]; }
proc_kb() { awk -v k="$2:" '$1==k{print $2}' "/proc/$1/status"; }
records_read() { curl -s -m 10 "$URL/metrics" | awk '$1=="traind_job_records_read_total"{print $2}'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

start_daemon --job-memory-gb 1 || bail "daemon did not start"
load_synth syn "$NSAMP" "$IMG" 5
ok $? "dataset syn ready"
load_synth s64 64 "$IMG" 6
ok $? "dataset s64 (64 samples) ready"

# ---- a huge index list: refused before it is parsed, memory bounded ---------------------------
python3 - "$TDIR/big.json" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    f.write('{"type":"infer","dataset":"syn","model":{"backbone":"dinov2-tiny"},"indices":[')
    f.write("0," * (16 << 20))   # 16.7M indices, 32 MiB
    f.write('0]}')
EOF
hwm0=$(proc_kb "$DAEMON_PID" VmHWM)
t0=$(date +%s.%N)
expect_error 400 invalid_field "16.7M indices (32 MiB)" POST /v1/jobs "@$TDIR/big.json"
t1=$(date +%s.%N)
is "$(jb .error.field)" indices "... the error names the field 'indices'"
check "... and says the limit and the range form" grep -q '4096.*\[begin, end)' <<<"$(jb .error.message)"
hwm1=$(proc_kb "$DAEMON_PID" VmHWM)
diag "refused in $(python3 -c "print(round($t1-$t0,2))") s; peak RSS $((hwm0 / 1024)) -> $((hwm1 / 1024)) MB"
# jansson would build ~16.7M values (GBs) to say the same; the body itself is 32 MiB
check "peak RSS grew by less than 256 MB ($(( (hwm1 - hwm0) / 1024 )) MB)" test $((hwm1 - hwm0)) -lt $((256 * 1024))
python3 -c "import json; print(json.dumps({'type':'eval','dataset':'syn','model':{'backbone':'dinov2-tiny'},'indices':list(range(4097))}))" >"$TDIR/4097.json"
expect_error 400 invalid_field "4097 explicit indices" POST /v1/jobs "@$TDIR/4097.json"
check "... 'at most 4096'" grep -q 'indices has 4097 entries; at most 4096' <<<"$(jb .error.message)"
expect_error 422 unprocessable "a range past the dataset's $NSAMP samples" POST /v1/jobs \
    '{"type":"infer","dataset":"syn","model":{"backbone":"dinov2-tiny"},"indices":[1,[90,97]]}'
is "$(jb .error.field)" "indices[1]" "... names indices[1]"
expect_error 400 invalid_field "an empty range" POST /v1/jobs \
    '{"type":"infer","dataset":"syn","model":{"backbone":"dinov2-tiny"},"indices":[[5,5]]}'
check "daemon still serving" daemon_alive

# ---- ranges select the right samples ------------------------------------------------------------
infer_spec() { printf '{"type":"infer","dataset":"syn","model":{"backbone":"dinov2-tiny"},"seed":9,"batch_size":4,"indices":%s}' "$1"; }
submit "$(infer_spec '[[10,20],3,[40,42]]')"; jr=$JOB
is "$STATUS" 201 "infer by ranges [[10,20],3,[40,42]] submitted"
check "the stored spec keeps the ranges" jq -e '.spec.indices==[[10,20],3,[40,42]]' <<<"$BODY"
submit "$(infer_spec '[10,11,12,13,14,15,16,17,18,19,3,40,41]')"; jl=$JOB
is "$STATUS" 201 "infer by the explicit list submitted"
is "$(wait_job "$jr" 300)" succeeded "infer by ranges succeeded"
is "$(wait_job "$jl" 300)" succeeded "infer by list succeeded"
api GET "/v1/jobs/$jr/result"; RR=$BODY
api GET "/v1/jobs/$jl/result"; RL=$BODY
is "$(jq -c '[.predictions[].index]' <<<"$RR")" "[10,11,12,13,14,15,16,17,18,19,3,40,41]" "ranges resolve to those 13 samples, in order"
check "infer by ranges == infer by list (indices, joints, confidences)" \
    test "$(jq -c '[.predictions[]|[.index,.joints,.confidence]]' <<<"$RR")" = "$(jq -c '[.predictions[]|[.index,.joints,.confidence]]' <<<"$RL")"

# ---- effective batch: 4096 on a 64-sample dataset ------------------------------------------------
submit '{"type":"train","dataset":"s64","model":{"backbone":"dinov2-tiny"},"batch_size":4096,"steps":2,"checkpoint_every":0,"eval_every":0}'; jb4=$JOB
is "$STATUS" 201 "batch_size 4096 on 64 samples is accepted"
is "$(jb .spec.batch_size)" 58 "the stored spec holds the effective batch: 58 (the 0.9 training split of 64)"
is "$(wait_job "$jb4" 300)" succeeded "and the job runs"
check "its events say so (requested 4096, effective 58)" \
    grep -q '"requested_batch_size":4096' <<<"$(curl -s -m 30 "$URL/v1/jobs/$jb4/events" | grep '^data:')"

# ---- memory estimate against the room ------------------------------------------------------------
n_before=$(sql "SELECT count(*) FROM jobs;")
started_before=$(grep -c 'job started' "$DLOG")
expect_error 507 insufficient_storage "dinov2-large training, estimate over --job-memory-gb 1" POST /v1/jobs \
    '{"type":"train","dataset":"syn","model":{"backbone":"dinov2-large"},"batch_size":32,"steps":1}'
check "... the message gives the estimate and the room" \
    grep -qE 'needs about [0-9.]+ GB \(parameters .*AdamW moments .*activations .* has room for 1\.000 GB' <<<"$(jb .error.message)"
is "$(sql "SELECT count(*) FROM jobs;")" "$n_before" "no job was recorded"
is "$(grep -c 'job started' "$DLOG")" "$started_before" "no worker was started"
submit '{"type":"eval","dataset":"syn","model":{"backbone":"dinov2-small"},"batch_size":8}'
is "$STATUS" 201 "a job that fits (dinov2-small eval, batch 8) is accepted"
is "$(wait_job "$JOB" 300)" succeeded "... and runs"

# ---- listing and SSE read no job record -----------------------------------------------------------
# a long train job holds the device; large-spec infer jobs (about 1 MB of inline images each) queue behind it
submit "$(train_spec syn 100000 '"checkpoint_every":0,"eval_every":0')"; long=$JOB
wait_job_state "$long" running 120
ok $? "a long train job runs"
python3 - "$TDIR/img.json" <<'EOF'
import base64, json, os, sys
img = {"u8_hwc_b64": base64.b64encode(os.urandom(64 * 64 * 3)).decode(), "height": 64, "width": 64}
json.dump({"type": "infer", "dataset": "syn", "model": {"backbone": "dinov2-tiny"}, "images": [img] * 85},
          open(sys.argv[1], "w"))
EOF
big=()
for i in $(seq 1 12); do api POST /v1/jobs "@$TDIR/img.json"; big+=("$(jb .id)"); done
is "$(sql "SELECT count(*) FROM jobs WHERE state='queued' AND length(spec) > 1000000;")" 12 "12 queued jobs with 1.4 MB specs"
r0=$(records_read)
api GET "/v1/jobs?limit=1000"
r1=$(records_read)
is "$STATUS" 200 "GET /v1/jobs?limit=1000"
check "every listed job is a summary: no spec, plan, result or metrics" \
    jq -e '(.jobs|length)>=12 and all(.jobs[]; (has("spec") or has("plan") or has("result") or has("metrics"))|not)' <<<"$BODY"
check "summaries carry id, type, state, dataset, priority, progress, timestamps, error" \
    jq -e 'all(.jobs[]; has("id") and has("type") and has("state") and has("dataset") and has("priority") and has("progress") and has("created_at") and has("finished_at") and has("error"))' <<<"$BODY"
check "the listing is small ($(wc -c <"$TDIR/last_body") bytes for $(jb '.jobs|length') jobs)" test "$(wc -c <"$TDIR/last_body")" -lt 50000
is "$r1" "$r0" "the listing read no job record"
api GET "/v1/jobs/${big[0]}"
check "GET /v1/jobs/{id} still returns the whole record with its images" jq -e '.spec.images|length==85' <<<"$BODY"

r0=$(records_read)
c0=$(cpu_ticks "$DAEMON_PID")
for i in 1 2 3 4; do
    curl -s -N -m 4 "$URL/v1/jobs/${big[0]}/events" >"$TDIR/sse$i.txt" 2>/dev/null &
    _bg_pids+=($!)
done
curl -s -N -m 4 "$URL/v1/jobs/$long/events" >"$TDIR/sse-long.txt" 2>/dev/null &
_bg_pids+=($!)
sleep 4.5
c1=$(cpu_ticks "$DAEMON_PID")
r1=$(records_read)
check "4 streams on the large-spec job got its events" grep -q 'event: state' "$TDIR/sse1.txt"
check "the train job's stream got progress events meanwhile (which wake every stream)" grep -q 'event: progress' "$TDIR/sse-long.txt"
is "$r1" "$r0" "5 SSE streams over 4 s read no job record"
diag "daemon CPU over the SSE window: $(( (c1 - c0) * 1000 / $(getconf CLK_TCK) )) ms (4 s, 5 streams, a job training)"
api POST "/v1/jobs/$long/cancel"
for id in "${big[@]}"; do api POST "/v1/jobs/$id/cancel" >/dev/null; done
is "$(wait_job "$long" 120)" cancelled "the long job is cancelled"
check "daemon still serving" daemon_alive
stop_daemon TERM
is "$DAEMON_RC" 0 "traind exits 0"

# ---- retention: --keep-jobs 5 ------------------------------------------------------------------------
STATE=$TDIR/state2 PORT=
start_daemon --keep-jobs 5 || bail "second daemon did not start"
load_synth syn "$NSAMP" "$IMG" 5
ok $? "dataset ready (second daemon)"
submit "$(train_spec syn 4 '"checkpoint_every":4,"eval_every":0')"; tj=$JOB
is "$(wait_job "$tj" 300)" succeeded "a train job with a checkpoint"
ck=$(sql "SELECT id FROM checkpoints WHERE job='$tj';")
check "its checkpoint is recorded ($ck)" test -n "$ck"
tiny_infer() { printf '{"type":"infer","dataset":"syn","model":{"backbone":"dinov2-tiny"},"indices":[%s]}' "$1"; }
ids=()
# the first one writes a result file (80 images' patch tokens: 80 KB)
submit '{"type":"infer","dataset":"syn","model":{"backbone":"dinov2-tiny"},"indices":[[0,80]],"outputs":["patch_tokens"]}'
ids+=("$JOB")
is "$(wait_job "$JOB" 300)" succeeded "ended job 1 of 8 ($JOB), with a result file"
check "... in $STATE/work/results/$JOB" test -s "$STATE/work/results/$JOB/features.safetensors"
for i in 2 3 4 5 6 7; do
    submit "$(tiny_infer "$i")"
    ids+=("$JOB")
    is "$(wait_job "$JOB" 300)" succeeded "ended job $i of 8 ($JOB)"
done
python3 - "$TDIR/img1.json" <<'EOF'
import base64, json, sys
img = {"u8_hwc_b64": base64.b64encode(bytes((7 * i) % 256 for i in range(28 * 28 * 3))).decode(),
       "height": 28, "width": 28}
json.dump({"type": "infer", "dataset": "syn", "model": {"backbone": "dinov2-tiny"}, "submission_id": "img-1",
           "images": [img, img]}, open(sys.argv[1], "w"))
EOF
api POST /v1/jobs "@$TDIR/img1.json"; ji=$(jb .id)
is "$STATUS" 201 "ended job 8 of 8: infer on 2 inline images ($ji)"
ids+=("$ji")
is "$(wait_job "$ji" 300)" succeeded "... succeeded"
wait_for 20 sqlis "SELECT count(*) FROM jobs WHERE state IN ('succeeded','failed','cancelled','interrupted');" 6
kept=$(sql "SELECT group_concat(id, ' ') FROM (SELECT id FROM jobs ORDER BY seq);")
want="$tj ${ids[*]:3}"
is "$kept" "$want" "the 5 newest ended jobs remain, and the train job its checkpoint belongs to"
is "$(sql "SELECT count(*) FROM job_events WHERE job NOT IN (SELECT id FROM jobs);")" 0 "no events of deleted jobs remain"
is "$(sql "SELECT count(*) FROM metrics WHERE job NOT IN (SELECT id FROM jobs);") $(sql "SELECT count(*) FROM metrics_latest WHERE job NOT IN (SELECT id FROM jobs);")" "0 0" "no metrics of deleted jobs remain"
check "the kept jobs keep their events" test "$(sql "SELECT count(DISTINCT job) FROM job_events;")" -eq 6
check "the train job keeps its metrics" test "$(sql "SELECT count(*) FROM metrics WHERE job='$tj';")" -gt 0
api GET "/v1/jobs/${ids[0]}"
is "$STATUS" 404 "a deleted job is 404"
api GET "/v1/checkpoints/$ck"
is "$STATUS" 200 "the checkpoint is still there"
check "... with its files" test -s "$(jb .path)/model.safetensors"
check "every checkpoint record's job exists" test "$(sql "SELECT count(*) FROM checkpoints WHERE job NOT IN (SELECT id FROM jobs);")" -eq 0
check "the deleted job's result file went with it" test ! -e "$STATE/work/results/${ids[0]}"
# the ended infer job: pixels gone from the stored spec, sha256 kept
is "$(sql "SELECT instr(spec, 'u8_hwc_b64') FROM jobs WHERE id='$ji';")" 0 "the ended infer job's stored spec has no pixels"
api GET "/v1/jobs/$ji"
check "... and keeps height, width and sha256 of each image" \
    jq -e '(.spec.images|length)==2 and all(.spec.images[]; has("sha256") and .height==28 and .width==28 and (has("u8_hwc_b64")|not))' <<<"$BODY"
api POST /v1/jobs "@$TDIR/img1.json"
is "$STATUS $(jb .id)" "200 $ji" "resubmitting it (same submission_id, same images) returns the job: 200"
# deleting the last checkpoint lets the train job go at the next end of a job
api DELETE "/v1/checkpoints/$ck"
check "checkpoint deleted" test "$STATUS" = 204 -o "$STATUS" = 200
submit "$(tiny_infer 9)"
is "$(wait_job "$JOB" 300)" succeeded "one more job ends"
wait_for 20 sqlis "SELECT count(*) FROM jobs WHERE id='$tj';" 0
ok $? "the train job without checkpoints is deleted now"
check "... and its checkpoint directory" test ! -e "$STATE/checkpoints/$tj"
is "$(sql "SELECT count(*) FROM jobs;")" 5 "5 jobs in the store"

# ---- the start-time check: a queued job that no longer fits fails before its worker starts ----------
submit "$(train_spec syn 100000 '"checkpoint_every":0,"eval_every":0')"; long=$JOB
wait_job_state "$long" running 120
submit '{"type":"train","dataset":"syn","model":{"backbone":"dinov2-small"},"batch_size":8,"steps":1,"priority":10}'; qj=$JOB
is "$STATUS" 201 "a dinov2-small train job queues behind a running one (first in the queue after a restart)"
stop_daemon TERM
start_daemon --keep-jobs 5 --job-memory-gb 0.05 || bail "third start failed"
wait_for 120 sqlis "SELECT state FROM jobs WHERE id='$qj';" failed
ok $? "restarted with --job-memory-gb 0.05, it fails instead of starting"
api GET "/v1/jobs/$qj"
check "its error gives the estimate and the room" grep -qE 'needs about .* has room for 0\.050 GB' <<<"$(jb .error)"
check "no worker started for it" test -z "$(grep -F "[$qj] job started" "$DLOG")"
check "daemon still serving" daemon_alive
stop_daemon TERM
is "$DAEMON_RC" 0 "traind exits 0"
done_testing
