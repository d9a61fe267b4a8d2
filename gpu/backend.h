/* gpu/backend.h — the op interface every compute backend implements.
 *
 * The model (gpu/model.c), losses, optimizer and stage loops are written once
 * against this table of functions. Two implementations exist:
 *   gpu/backend_cpu.c   plain C (+ CBLAS for matrix products): the numerical
 *                       reference, and the backend on machines without a GPU;
 *   gpu/cuda/ (.cu)       CUDA (cuBLASLt, cuDNN, own fused kernels).
 *
 * Conventions (as in llm.c):
 * - Pointers passed to ops are backend memory (host memory for "cpu", device
 *   memory for "cuda"), except where an argument says "host".
 * - Shapes are given in the comments, row-major, last index fastest.
 * - Activations that feed a matrix product or attention are stored in the
 *   stage's compute dtype `cdt` (DT_BF16 or DT_F32, see SPEC §5); the residual
 *   stream, LayerNorm statistics, every gradient, every parameter master copy,
 *   losses and outputs are fp32. Matrix products always accumulate in fp32.
 * - In backward functions, parameter gradients ACCUMULATE (+=) and input
 *   gradients OVERWRITE (=) unless the comment says otherwise.
 * - Ops are asynchronous on "cuda" (one stream per backend); functions that
 *   return a host value synchronize. A failing CUDA call inside an op is a bug
 *   or a device fault: the backend prints the call site and exits the process
 *   (workers are processes so that this loses nothing; see daemon/). Functions
 *   that can fail for ordinary reasons (allocation, sharing) return NULL / -1
 *   and write a message to the backend's `err` buffer.
 */
#ifndef TRAIND_BACKEND_H
#define TRAIND_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "gpu/augment_math.h"
#include "store/dtype.h"

#define BACKEND_HANDLE_MAX 256   /* text form of a shareable-memory handle */
#define BACKEND_ERR_MAX 256

/* One contiguous run of parameters that AdamW treats alike. */
typedef struct {
    size_t off;     /* element offset into the flat parameter buffer */
    size_t n;       /* elements */
    float lr;       /* learning rate for this run, already scheduled */
    float wd;       /* decoupled weight decay (0 for vectors) */
} adamw_seg_t;

/* Hand-pose loss terms, fp32, produced by hand_loss (host copy). */
typedef struct {
    float total;    /* joint + 0.3*pair + 0.1*conf */
    float joint;    /* fingertip-weighted mean per-joint L2 (metres) over valid joints */
    float pair;     /* mean L1 error of the 210 pairwise joint distances (metres) */
    float conf;     /* BCE of the confidence head against exp(-err/20mm), detached */
    float valid;    /* number of valid joints that entered the loss */
} hand_loss_t;

/* The hand loss's normalizers over a batch (samples with a hand): the sum of
 * the valid joints' weights (hand_joint_weight), the number of valid joints
 * and of valid joint pairs. Sums of per-sample integers: exact in double. */
typedef struct {
    double sw, nj, npair;
} hand_norm_t;
/* Adds the normalizers of one sample's valid mask (valid NULL: all valid). */
void hand_norm_add(hand_norm_t *n, const uint8_t *valid);

typedef struct backend backend_t;
struct backend {
    const char *name;                 /* "cpu" | "cuda" */
    int device;                       /* device index (cuda), 0 for cpu */
    char err[BACKEND_ERR_MAX];        /* last ordinary failure */
    void *impl;                       /* backend private state */

    /* ---- lifetime and memory --------------------------------------------- */
    void  (*destroy)(backend_t *b);
    void *(*alloc)(backend_t *b, size_t bytes);                 /* NULL + err on failure; contents undefined */
    void  (*free)(backend_t *b, void *p);
    void *(*host_alloc)(backend_t *b, size_t bytes);            /* staging memory (pinned on cuda) */
    void  (*host_free)(backend_t *b, void *p);
    void  (*upload)(backend_t *b, void *dst, const void *host_src, size_t bytes);
    void  (*download)(backend_t *b, void *host_dst, const void *src, size_t bytes); /* synchronizes */
    void  (*copy)(backend_t *b, void *dst, const void *src, size_t bytes);
    void  (*zero)(backend_t *b, void *p, size_t bytes);
    void  (*sync)(backend_t *b);
    int   (*mem_info)(backend_t *b, size_t *free_bytes, size_t *total_bytes);
    const char *(*device_name)(backend_t *b);

