/* gpu/cuda/sdpa_cudnn.cu — attention forward through cuDNN's fused
 * scaled-dot-product attention (flash attention on Hopper), bf16.
 *
 * Owns: a small cache of execution plans keyed on the attention's shape (cuDNN
 * itself, loaded at run time, is cudnn.cu's). One graph of
 * one node, CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR (run with cuDNN 9.14), with
 * the tensors described in place — no copies, no permutes:
 *   Q        [Bn,NH,Tq,HS] view of qkv[Bn,T,3,NH,HS]: strides (T*3*NH*HS, HS, 3*NH*HS, 1);
 *   K, V     [Bn,NH,T,HS], the same strides, at element offsets NH*HS and 2*NH*HS;
 *   O        [Bn,NH,Tq,HS] view of out[Bn,T,NH,HS]:     strides (T*NH*HS, HS, NH*HS, 1);
 *   Stats    [Bn,NH,Tq,1] f32 view of lse[Bn,NH,T] (natural-log log-sum-exp of
 *            the scaled scores, what the backward kernels read), only when lse != NULL;
 *   scale    1/sqrt(HS), a host scalar passed by value.
 * Tq = T, or T - r when the last r (<= 8) query rows are split off to
 * cu_sdpa_tail_kernel (see there: a T one token past a tile boundary costs
 * cuDNN a whole tile). Only the forward: the backward stays with the own
 * kernels (attention.cu), which read the same lse.
 *
 * Failure is never fatal here: cu_sdpa_fwd returns -1 when cuDNN is missing,
 * refuses the shape, or fails, and the caller runs its own kernel; a load or
 * build failure is reported once on stderr, and each plan built in one line.
 * Environment: TRAIND_CUDNN_AUTOTUNE=1 times
 * the heuristics' first few engine configurations per shape and keeps the
 * fastest (default: the first); TRAIND_CUDNN_SPLIT=1|0 forces the tail split
 * on or off (default: by batch x heads, CU_SDPA_SPLIT_MIN_BH). */
#include <cstring>
#include <cmath>
#include "gpu/cuda/dnn.h"

#define CU_SDPA_PLANS 8
#define CU_SDPA_UID_Q 1
#define CU_SDPA_UID_K 2
#define CU_SDPA_UID_V 3
#define CU_SDPA_UID_O 4
#define CU_SDPA_UID_STATS 5
#define CU_SDPA_UID_SCALE 6

typedef struct {
    int valid, Bn, Tq, T, NH, HS, stats;   /* Tq query rows (<= T) through cuDNN */
    long last_use;
    cudnnBackendDescriptor_t plan;
    int64_t ws;                     /* workspace bytes */
} cu_sdpa_plan_t;

typedef struct {
    int failed;                     /* cuDNN failed to run once: not tried again */
    int no_split;                   /* cuDNN refused a query-row split once */
    cu_sdpa_plan_t plans[CU_SDPA_PLANS];
    long clock;
} cu_sdpa_t;

/* ---- graph and plan ------------------------------------------------------------ */

