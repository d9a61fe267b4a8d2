/* gpu/cuda/kernels_optim.cu — loss, reductions and the optimizer on the GPU:
 * the hand loss (one small kernel, in double like the CPU reference, terms
 * returned to the host), deterministic sum of squares and debug statistics
 * (fixed grid for a given n, fixed-order two-pass reductions in double, no
 * atomics), scale, and AdamW over every parameter run in one launch (the run
 * table lives in device memory). Semantics: gpu/backend.h and the reference
 * gpu/backend_cpu.c. */
#include <cmath>
#include <cstring>
#include "gpu/cuda/cuda_common.h"
#include "gpu/hand_loss.h"

#define CU_RT 256   /* threads of the reduction kernels */

static inline cudaStream_t cu_st(backend_t *b) { return cu_impl(b)->stream; }

/* ---- block reductions (fixed order) --------------------------------------------------- */

template <typename Op>
__device__ double cu_block_reduce(double v, double *sh, Op op) {
    __syncthreads();
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = CU_RT / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] = op(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    return sh[0];
}

struct cu_add { __device__ double operator()(double a, double b) const { return a + b; } };
struct cu_min { __device__ double operator()(double a, double b) const { return a < b ? a : b; } };
struct cu_max { __device__ double operator()(double a, double b) const { return a > b ? a : b; } };

/* The n doubles a reduction left at dev, on the host (the pinned red_host): the
 * stream is synchronized, so the result is final. */
static const double *cu_red_fetch(cu_impl_t *c, const double *dev, int n) {
    CU_ASSERT(n <= 16, "n=%d", n);
    CU_CHECK(cudaMemcpyAsync(c->red_host, dev, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost, c->stream));
    CU_CHECK(cudaStreamSynchronize(c->stream));
    return c->red_host;
}

/* ---- hand loss ------------------------------------------------------------------------- */

/* One block. Pass 1: global normalizers (weight sum, valid joints, pairs).
 * Pass 2: a thread per sample runs gpu/hand_loss.h's hand_loss_sample, the CPU
 * reference's own code (in double).
 * res = {joint, pair, conf, valid} after the normalizations. */
__global__ void __launch_bounds__(CU_RT) cu_hand_loss_kernel(
        double *res, float *dpred, float *dconf, const float *pred, const float *conf_logit,
        const float *joints, const uint8_t *valid, const uint8_t *has_hand, const int32_t *idx, int Bn,
        int have_norm, double nsw, double nnj, double nnp) {
    __shared__ double sh[CU_RT];
    double sw = 0, nj = 0, np = 0;
    for (int bi = threadIdx.x; bi < Bn; bi += CU_RT) {
        int s = idx ? idx[bi] : bi;
        if (has_hand && !has_hand[s]) continue;
        int nv = hand_sample_count(valid ? valid + (size_t)s * HAND_JOINTS : NULL, &sw);
        nj += nv;
        np += (double)nv * (nv - 1) / 2;
    }
    sw = cu_block_reduce(sw, sh, cu_add());
    nj = cu_block_reduce(nj, sh, cu_add());
    np = cu_block_reduce(np, sh, cu_add());
    const double nj_here = nj;
    if (have_norm && nj_here > 0) {   /* a data-parallel rank: the global batch's normalizers */
        sw = nsw;
        nj = nnj;
        np = nnp;
    }

    hand_terms_t t = {0, 0, 0};
    for (int bi = threadIdx.x; bi < Bn; bi += CU_RT) {
        int s = idx ? idx[bi] : bi;
        double g[HAND_COORDS];
        for (int i = 0; i < HAND_COORDS; i++) g[i] = 0;
        float *dc = dconf ? dconf + (size_t)bi * HAND_JOINTS : NULL;
        if (dc) for (int j = 0; j < HAND_JOINTS; j++) dc[j] = 0.0f;
        if (nj > 0 && !(has_hand && !has_hand[s]))
            hand_loss_sample(&t, g, dc, pred + (size_t)bi * HAND_COORDS, joints + (size_t)s * HAND_COORDS,
                             valid ? valid + (size_t)s * HAND_JOINTS : NULL,
                             conf_logit + (size_t)bi * HAND_JOINTS, sw, nj, np);
        if (dpred) for (int i = 0; i < HAND_COORDS; i++) dpred[(size_t)bi * HAND_COORDS + i] = (float)g[i];
    }
    double joint = cu_block_reduce(t.joint, sh, cu_add());
    double pair = cu_block_reduce(t.pair, sh, cu_add());
    double conf = cu_block_reduce(t.conf, sh, cu_add());
    if (threadIdx.x == 0) {
        if (nj > 0) {
            res[0] = joint / sw;
            res[1] = np > 0 ? pair / np : 0;
            res[2] = conf / nj;
        } else {
            res[0] = res[1] = res[2] = 0;
        }
        res[3] = nj_here;
    }
}

