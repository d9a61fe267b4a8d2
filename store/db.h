/* store/db.h — the SQLite store: datasets, jobs, job events, metrics, checkpoints.
 *
 * One database file (<state>/traind.db) in WAL mode, busy_timeout, foreign keys
 * on, schema versioned by PRAGMA user_version and upgraded by an ordered array
 * of migrations in store/db.c (applied in one transaction each).
 *
 * Connections: ONE writer connection, serialized by a mutex inside store_t (the
 * daemon's recorder thread, the scheduler and HTTP handlers that submit all
 * write through it; each write is one short transaction). Reads go through a
 * small pool of read-only connections (WAL readers never wait for the writer),
 * so an HTTP handler never waits on a running job or on the writer.
 *
 * Durability: the connection runs with synchronous=NORMAL, which in WAL mode
 * survives any crash of the process (kill -9) without losing a committed
 * transaction, and fsyncs only at WAL checkpoints — cheap for the high-rate
 * telemetry (progress, metrics, log events). Transactions that the daemon acts
 * on afterwards (job state changes, checkpoint records, job inserts, dataset
 * records) are committed with synchronous=FULL, which fsyncs the WAL at commit,
 * so they also survive a power loss or kernel crash; as the WAL is ordered,
 * that fsync also makes every earlier telemetry commit durable.
 *
 * Every getter returns a jansson object shaped as the HTTP API returns it
 * (SPEC §3), a new reference the caller json_decref()s. Functions returning
 * int give one of the STORE_* codes below and, on failure, a message in err
 * (errlen >= 1). Times are returned as RFC 3339 UTC strings with milliseconds
 * ("2026-11-26T11:18:51.123Z") in fields named *_at, and stored as unix seconds
 * (REAL) in the database.
 *
 * Job record (store_job_get; store_job_list gives the summary form, see there):
 *   {"id":"j-000042", "type":"train", "dataset":"ds", "priority":0,
 *    "submission_id":"..."|null, "state":"queued", "spec":{resolved spec},
 *    "plan":{dtype plan}, "progress":{"step","total_steps","epoch","images_per_s","eta_s"},
 *    "metrics":{"loss":{"value":0.1,"step":10}, ...}   (latest value per name),
 *    "result":{...}|null, "error":"..."|null, "resumed_from":"c-000003"|null,
 *    "resume_checkpoint":"c-000003"|null, "device":0|null, "worker_pid":123|null,
 *    "created_at","started_at","finished_at" (null until set)}
 * Dataset record: {"name","source":{"path":DIR}|{"synthetic":{...}},"state",
 *    "samples","image_size":[H,W],"fields":[...],"bytes","progress","gb_per_s",
 *    "error","created_at","loaded_at"}
 * Checkpoint record: {"id":"c-000007","job","step","path","bytes","sha256",
 *    "files":[{"name","bytes","sha256"}],"metrics":{...}|null,"created_at"}
 * Event: {"id":12,"type":"progress","data":{...},"time":"..."}
 */
#ifndef TRAIND_STORE_DB_H
#define TRAIND_STORE_DB_H

#include <jansson.h>
#include <stddef.h>

#include "store/job.h"

#define STORE_SCHEMA_VERSION 5

enum {
    STORE_OK = 0,
    STORE_ERR = -1,        /* SQLite or I/O failure (message in err) */
    STORE_NOTFOUND = -2,   /* no such job / dataset / checkpoint */
    STORE_CONFLICT = -3,   /* submission_id reused with another spec; name exists */
    STORE_BADSTATE = -4,   /* transition not allowed from the current state */
};

typedef struct store store_t;

/* Opens (creating if needed) and migrates the database at path. NULL + err on failure. */
store_t *store_open(const char *path, char *err, size_t errlen);
void store_close(store_t *s);
int store_user_version(store_t *s);        /* PRAGMA user_version as read from the file */
/* Called (outside any lock) after every committed transaction that appended
 * job events, so SSE waiters can wake up (the daemon's event notification). */
void store_set_event_hook(store_t *s, void (*fn)(void *ud), void *ud);

/* ---- jobs ------------------------------------------------------------------ */
/* Types and states are the enums of store/job.h (its diagram says which
 * function performs each state change); they are stored by name. */