/* Builds up to `want` execution plans for one shape; how many (0 with why[]). */
static int cu_sdpa_build(cu_dnn_t *d, cu_dnn_bag_t *g, int Bn, int Tq, int T, int NH, int HS, int stats, int want,
                         cudnnBackendDescriptor_t plans[], int64_t ws[], int *ncfg, char *why, size_t whylen) {
    int64_t ld3 = (int64_t)3 * NH * HS, ldo = (int64_t)NH * HS;
    int64_t dq[4] = {Bn, NH, Tq, HS}, dk[4] = {Bn, NH, T, HS}, sq[4] = {(int64_t)T * ld3, HS, ld3, 1};
    int64_t so[4] = {(int64_t)T * ldo, HS, ldo, 1};
    int64_t dl[4] = {Bn, NH, Tq, 1}, sl[4] = {(int64_t)NH * T, T, 1, 1};
    int64_t d1[4] = {1, 1, 1, 1};
    cudnnBackendDescriptor_t tq = cu_dnn_tensor(d, g, CU_SDPA_UID_Q, CUDNN_DATA_BFLOAT16, 4, dq, sq, 0, why, whylen);
    cudnnBackendDescriptor_t tk = tq ? cu_dnn_tensor(d, g, CU_SDPA_UID_K, CUDNN_DATA_BFLOAT16, 4, dk, sq, 0, why, whylen) : NULL;
    cudnnBackendDescriptor_t tv = tk ? cu_dnn_tensor(d, g, CU_SDPA_UID_V, CUDNN_DATA_BFLOAT16, 4, dk, sq, 0, why, whylen) : NULL;
    cudnnBackendDescriptor_t to = tv ? cu_dnn_tensor(d, g, CU_SDPA_UID_O, CUDNN_DATA_BFLOAT16, 4, dq, so, 0, why, whylen) : NULL;
    cudnnBackendDescriptor_t tsc =
        to ? cu_dnn_tensor(d, g, CU_SDPA_UID_SCALE, CUDNN_DATA_FLOAT, 4, d1, d1, CU_DNN_BY_VALUE, why, whylen) : NULL;
    if (!tsc) return 0;
    cudnnBackendDescriptor_t tst = NULL;
    if (stats) {
        tst = cu_dnn_tensor(d, g, CU_SDPA_UID_STATS, CUDNN_DATA_FLOAT, 4, dl, sl, 0, why, whylen);
        if (!tst) return 0;
    }
    cudnnBackendDescriptor_t op = cu_dnn_new(d, g, CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, why, whylen);
    if (!op) return 0;
    const cu_dnn_api_t *a = &d->api;
#define CU_SDPA_SET(attr, t, what) do {                                                         \
        cudnnStatus_t st_ = a->SetAttr(op, attr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t);          \
        if (st_ != CUDNN_STATUS_SUCCESS) {                                                      \
            snprintf(why, whylen, "%s: %s", what, a->GetErrorString(st_));                      \
            return 0;                                                                           \
        }                                                                                       \
    } while (0)
    CU_SDPA_SET(CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, tq, "sdpa Q");
    CU_SDPA_SET(CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, tk, "sdpa K");
    CU_SDPA_SET(CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, tv, "sdpa V");
    CU_SDPA_SET(CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, to, "sdpa O");
    CU_SDPA_SET(CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, tsc, "sdpa scale");
    if (stats) CU_SDPA_SET(CUDNN_ATTR_OPERATION_SDPA_FWD_STATSDESC, tst, "sdpa stats");
#undef CU_SDPA_SET
    cudnnStatus_t st = a->Finalize(op);
    if (st != CUDNN_STATUS_SUCCESS) {
        snprintf(why, whylen, "sdpa operation finalize: %s", a->GetErrorString(st));
        return 0;
    }
    return cu_dnn_plans(d, g, &op, 1, want, plans, ws, ncfg, why, whylen);
}

/* The variant pack of one call: Q, K, V, O, scale (and Stats); how many tensors. */
static int cu_sdpa_pack(int64_t uids[6], void *ptrs[6], float *scale, void *out, float *lse, const void *qkv,
                        int NH, int HS) {
    const __nv_bfloat16 *q = (const __nv_bfloat16 *)qkv;
    *scale = 1.0f / sqrtf((float)HS);
    const int64_t u[6] = {CU_SDPA_UID_Q, CU_SDPA_UID_K, CU_SDPA_UID_V, CU_SDPA_UID_O, CU_SDPA_UID_SCALE,
                          CU_SDPA_UID_STATS};
    void *p[6] = {(void *)q, (void *)(q + (size_t)NH * HS), (void *)(q + (size_t)2 * NH * HS), out, scale, lse};
    memcpy(uids, u, sizeof u);
    memcpy(ptrs, p, sizeof p);
    return lse ? 6 : 5;
}

#define CU_SDPA_TUNE 4   /* candidates timed with TRAIND_CUDNN_AUTOTUNE=1 */

/* The plan for this shape: cached, else built (the heuristics' first engine
 * configuration; with TRAIND_CUDNN_AUTOTUNE=1, the fastest of the first
 * CU_SDPA_TUNE, each timed on this call's own tensors — the caller's run
 * overwrites whatever they wrote). One line on stderr per build. */