void cu_hand_loss(backend_t *b, hand_loss_t *o, float *dpred, float *dconf,
                  const float *pred, const float *conf_logit, const float *joints,
                  const uint8_t *valid, const uint8_t *has_hand, const int32_t *idx, int Bn,
                  const hand_norm_t *norm) {
    cu_impl_t *c = cu_impl(b);
    memset(o, 0, sizeof *o);
    if (Bn <= 0) return;
    cu_hand_loss_kernel<<<1, CU_RT, 0, c->stream>>>(c->red_dev, dpred, dconf, pred, conf_logit, joints,
                                                    valid, has_hand, idx, Bn, norm != NULL,
                                                    norm ? norm->sw : 0.0, norm ? norm->nj : 0.0,
                                                    norm ? norm->npair : 0.0);
    CU_LAUNCH_CHECK();
    const double *r = cu_red_fetch(c, c->red_dev, 4);
    o->joint = (float)r[0];
    o->pair = (float)r[1];
    o->conf = (float)r[2];
    o->total = (float)(r[0] + HAND_W_PAIR * r[1] + HAND_W_CONF * r[2]);
    o->valid = (float)r[3];
}

/* ---- sum of squares and statistics --------------------------------------------------------- */

static unsigned cu_red_grid(size_t n) {
    size_t g = (n + CU_RT * 4 - 1) / (CU_RT * 4);
    if (g > CU_RED_BLOCKS) g = CU_RED_BLOCKS;
    return (unsigned)(g ? g : 1);
}

