#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] — coverage-guided fuzzing of the importer's
# manifest parsers and image decoding (tests/fuzz/fuzz_import.h) with
# libFuzzer (clang -fsanitize=fuzzer,address,undefined), on one core, for
# SECONDS (default 600). Not part of `make test`.
#
# Inputs: the committed seed corpus tests/fuzz/corpus/ (read-only) and a
# working corpus build/fuzz/corpus/ that grows across runs. A crash, leak,
# sanitizer report or assertion failure stops the run and leaves the input as
# build/fuzz/crash-* (or leak-*, timeout-*, oom-*): copy it into
# tests/fuzz/crashes/ (tests/unit/test_import.c replays every file there) and
# fix the bug.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SECONDS_TO_RUN=${1:-600}
OUT=build/fuzz
mkdir -p "$OUT/corpus"
command -v clang >/dev/null || { echo "fuzz: clang not found (apt-get install clang)" >&2; exit 2; }
# shellcheck disable=SC2046
clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I. -I/usr/include/x86_64-linux-gnu \
    tests/fuzz/fuzz_import.c gpu/imgdec.c gpu/manifest.c gpu/image.c store/errbuf.c store/par.c \
    $(pkg-config --cflags --libs jansson libturbojpeg libpng) -lm -o "$OUT/fuzz_import"
echo "fuzz: running for ${SECONDS_TO_RUN}s on one core (corpus $OUT/corpus + tests/fuzz/corpus)"
exec "$OUT/fuzz_import" -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$OUT/" "$OUT/corpus" tests/fuzz/corpus
