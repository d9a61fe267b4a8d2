/* tests/unit/test_image.c — gpu/image.c: the u8 HWC RGB resize.
 *
 * Equal size is an exact copy; constant images stay constant at any size;
 * a linear ramp stays the same ramp (sampled at the pixel centres
 * (i+0.5)*scale-0.5) in the interior when upscaling and downscaling; 1x1
 * spreads everywhere; a 2-pixel checkerboard downscaled by 2 is flat grey
 * inside; every pixel of random images matches a direct double-precision
 * evaluation of the normalized 2-D triangle filter (within 1 level); bad
 * sizes are refused with a message.
 */
#include "gpu/image.h"
#include "tests/tap.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {   /* xorshift64*, enough for test pixels */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

static uint8_t *random_image(int h, int w) {
    uint8_t *p = malloc((size_t)h * w * 3);
    for (size_t i = 0; i < (size_t)h * w * 3; i++) p[i] = (uint8_t)rnd();
    return p;
}

/* The reference: output pixel (y, x, ch) as the normalized sum over all source
 * pixels of tri((j - cy)/fy) * tri((k - cx)/fx) * src, in double precision. */
static double tri(double x) {
    x = fabs(x);
    return x < 1 ? 1 - x : 0;
}
static double ref_pixel(const uint8_t *src, int sh, int sw, int dh, int dw, int y, int x, int ch) {
    double sy = (double)sh / dh, sx = (double)sw / dw;
    double fy = sy > 1 ? sy : 1, fx = sx > 1 ? sx : 1;
    double cy = (y + 0.5) * sy - 0.5, cx = (x + 0.5) * sx - 0.5;
    double num = 0, den = 0;
    for (int j = 0; j < sh; j++)
        for (int k = 0; k < sw; k++) {
            double wgt = tri((j - cy) / fy) * tri((k - cx) / fx);
            num += wgt * src[((size_t)j * sw + k) * 3 + ch];
            den += wgt;
        }
    return num / den;
}

static void check_reference(int sh, int sw, int dh, int dw) {
    uint8_t *src = random_image(sh, sw), *dst = malloc((size_t)dh * dw * 3);
    char err[256] = "";
    int r = image_resize_u8(src, sh, sw, dst, dh, dw, err, sizeof err);
    double worst = 0;
    for (int y = 0; r == 0 && y < dh; y++)
        for (int x = 0; x < dw; x++)
            for (int ch = 0; ch < 3; ch++) {
                double d = fabs(dst[((size_t)y * dw + x) * 3 + ch] - ref_pixel(src, sh, sw, dh, dw, y, x, ch));
                if (d > worst) worst = d;
            }
    ok(r == 0 && worst <= 0.5 + 1e-2, "random %dx%d -> %dx%d matches the direct triangle filter (max |diff| %.3f)",
       sh, sw, dh, dw, worst);
    free(src);
    free(dst);
}

static void check_constant(int sh, int sw, int dh, int dw) {
    const uint8_t v[3] = {0, 137, 255};
    uint8_t *src = malloc((size_t)sh * sw * 3), *dst = malloc((size_t)dh * dw * 3);
    for (size_t i = 0; i < (size_t)sh * sw; i++) memcpy(src + i * 3, v, 3);
    char err[256] = "";
    int r = image_resize_u8(src, sh, sw, dst, dh, dw, err, sizeof err);
    int same = r == 0;
    for (size_t i = 0; same && i < (size_t)dh * dw; i++) same = memcmp(dst + i * 3, v, 3) == 0;
    ok(same, "constant %dx%d -> %dx%d stays constant (%s)", sh, sw, dh, dw, r ? err : "ok");
    free(src);
    free(dst);
}

/* Horizontal ramp src = a + b*x (every row, every channel; or along y when
 * vertical): the triangle is symmetric, so where its support is not cut by
 * the border the output is the ramp at the output pixel's centre. */
static void check_ramp(int sh, int sw, int dh, int dw, double a, double b, int vertical) {
    int sn = vertical ? sh : sw, dn = vertical ? dh : dw;
    uint8_t *src = malloc((size_t)sh * sw * 3), *dst = malloc((size_t)dh * dw * 3);
    for (int y = 0; y < sh; y++)
        for (int x = 0; x < sw; x++)
            for (int ch = 0; ch < 3; ch++)
                src[((size_t)y * sw + x) * 3 + ch] = (uint8_t)lround(a + b * (vertical ? y : x));
    char err[256] = "";
    int r = image_resize_u8(src, sh, sw, dst, dh, dw, err, sizeof err);
    double s = (double)sn / dn, f = s > 1 ? s : 1, worst = 0;
    int interior = 0;
    for (int i = 0; r == 0 && i < dn; i++) {
        double c = (i + 0.5) * s - 0.5;
        if (c - f < -1 || c + f > sn) continue;   /* a tap with weight > 0 would lie outside 0..sn-1 */
        interior++;
        double want = a + b * c;
        for (int o = 0; o < (vertical ? dw : dh); o++)
            for (int ch = 0; ch < 3; ch++) {
                size_t at = vertical ? ((size_t)i * dw + o) * 3 + ch : ((size_t)o * dw + i) * 3 + ch;
                double d = fabs(dst[at] - want);
                if (d > worst) worst = d;
            }
    }
    ok(r == 0 && interior > dn / 2 && worst <= 1,
       "%s ramp %g+%g*%c, %dx%d -> %dx%d: linear in the interior (%d of %d positions, max |diff| %.3f)",
       vertical ? "vertical" : "horizontal", a, b, vertical ? 'y' : 'x', sh, sw, dh, dw, interior, dn, worst);
    free(src);
    free(dst);
}

