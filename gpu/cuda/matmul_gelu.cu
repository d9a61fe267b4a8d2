/* gpu/cuda/matmul_gelu.cu — the MLP's GELU fused into the product beside it,
 * bf16, through cuDNN graphs, where that is faster than two passes:
 *   forward  (fc1)   out[M,N] = gelu(inp[M,K] @ w[N,K]^T + bias[N])  (exact, erf)
 *   backward (fc2's input gradient, then GELU')
 *                    g[M,K] = (dout[M,N] @ w[N,K]) * gelu'(x[M,K]);  dbias[K] += sum_m g
 * so the [M, 4D] product never reaches memory (forward: 2 x M x N x 2 bytes
 * less traffic, 0.54 GB per block at dinov2-large b128; backward: the f32
 * product written and read, 1.07 GB per block, for a read of the bf16 g for
 * the bias gradient).
 *
 * Owns: the two graphs, a cache of plans keyed on (kind, shape), and the
 * choice per shape between a plan and the two-pass way (forward: cuBLASLt's
 * product into tmp, then cu_gelu_fwd; backward: the product into tmp f32, then
 * cu_gelu_bwd). The graphs, all tensors [1, rows, cols] (cuDNN's batched matmul
 * with a batch of 1), f32 compute:
 *   forward   A inp [1,M,K] (M*K, K, 1); B = w^T [1,K,N] (N*K, 1, K), w as stored;
 *             P = A @ B virtual f32; S = P + bias[1,1,N] f32 (ADD, broadcast over
 *             rows) virtual; out = GELU_FWD(S) [1,M,N] bf16
 *   backward  A dout [1,M,N] (M*N, N, 1); B = w [1,N,K] (N*K, K, 1); P = A @ B
 *             virtual f32; g = GELU_BWD(dy = P, x [1,M,K] bf16) [1,M,K] bf16; then the
 *             bias gradient as column sums of g (cu_colsum_dt, deterministic)
 * Rounding: the fused forward rounds once (the GELU of the f32 sum), the
 * two-pass one rounds the sum to bf16 (its bias rounded to bf16 first,
 * cu_matmul_fwd) and then the GELU; the fused backward sums the bias gradient
 * from the bf16 g, the two-pass one from the f32 values. Either differs from
 * the other by about one bf16 step where it differs.
 *
 * Which way: products under CU_MG_MIN_WORK take two passes; for the others,
 * at a shape's first call both ways are timed on the call's own tensors
 * (a warm-up and 3 runs each; the bias gradient into a scratch vector), each
 * plan's output is checked against the two passes' (CU_MG_AGREE: a plan that
 * disagrees is never used), and the faster is kept; one line on stderr gives
 * the times and the choice.
 * Environment (cu_mg_mode): TRAIND_CUDNN_GELU=auto decides per shape as above,
 * =1 fuses wherever cuDNN builds an agreeing plan, without timing or the size
 * limit (tests); unset or anything else: two passes. Off by default while the
 * fused way has not been run on a card (built and tested on the CPU only). A cuDNN failure at run time is
 * reported once and the two-pass way used from then on; nothing here is fatal. */
#include <cmath>
#include <cstring>
#include "gpu/cuda/dnn.h"

#define CU_MG_PLANS 8
#define CU_MG_TUNE 3       /* cuDNN engine configurations timed per shape */
/* Smaller products (M x N x K) always take two passes: the gain is in proportion
 * to the product, a plan's build (cuDNN may compile its kernels) and timing is
 * not, and inference's many batch sizes would each build one. 2^32: from about
 * 4 images of dinov2-large up. TRAIND_CUDNN_GELU=1 lifts it (tests). */
#define CU_MG_MIN_WORK 4294967296.0
/* A plan is used only if its output on the deciding call's own tensors is within
 * this relative (L2) difference of the two passes' (they differ by rounding:
 * ~1e-3); a wrong graph (a stride, a mode) is off by order 1. */
