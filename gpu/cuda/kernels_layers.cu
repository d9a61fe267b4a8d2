/* gpu/cuda/kernels_layers.cu — the per-layer kernels of the CUDA backend:
 * dtype cast, LayerNorm fwd/bwd (a warp per row), exact-erf GELU fwd/bwd, residual +
 * LayerScale fwd/bwd, token assembly (embed) fwd/bwd, token slice/scatter.
 * Parameter-gradient reductions are deterministic (fixed-order column sums,
 * no atomics). Semantics: gpu/backend.h. */
#include "gpu/cuda/cuda_common.h"

#define CU_T 256

static inline cudaStream_t cu_st(backend_t *b) { return cu_impl(b)->stream; }

/* ---- 8-wide vector access (16-byte loads and stores) -------------------------------
 * Used when the element count is a multiple of 8 and every pointer is
 * 16-byte aligned (cu_vec8_ok); i is a multiple of 8. */

__device__ __forceinline__ void cu_ld8(float v[8], const void *p, dtype_t dt, size_t i) {
    if (dt == DT_BF16) {
        uint4 u = *(const uint4 *)((const __nv_bfloat16 *)p + i);
        const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float2 f = __bfloat1622float2(h[k]);
            v[2 * k] = f.x;
            v[2 * k + 1] = f.y;
        }
    } else {
        float4 a = *(const float4 *)((const float *)p + i), b = *(const float4 *)((const float *)p + i + 4);
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    }
}

__device__ __forceinline__ void cu_st8(void *p, dtype_t dt, size_t i, const float v[8]) {
    if (dt == DT_BF16) {
        uint4 u;
        __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
#pragma unroll
        for (int k = 0; k < 4; k++) h[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
        *(uint4 *)((__nv_bfloat16 *)p + i) = u;
    } else {
        *(float4 *)((float *)p + i) = make_float4(v[0], v[1], v[2], v[3]);
        *(float4 *)((float *)p + i + 4) = make_float4(v[4], v[5], v[6], v[7]);
    }
}

static inline bool cu_vec8_ok(size_t n, const void *a, const void *b = NULL, const void *c = NULL,
                              const void *d = NULL) {
    return n % 8 == 0 && (uintptr_t)a % 16 == 0 && (uintptr_t)b % 16 == 0 && (uintptr_t)c % 16 == 0 &&
           (uintptr_t)d % 16 == 0;
}

#define CU_V8_LOOP(i, n) \
    for (size_t i = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) * 8; i < (n); i += (size_t)gridDim.x * blockDim.x * 8)

/* ---- cast ------------------------------------------------------------------------ */

__global__ void cu_cast_kernel(void *dst, dtype_t ddt, const void *src, dtype_t sdt, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        cu_st(dst, ddt, i, cu_ld(src, sdt, i));
}

__global__ void cu_cast8_kernel(void *dst, dtype_t ddt, const void *src, dtype_t sdt, size_t n) {
    CU_V8_LOOP(i, n) {
        float v[8];
        cu_ld8(v, src, sdt, i);
        cu_st8(dst, ddt, i, v);
    }
}

void cu_cast(backend_t *b, void *dst, dtype_t ddt, const void *src, dtype_t sdt, size_t n) {
    if (!n) return;
    CU_ASSERT((ddt == DT_F32 || ddt == DT_BF16) && (sdt == DT_F32 || sdt == DT_BF16),
              "cast %s -> %s", dtype_name(sdt), dtype_name(ddt));
    if (ddt == sdt) {
        if (dst != src)
            CU_CHECK(cudaMemcpyAsync(dst, src, n * dtype_size(ddt), cudaMemcpyDeviceToDevice, cu_st(b)));
        return;
    }
    if (cu_vec8_ok(n, dst, src))
        cu_cast8_kernel<<<cu_blocks(n / 8, CU_T), CU_T, 0, cu_st(b)>>>(dst, ddt, src, sdt, n);
    else
        cu_cast_kernel<<<cu_blocks(n, CU_T), CU_T, 0, cu_st(b)>>>(dst, ddt, src, sdt, n);
    CU_LAUNCH_CHECK();
}

/* ---- LayerNorm ------------------------------------------------------------------------ */

__device__ __forceinline__ float cu_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One warp per row: two passes (mean, then centred variance) over the row. */
__global__ void cu_layernorm_fwd_kernel(void *out, dtype_t odt, float *mean, float *rstd,
                                        const float *inp, const float *w, const float *bias,
                                        int N, int C, float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += x[c];
    float m = cu_warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) { float d = x[c] - m; v += d * d; }
    float rs = 1.0f / sqrtf(cu_warp_sum(v) / C + eps);
    for (int c = lane; c < C; c += 32) {
        float y = (x[c] - m) * rs * w[c] + (bias ? bias[c] : 0.0f);
        cu_st(out, odt, (size_t)row * C + c, y);
    }
    if (lane == 0) {
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = rs;
    }
}

/* Rows of C = 128*NV (NV <= 8): a warp per row held in registers as float4s
 * (lane owns columns 4*lane + 128*k); the same two-pass statistics. */

