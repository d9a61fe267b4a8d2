/* gpu/cuda/dnn.h — cuDNN's graph API as the CUDA backend uses it (cudnn.cu).
 *
 * cuDNN is loaded at run time (dlopen): a machine without it runs traind on
 * its own kernels and cuBLASLt. One cu_dnn_t per backend (its handle on the
 * backend's stream), made on first use by cu_dnn(); its user (sdpa_cudnn.cu:
 * fused attention) builds graphs of a few operations with the helpers below
 * and keeps its own cache of execution plans. Nothing here is fatal: a cuDNN failure is a
 * status or NULL with a reason, and the caller takes its own path. */
#ifndef TRAIND_CUDA_DNN_H
#define TRAIND_CUDA_DNN_H

#include <cudnn_graph.h>
#include "gpu/cuda/cuda_common.h"

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

typedef struct {
    int state;                      /* 0 untried, 1 ready, -1 unavailable */
    cu_dnn_api_t api;
    cudnnHandle_t handle;
} cu_dnn_t;

/* The backend's cuDNN, loaded and its handle made on the first call; NULL
 * when unavailable (said once on stderr, with `user` naming what falls back). */
cu_dnn_t *cu_dnn(backend_t *b, const char *user);
void cu_dnn_destroy(backend_t *b);

/* Descriptors made while building one plan, destroyed together. */
typedef struct {
    cudnnBackendDescriptor_t d[64];
    int n;
} cu_dnn_bag_t;
void cu_dnn_bag_free(cu_dnn_t *d, cu_dnn_bag_t *g);
/* A new descriptor of type t in the bag; NULL with why[] on failure. */
cudnnBackendDescriptor_t cu_dnn_new(cu_dnn_t *d, cu_dnn_bag_t *g, cudnnBackendDescriptorType_t t, char *why,
                                    size_t whylen);

enum { CU_DNN_BY_VALUE = 1, CU_DNN_VIRTUAL = 2 };
/* A finalized tensor descriptor of nd dims (dim, str in elements): a real
 * tensor (16-byte aligned), a host scalar passed by value (CU_DNN_BY_VALUE) or
 * an intermediate that never reaches memory (CU_DNN_VIRTUAL). */
cudnnBackendDescriptor_t cu_dnn_tensor(cu_dnn_t *d, cu_dnn_bag_t *g, int64_t uid, cudnnDataType_t dt, int nd,
                                       const int64_t *dim, const int64_t *str, int flags, char *why, size_t whylen);

/* An operation graph of nops finalized operations -> up to `want` execution
 * plans (heuristics mode A, then the fallback list), in the heuristics' order,
 * with their workspace sizes. The plans are the caller's (not in the bag).
 * Returns the number of plans (0 with why[] when none builds); *ncfg = the
 * engine configurations offered. */
int cu_dnn_plans(cu_dnn_t *d, cu_dnn_bag_t *g, cudnnBackendDescriptor_t *ops, int nops, int want,
                 cudnnBackendDescriptor_t *plans, int64_t *ws, int *ncfg, char *why, size_t whylen);

/* Runs a plan on the backend's stream with n tensors (uids[i] at ptrs[i]; a
 * by-value tensor's pointer is the host value's) and a workspace of wsb bytes
 * (scratch slot 1). A cuDNN status; nothing is enqueued when it fails. */
cudnnStatus_t cu_dnn_exec(backend_t *b, cu_dnn_t *d, cudnnBackendDescriptor_t plan, int64_t wsb, int n,
                          const int64_t *uids, void *const *ptrs);

/* Milliseconds a plan takes (a warm-up, then the mean of 3 runs timed with
 * events on the backend's stream); 1e30 when it fails to run. */
float cu_dnn_time(backend_t *b, cu_dnn_t *d, cudnnBackendDescriptor_t plan, int64_t wsb, int n,
                  const int64_t *uids, void *const *ptrs);

/* Wall-clock milliseconds (plan-building times in the log lines). */
double cu_dnn_now_ms(void);
#endif