#define CU_MG_AGREE 1e-2
#define CU_MG_MAX_WS (64 << 20)   /* bytes of cuDNN workspace a plan may want */
enum { CU_MG_FWD = 0, CU_MG_BWD = 1 };
/* tensor uids: forward A, B, bias, out; backward A (dout), B (w), x, g */
enum { CU_MG_UID_A = 1, CU_MG_UID_B = 2, CU_MG_UID_BIAS = 3, CU_MG_UID_OUT = 4, CU_MG_UID_X = 5,
       CU_MG_UID_P = 10, CU_MG_UID_S = 11 };

typedef struct {
    int valid, kind, M, N, K;
    int fused;                      /* 1: plan below; 0: the two-pass way */
    long last_use;
    cudnnBackendDescriptor_t plan;
    int64_t ws;
} cu_mg_plan_t;

typedef struct {
    int mode;                       /* cu_mg_mode(), read when the backend first multiplies this way */
    int failed;                     /* cuDNN failed to run once: two-pass from then on */
    cu_mg_plan_t plans[CU_MG_PLANS];
    long clock;
} cu_mg_t;

/* One attribute to set on a descriptor, or (v NULL) the descriptor to finalize. */
typedef struct {
    cudnnBackendDescriptor_t d;
    cudnnBackendAttributeName_t at;
    cudnnBackendAttributeType_t ty;
    const void *v;
    const char *what;
} cu_mg_step_t;

static int cu_mg_apply(cu_dnn_t *d, const cu_mg_step_t *steps, size_t n, char *why, size_t whylen) {
    for (size_t i = 0; i < n; i++) {
        cudnnStatus_t st = steps[i].v ? d->api.SetAttr(steps[i].d, steps[i].at, steps[i].ty, 1, steps[i].v)
                                      : d->api.Finalize(steps[i].d);
        if (st != CUDNN_STATUS_SUCCESS) {
            snprintf(why, whylen, "%s: %s", steps[i].what, d->api.GetErrorString(st));
            return -1;
        }
    }
    return 0;
}
#define CU_MG_FIN(desc, what) {desc, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_HANDLE, NULL, what}
#define CU_MG_SET(desc, attr, type, ptr, what) {desc, attr, type, ptr, what}
#define CU_MG_DESC(desc, attr, ptr, what) {desc, attr, CUDNN_TYPE_BACKEND_DESCRIPTOR, ptr, what}

/* A finalized pointwise descriptor of mode, computing in f32; NULL with why[]. */
static cudnnBackendDescriptor_t cu_mg_pointwise(cu_dnn_t *d, cu_dnn_bag_t *g, cudnnPointwiseMode_t mode,
                                                const char *what, char *why, size_t whylen) {
    cudnnBackendDescriptor_t pw = cu_dnn_new(d, g, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, why, whylen);
    if (!pw) return NULL;
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    const cu_mg_step_t st[] = {
        CU_MG_SET(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, &mode, what),
        CU_MG_SET(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, &f32, what),
        CU_MG_FIN(pw, what),
    };
    return cu_mg_apply(d, st, sizeof st / sizeof st[0], why, whylen) ? NULL : pw;
}

