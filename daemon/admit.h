/* daemon/admit.h — what a job may ask of the machine, decided before a worker
 * runs it.
 *
 * At submission (daemon_job_submit), against the dataset's record:
 *   - `indices` must name samples the dataset has (422 naming the entry);
 *   - batch_size becomes the effective batch, at most the samples one batch
 *     can draw from (stage_effective_batch); the stored spec holds it and the
 *     job's events say so;
 *   - the job's memory (stage_memory_estimate: parameters, working copy,
 *     gradients, AdamW moments, activations for the batch, buffers, a
 *     workspace allowance; infer outputs on the host) must fit some device's
 *     room, else 507 insufficient_storage with the estimate and the room.
 * A device's room at submission is its free memory plus what the job running
 * on it holds (it ends before this one starts: one job per device) — on the
 * CPU backend the host's available memory (MemAvailable, cgroup-aware) plus
 * the running worker's anonymous memory — capped by --job-memory-gb. On cuda
 * the host part of the estimate is checked against the host's available
 * memory too.
 * At start (the scheduler, for the device it picked): the same estimate
 * against that device's free memory now, so a job that no longer fits fails
 * with that message instead of its worker running out of memory.
 * Jobs whose dataset size is not known yet (still loading) are checked at
 * start only.
 * A job on several devices ("devices"): they must exist (422 naming the
 * entry), and each rank's share of the batch (ceil(batch / N)) must fit each
 * of its devices (the N roomiest, or those listed); on the cpu backend the
 * virtual devices share the host, so N ranks' estimates must fit it together.
 * A job on a dataset sharded across the devices runs on all of them: without
 * "devices" it gets that count (the stored spec and the job's events say
 * so); an explicit "devices" other than all of them (a 1 included) is 422
 * naming the field, and a debug job (one device) is 422 naming the dataset.
 * The placement counts from the moment it is decided (a synthetic or on-disk
 * dataset: at its load request; an import: once decoded), so such jobs are
 * refused at submission even while the dataset loads; the scheduler checks
 * again at start (admit_sharded_why) for what was not known yet. */
#ifndef TRAIND_ADMIT_H
#define TRAIND_ADMIT_H

#include <jansson.h>
#include "daemon/daemon.h"
#include "gpu/jobspec.h"

/* Resolves js against the dataset record ds ("samples", "image_size"):
 * checks indices, caps batch_size (*requested = the batch asked for when it
 * was lowered, else 0) and checks the memory estimate (submission room).
 * 0, or -1 with e (422 for indices, 507 for memory). */
int admit_submission(daemon_t *d, jobspec_t *js, const json_t *ds, int *requested, daemon_err_t *e);
/* The job's devices against this daemon's (and a sharded dataset's, shards
 * > 1): 0 (js->devices set to the shard count when the spec named none:
 * *expanded = 1), or -1 with e (422). */
int admit_devices(daemon_t *d, jobspec_t *js, int shards, int *expanded, daemon_err_t *e);
/* Why a job cannot run on dataset `dataset` sharded across `shards` devices
 * (a debug job, or `devices` other than all of them), into msg; -1. */
int admit_sharded_why(char *msg, size_t msglen, const char *dataset, int shards, int debug);
/* An info line in job id's events (a "log" event carrying `extra`'s fields,
 * which it takes) and in the daemon's log. */
void admit_note(daemon_t *d, const char *id, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The note of a job without "devices" put on every device of a sharded dataset. */
void admit_note_sharded(daemon_t *d, const char *id, const char *dataset, int shards);

/* The start-time check of a queued job (its stored spec) on device slots
 * slots[0..n) (one rank each), its dataset's record ds being resident: 0 when
 * it fits on every one (or cannot be estimated: the worker then reports), -1
 * with msg. */
int admit_start(daemon_t *d, const json_t *spec, const int *slots, int n, const json_t *ds, char *msg, size_t msglen);

/* Memory the job running on device slot holds (cpu: its worker pid's
 * anonymous resident memory; cuda: device memory in use beyond what was in use
 * while the device was idle), given the device's free/total now; -1 unknown. */
long long admit_job_bytes(daemon_t *d, int slot, int pid, size_t free_b, size_t total_b);

#endif
