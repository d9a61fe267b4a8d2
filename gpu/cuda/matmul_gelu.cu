/* gpu/cuda/matmul_gelu.cu — the MLP's first product with its bias and exact
 * (erf) GELU: out[M,N] = gelu(inp[M,K] @ w[N,K]^T + bias[N]), bf16 in and out.
 *
 * Owns: the cuDNN graph that does it in one pass (the GELU as the product's
 * epilogue, so the [M,N] product never reaches memory), a cache of plans keyed
 * on the shape, and the choice per shape between that plan and the two-pass
 * way (cuBLASLt's product into tmp, then cu_gelu_fwd — 2 x M x N x 2 bytes
 * more traffic: 0.54 GB per block at dinov2-large b128). The graph, all
 * tensors [1, rows, cols] (cuDNN's batched matmul with a batch of 1):
 *   A    inp   [1,M,K] bf16, strides (M*K, K, 1)
 *   B    w^T   [1,K,N] bf16, strides (N*K, 1, K)   (w[N,K] as stored)
 *   P    A @ B [1,M,N] f32, virtual                (Matmul, f32 compute)
 *   bias       [1,1,N] f32, strides (N, N, 1)      (broadcast over the rows)
 *   S    P + bias       f32, virtual               (Pointwise ADD)
 *   out  gelu(S) [1,M,N] bf16                      (Pointwise GELU_FWD: erf)
 * The fused way rounds once (the GELU of the f32 sum); the two-pass way
 * rounds the sum to bf16 (its bias rounded to bf16 first, cu_matmul_fwd) and
 * then the GELU: results differ by about one bf16 step where they differ.
 *
 * Which way: at a shape's first call both are timed on the call's own tensors
 * (a warm-up and 3 runs each) and the faster is kept; one line on stderr says
 * the times and the choice. Environment: TRAIND_CUDNN_GELU=0 never fuses,
 * =1 fuses wherever cuDNN builds a plan, without timing (tests, A/B benches).
 * A cuDNN failure at run time is reported once and the two-pass way used from
 * then on; nothing here is fatal. */
#include <cstring>
#include "gpu/cuda/dnn.h"

#define CU_MG_PLANS 8
#define CU_MG_TUNE 3       /* cuDNN engine configurations timed per shape */
enum { CU_MG_UID_A = 1, CU_MG_UID_B = 2, CU_MG_UID_BIAS = 3, CU_MG_UID_OUT = 4, CU_MG_UID_P = 10, CU_MG_UID_S = 11 };

typedef struct {
    int valid, M, N, K;
    int fused;                      /* 1: plan below; 0: the two-pass way */
    long last_use;
    cudnnBackendDescriptor_t plan;
    int64_t ws;
} cu_mg_plan_t;

typedef struct {
    int failed;                     /* cuDNN failed to run once: two-pass from then on */
    cu_mg_plan_t plans[CU_MG_PLANS];
    long clock;
} cu_mg_t;