int main(void) {
    char err[256];

    /* equal size: exact copy */
    {
        uint8_t *src = random_image(17, 23), *dst = malloc(17 * 23 * 3);
        int r = image_resize_u8(src, 17, 23, dst, 17, 23, err, sizeof err);
        ok(r == 0 && memcmp(src, dst, 17 * 23 * 3) == 0, "17x23 -> 17x23 is an exact copy");
        free(src);
        free(dst);
    }

    /* constant images, up and down, odd sizes */
    check_constant(7, 13, 28, 28);
    check_constant(480, 640, 28, 28);
    check_constant(28, 28, 7, 13);
    check_constant(3, 200, 57, 9);
    check_constant(1, 1, 1, 1);

    /* linear ramps: upscale and downscale, both axes */
    check_ramp(4, 32, 10, 100, 3, 8, 0);     /* upscale x by 3.125 */
    check_ramp(6, 200, 5, 30, 20, 1, 0);     /* downscale x by 6.67 */
    check_ramp(480, 640, 28, 28, 10, 0.375, 0);
    check_ramp(200, 5, 30, 5, 250, -1.2, 1); /* downscale y */
    check_ramp(13, 7, 28, 28, 0, 19, 1);     /* upscale y */

    /* 1x1 -> N x M: the one pixel everywhere */
    {
        const uint8_t px[3] = {9, 250, 77};
        uint8_t dst[5 * 11 * 3];
        int r = image_resize_u8(px, 1, 1, dst, 5, 11, err, sizeof err);
        int same = r == 0;
        for (int i = 0; same && i < 5 * 11; i++) same = memcmp(dst + i * 3, px, 3) == 0;
        ok(same, "1x1 -> 5x11 is the source pixel everywhere");
    }

    /* 2-pixel checkerboard, downscaled by 2: grey where the filter is not cut by the border
     * (border pixels renormalize over the taps that remain, as PIL does) */
    {
        enum { N = 32, M = 16 };
        uint8_t src[N * N * 3], dst[M * M * 3];
        for (int y = 0; y < N; y++)
            for (int x = 0; x < N; x++)
                memset(src + ((size_t)y * N + x) * 3, (x + y) % 2 ? 255 : 0, 3);
        int r = image_resize_u8(src, N, N, dst, M, M, err, sizeof err);
        double worst = 0;
        for (int y = 1; r == 0 && y < M - 1; y++)
            for (int x = 1; x < M - 1; x++)
                for (int ch = 0; ch < 3; ch++) {
                    double d = fabs(dst[((size_t)y * M + x) * 3 + ch] - 127.5);
                    if (d > worst) worst = d;
                }
        ok(r == 0 && worst <= 1, "checkerboard 32x32 -> 16x16 is flat grey inside (max |v-127.5| %.1f)", worst);
    }

    /* every pixel against the direct 2-D filter */
    check_reference(37, 29, 11, 17);   /* down both */
    check_reference(9, 5, 20, 31);     /* up both */
    check_reference(7, 40, 23, 12);    /* up y, down x */
    check_reference(64, 3, 21, 8);     /* down y by 3.05, up x */
    check_reference(13, 9, 28, 28);

    /* bad sizes */
    {
        uint8_t src[3] = {1, 2, 3}, dst[12];
        const int bad[][4] = {{0, 1, 2, 2}, {1, 0, 2, 2}, {1, 1, 0, 2}, {1, 1, 2, 0},
                              {-1, 1, 2, 2}, {1, 1, 2, -3}, {1, 1, IMAGE_MAX_SIDE + 1, 1}};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            err[0] = 0;
            int r = image_resize_u8(src, bad[i][0], bad[i][1], dst, bad[i][2], bad[i][3], err, sizeof err);
            ok(r == -1 && strstr(err, "size"), "%dx%d -> %dx%d is refused: %s", bad[i][0], bad[i][1], bad[i][2],
               bad[i][3], err);
        }
        err[0] = 0;
        ok(image_resize_u8(NULL, 1, 1, dst, 2, 2, err, sizeof err) == -1 && err[0], "no source: %s", err);
    }
    return tap_done();
}