/* The second half of a register-resident LayerNorm row, shared by the plain
 * and the LayerScale-fused kernels: s is the lane's partial sum of its values
 * v; computes mean and rstd (two-pass), writes y = (v-mean)*rstd*w + bias to
 * out[row] in odt, and the statistics when asked. */
template <int NV>
__device__ __forceinline__ void cu_ln_row_finish(const float4 (&v)[NV], float s, void *out, dtype_t odt,
                                                 float *mean, float *rstd, const float *w, const float *bias,
                                                 int row, int lane, float eps) {
    constexpr int C = 128 * NV;
    float m = cu_warp_sum(s) / C, q = 0.0f;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        float a = v[k].x - m, bb = v[k].y - m, c = v[k].z - m, d = v[k].w - m;
        q += (a * a + bb * bb) + (c * c + d * d);
    }
    float rs = 1.0f / sqrtf(cu_warp_sum(q) / C + eps);
#pragma unroll
    for (int k = 0; k < NV; k++) {
        int c = 128 * k + 4 * lane;
        float4 wv = *(const float4 *)(w + c), bv = bias ? *(const float4 *)(bias + c) : make_float4(0, 0, 0, 0);
        float y0 = (v[k].x - m) * rs * wv.x + bv.x, y1 = (v[k].y - m) * rs * wv.y + bv.y;
        float y2 = (v[k].z - m) * rs * wv.z + bv.z, y3 = (v[k].w - m) * rs * wv.w + bv.w;
        size_t o = (size_t)row * C + c;
        if (odt == DT_BF16) {
            __nv_bfloat162 h[2] = {__floats2bfloat162_rn(y0, y1), __floats2bfloat162_rn(y2, y3)};
            *(uint2 *)((__nv_bfloat16 *)out + o) = *(const uint2 *)h;
        } else {
            *(float4 *)((float *)out + o) = make_float4(y0, y1, y2, y3);
        }
    }
    if (lane == 0) {
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = rs;
    }
}

template <int NV>
__global__ void cu_layernorm_fwd_v_kernel(void *out, dtype_t odt, float *mean, float *rstd, const float *inp,
                                          const float *w, const float *bias, int N, float eps) {
    constexpr int C = 128 * NV;
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C;
    float4 v[NV];
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        v[k] = *(const float4 *)(x + 128 * k + 4 * lane);
        s += (v[k].x + v[k].y) + (v[k].z + v[k].w);
    }
    cu_ln_row_finish<NV>(v, s, out, odt, mean, rstd, w, bias, row, lane, eps);
}

template <int NV>
__global__ void cu_layernorm_bwd_v_kernel(float *dinp, const float *dout, const float *inp, const float *w,
                                          const float *mean, const float *rstd, int N) {
    constexpr int C = 128 * NV;
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C, *g = dout + (size_t)row * C;
    float m = mean[row], rs = rstd[row];
    float4 xh[NV], dn[NV];
    float s1 = 0.0f, s2 = 0.0f;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        int c = 128 * k + 4 * lane;
        float4 xv = *(const float4 *)(x + c), gv = *(const float4 *)(g + c), wv = *(const float4 *)(w + c);
        xh[k] = make_float4((xv.x - m) * rs, (xv.y - m) * rs, (xv.z - m) * rs, (xv.w - m) * rs);
        dn[k] = make_float4(gv.x * wv.x, gv.y * wv.y, gv.z * wv.z, gv.w * wv.w);
        s1 += (dn[k].x + dn[k].y) + (dn[k].z + dn[k].w);
        s2 += (dn[k].x * xh[k].x + dn[k].y * xh[k].y) + (dn[k].z * xh[k].z + dn[k].w * xh[k].w);
    }
    s1 = cu_warp_sum(s1) / C;
    s2 = cu_warp_sum(s2) / C;
    float *d = dinp + (size_t)row * C;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        int c = 128 * k + 4 * lane;
        float4 dv = *(float4 *)(d + c);
        dv.x += rs * (dn[k].x - s1 - xh[k].x * s2);
        dv.y += rs * (dn[k].y - s1 - xh[k].y * s2);
        dv.z += rs * (dn[k].z - s1 - xh[k].z * s2);
        dv.w += rs * (dn[k].w - s1 - xh[k].w * s2);
        *(float4 *)(d + c) = dv;
    }
}

#define CU_LN_DISPATCH(KERNEL, C, ...) do {                                          \
    switch ((C) / 128) {                                                            \
    case 1: KERNEL<1><<<grid, 256, 0, st>>>(__VA_ARGS__); break;                    \
    case 2: KERNEL<2><<<grid, 256, 0, st>>>(__VA_ARGS__); break;                    \
    case 3: KERNEL<3><<<grid, 256, 0, st>>>(__VA_ARGS__); break;                    \
    case 4: KERNEL<4><<<grid, 256, 0, st>>>(__VA_ARGS__); break;                    \
    case 5: KERNEL<5><<<grid, 256, 0, st>>>(__VA_ARGS__); break;                    \
    case 6: KERNEL<6><<<grid, 256, 0, st>>>(__VA_ARGS__); break;                    \
    case 7: KERNEL<7><<<grid, 256, 0, st>>>(__VA_ARGS__); break;                    \
    default: KERNEL<8><<<grid, 256, 0, st>>>(__VA_ARGS__); break;                   \
    }                                                                               \
} while (0)

