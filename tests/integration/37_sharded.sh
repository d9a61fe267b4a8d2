#!/usr/bin/env bash
# tests/integration/37_sharded.sh — datasets sharded across devices, on the CPU backend's virtual
# devices with a capacity each (--cpu-device-memory-gb: a 96-sample dataset does not fit one whole,
# so device 0 holds samples [0,48) and device 1 [48,96)):
#   - the record (residency, the samples per device); 507 only when even the shards do not fit;
#   - "devices": left out, the job runs on every device (the stored spec and its events say so);
#     an explicit count other than every device (1 included) or a shorter list is 422 naming
#     "devices"; a debug job is 422 naming "dataset" — at submission, also while the dataset is
#     still loading (TRAIND_TEST_LOAD_GATE holds the load), and at start when the placement was
#     not known at submission (a restart reloading it): expanded, or failed saying why;
#   - train, eval and infer run data parallel on the shards; infer over indices that cross the
#     shard boundary gives, in input order, the outputs of the same checkpoint on a replicated
#     copy of the same data;
#   - SIGKILL of the daemon mid-run, restart: the sharded job resumes and logs exactly the losses
#     of an uninterrupted sharded run; a resume on another layout (3 shards, or replicated) fails,
#     the job record saying why.
. "$(dirname "$0")/lib.sh"

GATE=$TDIR/load-gate
export TRAIND_TEST_LOAD_GATE=$GATE
touch "$GATE"
SHARD2=(--devices 0,1 --cpu-device-memory-gb 0.0004)
M='"model":{"backbone":"dinov2-tiny"}'
tspec() {   # tspec STEPS [extra] — a train job on d (global batch 8)
    printf '{"type":"train","dataset":"d",%s,"batch_size":8,"steps":%s,"seed":2%s}' "$M" "$1" "${2:+,$2}"
}
# notes JOB -> the messages of its "log" events
notes() { sql "SELECT json_extract(data, '\$.message') FROM job_events WHERE job = '$1' AND type = 'log';"; }
fails_saying() {   # fails_saying JOB WHAT REGEX — the job failed, its record's error matching REGEX
    is "$(wait_job "$1" 300)" failed "$2: failed"
    api GET "/v1/jobs/$1"
    check "its record says why: $(jb .error)" grep -q "$3" <<<"$(jb .error)"
}

start_daemon "${SHARD2[@]}" || bail "daemon did not start"

# ---- while the dataset is held loading: the placement is known from the request -------------------
rm -f "$GATE"
api POST /v1/datasets "{\"name\":\"d\",\"synthetic\":{\"samples\":96,\"image_size\":$IMG,\"seed\":5}}"
is "$STATUS" 202 "load requested (held by the test gate)"
submit "$(tspec 2)"; W=$JOB
api GET "/v1/jobs/$W"
is "$(jb .spec.devices)" 2 "a train job without devices, submitted while loading: the stored spec says 2"
check "its events say why" grep -q "no \"devices\" given: dataset 'd' is sharded across 2 devices, so the job runs on all 2" <<<"$(notes "$W")"
expect_error 422 unprocessable "an explicit \"devices\": 1 while loading: 422" POST /v1/jobs "$(tspec 2 '"devices":1')"
is "$(jb .error.field)" devices "... naming the field"
check "... saying why: $(jb .error.message)" grep -q "sharded across 2 devices.*needs both" <<<"$(jb .error.message)"
expect_error 422 unprocessable "a debug job while loading: 422 at submission" POST /v1/jobs \
    "{\"type\":\"debug\",\"dataset\":\"d\",$M}"
is "$(jb .error.field)" dataset "... naming the dataset"
check "... saying why: $(jb .error.message)" grep -q "a debug job, which runs on one device, cannot use it" <<<"$(jb .error.message)"
is "$(dataset_state d)" loading "the dataset was still loading through all of that"
touch "$GATE"
is "$(wait_dataset d 180)" ready "the dataset is loaded"
is "$(wait_job "$W" 300)" succeeded "the job submitted while it loaded ran"
api GET "/v1/jobs/$W"
check "on both devices, data parallel on the shards" \
    jq -e '.devices == [0,1] and .result.data_parallel.dataset == "sharded"' <<<"$BODY"

api GET /v1/datasets/d
check "sharded: device 0 holds samples [0,48), device 1 [48,96), each half the bytes" \
    jq -e '.residency == "sharded" and ([.devices[] | .samples] == [[0,48],[48,96]]) and
           (.devices[0].bytes > 0) and (.devices[0].bytes == .devices[1].bytes)' <<<"$BODY"