/* The graph of one kind, its operations finalized into ops[]; how many (0 with why[]). */
static int cu_mg_graph(cu_dnn_t *d, cu_dnn_bag_t *g, int kind, int M, int N, int K, cudnnBackendDescriptor_t ops[3],
                       char *why, size_t whylen) {
    const int fwd = kind == CU_MG_FWD;
    /* the product P[1,R,C] = A[1,R,I] @ B[1,I,C]: forward R=M I=K C=N, backward R=M I=N C=K */
    const int64_t R = M, I = fwd ? K : N, Cc = fwd ? N : K;
    int64_t da[3] = {1, R, I}, sa[3] = {R * I, I, 1};
    int64_t db[3] = {1, I, Cc}, sbf[3] = {I * Cc, 1, I}, sbb[3] = {I * Cc, Cc, 1};
    int64_t dp[3] = {1, R, Cc}, sp[3] = {R * Cc, Cc, 1};
    int64_t dbi[3] = {1, 1, Cc}, sbi[3] = {Cc, Cc, 1};
    cudnnBackendDescriptor_t tA = cu_dnn_tensor(d, g, CU_MG_UID_A, CUDNN_DATA_BFLOAT16, 3, da, sa, 0, why, whylen);
    cudnnBackendDescriptor_t tB = tA ? cu_dnn_tensor(d, g, CU_MG_UID_B, CUDNN_DATA_BFLOAT16, 3, db, fwd ? sbf : sbb, 0,
                                                     why, whylen) : NULL;
    cudnnBackendDescriptor_t tP = tB ? cu_dnn_tensor(d, g, CU_MG_UID_P, CUDNN_DATA_FLOAT, 3, dp, sp, CU_DNN_VIRTUAL,
                                                     why, whylen) : NULL;
    cudnnBackendDescriptor_t mm = tP ? cu_dnn_new(d, g, CUDNN_BACKEND_MATMUL_DESCRIPTOR, why, whylen) : NULL;
    ops[0] = mm ? cu_dnn_new(d, g, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, why, whylen) : NULL;
    if (!ops[0]) return 0;
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    const cu_mg_step_t mms[] = {
        CU_MG_SET(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, &f32, "matmul compute type"),
        CU_MG_FIN(mm, "matmul finalize"),
        CU_MG_DESC(ops[0], CUDNN_ATTR_OPERATION_MATMUL_ADESC, &tA, "matmul A"),
        CU_MG_DESC(ops[0], CUDNN_ATTR_OPERATION_MATMUL_BDESC, &tB, "matmul B"),
        CU_MG_DESC(ops[0], CUDNN_ATTR_OPERATION_MATMUL_CDESC, &tP, "matmul C"),
        CU_MG_DESC(ops[0], CUDNN_ATTR_OPERATION_MATMUL_DESC, &mm, "matmul descriptor"),
        CU_MG_FIN(ops[0], "matmul operation finalize"),
    };
    if (cu_mg_apply(d, mms, sizeof mms / sizeof mms[0], why, whylen)) return 0;
    if (fwd) {
        cudnnBackendDescriptor_t tb = cu_dnn_tensor(d, g, CU_MG_UID_BIAS, CUDNN_DATA_FLOAT, 3, dbi, sbi, 0, why, whylen);
        cudnnBackendDescriptor_t tS = tb ? cu_dnn_tensor(d, g, CU_MG_UID_S, CUDNN_DATA_FLOAT, 3, dp, sp, CU_DNN_VIRTUAL,
                                                         why, whylen) : NULL;
        cudnnBackendDescriptor_t tO = tS ? cu_dnn_tensor(d, g, CU_MG_UID_OUT, CUDNN_DATA_BFLOAT16, 3, dp, sp, 0, why,
                                                         whylen) : NULL;
        cudnnBackendDescriptor_t add = tO ? cu_mg_pointwise(d, g, CUDNN_POINTWISE_ADD, "add", why, whylen) : NULL;
        cudnnBackendDescriptor_t gelu = add ? cu_mg_pointwise(d, g, CUDNN_POINTWISE_GELU_FWD, "gelu", why, whylen)
                                            : NULL;
        ops[1] = gelu ? cu_dnn_new(d, g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, why, whylen) : NULL;
        ops[2] = ops[1] ? cu_dnn_new(d, g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, why, whylen) : NULL;
        if (!ops[2]) return 0;
        const cu_mg_step_t st[] = {
            CU_MG_DESC(ops[1], CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, &add, "add descriptor"),
            CU_MG_DESC(ops[1], CUDNN_ATTR_OPERATION_POINTWISE_XDESC, &tP, "add x"),
            CU_MG_DESC(ops[1], CUDNN_ATTR_OPERATION_POINTWISE_BDESC, &tb, "add bias"),
            CU_MG_DESC(ops[1], CUDNN_ATTR_OPERATION_POINTWISE_YDESC, &tS, "add y"),
            CU_MG_FIN(ops[1], "add operation finalize"),
            CU_MG_DESC(ops[2], CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, &gelu, "gelu descriptor"),
            CU_MG_DESC(ops[2], CUDNN_ATTR_OPERATION_POINTWISE_XDESC, &tS, "gelu x"),
            CU_MG_DESC(ops[2], CUDNN_ATTR_OPERATION_POINTWISE_YDESC, &tO, "gelu y"),
            CU_MG_FIN(ops[2], "gelu operation finalize"),
        };
        return cu_mg_apply(d, st, sizeof st / sizeof st[0], why, whylen) ? 0 : 3;
    }
    cudnnBackendDescriptor_t tX = cu_dnn_tensor(d, g, CU_MG_UID_X, CUDNN_DATA_BFLOAT16, 3, dp, sp, 0, why, whylen);
    cudnnBackendDescriptor_t tG = tX ? cu_dnn_tensor(d, g, CU_MG_UID_OUT, CUDNN_DATA_BFLOAT16, 3, dp, sp, 0, why,
                                                     whylen) : NULL;
    cudnnBackendDescriptor_t dgelu = tG ? cu_mg_pointwise(d, g, CUDNN_POINTWISE_GELU_BWD, "gelu'", why, whylen) : NULL;
    ops[1] = dgelu ? cu_dnn_new(d, g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, why, whylen) : NULL;
    if (!ops[1]) return 0;
    const cu_mg_step_t st[] = {
        CU_MG_DESC(ops[1], CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, &dgelu, "gelu' descriptor"),
        CU_MG_DESC(ops[1], CUDNN_ATTR_OPERATION_POINTWISE_XDESC, &tX, "gelu' x"),
        CU_MG_DESC(ops[1], CUDNN_ATTR_OPERATION_POINTWISE_DYDESC, &tP, "gelu' dy"),
        CU_MG_DESC(ops[1], CUDNN_ATTR_OPERATION_POINTWISE_DXDESC, &tG, "gelu' dx"),
        CU_MG_FIN(ops[1], "gelu' operation finalize"),
    };
    return cu_mg_apply(d, st, sizeof st / sizeof st[0], why, whylen) ? 0 : 2;
}

