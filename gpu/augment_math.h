/* gpu/augment_math.h — the per-sample augmentation record and its math: ONE
 * definition that the CPU reference (gpu/backend_cpu.c) and the CUDA kernels
 * (gpu/cuda/images.cu, built without FMA contraction) both call, so the two
 * backends compute the same floats, bit for bit.
 * Compiles as C and as CUDA (AUG_FN is host+device there), like store/hand.h.
 * What the augmentations are and how they are drawn: gpu/augment.h.
 *
 * Conventions. Camera frame as OpenCV (x right, y down, z forward, metres);
 * K is the 3x3 pinhole intrinsics, row-major, projecting a point J to the
 * continuous pixel position (u, v) = (K·J).xy / (K·J).z, where pixel (x, y)
 * covers [x, x+1) × [y, y+1) and its centre is (x + 0.5, y + 0.5) — the
 * convention store/synth.c renders with, so the default principal point
 * (W/2, H/2) is the centre of the image.
 *
 * One sample's geometry is a 3x3 matrix M acting on the camera frame: the
 * joints become M·J, and the output image is what the same camera K sees of
 * the transformed scene: output pixel p' samples the input at
 * p = K·M⁻¹·K⁻¹·p' (a homography; exact under perspective for rotations and
 * mirrors, see gpu/augment.h for zoom). Sampling is bilinear with zero padding
 * in the normalized image (zero = the dataset's mean colour), i.e. PyTorch's
 * grid_sample(align_corners=False, padding_mode="zeros"). Then the colour
 * transform (in [0,1] RGB, clamped), then erasing (to zero). */
#ifndef TRAIND_AUGMENT_MATH_H
#define TRAIND_AUGMENT_MATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define AUG_FN static inline __host__ __device__
#else
#define AUG_FN static inline
#endif

#define AUG_MAX_ERASE 4   /* rectangles per sample */

/* One sample's augmentation, drawn on the host (augment_draw), read by the
 * gather (im2col) and by the label transform (aug_joints). Plain 4-byte
 * fields: the same layout in C and CUDA. */
typedef struct {
    float m[9];          /* joints' = m · joints (row-major) */
    float minv[9];       /* m⁻¹: the source ray of an output ray */
    float color[12];     /* [0,1] RGB: rgb' = clamp(C·rgb + d, 0, 1); C = color[0..8] row-major, d = color[9..11] */
    int32_t geom;        /* 0: m is the identity — pixels are copied, not resampled */
    int32_t photo;       /* 0: colours untouched */
    int32_t n_erase;     /* rectangles in erase[] */
    int32_t pad_;
    int32_t erase[AUG_MAX_ERASE][4];   /* x0, y0, x1, y1: output pixels x0 <= x < x1, y0 <= y < y1 */
} aug_sample_t;

/* The augmentation argument of the gather (backend.h im2col); NULL there: none. */
typedef struct {
    const aug_sample_t *samples;   /* backend memory [Bn], one per batch row */
    const float *intrinsics;       /* backend memory [N,3,3] read by the batch's idx; NULL: assumed (aug_camera) */
    float mean[3], std[3];         /* how the images were normalized (colour ops work in [0,1] RGB) */
} im2col_aug_t;

/* K of a sample: k (9 floats) when not NULL, else the assumed camera of an
 * H×W image: focal length = W pixels, principal point at the centre. */
AUG_FN void aug_camera(const float *k, int H, int W, float K[9]) {
    if (k) {
        for (int i = 0; i < 9; i++) K[i] = k[i];
        return;
    }
    K[0] = (float)W; K[1] = 0.0f;     K[2] = 0.5f * (float)W;
    K[3] = 0.0f;     K[4] = (float)W; K[5] = 0.5f * (float)H;
    K[6] = 0.0f;     K[7] = 0.0f;     K[8] = 1.0f;
}

AUG_FN void aug_mul3(const float a[9], const float b[9], float c[9]) {
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) c[i * 3 + j] = a[i * 3] * b[j] + a[i * 3 + 1] * b[3 + j] + a[i * 3 + 2] * b[6 + j];
}

/* inv = a⁻¹ by the adjugate; 0 (inv untouched) when a is singular or not finite. */
AUG_FN int aug_inv3(const float a[9], float inv[9]) {
    float c0 = a[4] * a[8] - a[5] * a[7], c1 = a[5] * a[6] - a[3] * a[8], c2 = a[3] * a[7] - a[4] * a[6];
    float det = a[0] * c0 + a[1] * c1 + a[2] * c2;
    if (!(fabsf(det) > 1e-30f) || !(fabsf(det) < 1e30f)) return 0;
    float r = 1.0f / det;
    inv[0] = c0 * r; inv[1] = (a[2] * a[7] - a[1] * a[8]) * r; inv[2] = (a[1] * a[5] - a[2] * a[4]) * r;
    inv[3] = c1 * r; inv[4] = (a[0] * a[8] - a[2] * a[6]) * r; inv[5] = (a[2] * a[3] - a[0] * a[5]) * r;
    inv[6] = c2 * r; inv[7] = (a[1] * a[6] - a[0] * a[7]) * r; inv[8] = (a[0] * a[4] - a[1] * a[3]) * r;
    return 1;
}