    /* Memory shared between processes (the resident dataset): POSIX shared
     * memory on cpu, CUDA IPC on cuda. The owner allocates and gets a text
     * handle; another process opens the same bytes with it. */
    void *(*shared_alloc)(backend_t *b, size_t bytes, char handle[BACKEND_HANDLE_MAX]);
    void  (*shared_free)(backend_t *b, void *p, size_t bytes, const char *handle);  /* owner */
    void *(*shared_open)(backend_t *b, const char *handle, size_t bytes);
    void  (*shared_close)(backend_t *b, void *p, size_t bytes);                     /* importer */

    /* ---- data ---------------------------------------------------------------- */
    /* dst[n,3,H,W] (ddt: bf16|f32) = (src/255 - mean[c]) / std[c], src host u8 [n,H,W,3] RGB. */
    void (*images_from_u8)(backend_t *b, void *dst, dtype_t ddt, const uint8_t *host_src,
                           int n, int H, int W, const float mean[3], const float std[3]);
    /* dst[n] (ddt) = src[n] (sdt); f32<->bf16 and same-type copy. */
    void (*cast)(backend_t *b, void *dst, dtype_t ddt, const void *src, dtype_t sdt, size_t n);
    /* Gather whole rows: dst[i] = src[idx[i]], rows of row_bytes; idx backend memory [n]. */
    void (*gather_rows)(backend_t *b, void *dst, const void *src, const int32_t *idx,
                        int n, size_t row_bytes);

    /* ---- layers (forward / backward pairs) ------------------------------------ */
    /* Patch extraction with the batch gather and the dtype conversion fused in:
     * out[Bn*P, 3*p*p] (cdt) with P = (H/p)*(W/p) patches in row-major order and
     * columns ordered (c, ky, kx) like a Conv2d weight [D,3,p,p] flattened;
     * images[N,3,H,W] (idt) indexed by idx[Bn] (NULL: images are the batch).
     * aug (host struct, may be NULL): each batch row b is first augmented by
     * aug->samples[b] — resampled through its camera transform, colours,
     * erasing — exactly as gpu/augment_math.h defines it; the images are read,
     * never written. */
    void (*im2col)(backend_t *b, void *out, dtype_t cdt, const void *images, dtype_t idt,
                   const int32_t *idx, int Bn, int H, int W, int p, const im2col_aug_t *aug);
    /* The labels of an augmented batch: out[Bn,21,3] f32 = aug[b].m · joints[idx[b]]
     * (joints [N,21,3] f32; idx NULL: joints are the batch; aug backend memory [Bn]). */
    void (*aug_joints)(backend_t *b, float *out, const float *joints, const int32_t *idx,
                       const aug_sample_t *aug, int Bn);

    /* out[M,N] (odt) = inp[M,K] (cdt) @ w[N,K]^T (cdt) + bias[N] (f32, may be NULL). */
    void (*matmul_fwd)(backend_t *b, void *out, dtype_t odt, const void *inp, const void *w,
                       const float *bias, dtype_t cdt, int M, int N, int K);
    /* The MLP's first product when its pre-activation is not kept (a frozen block,
     * eval, inference): out[M,N] (odt) = gelu(inp @ w^T + bias), exact (erf) GELU.
     * tmp[M,N] (odt) may be written: matmul_fwd into tmp, then gelu_fwd (the
     * product rounded to odt before the GELU). */
    void (*matmul_gelu_fwd)(backend_t *b, void *out, dtype_t odt, void *tmp, const void *inp, const void *w,
                            const float *bias, dtype_t cdt, int M, int N, int K);
    /* The backward through a product and the GELU before it (fc2's input gradient,
     * then GELU'): g[M,K] (gdt) = (dout[M,N] @ w[N,K]) * gelu'(x[M,K]), dout, w and x
     * (the GELU's input) in cdt; dbias[K] += the column sums of g (may be NULL).
     * tmp[M,K] f32 may be written; g aliases none of dout, x, tmp: matmul_bwd
     * (dinp = tmp) then gelu_bwd, the product rounded to bf16 in between when cdt
     * is bf16 (PyTorch autocast's order: the linear's bf16 output, then GELU's
     * backward). */
    void (*matmul_dgelu)(backend_t *b, void *g, dtype_t gdt, float *dbias, float *tmp, const void *dout,
                         const void *w, const void *x, dtype_t cdt, int M, int N, int K);
    /* dinp[M,K] = dout @ w; dw[N,K] += dout^T @ inp; dbias[N] += sum_m dout.
     * dout[M,N] in gdt: f32, or bf16 when cdt is bf16 (the gradient already rounded
     * for the products by the op that made it, which then also made the bias
     * gradient: dbias must be NULL then); inp, w in cdt; any of dinp, dw, dbias may be NULL. */
    void (*matmul_bwd)(backend_t *b, float *dinp, float *dw, float *dbias, const void *dout, dtype_t gdt,
                       const void *inp, const void *w, dtype_t cdt, int M, int N, int K);

