/* gpu/cuda/cuda_common.h — shared by the CUDA backend's translation units.
 *
 * Owns: the error-checking macros (every CUDA / cuBLAS / cuBLASLt call and
 * every kernel launch is checked; a failure is a bug or a device fault, so the
 * process prints the call site and exits — see gpu/backend.h), the backend's
 * private state (cu_impl_t), the scratch-buffer helper, bf16 load/store
 * helpers for kernels, and the declarations of the op functions that
 * backend_cuda.cu assembles into the backend_t table.
 *
 * Files of the backend:
 *   backend_cuda.cu     lifetime, memory, IPC sharing, data ops, the op table
 *   matmul.cu           matrix products through cuBLASLt (+ bias gradient), the MLP's product + GELU
 *   kernels_layers.cu   LayerNorm, GELU, LayerScale, embed, token slice
 *   images.cu           u8 normalization, im2col with augmentation (no FMA contraction)
 *   kernels_optim.cu    hand loss, sumsq, scale, AdamW, stats
 *   attention.cu        fused attention kernels and the cuBLAS fallback
 *   cudnn.cu            cuDNN loaded at run time, its handle, graph/plan helpers (dnn.h)
 *   sdpa_cudnn.cu       attention forward through cuDNN's fused SDPA (bf16)
 */
#ifndef TRAIND_CUDA_COMMON_H
#define TRAIND_CUDA_COMMON_H

#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <cublasLt.h>

extern "C" {
#include "gpu/backend.h"
}

/* ---- checking ------------------------------------------------------------ */

#define CU_CHECK(call) do {                                                        \
    cudaError_t e_ = (call);                                                       \
    if (e_ != cudaSuccess) {                                                       \
        fprintf(stderr, "traind: CUDA error at %s:%d: %s: %s\n", __FILE__,        \
                __LINE__, #call, cudaGetErrorString(e_));                          \
        exit(EXIT_FAILURE);                                                        \
    }                                                                              \
} while (0)

#define CUBLAS_CHECK(call) do {                                                    \
    cublasStatus_t s_ = (call);                                                    \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                             \
        fprintf(stderr, "traind: cuBLAS error at %s:%d: %s: %s\n", __FILE__,      \
                __LINE__, #call, cublasGetStatusString(s_));                       \
        exit(EXIT_FAILURE);                                                        \
    }                                                                              \
} while (0)

/* After every kernel launch. */
#define CU_LAUNCH_CHECK() CU_CHECK(cudaGetLastError())

/* Invariant that bad user input cannot reach (the callers validate). */
#define CU_ASSERT(cond, ...) do {                                                  \
    if (!(cond)) {                                                                 \
        fprintf(stderr, "traind: cuda backend invariant failed at %s:%d: %s: ",   \
                __FILE__, __LINE__, #cond);                                        \
        fprintf(stderr, __VA_ARGS__);                                              \
        fprintf(stderr, "\n");                                                     \
        exit(EXIT_FAILURE);                                                        \
    }                                                                              \
} while (0)

/* ---- private state --------------------------------------------------------- */

#define CU_LT_WORKSPACE (32u << 20)
#define CU_STAGING_BYTES (32u << 20)   /* per pinned staging buffer (two) */
#define CU_LT_CACHE 64
#define CU_LT_TUNE 8          /* candidates timed with TRAIND_LT_AUTOTUNE=1 */

typedef struct {
    /* key */
    int transa, transb, m, n, k, lda, ldb, ldc;
    int atype, ctype, dtype_, epilogue, beta1;
    int al[4];                          /* byte alignment of A, B, D, bias */
    int valid;
    long last_use;
    /* value */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} cu_lt_plan_t;

typedef enum { CU_ATTN_FUSED = 0, CU_ATTN_CUBLAS = 1 } cu_attn_mode_t;