/* The graph's four operations, finalized, into ops[]; 0, or -1 with why[]. */
static int cu_mg_graph(cu_dnn_t *d, cu_dnn_bag_t *g, int M, int N, int K, cudnnBackendDescriptor_t ops[3], char *why,
                       size_t whylen) {
    const cu_dnn_api_t *a = &d->api;
    int64_t da[3] = {1, M, K}, sa[3] = {(int64_t)M * K, K, 1};
    int64_t db[3] = {1, K, N}, sb[3] = {(int64_t)N * K, 1, K};
    int64_t dp[3] = {1, M, N}, sp[3] = {(int64_t)M * N, N, 1};
    int64_t dbi[3] = {1, 1, N}, sbi[3] = {N, N, 1};
    cudnnBackendDescriptor_t tA = cu_dnn_tensor(d, g, CU_MG_UID_A, CUDNN_DATA_BFLOAT16, 3, da, sa, 0, why, whylen);
    cudnnBackendDescriptor_t tB = tA ? cu_dnn_tensor(d, g, CU_MG_UID_B, CUDNN_DATA_BFLOAT16, 3, db, sb, 0, why, whylen) : NULL;
    cudnnBackendDescriptor_t tP = tB ? cu_dnn_tensor(d, g, CU_MG_UID_P, CUDNN_DATA_FLOAT, 3, dp, sp, CU_DNN_VIRTUAL, why, whylen) : NULL;
    cudnnBackendDescriptor_t tb = tP ? cu_dnn_tensor(d, g, CU_MG_UID_BIAS, CUDNN_DATA_FLOAT, 3, dbi, sbi, 0, why, whylen) : NULL;
    cudnnBackendDescriptor_t tS = tb ? cu_dnn_tensor(d, g, CU_MG_UID_S, CUDNN_DATA_FLOAT, 3, dp, sp, CU_DNN_VIRTUAL, why, whylen) : NULL;
    cudnnBackendDescriptor_t tO = tS ? cu_dnn_tensor(d, g, CU_MG_UID_OUT, CUDNN_DATA_BFLOAT16, 3, dp, sp, 0, why, whylen) : NULL;
    cudnnBackendDescriptor_t mm = tO ? cu_dnn_new(d, g, CUDNN_BACKEND_MATMUL_DESCRIPTOR, why, whylen) : NULL;
    cudnnBackendDescriptor_t add = mm ? cu_dnn_new(d, g, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, why, whylen) : NULL;
    cudnnBackendDescriptor_t gelu = add ? cu_dnn_new(d, g, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, why, whylen) : NULL;
    ops[0] = gelu ? cu_dnn_new(d, g, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, why, whylen) : NULL;
    ops[1] = ops[0] ? cu_dnn_new(d, g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, why, whylen) : NULL;
    ops[2] = ops[1] ? cu_dnn_new(d, g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, why, whylen) : NULL;
    if (!ops[2]) return -1;
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    const cudnnPointwiseMode_t m_add = CUDNN_POINTWISE_ADD, m_gelu = CUDNN_POINTWISE_GELU_FWD;
    struct { cudnnBackendDescriptor_t d; cudnnBackendAttributeName_t at; cudnnBackendAttributeType_t ty;
             const void *v; const char *what; } steps[] = {
        {mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, &f32, "matmul compute type"},
        {mm, (cudnnBackendAttributeName_t)-1, CUDNN_TYPE_HANDLE, NULL, "matmul finalize"},
        {add, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, &m_add, "add mode"},
        {add, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, &f32, "add precision"},
        {add, (cudnnBackendAttributeName_t)-1, CUDNN_TYPE_HANDLE, NULL, "add finalize"},
        {gelu, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, &m_gelu, "gelu mode"},
        {gelu, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, &f32, "gelu precision"},
        {gelu, (cudnnBackendAttributeName_t)-1, CUDNN_TYPE_HANDLE, NULL, "gelu finalize"},
        {ops[0], CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, &tA, "matmul A"},
        {ops[0], CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, &tB, "matmul B"},
        {ops[0], CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, &tP, "matmul C"},
        {ops[0], CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, &mm, "matmul descriptor"},
        {ops[0], (cudnnBackendAttributeName_t)-1, CUDNN_TYPE_HANDLE, NULL, "matmul operation finalize"},
        {ops[1], CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, &add, "add descriptor"},
        {ops[1], CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, &tP, "add x"},
        {ops[1], CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, &tb, "add bias"},
        {ops[1], CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, &tS, "add y"},
        {ops[1], (cudnnBackendAttributeName_t)-1, CUDNN_TYPE_HANDLE, NULL, "add operation finalize"},
        {ops[2], CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, &gelu, "gelu descriptor"},
        {ops[2], CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, &tS, "gelu x"},
        {ops[2], CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, &tO, "gelu y"},
        {ops[2], (cudnnBackendAttributeName_t)-1, CUDNN_TYPE_HANDLE, NULL, "gelu operation finalize"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        cudnnStatus_t st = steps[i].v ? a->SetAttr(steps[i].d, steps[i].at, steps[i].ty, 1, steps[i].v)
                                      : a->Finalize(steps[i].d);
        if (st != CUDNN_STATUS_SUCCESS) {
            snprintf(why, whylen, "%s: %s", steps[i].what, a->GetErrorString(st));
            return -1;
        }
    }
    return 0;
}

/* The two-pass way: the product (bias rounded to bf16 as cu_matmul_fwd does) into tmp, then the GELU. */
static void cu_mg_two_pass(backend_t *b, void *out, void *tmp, const void *inp, const void *w, const float *bias,
                           int M, int N, int K) {
    cu_matmul_fwd(b, tmp, DT_BF16, inp, w, bias, DT_BF16, M, N, K);
    cu_gelu_fwd(b, out, DT_BF16, tmp, DT_BF16, (size_t)M * N);
}

static float cu_mg_time_two_pass(backend_t *b, void *out, void *tmp, const void *inp, const void *w,
                                 const float *bias, int M, int N, int K) {
    cudaStream_t st = cu_impl(b)->stream;
    cu_mg_two_pass(b, out, tmp, inp, w, bias, M, N, K);   /* warm-up (and the product's own plan) */
    cudaEvent_t e0, e1;
    CU_CHECK(cudaEventCreate(&e0));
    CU_CHECK(cudaEventCreate(&e1));
    CU_CHECK(cudaEventRecord(e0, st));
    for (int r = 0; r < 3; r++) cu_mg_two_pass(b, out, tmp, inp, w, bias, M, N, K);
    CU_CHECK(cudaEventRecord(e1, st));
    CU_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CU_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    CU_CHECK(cudaEventDestroy(e0));
    CU_CHECK(cudaEventDestroy(e1));
    return ms / 3;
}

/* The call's variant pack. */
static void cu_mg_pack(int64_t uids[4], void *ptrs[4], void *out, const void *inp, const void *w, const float *bias) {
    uids[0] = CU_MG_UID_A; ptrs[0] = (void *)inp;
    uids[1] = CU_MG_UID_B; ptrs[1] = (void *)w;
    uids[2] = CU_MG_UID_BIAS; ptrs[2] = (void *)bias;
    uids[3] = CU_MG_UID_OUT; ptrs[3] = out;
}

/* The way for this shape: cached, else decided (see the header). */
static cu_mg_plan_t *cu_mg_plan(backend_t *b, cu_dnn_t *d, cu_mg_t *s, void *out, void *tmp, const void *inp,
                                const void *w, const float *bias, int M, int N, int K) {
    cu_mg_plan_t *victim = &s->plans[0];
    for (int i = 0; i < CU_MG_PLANS; i++) {
        cu_mg_plan_t *p = &s->plans[i];
        if (p->valid && p->M == M && p->N == N && p->K == K) {
            p->last_use = ++s->clock;
            return p;
        }
        if (!p->valid) victim = p;
        else if (victim->valid && p->last_use < victim->last_use) victim = p;
    }
    if (victim->valid && victim->plan) d->api.DestroyDesc(victim->plan);
    memset(victim, 0, sizeof *victim);
    victim->valid = 1;
    victim->M = M; victim->N = N; victim->K = K;
    victim->last_use = ++s->clock;

    const char *env = getenv("TRAIND_CUDNN_GELU");
    int force = env && env[0] ? (strcmp(env, "0") != 0) : -1;
    if (force == 0) return victim;   /* two-pass, no message */
    double t0 = cu_dnn_now_ms();
    cu_dnn_bag_t bag;
    bag.n = 0;
    char why[256] = "";
    cudnnBackendDescriptor_t ops[3], plans[CU_MG_TUNE];
    int64_t ws[CU_MG_TUNE];
    int ncfg = 0, nplans = 0;
    if (cu_mg_graph(d, &bag, M, N, K, ops, why, sizeof why) == 0)
        nplans = cu_dnn_plans(d, &bag, ops, 3, force == 1 ? 1 : CU_MG_TUNE, plans, ws, &ncfg, why, sizeof why);
    cu_dnn_bag_free(d, &bag);
    double plan_ms = cu_dnn_now_ms() - t0;
    if (nplans == 0) {
        fprintf(stderr, "traind: cuDNN product + bias + GELU unavailable for M=%d N=%d K=%d (%s); two passes\n",
                M, N, K, why);
        return victim;
    }
    int best = 0;
    float best_ms = 0, two_ms = 0;
    char times[96] = "";
    if (force != 1) {
        int64_t uids[4];
        void *ptrs[4];
        cu_mg_pack(uids, ptrs, out, inp, w, bias);
        best_ms = 1e30f;
        size_t tl = 0;
        for (int k = 0; k < nplans; k++) {
            float ms = cu_dnn_time(b, d, plans[k], ws[k], 4, uids, ptrs);
            if (tl < sizeof times) tl += (size_t)snprintf(times + tl, sizeof times - tl, "%s%.3f", k ? "/" : "", ms);
            if (ms < best_ms) { best_ms = ms; best = k; }
        }
        two_ms = cu_mg_time_two_pass(b, out, tmp, inp, w, bias, M, N, K);
    }
    for (int k = 0; k < nplans; k++) if (k != best) d->api.DestroyDesc(plans[k]);
    if (force == 1 || best_ms < two_ms) {
        victim->fused = 1;
        victim->plan = plans[best];
        victim->ws = ws[best];
    } else {
        d->api.DestroyDesc(plans[best]);
    }
    if (force == 1)
        fprintf(stderr, "traind: product + bias + GELU M=%d N=%d K=%d: cuDNN fused (forced), engine config 1 of %d, "
                "planned in %.0f ms\n", M, N, K, ncfg, plan_ms);
    else
        fprintf(stderr, "traind: product + bias + GELU M=%d N=%d K=%d: cuDNN fused %s ms (engine configs 1-%d of %d, "
                "planned in %.0f ms) vs two passes %.3f ms: %s\n", M, N, K, times, nplans, ncfg, plan_ms, two_ms,
                victim->fused ? "fused" : "two passes");
    return victim;
}

static bool cu_al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

void cu_matmul_gelu_fwd(backend_t *b, void *out, dtype_t odt, void *tmp, const void *inp, const void *w,
                        const float *bias, dtype_t cdt, int M, int N, int K) {
    if (M <= 0 || N <= 0) return;
    CU_ASSERT(K > 0 && tmp, "K=%d tmp=%p", K, tmp);
    cu_impl_t *c = cu_impl(b);
    /* the fused way: bf16 in and out with a bias, every tensor 16-byte aligned, rows of whole 16 bytes */
    bool can = cdt == DT_BF16 && odt == DT_BF16 && bias && N % 8 == 0 && K % 8 == 0 && cu_al16(out) &&
               cu_al16(inp) && cu_al16(w) && cu_al16(bias);
    cu_dnn_t *d = NULL;
    if (can) {
        if (!c->mmgelu) c->mmgelu = calloc(1, sizeof(cu_mg_t));
        cu_mg_t *s = (cu_mg_t *)c->mmgelu;
        if (s && !s->failed && (d = cu_dnn(b, "the product + bias + GELU"))) {
            cu_mg_plan_t *p = cu_mg_plan(b, d, s, out, tmp, inp, w, bias, M, N, K);
            if (p->fused) {
                int64_t uids[4];
                void *ptrs[4];
                cu_mg_pack(uids, ptrs, out, inp, w, bias);
                cudnnStatus_t st = cu_dnn_exec(b, d, p->plan, p->ws, 4, uids, ptrs);
                if (st == CUDNN_STATUS_SUCCESS) {
                    CU_LAUNCH_CHECK();
                    return;
                }
                fprintf(stderr, "traind: cuDNN product + bias + GELU failed (%s); two passes from now on\n",
                        d->api.GetErrorString(st));
                s->failed = 1;
            }
        }
    }
    cu_matmul_fwd(b, tmp, odt, inp, w, bias, cdt, M, N, K);
    cu_gelu_fwd(b, out, odt, tmp, odt, (size_t)M * N);
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