    /* out[N,C] (odt) = LN(inp[N,C] f32) * w + bias; mean, rstd [N] f32 (may be NULL). */
    void (*layernorm_fwd)(backend_t *b, void *out, dtype_t odt, float *mean, float *rstd,
                          const float *inp, const float *w, const float *bias, int N, int C, float eps);
    /* dinp[N,C] += ...  (ACCUMULATES into the residual-stream gradient); dw, db += .
     * The LayerNorm's input is inp, or with x non-NULL inp + gamma * x (x [N,C] in
     * xdt, gamma [C]) computed as layerscale_fwd does, to the bit: a residual sum
     * the forward made need not be kept, only its two terms. */
    void (*layernorm_bwd)(backend_t *b, float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const void *x, dtype_t xdt, const float *gamma,
                          const float *w, const float *mean, const float *rstd, int N, int C);

    /* Non-causal multi-head attention, scale 1/sqrt(HS).
     * qkv[Bn,T,3,NH,HS] (cdt) — the q, k, v projections side by side per token;
     * out[Bn,T,NH,HS] (cdt); lse[Bn,NH,T] f32 softmax log-sum-exp (may be NULL: inference). */
    void (*attention_fwd)(backend_t *b, void *out, float *lse, const void *qkv, dtype_t cdt,
                          int Bn, int T, int NH, int HS);
    /* dqkv[Bn,T,3,NH,HS] (=) from dout[Bn,T,NH,HS] f32: computed in f32 and stored
     * in ddt (f32, or bf16 as the operand of the qkv products); dbias[3*NH*HS] +=
     * its column sums over the Bn*T tokens (the q/k/v bias gradients; may be NULL). */
    void (*attention_bwd)(backend_t *b, void *dqkv, dtype_t ddt, float *dbias, const float *dout,
                          const void *qkv, const void *out, const float *lse, dtype_t cdt,
                          int Bn, int T, int NH, int HS);

    /* Exact (erf) GELU. out[n] (odt) = gelu(inp[n] (idt)).
     * Backward over [M,N]: g = dout * gelu'(inp) in f32, stored in ddt (f32, or bf16
     * as the operand of the next products); dbias[N] += sum_m g (the f32 values;
     * may be NULL) — the gradient of the bias added before the GELU, in the same pass. */
    void (*gelu_fwd)(backend_t *b, void *out, dtype_t odt, const void *inp, dtype_t idt, size_t n);
    void (*gelu_bwd)(backend_t *b, void *dinp, dtype_t ddt, float *dbias, const float *dout,
                     const void *inp, dtype_t idt, int M, int N);

    /* Residual with LayerScale: out[N,C] = res[N,C] + gamma[C] * x[N,C] (x in xdt); out may alias res.
     * Backward: g = dout * gamma in f32, stored in dx (ddt: f32, or bf16 as the operand of
     * the next products); dgamma[C] += sum_n dout * x; dbias[C] += sum_n g (the gradient
     * of the bias of the product that made x, in the same pass). dx, dgamma, dbias may
     * each be NULL. The residual's own gradient is dout itself (the model reuses that buffer). */
    void (*layerscale_fwd)(backend_t *b, float *out, const float *res, const void *x, dtype_t xdt,
                           const float *gamma, int N, int C);
    void (*layerscale_bwd)(backend_t *b, void *dx, dtype_t ddt, float *dgamma, float *dbias, const float *dout,
                           const void *x, dtype_t xdt, const float *gamma, int N, int C);
    /* Fused residual + LayerScale + LayerNorm forward (one pass instead of two):
     * out[N,C] = res + gamma * x exactly as layerscale_fwd (out may alias res), then
     * ln[N,C] (odt) = LN(out) * w + bias with mean, rstd [N] (may be NULL) exactly as
     * layernorm_fwd. */
    void (*layerscale_layernorm_fwd)(backend_t *b, float *out, const float *res, const void *x, dtype_t xdt,
                                     const float *gamma, void *ln, dtype_t odt, float *mean, float *rstd,
                                     const float *w, const float *bias, int N, int C, float eps);