static inline bool cu_ln_vec(int C, const void *a, const void *b2, const void *c, const void *d) {
    return C % 128 == 0 && C <= 1024 && (uintptr_t)a % 16 == 0 && (uintptr_t)b2 % 16 == 0 &&
           (uintptr_t)c % 16 == 0 && (uintptr_t)d % 16 == 0;
}

void cu_layernorm_fwd(backend_t *b, void *out, dtype_t odt, float *mean, float *rstd,
                      const float *inp, const float *w, const float *bias, int N, int C, float eps) {
    if (N <= 0) return;
    CU_ASSERT(C > 0 && w, "C=%d", C);
    int warps = 8;
    cudaStream_t st = cu_st(b);
    if (cu_ln_vec(C, out, inp, w, bias)) {
        unsigned grid = (unsigned)((N + 7) / 8);
        CU_LN_DISPATCH(cu_layernorm_fwd_v_kernel, C, out, odt, mean, rstd, inp, w, bias, N, eps);
    } else {
        cu_layernorm_fwd_kernel<<<(N + warps - 1) / warps, warps * 32, 0, st>>>(out, odt, mean, rstd, inp, w, bias,
                                                                               N, C, eps);
    }
    CU_LAUNCH_CHECK();
}

/* dinp[n,c] += rstd * (dn - mean(dn) - xhat * mean(dn * xhat)),  dn = dout * w */
__global__ void cu_layernorm_bwd_kernel(float *dinp, const float *dout, const float *inp, const float *w,
                                        const float *mean, const float *rstd, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C, *g = dout + (size_t)row * C;
    float m = mean[row], rs = rstd[row];
    float s1 = 0.0f, s2 = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float dn = g[c] * w[c], xh = (x[c] - m) * rs;
        s1 += dn;
        s2 += dn * xh;
    }
    s1 = cu_warp_sum(s1) / C;
    s2 = cu_warp_sum(s2) / C;
    float *d = dinp + (size_t)row * C;
    for (int c = lane; c < C; c += 32) {
        float dn = g[c] * w[c], xh = (x[c] - m) * rs;
        d[c] += rs * (dn - s1 - xh * s2);
    }
}

#define CU_LN_ROWS 256
/* Partial column sums for dw (dout * xhat) and db (dout) over a chunk of rows. */
__global__ void cu_layernorm_dw_kernel(float *part_w, float *part_b, const float *dout, const float *inp,
                                       const float *mean, const float *rstd, int N, int C) {
    __shared__ float sw[16][33], sb[16][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * CU_LN_ROWS, r1 = min(N, r0 + CU_LN_ROWS);
    float aw = 0.0f, ab = 0.0f;
    if (col < C) {
        for (int n = r0 + threadIdx.y; n < r1; n += 16) {
            size_t i = (size_t)n * C + col;
            float g = dout[i];
            aw += g * ((inp[i] - mean[n]) * rstd[n]);
            ab += g;
        }
    }
    sw[threadIdx.y][threadIdx.x] = aw;
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && col < C) {
        float tw = 0.0f, tb = 0.0f;
        for (int j = 0; j < 16; j++) { tw += sw[j][threadIdx.x]; tb += sb[j][threadIdx.x]; }
        part_w[(size_t)blockIdx.y * C + col] = tw;
        part_b[(size_t)blockIdx.y * C + col] = tb;
    }
}

/* Four consecutive columns of the LayerNorm's input: inp, or with lx the
 * residual sum inp + gamma * lx — the expression of cu_layerscale_fwd8_kernel
 * (r += g * x), and the very code of the fused forward cu_ls_ln_fwd_v_kernel,
 * so the backward remakes the bits the forward wrote. */
__device__ __forceinline__ float4 cu_ln_in4(const float *inp, const void *lx, dtype_t lxdt, const float *gamma,
                                            size_t i, int c) {
    float4 r = *(const float4 *)(inp + i);
    if (!lx) return r;
    float4 g = *(const float4 *)(gamma + c), x;
    if (lxdt == DT_BF16) {
        uint2 u = *(const uint2 *)((const __nv_bfloat16 *)lx + i);
        float2 a = __bfloat1622float2(*(const __nv_bfloat162 *)&u.x);
        float2 bb = __bfloat1622float2(*(const __nv_bfloat162 *)&u.y);
        x = make_float4(a.x, a.y, bb.x, bb.y);
    } else {
        x = *(const float4 *)((const float *)lx + i);
    }
    return make_float4(r.x + g.x * x.x, r.y + g.y * x.y, r.z + g.z * x.z, r.w + g.w * x.w);
}