/* One call's operands, for either kind. */
typedef struct {
    int kind, M, N, K;
    dtype_t cdt, odt;               /* operands; out (forward) or g (backward) — bf16 both, to be fused */
    void *out;                      /* forward: out; backward: g */
    void *tmp;                      /* forward: the product in odt; backward: the f32 product */
    const void *a, *w;              /* forward: inp, w; backward: dout, w */
    const void *x;                  /* backward: the GELU's input */
    const float *bias;              /* forward: bias */
    float *dbias;                   /* backward: += the bias gradient (may be NULL) */
} cu_mg_call_t;

static int cu_mg_pack(const cu_mg_call_t *k, int64_t uids[4], void *ptrs[4]) {
    uids[0] = CU_MG_UID_A; ptrs[0] = (void *)k->a;
    uids[1] = CU_MG_UID_B; ptrs[1] = (void *)k->w;
    uids[2] = CU_MG_UID_OUT; ptrs[2] = k->out;
    uids[3] = k->kind == CU_MG_FWD ? CU_MG_UID_BIAS : CU_MG_UID_X;
    ptrs[3] = k->kind == CU_MG_FWD ? (void *)k->bias : (void *)k->x;
    return 4;
}

/* The two-pass way (the reference's order), any dtypes: the op's fallback and
 * what the fused way is timed and checked against. */
static void cu_mg_two_pass(backend_t *b, const cu_mg_call_t *k, float *dbias) {
    if (k->kind == CU_MG_FWD) {
        cu_matmul_fwd(b, k->tmp, k->odt, k->a, k->w, k->bias, k->cdt, k->M, k->N, k->K);
        cu_gelu_fwd(b, k->out, k->odt, k->tmp, k->odt, (size_t)k->M * k->N);
    } else {
        cu_matmul_bwd(b, (float *)k->tmp, NULL, NULL, k->a, k->cdt, NULL, k->w, k->cdt, k->M, k->N, k->K);
        cu_gelu_bwd(b, k->out, k->odt, dbias, (const float *)k->tmp, k->x, k->cdt, k->M, k->K);
    }
}

