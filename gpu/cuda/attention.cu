/* gpu/cuda/attention.cu — non-causal multi-head attention, forward and backward.
 *
 * Layouts (gpu/backend.h): qkv[Bn,T,3,NH,HS] (cdt), out[Bn,T,NH,HS] (cdt),
 * lse[Bn,NH,T] f32 (natural log), dout[Bn,T,NH,HS] f32, dqkv[Bn,T,3,NH,HS] f32.
 *
 * Implementations, chosen per call (TRAIND_ATTENTION=cublas at backend
 * creation selects C for everything):
 *  B. bf16 forward, any HS cuDNN takes: cuDNN's fused SDPA (sdpa_cudnn.cu), by
 *     default; TRAIND_ATTENTION=own skips it. Where cuDNN is missing or
 *     refuses the shape, A' (or A) runs instead. Backward is always A'/A/C.
 *  A'. bf16, HS = 64 (every DINOv2 size): fused tensor-core kernels, one
 *     launch per direction (plus a small row-dot kernel for D in backward), no
 *     score matrix in memory. FA2 style with mma.sync: forward = online
 *     softmax over 64-key tiles (the last taking up to 16 keys more);
 *     backward = one launch with two block roles, dQ blocks (stream key
 *     tiles) and dK/dV blocks (stream query tiles), both recomputing
 *     P = exp(S - lse), with D = rowsum(dO * O).
 *  A. other dtypes (fp32: the debug stage) with HS in {32, 64}: the same
 *     algorithms on CUDA cores in fp32 (a thread or a thread pair per row),
 *     which keeps fp32 within 1e-5 of the reference.
 *  C. cuBLAS (any HS; the fallback): q, k, v permuted to [Bn*NH,T,HS],
 *     strided-batched products for S = QK^T and O = PV (fp32 accumulate), a
 *     softmax kernel; processed in chunks of heads so the score buffer stays
 *     bounded. */
#include <cmath>
#include "gpu/cuda/cuda_common.h"

static inline cudaStream_t cu_st(backend_t *b) { return cu_impl(b)->stream; }

/* ======================= A. fused kernels ======================= */

#define FA_BQ 64     /* queries per forward block (one per thread) */
#define FA_BK 64     /* keys per shared-memory tile */
#define FB_BQ 32     /* queries per tile in the dK/dV role */
#define FB_BKEY 64   /* keys per dK/dV block, queries per dQ block */

template <int HS>
__global__ void __launch_bounds__(FA_BQ) cu_attn_fwd_kernel(void *out, float *lse, const void *qkv, dtype_t cdt,
                                                            int T, int NH, float scale) {
    __shared__ __align__(16) float Ks[FA_BK][HS];
    __shared__ __align__(16) float Vs[FA_BK][HS];
    int bi = blockIdx.z, h = blockIdx.y, i = blockIdx.x * FA_BQ + threadIdx.x;
    size_t ld3 = (size_t)3 * NH * HS;
    size_t base = (size_t)bi * T * ld3 + (size_t)h * HS;   /* q of token 0 */
    bool live = i < T;
    float q[HS], o[HS];
    if (live) {
#pragma unroll
        for (int d = 0; d < HS; d++) q[d] = cu_ld(qkv, cdt, base + (size_t)i * ld3 + d) * scale;
    }
#pragma unroll
    for (int d = 0; d < HS; d++) o[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j0 = 0; j0 < T; j0 += FA_BK) {
        int nk = min(FA_BK, T - j0);
        __syncthreads();
        for (int e = threadIdx.x; e < FA_BK * HS; e += FA_BQ) {
            int r = e / HS, d = e % HS;
            float kv = 0.0f, vv = 0.0f;
            if (r < nk) {
                size_t src = base + (size_t)(j0 + r) * ld3 + d;
                kv = cu_ld(qkv, cdt, src + (size_t)NH * HS);
                vv = cu_ld(qkv, cdt, src + (size_t)2 * NH * HS);
            }
            Ks[r][d] = kv;
            Vs[r][d] = vv;
        }
        __syncthreads();
        if (!live) continue;
        for (int c0 = 0; c0 < nk; c0 += 8) {
            float s[8];
            float mx = m;
#pragma unroll
            for (int u = 0; u < 8; u++) {
                float acc = 0.0f;
                if (c0 + u < nk) {
                    const float4 *k4 = (const float4 *)Ks[c0 + u];
#pragma unroll
                    for (int d4 = 0; d4 < HS / 4; d4++) {
                        float4 kk = k4[d4];
                        acc += q[4 * d4] * kk.x + q[4 * d4 + 1] * kk.y + q[4 * d4 + 2] * kk.z + q[4 * d4 + 3] * kk.w;
                    }
                    mx = fmaxf(mx, acc);
                } else {
                    acc = -INFINITY;
                }
                s[u] = acc;
            }
            float corr = expf(m - mx);   /* m = -inf on the first keys: corr = 0 */
            l *= corr;
#pragma unroll
            for (int d = 0; d < HS; d++) o[d] *= corr;
#pragma unroll
            for (int u = 0; u < 8; u++) {
                if (c0 + u >= nk) break;
                float p = expf(s[u] - mx);
                l += p;
                const float4 *v4 = (const float4 *)Vs[c0 + u];
#pragma unroll
                for (int d4 = 0; d4 < HS / 4; d4++) {
                    float4 vv = v4[d4];
                    o[4 * d4] += p * vv.x;
                    o[4 * d4 + 1] += p * vv.y;
                    o[4 * d4 + 2] += p * vv.z;
                    o[4 * d4 + 3] += p * vv.w;
                }
            }
            m = mx;
        }
    }
    if (!live) return;
    float inv = 1.0f / l;
    size_t ob = ((size_t)bi * T + i) * NH * HS + (size_t)h * HS;
#pragma unroll
    for (int d = 0; d < HS; d++) cu_st(out, cdt, ob + d, o[d] * inv);
    if (lse) lse[((size_t)bi * NH + h) * T + i] = m + logf(l);
}

/* Backward. blockIdx.z = 2*batch + role; role 0: dQ for FB_BKEY queries,
 * role 1: dK, dV for FB_BKEY keys. Two threads per row (query or key), each
 * holding half of the head dimension; dot products are completed with one
 * shuffle between the pair. Dynamic shared memory (floats):
 *   role 0: Ks[FA_BK][HS], Vs[FA_BK][HS]
 *   role 1: Qs[FB_BQ][HS], dOs[FB_BQ][HS], Ls[FB_BQ], Ds[FB_BQ] */
#define FB_THREADS (2 * FB_BKEY)