/* The vectorized backward with the dw/db column sums in the same pass (one
 * read of dout and inp instead of two): a warp per row as in
 * cu_layernorm_bwd_v_kernel, rows strided over a grid of resident blocks;
 * each lane keeps its columns' partial sums of dout * xhat and dout in
 * registers, the block adds its 8 warps' in a fixed order (deterministic)
 * into part_w/part_b[blockIdx.x][C]. With lx, the input is inp + gamma * lx
 * (cu_ln_in4): a block's residual sum x_mid is read as its two terms. */
template <int NV>
__global__ void __launch_bounds__(256) cu_layernorm_bwd_dw_v_kernel(float *dinp, float *part_w, float *part_b,
                                                                    const float *dout, const float *inp,
                                                                    const void *lx, dtype_t lxdt,
                                                                    const float *gamma, const float *w,
                                                                    const float *mean, const float *rstd, int N) {
    constexpr int C = 128 * NV;
    __shared__ __align__(16) float red[8][C];
    int wid = threadIdx.x / 32, lane = threadIdx.x % 32;
    float4 aw[NV], ab[NV];
#pragma unroll
    for (int k = 0; k < NV; k++) aw[k] = ab[k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int row = blockIdx.x * 8 + wid; row < N; row += gridDim.x * 8) {
        const float *g = dout + (size_t)row * C;
        float m = mean[row], rs = rstd[row];
        float *d = dinp + (size_t)row * C;
        float4 xh[NV], dn[NV], dv[NV];
        float s1 = 0.0f, s2 = 0.0f;
#pragma unroll
        for (int k = 0; k < NV; k++) dv[k] = *(const float4 *)(d + 128 * k + 4 * lane);   /* in flight with x, g */
#pragma unroll
        for (int k = 0; k < NV; k++) {
            int c = 128 * k + 4 * lane;
            float4 xv = cu_ln_in4(inp, lx, lxdt, gamma, (size_t)row * C + c, c);
            float4 gv = *(const float4 *)(g + c), wv = *(const float4 *)(w + c);
            xh[k] = make_float4((xv.x - m) * rs, (xv.y - m) * rs, (xv.z - m) * rs, (xv.w - m) * rs);
            dn[k] = make_float4(gv.x * wv.x, gv.y * wv.y, gv.z * wv.z, gv.w * wv.w);
            aw[k].x += gv.x * xh[k].x; aw[k].y += gv.y * xh[k].y; aw[k].z += gv.z * xh[k].z; aw[k].w += gv.w * xh[k].w;
            ab[k].x += gv.x; ab[k].y += gv.y; ab[k].z += gv.z; ab[k].w += gv.w;
            s1 += (dn[k].x + dn[k].y) + (dn[k].z + dn[k].w);
            s2 += (dn[k].x * xh[k].x + dn[k].y * xh[k].y) + (dn[k].z * xh[k].z + dn[k].w * xh[k].w);
        }
        s1 = cu_warp_sum(s1) / C;
        s2 = cu_warp_sum(s2) / C;
#pragma unroll
        for (int k = 0; k < NV; k++) {
            float4 o = dv[k];
            o.x += rs * (dn[k].x - s1 - xh[k].x * s2);
            o.y += rs * (dn[k].y - s1 - xh[k].y * s2);
            o.z += rs * (dn[k].z - s1 - xh[k].z * s2);
            o.w += rs * (dn[k].w - s1 - xh[k].w * s2);
            *(float4 *)(d + 128 * k + 4 * lane) = o;
        }
    }
    /* the block's column sums: dw, then db through the same buffer */
    for (int pass = 0; pass < 2; pass++) {
        float *part = pass ? part_b : part_w;
#pragma unroll
        for (int k = 0; k < NV; k++) *(float4 *)&red[wid][128 * k + 4 * lane] = pass ? ab[k] : aw[k];
        __syncthreads();
        if (part)
            for (int c = threadIdx.x; c < C; c += blockDim.x) {
                float t = 0.0f;
#pragma unroll
                for (int j = 0; j < 8; j++) t += red[j][c];
                part[(size_t)blockIdx.x * C + c] = t;
            }
        __syncthreads();
    }
}