/* Inserts a queued job with a fresh id ("j-%06d"). spec and plan are the resolved
 * documents (stored as JSON text; spec equality for idempotency compares the
 * canonical (sorted-key, compact) text of the spec). With a submission_id that
 * already exists: same spec -> STORE_OK, *created = 0 and the existing record;
 * other spec -> STORE_CONFLICT. *job receives the record (new reference).
 * A "state" event {"state":"queued"} is appended in the same transaction. */
int store_job_insert(store_t *s, job_type_t type, const char *dataset, int priority,
                     const char *submission_id, const json_t *spec, const json_t *plan,
                     json_t **job, int *created, char *err, size_t errlen);
int store_job_get(store_t *s, const char *id, json_t **job, char *err, size_t errlen);
/* Whole job records built so far (store_job_get, and store_job_insert's reply):
 * each parses the stored spec, so the count shows who pays for large specs. */
unsigned long long store_job_records_read(store_t *s);
/* The job's state only (never reads the spec): what SSE polls and existence
 * checks use. STORE_NOTFOUND when there is no such job. */
int store_job_state(store_t *s, const char *id, job_state_t *state, char *err, size_t errlen);
/* state/type JOB_STATE_ANY/JOB_TYPE_ANY for any; limit <= 0 means 100; newest first.
 * *out = {"jobs":[...], "total":N, "limit":L, "offset":O}, each job a summary
 * without spec, plan, result or metrics: {"id","type","dataset","priority",
 * "submission_id","state","progress","error","resumed_from","device","devices",
 * "created_at","started_at","finished_at"}. */
int store_job_list(store_t *s, job_state_t state, job_type_t type, int limit, int offset,
                   json_t **out, char *err, size_t errlen);

/* Checked transition (job_transition_ok; BADSTATE when not allowed, NOTFOUND when no job). Sets
 * started_at when entering running, finished_at when entering a final state,
 * clears it when requeued. extra (may be NULL) may carry "error" (string),
 * "result" (object), "device" (int: rank 0's), "devices" (array: every rank's
 * device, in rank order), "worker_pid" (int), "resume_checkpoint"
 * and "resumed_from" (string); they are stored with the state (device,
 * devices cleared when requeued). A "state" event
 * {"state":to, "error":..., "reason":...} is appended in the same (durable)
 * transaction. When from is not JOB_STATE_ANY the job must currently be in that
 * state (compare-and-set), else BADSTATE. */
int store_job_set_state(store_t *s, const char *id, job_state_t from, job_state_t to,
                        const json_t *extra, char *err, size_t errlen);
/* Records the worker process of a running job (pid <= 0 clears it). */
int store_job_set_worker(store_t *s, const char *id, int pid, char *err, size_t errlen);
/* Progress fields (replaces the stored progress object). When with_event, a
 * "progress" event with the same data is appended. */
int store_job_set_progress(store_t *s, const char *id, const json_t *progress, int with_event,
                           char *err, size_t errlen);
/* The queue in scheduling order: priority desc, then insertion sequence asc.
 * *out = array of {"id","priority","seq","dataset","type","devices"}; devices is
 * the spec's (a count or a list; null = one device), copied at insert so the
 * queue is read without parsing specs. */
int store_jobs_queued(store_t *s, json_t **out, char *err, size_t errlen);
/* ids of jobs in a given state (e.g. JOB_RUNNING at start-up). *out = array of strings. */
int store_job_ids_in_state(store_t *s, job_state_t state, json_t **out, char *err, size_t errlen);
/* Count of jobs per state: {"queued":N,...} with every state present. */
int store_job_counts(store_t *s, json_t **out, char *err, size_t errlen);
/* Jobs (queued, running or cancelling) that use the dataset: count in *n. */
int store_dataset_in_use(store_t *s, const char *name, int *n, char *err, size_t errlen);

/* ---- retention ----------------------------------------------------------------- */
/* Drops the inline image payloads (spec.images[i].u8_hwc_b64) from the stored
 * spec of ended (succeeded, failed, cancelled, interrupted) infer jobs: job id,
 * or every such job when id is NULL. height, width and sha256 stay, and a
 * resubmission with the same submission_id and the same images still matches
 * (store_job_insert compares the stripped form). *stripped = jobs changed. */
int store_job_strip_images(store_t *s, const char *id, int *stripped, char *err, size_t errlen);
/* Deletes the ended jobs beyond the `keep` most recently finished (by
 * finished_at, then id) with their events, metrics and latest metrics — but
 * never a job that a checkpoint record still belongs to (its checkpoints stay
 * usable; deleting them through the API frees the job for the next prune).
 * keep <= 0 deletes nothing. *deleted = array of the deleted ids (new
 * reference, also on failure: what was deleted before it). Batched: each
 * transaction deletes at most a few hundred jobs. */
