#!/usr/bin/env bash
# tests/integration/36_multidevice.sh — jobs on several devices, on the CPU
# backend's virtual devices (--devices 0,1,2: one worker process per rank, the
# collectives through shared memory — the same code path as NCCL on GPUs):
#   - a 2-rank and a 3-rank train job log the losses of a 1-rank job with the
#     same global batch (up to float summation order), validate and checkpoint;
#     the scheduler takes a job's devices all at once, and a 1-device job
#     queued after a 3-device one does not get ahead of it;
#   - eval and infer split over 3 devices give the 1-device results;
#   - cancel; kill -9 of one rank fails the job naming the rank, the other
#     ranks exit, the dataset stays resident, the devices are free and the
#     next job runs; SIGKILL of the daemon mid-run, restart: the 2-rank job
#     resumes and logs exactly the losses of an uninterrupted 2-rank run;
#   - bad "devices". (Sharded datasets: 37_sharded.sh.)
. "$(dirname "$0")/lib.sh"

need_mkframes
IMPR="$TDIR/frames"   # the dataset root of the import below
mkdir -p "$IMPR"
start_daemon --devices 0,1,2 --dataset-root "$IMPR" || bail "daemon did not start"
load_synth d 96 "$IMG" 5
ok $? "dataset ready on 3 virtual devices"
api GET /v1/datasets/d
check "replicated: every device holds all 96 samples" \
    jq -e '.residency == "replicated" and ([.devices[] | .samples] == [[0,96],[0,96],[0,96]]) and
           ([.devices[].bytes] | unique | length == 1)' <<<"$BODY"

