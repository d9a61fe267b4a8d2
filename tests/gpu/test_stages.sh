#!/usr/bin/env bash
# tests/gpu/test_stages.sh — on the GPU machine (run by tests/gpu/run_device.sh):
# the four stages on the CUDA backend from one bf16 resident dataset (SPEC §5):
# train (bf16 plan, fp32 master and gradients), eval (bf16), debug (fp32 from
# the same bf16 dataset), infer (dataset indices, and an inline u8 image with
# CLS features), and a train job with augmentation (the gather and the labels
# in CUDA). Every job must succeed (no dtype error), report its plan and give
# finite results. TAP; skipped without a CUDA device.
. "$(dirname "$0")/../integration/lib.sh"

TRAIND_BIN=${TRAIND_BIN_GPU:-$ROOT/build/release/traind}
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 || {
    echo "1..0 # SKIP no CUDA device"; exit 0; }

start_daemon --backend cuda || bail "daemon did not start: $(tail -5 "$DLOG")"
load_synth syn 96 56 5
ok $? "synthetic dataset resident on the GPU"
api GET /v1/datasets/syn
diag "dataset: $(jb '{state, samples, bytes: (.bytes_resident // .bytes // null)}|tostring')"

submit "$(train_spec syn 20 '"checkpoint_every":20,"eval_every":10')"; tid=$JOB
is "$(wait_job "$tid" 300)" succeeded "train (bf16 plan) succeeded"
api GET "/v1/jobs/$tid"
diag "train plan: $(jb '.plan|tostring')"
check "train: bf16 input and compute, fp32 master and gradients" \
    jq -e '.plan|tostring|test("bf16") and test("fp32")' <<<"$BODY"
check "train: finite loss" jq -e '[.metrics|to_entries[]|select(.key|test("loss"))|.value|(if type=="object" then .value else . end)]|length>0 and all(.[]; type=="number")' <<<"$BODY"
api GET "/v1/checkpoints?job=$tid"
ck=$(jb '.checkpoints|max_by(.step)|.id')
ok "$([ -n "$ck" ] && [ "$ck" != null ]; echo $?)" "train wrote a checkpoint ($ck)"

# augmentation on the GPU (gather + labels in CUDA): runs, finite, the plan says so
submit "$(train_spec syn 12 '"checkpoint_every":0,"eval_every":0,"augment":{"rotate_deg":[-45,45],"shift_deg":5,"flip":0.5,"zoom":[0.9,1.1],"brightness":0.2,"hue":0.05,"erase":{}}')"; aid=$JOB
is "$(wait_job "$aid" 300)" succeeded "augmented train succeeded"
api GET "/v1/jobs/$aid"
check "augmented train: plan.augment with the dataset's intrinsics, finite loss" \
    jq -e '(.plan.augment.camera|test("camera_intrinsics")) and ([.metrics|to_entries[]|select(.key|test("loss"))|.value|(if type=="object" then .value else . end)]|length>0 and all(.[]; type=="number"))' <<<"$BODY"

submit "{\"type\":\"eval\",\"dataset\":\"syn\",\"checkpoint\":\"$ck\",\"batch_size\":16}"; eid=$JOB
is "$(wait_job "$eid" 300)" succeeded "eval (bf16) succeeded"
api GET "/v1/jobs/$eid/result"
check "eval: finite MPJPE and a mean-predictor floor" \
    jq -e '([..|numbers]|all(. == . and . < 1e7)) and (tostring|test("mpjpe")) and (tostring|test("mean"))' <<<"$BODY"

submit "{\"type\":\"debug\",\"dataset\":\"syn\",\"checkpoint\":\"$ck\",\"batches\":1,\"batch_size\":8}"; did=$JOB
is "$(wait_job "$did" 300)" succeeded "debug (fp32 from the bf16 dataset) succeeded"
api GET "/v1/jobs/$did/result"
check "debug: ran in fp32, no NaN/Inf" \
    jq -e '(tostring|test("fp32")) and ([..|objects|to_entries[]|select(.key|test("^(nan|inf)";"i"))|.value|numbers]|length>0 and all(.==0))' <<<"$BODY"

submit "{\"type\":\"infer\",\"dataset\":\"syn\",\"checkpoint\":\"$ck\",\"indices\":[0,1,2]}"; iid=$JOB
is "$(wait_job "$iid" 300)" succeeded "infer (dataset indices) succeeded"
api GET "/v1/jobs/$iid/result"
check "infer: 3 predictions of 21x3 joints, confidences in [0,1]" \
    jq -e '[..|objects|select(has("joints") and (.joints|type=="array"))] as $p | ($p|length==3) and ($p|all(.[]; (.joints|flatten|length)==63 and ((.confidence // .confidences)|flatten|all(.>=0 and .<=1))))' <<<"$BODY"
b64=$(python3 -c "import base64,random; random.seed(1); print(base64.b64encode(bytes(random.randrange(256) for _ in range(56*56*3))).decode())")
submit "{\"type\":\"infer\",\"dataset\":\"syn\",\"checkpoint\":\"$ck\",\"images\":[{\"u8_hwc_b64\":\"$b64\",\"height\":56,\"width\":56}],\"outputs\":[\"cls\"]}"; iid2=$JOB
is "$(wait_job "$iid2" 300)" succeeded "infer (inline u8 image, CLS features) succeeded"
grep -q "invariant failed\|CUDA error\|cuBLAS error\|should be the same" "$DLOG"
ok "$([ $? -ne 0 ]; echo $?)" "no backend error (dtype or otherwise) anywhere in the daemon log"

stop_daemon TERM
done_testing
