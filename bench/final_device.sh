#!/usr/bin/env bash
# bench/final_device.sh — the closing device call of a session, ON the GPU machine,
# for whichever card came: test_grad_gpu, test_ops_gpu and test_train_gpu, after the
# 100 GB headline (bench/headline.sh) on an H200, before the traind train steps on an
# H100 (the headline at 60 GB has run there); then, where build/base/ckpt is carried, the
# checkpoint stall against 9865a9e (bench/ckpt_stall.sh). Carry build/carry (tests/gpu/pack_carry.sh):
#   run(command="tar -xJf build/carry/all.tar.xz && export OUT && bench/final_device.sh",
#       carry=["build/carry"], timeout_s=320)
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT=${OUT:-$PWD/bench-out} TEST_QUICK=1
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
    HEADLINE_GB=${HEADLINE_GB:-100} bench/headline.sh 2>&1 | grep -E '^RESULT|^==|^#' | cut -c1-330
    GPU_TEST_ONLY='test_[got]*' SUITE_S=150 GPU_MODES=tests tests/gpu/device_batch.sh 2>&1 |
        grep -E 'not ok|ok,|passed|FAILED' | cut -c1-300
else
    GPU_TEST_ONLY='test_[got]*' SUITE_S=170 GPU_MODES=tests BENCH_BUDGET_S=80 \
        BENCH_ONLY="traind_train32 traind_train128" tests/gpu/device_batch.sh 2>&1 |
        grep -E '^RESULT|not ok|ok,|passed|FAILED' | cut -c1-300
fi
# checkpoints written beside training against 9865a9e (all in place), when that build is carried
# (build/base/ckpt: traind + trainctl of 9865a9e): dinov2-large, 12 frozen, b32, a checkpoint every 20 steps
if [ -x build/base/ckpt/traind ]; then
    for bin in build/base/ckpt build/release; do
        BIN=$bin BACKEND=cuda BB=dinov2-large FREEZE=12 BATCH=32 STEPS=60 EVERY=20 SAMPLES=2048 \
            timeout 120 bench/ckpt_stall.sh 2>&1 | cut -c1-300
    done
fi