static cu_sdpa_plan_t *cu_sdpa_plan(backend_t *b, cu_dnn_t *d, cu_sdpa_t *s, int Bn, int Tq, int T, int NH, int HS,
                                    void *out, float *lse, const void *qkv) {
    int stats = lse != NULL;
    cu_sdpa_plan_t *victim = &s->plans[0];
    for (int i = 0; i < CU_SDPA_PLANS; i++) {
        cu_sdpa_plan_t *p = &s->plans[i];
        if (p->valid && p->Bn == Bn && p->Tq == Tq && p->T == T && p->NH == NH && p->HS == HS && p->stats == stats) {
            p->last_use = ++s->clock;
            return p->plan ? p : NULL;   /* a shape cuDNN refused before: no new attempt, no new message */
        }
        if (!p->valid) victim = p;
        else if (victim->valid && p->last_use < victim->last_use) victim = p;
    }
    const char *tune = getenv("TRAIND_CUDNN_AUTOTUNE");
    int want = (tune && strcmp(tune, "0") != 0) ? CU_SDPA_TUNE : 1;
    cu_dnn_bag_t bag;
    bag.n = 0;
    char why[256] = "";
    cudnnBackendDescriptor_t plans[CU_SDPA_TUNE];
    int64_t ws[CU_SDPA_TUNE];
    int ncfg = 0;
    double t0 = cu_dnn_now_ms();
    int nplans = cu_sdpa_build(d, &bag, Bn, Tq, T, NH, HS, stats, want, plans, ws, &ncfg, why, sizeof why);
    cu_dnn_bag_free(d, &bag);
    if (victim->valid && victim->plan) d->api.DestroyDesc(victim->plan);
    victim->valid = 1;
    victim->Bn = Bn; victim->Tq = Tq; victim->T = T; victim->NH = NH; victim->HS = HS; victim->stats = stats;
    victim->plan = NULL;
    victim->ws = 0;
    victim->last_use = ++s->clock;
    if (nplans == 0) {   /* remembered as refused */
        fprintf(stderr, "traind: cuDNN fused attention unavailable for Bn=%d T=%d (%d query rows) NH=%d HS=%d (%s); "
                "using traind's own kernel\n", Bn, T, Tq, NH, HS, why);
        return NULL;
    }
    int best = 0;
    char times[128] = "";
    if (nplans > 1) {
        int64_t uids[6];
        void *ptrs[6];
        float scale;
        int n = cu_sdpa_pack(uids, ptrs, &scale, out, lse, qkv, NH, HS);
        float best_ms = 1e30f;
        size_t tl = 0;
        for (int k = 0; k < nplans; k++) {
            float ms = cu_dnn_time(b, d, plans[k], ws[k], n, uids, ptrs);
            if (tl < sizeof times)
                tl += (size_t)snprintf(times + tl, sizeof times - tl, "%s%.3f", k ? "/" : " times ", ms);
            if (ms < best_ms) { best_ms = ms; best = k; }
        }
        for (int k = 0; k < nplans; k++) if (k != best) d->api.DestroyDesc(plans[k]);
    }
    fprintf(stderr, "traind: cuDNN fused attention Bn=%d T=%d (%d query rows) NH=%d HS=%d%s: engine config %d of %d, "
            "workspace %lld B, planned in %.0f ms%s%s\n", Bn, T, Tq, NH, HS, stats ? "" : " (no lse)", best + 1, ncfg,
            (long long)ws[best], cu_dnn_now_ms() - t0, nplans > 1 ? ";" : "", times);
    victim->plan = plans[best];
    victim->ws = ws[best];
    return victim;
}

/* ---- the tail rows ---------------------------------------------------------------
 * cuDNN's kernels work in query and key tiles, and a sequence one token past
 * a tile boundary costs a whole tile in each: measured on H100 at Bn=256,
 * NH=16, HS=64: T=256 0.202 ms, T=257 0.456 ms. So for T = 64k + r with
 * 1 <= r <= CU_SDPA_TAIL_MAX (ViTs: patches + CLS (+ registers)) and HS = 64,
 * cuDNN computes the first Tq = T - r query rows against all T keys, and this
 * kernel the last r rows (TRAIND_CUDNN_SPLIT, below): a warp per (batch, head, row), each lane an online
 * softmax over keys lane, lane+32, ... (fp32), merged across the warp.
 * out[Bn,T,NH,64] bf16 rows Tq..T-1; lse[Bn,NH,T] those rows (if not NULL). */
