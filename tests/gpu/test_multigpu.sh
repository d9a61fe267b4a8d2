#!/usr/bin/env bash
# tests/gpu/test_multigpu.sh — on a machine with 2 or more GPUs (run by
# tests/gpu/run_device.sh; lend kind nvidia-h100-x2): jobs over several GPUs
# through NCCL (libnccl.so.2 loaded at run time; TRAIND_NCCL_LIB names it),
# the same checks as tests/integration/36_multidevice.sh on the CPU backend:
#   - a train job on 2 GPUs logs the losses of the 1-GPU job with the same
#     global batch (bf16 plan: 2e-2 relative over 20 steps), validates and
#     checkpoints (the parameter checksum across ranks passes);
#   - eval and infer over 2 GPUs equal the 1-GPU results (1e-3);
#   - kill -9 of rank 1: the job fails naming it, rank 0 ends (the watcher
#     of the rendezvous segment), the dataset stays resident on both GPUs, the
#     next 2-GPU job runs;
#   - a dataset the devices cannot each hold whole (--memory-reserve-gb set
#     so: 0.45 GB left for a 0.6 GB dataset) is sharded across the GPUs and
#     trains on both.
# TAP; skipped with fewer than 2 GPUs.
. "$(dirname "$0")/../integration/lib.sh"

TRAIND_BIN=${TRAIND_BIN_GPU:-$ROOT/build/release/traind}
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
[ "${ngpu:-0}" -ge 2 ] || { echo "1..0 # SKIP $ngpu GPU(s); needs 2 or more"; exit 0; }

start_daemon --backend cuda --devices 0,1 || bail "daemon did not start: $(tail -5 "$DLOG")"
load_synth syn 256 56 5
ok $? "synthetic dataset resident on both GPUs"
api GET /v1/datasets/syn
check "replicated on GPUs 0 and 1" jq -e '.residency == "replicated" and ([.devices[].samples] == [[0,256],[0,256]])' <<<"$BODY"

spec() { printf '{"type":"train","dataset":"syn","model":{"backbone":"dinov2-small"},"batch_size":32,"steps":%s,"seed":3,"devices":%s%s}' \
    "$2" "$1" "${3:+,$3}"; }