expect_error 507 insufficient_storage "a dataset whose shards do not fit either: 507" POST /v1/datasets \
    "{\"name\":\"big\",\"synthetic\":{\"samples\":400,\"image_size\":$IMG,\"seed\":1}}"
check "the message gives both the replicated and the sharded need" grep -q "sharded across the 2 devices" <<<"$BODY"

# ---- "devices" on a ready sharded dataset ---------------------------------------------------------
for dv in 1 '[0]' '[1]'; do
    expect_error 422 unprocessable "train with \"devices\": $dv: 422" POST /v1/jobs "$(tspec 2 "\"devices\":$dv")"
    is "$(jb .error.field)" devices "... naming devices"
done
expect_error 422 unprocessable "infer with \"devices\": 1: 422" POST /v1/jobs \
    "{\"type\":\"infer\",\"dataset\":\"d\",$M,\"indices\":[0],\"devices\":1}"
expect_error 422 unprocessable "a debug job on a ready sharded dataset: 422" POST /v1/jobs \
    "{\"type\":\"debug\",\"dataset\":\"d\",$M}"
is "$(sql "SELECT count(*) FROM jobs;")" 1 "sqlite: no refused job was recorded"

# ---- train, eval, infer on the shards ------------------------------------------------------------------
submit "$(tspec 6 '"eval_every":3,"checkpoint_every":3')"; T=$JOB
api GET "/v1/jobs/$T"
is "$(jb .spec.devices)" 2 "a job without devices gets every device (the stored spec says so)"
submit "$(tspec 2 '"devices":[1,0]')"; L=$JOB
check "a list of both devices is accepted" test -n "$L"
is "$(wait_job "$T" 600)" succeeded "training on the sharded dataset succeeded"
api GET "/v1/jobs/$T"
check "it ran data parallel on the shards, validated and checkpointed" \
    jq -e '.result.data_parallel.dataset == "sharded" and .devices == [0,1] and (.result.val.mpjpe_mm | type) == "number"' <<<"$BODY"
is "$(wait_job "$L" 600)" succeeded "the job listing [1,0] succeeded"
api GET "/v1/checkpoints?job=$T"; CK=$(jb '.checkpoints[-1].id')
submit "{\"type\":\"eval\",\"dataset\":\"d\",\"checkpoint\":\"$CK\"}"
is "$(wait_job "$JOB" 300)" succeeded "eval on the sharded dataset (every device)"
api GET "/v1/jobs/$JOB/result"
is "$(jb .samples)" 10 "it evaluated the 10 validation samples, held by device 1"
# fp32 compute: another split over ranks takes other paths through the matrix products, which
# at bf16 can flip a rounding that then runs through every later block (~1e-2 on a sample)
IX="\"indices\":[[44,53],95,0,47,48,[10,12]],\"outputs\":[\"cls\"],\"batch_size\":4,\"precision\":{\"compute\":\"fp32\"}"
submit "{\"type\":\"infer\",\"dataset\":\"d\",\"checkpoint\":\"$CK\",$IX}"; IS=$JOB
is "$(wait_job "$IS" 300)" succeeded "infer over indices across the shard boundary"
SHARDED_INFER=$(curl -s "$URL/v1/jobs/$IS/result")
check "in input order" jq -e '[.predictions[].index] == [44,45,46,47,48,49,50,51,52,95,0,47,48,10,11]' <<<"$SHARDED_INFER"

# ---- SIGKILL of the daemon mid-run: the sharded job resumes exactly ---------------------------------
# (40 steps: the kill must land mid-run, after the step-5 checkpoint is recorded, and that record
# comes a step or more after step 5 now that checkpoints are written beside training)
R='"checkpoint_every":5,"eval_every":0'
submit "$(tspec 40 "$R")"; REF=$JOB
is "$(wait_job "$REF" 600)" succeeded "uninterrupted sharded run (40 steps)"
submit "$(tspec 40 "$R")"; CR=$JOB
killed_resumes "$CR" "$REF" 40 '.devices == [0,1]' "${SHARD2[@]}"
api GET "/v1/checkpoints?job=$CR"; CKR=$(jb '.checkpoints[-1].id')