void cu_layernorm_bwd(backend_t *b, float *dinp, float *dw, float *db, const float *dout,
                      const float *inp, const void *lx, dtype_t lxdt, const float *gamma,
                      const float *w, const float *mean, const float *rstd, int N, int C) {
    if (N <= 0) return;
    CU_ASSERT(C > 0 && w && mean && rstd, "layernorm_bwd needs w, mean and rstd");
    CU_ASSERT(!lx || gamma, "layernorm_bwd: a residual term needs its gamma");
    cudaStream_t st = cu_st(b);
    if (dinp && (dw || db) && cu_ln_vec(C, dinp, dout, inp, w) && cu_ln_vec(C, lx, gamma, NULL, NULL)) {
        /* one pass for dinp and the column sums: as many blocks as are resident at once */
        int per_sm = 0, sms = 0;
        switch (C / 128) {
#define CU_LN_OCC(NV) case NV: CU_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, \
                          cu_layernorm_bwd_dw_v_kernel<NV>, 256, 0)); break;
        CU_LN_OCC(1) CU_LN_OCC(2) CU_LN_OCC(3) CU_LN_OCC(4) CU_LN_OCC(5) CU_LN_OCC(6) CU_LN_OCC(7)
        default: CU_LN_OCC(8)
#undef CU_LN_OCC
        }
        CU_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, cu_impl(b)->device));
        int nblk = per_sm > 0 ? per_sm * sms : sms;
        if (nblk > (N + 7) / 8) nblk = (N + 7) / 8;
        float *part = (float *)cu_scratch(b, 2, (size_t)2 * nblk * C * sizeof(float));
        float *pw = dw ? part : NULL, *pb = db ? part + (size_t)nblk * C : NULL;
        unsigned grid = (unsigned)nblk;
        CU_LN_DISPATCH(cu_layernorm_bwd_dw_v_kernel, C, dinp, pw, pb, dout, inp, lx, lxdt, gamma, w, mean, rstd, N);
        CU_LAUNCH_CHECK();
        if (dw) cu_colsum_finish(b, dw, pw, nblk, C);
        if (db) cu_colsum_finish(b, db, pb, nblk, C);
        return;
    }
    if (lx) {   /* the other shapes: the sum made first, by the forward's own op */
        float *sum = (float *)cu_scratch(b, 4, (size_t)N * C * sizeof(float));
        cu_layerscale_fwd(b, sum, inp, lx, lxdt, gamma, N, C);
        inp = sum;
    }
    if (dinp) {
        int warps = 8;
        if (cu_ln_vec(C, dinp, dout, inp, w)) {
            unsigned grid = (unsigned)((N + 7) / 8);
            CU_LN_DISPATCH(cu_layernorm_bwd_v_kernel, C, dinp, dout, inp, w, mean, rstd, N);
        } else {
            cu_layernorm_bwd_kernel<<<(N + warps - 1) / warps, warps * 32, 0, st>>>(dinp, dout, inp, w, mean, rstd, N, C);
        }
        CU_LAUNCH_CHECK();
    }
    if (dw || db) {
        int nchunk = (N + CU_LN_ROWS - 1) / CU_LN_ROWS;
        CU_ASSERT(nchunk <= 65535, "N=%d", N);
        float *part = (float *)cu_scratch(b, 2, (size_t)2 * nchunk * C * sizeof(float));
        float *pw = part, *pb = part + (size_t)nchunk * C;
        dim3 blk(32, 16), grid((C + 31) / 32, nchunk);
        cu_layernorm_dw_kernel<<<grid, blk, 0, st>>>(pw, pb, dout, inp, mean, rstd, N, C);
        CU_LAUNCH_CHECK();
        if (dw) cu_colsum_finish(b, dw, pw, nchunk, C);
        if (db) cu_colsum_finish(b, db, pb, nchunk, C);
    }
}

/* ---- GELU (exact erf) ---------------------------------------------------------------- */

__global__ void cu_gelu_fwd_kernel(void *out, dtype_t odt, const void *inp, dtype_t idt, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float x = cu_ld(inp, idt, i);
        cu_st(out, odt, i, 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)));
    }
}

__global__ void cu_gelu_fwd8_kernel(void *out, dtype_t odt, const void *inp, dtype_t idt, size_t n) {
    CU_V8_LOOP(i, n) {
        float v[8];
        cu_ld8(v, inp, idt, i);
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = 0.5f * v[k] * (1.0f + erff(v[k] * 0.70710678118654752f));
        cu_st8(out, odt, i, v);
    }
}

void cu_gelu_fwd(backend_t *b, void *out, dtype_t odt, const void *inp, dtype_t idt, size_t n) {
    if (!n) return;
    if (cu_vec8_ok(n, out, inp))
        cu_gelu_fwd8_kernel<<<cu_blocks(n / 8, CU_T), CU_T, 0, cu_st(b)>>>(out, odt, inp, idt, n);
    else
        cu_gelu_fwd_kernel<<<cu_blocks(n, CU_T), CU_T, 0, cu_st(b)>>>(out, odt, inp, idt, n);
    CU_LAUNCH_CHECK();
}

/* ---- backward epilogues: GELU', LayerScale, with their column sums ------------------ */

/* Over dout[M,N] in ddt (and x[M,N] in xdt): g = dout * gelu'(x) (CU_EPI_GELU) or
 * g = dout * gamma (CU_EPI_SCALE), computed in f32 and stored in gdt — the bf16
 * operand of the products that follow, so dout is read once and no f32 copy of
 * g is written and read again. In the same pass, deterministic column sums:
 * pa[chunk, c] = sum of g, pb[chunk, c] = sum of dout * x (LayerScale's dgamma;
 * pb NULL: skipped); cu_colsum_finish adds the chunks in order. A block is
 * 32 x 8 threads, each thread VEC consecutive columns of one chunk of
 * CU_COLSUM_ROWS rows (its 8 row-lanes a fixed stride), lanes summed in order. */