losses() { curl -s "$URL/v1/jobs/$1/metrics?name=loss" | jq -c '[.[] | [.step, .value]] | unique_by(.[0])'; }
maxrel() { jq -n --argjson a "$1" --argjson b "$2" \
    'if ($a|length) != ($b|length) or ($a|length) == 0 then 1e9 else
       [range($a|length) | (($a[.][1] - $b[.][1]) | fabs) / ($b[.][1] | fabs)] | max end'; }

submit "$(spec 1 20 '"eval_every":10,"checkpoint_every":10')"; P1=$JOB
submit "$(spec 2 20 '"eval_every":10,"checkpoint_every":10')"; P2=$JOB
is "$(wait_job "$P1" 600)" succeeded "1-GPU train succeeded"
is "$(wait_job "$P2" 600)" succeeded "2-GPU train (NCCL) succeeded"
api GET "/v1/jobs/$P2"
check "the 2-GPU record: devices [0,1], data_parallel" \
    jq -e '.devices == [0,1] and .result.data_parallel.devices == 2' <<<"$BODY"
diag "images/s: 1 GPU $(curl -s "$URL/v1/jobs/$P1" | jq .result.images_per_s), 2 GPUs $(jb .result.images_per_s)"
r=$(maxrel "$(losses "$P2")" "$(losses "$P1")")
diag "largest relative loss difference over 20 steps: $r"
check "2 GPUs: the 1-GPU losses up to summation order (rel. $r <= 2e-2)" jq -en "$r <= 2e-2"
api GET "/v1/checkpoints?job=$P2"
check "rank 0 wrote the checkpoints (steps 10 and 20; the ranks' parameters agreed)" \
    jq -e '[.checkpoints[].step] | sort == [10,20]' <<<"$BODY"
CK=$(jb '[.checkpoints[] | select(.step == 20)][0].id')

submit "{\"type\":\"eval\",\"dataset\":\"syn\",\"checkpoint\":\"$CK\",\"split\":\"train\",\"batch_size\":64}"; E1=$JOB
submit "{\"type\":\"eval\",\"dataset\":\"syn\",\"checkpoint\":\"$CK\",\"split\":\"train\",\"batch_size\":64,\"devices\":2}"; E2=$JOB
submit "{\"type\":\"infer\",\"dataset\":\"syn\",\"checkpoint\":\"$CK\",\"indices\":[[0,20],200,7],\"devices\":2}"; I2=$JOB
for j in "$E1" "$E2" "$I2"; do is "$(wait_job "$j" 300)" succeeded "job $j succeeded"; done
a=$(curl -s "$URL/v1/jobs/$E1/result"); b=$(curl -s "$URL/v1/jobs/$E2/result")
check "eval over 2 GPUs: the 1-GPU MPJPE and sample count (1e-3)" \
    jq -en --argjson a "$a" --argjson b "$b" '$a.samples == $b.samples and (($a.mpjpe_mm - $b.mpjpe_mm) | fabs) <= 1e-3 * $a.mpjpe_mm'
api GET "/v1/jobs/$I2/result"
check "infer over 2 GPUs: 22 predictions in input order" \
    jq -e '.count == 22 and ([.predictions[].index] == ([range(20)] + [200, 7]))' <<<"$BODY"

submit "$(spec 2 1000000 '"eval_every":0,"checkpoint_every":0')"; K=$JOB
wait_for 180 _job_step_ge "$K" 3
ok $? "a long 2-GPU job runs"
api GET /v1/status
read -r k0 k1 <<<"$(jq -r --arg id "$K" '.running[] | select(.id == $id) | .pids | map(tostring) | join(" ")' <<<"$BODY")"
kill -KILL "$k1"
is "$(wait_job "$K" 120)" failed "kill -9 of rank 1: the job failed"
api GET "/v1/jobs/$K"
check "the error names rank 1: $(jb .error)" grep -q "rank 1" <<<"$(jb .error)"
check "rank 0 ended too" wait_for 30 bash -c "! kill -0 $k0 2>/dev/null"
is "$(dataset_state syn)" ready "the dataset is still resident"
api GET /v1/status
check "both GPUs are free" jq -e '[.devices[].job] == [null,null]' <<<"$BODY"
submit "$(spec 2 5)"
is "$(wait_job "$JOB" 300)" succeeded "the next 2-GPU job runs"
stop_daemon TERM

# sharded: reserve all but 0.45 GB of each GPU's free memory (as the daemon sees it, its
# CUDA contexts made) for jobs, so that a 0.6 GB dataset only fits halved
STATE=$TDIR/state2; unset PORT
start_daemon --backend cuda --devices 0,1 || bail "daemon did not start"
api GET /v1/status
reserve=$(jq '[.devices[] | (.memory.total - .memory.used)] | min / 1e9 - 0.45' <<<"$BODY")
stop_daemon TERM
diag "memory reserve for jobs: $reserve GB per GPU"
start_daemon --backend cuda --devices 0,1 --memory-reserve-gb "$reserve" || bail "daemon did not start"
load_synth big 8000 112 3
ok $? "a 0.6 GB dataset with 0.45 GB per GPU left for datasets is loaded"
api GET /v1/datasets/big
check "sharded: GPU 0 holds [0,4000), GPU 1 [4000,8000)" \
    jq -e '.residency == "sharded" and ([.devices[].samples] == [[0,4000],[4000,8000]])' <<<"$BODY"
submit '{"type":"train","dataset":"big","model":{"backbone":"dinov2-small"},"batch_size":64,"steps":20,"eval_every":10,"checkpoint_every":10}'
is "$(wait_job "$JOB" 600)" succeeded "training on the sharded dataset (both GPUs) succeeded"
api GET "/v1/jobs/$JOB"
check "it ran on both GPUs, sharded" jq -e '.devices == [0,1] and .result.data_parallel.dataset == "sharded"' <<<"$BODY"
grep -q "invariant failed\|CUDA error\|cuBLAS error\|NCCL" "$DLOG" && grep "NCCL\|CUDA error" "$DLOG" | head -5 | sed 's/^/# /'
ok "$(grep -q "invariant failed\|CUDA error\|cuBLAS error" "$DLOG"; [ $? -ne 0 ]; echo $?)" "no backend error in the daemon log"
done_testing