__global__ void __launch_bounds__(CU_RT) cu_sumsq_part_kernel(double *part, const float *x, size_t n) {
    __shared__ double sh[CU_RT];
    double s = 0;
    for (size_t i = blockIdx.x * (size_t)CU_RT + threadIdx.x; i < n; i += (size_t)gridDim.x * CU_RT)
        s += (double)x[i] * x[i];
    s = cu_block_reduce(s, sh, cu_add());
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void __launch_bounds__(CU_RT) cu_sum_final_kernel(double *part, int nparts) {
    __shared__ double sh[CU_RT];
    double s = 0;
    for (int i = threadIdx.x; i < nparts; i += CU_RT) s += part[i];
    s = cu_block_reduce(s, sh, cu_add());
    if (threadIdx.x == 0) part[0] = s;
}

double cu_sumsq(backend_t *b, const float *x, size_t n) {
    cu_impl_t *c = cu_impl(b);
    if (!n) return 0.0;
    unsigned g = cu_red_grid(n);
    cu_sumsq_part_kernel<<<g, CU_RT, 0, c->stream>>>(c->red_dev, x, n);
    CU_LAUNCH_CHECK();
    cu_sum_final_kernel<<<1, CU_RT, 0, c->stream>>>(c->red_dev, (int)g);
    CU_LAUNCH_CHECK();
    return cu_red_fetch(c, c->red_dev, 1)[0];
}

__device__ __forceinline__ double cu_ld_any(const void *x, dtype_t dt, size_t i) {
    switch (dt) {
    case DT_F32: return ((const float *)x)[i];
    case DT_BF16: return __bfloat162float(((const __nv_bfloat16 *)x)[i]);
    case DT_U8: return ((const uint8_t *)x)[i];
    default: return ((const int32_t *)x)[i];
    }
}

/* ||x - ref|| / ||ref|| over n elements of dt (sums in double): parts of the
 * two sums in red_dev[0, g) and red_dev[CU_RED_BLOCKS, +g). */
__global__ void __launch_bounds__(CU_RT) cu_rel_diff_part_kernel(double *part, const void *x, const void *ref,
                                                                  dtype_t dt, size_t n) {
    __shared__ double sh[CU_RT];
    double d = 0, r = 0;
    for (size_t i = blockIdx.x * (size_t)CU_RT + threadIdx.x; i < n; i += (size_t)gridDim.x * CU_RT) {
        double a = cu_ld_any(x, dt, i), b = cu_ld_any(ref, dt, i);
        d += (a - b) * (a - b);
        r += b * b;
    }
    d = cu_block_reduce(d, sh, cu_add());
    r = cu_block_reduce(r, sh, cu_add());
    if (threadIdx.x == 0) {
        part[blockIdx.x] = d;
        part[CU_RED_BLOCKS + blockIdx.x] = r;
    }
}

double cu_rel_diff(backend_t *b, const void *x, const void *ref, dtype_t dt, size_t n) {
    cu_impl_t *c = cu_impl(b);
    if (!n) return 0.0;
    unsigned g = cu_red_grid(n);
    cu_rel_diff_part_kernel<<<g, CU_RT, 0, c->stream>>>(c->red_dev, x, ref, dt, n);
    CU_LAUNCH_CHECK();
    cu_sum_final_kernel<<<1, CU_RT, 0, c->stream>>>(c->red_dev, (int)g);
    CU_LAUNCH_CHECK();
    cu_sum_final_kernel<<<1, CU_RT, 0, c->stream>>>(c->red_dev + CU_RED_BLOCKS, (int)g);
    CU_LAUNCH_CHECK();
    double d = cu_red_fetch(c, c->red_dev, 1)[0];
    double r = cu_red_fetch(c, c->red_dev + CU_RED_BLOCKS, 1)[0];
    return r > 0 ? sqrt(d / r) : sqrt(d);   /* NaN when x holds one */
}

/* The block's {sum, sumsq, min, max, nan, inf, zero} from each thread's, into r (all threads). */
__device__ void cu_stats_block(double r[7], double s, double q, double mn, double mx, double nn, double ni,
                               double nz, double *sh) {
    r[0] = cu_block_reduce(s, sh, cu_add());
    r[1] = cu_block_reduce(q, sh, cu_add());
    r[2] = cu_block_reduce(mn, sh, cu_min());
    r[3] = cu_block_reduce(mx, sh, cu_max());
    r[4] = cu_block_reduce(nn, sh, cu_add());
    r[5] = cu_block_reduce(ni, sh, cu_add());
    r[6] = cu_block_reduce(nz, sh, cu_add());
}

/* part[blk*7 + k]: {sum, sumsq, min, max, nan, inf, zero} of the block's share. */
__global__ void __launch_bounds__(CU_RT) cu_stats_part_kernel(double *part, const void *x, dtype_t dt, size_t n) {
    __shared__ double sh[CU_RT];
    double s = 0, q = 0, mn = INFINITY, mx = -INFINITY, nn = 0, ni = 0, nz = 0;
    for (size_t i = blockIdx.x * (size_t)CU_RT + threadIdx.x; i < n; i += (size_t)gridDim.x * CU_RT) {
        double v = cu_ld_any(x, dt, i);
        if (isnan(v)) { nn++; continue; }
        if (isinf(v)) { ni++; continue; }
        if (v == 0) nz++;
        s += v;
        q += v * v;
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    double r[7];
    cu_stats_block(r, s, q, mn, mx, nn, ni, nz, sh);
    if (threadIdx.x == 0)
        for (int k = 0; k < 7; k++) part[(size_t)blockIdx.x * 7 + k] = r[k];
}

__global__ void __launch_bounds__(CU_RT) cu_stats_final_kernel(double *part, int nparts) {
    __shared__ double sh[CU_RT];
    double s = 0, q = 0, mn = INFINITY, mx = -INFINITY, nn = 0, ni = 0, nz = 0;
    for (int i = threadIdx.x; i < nparts; i += CU_RT) {
        const double *p = part + (size_t)i * 7;
        s += p[0]; q += p[1];
        mn = p[2] < mn ? p[2] : mn;
        mx = p[3] > mx ? p[3] : mx;
        nn += p[4]; ni += p[5]; nz += p[6];
    }
    double r[7];
    cu_stats_block(r, s, q, mn, mx, nn, ni, nz, sh);
    if (threadIdx.x == 0) {
        if (r[2] > r[3]) r[2] = r[3] = 0;   /* no finite value */
        for (int k = 0; k < 7; k++) part[CU_RED_BLOCKS * 7 + k] = r[k];
    }
}

void cu_stats(backend_t *b, double out[7], const void *x, dtype_t dt, size_t n) {
    cu_impl_t *c = cu_impl(b);
    if (!n) {
        for (int k = 0; k < 7; k++) out[k] = 0;
        return;
    }
    CU_ASSERT(dt == DT_F32 || dt == DT_BF16 || dt == DT_U8 || dt == DT_I32, "dtype %d", (int)dt);
    unsigned g = cu_red_grid(n);
    cu_stats_part_kernel<<<g, CU_RT, 0, c->stream>>>(c->red_dev, x, dt, n);
    CU_LAUNCH_CHECK();
    cu_stats_final_kernel<<<1, CU_RT, 0, c->stream>>>(c->red_dev, (int)g);
    CU_LAUNCH_CHECK();
    const double *r = cu_red_fetch(c, c->red_dev + CU_RED_BLOCKS * 7, 7);
    for (int k = 0; k < 7; k++) out[k] = r[k];
}

/* ---- scale ------------------------------------------------------------------------------------ */

__global__ void cu_scale_kernel(float *x, float s, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

void cu_scale(backend_t *b, float *x, float s, size_t n) {
    if (!n) return;
    cu_scale_kernel<<<cu_blocks(n, 256), 256, 0, cu_st(b)>>>(x, s, n);
    CU_LAUNCH_CHECK();
}

/* ---- AdamW ------------------------------------------------------------------------------------ */

/* Work is cut into tiles of CU_ADAM_TILE elements inside one run; tile[i] =
 * {run, start}. One launch covers every run: block k takes tiles k, k+grid, ... */
#define CU_ADAM_TILE 4096

struct cu_adam_tile { int seg; size_t start; };

__global__ void cu_adamw_kernel(float *params, void *pc, dtype_t cdt, const float *grads, float *m, float *v,
                                const adamw_seg_t *segs, const cu_adam_tile *tiles, int ntiles,
                                float beta1, float beta2, float eps, float bc1, float bc2, float gscale) {
    for (int t = blockIdx.x; t < ntiles; t += gridDim.x) {
        cu_adam_tile tl = tiles[t];
        adamw_seg_t sg = segs[tl.seg];
        size_t end = sg.off + sg.n, e2 = tl.start + CU_ADAM_TILE;
        if (e2 < end) end = e2;
        for (size_t i = tl.start + threadIdx.x; i < end; i += blockDim.x) {
            float g = grads[i] * gscale;
            float mi = beta1 * m[i] + (1.0f - beta1) * g;
            float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
            m[i] = mi;
            v[i] = vi;
            float mhat = mi / bc1, vhat = vi / bc2;
            float p = params[i];
            p -= sg.lr * (mhat / (sqrtf(vhat) + eps) + sg.wd * p);
            params[i] = p;
            if (pc) cu_st(pc, cdt, i, p);
        }
    }
}

void cu_adamw(backend_t *b, float *params, void *pc, dtype_t cdt, const float *grads,
              float *m, float *v, const adamw_seg_t *segs, int nsegs,
              float beta1, float beta2, float eps, int t, float gscale) {
    CU_ASSERT(t >= 1, "adamw step %d", t);
    CU_ASSERT(!pc || cdt == DT_F32 || cdt == DT_BF16, "working copy dtype %d", (int)cdt);
    if (nsegs <= 0) return;
    size_t ntiles = 0;
    for (int s = 0; s < nsegs; s++) ntiles += (segs[s].n + CU_ADAM_TILE - 1) / CU_ADAM_TILE;
    if (!ntiles) return;
    CU_ASSERT(ntiles < (1u << 30), "%zu tiles", ntiles);
    /* one host buffer: the run table, then the tile table */
    size_t seg_bytes = ((size_t)nsegs * sizeof(adamw_seg_t) + 15) & ~(size_t)15;
    size_t bytes = seg_bytes + ntiles * sizeof(cu_adam_tile);
    char *host = (char *)malloc(bytes);
    if (!host) {
        fprintf(stderr, "traind: cuda adamw: out of host memory (%zu bytes)\n", bytes);
        exit(EXIT_FAILURE);
    }
    memcpy(host, segs, (size_t)nsegs * sizeof(adamw_seg_t));
    cu_adam_tile *tl = (cu_adam_tile *)(host + seg_bytes);
    size_t k = 0;
    for (int s = 0; s < nsegs; s++)
        for (size_t st = segs[s].off; st < segs[s].off + segs[s].n; st += CU_ADAM_TILE) tl[k++] = {s, st};
    char *dev = (char *)cu_scratch(b, 1, bytes);
    cudaStream_t st = cu_st(b);
    /* from pageable memory: returns once the driver has staged the bytes */
    CU_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, st));
    free(host);
    float bc1 = (float)(1.0 - pow((double)beta1, t));
    float bc2 = (float)(1.0 - pow((double)beta2, t));
    unsigned grid = ntiles < 132u * 8 ? (unsigned)ntiles : 132u * 8;
    cu_adamw_kernel<<<grid, 256, 0, st>>>(params, pc, cdt, grads, m, v, (const adamw_seg_t *)dev,
                                          (const cu_adam_tile *)(dev + seg_bytes), (int)ntiles,
                                          beta1, beta2, eps, bc1, bc2, gscale);
    CU_LAUNCH_CHECK();
}