/* The fused way: the plan, then (backward) the bias gradient from g. A cuDNN status. */
static cudnnStatus_t cu_mg_fused(backend_t *b, cu_dnn_t *d, cudnnBackendDescriptor_t plan, int64_t ws,
                                 const cu_mg_call_t *k, float *dbias) {
    int64_t uids[4];
    void *ptrs[4];
    int n = cu_mg_pack(k, uids, ptrs);
    cudnnStatus_t st = cu_dnn_exec(b, d, plan, ws, n, uids, ptrs);
    if (st == CUDNN_STATUS_SUCCESS && k->kind == CU_MG_BWD && dbias)
        cu_colsum_dt(b, dbias, k->out, DT_BF16, k->M, k->K);
    return st;
}

/* cu_time_ms's run: one call of one way (plan NULL: two passes), the bias gradient into sink. */
typedef struct {
    cu_dnn_t *d;
    cudnnBackendDescriptor_t plan;
    int64_t ws;
    const cu_mg_call_t *k;
    float *sink;
} cu_mg_run_t;

static int cu_mg_run(backend_t *b, void *ctx) {
    const cu_mg_run_t *r = (const cu_mg_run_t *)ctx;
    if (!r->plan) {
        cu_mg_two_pass(b, r->k, r->sink);
        return 0;
    }
    return cu_mg_fused(b, r->d, r->plan, r->ws, r->k, r->sink) == CUDNN_STATUS_SUCCESS ? 0 : -1;
}

/* Milliseconds of one way (plan NULL: two passes), cu_time_ms; the bias gradient
 * into a scratch vector, so the caller's is untouched. 1e30 when cuDNN fails. */
static float cu_mg_time(backend_t *b, cu_dnn_t *d, cudnnBackendDescriptor_t plan, int64_t ws, const cu_mg_call_t *k) {
    cu_mg_run_t r = {d, plan, ws, k, NULL};
    if (k->kind == CU_MG_BWD && k->dbias && cudaMalloc(&r.sink, (size_t)k->K * sizeof(float)) != cudaSuccess) {
        (void)cudaGetLastError();
        r.sink = NULL;
    }
    float ms = cu_time_ms(b, cu_mg_run, &r);
    if (r.sink) CU_CHECK(cudaFree(r.sink));
    return ms;
}

static const char *cu_mg_name(int kind) { return kind == CU_MG_FWD ? "product + bias + GELU" : "product + GELU'"; }

/* TRAIND_CUDNN_GELU, read once per backend: 1 fused wherever cuDNN builds an
 * agreeing plan (no timing, no size limit), "auto" timed per shape (-1),
 * anything else or unset: two passes (0) — the default until the fused way has
 * been measured on a card. */
static int cu_mg_mode(void) {
    const char *env = getenv("TRAIND_CUDNN_GELU");
    if (!env) return 0;
    if (strcmp(env, "1") == 0) return 1;
    return strcmp(env, "auto") == 0 ? -1 : 0;
}

