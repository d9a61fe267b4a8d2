/* store/job.h — the vocabulary of jobs: their types and their states (SPEC §3),
 * the names they have in the API and the database, and which state changes
 * are allowed. Every layer that speaks of a job's type or state uses these
 * enums; the strings exist only at the edges (JSON, SQL, query parameters)
 * and are read through job_type_parse / job_state_parse.
 *
 * The life of a job, and the function that performs each change (every change
 * goes through store_job_set_state, which checks it with job_transition_ok and
 * appends the "state" event in the same transaction):
 *
 *   POST /v1/jobs ─ store_job_insert (daemon_job_submit) ─▶ queued
 *
 *   queued      ─ try_start (daemon/sched.c) ──────▶ running      a device is free and the dataset resident
 *   queued      ─ try_start ───────────────────────▶ failed       the dataset cannot be used (failed, evicted)
 *   queued      ─ daemon_job_cancel (daemon.c) ────▶ cancelled    cancelled before it started
 *
 *   running     ─ finish_job (daemon/sched.c) ─────▶ succeeded    the worker exited 0
 *   running     ─ finish_job ──────────────────────▶ failed       the worker failed, died or never started
 *                 (try_start too, when it cannot create the supervisor thread)
 *   running     ─ finish_job ──────────────────────▶ interrupted  the worker stopped because the daemon stops
 *   running     ─ daemon_job_cancel ───────────────▶ cancelling   SIGTERM to the worker; a train job checkpoints
 *   running     ─ sched_recover (at start) ────────▶ interrupted  the last daemon died while the job ran
 *
 *   cancelling  ─ finish_job ──────────────────────▶ cancelled    the worker stopped, or was killed after the grace
 *   cancelling  ─ finish_job ──────────────────────▶ failed       the worker failed or never started
 *   cancelling  ─ sched_recover (at start) ────────▶ cancelled    the last daemon died while it was cancelling
 *
 *   interrupted ─ sched_recover (at start) ────────▶ queued       a train job with a checkpoint, requeued under
 *                                                                 the same id to resume from the latest one
 *
 *   Allowed but only taken when finish_job cannot read the state back and
 *   judges by its own flags: running → cancelled, cancelling → succeeded |
 *   interrupted (refusing them would leave the job without a final state).
 *
 * succeeded, failed and cancelled are final (job_state_final); interrupted is
 * final too unless a later start requeues it (job_state_terminal covers all
 * four: no worker runs and none will in this daemon's life). */
#ifndef TRAIND_STORE_JOB_H
#define TRAIND_STORE_JOB_H

typedef enum { JOB_TRAIN = 0, JOB_EVAL, JOB_DEBUG, JOB_INFER } job_type_t;
#define JOB_TYPE_COUNT 4
#define JOB_TYPE_ANY ((job_type_t)-1)       /* a filter or wildcard, never a job's type */

typedef enum {
    JOB_QUEUED = 0, JOB_RUNNING, JOB_CANCELLING, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED, JOB_INTERRUPTED
} job_state_t;
#define JOB_STATE_COUNT 7
#define JOB_STATE_ANY ((job_state_t)-1)     /* a filter or wildcard, never a job's state */
/* (counts and wildcards are macros, not enumerators, so -Wswitch still asks every
 * switch over a type or state for all of them) */

/* The API/database name ("train", "queued", ...); "?" for a value out of range. */
const char *job_type_name(job_type_t t);
const char *job_state_name(job_state_t s);
/* 0 and *out set when s is exactly one of the names; -1 otherwise (s may be NULL). */
int job_type_parse(const char *s, job_type_t *out);
int job_state_parse(const char *s, job_state_t *out);
/* Every name in order, comma-separated, for messages: "train, eval, debug, infer". */
const char *job_type_list(void);
const char *job_state_list(void);

/* Whether store_job_set_state may move a job from `from` to `to` (the diagram above). */
int job_transition_ok(job_state_t from, job_state_t to);
/* succeeded, failed, cancelled: the job never changes again. */
int job_state_final(job_state_t s);
/* final or interrupted: no worker runs the job and none will in this daemon's life. */
int job_state_terminal(job_state_t s);

#endif
