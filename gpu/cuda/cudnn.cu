/* gpu/cuda/cudnn.cu — cuDNN at run time: loading the library (dlopen), the
 * backend's handle, and the pieces every graph of the backend is built and
 * run with (descriptor bag, tensors, plans from the heuristics, execution,
 * timing). See dnn.h. Environment: TRAIND_CUDNN_LIB = path of libcudnn.so.9
 * (default: the loader's search, then a few usual places, cu_dlopen_lib). */
#include <dlfcn.h>
#include <cstring>
#include <time.h>
#include "gpu/cuda/dnn.h"

double cu_dnn_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* Loads cuDNN and creates the handle; 0 on success, else -1 with why[]. */
static int cu_dnn_init(backend_t *b, cu_dnn_t *d, char *why, size_t whylen) {
    cu_dnn_api_t *a = &d->api;
    a->lib = cu_dlopen_lib("TRAIND_CUDNN_LIB", "libcudnn.so.9", "cudnn", why, whylen);
    if (!a->lib) return -1;
#define CU_DNN_SYM(field, name) do {                                                          \
        *(void **)&a->field = dlsym(a->lib, #name);                                           \
        if (!a->field) {                                                                      \
            snprintf(why, whylen, "cuDNN lacks %s", #name);                                   \
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
    if (ver < 90000) {   /* the backend graph API of cuDNN 9 */
        snprintf(why, whylen, "cuDNN %zu older than 9", ver);
        return -1;
    }
    cudnnStatus_t st = a->Create(&d->handle);
    if (st == CUDNN_STATUS_SUCCESS) st = a->SetStream(d->handle, cu_impl(b)->stream);
    if (st != CUDNN_STATUS_SUCCESS) {
        snprintf(why, whylen, "cudnnCreate: %s", a->GetErrorString(st));
        if (d->handle) a->Destroy(d->handle);
        d->handle = NULL;
        return -1;
    }
    return 0;
}

cu_dnn_t *cu_dnn(backend_t *b, const char *user) {
    cu_impl_t *c = cu_impl(b);
    if (!c->dnn) {
        c->dnn = calloc(1, sizeof(cu_dnn_t));
        if (!c->dnn) return NULL;
    }
    cu_dnn_t *d = (cu_dnn_t *)c->dnn;
    if (d->state == 0) {
        char why[512] = "";
        d->state = cu_dnn_init(b, d, why, sizeof why) == 0 ? 1 : -1;
        if (d->state < 0) fprintf(stderr, "traind: cuDNN: %s; %s uses traind's own kernels\n", why, user);
    }
    return d->state > 0 ? d : NULL;
}

void cu_dnn_destroy(backend_t *b) {
    cu_impl_t *c = cu_impl(b);
    cu_dnn_t *d = (cu_dnn_t *)c->dnn;
    if (!d) return;
    if (d->handle && d->api.Destroy) d->api.Destroy(d->handle);
    /* the library stays loaded: other backends of the process may use it */
    free(d);
    c->dnn = NULL;
}

void cu_dnn_bag_free(cu_dnn_t *d, cu_dnn_bag_t *g) {
    for (int i = g->n - 1; i >= 0; i--) if (g->d[i]) d->api.DestroyDesc(g->d[i]);
    g->n = 0;
}

/* A step of a build: on failure, say which and why, and fail the build. */
#define CU_DNN_TRY(call, what, fail) do {                                                    \
        cudnnStatus_t st_ = (call);                                                          \
        if (st_ != CUDNN_STATUS_SUCCESS) {                                                   \
            snprintf(why, whylen, "%s: %s", what, d->api.GetErrorString(st_));               \
            return fail;                                                                     \
        }                                                                                    \
    } while (0)

cudnnBackendDescriptor_t cu_dnn_new(cu_dnn_t *d, cu_dnn_bag_t *g, cudnnBackendDescriptorType_t t, char *why,
                                    size_t whylen) {
    if (g->n >= (int)(sizeof g->d / sizeof g->d[0])) {
        snprintf(why, whylen, "too many descriptors");
        return NULL;
    }
    cudnnBackendDescriptor_t x = NULL;
    CU_DNN_TRY(d->api.CreateDesc(t, &x), "create descriptor", NULL);
    g->d[g->n++] = x;
    return x;
}

cudnnBackendDescriptor_t cu_dnn_tensor(cu_dnn_t *d, cu_dnn_bag_t *g, int64_t uid, cudnnDataType_t dt, int nd,
                                       const int64_t *dim, const int64_t *str, int flags, char *why, size_t whylen) {
    cudnnBackendDescriptor_t t = cu_dnn_new(d, g, CUDNN_BACKEND_TENSOR_DESCRIPTOR, why, whylen);
    if (!t) return NULL;
    const cu_dnn_api_t *a = &d->api;
    int64_t align = (flags & CU_DNN_BY_VALUE) ? 4 : 16;
    CU_DNN_TRY(a->SetAttr(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt), "tensor dtype", NULL);
    CU_DNN_TRY(a->SetAttr(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, nd, dim), "tensor dims", NULL);
    CU_DNN_TRY(a->SetAttr(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, nd, str), "tensor strides", NULL);
    CU_DNN_TRY(a->SetAttr(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid), "tensor uid", NULL);
    CU_DNN_TRY(a->SetAttr(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align), "tensor alignment", NULL);
    bool yes = true;
    if (flags & CU_DNN_BY_VALUE)
        CU_DNN_TRY(a->SetAttr(t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &yes), "tensor by value", NULL);
    if (flags & CU_DNN_VIRTUAL)
        CU_DNN_TRY(a->SetAttr(t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &yes), "tensor virtual", NULL);
    CU_DNN_TRY(a->Finalize(t), "tensor finalize", NULL);
    return t;
}

/* The engine configurations the heuristics offer in one mode (at most max),
 * in the bag; how many, 0 with why[] when none. */
static int cu_dnn_heur(cu_dnn_t *d, cu_dnn_bag_t *g, cudnnBackendDescriptor_t graph, cudnnBackendHeurMode_t mode,
                       cudnnBackendDescriptor_t *cfgs, int max, char *why, size_t whylen) {
    const cu_dnn_api_t *a = &d->api;
    cudnnBackendDescriptor_t heur = cu_dnn_new(d, g, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, why, whylen);
    if (!heur) return 0;
    CU_DNN_TRY(a->SetAttr(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph),
               "heuristics graph", 0);
    CU_DNN_TRY(a->SetAttr(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode), "heuristics mode", 0);
    CU_DNN_TRY(a->Finalize(heur), "heuristics finalize", 0);
    int64_t count = 0;
    CU_DNN_TRY(a->GetAttr(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL),
               "heuristics count", 0);
    if (count <= 0) {
        snprintf(why, whylen, "no engine for this graph");
        return 0;
    }
    if (count > max) count = max;
    for (int64_t i = 0; i < count; i++) {
        cfgs[i] = cu_dnn_new(d, g, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, why, whylen);
        if (!cfgs[i]) return 0;
    }
    int64_t got = 0;
    CU_DNN_TRY(a->GetAttr(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, cfgs),
               "heuristics results", 0);
    return (int)got;
}

int cu_dnn_plans(cu_dnn_t *d, cu_dnn_bag_t *g, cudnnBackendDescriptor_t *ops, int nops, int want,
                 cudnnBackendDescriptor_t *plans, int64_t *ws, int *ncfg, char *why, size_t whylen) {
    const cu_dnn_api_t *a = &d->api;
    *ncfg = 0;
    cudnnBackendDescriptor_t graph = cu_dnn_new(d, g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, why, whylen);
    if (!graph) return 0;
    CU_DNN_TRY(a->SetAttr(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &d->handle), "graph handle", 0);
    CU_DNN_TRY(a->SetAttr(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, nops, ops), "graph ops", 0);
    CU_DNN_TRY(a->Finalize(graph), "graph finalize", 0);
    static const cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    cudnnStatus_t last = CUDNN_STATUS_NOT_SUPPORTED;
    int nplans = 0;
    for (int mi = 0; mi < 2 && nplans == 0; mi++) {
        cudnnBackendDescriptor_t cfgs[8];
        int got = cu_dnn_heur(d, g, graph, modes[mi], cfgs, 8, why, whylen);
        *ncfg += got;
        /* the first `want` configurations that build (heuristics order = expected speed) */
        for (int i = 0; i < got && nplans < want; i++) {
            cudnnBackendDescriptor_t plan = NULL;
            if (a->CreateDesc(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan) != CUDNN_STATUS_SUCCESS) continue;
            last = a->SetAttr(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &d->handle);
            if (last == CUDNN_STATUS_SUCCESS)
                last = a->SetAttr(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                  &cfgs[i]);
            if (last == CUDNN_STATUS_SUCCESS) last = a->Finalize(plan);
            int64_t n = 0, w = 0;
            if (last == CUDNN_STATUS_SUCCESS)
                last = a->GetAttr(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n, &w);
            if (last == CUDNN_STATUS_SUCCESS) {
                plans[nplans] = plan;
                ws[nplans++] = w;
            } else {
                a->DestroyDesc(plan);
            }
        }
    }
    if (nplans == 0 && *ncfg > 0)
        snprintf(why, whylen, "no engine configuration builds (%d tried; last: %s)", *ncfg, a->GetErrorString(last));
    return nplans;
}
#undef CU_DNN_TRY

cudnnStatus_t cu_dnn_exec(backend_t *b, cu_dnn_t *d, cudnnBackendDescriptor_t plan, int64_t wsb, int n,
                          const int64_t *uids, void *const *ptrs) {
    void *ws = wsb > 0 ? cu_scratch(b, 1, (size_t)wsb) : NULL;
    const cu_dnn_api_t *a = &d->api;
    cudnnBackendDescriptor_t vp = NULL;
    cudnnStatus_t st = a->CreateDesc(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp);
    if (st == CUDNN_STATUS_SUCCESS)
        st = a->SetAttr(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs);
    if (st == CUDNN_STATUS_SUCCESS) st = a->SetAttr(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids);
    if (st == CUDNN_STATUS_SUCCESS) st = a->SetAttr(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws);
    if (st == CUDNN_STATUS_SUCCESS) st = a->Finalize(vp);
    if (st == CUDNN_STATUS_SUCCESS) st = a->Execute(d->handle, plan, vp);
    if (vp) a->DestroyDesc(vp);
    return st;
}

/* cu_time_ms's run: one execution of a plan. */
typedef struct {
    cu_dnn_t *d;
    cudnnBackendDescriptor_t plan;
    int64_t wsb;
    int n;
    const int64_t *uids;
    void *const *ptrs;
} cu_dnn_run_t;

static int cu_dnn_run(backend_t *b, void *ctx) {
    const cu_dnn_run_t *r = (const cu_dnn_run_t *)ctx;
    return cu_dnn_exec(b, r->d, r->plan, r->wsb, r->n, r->uids, r->ptrs) == CUDNN_STATUS_SUCCESS ? 0 : -1;
}

float cu_dnn_time(backend_t *b, cu_dnn_t *d, cudnnBackendDescriptor_t plan, int64_t wsb, int n,
                  const int64_t *uids, void *const *ptrs) {
    cu_dnn_run_t r = {d, plan, wsb, n, uids, ptrs};
    return cu_time_ms(b, cu_dnn_run, &r);
}