template <int HS>
__global__ void __launch_bounds__(FB_THREADS) cu_attn_bwd_kernel(float *dqkv, const float *dout, const void *qkv,
                                                                 const void *out, const float *lse, dtype_t cdt,
                                                                 int T, int NH, float scale) {
    constexpr int HH = HS / 2;
    extern __shared__ __align__(16) float sm[];
    int bi = blockIdx.z >> 1, role = blockIdx.z & 1, h = blockIdx.y;
    size_t ld3 = (size_t)3 * NH * HS, ldo = (size_t)NH * HS;
    size_t base = (size_t)bi * T * ld3 + (size_t)h * HS;          /* qkv, dqkv: q of token 0 */
    size_t obase = (size_t)bi * T * ldo + (size_t)h * HS;         /* out, dout: token 0 */
    const float *L = lse + ((size_t)bi * NH + h) * T;
    int tid = threadIdx.x, row = tid >> 1, off = (tid & 1) * HH;

    if (role == 0) {
        float (*Ks)[HS] = (float (*)[HS])sm;
        float (*Vs)[HS] = (float (*)[HS])(sm + FA_BK * HS);
        int i = blockIdx.x * FB_BKEY + row;
        bool live = i < T;
        float q[HH], g[HH], dq[HH];
        float li = 0.0f, Di = 0.0f;
#pragma unroll
        for (int d = 0; d < HH; d++) {
            q[d] = live ? cu_ld(qkv, cdt, base + (size_t)i * ld3 + off + d) : 0.0f;
            g[d] = live ? dout[obase + (size_t)i * ldo + off + d] : 0.0f;
            Di += live ? g[d] * cu_ld(out, cdt, obase + (size_t)i * ldo + off + d) : 0.0f;
            dq[d] = 0.0f;
        }
        Di += __shfl_xor_sync(0xffffffffu, Di, 1);
        if (live) li = L[i];
        for (int j0 = 0; j0 < T; j0 += FA_BK) {
            int nk = min(FA_BK, T - j0);
            __syncthreads();
            for (int e = tid; e < FA_BK * HS; e += FB_THREADS) {
                int r = e / HS, d = e % HS;
                float kv = 0.0f, vv = 0.0f;
                if (r < nk) {
                    size_t src = base + (size_t)(j0 + r) * ld3 + d;
                    kv = cu_ld(qkv, cdt, src + ldo);
                    vv = cu_ld(qkv, cdt, src + 2 * ldo);
                }
                Ks[r][d] = kv;
                Vs[r][d] = vv;
            }
            __syncthreads();
            for (int j = 0; j < nk; j++) {
                const float4 *k4 = (const float4 *)(Ks[j] + off), *v4 = (const float4 *)(Vs[j] + off);
                float s = 0.0f, dp = 0.0f;
#pragma unroll
                for (int d4 = 0; d4 < HH / 4; d4++) {
                    float4 kk = k4[d4], vv = v4[d4];
                    s += q[4 * d4] * kk.x + q[4 * d4 + 1] * kk.y + q[4 * d4 + 2] * kk.z + q[4 * d4 + 3] * kk.w;
                    dp += g[4 * d4] * vv.x + g[4 * d4 + 1] * vv.y + g[4 * d4 + 2] * vv.z + g[4 * d4 + 3] * vv.w;
                }
                s += __shfl_xor_sync(0xffffffffu, s, 1);
                dp += __shfl_xor_sync(0xffffffffu, dp, 1);
                float p = expf(s * scale - li);
                float ds = p * (dp - Di);
#pragma unroll
                for (int d4 = 0; d4 < HH / 4; d4++) {
                    float4 kk = k4[d4];
                    dq[4 * d4] += ds * kk.x;
                    dq[4 * d4 + 1] += ds * kk.y;
                    dq[4 * d4 + 2] += ds * kk.z;
                    dq[4 * d4 + 3] += ds * kk.w;
                }
            }
        }
        if (live) {
            float *dst = dqkv + base + (size_t)i * ld3 + off;
#pragma unroll
            for (int d = 0; d < HH; d++) dst[d] = dq[d] * scale;
        }
        return;
    }

    /* role 1: a thread pair per key j */
    float (*Qs)[HS] = (float (*)[HS])sm;
    float (*dOs)[HS] = (float (*)[HS])(sm + FB_BQ * HS);
    float *Ls = sm + 2 * FB_BQ * HS;
    float *Ds = Ls + FB_BQ;
    int j = blockIdx.x * FB_BKEY + row;
    bool live = j < T;
    float k[HH], v[HH], dk[HH], dv[HH];
#pragma unroll
    for (int d = 0; d < HH; d++) {
        k[d] = live ? cu_ld(qkv, cdt, base + (size_t)j * ld3 + ldo + off + d) : 0.0f;
        v[d] = live ? cu_ld(qkv, cdt, base + (size_t)j * ld3 + 2 * ldo + off + d) : 0.0f;
        dk[d] = 0.0f;
        dv[d] = 0.0f;
    }
    for (int i0 = 0; i0 < T; i0 += FB_BQ) {
        int nq = min(FB_BQ, T - i0);
        __syncthreads();
        for (int e = tid; e < FB_BQ * HS; e += FB_THREADS) {
            int r = e / HS, d = e % HS;
            float qv = 0.0f, gv = 0.0f;
            if (r < nq) {
                qv = cu_ld(qkv, cdt, base + (size_t)(i0 + r) * ld3 + d);
                gv = dout[obase + (size_t)(i0 + r) * ldo + d];
            }
            Qs[r][d] = qv;
            dOs[r][d] = gv;
        }
        if (tid < FB_BQ) {
            float Dv = 0.0f, lv = 0.0f;
            if (tid < nq) {
                const float *gr = dout + obase + (size_t)(i0 + tid) * ldo;
                size_t orow = obase + (size_t)(i0 + tid) * ldo;
                for (int d = 0; d < HS; d++) Dv += gr[d] * cu_ld(out, cdt, orow + d);
                lv = L[i0 + tid];
            }
            Ds[tid] = Dv;
            Ls[tid] = lv;
        }
        __syncthreads();
        for (int r = 0; r < nq; r++) {
            const float4 *q4 = (const float4 *)(Qs[r] + off), *g4 = (const float4 *)(dOs[r] + off);
            float s = 0.0f, dp = 0.0f;
#pragma unroll
            for (int d4 = 0; d4 < HH / 4; d4++) {
                float4 qq = q4[d4], gg = g4[d4];
                s += qq.x * k[4 * d4] + qq.y * k[4 * d4 + 1] + qq.z * k[4 * d4 + 2] + qq.w * k[4 * d4 + 3];
                dp += gg.x * v[4 * d4] + gg.y * v[4 * d4 + 1] + gg.z * v[4 * d4 + 2] + gg.w * v[4 * d4 + 3];
            }
            s += __shfl_xor_sync(0xffffffffu, s, 1);
            dp += __shfl_xor_sync(0xffffffffu, dp, 1);
            float p = expf(s * scale - Ls[r]);
            float ds = p * (dp - Ds[r]);
#pragma unroll
            for (int d4 = 0; d4 < HH / 4; d4++) {
                float4 qq = q4[d4], gg = g4[d4];
                dv[4 * d4] += p * gg.x; dv[4 * d4 + 1] += p * gg.y; dv[4 * d4 + 2] += p * gg.z; dv[4 * d4 + 3] += p * gg.w;
                dk[4 * d4] += ds * qq.x; dk[4 * d4 + 1] += ds * qq.y; dk[4 * d4 + 2] += ds * qq.z; dk[4 * d4 + 3] += ds * qq.w;
            }
        }
    }
    if (live) {
        float *dst = dqkv + base + (size_t)j * ld3 + off;
#pragma unroll
        for (int d = 0; d < HH; d++) {
            dst[ldo + d] = dk[d] * scale;
            dst[2 * ldo + d] = dv[d];
        }
    }
}

template <int HS>
static size_t cu_attn_bwd_smem(void) {
    size_t r0 = (size_t)2 * FA_BK * HS;
    size_t r1 = (size_t)2 * FB_BQ * HS + 2 * FB_BQ;
    return (r0 > r1 ? r0 : r1) * sizeof(float);
}

template <int HS>
static void cu_attn_fused_fwd(backend_t *b, void *out, float *lse, const void *qkv, dtype_t cdt,
                              int Bn, int T, int NH) {
    dim3 grid((T + FA_BQ - 1) / FA_BQ, NH, Bn);
    cu_attn_fwd_kernel<HS><<<grid, FA_BQ, 0, cu_st(b)>>>(out, lse, qkv, cdt, T, NH, 1.0f / sqrtf((float)HS));
    CU_LAUNCH_CHECK();
}

