/* gpu/cuda/sdpa_cudnn.cu — attention forward through cuDNN's fused
 * scaled-dot-product attention (flash attention on Hopper), bf16.
 *
 * Owns: loading cuDNN at run time (dlopen, so that a machine without cuDNN
 * still runs traind on its own kernels), the cuDNN handle of a backend, and a
 * small cache of execution plans keyed on the attention's shape. One graph of
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
 * Environment: TRAIND_CUDNN_LIB = path of libcudnn.so.9 (default: the
 * loader's search, then a few usual places); TRAIND_CUDNN_AUTOTUNE=1 times
 * the heuristics' first few engine configurations per shape and keeps the
 * fastest (default: the first); TRAIND_CUDNN_SPLIT=1|0 forces the tail split
 * on or off (default: by batch x heads, CU_SDPA_SPLIT_MIN_BH). */
#include <dlfcn.h>
#include <cstring>
#include <cmath>
#include <cudnn_graph.h>
#include <time.h>
#include "gpu/cuda/cuda_common.h"

static double cu_sdpa_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* ---- run-time binding ---------------------------------------------------------- */

typedef struct {
    void *lib;
    decltype(&cudnnGetVersion) GetVersion;
    decltype(&cudnnGetErrorString) GetErrorString;
    decltype(&cudnnCreate) Create;
    decltype(&cudnnDestroy) Destroy;
    decltype(&cudnnSetStream) SetStream;
    decltype(&cudnnBackendCreateDescriptor) CreateDesc;
    decltype(&cudnnBackendDestroyDescriptor) DestroyDesc;
    decltype(&cudnnBackendSetAttribute) SetAttr;
    decltype(&cudnnBackendGetAttribute) GetAttr;
    decltype(&cudnnBackendFinalize) Finalize;
    decltype(&cudnnBackendExecute) Execute;
} cu_dnn_api_t;

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
    int state;                      /* 0 untried, 1 ready, -1 unavailable */
    int no_split;                   /* cuDNN refused a query-row split once */
    cu_dnn_api_t api;
    cudnnHandle_t handle;
    cu_sdpa_plan_t plans[CU_SDPA_PLANS];
    long clock;
} cu_sdpa_t;

static cu_sdpa_t *cu_sdpa_of(backend_t *b) { return (cu_sdpa_t *)cu_impl(b)->sdpa; }

/* Loads cuDNN and creates the handle; 0 on success. */
static int cu_sdpa_init(backend_t *b, cu_sdpa_t *s) {
    cu_dnn_api_t *a = &s->api;
    char why[512];
    a->lib = cu_dlopen_lib("TRAIND_CUDNN_LIB", "libcudnn.so.9", "cudnn", why, sizeof why);
    if (!a->lib) {
        fprintf(stderr, "traind: cuDNN: %s; attention forward uses traind's own kernel\n", why);
        return -1;
    }
#define CU_DNN_SYM(field, name) do {                                                          \
        *(void **)&a->field = dlsym(a->lib, #name);                                           \
        if (!a->field) {                                                                      \
            fprintf(stderr, "traind: cuDNN lacks %s; attention forward uses traind's own kernel\n", #name); \
            return -1;                                                                        \
        }                                                                                     \
    } while (0)
    CU_DNN_SYM(GetVersion, cudnnGetVersion);
    CU_DNN_SYM(GetErrorString, cudnnGetErrorString);
    CU_DNN_SYM(Create, cudnnCreate);
    CU_DNN_SYM(Destroy, cudnnDestroy);
    CU_DNN_SYM(SetStream, cudnnSetStream);
    CU_DNN_SYM(CreateDesc, cudnnBackendCreateDescriptor);
    CU_DNN_SYM(DestroyDesc, cudnnBackendDestroyDescriptor);
    CU_DNN_SYM(SetAttr, cudnnBackendSetAttribute);
    CU_DNN_SYM(GetAttr, cudnnBackendGetAttribute);
    CU_DNN_SYM(Finalize, cudnnBackendFinalize);
    CU_DNN_SYM(Execute, cudnnBackendExecute);
#undef CU_DNN_SYM
    size_t ver = a->GetVersion();
    if (ver < 90000) {   /* the backend graph API of cuDNN 9; a 9.x without the single-node SDPA
                          * forward fails to create it, and the own kernel runs (measured with 9.14) */
        fprintf(stderr, "traind: cuDNN %zu older than 9; attention forward uses traind's own kernel\n", ver);
        return -1;
    }
    cudnnStatus_t st = a->Create(&s->handle);
    if (st == CUDNN_STATUS_SUCCESS) st = a->SetStream(s->handle, cu_impl(b)->stream);
    if (st != CUDNN_STATUS_SUCCESS) {
        fprintf(stderr, "traind: cudnnCreate: %s; attention forward uses traind's own kernel\n", a->GetErrorString(st));
        s->handle = NULL;
        return -1;
    }
    return 0;
}

/* ---- graph and plan ------------------------------------------------------------ */

/* Descriptors made while building one plan, destroyed together. */
typedef struct {
    cudnnBackendDescriptor_t d[64];
    int n;
} cu_dnn_bag_t;

static void cu_bag_free(cu_sdpa_t *s, cu_dnn_bag_t *g) {
    for (int i = g->n - 1; i >= 0; i--) if (g->d[i]) s->api.DestroyDesc(g->d[i]);
    g->n = 0;
}

/* A step of the build: on failure, say which and why once, and fail the build. */
#define CU_DNN_TRY(call, what) do {                                                          \
        cudnnStatus_t st_ = (call);                                                          \
        if (st_ != CUDNN_STATUS_SUCCESS) {                                                   \
            snprintf(why, whylen, "%s: %s", what, s->api.GetErrorString(st_));               \
            return NULL;                                                                     \
        }                                                                                    \
    } while (0)