# ---- at start: the placement was not known at submission (a restart reloads the dataset) ---------
submit "$(tspec 1000000 '"checkpoint_every":2,"eval_every":0')"; X=$JOB
wait_for 300 _has_ckpt "$X"
ok $? "a long sharded run checkpointed"
stop_daemon KILL
rm -f "$GATE"
start_daemon --devices 0,1,2 --cpu-device-memory-gb 0.0004 || bail "daemon did not restart on 3 devices"
submit "$(tspec 2)"; A=$JOB
submit "$(tspec 2 '"devices":1')"; E1=$JOB
submit "{\"type\":\"debug\",\"dataset\":\"d\",$M}"; DBG=$JOB
submit "$(tspec 4 "\"resume_from\":\"$CKR\"")"; RS=$JOB
check "while the dataset reloads (placement unknown) four jobs are accepted" test -n "$A" -a -n "$E1" -a -n "$DBG" -a -n "$RS"
api GET "/v1/jobs/$A"
is "$(jb '.spec.devices // "absent"')" absent "the job without devices has none in its spec yet"
touch "$GATE"
is "$(wait_dataset d 180)" ready "the dataset is loaded again"
api GET /v1/datasets/d
check "now sharded across 3 devices" jq -e '.residency == "sharded" and ([.devices[] | .samples] == [[0,32],[32,64],[64,96]])' <<<"$BODY"
fails_saying "$X" "the interrupted 2-shard run, requeued on 3 shards" "sharded across 3 devices.*needs all of them"
is "$(wait_job "$A" 300)" succeeded "the job without devices ran"
api GET "/v1/jobs/$A"
check "on every device" jq -e '.devices == [0,1,2] and .result.data_parallel.devices == 3' <<<"$BODY"
check "its events say why" grep -q "sharded across 3 devices, so the job runs on all 3" <<<"$(notes "$A")"
fails_saying "$E1" "the job with an explicit \"devices\": 1, at start" "sharded across 3 devices.*needs all of them"
check "... and it never ran" jq -e '.started_at == null and .devices == null' <<<"$BODY"
fails_saying "$DBG" "the debug job, at start" "a debug job, which runs on one device, cannot use it"
fails_saying "$RS" "resume_from a 2-shard checkpoint on 3 shards" "resume:.*2 shards.*3"
stop_daemon TERM

# ---- the same data replicated: the same predictions; a sharded checkpoint does not resume --------
start_daemon --devices 0,1 || bail "daemon did not restart without a capacity"
is "$(wait_dataset d 180)" ready "the dataset is loaded again"
api GET /v1/datasets/d
check "replicated now" jq -e '.residency == "replicated"' <<<"$BODY"
submit "{\"type\":\"infer\",\"dataset\":\"d\",\"checkpoint\":\"$CK\",$IX}"; IR=$JOB
submit "$(tspec 4 "\"resume_from\":\"$CKR\"")"; RR=$JOB
is "$(wait_job "$IR" 300)" succeeded "infer of the same indices on the replicated copy"
same_predictions "$(curl -s "$URL/v1/jobs/$IR/result")" "$SHARDED_INFER" >/dev/null
ok $? "sharded and replicated: the same predictions in the same order (joints, confidence, cls; 1e-5)"
fails_saying "$RR" "resume_from a sharded checkpoint on the replicated dataset" "resume:.*sharded.*replicated"
stop_daemon TERM

# ---- an import whose placement is sharded: loaded from its shards once written -----------------------------
need_mkframes
IMPR="$TDIR/frames"
mkdir -p "$IMPR"
"$MKFRAMES" --out "$IMPR/fr" --frames 96 --width 96 --height 72 --quality 90 --threads 2 || bail "mkframes"
start_daemon "${SHARD2[@]}" --dataset-root "$IMPR" || bail "daemon did not restart with a dataset root"
is "$(wait_dataset d 180)" ready "d loaded again, sharded"
api DELETE /v1/datasets/d   # room for the import
api POST /v1/datasets "{\"name\":\"imp\",\"import\":{\"image_size\":$IMG,\"manifest\":\"$IMPR/fr/manifest.jsonl\"}}"
is "$(wait_dataset imp 120)" ready "an import of 96 frames on the 2 small devices is ready"
api GET /v1/datasets/imp
check "sharded: [0,48) and [48,96)" \
    jq -e '.residency == "sharded" and ([.devices[] | .samples] == [[0,48],[48,96]])' <<<"$BODY"
! grep -q "dataset imp: its .* went to the device" "$DLOG"
ok $? "sharded: not streamed while decoding, loaded from the written shards"
stop_daemon TERM
done_testing
