/* gpu/collective.h — collectives among the ranks of one data-parallel job.
 *
 * A job on N devices runs N worker processes, ranks 0..N-1, one per device
 * (daemon/sched.c starts them). They meet through a rendezvous segment: a
 * small POSIX shared-memory object the daemon creates for the job
 * (coll_segment_create) and names in every rank's job file. It holds:
 *   - the abort word: set by a rank that fails (coll_abort) or by the daemon
 *     when a rank died (coll_segment_abort). On cpu every waiting rank sees
 *     it within ~50 ms and its collective returns -1 with the reason, so a
 *     dead rank never leaves the others hanging; a waiting rank also checks
 *     that its peers' processes are alive (a killed rank is noticed without
 *     anyone's help) and gives up after TRAIND_COLL_TIMEOUT_S (default 1800 s)
 *     in one wait. On cuda a rank may be blocked inside NCCL: a watcher thread
 *     looks at the word every 100 ms and ends the process when it is raised;
 *   - on cpu, the data slots the sums go through: each rank copies its part
 *     into its slot, every rank then sums a 1/N slice of the elements over
 *     the slots IN RANK ORDER (x0 + x1 + x2 ..., so a result is the same bits
 *     run after run, and the same on every rank), and copies the sum back —
 *     a reduce-scatter + all-gather through memory, chunk by chunk;
 *   - on cuda, the ncclUniqueId rank 0 creates (ncclGetUniqueId) and the
 *     others read; every collective on backend memory is NCCL's
 *     (gpu/cuda/nccl.cu, libnccl loaded at run time).
 *
 * The interface is the same on both backends, so the stages run one code
 * path: coll_allreduce sums a buffer of backend memory in place (on cuda
 * stream-ordered on a communication stream: coll_wait makes the backend's
 * stream wait for it; on cpu it is done when it returns), coll_buckets_*
 * launch the gradient buckets as the backward produces them (overlap),
 * coll_broadcast copies rank root's buffer to all, coll_allreduce_host sums
 * host doubles (small control values: stop flags, loss terms, metric
 * accumulators; synchronous), coll_gather_host concatenates host bytes on
 * rank 0, coll_barrier waits for everyone. Every call returns 0 or -1 with
 * err; after -1 the job is over (the caller fails; no collective is retried).
 *
 * A job of one rank needs no segment: coll_open_single gives a coll_t whose
 * calls are no-ops (the stages never test for "am I distributed").
 */
#ifndef TRAIND_COLLECTIVE_H
#define TRAIND_COLLECTIVE_H

#include <stddef.h>
#include "gpu/backend.h"

#define COLL_MAX_WORLD 16
#define COLL_NAME_MAX 96          /* a segment name, "/traind-<pid>-coll-..." */
#define COLL_UID_BYTES 128        /* sizeof(ncclUniqueId) */
#define COLL_HOST_MAX 1024        /* doubles per rank slot for coll_allreduce_host (longer: in rounds) */
#define COLL_CPU_CHUNK (1u << 20) /* floats per rank slot of a cpu segment (4 MB) */

typedef struct coll coll_t;

/* ---- the daemon's side ---------------------------------------------------- */
/* Creates the rendezvous segment of a job of `world` ranks on backend
 * be_name ("cpu": with data slots; "cuda": header only), named
 * "/traind-<pid>-coll-<job>-<random>" (so a later daemon sweeps it after a
 * crash, like the datasets' segments). 0 with name, or -1 with err. */
int coll_segment_create(const char *be_name, int world, const char *job, char name[COLL_NAME_MAX],
                        char *err, size_t errlen);
/* Sets the abort word (if not set yet) with the reason, e.g. "rank 1 (pid
 * 4242) was killed by signal 9": every rank's next or current collective
 * fails with it. Safe to call for a segment that is gone. */
void coll_segment_abort(const char *name, const char *why);
void coll_segment_unlink(const char *name);