static cudnnBackendDescriptor_t cu_bag_new(cu_sdpa_t *s, cu_dnn_bag_t *g, cudnnBackendDescriptorType_t t,
                                           char *why, size_t whylen) {
    if (g->n >= (int)(sizeof g->d / sizeof g->d[0])) {
        snprintf(why, whylen, "too many descriptors");
        return NULL;
    }
    cudnnBackendDescriptor_t d = NULL;
    CU_DNN_TRY(s->api.CreateDesc(t, &d), "create descriptor");
    g->d[g->n++] = d;
    return d;
}

static cudnnBackendDescriptor_t cu_dnn_tensor(cu_sdpa_t *s, cu_dnn_bag_t *g, int64_t uid, cudnnDataType_t dt,
                                              const int64_t dim[4], const int64_t str[4], bool by_value,
                                              char *why, size_t whylen) {
    cudnnBackendDescriptor_t t = cu_bag_new(s, g, CUDNN_BACKEND_TENSOR_DESCRIPTOR, why, whylen);
    if (!t) return NULL;
    int64_t align = by_value ? 4 : 16;
    CU_DNN_TRY(s->api.SetAttr(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt), "tensor dtype");
    CU_DNN_TRY(s->api.SetAttr(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim), "tensor dims");
    CU_DNN_TRY(s->api.SetAttr(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, str), "tensor strides");
    CU_DNN_TRY(s->api.SetAttr(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid), "tensor uid");
    CU_DNN_TRY(s->api.SetAttr(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align), "tensor alignment");
    if (by_value) {
        bool yes = true;
        CU_DNN_TRY(s->api.SetAttr(t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &yes), "tensor by value");
    }
    CU_DNN_TRY(s->api.Finalize(t), "tensor finalize");
    return t;
}

/* Builds the execution plan for one shape; NULL with `why` on failure. The
 * returned plan is NOT in the bag (the caller keeps it); everything else is. */