#define CU_SDPA_TAIL_MAX 8
/* The tail kernel re-reads K and V of each (batch, head): bandwidth-bound at
 * large batches, latency-bound at small ones. Measured on H100 (NH=16, T=257):
 * Bn=256 0.456 -> 0.436 ms (cuDNN part 0.304), Bn=32 0.066 -> 0.080 ms. So
 * split only from Bn*NH = 4096 (the measured win) up. */
#define CU_SDPA_SPLIT_MIN_BH 4096

__global__ void __launch_bounds__(128) cu_sdpa_tail_kernel(__nv_bfloat16 *out, float *lse, const __nv_bfloat16 *qkv,
                                                           int Bn, int T, int Tq, int NH, float scale) {
    constexpr int HS = 64;
    int r = T - Tq;
    int wid = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (wid >= Bn * NH * r) return;
    int i = Tq + wid % r, bh = wid / r, h = bh % NH, bi = bh / NH;
    size_t ld3 = (size_t)3 * NH * HS;
    const __nv_bfloat16 *base = qkv + (size_t)bi * T * ld3 + (size_t)h * HS;   /* q of token 0 */
    float q[HS], o[HS];
    const uint4 *qv = (const uint4 *)(base + (size_t)i * ld3);
#pragma unroll
    for (int c = 0; c < HS / 8; c++) {
        uint4 u = qv[c];
        const __nv_bfloat162 *hp = (const __nv_bfloat162 *)&u;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float2 f = __bfloat1622float2(hp[k]);
            q[8 * c + 2 * k] = f.x * scale;
            q[8 * c + 2 * k + 1] = f.y * scale;
        }
    }
#pragma unroll
    for (int d = 0; d < HS; d++) o[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j = lane; j < T; j += 32) {
        const uint4 *kv = (const uint4 *)(base + (size_t)j * ld3 + (size_t)NH * HS);
        const uint4 *vv = (const uint4 *)(base + (size_t)j * ld3 + (size_t)2 * NH * HS);
        float sc = 0.0f;
#pragma unroll
        for (int c = 0; c < HS / 8; c++) {
            uint4 u = kv[c];
            const __nv_bfloat162 *hp = (const __nv_bfloat162 *)&u;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float2 f = __bfloat1622float2(hp[k]);
                sc += q[8 * c + 2 * k] * f.x + q[8 * c + 2 * k + 1] * f.y;
            }
        }
        float mn = fmaxf(m, sc), corr = expf(m - mn), p = expf(sc - mn);   /* m = -inf first: corr = 0 */
        l = l * corr + p;
        m = mn;
#pragma unroll
        for (int c = 0; c < HS / 8; c++) {
            uint4 u = vv[c];
            const __nv_bfloat162 *hp = (const __nv_bfloat162 *)&u;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float2 f = __bfloat1622float2(hp[k]);
                o[8 * c + 2 * k] = o[8 * c + 2 * k] * corr + p * f.x;
                o[8 * c + 2 * k + 1] = o[8 * c + 2 * k + 1] * corr + p * f.y;
            }
        }
    }
    /* merge the lanes: rescale to the row maximum, then sum */
    float M = m;
    for (int k = 16; k > 0; k >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, k));
    float f = (l > 0.0f) ? expf(m - M) : 0.0f;   /* a lane with no keys (T < 32) has m = -inf, l = 0 */
    l *= f;
    for (int k = 16; k > 0; k >>= 1) l += __shfl_xor_sync(0xffffffffu, l, k);
    float inv = 1.0f / l, mine0 = 0.0f, mine1 = 0.0f;