typedef struct {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    void *lt_ws;                        /* cuBLASLt workspace */
    cu_lt_plan_t plans[CU_LT_CACHE];    /* cached matmul descriptors and algos */
    long plan_clock;
    int lt_tune;                        /* TRAIND_LT_AUTOTUNE */

    /* Scratch slots (device memory, grown on demand; contents undefined). */
#define CU_NSCRATCH 5
    void *scratch[CU_NSCRATCH];
    size_t scratch_size[CU_NSCRATCH];

    /* Reduction results (device) and their pinned host mirror. */
    double *red_dev;                    /* partial sums, CU_RED_BLOCKS * 8 doubles */
    double *red_host;                   /* pinned, 16 doubles */

    /* images_from_u8: two pinned staging buffers and their reuse events. */
    uint8_t *staging[2];                /* pinned host */
    uint8_t *dstage[2];                 /* device */
    cudaEvent_t staging_free[2];
    size_t staging_size;

    cu_attn_mode_t attn_mode;
    int attn_cudnn;                     /* bf16 forward through cuDNN first (TRAIND_ATTENTION=own: no) */
    void *dnn;                          /* cuDNN library and handle (cudnn.cu), made on first use */
    void *sdpa;                         /* fused attention plans (sdpa_cudnn.cu) */
    char name[256];

    /* Test hook TRAIND_TEST_GPU_FAULT=FILE: see cu_fault_check(). */
    char fault_path[256];
    long fault_ops;
} cu_impl_t;

#define CU_RED_BLOCKS 512

static inline cu_impl_t *cu_impl(backend_t *b) { return (cu_impl_t *)b->impl; }

/* Test hook: with TRAIND_TEST_GPU_FAULT=FILE set when the backend is created,
 * the CU_FAULT_AFTER-th matrix product (so a worker inside a forward pass;
 * the daemon's own backend never multiplies matrices) checks for FILE; if it
 * exists, it is removed (so exactly one process faults) and a kernel writes
 * through an invalid device address: a real GPU fault (sticky illegal-address
 * error), reported by the next checked CUDA call, which exits the process. */
#define CU_FAULT_AFTER 8
void cu_fault_check(backend_t *b);

/* Makes the backend's device current (a process may drive several). */
static inline void cu_enter(backend_t *b) { CU_CHECK(cudaSetDevice(cu_impl(b)->device)); }

/* Scratch slot `slot` of at least `bytes` (device memory); exits on failure
 * (an op cannot return an error; the model sizes its own buffers up front).
 * Growing a slot frees the old buffer (cudaFree synchronizes the device), so
 * earlier queued work is never left reading freed memory. One op never uses
 * a slot twice for different things:
 *   0  matmul: bf16 copy of dout, fp32 intermediate, bf16 bias
 *   1  attention: score chunks (cuBLAS path), D and bf16 dO (tensor-core
 *      backward); AdamW run/tile tables
 *   2  attention (cuBLAS path): permuted q, k, v, dO; LayerNorm dw/db partials
 *   3  column-sum partials (bias, LayerScale gradients); cuBLAS-path dq/dk/dv */
void *cu_scratch(backend_t *b, int slot, size_t bytes);
/* A library loaded at run time (cuDNN, NCCL): the path in the environment variable env
 * when set (and only it), else the first of the machine's usual places for soname that
 * opens: the loader's search path, the CUDA toolkit, Debian's multiarch directory,
 * PyTorch's nvidia/<pkg>/lib (pkg: "cudnn", "nccl"). NULL with why[] on failure. */
void *cu_dlopen_lib(const char *env, const char *soname, const char *pkg, char *why, size_t whylen);

/* Milliseconds one run of run(b, ctx) takes on the backend's stream: a warm-up,
 * then the mean of 3 runs timed with events; 1e30 when a run returns nonzero
 * (a failure: whatever it enqueued is not timed). For choosing between ways of
 * doing an op on the call's own tensors. */
float cu_time_ms(backend_t *b, int (*run)(backend_t *b, void *ctx), void *ctx);

static inline unsigned cu_blocks(size_t n, unsigned threads) {
    size_t g = (n + threads - 1) / threads;
    if (g > 65535u * 32u) g = 65535u * 32u;   /* grid-stride loops cover the rest */
    return (unsigned)(g ? g : 1);
}

