/* daemon/retain.h — the job table's retention policy.
 *
 * Whenever a job ends (and once at start-up for everything recorded):
 *   1. an ended infer job's stored spec drops its inline image payloads,
 *      keeping each image's height, width and sha256 (the pixels are only
 *      needed while the job can still run);
 *   2. of the ended jobs (succeeded, failed, cancelled, interrupted), the
 *      --keep-jobs most recently finished are kept (default 10000; 0 keeps
 *      all); older ones are deleted with their events, metrics and result
 *      files — except jobs that a checkpoint record still belongs to: a
 *      checkpoint stays usable (eval, resume_from, model.weights) for as long
 *      as it is kept, and DELETE /v1/checkpoints/{id} of a job's last one lets
 *      the job go at the next prune. Queued and running jobs are never touched.
 * The store does both (store_job_strip_images, store_jobs_prune); this module
 * adds the files: <work>/results/<job>/ and a checkpoint directory left
 * without records (<state>/checkpoints/<job>/, e.g. after a crash). */
#ifndef TRAIND_RETAIN_H
#define TRAIND_RETAIN_H

#include "daemon/daemon.h"

/* ended: the job that just ended (NULL: every ended job, at start-up). Errors
 * are logged; retention never fails a request or a job. */
void retain_jobs(daemon_t *d, const char *ended);

#endif
