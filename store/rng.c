/* store/rng.c — the out-of-line helpers of store/rng.h: uniform integers,
 * permutations and the state's JSON form (saved in checkpoints so a resumed
 * run draws exactly what an uninterrupted one would). */
#include "store/rng.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t rng_below(rng_t *r, uint64_t n) {
    assert(n >= 1);
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;   /* reject the biased tail */
    uint64_t x;
    do x = rng_next(r); while (x >= lim);
    return x % n;
}

void rng_permute(rng_t *r, int32_t *a, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(r, (uint64_t)i + 1);
        int32_t t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

json_t *rng_to_json(const rng_t *r) {
    json_t *a = json_array();
    for (int i = 0; i < 4; i++) {
        char h[24];
        snprintf(h, sizeof h, "%016" PRIx64, r->s[i]);
        json_array_append_new(a, json_string(h));
    }
    return a;
}

int rng_from_json(const json_t *j, rng_t *r) {
    if (!json_is_array(j) || json_array_size(j) != 4) return -1;
    for (int i = 0; i < 4; i++) {
        const char *s = json_string_value(json_array_get(j, (size_t)i));
        if (!s || strlen(s) != 16) return -1;
        char *end;
        r->s[i] = strtoull(s, &end, 16);
        if (*end) return -1;
    }
    return 0;
}