template <int HS>
static void cu_attn_fused_bwd(backend_t *b, float *dqkv, const float *dout, const void *qkv, const void *out,
                              const float *lse, dtype_t cdt, int Bn, int T, int NH) {
    size_t smem = cu_attn_bwd_smem<HS>();
    /* per device context, cheap: set on every call */
    CU_CHECK(cudaFuncSetAttribute(cu_attn_bwd_kernel<HS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((T + FB_BKEY - 1) / FB_BKEY, NH, 2 * Bn);
    cu_attn_bwd_kernel<HS><<<grid, FB_THREADS, smem, cu_st(b)>>>(dqkv, dout, qkv, out, lse, cdt, T, NH,
                                                              1.0f / sqrtf((float)HS));
    CU_LAUNCH_CHECK();
}

/* ======================= A'. tensor-core kernels (bf16, HS = 64) =======================
 * Same algorithms as A, with the products on the tensor cores (mma.sync
 * m16n8k16 bf16, fp32 accumulate), FA2 style: a block of 4 warps, each warp
 * owns 16 rows and keeps its score tile, softmax statistics and output
 * accumulators in registers. P and dS are rounded to bf16 for their products
 * (as in any bf16 flash attention); softmax statistics and sums are fp32. */

#define TC_HS 64
#define TC_ROWS 64              /* rows (queries or keys) per block: 4 warps x 16 */
#define TC_LD 72                /* bf16 row stride in shared memory (16-byte pad: ldmatrix conflict-free) */
#define TC_TILE (TC_ROWS * TC_LD)

/* Fragment layout of mma.m16n8k16 (PTX ISA), g = lane/4, t = lane%4:
 *   A 16x16 row: a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
 *   B 16x8 col:  b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g)
 *   C 16x8:      c0,c1 (g, 2t..2t+1), c2,c3 (g+8, 2t..2t+1)
 * so a score tile's accumulators are, repacked to bf16 pairs, the A operand
 * of the next product (P V, dS K, ...) without leaving registers. Tiles are
 * row-major [row][dim] in shared memory (copied with cp.async, two stages);
 * B operands come from them through ldmatrix, transposed (.trans) where the
 * product runs over the rows (P V, dS K, P^T dO, dS^T Q). */

__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* 2^x in one MUFU.EX2, results under 2^-126 flushed to zero (probabilities
 * that small vanish in the bf16 products anyway); exp2f adds the denormal
 * scaling around it. */
__device__ __forceinline__ float ex2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const __nv_bfloat16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const __nv_bfloat16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}

/* 16-byte async copy; src_bytes 0 fills zeros (src must still be a valid address). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(smem_u32(dst)), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" :: "n"(N)); }

/* 64 rows x 64 bf16 of a token-major tensor (row stride ld) into a smem tile;
 * rows >= nrows are zero. src points at row 0. */
__device__ __forceinline__ void tc_async_rows(__nv_bfloat16 *dst, const __nv_bfloat16 *src, size_t ld, int nrows) {
    for (int e = threadIdx.x; e < TC_ROWS * 8; e += blockDim.x) {
        int r = e >> 3, c = (e & 7) * 8;
        bool in = r < nrows;
        cp_async16(dst + r * TC_LD + c, src + (size_t)(in ? r : 0) * ld + c, in ? 16 : 0);
    }
}

/* A fragments of this warp's 16 rows x 64 (4 k-chunks) of a smem tile. */
__device__ __forceinline__ void mma_load_a(uint32_t a[4][4], const __nv_bfloat16 *row0, int lane) {
    const __nv_bfloat16 *p = row0 + ((lane & 7) + ((lane >> 3) & 1) * 8) * TC_LD + (lane >> 4) * 8;
#pragma unroll
    for (int kk = 0; kk < 4; kk++) ldsm_x4(a[kk], p + kk * 16);
}

/* c[n][.] = A(16 x 64, regs) * B^T for the 8-column blocks n < nn (of NB),
 * B a smem tile [n][k]. */
template <int NB>
__device__ __forceinline__ void mma_abt(float c[NB][4], const uint32_t a[4][4], const __nv_bfloat16 *B, int lane, int nn) {
    const __nv_bfloat16 *p = B + (lane & 7) * TC_LD + (lane >> 3) * 8;
#pragma unroll
    for (int n = 0; n < NB; n++) {
        c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.0f;
        if (n < nn) {
#pragma unroll
            for (int kk = 0; kk < 4; kk += 2) {
                uint32_t b[4];
                ldsm_x4(b, p + n * 8 * TC_LD + kk * 16);
                mma_bf16(c[n], a[kk], b[0], b[1]);
                mma_bf16(c[n], a[kk + 1], b[2], b[3]);
            }
        }
    }
}

/* acc[8][4] += P(16 x 8*NB over k, fp32 accumulators p rounded to bf16) * B,
 * B a smem tile [k][n] (k = the tile's rows); k-chunks of 16 rows kc < nkc. */
template <int NB>
__device__ __forceinline__ void mma_pb(float acc[8][4], const float p[NB][4], const __nv_bfloat16 *B, int lane, int nkc) {
    const __nv_bfloat16 *q = B + ((lane & 7) + ((lane >> 3) & 1) * 8) * TC_LD + (lane >> 4) * 8;
#pragma unroll
    for (int kc = 0; kc < NB / 2; kc++) {
        if (kc < nkc) {
            uint32_t a[4] = {pack_bf16(p[2 * kc][0], p[2 * kc][1]), pack_bf16(p[2 * kc][2], p[2 * kc][3]),
                             pack_bf16(p[2 * kc + 1][0], p[2 * kc + 1][1]), pack_bf16(p[2 * kc + 1][2], p[2 * kc + 1][3])};
#pragma unroll
            for (int n = 0; n < 8; n += 2) {
                uint32_t b[4];
                ldsm_x4_t(b, q + kc * 16 * TC_LD + n * 8);
                mma_bf16(acc[n], a, b[0], b[1]);
                mma_bf16(acc[n + 1], a, b[2], b[3]);
            }
        }
    }
}

/* Forward: NW warps (16*NW queries) per block, a warp owning 16 query rows; K/V
 * tiles of 64 keys in two stages; a remainder of at most 16 keys (T = 257: one)
 * joins the last tile instead of costing a tile of its own (tiles hold up to
 * TF_KMAX rows). Dynamic shared memory: Q [16*NW][TC_LD], K[2], V[2]
 * [TF_KMAX][TC_LD]. Scores in the log2 domain: P = exp2(S * scale*log2 e - m),
 * one FFMA and one MUFU.EX2 per score (ex2_ftz); lse is returned as a natural
 * log. (Measured on H100, Bn=256 T=257: two query tiles per warp, sharing each
 * K/V fragment, 0.98 ms and a whole head per 17-warp block 0.68 ms, against
 * 0.63 ms for this shape.) */
#define TF_FOLD 16                      /* keys a last tile may take beyond its 64 */
#define TF_KMAX (TC_ROWS + TF_FOLD)
#define TF_NB (TF_KMAX / 8)             /* 8-key column blocks of a score tile */

/* The key tiles of T keys: 64 each, the last one taking a remainder <= TF_FOLD. */
__host__ __device__ inline int tf_tiles(int T) {
    int n = T / TC_ROWS;
    return (n == 0 || T - n * TC_ROWS > TF_FOLD) ? n + 1 : n;
}

/* rows [0, nrows) of a token-major tensor (row stride ld) into a smem tile,
 * rows [nrows, rows) zero-filled; rows a multiple of 16 */
__device__ __forceinline__ void tc_async_rows_upto(__nv_bfloat16 *dst, const __nv_bfloat16 *src, size_t ld,
                                                   int nrows, int rows) {
    for (int e = threadIdx.x; e < rows * 8; e += blockDim.x) {
        int r = e >> 3, c = (e & 7) * 8;
        bool in = r < nrows;
        cp_async16(dst + r * TC_LD + c, src + (size_t)(in ? r : 0) * ld + c, in ? 16 : 0);
    }
}

template <int NW>
__global__ void __launch_bounds__(32 * NW) cu_attn_fwd_mma_kernel(__nv_bfloat16 *out, float *lse,
                                                                  const __nv_bfloat16 *qkv, int T, int NH, float scale) {
    extern __shared__ __align__(128) __nv_bfloat16 fsm[];
    constexpr int QB = 16 * NW, KTILE = TF_KMAX * TC_LD;
    __nv_bfloat16 *Qs = fsm, *Kst = fsm + QB * TC_LD, *Vst = Kst + 2 * KTILE;   /* stage s at + s*KTILE */
    int bi = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * QB;
    const float sl2 = scale * 1.4426950408889634f;
    int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    size_t ld3 = (size_t)3 * NH * TC_HS;
    const __nv_bfloat16 *base = qkv + (size_t)bi * T * ld3 + (size_t)h * TC_HS;
    const __nv_bfloat16 *kb = base + (size_t)NH * TC_HS, *vb = base + (size_t)2 * NH * TC_HS;
    int ntiles = tf_tiles(T);
    /* key tile it: keys [64 it, 64 it + nk), its rows loaded rounded up to 16 */
#define TF_NK(it) ((it) + 1 == ntiles ? T - (it) * TC_ROWS : TC_ROWS)
    tc_async_rows_upto(Qs, base + (size_t)q0 * ld3, ld3, min(QB, T - q0), QB);
    {
        int nk = TF_NK(0);
        tc_async_rows_upto(Kst, kb, ld3, nk, (nk + 15) & ~15);
        tc_async_rows_upto(Vst, vb, ld3, nk, (nk + 15) & ~15);
    }
    cp_async_commit();
    bool active = q0 + w * 16 < T;   /* warp has at least one query row */
    uint32_t qa[4][4];
    float o[8][4], m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
#pragma unroll
    for (int n = 0; n < 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    for (int it = 0; it < ntiles; it++) {
        int nk = TF_NK(it), st = it & 1;
        if (it + 1 < ntiles) {   /* prefetch the next tile into the other stage */
            int j1 = (it + 1) * TC_ROWS, nk1 = TF_NK(it + 1);
            tc_async_rows_upto(Kst + (st ^ 1) * KTILE, kb + (size_t)j1 * ld3, ld3, nk1, (nk1 + 15) & ~15);
            tc_async_rows_upto(Vst + (st ^ 1) * KTILE, vb + (size_t)j1 * ld3, ld3, nk1, (nk1 + 15) & ~15);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (it == 0) mma_load_a(qa, Qs + w * 16 * TC_LD, lane);
        if (active) {
            int nn = (nk + 7) >> 3;
            float s[TF_NB][4];
            mma_abt<TF_NB>(s, qa, Kst + st * KTILE, lane, nn);   /* S = Q K^T over the tile's nn 8-key blocks */
            /* online softmax; columns >= nk masked (P = 0) */
            float r0 = -INFINITY, r1 = -INFINITY;
#pragma unroll
            for (int n = 0; n < TF_NB; n++) {
                if (n < nn) {
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        if (n * 8 + 2 * t + e < nk) {
                            r0 = fmaxf(r0, s[n][e]);
                            r1 = fmaxf(r1, s[n][2 + e]);
                        }
                    }
                }
            }
            r0 = fmaxf(r0, __shfl_xor_sync(0xffffffffu, r0, 1));
            r0 = fmaxf(r0, __shfl_xor_sync(0xffffffffu, r0, 2));
            r1 = fmaxf(r1, __shfl_xor_sync(0xffffffffu, r1, 1));
            r1 = fmaxf(r1, __shfl_xor_sync(0xffffffffu, r1, 2));
            float mx0 = fmaxf(m0, r0 * sl2), mx1 = fmaxf(m1, r1 * sl2);
            float c0 = ex2_ftz(m0 - mx0), c1 = ex2_ftz(m1 - mx1), sum0 = 0.0f, sum1 = 0.0f;
            m0 = mx0;
            m1 = mx1;
#pragma unroll
            for (int n = 0; n < TF_NB; n++) {
                if (n < nn) {
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        bool ok_ = n * 8 + 2 * t + e < nk;
                        s[n][e] = ok_ ? ex2_ftz(fmaf(s[n][e], sl2, -mx0)) : 0.0f;
                        s[n][2 + e] = ok_ ? ex2_ftz(fmaf(s[n][2 + e], sl2, -mx1)) : 0.0f;
                        sum0 += s[n][e];
                        sum1 += s[n][2 + e];
                    }
                }
            }
#pragma unroll
            for (int n = 0; n < 8; n++) {
                o[n][0] *= c0; o[n][1] *= c0; o[n][2] *= c1; o[n][3] *= c1;
            }
            sum0 += __shfl_xor_sync(0xffffffffu, sum0, 1);
            sum0 += __shfl_xor_sync(0xffffffffu, sum0, 2);
            sum1 += __shfl_xor_sync(0xffffffffu, sum1, 1);
            sum1 += __shfl_xor_sync(0xffffffffu, sum1, 2);
            l0 = l0 * c0 + sum0;
            l1 = l1 * c1 + sum1;
            mma_pb<TF_NB>(o, s, Vst + st * KTILE, lane, (nk + 15) >> 4);   /* O += P V */
        }
        __syncthreads();   /* this stage is refilled two iterations on */
    }
#undef TF_NK
    if (!active) return;
    int i0 = q0 + w * 16 + g, i1 = i0 + 8;
    float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
    size_t ldo = (size_t)NH * TC_HS;
    __nv_bfloat16 *ob = out + (size_t)bi * T * ldo + (size_t)h * TC_HS + 2 * t;
#pragma unroll
    for (int n = 0; n < 8; n++) {
        if (i0 < T) *(__nv_bfloat162 *)(ob + (size_t)i0 * ldo + n * 8) = __floats2bfloat162_rn(o[n][0] * inv0, o[n][1] * inv0);
        if (i1 < T) *(__nv_bfloat162 *)(ob + (size_t)i1 * ldo + n * 8) = __floats2bfloat162_rn(o[n][2] * inv1, o[n][3] * inv1);
    }
    if (lse && t == 0) {
        float *lb = lse + ((size_t)bi * NH + h) * T;
        if (i0 < T) lb[i0] = (m0 + log2f(l0)) * 0.6931471805599453f;
        if (i1 < T) lb[i1] = (m1 + log2f(l1)) * 0.6931471805599453f;
    }
}

/* Backward pre-pass, a warp per (token, head) row: Dg[b,h,i] = dO . O (fp32
 * dO, bf16 O) and dO rounded to bf16 (gb16, same layout as dout) for the
 * tensor-core products. */
__global__ void cu_attn_bwd_prep_kernel(float *Dg, __nv_bfloat16 *gb16, const float *dout, const __nv_bfloat16 *out,
                                        int Bn, int T, int NH) {
    size_t row = blockIdx.x * (size_t)(blockDim.x / 32) + threadIdx.x / 32;   /* (b*T + i)*NH + h */
    int lane = threadIdx.x & 31;
    if (row >= (size_t)Bn * T * NH) return;
    const float *g = dout + row * TC_HS;
    const __nv_bfloat16 *o = out + row * TC_HS;
    float2 gv = *(const float2 *)(g + 2 * lane);
    __nv_bfloat162 ov = *(const __nv_bfloat162 *)(o + 2 * lane);
    float v = gv.x * __low2float(ov) + gv.y * __high2float(ov);
    *(__nv_bfloat162 *)(gb16 + row * TC_HS + 2 * lane) = __floats2bfloat162_rn(gv.x, gv.y);
    for (int k = 16; k > 0; k >>= 1) v += __shfl_xor_sync(0xffffffffu, v, k);
    if (lane == 0) {
        int h = (int)(row % NH);
        size_t bt = row / NH;
        int i = (int)(bt % T), b = (int)(bt / T);
        Dg[((size_t)b * NH + h) * T + i] = v;
    }
}

/* Backward, one launch: blockIdx.z = 2*batch + role. Role 1: a warp owns 16
 * keys (K, V fragments in registers) and streams 64-query tiles: S^T = K Q^T,
 * dP^T = V dO^T, P^T and dS^T element-wise, dV += P^T dO, dK += dS^T Q.
 * Role 0: a warp owns 16 queries (Q, dO fragments) and streams 64-key tiles:
 * S, dP, dS, dQ += dS K. Tiles double-buffered with cp.async. P in the log2
 * domain, as in the forward: P = exp2(S * scale * log2 e - lse * log2 e), one
 * FFMA and one MUFU.EX2 per score (sl2 = scale * log2 e, ex2_ftz).
 * Epilogue: the gradients stored in f32 or (out_bf16) rounded to bf16 — the
 * operand of the qkv products — and, with part, the block's column sums of
 * them (its rows; the warps' 16-row sums added in warp order) into
 * part[batch * gridDim.x + blockIdx.x][3*NH*64]: the q/k/v bias gradients
 * without another pass over dqkv. */
__device__ __forceinline__ void tc_store2(void *p, bool bf, size_t i, float x, float y) {
    if (bf) *(__nv_bfloat162 *)((__nv_bfloat16 *)p + i) = __floats2bfloat162_rn(x, y);
    else *(float2 *)((float *)p + i) = make_float2(x, y);
}

__global__ void __launch_bounds__(128) cu_attn_bwd_mma_kernel(void *dqkv, bool out_bf16, float *part,
                                                              const __nv_bfloat16 *gb16,
                                                              const __nv_bfloat16 *qkv, const float *Dg_all,
                                                              const float *lse, int T, int NH, float scale) {
    __shared__ __align__(128) __nv_bfloat16 X[2][TC_TILE], Y[2][TC_TILE];
    __shared__ float csum[2][4][TC_HS];   /* epilogue: per warp, the column sums of acc1, acc2 */
    const float log2e = 1.4426950408889634f, sl2 = scale * log2e;
    __shared__ __align__(8) float Ls[2][TC_ROWS], Ds[2][TC_ROWS];
    int bi = blockIdx.z >> 1, role = blockIdx.z & 1, h = blockIdx.y, r0 = blockIdx.x * TC_ROWS;
    int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    size_t ld3 = (size_t)3 * NH * TC_HS, ldo = (size_t)NH * TC_HS;
    const __nv_bfloat16 *qb = qkv + (size_t)bi * T * ld3 + (size_t)h * TC_HS;
    const __nv_bfloat16 *kb = qb + ldo, *vb = qb + 2 * ldo;
    const __nv_bfloat16 *gb = gb16 + (size_t)bi * T * ldo + (size_t)h * TC_HS;
    const float *L = lse + ((size_t)bi * NH + h) * T;
    const float *Dg = Dg_all + ((size_t)bi * NH + h) * T;
    const size_t dqb = (size_t)bi * T * ld3 + (size_t)h * TC_HS;   /* element offset of (batch, token 0, q, head) */
    int nown = min(TC_ROWS, T - r0), ntiles = (T + TC_ROWS - 1) / TC_ROWS;
    bool active = w * 16 < nown;
    float s[4][4], dp[4][4], acc1[8][4], acc2[8][4];
    uint32_t fa[4][4], fb[4][4];
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc1[n][e] = acc2[n][e] = 0.0f;

    /* own rows into stage 1 (role 1: K, V; role 0: Q, dO), first streamed tile into stage 0 */
    if (role == 1) {
        tc_async_rows(X[1], kb + (size_t)r0 * ld3, ld3, nown);
        tc_async_rows(Y[1], vb + (size_t)r0 * ld3, ld3, nown);
        tc_async_rows(X[0], qb, ld3, min(TC_ROWS, T));
        tc_async_rows(Y[0], gb, ldo, min(TC_ROWS, T));
    } else {
        tc_async_rows(X[1], qb + (size_t)r0 * ld3, ld3, nown);
        tc_async_rows(Y[1], gb + (size_t)r0 * ldo, ldo, nown);
        tc_async_rows(X[0], kb, ld3, min(TC_ROWS, T));
        tc_async_rows(Y[0], vb, ld3, min(TC_ROWS, T));
    }
    cp_async_commit();
    cp_async_wait<0>();
    /* statistics: role 1 per streamed query tile (below), role 0 of the own queries */
    float L0 = 0.0f, L1 = 0.0f, D0 = 0.0f, D1 = 0.0f;
    if (role == 0) {
        int i0 = r0 + w * 16 + g, i1 = i0 + 8;
        L0 = i0 < T ? L[i0] * log2e : INFINITY; D0 = i0 < T ? Dg[i0] : 0.0f;
        L1 = i1 < T ? L[i1] * log2e : INFINITY; D1 = i1 < T ? Dg[i1] : 0.0f;
    }
    __syncthreads();
    mma_load_a(fa, X[1] + w * 16 * TC_LD, lane);
    mma_load_a(fb, Y[1] + w * 16 * TC_LD, lane);
    __syncthreads();   /* stage 1 is free for streaming */

    for (int it = 0; it < ntiles; it++) {
        int j0 = it * TC_ROWS, nj = min(TC_ROWS, T - j0), st = it & 1;
        if (role == 1 && threadIdx.x < TC_ROWS) {
            int i = j0 + threadIdx.x;
            Ls[st][threadIdx.x] = i < T ? L[i] * log2e : INFINITY;   /* log2 domain; p = 0 for queries >= T */
            Ds[st][threadIdx.x] = i < T ? Dg[i] : 0.0f;
        }
        if (it + 1 < ntiles) {
            int j1 = j0 + TC_ROWS, nj1 = min(TC_ROWS, T - j1);
            if (role == 1) {
                tc_async_rows(X[st ^ 1], qb + (size_t)j1 * ld3, ld3, nj1);
                tc_async_rows(Y[st ^ 1], gb + (size_t)j1 * ldo, ldo, nj1);
            } else {
                tc_async_rows(X[st ^ 1], kb + (size_t)j1 * ld3, ld3, nj1);
                tc_async_rows(Y[st ^ 1], vb + (size_t)j1 * ld3, ld3, nj1);
            }
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (active) {
            /* the streamed tile in two halves of 32 rows: half the score registers */
            for (int hh = 0; hh < 2 && hh * 32 < nj; hh++) {
                int nh = min(32, nj - hh * 32), nn = (nh + 7) / 8, nkc = (nh + 15) / 16;
                const __nv_bfloat16 *Xh = X[st] + hh * 32 * TC_LD, *Yh = Y[st] + hh * 32 * TC_LD;
                if (role == 1) {
                    mma_abt<4>(s, fa, Xh, lane, nn);    /* S^T[key, q] = k . q */
                    mma_abt<4>(dp, fb, Yh, lane, nn);   /* dP^T[key, q] = v . dO */
#pragma unroll
                    for (int n = 0; n < 4; n++) {
                        int q = hh * 32 + n * 8 + 2 * t;   /* even: one 8-byte load per statistic */
                        float2 L2 = *(const float2 *)&Ls[st][q], D2 = *(const float2 *)&Ds[st][q];
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            float Lq = e ? L2.y : L2.x, Dq = e ? D2.y : D2.x;   /* Lq = +inf for queries >= T */
                            float p0 = ex2_ftz(fmaf(s[n][e], sl2, -Lq)), p1 = ex2_ftz(fmaf(s[n][2 + e], sl2, -Lq));
                            s[n][e] = p0;
                            s[n][2 + e] = p1;
                            dp[n][e] = p0 * (dp[n][e] - Dq);
                            dp[n][2 + e] = p1 * (dp[n][2 + e] - Dq);
                        }
                    }
                    mma_pb<4>(acc1, s, Yh, lane, nkc);    /* dV += P^T dO */
                    mma_pb<4>(acc2, dp, Xh, lane, nkc);   /* dK += dS^T Q */
                } else {
                    mma_abt<4>(s, fa, Xh, lane, nn);    /* S[q, key] */
                    mma_abt<4>(dp, fb, Yh, lane, nn);   /* dP[q, key] */
#pragma unroll
                    for (int n = 0; n < 4; n++) {
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            bool ok_ = n * 8 + 2 * t + e < nh;
                            float p0 = ok_ ? ex2_ftz(fmaf(s[n][e], sl2, -L0)) : 0.0f;
                            float p1 = ok_ ? ex2_ftz(fmaf(s[n][2 + e], sl2, -L1)) : 0.0f;
                            dp[n][e] = p0 * (dp[n][e] - D0);
                            dp[n][2 + e] = p1 * (dp[n][2 + e] - D1);
                        }
                    }
                    mma_pb<4>(acc1, dp, Xh, lane, nkc);   /* dQ += dS K */
                }
            }
        }
        __syncthreads();
    }
    /* the final values (role 1: dK = acc2 * scale, dV = acc1; role 0: dQ = acc1 * scale),
     * rows past T (and inactive warps) zero for the column sums */
    int i0 = r0 + w * 16 + g, i1 = i0 + 8;
    const bool ok0 = active && i0 < T, ok1 = active && i1 < T;
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            bool okr = e < 2 ? ok0 : ok1;
            if (role == 1) acc2[n][e] = okr ? acc2[n][e] * scale : 0.0f;
            else acc1[n][e] *= scale;
            if (!okr) acc1[n][e] = 0.0f;
        }