/* ---- element access (dtype given at run time) ------------------------------- */

__device__ __forceinline__ float cu_ld(const void *p, dtype_t dt, size_t i) {
    return dt == DT_BF16 ? __bfloat162float(((const __nv_bfloat16 *)p)[i]) : ((const float *)p)[i];
}
__device__ __forceinline__ void cu_st(void *p, dtype_t dt, size_t i, float v) {
    if (dt == DT_BF16) ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
    else ((float *)p)[i] = v;
}

/* ---- ops implemented in the other files -------------------------------------- */

/* matmul.cu */
void cu_lt_init(backend_t *b);
void cu_lt_destroy(backend_t *b);
void cu_matmul_fwd(backend_t *b, void *out, dtype_t odt, const void *inp, const void *w,
                   const float *bias, dtype_t cdt, int M, int N, int K);
void cu_matmul_bwd(backend_t *b, float *dinp, float *dw, float *dbias, const void *dout, dtype_t gdt,
                   const void *inp, const void *w, dtype_t cdt, int M, int N, int K);
/* Column sums: acc[C] += sum_n a[n,c] * (x ? x[n,c] : 1)  (x in xdt), fixed order:
 * rows in chunks of CU_COLSUM_ROWS, each chunk's partial sums part[chunk, C] added
 * in chunk order by cu_colsum_finish (which kernels that make partials themselves call). */
#define CU_COLSUM_ROWS 256
void cu_colsum(backend_t *b, float *acc, const float *a, const void *x, dtype_t xdt, int N, int C);
/* ||x - ref|| / ||ref|| of n elements of dt (kernels_optim.cu; synchronizes); NaN if x has one */
double cu_rel_diff(backend_t *b, const void *x, const void *ref, dtype_t dt, size_t n);
/* acc[C] += the column sums of a[N,C] (adt), deterministic (cu_colsum's order) */
void cu_colsum_dt(backend_t *b, float *acc, const void *a, dtype_t adt, int N, int C);
void cu_colsum_finish(backend_t *b, float *acc, const float *part, int nchunk, int C);
/* dst[M,N] (ddt) = src[M,N] f32 (rounded for bf16; dst may be src when f32) and
 * acc[N] += its column sums (acc may be NULL), in one pass over src for bf16. */
void cu_store_colsum(backend_t *b, void *dst, dtype_t ddt, float *acc, const float *src, int M, int N);

/* images.cu */
void cu_im2col(backend_t *b, void *out, dtype_t cdt, const void *images, dtype_t idt,
               const int32_t *idx, int Bn, int H, int W, int p, const im2col_aug_t *aug);
void cu_aug_joints(backend_t *b, float *out, const float *joints, const int32_t *idx, const aug_sample_t *aug,
                   int Bn);
/* dst[n,3,H,W] (ddt) from a device u8 [n,H,W,3] buffer. */
void cu_u8_normalize(backend_t *b, void *dst, dtype_t ddt, const uint8_t *src, size_t n_img,
                     int H, int W, const float mean[3], const float std[3]);

/* kernels_layers.cu */
void cu_cast(backend_t *b, void *dst, dtype_t ddt, const void *src, dtype_t sdt, size_t n);
void cu_layernorm_fwd(backend_t *b, void *out, dtype_t odt, float *mean, float *rstd,
                      const float *inp, const float *w, const float *bias, int N, int C, float eps);
void cu_layernorm_bwd(backend_t *b, float *dinp, float *dw, float *db, const float *dout,
                      const float *inp, const void *x, dtype_t xdt, const float *gamma,
                      const float *w, const float *mean, const float *rstd, int N, int C);
void cu_gelu_fwd(backend_t *b, void *out, dtype_t odt, const void *inp, dtype_t idt, size_t n);
/* dinp (ddt) = dout (odt: f32, or bf16 from matmul_dgelu) * gelu'(inp); dbias += its column sums */
void cu_gelu_bwd(backend_t *b, void *dinp, dtype_t ddt, float *dbias, const void *dout, dtype_t odt,
                 const void *inp, dtype_t idt, int M, int N);