/* G = K · minv · K⁻¹: output pixel position -> input pixel position
 * (homogeneous). 0 when K is not invertible (the caller blanks the sample). */
AUG_FN int aug_source_map(const float K[9], const float minv[9], float G[9]) {
    float Ki[9], T[9];
    if (!aug_inv3(K, Ki)) return 0;
    aug_mul3(minv, Ki, T);
    aug_mul3(K, T, G);
    return 1;
}

/* Bilinear taps of output pixel (x, y) through G over an H×W image:
 * off[k] = sy·W + sx of tap k, or -1 when it lies outside (it reads as 0);
 * w[k] its weight. A point behind the camera, non-finite or far outside
 * gives four -1 taps. */
AUG_FN void aug_taps(const float G[9], int x, int y, int H, int W, int32_t off[4], float w[4]) {
    for (int k = 0; k < 4; k++) {
        off[k] = -1;
        w[k] = 0.0f;
    }
    float u = (float)x + 0.5f, v = (float)y + 0.5f;
    float X = G[0] * u + G[1] * v + G[2], Y = G[3] * u + G[4] * v + G[5], Z = G[6] * u + G[7] * v + G[8];
    if (!(Z > 1e-20f)) return;
    float sx = X / Z - 0.5f, sy = Y / Z - 0.5f;
    if (!(sx > -2.0f && sx < (float)W + 1.0f && sy > -2.0f && sy < (float)H + 1.0f)) return;
    float fx = floorf(sx), fy = floorf(sy), ax = sx - fx, ay = sy - fy;
    int x0 = (int)fx, y0 = (int)fy;
    for (int k = 0; k < 4; k++) {
        int xi = x0 + (k & 1), yi = y0 + (k >> 1);
        if (xi < 0 || xi >= W || yi < 0 || yi >= H) continue;
        off[k] = yi * W + xi;
        w[k] = ((k & 1) ? ax : 1.0f - ax) * ((k >> 1) ? ay : 1.0f - ay);
    }
}

/* Colour transform of one pixel, v[3] in the normalized space
 * ((rgb - mean) / std) in and out. */
AUG_FN void aug_color(const aug_sample_t *s, const float mean[3], const float std[3], float v[3]) {
    float r[3];
    for (int c = 0; c < 3; c++) r[c] = v[c] * std[c] + mean[c];
    for (int c = 0; c < 3; c++) {
        float q = s->color[c * 3] * r[0] + s->color[c * 3 + 1] * r[1] + s->color[c * 3 + 2] * r[2] + s->color[9 + c];
        q = q < 0.0f ? 0.0f : q > 1.0f ? 1.0f : q;
        v[c] = (q - mean[c]) / std[c];
    }
}

/* 1 when output pixel (x, y) lies in one of the erased rectangles. */
AUG_FN int aug_erased(const aug_sample_t *s, int x, int y) {
    for (int k = 0; k < s->n_erase; k++)
        if (x >= s->erase[k][0] && x < s->erase[k][2] && y >= s->erase[k][1] && y < s->erase[k][3]) return 1;
    return 0;
}

/* Element i of an image in fp32, or in bf16 when bf16 is set (widened
 * exactly: its 16 bits are the top half of the float's). */
AUG_FN float aug_ld(const void *p, int bf16, size_t i) {
    if (!bf16) return ((const float *)p)[i];
    union { uint32_t u; float f; } c;
    c.u = (uint32_t)((const uint16_t *)p)[i] << 16;
    return c.f;
}

/* v[3] (normalized space): output pixel (x, y) of a sample — the source
 * image img [3][H][W] (fp32, or bf16) copied (no geometry), or sampled
 * through G where the source map exists (mapped; else zero), then the
 * colour transform and the erasing. The whole per-pixel computation, which
 * both backends run as it is written here. */
AUG_FN void aug_pixel(const aug_sample_t *s, int mapped, const float G[9], const void *img, int bf16, int H, int W,
                      int x, int y, const float mean[3], const float std[3], float v[3]) {
    const size_t hw = (size_t)H * W;
    v[0] = v[1] = v[2] = 0.0f;
    if (!s->geom) {
        for (int c = 0; c < 3; c++) v[c] = aug_ld(img, bf16, c * hw + (size_t)y * W + x);
    } else if (mapped) {
        int32_t off[4];
        float w[4];
        aug_taps(G, x, y, H, W, off, w);
        for (int k = 0; k < 4; k++)
            if (off[k] >= 0)
                for (int c = 0; c < 3; c++) v[c] += w[k] * aug_ld(img, bf16, c * hw + (size_t)off[k]);
    }
    if (s->photo) aug_color(s, mean, std, v);
    if (aug_erased(s, x, y)) v[0] = v[1] = v[2] = 0.0f;
}

/* out[3] = m · in[3]: one joint's label under the sample's geometry. */
AUG_FN void aug_joint(const float m[9], const float in[3], float out[3]) {
    for (int i = 0; i < 3; i++) out[i] = m[i * 3] * in[0] + m[i * 3 + 1] * in[1] + m[i * 3 + 2] * in[2];
}

#endif