enum { CU_EPI_GELU = 0, CU_EPI_SCALE = 1 };
#define CU_EPI_LANES 8

template <int OP, int VEC>
__global__ void cu_bwd_epilogue_kernel(void *g, dtype_t gdt, float *pa, float *pb, const void *dout, dtype_t ddt,
                                       const void *x, dtype_t xdt, const float *gamma, int M, int N) {
    __shared__ float sha[CU_EPI_LANES][32 * VEC];
    __shared__ float shb[CU_EPI_LANES][32 * VEC];
    const int lc = threadIdx.x * VEC, c0 = blockIdx.x * 32 * VEC + lc;
    const int r0 = blockIdx.y * CU_COLSUM_ROWS, r1 = min(M, r0 + CU_COLSUM_ROWS);
    const bool in = c0 < N;   /* VEC 8 is used only when N % 8 == 0 */
    const bool want_x = OP == CU_EPI_GELU || pb;
    float sa[VEC], sb[VEC], gm[VEC];
#pragma unroll
    for (int k = 0; k < VEC; k++) { sa[k] = 0.0f; sb[k] = 0.0f; gm[k] = 0.0f; }
    if (in && OP == CU_EPI_SCALE) {
        if (VEC == 8) cu_ld8(gm, gamma, DT_F32, c0);
        else gm[0] = gamma[c0];
    }
    for (int r = r0 + threadIdx.y; in && r < r1; r += CU_EPI_LANES) {
        size_t i = (size_t)r * N + c0;
        float d[VEC], xv[VEC], v[VEC];
        if (VEC == 8) cu_ld8(d, dout, ddt, i);
        else d[0] = cu_ld(dout, ddt, i);
        if (want_x) {
            if (VEC == 8) cu_ld8(xv, x, xdt, i);
            else xv[0] = cu_ld(x, xdt, i);
        }
#pragma unroll
        for (int k = 0; k < VEC; k++) {
            if (OP == CU_EPI_GELU) {
                float cdf = 0.5f * (1.0f + erff(xv[k] * 0.70710678118654752f));
                float pdf = expf(-0.5f * xv[k] * xv[k]) * 0.39894228040143268f;
                v[k] = d[k] * (cdf + xv[k] * pdf);
            } else {
                v[k] = d[k] * gm[k];
                if (pb) sb[k] += d[k] * xv[k];
            }
            sa[k] += v[k];
        }
        if (g) {
            if (VEC == 8) cu_st8(g, gdt, i, v);
            else cu_st(g, gdt, i, v[0]);
        }
    }
    if (!pa && !pb) return;   /* uniform over the block */
#pragma unroll
    for (int k = 0; k < VEC; k++) {
        sha[threadIdx.y][lc + k] = sa[k];
        shb[threadIdx.y][lc + k] = sb[k];
    }
    __syncthreads();
    if (threadIdx.y == 0 && in) {
#pragma unroll
        for (int k = 0; k < VEC; k++) {
            float ta = 0.0f, tb = 0.0f;
            for (int j = 0; j < CU_EPI_LANES; j++) {
                ta += sha[j][lc + k];
                tb += shb[j][lc + k];
            }
            if (pa) pa[(size_t)blockIdx.y * N + c0 + k] = ta;
            if (pb) pb[(size_t)blockIdx.y * N + c0 + k] = tb;
        }
    }
}

/* The launch: g (may be NULL) in gdt; sum_g[N] += column sums of g, sum_dx[N] +=
 * column sums of dout * x (each may be NULL). */
static void cu_bwd_epilogue(backend_t *b, int op, void *g, dtype_t gdt, float *sum_g, float *sum_dx,
                            const void *dout, dtype_t ddt, const void *x, dtype_t xdt, const float *gamma, int M,
                            int N) {
    if (M <= 0 || N <= 0) return;
    int nchunk = (M + CU_COLSUM_ROWS - 1) / CU_COLSUM_ROWS;
    CU_ASSERT(nchunk <= 65535, "M=%d", M);
    float *pa = sum_g ? (float *)cu_scratch(b, 3, (size_t)nchunk * N * sizeof(float)) : NULL;
    float *pb = sum_dx ? (float *)cu_scratch(b, 4, (size_t)nchunk * N * sizeof(float)) : NULL;
    const bool v8 = N % 8 == 0 && cu_vec8_ok((size_t)M * N, dout, g, op == CU_EPI_GELU || sum_dx ? x : NULL) &&
                    (op != CU_EPI_SCALE || ((uintptr_t)gamma & 15) == 0);
    dim3 blk(32, CU_EPI_LANES);
    cudaStream_t st = cu_st(b);
#define CU_EPI_LAUNCH(OP, VEC) \
    cu_bwd_epilogue_kernel<OP, VEC><<<grid, blk, 0, st>>>(g, gdt, pa, pb, dout, ddt, x, xdt, gamma, M, N)
    if (v8) {
        dim3 grid((N + 255) / 256, nchunk);
        if (op == CU_EPI_GELU) CU_EPI_LAUNCH(CU_EPI_GELU, 8);
        else CU_EPI_LAUNCH(CU_EPI_SCALE, 8);
    } else {
        dim3 grid((N + 31) / 32, nchunk);
        if (op == CU_EPI_GELU) CU_EPI_LAUNCH(CU_EPI_GELU, 1);
        else CU_EPI_LAUNCH(CU_EPI_SCALE, 1);
    }
#undef CU_EPI_LAUNCH
    CU_LAUNCH_CHECK();
    if (sum_g) cu_colsum_finish(b, sum_g, pa, nchunk, N);
    if (sum_dx) cu_colsum_finish(b, sum_dx, pb, nchunk, N);
}