#pragma unroll
    for (int d = 0; d < HS; d++) {
        float v = o[d] * f;
        for (int k = 16; k > 0; k >>= 1) v += __shfl_xor_sync(0xffffffffu, v, k);
        if (d == 2 * lane) mine0 = v;
        if (d == 2 * lane + 1) mine1 = v;
    }
    size_t ldo = (size_t)NH * HS;
    *(__nv_bfloat162 *)(out + ((size_t)bi * T + i) * ldo + (size_t)h * HS + 2 * lane) =
        __floats2bfloat162_rn(mine0 * inv, mine1 * inv);
    if (lse && lane == 0) lse[((size_t)bi * NH + h) * T + i] = M + logf(l);
}

/* ---- entry points ---------------------------------------------------------------- */

int cu_sdpa_fwd(backend_t *b, void *out, float *lse, const void *qkv, int Bn, int T, int NH, int HS) {
    cu_impl_t *c = cu_impl(b);
    if (!c->sdpa) {
        c->sdpa = calloc(1, sizeof(cu_sdpa_t));
        if (!c->sdpa) return -1;
    }
    cu_sdpa_t *s = (cu_sdpa_t *)c->sdpa;
    if (s->failed) return -1;
    cu_dnn_t *d = cu_dnn(b, "attention forward");
    if (!d) return -1;
    /* split off the tail rows (see cu_sdpa_tail_kernel) where that pays:
     * TRAIND_CUDNN_SPLIT=1 always (where eligible), =0 never, unset: from
     * CU_SDPA_SPLIT_MIN_BH (batch x heads) up */
    int r = T % 64;
    const char *sp = getenv("TRAIND_CUDNN_SPLIT");
    int mode = sp && sp[0] ? (strcmp(sp, "0") != 0) : -1;
    bool split = HS == 64 && T >= 128 && r >= 1 && r <= CU_SDPA_TAIL_MAX &&
                 (mode == 1 || (mode == -1 && (long)Bn * NH >= CU_SDPA_SPLIT_MIN_BH));
    split = split && !s->no_split;
    int Tq = split ? T - r : T;
    cu_sdpa_plan_t *p = cu_sdpa_plan(b, d, s, Bn, Tq, T, NH, HS, out, lse, qkv);
    if (!p && split) {   /* cuDNN refused fewer query rows than keys: all rows through cuDNN from now on */
        s->no_split = 1;
        split = false;
        Tq = T;
        p = cu_sdpa_plan(b, d, s, Bn, Tq, T, NH, HS, out, lse, qkv);
    }
    if (!p) return -1;
    int64_t uids[6];
    void *ptrs[6];
    float scale;
    int n = cu_sdpa_pack(uids, ptrs, &scale, out, lse, qkv, NH, HS);
    cudnnStatus_t st = cu_dnn_exec(b, d, p->plan, p->ws, n, uids, ptrs);
    if (st != CUDNN_STATUS_SUCCESS) {
        /* nothing ran: the caller's own kernel writes out and lse; cuDNN is not tried again */
        fprintf(stderr, "traind: cuDNN fused attention failed (%s); using traind's own kernel from now on\n",
                d->api.GetErrorString(st));
        s->failed = 1;
        return -1;
    }
    CU_LAUNCH_CHECK();
    if (split) {
        unsigned warps = (unsigned)(Bn * NH * r);
        cu_sdpa_tail_kernel<<<(warps + 3) / 4, 128, 0, c->stream>>>((__nv_bfloat16 *)out, lse,
                                                                    (const __nv_bfloat16 *)qkv, Bn, T, Tq, NH,
                                                                    1.0f / sqrtf((float)HS));
        CU_LAUNCH_CHECK();
    }
    return 0;
}

/* Before cu_dnn_destroy: the plans belong to the backend's cuDNN. */
void cu_sdpa_destroy(backend_t *b) {
    cu_impl_t *c = cu_impl(b);
    cu_sdpa_t *s = (cu_sdpa_t *)c->sdpa;
    if (!s) return;
    cu_dnn_t *d = (cu_dnn_t *)c->dnn;
    if (d && d->api.DestroyDesc)
        for (int i = 0; i < CU_SDPA_PLANS; i++)
            if (s->plans[i].valid && s->plans[i].plan) d->api.DestroyDesc(s->plans[i].plan);
    free(s);
    c->sdpa = NULL;
}