static cudnnBackendDescriptor_t cu_sdpa_build(cu_sdpa_t *s, cu_dnn_bag_t *g, int Bn, int Tq, int T, int NH, int HS,
                                              int stats, int want, cudnnBackendDescriptor_t plans[], int64_t ws[],
                                              int *nplans, int *ncfg, char *why, size_t whylen) {
    int64_t ld3 = (int64_t)3 * NH * HS, ldo = (int64_t)NH * HS;
    int64_t dq[4] = {Bn, NH, Tq, HS}, dk[4] = {Bn, NH, T, HS}, sq[4] = {(int64_t)T * ld3, HS, ld3, 1};
    int64_t so[4] = {(int64_t)T * ldo, HS, ldo, 1};
    int64_t dl[4] = {Bn, NH, Tq, 1}, sl[4] = {(int64_t)NH * T, T, 1, 1};
    int64_t d1[4] = {1, 1, 1, 1};
    cudnnBackendDescriptor_t tq = cu_dnn_tensor(s, g, CU_SDPA_UID_Q, CUDNN_DATA_BFLOAT16, dq, sq, false, why, whylen);
    cudnnBackendDescriptor_t tk = tq ? cu_dnn_tensor(s, g, CU_SDPA_UID_K, CUDNN_DATA_BFLOAT16, dk, sq, false, why, whylen) : NULL;
    cudnnBackendDescriptor_t tv = tk ? cu_dnn_tensor(s, g, CU_SDPA_UID_V, CUDNN_DATA_BFLOAT16, dk, sq, false, why, whylen) : NULL;
    cudnnBackendDescriptor_t to = tv ? cu_dnn_tensor(s, g, CU_SDPA_UID_O, CUDNN_DATA_BFLOAT16, dq, so, false, why, whylen) : NULL;
    cudnnBackendDescriptor_t tsc = to ? cu_dnn_tensor(s, g, CU_SDPA_UID_SCALE, CUDNN_DATA_FLOAT, d1, d1, true, why, whylen) : NULL;
    if (!tsc) return NULL;
    cudnnBackendDescriptor_t tst = NULL;
    if (stats) {
        tst = cu_dnn_tensor(s, g, CU_SDPA_UID_STATS, CUDNN_DATA_FLOAT, dl, sl, false, why, whylen);
        if (!tst) return NULL;
    }
    cudnnBackendDescriptor_t op = cu_bag_new(s, g, CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, why, whylen);
    if (!op) return NULL;
    const cu_dnn_api_t *a = &s->api;
    CU_DNN_TRY(a->SetAttr(op, CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tq), "sdpa Q");
    CU_DNN_TRY(a->SetAttr(op, CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tk), "sdpa K");
    CU_DNN_TRY(a->SetAttr(op, CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tv), "sdpa V");
    CU_DNN_TRY(a->SetAttr(op, CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &to), "sdpa O");
    CU_DNN_TRY(a->SetAttr(op, CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tsc), "sdpa scale");
    if (stats)
        CU_DNN_TRY(a->SetAttr(op, CUDNN_ATTR_OPERATION_SDPA_FWD_STATSDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tst),
                   "sdpa stats");
    CU_DNN_TRY(a->Finalize(op), "sdpa operation finalize");

    cudnnBackendDescriptor_t graph = cu_bag_new(s, g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, why, whylen);
    if (!graph) return NULL;
    CU_DNN_TRY(a->SetAttr(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &s->handle), "graph handle");
    CU_DNN_TRY(a->SetAttr(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &op), "graph ops");
    CU_DNN_TRY(a->Finalize(graph), "graph finalize");

    cudnnBackendDescriptor_t heur = cu_bag_new(s, g, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, why, whylen);
    if (!heur) return NULL;
    cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    CU_DNN_TRY(a->SetAttr(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph),
               "heuristics graph");
    CU_DNN_TRY(a->SetAttr(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode), "heuristics mode");
    CU_DNN_TRY(a->Finalize(heur), "heuristics finalize");
    int64_t count = 0;
    CU_DNN_TRY(a->GetAttr(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL),
               "heuristics count");
    if (count <= 0) {
        snprintf(why, whylen, "no engine for this shape");
        return NULL;
    }
    if (count > 8) count = 8;
    cudnnBackendDescriptor_t cfgs[8];
    for (int64_t i = 0; i < count; i++) {
        cfgs[i] = cu_bag_new(s, g, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, why, whylen);
        if (!cfgs[i]) return NULL;
    }
    int64_t got = 0;
    CU_DNN_TRY(a->GetAttr(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, cfgs),
               "heuristics results");
    /* the first `want` configurations that build (heuristics order = expected speed) */
    cudnnStatus_t last = CUDNN_STATUS_NOT_SUPPORTED;
    *ncfg = (int)got;
    *nplans = 0;
    for (int64_t i = 0; i < got && *nplans < want; i++) {
        cudnnBackendDescriptor_t plan = NULL;
        if (a->CreateDesc(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan) != CUDNN_STATUS_SUCCESS) continue;
        last = a->SetAttr(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &s->handle);
        if (last == CUDNN_STATUS_SUCCESS)
            last = a->SetAttr(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfgs[i]);
        if (last == CUDNN_STATUS_SUCCESS) last = a->Finalize(plan);
        int64_t n = 0, w = 0;
        if (last == CUDNN_STATUS_SUCCESS)
            last = a->GetAttr(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n, &w);
        if (last == CUDNN_STATUS_SUCCESS) {
            plans[*nplans] = plan;
            ws[(*nplans)++] = w;
        } else {
            a->DestroyDesc(plan);
        }
    }
    if (*nplans > 0) return plans[0];
    snprintf(why, whylen, "no engine configuration builds (%lld tried; last: %s)", (long long)got,
             a->GetErrorString(last));
    return NULL;
}
#undef CU_DNN_TRY