void cu_gelu_bwd(backend_t *b, void *dinp, dtype_t ddt, float *dbias, const void *dout, dtype_t odt,
                 const void *inp, dtype_t idt, int M, int N) {
    cu_bwd_epilogue(b, CU_EPI_GELU, dinp, ddt, dbias, NULL, dout, odt, inp, idt, NULL, M, N);
}

/* ---- residual + LayerScale ------------------------------------------------------------ */

__global__ void cu_layerscale_fwd_kernel(float *out, const float *res, const void *x, dtype_t xdt,
                                         const float *gamma, size_t n, int C) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = res[i] + gamma[i % C] * cu_ld(x, xdt, i);
}

/* 8 consecutive elements share a row when C % 8 == 0 */
__global__ void cu_layerscale_fwd8_kernel(float *out, const float *res, const void *x, dtype_t xdt,
                                          const float *gamma, size_t n, int C) {
    CU_V8_LOOP(i, n) {
        float r[8], v[8], gm[8];
        cu_ld8(r, res, DT_F32, i);
        cu_ld8(v, x, xdt, i);
        cu_ld8(gm, gamma, DT_F32, i % C);
#pragma unroll
        for (int k = 0; k < 8; k++) r[k] += gm[k] * v[k];
        cu_st8(out, DT_F32, i, r);
    }
}

void cu_layerscale_fwd(backend_t *b, float *out, const float *res, const void *x, dtype_t xdt,
                       const float *gamma, int N, int C) {
    size_t n = (size_t)N * C;
    if (!n) return;
    if (C % 8 == 0 && cu_vec8_ok(n, out, res, x, gamma))
        cu_layerscale_fwd8_kernel<<<cu_blocks(n / 8, CU_T), CU_T, 0, cu_st(b)>>>(out, res, x, xdt, gamma, n, C);
    else
        cu_layerscale_fwd_kernel<<<cu_blocks(n, CU_T), CU_T, 0, cu_st(b)>>>(out, res, x, xdt, gamma, n, C);
    CU_LAUNCH_CHECK();
}

void cu_layerscale_bwd(backend_t *b, void *dx, dtype_t ddt, float *dgamma, float *dbias, const float *dout,
                       const void *x, dtype_t xdt, const float *gamma, int N, int C) {
    cu_bwd_epilogue(b, CU_EPI_SCALE, dx, ddt, dbias, dgamma, dout, DT_F32, x, xdt, gamma, N, C);
}

/* ---- token assembly ----------------------------------------------------------------------- */

__global__ void cu_embed_fwd_kernel(float *x, const float *patches, const float *cls, const float *reg,
                                    const float *pos, int Bn, int P, int R, int D) {
    int T = 1 + R + P;
    size_t n = (size_t)Bn * T * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(i % D);
        size_t bt = i / D;
        int t = (int)(bt % T), bi = (int)(bt / T);
        float v;
        if (t == 0) v = cls[d] + pos[d];
        else if (t <= R) v = reg[(size_t)(t - 1) * D + d];
        else {
            int pi = t - 1 - R;
            v = patches[((size_t)bi * P + pi) * D + d] + pos[(size_t)(1 + pi) * D + d];
        }
        x[i] = v;
    }
}

/* Per (token, d): sums over the batch in order; patch gradients copied out. */
__global__ void cu_embed_bwd_kernel(float *dpatches, float *dcls, float *dreg, float *dpos,
                                    const float *dx, int Bn, int P, int R, int D) {
    int T = 1 + R + P;
    size_t n = (size_t)T * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(i % D), t = (int)(i / D);
        float s = 0.0f;
        for (int bi = 0; bi < Bn; bi++) {
            float g = dx[((size_t)bi * T + t) * D + d];
            s += g;
            if (t > R && dpatches) dpatches[((size_t)bi * P + (t - 1 - R)) * D + d] = g;
        }
        if (t == 0) {
            if (dcls) dcls[d] += s;
            if (dpos) dpos[d] += s;
        } else if (t <= R) {
            if (dreg) dreg[(size_t)(t - 1) * D + d] += s;
        } else if (dpos) {
            dpos[(size_t)(t - R) * D + d] += s;
        }
    }
}

