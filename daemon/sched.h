/* daemon/sched.h — the scheduler and worker supervision.
 *
 * Queue: jobs in state "queued" in the store, ordered by priority (higher
 * first) and, within a priority, by insertion sequence (FIFO). One running job
 * per device slot; a job with "devices" N (or a list) takes N slots at once —
 * all of them or none. A job starts when its dataset is resident (jobs whose
 * dataset is still loading wait without blocking others; a dataset that failed
 * or vanished fails the job). A job whose dataset is ready but whose devices
 * are busy holds the free devices it needs, so jobs queued after it cannot
 * take them (no starvation of multi-device jobs; sched.c, try_start). A job on
 * a sharded dataset runs on every device (rank r on shard r's device).
 *
 * Each running job has a supervisor thread that forks `traind worker` once per
 * rank (daemon/worker.h), with a rendezvous segment for their collectives
 * (gpu/collective.h) when there are several, reads their JSON-line events
 * (rank 0 speaks for the job), records them, enforces cancellation deadlines
 * and records the outcome. A rank that fails (dies, is killed, exits with an
 * error) fails the job: the others are told through the segment, then
 * SIGTERM, SIGKILL after 10 s; the job's error names the rank that failed
 * first; the devices are free again once every rank is reaped.
 */
#ifndef TRAIND_SCHED_H
#define TRAIND_SCHED_H

#include <jansson.h>
#include "daemon/daemon.h"

/* One queued job as the ordering sees it. */
typedef struct {
    char id[32];
    int priority;
    long long seq;          /* insertion sequence */
    int pos;                /* index in the queue listing it came from (store_jobs_queued) */
} sched_entry_t;

/* Sorts into start order: priority desc, then seq asc. Pure; unit-tested. */
void sched_order(sched_entry_t *e, int n);

sched_t *sched_create(daemon_t *d);
int sched_start(sched_t *s, char *err, size_t errlen);
/* Wake the scheduler (a job was submitted, a dataset became ready, ...). */
void sched_kick(sched_t *s);
/* A running job is being cancelled: SIGTERM to its worker now, SIGKILL after
 * the grace period. 0 when the job runs here, -1 otherwise. */
int sched_cancel(sched_t *s, const char *job_id);
/* Shutdown: no new jobs; running workers get SIGTERM (train jobs checkpoint),
 * SIGKILL after the grace period; returns when every job has been recorded. */
void sched_stop_all(sched_t *s);
void sched_destroy(sched_t *s);

/* [{"id","type","device","pid","devices","pids","progress":{...},"dataset",
 * "cancelling","batch_size"}] from memory; device and pid are rank 0's,
 * devices and pids every rank's in rank order. */
json_t *sched_running(sched_t *s);
/* Whether the running job r (an entry of sched_running) uses device, and the
 * pid of its rank there. */
int sched_running_on(const json_t *r, int device, int *pid);
/* Sum of images/s of running jobs (for /metrics). */
double sched_images_per_s(sched_t *s);
/* 1 while the scheduler loop ticks (for the systemd watchdog). */
int sched_alive(void *s);

/* Start-up recovery: jobs left running/cancelling become interrupted (or
 * cancelled), train jobs with a checkpoint are requeued to resume from their
 * latest checkpoint under the same id. */
void sched_recover(daemon_t *d);

#endif
