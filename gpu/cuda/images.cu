/* gpu/cuda/images.cu — the CUDA backend's image kernels: u8 image
 * normalization, and im2col (gather + conversion fused, and the per-sample
 * augmentation of gpu/augment_math.h) with its label transform.
 *
 * Compiled with --fmad=false (Makefile): no multiply-add is contracted into an
 * FMA, so every float computed here — the homography, the bilinear taps and
 * sums, the colour transform — is the one the CPU reference computes with
 * the same functions (x86-64-v2 has no FMA to contract into), bit for bit;
 * test_ops_gpu compares the augmented batches exactly. These kernels are a
 * gather, bound by memory, so the unfused multiplies cost nothing measurable.
 * Semantics: gpu/backend.h. */
#include "gpu/cuda/cuda_common.h"
#include "store/hand.h"

#define CU_T 256

static inline cudaStream_t cu_st(backend_t *b) { return cu_impl(b)->stream; }

/* ---- images ------------------------------------------------------------------------ */

struct cu_norm3 { float mean[3], std_[3]; };

/* dst[i,c,y,x] = (src[i,y,x,c]/255 - mean[c]) / std[c] */
__global__ void cu_u8_normalize_kernel(void *dst, dtype_t ddt, const uint8_t *src, size_t n_px,
                                       size_t hw, cu_norm3 nm) {
    for (size_t q = blockIdx.x * (size_t)blockDim.x + threadIdx.x; q < n_px; q += (size_t)gridDim.x * blockDim.x) {
        size_t img = q / hw, px = q % hw;
        const uint8_t *s = src + q * 3;
        for (int c = 0; c < 3; c++) {
            float v = ((float)s[c] / 255.0f - nm.mean[c]) / nm.std_[c];
            cu_st(dst, ddt, (img * 3 + c) * hw + px, v);
        }
    }
}

void cu_u8_normalize(backend_t *b, void *dst, dtype_t ddt, const uint8_t *src, size_t n_img,
                     int H, int W, const float mean[3], const float std_[3]) {
    cu_norm3 nm;
    for (int c = 0; c < 3; c++) { nm.mean[c] = mean[c]; nm.std_[c] = std_[c]; }
    size_t hw = (size_t)H * W, n_px = n_img * hw;
    if (!n_px) return;
    cu_u8_normalize_kernel<<<cu_blocks(n_px, CU_T), CU_T, 0, cu_st(b)>>>(dst, ddt, src, n_px, hw, nm);
    CU_LAUNCH_CHECK();
}

/* out[b*P + py*Wp + px, c*p*p + ky*p + kx] = images[idx[b], c, py*p+ky, px*p+kx] */
__global__ void cu_im2col_kernel(void *out, dtype_t cdt, const void *images, dtype_t idt,
                                 const int32_t *idx, int Bn, int H, int W, int p) {
    int Wp = W / p, P = (H / p) * Wp, cols = 3 * p * p;
    size_t n = (size_t)Bn * P * cols;
    for (size_t o = blockIdx.x * (size_t)blockDim.x + threadIdx.x; o < n; o += (size_t)gridDim.x * blockDim.x) {
        int col = (int)(o % cols);
        size_t row = o / cols;
        int pi = (int)(row % P), bi = (int)(row / P);
        int c = col / (p * p), r = col % (p * p), ky = r / p, kx = r % p;
        int y = (pi / Wp) * p + ky, x = (pi % Wp) * p + kx;
        size_t img = idx ? (size_t)idx[bi] : (size_t)bi;
        cu_st(out, cdt, o, cu_ld(images, idt, ((img * 3 + c) * H + y) * (size_t)W + x));
    }
}

/* The augmented gather (gpu/augment_math.h, the same functions as the CPU
 * reference): grid (pixel blocks, Bn); thread 0 of a block reads the sample's
 * record and intrinsics and builds its source map in shared memory; then a
 * thread per output pixel samples the three channels, transforms the colour,
 * erases, and writes the pixel's three columns. */
