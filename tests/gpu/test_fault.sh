#!/usr/bin/env bash
# tests/gpu/test_fault.sh — on the GPU machine (run by tests/gpu/run_device.sh):
# a worker that faults on the GPU fails its job; the daemon keeps serving, the
# resident dataset stays loaded and intact, and the next job runs.
#
# The fault is real: TRAIND_TEST_GPU_FAULT=FILE (gpu/cuda/cuda_common.h) makes
# the first process that reaches its 8th matrix product while FILE exists
# remove FILE and write through an invalid device address (a sticky
# illegal-address error; the backend exits the process at the next check).
# Intact data: a train job with seed 1 runs before the fault and again after
# it; both must log the same step-1 loss (the GPU ops are deterministic).
# TAP; skipped without a CUDA device.
. "$(dirname "$0")/../integration/lib.sh"

TRAIND_BIN=${TRAIND_BIN_GPU:-$ROOT/build/release/traind}
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 || {
    echo "1..0 # SKIP no CUDA device"; exit 0; }
FAULT="$TDIR/gpu-fault.once"
export TRAIND_TEST_GPU_FAULT="$FAULT"

start_daemon --backend cuda || bail "daemon did not start: $(tail -5 "$DLOG")"
load_synth syn 64 56 3
ok $? "synthetic dataset resident on the GPU"
api GET /v1/status
check "status reports the cuda backend" jq -e '.backend=="cuda"' <<<"$BODY"

step1_loss() { api GET "/v1/jobs/$1/metrics?name=loss"; jb '[.[]|select(.step==1)][0].value // empty'; }

submit "$(train_spec syn 3)"; a=$JOB
is "$(wait_job "$a" 300)" succeeded "reference train job (seed 1) succeeded"
loss_a=$(step1_loss "$a")
ok "$([ -n "$loss_a" ]; echo $?)" "reference job logged a step-1 loss ($loss_a)"

touch "$FAULT"
submit "$(train_spec syn 3)"; f=$JOB
is "$(wait_job "$f" 300)" failed "the job whose worker faulted on the GPU failed"
ok "$([ ! -e "$FAULT" ]; echo $?)" "its worker took the fault (trigger file consumed)"
api GET "/v1/jobs/$f"
diag "failed job's error: $(jb '.error // "" | tostring' | head -c 300)"
grep -q "illegal\|TRAIND_TEST_GPU_FAULT" "$DLOG"
ok $? "the daemon log shows the GPU fault"

api GET /v1/health
is "$STATUS" 200 "daemon still serving"
api GET /v1/datasets/syn
is "$(jb '.state')" ready "dataset still resident"

submit "$(train_spec syn 3)"; c=$JOB
is "$(wait_job "$c" 300)" succeeded "the next train job (seed 1) succeeded"
loss_c=$(step1_loss "$c")
is "$loss_c" "$loss_a" "same step-1 loss as before the fault: the resident data is intact"

stop_daemon TERM
done_testing
