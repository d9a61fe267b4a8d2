/* gpu/cuda/nccl.cu — the collectives of a multi-GPU job through NCCL (the
 * cuda side of gpu/collective.h).
 *
 * Owns: loading libnccl at run time (dlopen, like cuDNN: a machine without
 * NCCL still runs single-GPU jobs; TRAIND_NCCL_LIB names the file, else
 * libnccl.so.2 by the loader's search and the CUDA tree), one communicator per
 * rank (ncclCommInitRank on the backend's device with the id rank 0 created
 * and published through the job's rendezvous segment), and a communication
 * stream.
 *
 * Ordering: cu_nccl_allreduce (the gradient buckets) records an event on the
 * backend's compute stream, makes the communication stream wait for it and
 * enqueues ncclAllReduce there — so a bucket's reduction runs while the
 * backward goes on computing the blocks below it; cu_nccl_wait makes the
 * compute stream wait for everything enqueued on the communication stream
 * (the optimizer then reads summed gradients). Broadcast, host sums and the
 * gather run on the compute stream and synchronize (they are rare: start,
 * one small sum per step, checkpoints, the end of eval/infer).
 *
 * Failures: an NCCL call that fails returns -1 with NCCL's message (the
 * worker fails and raises the job's abort word); a rank blocked inside NCCL
 * when a peer dies is ended by gpu/collective.c's watcher thread. */
#include <dlfcn.h>
#include <cstring>
#include <nccl.h>
#include "gpu/cuda/cuda_common.h"

extern "C" {
#include "gpu/collective.h"
#include "store/errbuf.h"
}

typedef struct {
    void *lib;
    decltype(&ncclGetVersion) GetVersion;
    decltype(&ncclGetUniqueId) GetUniqueId;
    decltype(&ncclCommInitRank) CommInitRank;
    decltype(&ncclCommDestroy) CommDestroy;
    decltype(&ncclCommAbort) CommAbort;
    decltype(&ncclCommGetAsyncError) CommGetAsyncError;
    decltype(&ncclGetErrorString) GetErrorString;
    decltype(&ncclAllReduce) AllReduce;
    decltype(&ncclBroadcast) Broadcast;
    decltype(&ncclSend) Send;
    decltype(&ncclRecv) Recv;
    decltype(&ncclGroupStart) GroupStart;
    decltype(&ncclGroupEnd) GroupEnd;
} cu_nccl_api_t;

struct cu_nccl {
    backend_t *be;
    cu_nccl_api_t api;
    ncclComm_t comm;
    int rank, world;
    cudaStream_t comm_stream;
    cudaEvent_t ev_compute, ev_comm;
    int pending;                  /* reductions enqueued since the last wait */
    void *scratch;                /* device staging for host sums and the gather */
    size_t scratch_bytes;
};

#define CU_NCCL_GATHER_CHUNK ((size_t)64 << 20)

static int cu_nccl_load(cu_nccl_api_t *a, char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    char why[512];
    a->lib = cu_dlopen_lib("TRAIND_NCCL_LIB", "libnccl.so.2", "nccl", why, sizeof why);
    if (!a->lib) return errbuf_set(err, errlen, "NCCL: %s", why);
#define CU_NCCL_SYM(field, name) do {                                                     \
        *(void **)&a->field = dlsym(a->lib, #name);                                       \
        if (!a->field) return errbuf_set(err, errlen, "NCCL: the library lacks %s", #name); \
    } while (0)
    CU_NCCL_SYM(GetVersion, ncclGetVersion);
    CU_NCCL_SYM(GetUniqueId, ncclGetUniqueId);
    CU_NCCL_SYM(CommInitRank, ncclCommInitRank);
    CU_NCCL_SYM(CommDestroy, ncclCommDestroy);
    CU_NCCL_SYM(CommAbort, ncclCommAbort);
    CU_NCCL_SYM(CommGetAsyncError, ncclCommGetAsyncError);
    CU_NCCL_SYM(GetErrorString, ncclGetErrorString);
    CU_NCCL_SYM(AllReduce, ncclAllReduce);
    CU_NCCL_SYM(Broadcast, ncclBroadcast);
    CU_NCCL_SYM(Send, ncclSend);
    CU_NCCL_SYM(Recv, ncclRecv);
    CU_NCCL_SYM(GroupStart, ncclGroupStart);
    CU_NCCL_SYM(GroupEnd, ncclGroupEnd);
#undef CU_NCCL_SYM
    int v = 0;
    if (a->GetVersion(&v) != ncclSuccess || v < 20700)   /* ncclSend/ncclRecv: 2.7 */
        return errbuf_set(err, errlen, "NCCL: version %d is older than 2.7", v);
    return 0;
}

static int cu_nccl_fail(cu_nccl_t *n, ncclResult_t r, const char *what, char *err, size_t errlen) {
    return errbuf_set(err, errlen, "NCCL %s (rank %d of %d): %s", what, n->rank, n->world, n->api.GetErrorString(r));
}

/* A failed NCCL call returns from the enclosing function with -1 and the message. */
#define CU_NCCL_TRY(n, call, what) do {                                          \
        ncclResult_t r_ = (call);                                                \
        if (r_ != ncclSuccess) return cu_nccl_fail((n), r_, (what), err, errlen); \
    } while (0)