__global__ void cu_im2col_aug_kernel(void *out, dtype_t cdt, const void *images, dtype_t idt,
                                     const int32_t *idx, int H, int W, int p, const aug_sample_t *samples,
                                     const float *intr, cu_norm3 nm) {
    __shared__ aug_sample_t s;
    __shared__ float G[9];
    __shared__ int mapped;
    const int bi = blockIdx.y;
    const size_t img = idx ? (size_t)idx[bi] : (size_t)bi;
    if (threadIdx.x == 0) {
        s = samples[bi];
        if (s.n_erase < 0 || s.n_erase > AUG_MAX_ERASE) s.n_erase = 0;   /* host-drawn; never happens */
        float K[9];
        aug_camera(intr ? intr + img * 9 : NULL, H, W, K);
        mapped = !s.geom || aug_source_map(K, s.minv, G);
    }
    __syncthreads();
    const int Wp = W / p, Hp = H / p, Wc = Wp * p, npx = Hp * p * Wc, cols = 3 * p * p;
    const size_t P = (size_t)Hp * Wp;
    const void *src = (const char *)images + img * 3 * H * W * (idt == DT_BF16 ? 2 : 4);
    for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < npx; q += gridDim.x * blockDim.x) {
        int y = q / Wc, x = q % Wc;
        float v[3];
        aug_pixel(&s, mapped, G, src, idt == DT_BF16, H, W, x, y, nm.mean, nm.std_, v);
        size_t row = (size_t)bi * P + (size_t)(y / p) * Wp + (size_t)(x / p);
        size_t col = (size_t)(y % p) * p + (size_t)(x % p);
        for (int c = 0; c < 3; c++) cu_st(out, cdt, row * cols + (size_t)c * p * p + col, v[c]);
    }
}

void cu_im2col(backend_t *b, void *out, dtype_t cdt, const void *images, dtype_t idt,
               const int32_t *idx, int Bn, int H, int W, int p, const im2col_aug_t *aug) {
    CU_ASSERT(p > 0 && H >= p && W >= p, "H=%d W=%d p=%d", H, W, p);
    size_t n = (size_t)Bn * (H / p) * (W / p) * 3 * p * p;
    if (!n) return;
    if (aug) {
        CU_ASSERT(aug->samples != NULL && Bn <= 65535, "augmented im2col: samples %p, Bn %d",
                  (const void *)aug->samples, Bn);
        cu_norm3 nm;
        for (int c = 0; c < 3; c++) { nm.mean[c] = aug->mean[c]; nm.std_[c] = aug->std[c]; }
        size_t npx = (size_t)(H / p) * p * (W / p) * p;
        dim3 grid(cu_blocks(npx, CU_T) < 1024 ? cu_blocks(npx, CU_T) : 1024, (unsigned)Bn);
        cu_im2col_aug_kernel<<<grid, CU_T, 0, cu_st(b)>>>(out, cdt, images, idt, idx, H, W, p, aug->samples,
                                                          aug->intrinsics, nm);
        CU_LAUNCH_CHECK();
        return;
    }
    cu_im2col_kernel<<<cu_blocks(n, CU_T), CU_T, 0, cu_st(b)>>>(out, cdt, images, idt, idx, Bn, H, W, p);
    CU_LAUNCH_CHECK();
}

/* out[b,j,:] = aug[b].m · joints[idx[b],j,:]: a thread per joint. */
__global__ void cu_aug_joints_kernel(float *out, const float *joints, const int32_t *idx, const aug_sample_t *aug,
                                     int Bn) {
    int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= Bn * HAND_JOINTS) return;
    int bi = q / HAND_JOINTS, j = q % HAND_JOINTS;
    size_t s = idx ? (size_t)idx[bi] : (size_t)bi;
    aug_joint(aug[bi].m, joints + (s * HAND_JOINTS + j) * 3, out + ((size_t)bi * HAND_JOINTS + j) * 3);
}

void cu_aug_joints(backend_t *b, float *out, const float *joints, const int32_t *idx, const aug_sample_t *aug,
                   int Bn) {
    if (Bn <= 0) return;
    int n = Bn * HAND_JOINTS;
    cu_aug_joints_kernel<<<(n + CU_T - 1) / CU_T, CU_T, 0, cu_st(b)>>>(out, joints, idx, aug, Bn);
    CU_LAUNCH_CHECK();
}