#pragma unroll
    for (int n = 0; n < 8; n++) {
        int d = n * 8 + 2 * t;
        if (role == 1) {
            if (ok0) {
                tc_store2(dqkv, out_bf16, dqb + (size_t)i0 * ld3 + ldo + d, acc2[n][0], acc2[n][1]);
                tc_store2(dqkv, out_bf16, dqb + (size_t)i0 * ld3 + 2 * ldo + d, acc1[n][0], acc1[n][1]);
            }
            if (ok1) {
                tc_store2(dqkv, out_bf16, dqb + (size_t)i1 * ld3 + ldo + d, acc2[n][2], acc2[n][3]);
                tc_store2(dqkv, out_bf16, dqb + (size_t)i1 * ld3 + 2 * ldo + d, acc1[n][2], acc1[n][3]);
            }
        } else {
            if (ok0) tc_store2(dqkv, out_bf16, dqb + (size_t)i0 * ld3 + d, acc1[n][0], acc1[n][1]);
            if (ok1) tc_store2(dqkv, out_bf16, dqb + (size_t)i1 * ld3 + d, acc1[n][2], acc1[n][3]);
        }
    }
    if (!part) return;   /* uniform over the grid */
    /* column sums of the f32 values: rows g and g+8 of each lane, then the 8
     * row groups (lanes that differ in bits 2..4) by a fixed butterfly */
