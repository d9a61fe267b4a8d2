#!/usr/bin/env bash
# bench/gelu_device.sh — run ON the GPU machine: the fused MLP GELU (gpu/cuda/matmul_gelu.cu)
# in one short call: the op timings (test_ops_gpu TEST_BENCH=only: fused vs two passes at the
# train b32/b128 and eval b256 shapes, with the decision lines), then test_ops_gpu's cases, then
# bench/run_device.sh's A/B steps: eval b256 with and without the fused GELU; train b128 plain, fused
# GELU, two streams (TRAIND_MATMUL_STREAMS=2), the attention's dQ through dS^T (TRAIND_ATTN_BWD=ds), all
# three; b32 plain and all three. ~9 minutes (within one call's 10). Carry build/carry.
#   tar -xJf build/carry/all.tar.xz && export OUT && bench/gelu_device.sh
# GELU_PHASES picks among "ops tests model ab" (default "ops tests ab"; "model" reruns test_grad_gpu and
# test_train_gpu with the three knobs forced); AB_STEPS the bench/run_device.sh steps, AB_S their budget.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/traind-gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/.devlibs/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
nv=$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null)
for d in ${nv:+$nv/*/lib}; do LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"; done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
PHASES=" ${GELU_PHASES:-ops tests ab} "
if [[ $PHASES == *" ops "* ]]; then
echo "== op timings"
TEST_BENCH=only timeout -k 5 "${OPS_S:-90}" build/release/gpu-tests/test_ops_gpu >"$OUT/ops_bench.log" 2>&1
grep -E '^# bench matmul|^# bench attention\[(ds bwd|default)\] Bn=(32|128) T=257 NH=16 HS=64 bf16|product \+|cuDNN' \
    "$OUT/ops_bench.log" | sort | uniq -c | sort -rn | head -30
fi
if [[ $PHASES == *" tests "* ]]; then
echo "== test_ops_gpu"
timeout -k 5 "${TESTS_S:-150}" build/release/gpu-tests/test_ops_gpu >"$OUT/test_ops_gpu.log" 2>&1
echo "test_ops_gpu: exit $?, $(grep -c '^ok' "$OUT/test_ops_gpu.log") ok, $(grep -c '^not ok' "$OUT/test_ops_gpu.log") not ok"
grep -E '^not ok' "$OUT/test_ops_gpu.log" | head -20
grep -E 'matmul_d?gelu|second stream|\[ds bwd\]' "$OUT/test_ops_gpu.log" | head -60
fi
if [[ $PHASES == *" model "* ]]; then   # the model-level tests with the three knobs forced
for name in test_grad_gpu test_train_gpu; do
    TRAIND_CUDNN_GELU=1 TRAIND_MATMUL_STREAMS=2 TRAIND_ATTN_BWD=ds timeout -k 5 "${MODEL_S:-150}" \
        build/release/gpu-tests/$name >"$OUT/$name.knobs.log" 2>&1
    echo "$name (fused GELU, two streams, ds bwd): exit $?, $(grep -c '^ok' "$OUT/$name.knobs.log") ok, $(grep -c '^not ok' "$OUT/$name.knobs.log") not ok"
    grep -E '^not ok|Bail out' "$OUT/$name.knobs.log" | head -10
done
fi
if [[ $PHASES == *" ab "* ]]; then
echo "== A/B steps"
OUT=$OUT/bench BENCH_BUDGET_S="${AB_S:-300}" \
    BENCH_ONLY="${AB_STEPS:-traind_eval256_fused traind_eval256 traind_train128 traind_train128_fused traind_train128_streams traind_train128_dsbwd traind_train128_all traind_train32 traind_train32_all}" \
    bench/run_device.sh 2>&1 | grep -E '^==|^!!|^RESULT' | cut -c1-400
grep -hE 'product \+|cuDNN' "$OUT/bench/bench.log" 2>/dev/null | sort | uniq -c | head -20
fi