    /* Token assembly: x[Bn,T,D] with T = 1+R+P:
     *   x[b,0]     = cls[D] + pos[0]
     *   x[b,1+r]   = reg[r]               (r < R; registers get no position embedding)
     *   x[b,1+R+i] = patches[b,i] + pos[1+i]
     * Backward: dpatches (=); dcls, dreg, dpos (+=; any may be NULL). */
    void (*embed_fwd)(backend_t *b, float *x, const float *patches, const float *cls,
                      const float *reg, const float *pos, int Bn, int P, int R, int D);
    void (*embed_bwd)(backend_t *b, float *dpatches, float *dcls, float *dreg, float *dpos,
                      const float *dx, int Bn, int P, int R, int D);

    /* Row slice: out[Bn,D] (dt) = x[Bn,T,D] (dt) at token t; and its adjoint,
     * dx[Bn,T,D] f32 += scatter of dout[Bn,D] f32 at token t. */
    void (*token_slice)(backend_t *b, void *out, const void *x, dtype_t dt, int Bn, int T, int D, int t);
    void (*token_scatter_add)(backend_t *b, float *dx, const float *dout, int Bn, int T, int D, int t);

    /* ---- loss and optimizer ----------------------------------------------------- */
    /* Hand loss for a batch. pred[Bn,63] f32 joints (m), conf_logit[Bn,21] f32;
     * targets gathered from the resident labels by idx[Bn]: joints[N,21,3] f32,
     * valid[N,21] u8 (NULL: all valid), has_hand[N] u8 (NULL: all). Writes
     * dpred[Bn,63] and dconf[Bn,21] (=, gradients of loss->total; may be NULL)
     * and returns the terms on the host (synchronizes).
     * norm (host, may be NULL): the normalizers to divide by instead of this
     * batch's own — a data-parallel rank passes the whole global batch's, so
     * that the ranks' terms and gradients SUM to the global batch's. */
    void (*hand_loss)(backend_t *b, hand_loss_t *host_out, float *dpred, float *dconf,
                      const float *pred, const float *conf_logit, const float *joints,
                      const uint8_t *valid, const uint8_t *has_hand, const int32_t *idx, int Bn,
                      const hand_norm_t *norm);

    /* Sum of squares of x[n] f32, deterministic for a given n (fixed reduction order); host result. */
    double (*sumsq)(backend_t *b, const float *x, size_t n);
    void (*scale)(backend_t *b, float *x, float s, size_t n);

    /* AdamW over runs of the flat buffers (one launch on cuda), step t >= 1, bias-corrected:
     *   g = grads*gscale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     *   p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p)
     * and, when pc != NULL, pc[i] (cdt) = p[i] (the working copy, same offsets). */
    void (*adamw)(backend_t *b, float *params, void *pc, dtype_t cdt, const float *grads,
                  float *m, float *v, const adamw_seg_t *segs, int nsegs,
                  float beta1, float beta2, float eps, int t, float gscale);

    /* Statistics of x[n] (dt) for the debug report, host result:
     * out = {sum, sum of squares, min, max, nan count, inf count, zero count} over finite values. */
    void (*stats)(backend_t *b, double out[7], const void *x, dtype_t dt, size_t n);
};

/* Backends. NULL on failure with the reason in err. */
backend_t *backend_cpu_create(char *err, size_t errlen);
/* A cpu rank of a job of `ranks` processes on this host: its BLAS threads
 * become cores / ranks (at least 1), so that the ranks do not oversubscribe
 * the cores (unless OPENBLAS_NUM_THREADS says otherwise). */
void backend_cpu_share_cores(int ranks);
/* The memory cgroup limit over this process and the room left under it (page
 * cache other than shmem counted as room), the tightest over the cgroup and its
 * ancestors. cg_root: the cgroup mount ("/sys/fs/cgroup"); proc_cgroup: the
 * path of /proc/self/cgroup. 1 when a limit was found, else 0. */
int backend_cpu_cgroup_room(const char *cg_root, const char *proc_cgroup,
                            unsigned long long *limit, unsigned long long *room);
/* Host memory: MemAvailable / MemTotal of /proc/meminfo narrowed to the memory
 * cgroup's limit (the CPU backend's mem_info). 0, or -1 with err. */
int backend_host_mem_info(size_t *free_bytes, size_t *total_bytes, char *err, size_t errlen);
#ifdef TRAIND_CUDA
backend_t *backend_cuda_create(int device, char *err, size_t errlen);
#endif
/* By name: "cpu", "cuda" (device index), or "auto" (cuda when a device is usable, else cpu). */
backend_t *backend_open(const char *name, int device, char *err, size_t errlen);

#endif
