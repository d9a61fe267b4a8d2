/* gpu/image.c — host resize of one u8 HWC RGB image (see gpu/image.h).
 *
 * Owns: the per-axis weight tables and the separable two-pass resize used by
 * the infer stage for inline images whose size differs from the dataset's,
 * and by the importer (gpu/import.c) for every frame: a resizer keeps the
 * tables of its last geometry, so a run of same-sized frames computes them
 * once.
 *
 * Filter: triangle tri(x) = max(0, 1-|x|) stretched by fs = max(scale, 1),
 * scale = in/out. For output index i the centre in source coordinates is
 *   c = (i + 0.5) * scale - 0.5          (source pixel j sits at j)
 * and source pixel j gets weight tri((j - c) / fs), for the j in 0..in-1
 * (taps outside the image are dropped), normalized to sum to 1. With fs = 1
 * (upscaling, or equal size) that is bilinear interpolation with edge clamp;
 * with fs > 1 (downscaling) every source pixel contributes (anti-aliasing).
 *
 * Order: for each output row, the vertical taps of the source rows are summed
 * into one fp32 row [sw][3]; that row is then filtered horizontally into the
 * output row, rounded to nearest and clamped to 0..255.
 */
#include "gpu/image.h"
#include "store/errbuf.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One axis: output index i reads source indices lo[i] .. lo[i]+cnt[i]-1 with
 * weights w[i*k .. i*k+cnt[i]-1]. The same taps padded with zero weights to
 * exactly pk per output (source plo[i] .. plo[i]+pk-1, weights pw[i*pk ..])
 * let the horizontal pass run a loop of constant length; adding the zero
 * terms first leaves every sum bit for bit what it was. */
typedef struct {
    int *lo, *cnt;
    float *w;   /* [out][k] */
    int k;      /* taps per output index, at most */
    int *plo;
    float *pw;  /* [out][pk] */
    int pk;     /* min(k, in) */
} image_axis_t;

static void image_axis_free(image_axis_t *a) {
    free(a->lo);
    free(a->cnt);
    free(a->w);
    free(a->plo);
    free(a->pw);
}

static double image_tri(double x) {
    x = fabs(x);
    return x < 1 ? 1 - x : 0;
}

static int image_axis_init(image_axis_t *a, int in, int out) {
    double scale = (double)in / out, fs = scale > 1 ? scale : 1;
    memset(a, 0, sizeof *a);
    a->k = (int)ceil(2 * fs) + 1;
    a->lo = malloc((size_t)out * sizeof(int));
    a->cnt = malloc((size_t)out * sizeof(int));
    a->w = malloc((size_t)out * (size_t)a->k * sizeof(float));
    a->pk = a->k < in ? a->k : in;
    a->plo = malloc((size_t)out * sizeof(int));
    a->pw = calloc((size_t)out * (size_t)a->pk, sizeof(float));
    if (!a->lo || !a->cnt || !a->w || !a->plo || !a->pw) {
        image_axis_free(a);
        return -1;
    }
    for (int i = 0; i < out; i++) {
        double c = (i + 0.5) * scale - 0.5;
        /* taps strictly inside the support: |j - c| < fs */
        int lo = (int)floor(c - fs) + 1, hi = (int)ceil(c + fs) - 1;
        if (lo < 0) lo = 0;
        if (hi > in - 1) hi = in - 1;
        assert(hi >= lo && hi - lo + 1 <= a->k);
        float *w = a->w + (size_t)i * a->k;
        double sum = 0;
        for (int j = lo; j <= hi; j++) sum += image_tri((j - c) / fs);
        if (sum > 0) {
            for (int j = lo; j <= hi; j++) w[j - lo] = (float)(image_tri((j - c) / fs) / sum);
        } else {   /* cannot happen for fs >= 1 (a tap lies within 1 of c); nearest pixel */
            int j = (int)floor(c + 0.5);
            lo = hi = j < 0 ? 0 : j > in - 1 ? in - 1 : j;
            w[0] = 1;
        }
        a->lo[i] = lo;
        a->cnt[i] = hi - lo + 1;
        /* padded: the pk taps ending at hi (or starting at 0), zeros before lo */
        int plo = hi - a->pk + 1 < 0 ? 0 : hi - a->pk + 1;
        assert(plo <= lo && plo + a->pk - 1 >= hi && plo + a->pk <= in);
        a->plo[i] = plo;
        for (int j = lo; j <= hi; j++) a->pw[(size_t)i * a->pk + (j - plo)] = w[j - lo];
    }
    return 0;
}

/* Round to nearest and clamp to 0..255 (= floor(a + 0.5) clamped for every
 * a in int range: truncation and floor differ only below 0, which clamps to
 * 0 either way; a is a normalized sum of 0..255, so it is in range). The
 * integer clamp vectorizes (min/max); a float one would not without
 * -ffinite-math-only. */
static inline uint8_t image_round_u8(float a) {
    int i = (int)(a + 0.5f);
    return (uint8_t)(i < 0 ? 0 : i > 255 ? 255 : i);
}

/* The horizontal pass of one output row: row [sw][3] floats (+ one float of
 * padding) -> out [dw][3] floats (+ one). Each tap adds w * (R,G,B,next R)
 * as one 4-lane vector (GCC/Clang vector extension; lane 3 is overwritten
 * by the next pixel), lane-wise the same operations in the same order as
 * three scalar sums. Inlined with a constant K for the common tap counts,
 * so the tap loop unrolls. */