int store_jobs_prune(store_t *s, int keep, json_t **deleted, char *err, size_t errlen);

/* ---- events ------------------------------------------------------------------ */
/* Appends an event; ids increase by one per job from 1. *id (may be NULL) gets it. */
int store_event_append(store_t *s, const char *job, const char *type, const json_t *data,
                       long long *id, char *err, size_t errlen);
/* Events with id > after, oldest first, at most limit (<= 0: 1000). *out = array. */
int store_events_since(store_t *s, const char *job, long long after, int limit,
                       json_t **out, char *err, size_t errlen);

/* ---- metrics ----------------------------------------------------------------- */
/* Appends (job, name, step, value) and updates metrics_latest; when with_event a
 * "metric" event {"name","step","value"} is appended, all in one transaction. */
int store_metric_append(store_t *s, const char *job, const char *name, long step, double value,
                        int with_event, char *err, size_t errlen);
/* name NULL/"" = all; since_step < 0 = all. *out = [{"name","step","value","time"}] by step. */
int store_metrics_query(store_t *s, const char *job, const char *name, long since_step,
                        json_t **out, char *err, size_t errlen);
/* {"name":{"value":v,"step":s},...} */
int store_metrics_latest(store_t *s, const char *job, json_t **out, char *err, size_t errlen);

/* ---- checkpoints ------------------------------------------------------------- */
/* Records a checkpoint durably with a fresh id ("c-%06d"); files = [{"name","bytes","sha256"}]
 * (may be NULL), metrics may be NULL. A "checkpoint" event {"id","step","path"} is
 * appended in the same transaction. The same job and path again (a resumed run
 * reporting a directory an earlier run wrote) keeps its one record: sums
 * refreshed, no new id, no event. *ckpt gets the record (may be NULL). */
int store_checkpoint_insert(store_t *s, const char *job, long step, const char *path,
                            long long bytes, const char *sha256, const json_t *files,
                            const json_t *metrics, json_t **ckpt, char *err, size_t errlen);
int store_checkpoint_get(store_t *s, const char *id, json_t **ckpt, char *err, size_t errlen);
/* job NULL/"" = all; *out = array, oldest first. */
int store_checkpoint_list(store_t *s, const char *job, json_t **out, char *err, size_t errlen);
int store_checkpoint_delete(store_t *s, const char *id, char *err, size_t errlen);
/* The newest checkpoint of a job (by step): STORE_NOTFOUND when none. */
int store_checkpoint_latest(store_t *s, const char *job, json_t **ckpt, char *err, size_t errlen);
/* Checkpoints of job to prune under keep_checkpoints = keep: every one except the
 * newest `keep` by step and the one with the lowest metrics[best_metric] (when
 * any has it). *out = array of records. keep <= 0 prunes nothing. */
int store_checkpoint_prune_list(store_t *s, const char *job, int keep, const char *best_metric,
                                json_t **out, char *err, size_t errlen);
/* Queued/running/cancelling jobs that need the checkpoint (spec.checkpoint,
 * spec.resume_from, spec.model.weights or resume_checkpoint equal to id). */
int store_checkpoint_in_use(store_t *s, const char *id, int *n, char *err, size_t errlen);

/* ---- datasets ---------------------------------------------------------------- */
/* Inserts a dataset in state "loading"; STORE_CONFLICT when the name exists. */
int store_dataset_insert(store_t *s, const char *name, const json_t *source, json_t **ds,
                         char *err, size_t errlen);
int store_dataset_get(store_t *s, const char *name, json_t **ds, char *err, size_t errlen);
int store_dataset_list(store_t *s, json_t **out, char *err, size_t errlen);   /* array by name */
/* Updates any of: "state", "samples", "image_size", "fields", "bytes", "progress",
 * "gb_per_s", "error", "loaded_at" (pass true to stamp now), "masked_joints",
 * "import" (an object: what an import made) from the fields of upd. */
int store_dataset_update(store_t *s, const char *name, const json_t *upd, char *err, size_t errlen);
int store_dataset_delete(store_t *s, const char *name, char *err, size_t errlen);

/* ---- helpers ------------------------------------------------------------------ */
double store_now(void);                                   /* unix seconds, ms resolution */
void store_format_time(double t, char out[32]);           /* RFC 3339 UTC with ms */

#endif
