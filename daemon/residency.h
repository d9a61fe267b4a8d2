/* daemon/residency.h — resident datasets, owned by the daemon.
 *
 * A dataset is loaded once (in a background thread, one load at a time) into
 * shared backend memory on every device the daemon uses (POSIX shm on cpu,
 * CUDA IPC on cuda) and stays there across jobs until deleted. Workers open it
 * by handle + layout JSON. The store records every dataset, so the daemon
 * loads them again when it starts. Synthetic datasets are generated into
 * <state>/work/synthetic/<name>/ first (kept for reloads).
 *
 * Memory is accounted before anything is allocated: a dataset must fit in
 * every device's free memory less --memory-reserve-gb less what other loads
 * in progress will take; otherwise the request is refused (507).
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
 * "phase", and "devices":[{"index","bytes"}] for resident memory. */
void residency_decorate(residency_t *r, json_t *rec);

/* For a job about to start on device slot: 0 = ready (a reference is taken,
 * *share = {"handle","bytes","layout"} new reference), 1 = still loading,
 * -1 = failed or unknown (msg says why). */
int residency_acquire(residency_t *r, const char *name, int slot, json_t **share,
                      char *msg, size_t msglen);
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