typedef float image_v4 __attribute__((vector_size(16)));
static inline void image_hpass(const float *restrict row, const image_axis_t *ax, float *restrict out, int dw,
                               const int K) {
    for (int x = 0; x < dw; x++) {
        const float *wx = ax->pw + (size_t)x * K;
        const float *r = row + (size_t)ax->plo[x] * 3;
        image_v4 acc = {0, 0, 0, 0};
        for (int t = 0; t < K; t++) {
            image_v4 v;
            memcpy(&v, r + t * 3, sizeof v);
            acc += wx[t] * v;
        }
        memcpy(out + (size_t)x * 3, &acc, sizeof acc);
    }
}

struct image_resizer {
    int sh, sw, dh, dw;          /* geometry of the tables (0: none yet) */
    image_axis_t ay, ax;
    float *row;                  /* [sw][3] (+1) vertical pass of one output row */
    float *orow;                 /* [dw][3] (+1) horizontal pass of it, before rounding */
};

image_resizer_t *image_resizer_new(void) {
    return calloc(1, sizeof(image_resizer_t));
}

static void image_resizer_clear(image_resizer_t *rz) {
    image_axis_free(&rz->ay);
    image_axis_free(&rz->ax);
    free(rz->row);
    free(rz->orow);
    memset(rz, 0, sizeof *rz);
}

void image_resizer_free(image_resizer_t *rz) {
    if (!rz) return;
    image_resizer_clear(rz);
    free(rz);
}

/* Built twice, for AVX2 and for the baseline (x86-64-v2), the CPU picking at
 * load time: the passes vectorize 8 floats wide instead of 4. AVX2 brings no
 * FMA, so nothing is contracted and both versions compute the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
int image_resizer_run(image_resizer_t *rz, const uint8_t *src, int sh, int sw, size_t src_stride, uint8_t *dst,
                      int dh, int dw, char *err, size_t errlen) {
    if (!rz || !src || !dst) return errbuf_set(err, errlen, "image resize: no image");
    if (sh < 1 || sw < 1 || sh > IMAGE_MAX_SIDE || sw > IMAGE_MAX_SIDE)
        return errbuf_set(err, errlen, "image resize: source size %dx%d (height x width) is not in 1..%d",
                          sh, sw, IMAGE_MAX_SIDE);
    if (dh < 1 || dw < 1 || dh > IMAGE_MAX_SIDE || dw > IMAGE_MAX_SIDE)
        return errbuf_set(err, errlen, "image resize: target size %dx%d (height x width) is not in 1..%d",
                          dh, dw, IMAGE_MAX_SIDE);
    size_t srow = (size_t)sw * 3;
    if (src_stride < srow)
        return errbuf_set(err, errlen, "image resize: row stride %zu is less than a row (%zu bytes)", src_stride, srow);
    if (rz->sh != sh || rz->sw != sw || rz->dh != dh || rz->dw != dw) {
        image_resizer_clear(rz);
        if (image_axis_init(&rz->ay, sh, dh) || image_axis_init(&rz->ax, sw, dw) ||
            !(rz->row = calloc(srow + 1, sizeof(float))) ||   /* +1: lane 3 of the last pixel's vector */
            !(rz->orow = calloc((size_t)dw * 3 + 1, sizeof(float)))) {
            image_resizer_clear(rz);
            return errbuf_set(err, errlen, "image resize: out of memory");
        }
        rz->sh = sh;
        rz->sw = sw;
        rz->dh = dh;
        rz->dw = dw;
    }
    const image_axis_t *ay = &rz->ay, *ax = &rz->ax;
    float *restrict row = rz->row;
    for (int y = 0; y < dh; y++) {
        const float *wy = ay->w + (size_t)y * ay->k;
        const uint8_t *restrict s0 = src + (size_t)ay->lo[y] * src_stride;
        float w0 = wy[0];
        for (size_t j = 0; j < srow; j++) row[j] = w0 * (float)s0[j];
        for (int t = 1; t < ay->cnt[y]; t++) {
            const uint8_t *restrict s = src + (size_t)(ay->lo[y] + t) * src_stride;
            float wt = wy[t];
            for (size_t j = 0; j < srow; j++) row[j] += wt * (float)s[j];
        }
        float *restrict o = rz->orow;
        switch (ax->pk) {
        case 1: image_hpass(row, ax, o, dw, 1); break;
        case 2: image_hpass(row, ax, o, dw, 2); break;
        case 3: image_hpass(row, ax, o, dw, 3); break;
        case 4: image_hpass(row, ax, o, dw, 4); break;
        case 5: image_hpass(row, ax, o, dw, 5); break;
        case 6: image_hpass(row, ax, o, dw, 6); break;
        default: image_hpass(row, ax, o, dw, ax->pk); break;
        }
        uint8_t *restrict d = dst + (size_t)y * dw * 3;
        for (size_t j = 0; j < (size_t)dw * 3; j++) d[j] = image_round_u8(o[j]);
    }
    return 0;
}

int image_resize_u8(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh, int dw, char *err, size_t errlen) {
    image_resizer_t *rz = image_resizer_new();
    if (!rz) return errbuf_set(err, errlen, "image resize: out of memory");
    int rc = image_resizer_run(rz, src, sh, sw, sw > 0 ? (size_t)sw * 3 : 0, dst, dh, dw, err, errlen);
    image_resizer_free(rz);
    return rc;
}