/* ---- a rank's side ------------------------------------------------------- */
/* Joins the job's collectives as `rank` of `world` through the segment name:
 * waits until every rank has joined (cuda: creates or reads the NCCL id and
 * initializes the communicator on be's device). NULL with err. */
coll_t *coll_open(backend_t *be, const char *segment, int rank, int world, char *err, size_t errlen);
/* A world of one: every call a no-op that succeeds. */
coll_t *coll_open_single(backend_t *be);
void coll_close(coll_t *c);                 /* NULL is fine */
int coll_rank(const coll_t *c);
int coll_world(const coll_t *c);
/* Marks the job failed for everyone (a rank that cannot go on: its peers'
 * collectives return -1 with why). */
void coll_abort(coll_t *c, const char *why);

/* buf[n] f32 (backend memory) = the sum over ranks, in place. */
int coll_allreduce(coll_t *c, float *buf, size_t n, char *err, size_t errlen);
/* Work on the backend's stream after this sees every reduction started
 * before it complete (cpu: nothing to wait for). */
int coll_wait(coll_t *c, char *err, size_t errlen);
/* buf[bytes] (backend memory) on every rank = root's. */
int coll_broadcast(coll_t *c, void *buf, size_t bytes, int root, char *err, size_t errlen);
/* buf[n] host doubles = the sum over ranks (in rank order), on every rank. */
int coll_allreduce_host(coll_t *c, double *buf, size_t n, char *err, size_t errlen);
/* Rank 0's out = rank 0's bytes, then rank 1's, ... (bytes[r] from every
 * rank: all ranks pass the same sizes). out is only written on rank 0 (the
 * others may pass NULL); mine holds bytes[rank]. */
int coll_gather_host(coll_t *c, const void *mine, const size_t *bytes, void *out, char *err, size_t errlen);
int coll_barrier(coll_t *c, char *err, size_t errlen);

/* Gradient buckets overlapped with the backward. The backward finishes the
 * gradients from the END of the flat buffer towards its start (heads first,
 * embeddings last: gpu/model.h), so buckets are cut from the end:
 *   coll_buckets_begin(c, grads, n)      before the backward
 *   coll_buckets_ready(c, from)          every gradient at index >= from is final:
 *                                        reductions of the buckets inside [from, n) start
 *   coll_buckets_finish(c, err, errlen)  the rest start; then coll_wait
 * after which grads hold the sum over ranks. Bucket size: TRAIND_COLL_BUCKET_MB
 * (default 25 MB, like PyTorch DDP's). ready errors are kept and returned by finish. */
void coll_buckets_begin(coll_t *c, float *grads, size_t n);
void coll_buckets_ready(coll_t *c, size_t from);
int coll_buckets_finish(coll_t *c, char *err, size_t errlen);
/* Buckets launched by the last begin..finish (for tests). */
int coll_buckets_launched(const coll_t *c);

/* gpu/cuda/nccl.cu: NCCL behind the interface above (libnccl.so.2 loaded at
 * run time; TRAIND_NCCL_LIB names another file). Defined only in a CUDA build
 * (TRAIND_CUDA); collective.c calls them only there. */
typedef struct cu_nccl cu_nccl_t;
int cu_nccl_unique_id(unsigned char id[COLL_UID_BYTES], char *err, size_t errlen);
cu_nccl_t *cu_nccl_open(backend_t *be, const unsigned char id[COLL_UID_BYTES], int rank, int world,
                        char *err, size_t errlen);
void cu_nccl_close(cu_nccl_t *n, int abort);
int cu_nccl_allreduce(cu_nccl_t *n, float *buf, size_t count, char *err, size_t errlen);
int cu_nccl_wait(cu_nccl_t *n, char *err, size_t errlen);
int cu_nccl_broadcast(cu_nccl_t *n, void *buf, size_t bytes, int root, char *err, size_t errlen);
int cu_nccl_allreduce_host(cu_nccl_t *n, double *buf, size_t count, char *err, size_t errlen);
int cu_nccl_gather_host(cu_nccl_t *n, const void *mine, const size_t *bytes, void *out, char *err, size_t errlen);

#endif