void cu_embed_fwd(backend_t *b, float *x, const float *patches, const float *cls,
                  const float *reg, const float *pos, int Bn, int P, int R, int D) {
    size_t n = (size_t)Bn * (1 + R + P) * D;
    if (!n) return;
    CU_ASSERT(R == 0 || reg, "R=%d but no register tokens", R);
    cu_embed_fwd_kernel<<<cu_blocks(n, CU_T), CU_T, 0, cu_st(b)>>>(x, patches, cls, reg, pos, Bn, P, R, D);
    CU_LAUNCH_CHECK();
}

void cu_embed_bwd(backend_t *b, float *dpatches, float *dcls, float *dreg, float *dpos,
                  const float *dx, int Bn, int P, int R, int D) {
    size_t n = (size_t)(1 + R + P) * D;
    if (!n || Bn <= 0) return;
    cu_embed_bwd_kernel<<<cu_blocks(n, CU_T), CU_T, 0, cu_st(b)>>>(dpatches, dcls, dreg, dpos, dx, Bn, P, R, D);
    CU_LAUNCH_CHECK();
}

/* ---- token slice / scatter ---------------------------------------------------------------- */

__global__ void cu_token_slice_kernel(void *out, const void *x, dtype_t dt, int Bn, int T, int D, int t) {
    size_t n = (size_t)Bn * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t bi = i / D, d = i % D, src = (bi * T + t) * D + d;
        if (dt == DT_BF16) ((uint16_t *)out)[i] = ((const uint16_t *)x)[src];
        else ((float *)out)[i] = ((const float *)x)[src];
    }
}

__global__ void cu_token_scatter_kernel(float *dx, const float *dout, int Bn, int T, int D, int t) {
    size_t n = (size_t)Bn * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t bi = i / D, d = i % D;
        dx[(bi * T + t) * D + d] += dout[i];
    }
}

void cu_token_slice(backend_t *b, void *out, const void *x, dtype_t dt, int Bn, int T, int D, int t) {
    size_t n = (size_t)Bn * D;
    if (!n) return;
    CU_ASSERT(t >= 0 && t < T && (dt == DT_F32 || dt == DT_BF16), "t=%d T=%d", t, T);
    cu_token_slice_kernel<<<cu_blocks(n, CU_T), CU_T, 0, cu_st(b)>>>(out, x, dt, Bn, T, D, t);
    CU_LAUNCH_CHECK();
}

void cu_token_scatter_add(backend_t *b, float *dx, const float *dout, int Bn, int T, int D, int t) {
    size_t n = (size_t)Bn * D;
    if (!n) return;
    CU_ASSERT(t >= 0 && t < T, "t=%d T=%d", t, T);
    cu_token_scatter_kernel<<<cu_blocks(n, CU_T), CU_T, 0, cu_st(b)>>>(dx, dout, Bn, T, D, t);
    CU_LAUNCH_CHECK();
}

/* ---- fused residual + LayerScale + LayerNorm forward --------------------------------
 * out = res + gamma * x, then ln = LN(out) * w + bias: one pass that reads res
 * and x and writes out and ln, where the two ops read the fp32 row twice more.
 * Rows of C = 128*NV (NV <= 8) held in registers by one warp (lane owns
 * columns 4*lane + 128*k), statistics as in cu_layernorm_fwd_v_kernel;
 * other shapes run the two ops one after the other. */
template <int NV>
__global__ void cu_ls_ln_fwd_v_kernel(float *out, const float *res, const void *x, dtype_t xdt, const float *gamma,
                                      void *ln, dtype_t odt, float *mean, float *rstd, const float *w,
                                      const float *bias, int N, float eps) {
    constexpr int C = 128 * NV;
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    size_t r0 = (size_t)row * C;
    float4 v[NV];
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        int c = 128 * k + 4 * lane;
        v[k] = cu_ln_in4(res, x, xdt, gamma, r0 + c, c);   /* the sum LN2's backward remakes the same way */
        *(float4 *)(out + r0 + c) = v[k];
        s += (v[k].x + v[k].y) + (v[k].z + v[k].w);
    }
    cu_ln_row_finish<NV>(v, s, ln, odt, mean, rstd, w, bias, row, lane, eps);
}

void cu_layerscale_layernorm_fwd(backend_t *b, float *out, const float *res, const void *x, dtype_t xdt,
                                 const float *gamma, void *ln, dtype_t odt, float *mean, float *rstd,
                                 const float *w, const float *bias, int N, int C, float eps) {
    if (N <= 0) return;
    CU_ASSERT(C > 0 && w && gamma, "C=%d", C);
    if (cu_ln_vec(C, out, res, x, gamma) && cu_ln_vec(C, ln, w, bias, out)) {
        cudaStream_t st = cu_st(b);
        unsigned grid = (unsigned)((N + 7) / 8);
        CU_LN_DISPATCH(cu_ls_ln_fwd_v_kernel, C, out, res, x, xdt, gamma, ln, odt, mean, rstd, w, bias, N, eps);
        CU_LAUNCH_CHECK();
        return;
    }
    cu_layerscale_fwd(b, out, res, x, xdt, gamma, N, C);
    cu_layernorm_fwd(b, ln, odt, mean, rstd, out, w, bias, N, C, eps);
}