/* The way for this call's shape: cached, else decided (see the header). */
static cu_mg_plan_t *cu_mg_plan(backend_t *b, cu_dnn_t *d, cu_mg_t *s, const cu_mg_call_t *k) {
    cu_mg_plan_t *victim = &s->plans[0];
    for (int i = 0; i < CU_MG_PLANS; i++) {
        cu_mg_plan_t *p = &s->plans[i];
        if (p->valid && p->kind == k->kind && p->M == k->M && p->N == k->N && p->K == k->K) {
            p->last_use = ++s->clock;
            return p;
        }
        if (!p->valid) victim = p;
        else if (victim->valid && p->last_use < victim->last_use) victim = p;
    }
    if (victim->valid && victim->plan) d->api.DestroyDesc(victim->plan);
    memset(victim, 0, sizeof *victim);
    victim->valid = 1;
    victim->kind = k->kind;
    victim->M = k->M; victim->N = k->N; victim->K = k->K;
    victim->last_use = ++s->clock;

    const int force = s->mode;
    if (force == 0) return victim;   /* two passes, no message */
    double t0 = cu_dnn_now_ms();
    cu_dnn_bag_t bag;
    bag.n = 0;
    char why[256] = "";
    cudnnBackendDescriptor_t ops[3], plans[CU_MG_TUNE];
    int64_t ws[CU_MG_TUNE];
    int ncfg = 0, nplans = 0;
    int nops = cu_mg_graph(d, &bag, k->kind, k->M, k->N, k->K, ops, why, sizeof why);
    if (nops > 0) nplans = cu_dnn_plans(d, &bag, ops, nops, force == 1 ? 1 : CU_MG_TUNE, plans, ws, &ncfg, why, sizeof why);
    cu_dnn_bag_free(d, &bag);
    int kept = 0;   /* a plan wanting more workspace than CU_MG_MAX_WS would cost the memory the pass saves */
    for (int i = 0; i < nplans; i++) {
        if (ws[i] > CU_MG_MAX_WS) {
            d->api.DestroyDesc(plans[i]);
            snprintf(why, sizeof why, "the plans want more than %d MiB of workspace", CU_MG_MAX_WS >> 20);
            continue;
        }
        plans[kept] = plans[i];
        ws[kept++] = ws[i];
    }
    nplans = kept;
    double plan_ms = cu_dnn_now_ms() - t0;
    if (nplans == 0) {
        fprintf(stderr, "traind: cuDNN %s unavailable for M=%d N=%d K=%d (%s); two passes\n", cu_mg_name(k->kind),
                k->M, k->N, k->K, why);
        return victim;
    }
    /* the two passes first: their output, kept in tmp, is what every plan's must agree with */
    float two_ms = 0, best_ms = 1e30f;
    if (force == 1) cu_mg_two_pass(b, k, NULL);
    else two_ms = cu_mg_time(b, d, NULL, 0, k);
    const size_t nout = (size_t)k->M * (k->kind == CU_MG_FWD ? k->N : k->K);
    CU_CHECK(cudaMemcpyAsync(k->tmp, k->out, nout * 2, cudaMemcpyDeviceToDevice, cu_impl(b)->stream));
    int best = -1;
    char times[160] = "";
    size_t tl = 0;
    for (int i = 0; i < nplans; i++) {
        float ms = 1e30f;
        if (force == 1) ms = cu_mg_fused(b, d, plans[i], ws[i], k, NULL) == CUDNN_STATUS_SUCCESS ? 0.0f : 1e30f;
        else ms = cu_mg_time(b, d, plans[i], ws[i], k);
        double rel = ms < 1e30f ? cu_rel_diff(b, k->out, k->tmp, DT_BF16, nout) : NAN;
        bool agrees = rel <= CU_MG_AGREE;
        if (tl < sizeof times && ms < 1e30f)
            tl += (size_t)snprintf(times + tl, sizeof times - tl, "%s%.3f%s", i ? "/" : "", ms,
                                   agrees ? "" : " (disagrees)");
        else if (tl < sizeof times)
            tl += (size_t)snprintf(times + tl, sizeof times - tl, "%sfailed", i ? "/" : "");
        if (!agrees) {
            fprintf(stderr, "traind: cuDNN %s M=%d N=%d K=%d: engine config %d of %d %s (relative difference %.3g "
                    "from the two passes, limit %.0e); not used\n", cu_mg_name(k->kind), k->M, k->N, k->K, i + 1,
                    ncfg, ms < 1e30f ? "disagrees" : "failed to run", rel, CU_MG_AGREE);
            continue;
        }
        if (ms < best_ms) { best_ms = ms; best = i; }
    }
    for (int i = 0; i < nplans; i++) if (i != best) d->api.DestroyDesc(plans[i]);
    if (best >= 0 && (force == 1 || best_ms < two_ms)) {
        victim->fused = 1;
        victim->plan = plans[best];
        victim->ws = ws[best];
    } else if (best >= 0) {
        d->api.DestroyDesc(plans[best]);
    }
    if (force == 1)
        fprintf(stderr, "traind: %s M=%d N=%d K=%d: cuDNN fused (forced)%s, engine config 1 of %d, planned in %.0f ms\n",
                cu_mg_name(k->kind), k->M, k->N, k->K, victim->fused ? "" : " refused: two passes", ncfg, plan_ms);
    else
        fprintf(stderr, "traind: %s M=%d N=%d K=%d: cuDNN fused %s ms (engine configs 1-%d of %d, planned in %.0f ms) "
                "vs two passes %.3f ms: %s\n", cu_mg_name(k->kind), k->M, k->N, k->K, times, nplans, ncfg, plan_ms,
                two_ms, victim->fused ? "fused" : "two passes");
    return victim;
}

