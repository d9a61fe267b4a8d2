#!/usr/bin/env bash
# bench/final_device.sh — the closing device call of a session, ON the GPU machine,
# for whichever card came: test_grad_gpu, test_ops_gpu and test_train_gpu, after the
# 100 GB headline (bench/headline.sh) on an H200, before the traind train steps on an
# H100 (the headline at 60 GB has run there). Carry build/carry (tests/gpu/pack_carry.sh):
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
