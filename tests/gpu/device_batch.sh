#!/usr/bin/env bash
# tests/gpu/device_batch.sh — one device call's worth of GPU work, run ON the GPU
# machine: what the machine has for image import (libjpeg-turbo, libpng,
# nvJPEG), the GPU suite (tests/gpu/run_device.sh MODES), and the benchmark
# steps named in BENCH_ONLY (bench/run_device.sh), if any. Carry:
#   build/release/traind build/release/trainctl build/release/gpu-tests
#   build/release/bench .devlibs (or, packed: tests/gpu/pack_carry.sh, carry build/carry)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/traind-gpu-out}
mkdir -p "$OUT"
{
    echo "== image libraries on this machine"
    ldconfig -p | grep -iE "turbojpeg|libjpeg|libpng|nvjpeg" || echo "(none in ldconfig)"
    find / -xdev \( -name 'libnvjpeg*.so*' -o -name 'nvjpeg.h' \) -not -path '/proc/*' 2>/dev/null | head -8
    python3 -c 'import torchvision, PIL; print("torchvision", torchvision.__version__, "PIL", PIL.__version__)' 2>&1
    echo "cores: $(nproc)"
} 2>&1 | tee "$OUT/probe.txt"
rc=0
tests/gpu/run_device.sh ${GPU_MODES:-tests hf} || rc=1
if [ -n "${BENCH_ONLY:-}" ]; then OUT=$OUT/bench BENCH_ONLY="$BENCH_ONLY" bench/run_device.sh || rc=1; fi
exit $rc
