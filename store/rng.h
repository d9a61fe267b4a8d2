/* store/rng.h — the project's pseudo-random generators, deterministic for a
 * seed on every machine (never rand()). The one definition every layer uses:
 *   rng_splitmix64         one 64-bit draw from a counter state (seeding,
 *                          per-tensor init streams in gpu/model.c)
 *   rng_t                  xoshiro256**: data order (gpu/stages.c), synthetic
 *                          images (store/synth.c)
 * Inline draws here; the state's JSON form and the uniform-integer and
 * permutation helpers in store/rng.c. */
#ifndef TRAIND_RNG_H
#define TRAIND_RNG_H

#include <jansson.h>
#include <stdint.h>

typedef struct { uint64_t s[4]; } rng_t;

static inline uint64_t rng_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A double in (0, 1) from a splitmix64 counter (53 random bits, centred). */
static inline double rng_splitmix_uniform(uint64_t *x) {
    return ((double)(rng_splitmix64(x) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* State from a 64-bit seed through splitmix64 (never all zero). */
static inline void rng_seed(rng_t *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = rng_splitmix64(&seed);
}

/* State for stream `stream` of seed `seed` (one independent stream per
 * sample, so any sample can be drawn without drawing the ones before it). */
static inline void rng_seed_stream(rng_t *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed;
    uint64_t mix = rng_splitmix64(&x) ^ (stream * 0xd1342543de82ef95ull);
    for (int i = 0; i < 4; i++) r->s[i] = rng_splitmix64(&mix);
}

static inline uint64_t rng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_next(rng_t *r) {
    uint64_t *s = r->s;
    uint64_t out = rng_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rng_rotl(s[3], 45);
    return out;
}

/* A float in [0, 1) with 24 random bits. */
static inline float rng_unif(rng_t *r) { return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f); }

/* Uniform integer in [0, n), n >= 1, without modulo bias. */
uint64_t rng_below(rng_t *r, uint64_t n);
/* Fisher–Yates shuffle of a[0..n) in place. */
void rng_permute(rng_t *r, int32_t *a, int64_t n);
/* The state as ["%016llx" x4] and back (0, or -1 when malformed). */
json_t *rng_to_json(const rng_t *r);
int rng_from_json(const json_t *j, rng_t *r);

#endif