/* Runs one plan on the backend's stream; a cuDNN status. */
static cudnnStatus_t cu_sdpa_exec(backend_t *b, cu_sdpa_t *s, cudnnBackendDescriptor_t plan, int64_t wsb,
                                  void *out, float *lse, const void *qkv, int NH, int HS) {
    void *ws = wsb > 0 ? cu_scratch(b, 1, (size_t)wsb) : NULL;
    float scale = 1.0f / sqrtf((float)HS);
    const __nv_bfloat16 *q = (const __nv_bfloat16 *)qkv;
    void *ptrs[6] = {(void *)q, (void *)(q + (size_t)NH * HS), (void *)(q + (size_t)2 * NH * HS), out, &scale, lse};
    int64_t uids[6] = {CU_SDPA_UID_Q, CU_SDPA_UID_K, CU_SDPA_UID_V, CU_SDPA_UID_O, CU_SDPA_UID_SCALE, CU_SDPA_UID_STATS};
    int64_t n = lse ? 6 : 5;
    const cu_dnn_api_t *a = &s->api;
    cudnnBackendDescriptor_t vp = NULL;
    cudnnStatus_t st = a->CreateDesc(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp);
    if (st == CUDNN_STATUS_SUCCESS)
        st = a->SetAttr(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs);
    if (st == CUDNN_STATUS_SUCCESS) st = a->SetAttr(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids);
    if (st == CUDNN_STATUS_SUCCESS) st = a->SetAttr(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws);
    if (st == CUDNN_STATUS_SUCCESS) st = a->Finalize(vp);
    if (st == CUDNN_STATUS_SUCCESS) st = a->Execute(s->handle, plan, vp);
    if (vp) a->DestroyDesc(vp);
    return st;
}

#define CU_SDPA_TUNE 4   /* candidates timed with TRAIND_CUDNN_AUTOTUNE=1 */

/* The plan for this shape: cached, else built (the heuristics' first engine
 * configuration; with TRAIND_CUDNN_AUTOTUNE=1, the fastest of the first
 * CU_SDPA_TUNE, each timed on this call's own tensors — the caller's run
 * overwrites whatever they wrote). One line on stderr per build. */