extern "C" int cu_nccl_unique_id(unsigned char id[COLL_UID_BYTES], char *err, size_t errlen) {
    static_assert(sizeof(ncclUniqueId) == COLL_UID_BYTES, "COLL_UID_BYTES must be sizeof(ncclUniqueId)");
    cu_nccl_api_t a;
    if (cu_nccl_load(&a, err, errlen)) return -1;
    ncclUniqueId u;
    ncclResult_t r = a.GetUniqueId(&u);
    /* the library stays loaded: the id's bootstrap root lives in this process */
    if (r != ncclSuccess) return errbuf_set(err, errlen, "NCCL ncclGetUniqueId: %s", a.GetErrorString(r));
    memcpy(id, &u, COLL_UID_BYTES);
    return 0;
}

extern "C" cu_nccl_t *cu_nccl_open(backend_t *be, const unsigned char id[COLL_UID_BYTES], int rank, int world,
                                   char *err, size_t errlen) {
    cu_nccl_t *n = (cu_nccl_t *)calloc(1, sizeof *n);
    if (!n) { errbuf_set(err, errlen, "out of memory"); return NULL; }
    n->be = be;
    n->rank = rank;
    n->world = world;
    if (cu_nccl_load(&n->api, err, errlen)) { free(n); return NULL; }
    cu_enter(be);
    ncclUniqueId u;
    memcpy(&u, id, COLL_UID_BYTES);
    ncclResult_t r = n->api.CommInitRank(&n->comm, world, u, rank);
    if (r != ncclSuccess) {
        cu_nccl_fail(n, r, "ncclCommInitRank", err, errlen);
        dlclose(n->api.lib);
        free(n);
        return NULL;
    }
    CU_CHECK(cudaStreamCreateWithFlags(&n->comm_stream, cudaStreamNonBlocking));
    CU_CHECK(cudaEventCreateWithFlags(&n->ev_compute, cudaEventDisableTiming));
    CU_CHECK(cudaEventCreateWithFlags(&n->ev_comm, cudaEventDisableTiming));
    return n;
}

extern "C" void cu_nccl_close(cu_nccl_t *n, int abort) {
    if (!n) return;
    cu_enter(n->be);
    if (abort) n->api.CommAbort(n->comm);
    else {
        cudaStreamSynchronize(n->comm_stream);
        n->api.CommDestroy(n->comm);
    }
    cudaEventDestroy(n->ev_compute);
    cudaEventDestroy(n->ev_comm);
    cudaStreamDestroy(n->comm_stream);
    if (n->scratch) cudaFree(n->scratch);
    /* the library stays loaded: NCCL's threads may still be winding down */
    free(n);
}

static void *cu_nccl_scratch(cu_nccl_t *n, size_t bytes) {
    if (bytes > n->scratch_bytes) {
        if (n->scratch) CU_CHECK(cudaFree(n->scratch));
        CU_CHECK(cudaMalloc(&n->scratch, bytes));
        n->scratch_bytes = bytes;
    }
    return n->scratch;
}