#pragma unroll
    for (int n = 0; n < 8; n++) {
        float a0 = acc1[n][0] + acc1[n][2], a1 = acc1[n][1] + acc1[n][3];
        float b0 = acc2[n][0] + acc2[n][2], b1 = acc2[n][1] + acc2[n][3];
#pragma unroll
        for (int m = 4; m < 32; m <<= 1) {
            a0 += __shfl_xor_sync(0xffffffffu, a0, m);
            a1 += __shfl_xor_sync(0xffffffffu, a1, m);
            b0 += __shfl_xor_sync(0xffffffffu, b0, m);
            b1 += __shfl_xor_sync(0xffffffffu, b1, m);
        }
        if (g == 0) {
            int d = n * 8 + 2 * t;
            csum[0][w][d] = a0; csum[0][w][d + 1] = a1;
            csum[1][w][d] = b0; csum[1][w][d + 1] = b1;
        }
    }
    __syncthreads();
    if (threadIdx.x < TC_HS) {
        int c = threadIdx.x;
        float s1 = ((csum[0][0][c] + csum[0][1][c]) + csum[0][2][c]) + csum[0][3][c];
        float s2 = ((csum[1][0][c] + csum[1][1][c]) + csum[1][2][c]) + csum[1][3][c];
        float *pr = part + ((size_t)bi * gridDim.x + blockIdx.x) * ld3 + (size_t)h * TC_HS + c;
        if (role == 0) pr[0] = s1;               /* dQ */
        else { pr[ldo] = s2; pr[2 * ldo] = s1; } /* dK, dV */
    }
}

