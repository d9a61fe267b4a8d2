/* gpu/image.c — host resize of one u8 HWC RGB image (see gpu/image.h).
 *
 * Owns: the per-axis weight tables and the separable two-pass resize used by
 * the infer stage for inline images whose size differs from the dataset's.
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
 * weights w[i*k .. i*k+cnt[i]-1]. */
typedef struct {
    int *lo, *cnt;
    float *w;   /* [out][k] */
    int k;      /* taps per output index, at most */
} image_axis_t;

static void image_axis_free(image_axis_t *a) {
    free(a->lo);
    free(a->cnt);
    free(a->w);
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
    if (!a->lo || !a->cnt || !a->w) {
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
    }
    return 0;
}

int image_resize_u8(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh, int dw, char *err, size_t errlen) {
    if (!src || !dst) return errbuf_set(err, errlen, "image resize: no image");
    if (sh < 1 || sw < 1 || sh > IMAGE_MAX_SIDE || sw > IMAGE_MAX_SIDE)
        return errbuf_set(err, errlen, "image resize: source size %dx%d (height x width) is not in 1..%d",
                          sh, sw, IMAGE_MAX_SIDE);
    if (dh < 1 || dw < 1 || dh > IMAGE_MAX_SIDE || dw > IMAGE_MAX_SIDE)
        return errbuf_set(err, errlen, "image resize: target size %dx%d (height x width) is not in 1..%d",
                          dh, dw, IMAGE_MAX_SIDE);
    image_axis_t ay, ax;
    if (image_axis_init(&ay, sh, dh)) return errbuf_set(err, errlen, "image resize: out of memory");
    if (image_axis_init(&ax, sw, dw)) {
        image_axis_free(&ay);
        return errbuf_set(err, errlen, "image resize: out of memory");
    }
    size_t srow = (size_t)sw * 3;
    float *row = malloc(srow * sizeof(float));   /* [sw][3] vertical pass of one output row */
    if (!row) {
        image_axis_free(&ay);
        image_axis_free(&ax);
        return errbuf_set(err, errlen, "image resize: out of memory");
    }
    for (int y = 0; y < dh; y++) {
        const float *wy = ay.w + (size_t)y * ay.k;
        memset(row, 0, srow * sizeof(float));
        for (int t = 0; t < ay.cnt[y]; t++) {
            const uint8_t *s = src + (size_t)(ay.lo[y] + t) * srow;
            float wt = wy[t];
            for (size_t j = 0; j < srow; j++) row[j] += wt * (float)s[j];
        }
        uint8_t *d = dst + (size_t)y * dw * 3;
        for (int x = 0; x < dw; x++) {
            const float *wx = ax.w + (size_t)x * ax.k;
            const float *r = row + (size_t)ax.lo[x] * 3;
            float acc[3] = {0, 0, 0};
            for (int t = 0; t < ax.cnt[x]; t++)
                for (int ch = 0; ch < 3; ch++) acc[ch] += wx[t] * r[t * 3 + ch];
            for (int ch = 0; ch < 3; ch++) {
                float v = floorf(acc[ch] + 0.5f);
                d[x * 3 + ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    free(row);
    image_axis_free(&ay);
    image_axis_free(&ax);
    return 0;
}