static cu_sdpa_plan_t *cu_sdpa_plan(backend_t *b, cu_sdpa_t *s, int Bn, int Tq, int T, int NH, int HS, void *out,
                                    float *lse, const void *qkv) {
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
    int nplans = 0, ncfg = 0;
    double t0 = cu_sdpa_now_ms();
    cudnnBackendDescriptor_t plan = cu_sdpa_build(s, &bag, Bn, Tq, T, NH, HS, stats, want, plans, ws, &nplans, &ncfg,
                                                  why, sizeof why);
    cu_bag_free(s, &bag);
    if (!plan) {
        fprintf(stderr, "traind: cuDNN fused attention unavailable for Bn=%d T=%d (%d query rows) NH=%d HS=%d (%s); "
                "using traind's own kernel\n", Bn, T, Tq, NH, HS, why);
        if (victim->valid && victim->plan) s->api.DestroyDesc(victim->plan);
        victim->valid = 1;   /* remembered as refused */
        victim->Bn = Bn; victim->Tq = Tq; victim->T = T; victim->NH = NH; victim->HS = HS; victim->stats = stats;
        victim->plan = NULL;
        victim->ws = 0;
        victim->last_use = ++s->clock;
        return NULL;
    }
    int best = 0;
    char times[128] = "";
    if (nplans > 1) {
        cudaEvent_t e0, e1;
        CU_CHECK(cudaEventCreate(&e0));
        CU_CHECK(cudaEventCreate(&e1));
        float best_ms = 1e30f;
        size_t tl = 0;
        for (int k = 0; k < nplans; k++) {
            float ms = 1e30f;
            if (cu_sdpa_exec(b, s, plans[k], ws[k], out, lse, qkv, NH, HS) == CUDNN_STATUS_SUCCESS) {   /* warm-up */
                CU_CHECK(cudaEventRecord(e0, cu_impl(b)->stream));
                int ok_ = 1;
                for (int r = 0; r < 3 && ok_; r++)
                    ok_ = cu_sdpa_exec(b, s, plans[k], ws[k], out, lse, qkv, NH, HS) == CUDNN_STATUS_SUCCESS;
                CU_CHECK(cudaEventRecord(e1, cu_impl(b)->stream));
                CU_CHECK(cudaEventSynchronize(e1));
                if (ok_) {
                    CU_CHECK(cudaEventElapsedTime(&ms, e0, e1));
                    ms /= 3;
                }
            }
            if (tl < sizeof times)
                tl += (size_t)snprintf(times + tl, sizeof times - tl, "%s%.3f", k ? "/" : " times ", ms);
            if (ms < best_ms) { best_ms = ms; best = k; }
        }
        CU_CHECK(cudaEventDestroy(e0));
        CU_CHECK(cudaEventDestroy(e1));
        for (int k = 0; k < nplans; k++) if (k != best) s->api.DestroyDesc(plans[k]);
    }
    fprintf(stderr, "traind: cuDNN fused attention Bn=%d T=%d (%d query rows) NH=%d HS=%d%s: engine config %d of %d, "
            "workspace %lld B, planned in %.0f ms%s%s\n", Bn, T, Tq, NH, HS, stats ? "" : " (no lse)", best + 1, ncfg,
            (long long)ws[best], cu_sdpa_now_ms() - t0, nplans > 1 ? ";" : "", times);
    if (victim->valid && victim->plan) s->api.DestroyDesc(victim->plan);
    victim->valid = 1;
    victim->Bn = Bn; victim->Tq = Tq; victim->T = T; victim->NH = NH; victim->HS = HS; victim->stats = stats;
    victim->plan = plans[best];
    victim->ws = ws[best];
    victim->last_use = ++s->clock;
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
    cu_sdpa_t *s = cu_sdpa_of(b);
    if (s->state == 0) s->state = cu_sdpa_init(b, s) == 0 ? 1 : -1;
    if (s->state < 0) return -1;
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
    cu_sdpa_plan_t *p = cu_sdpa_plan(b, s, Bn, Tq, T, NH, HS, out, lse, qkv);
    if (!p && split) {   /* cuDNN refused fewer query rows than keys: all rows through cuDNN from now on */
        s->no_split = 1;
        split = false;
        Tq = T;
        p = cu_sdpa_plan(b, s, Bn, Tq, T, NH, HS, out, lse, qkv);
    }
    if (!p) return -1;
    cudnnStatus_t st = cu_sdpa_exec(b, s, p->plan, p->ws, out, lse, qkv, NH, HS);
    if (st != CUDNN_STATUS_SUCCESS) {
        /* nothing ran: the caller's own kernel writes out and lse; cuDNN is not tried again */
        fprintf(stderr, "traind: cuDNN fused attention failed (%s); using traind's own kernel from now on\n",
                s->api.GetErrorString(st));
        s->state = -1;
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

void cu_sdpa_destroy(backend_t *b) {
    cu_impl_t *c = cu_impl(b);
    cu_sdpa_t *s = (cu_sdpa_t *)c->sdpa;
    if (!s) return;
    if (s->api.DestroyDesc)
        for (int i = 0; i < CU_SDPA_PLANS; i++)
            if (s->plans[i].valid && s->plans[i].plan) s->api.DestroyDesc(s->plans[i].plan);
    if (s->handle && s->api.Destroy) s->api.Destroy(s->handle);
    /* the library stays loaded: other backends of the process may use it */
    free(s);
    c->sdpa = NULL;
}