static bool cu_al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* Runs one call the fused way where it may and was chosen; 0 when done, -1 for the two-pass way. */
static int cu_mg_try(backend_t *b, const cu_mg_call_t *k) {
    cu_impl_t *c = cu_impl(b);
    if (!c->mmgelu && (c->mmgelu = calloc(1, sizeof(cu_mg_t)))) ((cu_mg_t *)c->mmgelu)->mode = cu_mg_mode();
    cu_mg_t *s = (cu_mg_t *)c->mmgelu;
    if (!s || s->failed || s->mode == 0) return -1;
    if ((double)k->M * k->N * k->K < CU_MG_MIN_WORK && s->mode != 1) return -1;
    cu_dnn_t *d = cu_dnn(b, "the MLP's product + GELU");
    if (!d) return -1;
    cu_mg_plan_t *p = cu_mg_plan(b, d, s, k);
    if (!p->fused) return -1;
    cudnnStatus_t st = cu_mg_fused(b, d, p->plan, p->ws, k, k->dbias);
    if (st != CUDNN_STATUS_SUCCESS) {   /* nothing ran */
        fprintf(stderr, "traind: cuDNN %s failed (%s); two passes from now on\n", cu_mg_name(k->kind),
                d->api.GetErrorString(st));
        s->failed = 1;
        return -1;
    }
    CU_LAUNCH_CHECK();
    return 0;
}

void cu_matmul_gelu_fwd(backend_t *b, void *out, dtype_t odt, void *tmp, const void *inp, const void *w,
                        const float *bias, dtype_t cdt, int M, int N, int K) {
    if (M <= 0 || N <= 0) return;
    CU_ASSERT(K > 0 && tmp, "K=%d tmp=%p", K, tmp);
    cu_mg_call_t k = {CU_MG_FWD, M, N, K, cdt, odt, out, tmp, inp, w, NULL, bias, NULL};
    /* fusable: bf16 in and out with a bias, every tensor 16-byte aligned, rows of whole 16 bytes */
    if (cdt == DT_BF16 && odt == DT_BF16 && bias && N % 8 == 0 && K % 8 == 0 && cu_al16(out) && cu_al16(inp) &&
        cu_al16(w) && cu_al16(bias) && cu_mg_try(b, &k) == 0)
        return;
    cu_mg_two_pass(b, &k, NULL);
}

void cu_matmul_dgelu(backend_t *b, void *g, dtype_t gdt, float *dbias, float *tmp, const void *dout, const void *w,
                     const void *x, dtype_t cdt, int M, int N, int K) {
    if (M <= 0 || K <= 0) return;
    CU_ASSERT(N > 0 && tmp, "N=%d tmp=%p", N, tmp);
    cu_mg_call_t k = {CU_MG_BWD, M, N, K, cdt, gdt, g, tmp, dout, w, x, NULL, dbias};
    if (cdt == DT_BF16 && gdt == DT_BF16 && N % 8 == 0 && K % 8 == 0 && cu_al16(g) && cu_al16(dout) && cu_al16(w) &&
        cu_al16(x) && cu_mg_try(b, &k) == 0)
        return;
    cu_mg_two_pass(b, &k, dbias);
}

/* Before cu_dnn_destroy: the plans belong to the backend's cuDNN. */
void cu_matmul_gelu_destroy(backend_t *b) {
    cu_impl_t *c = cu_impl(b);
    cu_mg_t *s = (cu_mg_t *)c->mmgelu;
    if (!s) return;
    cu_dnn_t *d = (cu_dnn_t *)c->dnn;
    if (d && d->api.DestroyDesc)
        for (int i = 0; i < CU_MG_PLANS; i++)
            if (s->plans[i].valid && s->plans[i].plan) d->api.DestroyDesc(s->plans[i].plan);
    free(s);
    c->mmgelu = NULL;
}