/* 4 warps (64 queries) per block: measured on H100 (T=257) against 8 warps
 * (0.090 vs 0.098 ms at Bn=32, 0.632 vs 0.703 at Bn=256). */
static void cu_attn_tc_fwd(backend_t *b, void *out, float *lse, const void *qkv, int Bn, int T, int NH) {
    constexpr int NW = 4;
    size_t smem = (size_t)(16 * NW * TC_LD + 4 * TF_KMAX * TC_LD) * sizeof(__nv_bfloat16);
    CU_CHECK(cudaFuncSetAttribute(cu_attn_fwd_mma_kernel<NW>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((T + 16 * NW - 1) / (16 * NW), NH, Bn);
    cu_attn_fwd_mma_kernel<NW><<<grid, 32 * NW, smem, cu_st(b)>>>((__nv_bfloat16 *)out, lse,
                                                                  (const __nv_bfloat16 *)qkv, T, NH,
                                                                  1.0f / sqrtf((float)TC_HS));
    CU_LAUNCH_CHECK();
}

static void cu_attn_tc_bwd(backend_t *b, void *dqkv, dtype_t ddt, float *dbias, const float *dout, const void *qkv,
                           const void *out, const float *lse, int Bn, int T, int NH) {
    size_t rows = (size_t)Bn * T * NH;
    char *sc = (char *)cu_scratch(b, 1, rows * sizeof(float) + rows * TC_HS * 2 + 256);
    float *Dg = (float *)sc;
    __nv_bfloat16 *gb16 = (__nv_bfloat16 *)(sc + ((rows * sizeof(float) + 255) & ~(size_t)255));
    cu_attn_bwd_prep_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, cu_st(b)>>>(Dg, gb16, dout, (const __nv_bfloat16 *)out,
                                                                            Bn, T, NH);
    CU_LAUNCH_CHECK();
    int nrb = (T + TC_ROWS - 1) / TC_ROWS;
    size_t ld3 = (size_t)3 * NH * TC_HS;
    float *part = dbias ? (float *)cu_scratch(b, 3, (size_t)Bn * nrb * ld3 * sizeof(float)) : NULL;
    dim3 grid(nrb, NH, 2 * Bn);
    cu_attn_bwd_mma_kernel<<<grid, 128, 0, cu_st(b)>>>(dqkv, ddt == DT_BF16, part, gb16, (const __nv_bfloat16 *)qkv,
                                                      Dg, lse, T, NH, 1.0f / sqrtf((float)TC_HS));
    CU_LAUNCH_CHECK();
    if (dbias) cu_colsum_finish(b, dbias, part, Bn * nrb, (int)ld3);
}

/* ======================= C. cuBLAS fallback ======================= */

/* Between the token-major layout [b, t, part, h, d] (token stride ld, the part at
 * part_off) and the head-major [(b*NH+h), t, d]: gather (to_bh) dst[(b*NH+h), t, d]
 * (ddt) = src[b, t, part, h, d] (sdt); scatter (!to_bh) the inverse. */
__global__ void cu_attn_permute_kernel(void *dst, dtype_t ddt, const void *src, dtype_t sdt, int Bn, int T,
                                       int NH, int HS, size_t ld, size_t part_off, bool to_bh) {
    size_t n = (size_t)Bn * NH * T * HS;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(e % HS);
        size_t r = e / HS;
        int t = (int)(r % T);
        size_t bh = r / T;
        int h = (int)(bh % NH), bi = (int)(bh / NH);
        size_t tok = ((size_t)bi * T + t) * ld + part_off + (size_t)h * HS + d;
        if (to_bh) cu_st(dst, ddt, e, cu_ld(src, sdt, tok));
        else cu_st(dst, ddt, tok, cu_ld(src, sdt, e));
    }
}

static void cu_attn_permute(backend_t *b, void *dst, dtype_t ddt, const void *src, dtype_t sdt, int Bn, int T,
                            int NH, int HS, size_t ld, size_t part_off, bool to_bh) {
    size_t n = (size_t)Bn * NH * T * HS;
    cu_attn_permute_kernel<<<cu_blocks(n, 256), 256, 0, cu_st(b)>>>(dst, ddt, src, sdt, Bn, T, NH, HS, ld, part_off,
                                                                   to_bh);
    CU_LAUNCH_CHECK();
}

static void cu_attn_gather(backend_t *b, void *dst, dtype_t ddt, const void *src, dtype_t sdt, int Bn, int T,
                           int NH, int HS, size_t ld, size_t part_off) {
    cu_attn_permute(b, dst, ddt, src, sdt, Bn, T, NH, HS, ld, part_off, true);
}

static void cu_attn_scatter(backend_t *b, void *dst, dtype_t ddt, const void *src, dtype_t sdt, int Bn, int T,
                            int NH, int HS, size_t ld, size_t part_off) {
    cu_attn_permute(b, dst, ddt, src, sdt, Bn, T, NH, HS, ld, part_off, false);
}

/* Row softmax of S[rows, T] (fp32, already scaled): P (pdt) and lse. A warp per row. */
__global__ void cu_softmax_kernel(void *P, dtype_t pdt, float *lse, const float *S, size_t rows, int T) {
    size_t row = blockIdx.x * (size_t)(blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float *s = S + row * T;
    float mx = -INFINITY;
    for (int u = lane; u < T; u += 32) mx = fmaxf(mx, s[u]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.0f;
    for (int u = lane; u < T; u += 32) sum += expf(s[u] - mx);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    float inv = 1.0f / sum;
    for (int u = lane; u < T; u += 32) cu_st(P, pdt, row * T + u, expf(s[u] - mx) * inv);
    if (lse && lane == 0) lse[row] = mx + logf(sum);
}

/* Backward middle: P = exp(S - lse) (in S, fp32), D = rowsum(P * dP),
 * dS = P * (dP - D) written to dS (cdt); P also written to Pc (cdt) when Pc != S. */
__global__ void cu_attn_dsoftmax_kernel(float *S, void *Pc, void *dS, dtype_t cdt, const float *dP,
                                        const float *lse, size_t rows, int T) {
    size_t row = blockIdx.x * (size_t)(blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    float *s = S + row * T;
    const float *dp = dP + row * T;
    float L = lse[row], D = 0.0f;
    for (int u = lane; u < T; u += 32) {
        float p = expf(s[u] - L);
        s[u] = p;
        D += p * dp[u];
    }
    for (int o = 16; o > 0; o >>= 1) D += __shfl_xor_sync(0xffffffffu, D, o);
    __syncwarp();
    for (int u = lane; u < T; u += 32) {
        float p = s[u];
        float v = p * (dp[u] - D);
        if ((void *)Pc != (void *)S) cu_st(Pc, cdt, row * T + u, p);
        cu_st(dS, cdt, row * T + u, v);
    }
}

static void cu_gemm_sb(backend_t *b, int ta, int tb, int m, int n, int k, float alpha,
                       const void *A, int lda, long long sa, const void *B, int ldb, long long sb,
                       void *C, dtype_t cdt_out, int ldc, long long sc, dtype_t ab, int batch) {
    float beta = 0.0f;
    cudaDataType_t at = ab == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    cudaDataType_t ct = cdt_out == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(cu_impl(b)->blas, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                            tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, A, at, lda, sa,
                                            B, at, ldb, sb, &beta, C, ct, ldc, sc, batch, CUBLAS_COMPUTE_32F,
                                            CUBLAS_GEMM_DEFAULT));
}

#define CU_ATTN_CHUNK_BYTES ((size_t)512 << 20)

static void cu_attn_cublas_fwd(backend_t *b, void *out, float *lse, const void *qkv, dtype_t cdt,
                               int Bn, int T, int NH, int HS) {
    size_t es = dtype_size(cdt), nbh = (size_t)Bn * NH, per = (size_t)T * HS;
    size_t ld3 = (size_t)3 * NH * HS;
    char *qp = (char *)cu_scratch(b, 2, 3 * nbh * per * es);
    char *kp = qp + nbh * per * es, *vp = kp + nbh * per * es;
    cu_attn_gather(b, qp, cdt, qkv, cdt, Bn, T, NH, HS, ld3, 0);
    cu_attn_gather(b, kp, cdt, qkv, cdt, Bn, T, NH, HS, ld3, (size_t)NH * HS);
    cu_attn_gather(b, vp, cdt, qkv, cdt, Bn, T, NH, HS, ld3, (size_t)2 * NH * HS);
    size_t tt = (size_t)T * T;
    size_t per_bh = tt * sizeof(float) + (cdt == DT_BF16 ? tt * 2 : 0);
    size_t cb = CU_ATTN_CHUNK_BYTES / per_bh;
    if (cb < 1) cb = 1;
    if (cb > nbh) cb = nbh;
    float *S = (float *)cu_scratch(b, 1, cb * per_bh);
    void *P = cdt == DT_BF16 ? (void *)(S + cb * tt) : (void *)S;
    float scale = 1.0f / sqrtf((float)HS);
    for (size_t c0 = 0; c0 < nbh; c0 += cb) {
        int nb = (int)(nbh - c0 < cb ? nbh - c0 : cb);
        const char *Q = qp + c0 * per * es, *K = kp + c0 * per * es, *V = vp + c0 * per * es;
        /* S[t,u] = scale * q_t . k_u   (col-major: C[u,t] = K^T... ) */
        cu_gemm_sb(b, 1, 0, T, T, HS, scale, K, HS, per, Q, HS, per, S, DT_F32, T, tt, cdt, nb);
        size_t rows = (size_t)nb * T;
        cu_softmax_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, cu_st(b)>>>(P, cdt, lse ? lse + c0 * T : NULL, S,
                                                                           rows, T);
        CU_LAUNCH_CHECK();
        /* O[t,d] = sum_u P[t,u] v_u[d], written over this chunk's Q (no longer needed) */
        cu_gemm_sb(b, 0, 0, HS, T, T, 1.0f, V, HS, per, P, T, tt, (void *)Q, cdt, HS, per, cdt, nb);
    }
    cu_attn_scatter(b, out, cdt, qp, cdt, Bn, T, NH, HS, (size_t)NH * HS, 0);
}

static void cu_attn_cublas_bwd(backend_t *b, float *dqkv, const float *dout, const void *qkv, const float *lse,
                               dtype_t cdt, int Bn, int T, int NH, int HS) {
    size_t es = dtype_size(cdt), nbh = (size_t)Bn * NH, per = (size_t)T * HS, n = nbh * per;
    size_t ld3 = (size_t)3 * NH * HS, ldo = (size_t)NH * HS;
    char *qp = (char *)cu_scratch(b, 2, 4 * n * es);
    char *kp = qp + n * es, *vp = kp + n * es, *gp = vp + n * es;
    cu_attn_gather(b, qp, cdt, qkv, cdt, Bn, T, NH, HS, ld3, 0);
    cu_attn_gather(b, kp, cdt, qkv, cdt, Bn, T, NH, HS, ld3, ldo);
    cu_attn_gather(b, vp, cdt, qkv, cdt, Bn, T, NH, HS, ld3, 2 * ldo);
    cu_attn_gather(b, gp, cdt, dout, DT_F32, Bn, T, NH, HS, ldo, 0);   /* dO in cdt (autocast) */
    float *dq = (float *)cu_scratch(b, 3, 3 * n * sizeof(float));
    float *dk = dq + n, *dv = dk + n;
    size_t tt = (size_t)T * T;
    size_t per_bh = 2 * tt * sizeof(float) + (cdt == DT_BF16 ? 2 * tt * 2 : 0);
    size_t cb = CU_ATTN_CHUNK_BYTES / per_bh;
    if (cb < 1) cb = 1;
    if (cb > nbh) cb = nbh;
    float *S = (float *)cu_scratch(b, 1, cb * per_bh);
    float *dP = S + cb * tt;
    void *Pc = cdt == DT_BF16 ? (void *)(dP + cb * tt) : (void *)S;
    void *dS = cdt == DT_BF16 ? (void *)((char *)Pc + cb * tt * 2) : (void *)dP;
    float scale = 1.0f / sqrtf((float)HS);
    for (size_t c0 = 0; c0 < nbh; c0 += cb) {
        int nb = (int)(nbh - c0 < cb ? nbh - c0 : cb);
        size_t o = c0 * per;
        const char *Q = qp + o * es, *K = kp + o * es, *V = vp + o * es, *G = gp + o * es;
        cu_gemm_sb(b, 1, 0, T, T, HS, scale, K, HS, per, Q, HS, per, S, DT_F32, T, tt, cdt, nb);
        cu_gemm_sb(b, 1, 0, T, T, HS, 1.0f, V, HS, per, G, HS, per, dP, DT_F32, T, tt, cdt, nb);
        size_t rows = (size_t)nb * T;
        cu_attn_dsoftmax_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, cu_st(b)>>>(S, Pc, dS, cdt, dP, lse + c0 * T,
                                                                                 rows, T);
        CU_LAUNCH_CHECK();
        /* dV = P^T dO;  dQ = scale dS K;  dK = scale dS^T Q */
        cu_gemm_sb(b, 0, 1, HS, T, T, 1.0f, G, HS, per, Pc, T, tt, dv + o, DT_F32, HS, per, cdt, nb);
        cu_gemm_sb(b, 0, 0, HS, T, T, scale, K, HS, per, dS, T, tt, dq + o, DT_F32, HS, per, cdt, nb);
        cu_gemm_sb(b, 0, 1, HS, T, T, scale, Q, HS, per, dS, T, tt, dk + o, DT_F32, HS, per, cdt, nb);
    }
    cu_attn_scatter(b, dqkv, DT_F32, dq, DT_F32, Bn, T, NH, HS, ld3, 0);
    cu_attn_scatter(b, dqkv, DT_F32, dk, DT_F32, Bn, T, NH, HS, ld3, ldo);
    cu_attn_scatter(b, dqkv, DT_F32, dv, DT_F32, Bn, T, NH, HS, ld3, 2 * ldo);
}

/* ======================= entry points ======================= */

static bool cu_attn_use_fused(backend_t *b, int HS) {
    return cu_impl(b)->attn_mode == CU_ATTN_FUSED && (HS == 32 || HS == 64);
}

/* The tensor-core kernels use 16-byte loads and stores on every tensor. */
static bool cu_attn_tc_ok(dtype_t cdt, int HS, const void *a, const void *b2 = NULL, const void *c = NULL,
                          const void *d = NULL) {
    return cdt == DT_BF16 && HS == TC_HS && (uintptr_t)a % 16 == 0 && (uintptr_t)b2 % 16 == 0 &&
           (uintptr_t)c % 16 == 0 && (uintptr_t)d % 16 == 0;
}

void cu_attention_fwd(backend_t *b, void *out, float *lse, const void *qkv, dtype_t cdt,
                      int Bn, int T, int NH, int HS) {
    if (Bn <= 0 || T <= 0 || NH <= 0 || HS <= 0) return;
    CU_ASSERT(cdt == DT_F32 || cdt == DT_BF16, "attention dtype %d", (int)cdt);
    CU_ASSERT(NH <= 65535 && Bn <= 65535, "NH=%d Bn=%d", NH, Bn);
    if (cu_impl(b)->attn_cudnn && cdt == DT_BF16 && HS % 8 == 0 && HS <= 128 && (uintptr_t)out % 16 == 0 &&
        (uintptr_t)qkv % 16 == 0 && (uintptr_t)lse % 16 == 0 && cu_sdpa_fwd(b, out, lse, qkv, Bn, T, NH, HS) == 0)
        return;
    if (cu_attn_use_fused(b, HS)) {
        if (cu_attn_tc_ok(cdt, HS, out, qkv)) cu_attn_tc_fwd(b, out, lse, qkv, Bn, T, NH);
        else if (HS == 64) cu_attn_fused_fwd<64>(b, out, lse, qkv, cdt, Bn, T, NH);
        else cu_attn_fused_fwd<32>(b, out, lse, qkv, cdt, Bn, T, NH);
        return;
    }
    cu_attn_cublas_fwd(b, out, lse, qkv, cdt, Bn, T, NH, HS);
}

void cu_attention_bwd(backend_t *b, void *dqkv, dtype_t ddt, float *dbias, const float *dout, const void *qkv,
                      const void *out, const float *lse, dtype_t cdt, int Bn, int T, int NH, int HS) {
    if (Bn <= 0 || T <= 0 || NH <= 0 || HS <= 0) return;
    CU_ASSERT(cdt == DT_F32 || cdt == DT_BF16, "attention dtype %d", (int)cdt);
    CU_ASSERT(ddt == DT_F32 || ddt == DT_BF16, "attention gradient dtype %d", (int)ddt);
    CU_ASSERT(lse, "attention_bwd needs the forward's lse");
    CU_ASSERT(NH <= 65535 && 2 * Bn <= 65535, "NH=%d Bn=%d", NH, Bn);
    if (cu_attn_use_fused(b, HS) && cu_attn_tc_ok(cdt, HS, dqkv, dout, qkv, out)) {
        cu_attn_tc_bwd(b, dqkv, ddt, dbias, dout, qkv, out, lse, Bn, T, NH);   /* stores and sums in its epilogue */
        return;
    }
    /* the other kernels make f32 gradients: in place, or in a scratch then stored in ddt */
    size_t n = (size_t)Bn * T * 3 * NH * HS;
    float *g = ddt == DT_F32 ? (float *)dqkv : (float *)cu_scratch(b, 4, n * sizeof(float));
    if (cu_attn_use_fused(b, HS)) {
        if (HS == 64) cu_attn_fused_bwd<64>(b, g, dout, qkv, out, lse, cdt, Bn, T, NH);
        else cu_attn_fused_bwd<32>(b, g, dout, qkv, out, lse, cdt, Bn, T, NH);
    } else {
        cu_attn_cublas_bwd(b, g, dout, qkv, lse, cdt, Bn, T, NH, HS);
    }
    if (dbias || ddt != DT_F32) cu_store_colsum(b, dqkv, ddt, dbias, g, Bn * T, 3 * NH * HS);
}