extern "C" int cu_nccl_allreduce(cu_nccl_t *n, float *buf, size_t count, char *err, size_t errlen) {
    cu_enter(n->be);
    cudaStream_t cs = cu_impl(n->be)->stream;
    CU_CHECK(cudaEventRecord(n->ev_compute, cs));
    CU_CHECK(cudaStreamWaitEvent(n->comm_stream, n->ev_compute, 0));
    CU_NCCL_TRY(n, n->api.AllReduce(buf, buf, count, ncclFloat32, ncclSum, n->comm, n->comm_stream), "ncclAllReduce");
    n->pending++;
    return 0;
}

extern "C" int cu_nccl_wait(cu_nccl_t *n, char *err, size_t errlen) {
    cu_enter(n->be);
    ncclResult_t ar = ncclSuccess;
    if (n->api.CommGetAsyncError(n->comm, &ar) == ncclSuccess && ar != ncclSuccess)
        return cu_nccl_fail(n, ar, "asynchronous error", err, errlen);
    if (!n->pending) return 0;
    CU_CHECK(cudaEventRecord(n->ev_comm, n->comm_stream));
    CU_CHECK(cudaStreamWaitEvent(cu_impl(n->be)->stream, n->ev_comm, 0));
    n->pending = 0;
    return 0;
}

extern "C" int cu_nccl_broadcast(cu_nccl_t *n, void *buf, size_t bytes, int root, char *err, size_t errlen) {
    if (cu_nccl_wait(n, err, errlen)) return -1;
    cudaStream_t cs = cu_impl(n->be)->stream;
    CU_NCCL_TRY(n, n->api.Broadcast(buf, buf, bytes, ncclUint8, root, n->comm, cs), "ncclBroadcast");
    CU_CHECK(cudaStreamSynchronize(cs));
    return 0;
}

extern "C" int cu_nccl_allreduce_host(cu_nccl_t *n, double *buf, size_t count, char *err, size_t errlen) {
    if (cu_nccl_wait(n, err, errlen)) return -1;
    cudaStream_t cs = cu_impl(n->be)->stream;
    double *d = (double *)cu_nccl_scratch(n, count * sizeof(double));
    CU_CHECK(cudaMemcpyAsync(d, buf, count * sizeof(double), cudaMemcpyHostToDevice, cs));
    CU_NCCL_TRY(n, n->api.AllReduce(d, d, count, ncclFloat64, ncclSum, n->comm, cs), "ncclAllReduce (host values)");
    CU_CHECK(cudaMemcpyAsync(buf, d, count * sizeof(double), cudaMemcpyDeviceToHost, cs));
    CU_CHECK(cudaStreamSynchronize(cs));
    return 0;
}

/* Rank r's bytes go to rank 0 through device staging, chunk by chunk, as
 * point-to-point sends (NCCL moves device memory only). */
extern "C" int cu_nccl_gather_host(cu_nccl_t *n, const void *mine, const size_t *bytes, void *out, char *err,
                                   size_t errlen) {
    if (cu_nccl_wait(n, err, errlen)) return -1;
    cudaStream_t cs = cu_impl(n->be)->stream;
    size_t at = bytes[0];
    if (n->rank == 0 && bytes[0]) memcpy(out, mine, bytes[0]);
    void *d = cu_nccl_scratch(n, CU_NCCL_GATHER_CHUNK);
    for (int r = 1; r < n->world; r++) {
        for (size_t off = 0; off < bytes[r]; off += CU_NCCL_GATHER_CHUNK) {
            size_t m = bytes[r] - off < CU_NCCL_GATHER_CHUNK ? bytes[r] - off : CU_NCCL_GATHER_CHUNK;
            if (n->rank == r) {
                CU_CHECK(cudaMemcpyAsync(d, (const char *)mine + off, m, cudaMemcpyHostToDevice, cs));
                CU_NCCL_TRY(n, n->api.Send(d, m, ncclUint8, 0, n->comm, cs), "ncclSend");
                CU_CHECK(cudaStreamSynchronize(cs));
            } else if (n->rank == 0) {
                CU_NCCL_TRY(n, n->api.Recv(d, m, ncclUint8, r, n->comm, cs), "ncclRecv");
                CU_CHECK(cudaMemcpyAsync((char *)out + at + off, d, m, cudaMemcpyDeviceToHost, cs));
                CU_CHECK(cudaStreamSynchronize(cs));
            }
        }
        at += bytes[r];
    }
    return 0;
}