spec() {   # spec DEVICES STEPS [extra] — the same job on any number of devices (global batch 12)
    printf '{"type":"train","dataset":"d","model":{"backbone":"dinov2-tiny"},"batch_size":12,"steps":%s,"seed":3,"devices":%s%s}' \
        "$2" "$1" "${3:+,$3}"
}
# the largest relative difference between two loss series of the same steps
maxrel() { jq -n --argjson a "$1" --argjson b "$2" \
    'if ($a|length) != ($b|length) or ($a|length) == 0 then 1e9 else
       [range($a|length) | (($a[.][1] - $b[.][1]) | fabs) / ($b[.][1] | fabs)] | max end'; }
started() { api GET "/v1/jobs/$1"; jb .started_at; }
finished() { api GET "/v1/jobs/$1"; jb .finished_at; }

# ---- bad "devices" ---------------------------------------------------------------------------
expect_error 422 unprocessable "devices beyond the daemon's" POST /v1/jobs "$(spec 4 2)"
check "the message says how many there are" grep -q 'this daemon has 3' <<<"$BODY"
expect_error 422 unprocessable "a device index the daemon does not have" POST /v1/jobs "$(spec '[0,5]' 2)"
is "$(jb .error.field)" "devices[1]" "the error names devices[1]"
expect_error 400 invalid_field "devices listed twice" POST /v1/jobs "$(spec '[1,1]' 2)"
expect_error 400 invalid_field "debug takes no devices" POST /v1/jobs \
    '{"type":"debug","dataset":"d","model":{"backbone":"dinov2-tiny"},"devices":2}'

# ---- 1, 2 and 3 ranks: the same losses; all-at-once placement; no starvation ----------------------
E='"eval_every":5,"checkpoint_every":5'
submit "$(spec 1 10 "$E")"; P1=$JOB
submit "$(spec 2 10 "$E")"; P2=$JOB
submit "$(spec 3 10 "$E")"; P3=$JOB
submit "$(spec 1 2)"; S=$JOB
check "four jobs submitted" test -n "$P1" -a -n "$P2" -a -n "$P3" -a -n "$S"
api GET "/v1/jobs/$P3"
is "$(jb .spec.devices)" 3 "the stored spec keeps devices"
for j in "$P1" "$P2" "$P3" "$S"; do st=$(wait_job "$j" 600); is "$st" succeeded "job $j succeeded"; done
api GET "/v1/jobs/$P3"
check "the 3-rank record: devices [0,1,2], device 0, data_parallel in the result" \
    jq -e '.devices == [0,1,2] and .device == 0 and .result.data_parallel.devices == 3 and
           .result.data_parallel.dataset == "replicated" and .result.data_parallel.global_batch == 12' <<<"$BODY"
api GET "/v1/jobs/$P2"
check "the 2-rank record: two devices" jq -e '(.devices | length) == 2 and .device == .devices[0]' <<<"$BODY"
l1=$(losses "$P1"); l2=$(losses "$P2"); l3=$(losses "$P3")
r2=$(maxrel "$l2" "$l1"); r3=$(maxrel "$l3" "$l1")
diag "largest relative loss difference over 10 steps: 2 ranks $r2, 3 ranks $r3"
check "2 ranks: the 1-rank losses up to float summation order (rel. diff $r2 <= 5e-3)" jq -en "$r2 <= 5e-3"
check "3 ranks: the 1-rank losses up to float summation order (rel. diff $r3 <= 5e-3)" jq -en "$r3 <= 5e-3"
check "step 1 is the same loss on 1, 2 and 3 ranks (1e-6)" \
    jq -en --argjson a "$l1" --argjson b "$l2" --argjson c "$l3" \
       '(($a[0][1]-$b[0][1])|fabs) < 1e-6 * $a[0][1] and (($a[0][1]-$c[0][1])|fabs) < 1e-6 * $a[0][1]'
v1=$(curl -s "$URL/v1/jobs/$P1" | jq '.result.val.mpjpe_mm'); v3=$(curl -s "$URL/v1/jobs/$P3" | jq '.result.val.mpjpe_mm')
check "validation over 3 ranks: the 1-rank val MPJPE ($v3 vs $v1 mm, 1%)" jq -en "(($v3 - $v1)|fabs) <= 0.01 * $v1"
api GET "/v1/checkpoints?job=$P3"
check "rank 0 wrote the 3-rank job's checkpoints (steps 5 and 10)" jq -e '[.checkpoints[].step] | sort == [5,10]' <<<"$BODY"
check "the 1-device and the 2-device job ran side by side (free devices are used)" \
    test "$(started "$P2")" \< "$(finished "$P1")" -a "$(started "$P1")" \< "$(finished "$P2")"
s3=$(started "$P3"); sS=$(started "$S"); f3=$(finished "$P3")
check "the 1-device job queued after the 3-device one started after it ended (held devices): $sS >= $f3" \
    test "$sS" \> "$f3" -o "$sS" = "$f3"
check "the 3-device job started once all three were free ($s3 >= both earlier jobs' ends)" \
    test "$s3" \> "$(finished "$P1")" -a "$s3" \> "$(finished "$P2")"

# ---- eval and infer over 3 devices ---------------------------------------------------------------------
api GET "/v1/checkpoints?job=$P1"; CK=$(jb '[.checkpoints[] | select(.step == 10)][0].id')
# fp32 compute for the comparisons across layouts: another batch size takes other paths through
# the matrix products, which at bf16 can flip a rounding that then runs through every later block
FP32='"precision":{"compute":"fp32"}'
submit "{\"type\":\"eval\",\"dataset\":\"d\",\"checkpoint\":\"$CK\",\"split\":\"train\",\"batch_size\":16,$FP32}"; E1=$JOB
submit "{\"type\":\"eval\",\"dataset\":\"d\",\"checkpoint\":\"$CK\",\"split\":\"train\",\"batch_size\":16,\"devices\":3,$FP32}"; E3=$JOB
IX='"indices":[[0,10],40,3],"outputs":["cls"],"batch_size":4,'"$FP32"
submit "{\"type\":\"infer\",\"dataset\":\"d\",\"checkpoint\":\"$CK\",$IX}"; I1=$JOB
submit "{\"type\":\"infer\",\"dataset\":\"d\",\"checkpoint\":\"$CK\",$IX,\"devices\":[2,0,1]}"; I3=$JOB
for j in "$E1" "$E3" "$I1" "$I3"; do st=$(wait_job "$j" 300); is "$st" succeeded "job $j succeeded"; done
a=$(curl -s "$URL/v1/jobs/$E1/result"); b=$(curl -s "$URL/v1/jobs/$E3/result")
diag "eval, 1 device: $(jq -c '[.samples, .mpjpe_mm, .pa_mpjpe_mm, .auc_0_50mm, .mean_predictor_mpjpe_mm]' <<<"$a")" \
     "eval, 3 devices: $(jq -c '[.samples, .mpjpe_mm, .pa_mpjpe_mm, .auc_0_50mm, .mean_predictor_mpjpe_mm]' <<<"$b")"
# (not bit for bit: a batch of another size, and fewer BLAS threads per rank, take other paths
# through the matrix products; the AUC counts errors in 0.1 mm bins, so one joint may change bins.
# The predictions agree to ~1e-5 relative (the infer check below); an error of ~230 mm on joints
# ~1 m from the camera moves by up to ~1e-5 * 1000 / 230 relative, hence 1e-4 on the means.)
check "eval on 3 devices: the 1-device metrics (MPJPE, PA-MPJPE, mean predictor 1e-4; AUC 1e-4; samples)" \
    jq -en --argjson a "$a" --argjson b "$b" \
       '$a.samples == $b.samples and $a.samples == 86 and (($a.auc_0_50mm - $b.auc_0_50mm) | fabs) <= 1e-4 and
        ([ "mpjpe_mm", "pa_mpjpe_mm", "mean_predictor_mpjpe_mm" ] |
         all(. as $k | (($a[$k] - $b[$k]) | fabs) <= 1e-4 * ($a[$k] | fabs) + 1e-12))'
a=$(curl -s "$URL/v1/jobs/$I1/result"); b=$(curl -s "$URL/v1/jobs/$I3/result")
jq -e '.count == 12 and ([.predictions[].index] == [0,1,2,3,4,5,6,7,8,9,40,3])' <<<"$b" >/dev/null && same_predictions "$a" "$b" >/dev/null
ok $? "infer on 3 devices: the inputs' order and the 1-device outputs (joints, confidence, cls; 1e-5)"

# ---- cancel; kill -9 of one rank --------------------------------------------------------------------------
submit "$(spec 2 1000000 '"checkpoint_every":1000000,"eval_every":0')"; C=$JOB
wait_for 120 _job_step_ge "$C" 2
ok $? "a 2-rank job runs"
api POST "/v1/jobs/$C/cancel"
is "$(wait_job "$C" 120)" cancelled "cancel of a 2-rank job: cancelled"
api GET "/v1/checkpoints?job=$C"
check "it checkpointed first (the ranks agreed on the step to stop at)" jq -e '.checkpoints | length == 1' <<<"$BODY"

submit "$(spec 3 1000000 '"checkpoint_every":1000000,"eval_every":0')"; K=$JOB
wait_for 120 _job_step_ge "$K" 2
ok $? "a 3-rank job runs"
api GET /v1/status
pids=$(jq -r --arg id "$K" '.running[] | select(.id == $id) | .pids | map(tostring) | join(" ")' <<<"$BODY")
check "status lists its three worker pids" test "$(wc -w <<<"$pids")" = 3
read -r k0 k1 k2 <<<"$pids"
kill -KILL "$k1"
is "$(wait_job "$K" 120)" failed "kill -9 of rank 1: the job failed"
api GET "/v1/jobs/$K"
err=$(jb .error)
check "the error names rank 1 and the signal: $err" grep -q "rank 1 (device 1, pid $k1).*signal 9" <<<"$err"
check "ranks 0 and 2 exited" wait_for 30 bash -c "! kill -0 $k0 2>/dev/null && ! kill -0 $k2 2>/dev/null"
is "$(dataset_state d)" ready "the dataset is still resident"
api GET /v1/status
check "every device is free again" jq -e '[.devices[].job] == [null,null,null] and (.running | length) == 0' <<<"$BODY"
check "no rendezvous segment of this daemon is left in /dev/shm" \
    bash -c "! ls /dev/shm 2>/dev/null | grep -q '^traind-$DAEMON_PID-coll-'"
submit "$(spec 3 2)"
is "$(wait_job "$JOB" 300)" succeeded "the next 3-device job runs"

# ---- an import on 3 devices: each written shard goes to every device ------------------------------------------
"$MKFRAMES" --out "$IMPR/fr" --frames 24 --width 96 --height 72 --quality 90 --threads 2 || bail "mkframes"
api POST /v1/datasets "{\"name\":\"imp\",\"import\":{\"image_size\":$IMG,\"manifest\":\"$IMPR/fr/manifest.jsonl\"}}"
is "$(wait_dataset imp 120)" ready "an import on 3 devices is ready"
api GET /v1/datasets/imp
check "replicated: every device holds all 24 frames" \
    jq -e '.residency == "replicated" and ([.devices[] | .samples] == [[0,24],[0,24],[0,24]])' <<<"$BODY"
grep -q "dataset imp: its 24 frames went to the device as they were decoded" "$DLOG"
ok $? "they went to the devices as the shards were written (no second read)"
IXI='"indices":[[0,24]],"outputs":["cls"],"batch_size":4,'"$FP32"
submit "{\"type\":\"infer\",\"dataset\":\"imp\",\"checkpoint\":\"$CK\",$IXI}"; J1=$JOB
submit "{\"type\":\"infer\",\"dataset\":\"imp\",\"checkpoint\":\"$CK\",$IXI,\"devices\":[2,0,1]}"; J3=$JOB
for j in "$J1" "$J3"; do is "$(wait_job "$j" 300)" succeeded "infer on the import, job $j"; done
same_predictions "$(curl -s "$URL/v1/jobs/$J1/result")" "$(curl -s "$URL/v1/jobs/$J3/result")" >/dev/null
ok $? "infer over the 3 devices' copies = over device 0's (1e-5): every device holds the same frames"

# ---- SIGKILL of the daemon mid-run: the 2-rank job resumes exactly -------------------------------------------
R='"checkpoint_every":10,"eval_every":0'
submit "$(spec 2 40 "$R")"; REF=$JOB
is "$(wait_job "$REF" 600)" succeeded "uninterrupted 2-rank run (40 steps)"
submit "$(spec 2 40 "$R")"; CR=$JOB
killed_resumes "$CR" "$REF" 40 '(.devices | length) == 2' --devices 0,1,2
stop_daemon TERM

done_testing
