/* tests/fuzz/fuzz_import.c — libFuzzer target for the importer's manifest
 * parsers and image decoding (tests/fuzz/fuzz_import.h says what each input
 * drives). Built and run by tests/fuzz/run.sh (clang -fsanitize=fuzzer,
 * address,undefined), not by `make test`; crashes it finds are committed to
 * tests/fuzz/crashes/ and replayed by tests/unit/test_import.c. */
#include "tests/fuzz/fuzz_import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static imgdec_t *dec;
    if (!dec) dec = imgdec_new();
    return fuzz_import_one(dec, data, size);
}
