/* daemon/residency.h — resident datasets, owned by the daemon.
 *
 * A dataset is loaded once (in a background thread, one load at a time) into
 * shared backend memory on every device the daemon uses (POSIX shm on cpu,
 * CUDA IPC on cuda) and stays there across jobs until deleted. Workers open it
 * by handle + layout JSON. The store records every dataset, so the daemon
 * loads them again when it starts. Synthetic datasets are generated into
 * <state>/work/synthetic/<name>/ first (kept for reloads).
 *
 * Memory is accounted before anything is allocated (res_plan): a dataset
 * that fits in every device's free memory less --memory-reserve-gb less what
 * other loads in progress will take is REPLICATED (every device holds all of
 * it); one that does not but whose 1/D fits each of the D devices is SHARDED
 * (device s holds the contiguous samples [N·s/D, N·(s+1)/D)); only when
 * neither fits is the request refused (507). On the cpu backend the virtual
 * devices share the host's memory (and /dev/shm), so the sum is what counts,
 * and --cpu-device-memory-gb gives each a capacity of its own. The record
 * says which ("residency") and what each device holds ("devices":
 * [{"index","bytes","samples":[first, end)}]). A job on a sharded dataset
 * runs on every device, rank r on shard r's.
 */
#ifndef TRAIND_RESIDENCY_H
#define TRAIND_RESIDENCY_H

#include <jansson.h>
#include "daemon/daemon.h"

residency_t *residency_create(daemon_t *d);
/* Cancels loads in progress, waits for them, frees every resident allocation. */
void residency_destroy(residency_t *r);
/* Start-up: every dataset recorded as loading or ready is loaded again. */
void residency_reload_all(residency_t *r);

/* Validates the request body (see daemon_dataset_load), records the dataset
 * and starts loading it. Returns the record or NULL with e. */
json_t *residency_load(residency_t *r, const json_t *body, daemon_err_t *e);
/* 409 while in use (queued/running jobs, or a worker holding it); 404 unknown. */
int residency_delete(residency_t *r, const char *name, daemon_err_t *e);
/* Adds live fields to a store record: "progress", "gb_per_s" while loading,
 * "phase", "residency" ("replicated" | "sharded") and
 * "devices":[{"index","bytes","samples":[first, end)}] for resident memory. */
void residency_decorate(residency_t *r, json_t *rec);

/* For a job about to start on device slots[0..n) (one per rank): 0 = ready (a
 * reference is taken; *shares = [{"handle","bytes","layout","first","samples"}],
 * each rank's share, new reference), 1 = still loading, -1 = failed or
 * unknown, or sharded and the slots are not every shard's device (msg says
 * why). */
int residency_acquire(residency_t *r, const char *name, const int *slots, int n, json_t **shares,
                      char *msg, size_t msglen);
/* How the dataset is resident: -1 unknown or failed, 0 still loading, 1
 * replicated, D > 1 sharded across D devices (device slot s holds shard s). */
int residency_shards(residency_t *r, const char *name);
/* The same, ready or not, once the placement is decided (a synthetic or
 * on-disk dataset: at its load request, from its size; an import: once
 * decoded); 0 until then. A dataset read from disk is placed again when it is
 * scanned, so a job's start goes by residency_shards. */
int residency_planned_shards(residency_t *r, const char *name);
void residency_release(residency_t *r, const char *name);
/* Resident bytes on a device slot (all datasets). */
size_t residency_bytes_on(residency_t *r, int slot);
/* [{"name","state","bytes"}] of the datasets in memory or loading. */
json_t *residency_summary(residency_t *r);

/* Path confinement: see daemon_check_dataset_path (daemon_open_client_path,
 * the fd closed). Loads check the recorded path again, and reloads at start
 * too: a dataset whose directory left the roots or became a link fails. */
int residency_check_path(const daemon_cfg_t *cfg, const char *path, char *resolved, size_t len,
                         daemon_err_t *e);

#endif