void cu_layerscale_fwd(backend_t *b, float *out, const float *res, const void *x, dtype_t xdt,
                       const float *gamma, int N, int C);
void cu_layerscale_bwd(backend_t *b, void *dx, dtype_t ddt, float *dgamma, float *dbias, const float *dout,
                       const void *x, dtype_t xdt, const float *gamma, int N, int C);
void cu_layerscale_layernorm_fwd(backend_t *b, float *out, const float *res, const void *x, dtype_t xdt,
                                 const float *gamma, void *ln, dtype_t odt, float *mean, float *rstd,
                                 const float *w, const float *bias, int N, int C, float eps);
void cu_embed_fwd(backend_t *b, float *x, const float *patches, const float *cls,
                  const float *reg, const float *pos, int Bn, int P, int R, int D);
void cu_embed_bwd(backend_t *b, float *dpatches, float *dcls, float *dreg, float *dpos,
                  const float *dx, int Bn, int P, int R, int D);
void cu_token_slice(backend_t *b, void *out, const void *x, dtype_t dt, int Bn, int T, int D, int t);
void cu_token_scatter_add(backend_t *b, float *dx, const float *dout, int Bn, int T, int D, int t);

/* kernels_optim.cu */
void cu_hand_loss(backend_t *b, hand_loss_t *host_out, float *dpred, float *dconf,
                  const float *pred, const float *conf_logit, const float *joints,
                  const uint8_t *valid, const uint8_t *has_hand, const int32_t *idx, int Bn, const hand_norm_t *norm);
double cu_sumsq(backend_t *b, const float *x, size_t n);
void cu_scale(backend_t *b, float *x, float s, size_t n);
void cu_adamw(backend_t *b, float *params, void *pc, dtype_t cdt, const float *grads,
              float *m, float *v, const adamw_seg_t *segs, int nsegs,
              float beta1, float beta2, float eps, int t, float gscale);
void cu_stats(backend_t *b, double out[7], const void *x, dtype_t dt, size_t n);

/* attention.cu */
void cu_attention_fwd(backend_t *b, void *out, float *lse, const void *qkv, dtype_t cdt,
                      int Bn, int T, int NH, int HS);
void cu_attention_bwd(backend_t *b, void *dqkv, dtype_t ddt, float *dbias, const float *dout, const void *qkv,
                      const void *out, const float *lse, dtype_t cdt, int Bn, int T, int NH, int HS);

/* sdpa_cudnn.cu: out[Bn,T,NH,HS] bf16 (and lse[Bn,NH,T] if not NULL) from
 * qkv[Bn,T,3,NH,HS] bf16 (16-byte aligned) through cuDNN's fused attention;
 * 0 when done, -1 when cuDNN is unavailable or refuses (nothing written). */
int cu_sdpa_fwd(backend_t *b, void *out, float *lse, const void *qkv, int Bn, int T, int NH, int HS);
void cu_sdpa_destroy(backend_t *b);

/* matmul.cu: out[M,N] (odt) = gelu(inp[M,K] @ w[N,K]^T + bias[N]); tmp[M,N]
 * (odt) is written (the product). */
void cu_matmul_gelu_fwd(backend_t *b, void *out, dtype_t odt, void *tmp, const void *inp, const void *w,
                        const float *bias, dtype_t cdt, int M, int N, int K);
/* g[M,K] (gdt) = (dout[M,N] @ w[N,K]) * gelu'(x[M,K]); dbias[K] += sum_m g; tmp[M,K] f32 is written. */
void cu_matmul_dgelu(backend_t *b, void *g, dtype_t gdt, float *dbias, float *tmp, const void *dout, const void *w,
                     const void *x, dtype_t cdt, int M, int N, int K);
/* cudnn.cu (after the users' destroys above) */
void cu_dnn_destroy(backend_t *b);
#endif
