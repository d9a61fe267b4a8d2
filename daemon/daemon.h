/* daemon/daemon.h — the daemon context and the actions the HTTP API calls.
 *
 * The API layer (api/) stays thin: it parses the request body into jansson,
 * calls one daemon_* function, and writes either the returned JSON (a new
 * reference it json_decref()s) or the error from daemon_err_t as
 *   status  {"error":{"code":e.code,"message":e.message}}   (+ "field" when set).
 * Every action is thread-safe and may be called from any HTTP thread; none
 * waits on a running job (reads use the store's read pool; writes are one short
 * transaction on the writer connection).
 *
 * Owned here: the store, the per-device backends (memory accounting, shared
 * memory for resident datasets), the dataset residency (daemon/residency.c),
 * the scheduler and worker supervision (daemon/sched.c, daemon/worker.c), the
 * event notification used by SSE, systemd notify (daemon/notify.c).
 *
 * The HTTP server is started by daemon/main.c through api/api.h, expected as
 *   api_server_t *api_start(daemon_t *d, const char *listen, char *err, size_t errlen);
 *   void api_stop(api_server_t *srv);   (stops accepting, closes connections)
 * Listen address and token are in d->cfg (cfg.listen, daemon_token()).
 */
#ifndef TRAIND_DAEMON_H
#define TRAIND_DAEMON_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include "daemon/config.h"
#include "gpu/backend.h"
#include "store/db.h"
#include "store/fsutil.h"

#define TRAIND_VERSION "0.1.0"

/* An action's failure, mapped 1:1 to the HTTP error response. */
typedef struct {
    int status;          /* 400 403 404 409 413 422 500 503 507 */
    char code[32];       /* bad_request invalid_field forbidden not_found conflict
                            unprocessable unavailable insufficient_storage internal */
    char field[128];     /* dotted path of the offending field (invalid_field), else "" */
    char message[512];
} daemon_err_t;

typedef struct residency residency_t;   /* daemon/residency.h */
typedef struct sched sched_t;           /* daemon/sched.h */

typedef struct daemon daemon_t;
struct daemon {
    daemon_cfg_t cfg;
    store_t *store;
    char backend_name[16];               /* resolved: "cpu" or "cuda" */
    int n_dev;                           /* devices in use */
    int dev_index[CFG_MAX_DEVICES];      /* backend device index per slot */
    backend_t *be[CFG_MAX_DEVICES];      /* the daemon's own backend per device (memory, sharing) */
    residency_t *res;
    sched_t *sched;
    double started;                      /* mono_now() at start (uptime) */
    char exe[PATH_MAX];                  /* this binary, for `traind worker` */
    char checkpoint_root[PATH_MAX];      /* <state>/checkpoints */
    char work_root[PATH_MAX];            /* <state>/work (job specs, results, synthetic data) */
    _Atomic size_t idle_used[CFG_MAX_DEVICES];   /* device memory used while no job ran (status) */
    int lock_fd;                         /* flock on <state>/traind.lock: one daemon per state dir */

    /* Event notification: every appended event bumps ev_seq and broadcasts. */
    pthread_mutex_t ev_mu;
    pthread_cond_t ev_cv;
    unsigned long long ev_seq;

    atomic_int stopping;                 /* set by SIGTERM/SIGINT: no new jobs start */
    atomic_llong jobs_started, jobs_finished, events_total, steps_total;
};

/* ---- lifetime (daemon/main.c calls these) ------------------------------------ */
/* Opens the store (<state>/traind.db), the backends, recovers jobs left running
 * (-> interrupted; train jobs with a checkpoint requeued), reloads recorded
 * datasets in the background and starts the scheduler. NULL + err on failure. */
daemon_t *daemon_create(const daemon_cfg_t *cfg, char *err, size_t errlen);
/* Graceful stop: no new jobs; running train jobs get SIGTERM and checkpoint
 * (waits up to the cancel grace period, extending systemd's stop timeout),
 * others are stopped; records their states. */
void daemon_shutdown(daemon_t *d);
void daemon_destroy(daemon_t *d);

/* Makes device slot's device current for the calling thread before the daemon
 * uses d->be[slot] (the CUDA runtime's current device is per thread; several
 * devices share this process). A no-op on the CPU backend. */
void daemon_bind_device(daemon_t *d, int slot);

/* ---- accessors for the API ----------------------------------------------------- */
const char *daemon_token(const daemon_t *d);   /* NULL when no token is configured */
store_t *daemon_store(daemon_t *d);
void daemon_err_set(daemon_err_t *e, int status, const char *code, const char *field,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* ---- datasets ------------------------------------------------------------------ */
/* body: {"name":…, "path":DIR} or {"name":…, "synthetic":{"samples":N,"image_size":S,"seed":K}}.
 * Validates (unknown fields -> 400 invalid_field; path outside the roots, `..` or
 * symlink escapes -> 403; name exists -> 409; does not fit the devices' memory less
 * the reserve -> 507, refused before anything is allocated), records the dataset as
 * "loading" and starts the load in the background. Returns the record (HTTP 202). */
json_t *daemon_dataset_load(daemon_t *d, const json_t *body, daemon_err_t *e);
/* Record with live load progress ("progress" 0..1, "gb_per_s") and resident bytes
 * per device ("devices":[{"index","bytes"}]). 404 when unknown. */
json_t *daemon_dataset_get(daemon_t *d, const char *name, daemon_err_t *e);
json_t *daemon_dataset_list(daemon_t *d, daemon_err_t *e);     /* {"datasets":[...]} */
/* Evicts (frees the resident memory, deletes the record). 409 while a queued or
 * running job uses it; 404 when unknown. 0 or -1. */
int daemon_dataset_delete(daemon_t *d, const char *name, daemon_err_t *e);

/* ---- jobs ------------------------------------------------------------------------ */
/* Validates with jobspec_parse (400 invalid_field naming the field), checks the
 * dataset exists and is not failed (422), its image size is a multiple of the
 * model's patch size (422, naming the dataset and the size; a checkpoint's or
 * weights' config gives the patch, else the backbone) and referenced checkpoints
 * exist (422), admits it (daemon/admit.h: indices exist (422), the effective
 * batch, the memory estimate against the devices' room (507)), resolves the
 * spec and the dtype plan and inserts the job. *created = 1 (HTTP 201)
 * for a new job, 0 (HTTP 200) for an idempotent resubmission; 409 when the
 * submission_id was used with another spec. Returns the job record. */
json_t *daemon_job_submit(daemon_t *d, const json_t *body, int *created, daemon_err_t *e);
json_t *daemon_job_get(daemon_t *d, const char *id, daemon_err_t *e);
/* The job's state only (cheap: the spec is not read); 0, or -1 with 404. */
int daemon_job_state(daemon_t *d, const char *id, job_state_t *state, daemon_err_t *e);
/* state/type JOB_STATE_ANY/JOB_TYPE_ANY for any (the API parses the query with
 * job_state_parse/job_type_parse). {"jobs":[...],"total",...} with job
 * summaries (no spec, plan, result or metrics; see store_job_list). */
json_t *daemon_job_list(daemon_t *d, job_state_t state, job_type_t type, int limit, int offset,
                        daemon_err_t *e);
/* queued -> cancelled at once; running -> cancelling (SIGTERM to the worker; a train
 * job checkpoints; SIGKILL after the grace period) -> cancelled. Already final:
 * 409. Returns the job record at once. */
json_t *daemon_job_cancel(daemon_t *d, const char *id, daemon_err_t *e);
/* The job's result document; 404 unknown job; 409 while it has none yet. A
 * large output written to a file (infer features) gets "url": the path of
 * GET /v1/jobs/{id}/result/files/{name}. */
json_t *daemon_job_result(daemon_t *d, const char *id, daemon_err_t *e);
/* Opens a result file of a job (<work>/results/<id>/<name>, beneath the state
 * dir: no symbolic link followed, regular files only): 0 with *fd (the
 * caller's), or -1 with 404 for an unknown job or file (names with '/' or a
 * leading '.' never match). */
int daemon_job_result_file(daemon_t *d, const char *id, const char *name, int *fd, daemon_err_t *e);
/* [{"step","value","time"}] (and "name" when name is NULL); since_step < 0 = all. */
json_t *daemon_job_metrics(daemon_t *d, const char *id, const char *name, long since_step,
                           daemon_err_t *e);
/* Events with id > after_id (array of {"id","type","data","time"}); 404 unknown job. */
json_t *daemon_job_events(daemon_t *d, const char *id, long long after_id, int limit,
                          daemon_err_t *e);
/* For SSE: blocks until an event was appended anywhere since *seq (then updates
 * *seq and returns 1), timeout_ms elapsed (0), or the daemon is stopping (-1).
 * Start with *seq = daemon_event_seq(d) BEFORE reading events, then loop:
 * read events since the last id; if the job is final and none are new, end. */
unsigned long long daemon_event_seq(daemon_t *d);
int daemon_event_wait(daemon_t *d, unsigned long long *seq, int timeout_ms);
/* Called after every store_event_append by the daemon's own modules. */
void daemon_event_notify(daemon_t *d);

/* ---- checkpoints ---------------------------------------------------------------- */
/* Opens dir/name (dir = a recorded checkpoint path, which must lie under
 * d->checkpoint_root; name NULL: dir itself) as kind FS_REG/FS_DIR without
 * following any symbolic link below the checkpoint root: fd, or -1 with errno
 * and err. (Removal beneath the root is store/checkpoint.c's.) */
int daemon_checkpoint_open(daemon_t *d, const char *dir, const char *name, int kind, char *err, size_t errlen);
json_t *daemon_checkpoint_list(daemon_t *d, const char *job, daemon_err_t *e); /* {"checkpoints":[...]} */
json_t *daemon_checkpoint_get(daemon_t *d, const char *id, daemon_err_t *e);
/* Deletes the files and the record; 409 if a queued or running job needs it. */
int daemon_checkpoint_delete(daemon_t *d, const char *id, daemon_err_t *e);
/* Opens a file of a checkpoint for download: name must be a plain file name of
 * the checkpoint directory (no '/', no leading '.'), opened beneath the
 * checkpoint root (no symbolic link followed, regular files only); 404
 * otherwise. 0 with *fd (the caller's), or -1. */
int daemon_checkpoint_file(daemon_t *d, const char *id, const char *name, int *fd, daemon_err_t *e);

/* ---- status and metrics ---------------------------------------------------------- */
/* {"version","uptime_s","backend","devices":[{"index","name","job":id|null,"memory":{"total",
 *  "used","datasets","job"}}],"datasets":[{"name","state","bytes"}],"running":[{"id","type",
 *  "dataset","device","pid","progress","cancelling","batch_size"}],"queue_length","stopping"} — from memory
 *  and the read pool, cheap. memory.job: the running job's bytes (cpu: the worker's anonymous
 *  RSS; cuda: device memory in use beyond what was used while the device was idle), or null. */
json_t *daemon_status(daemon_t *d);
/* Prometheus text exposition of the daemon's own families (jobs by state, steps and
 * images/s, device memory, dataset bytes); malloc'd, the API appends its HTTP
 * request counters and frees it. */
char *daemon_metrics_text(daemon_t *d);

/* ---- client paths ------------------------------------------------------------------ */
/* Every path a client names (a dataset directory, model.weights, an import
 * manifest and its images) is opened through this, confined to configured
 * roots: DAEMON_ROOTS_DATA = the dataset roots (--dataset-root),
 * DAEMON_ROOTS_MODEL = the model roots (--model-root) and the dataset roots.
 * kind FS_DIR or FS_REG (store/fsutil.h). flags FS_CONFINE_RESOLVE when the
 * client's path is first accepted (a symbolic link that stays inside a root
 * is resolved; the resolved path goes to resolved and is what gets recorded),
 * 0 when a recorded path is used again (it must still open beneath a root
 * with no symbolic link on the way). Returns the fd, or -1 with e: 400 for a
 * missing or empty path, else 403 forbidden with ONE message whatever the
 * reason — outside the roots, `..`, a link out, missing, of the wrong kind —
 * so that the answer never tells which paths exist outside the roots (the
 * reason goes to the debug log). A recorded path checked again (flags 0)
 * gets the reason in the message: nothing outside a root was resolved or
 * followed to find it. field names the field in e and the message. */
enum { DAEMON_ROOTS_DATA = 1, DAEMON_ROOTS_MODEL = 2 };
int daemon_open_client_path(const daemon_cfg_t *cfg, const char *path, int roots, int kind, int flags,
                            const char *field, char *resolved, size_t len, daemon_err_t *e);

/* Dataset path confinement (also used by the API if it wants to check early):
 * daemon_open_client_path(DAEMON_ROOTS_DATA, FS_DIR, FS_CONFINE_RESOLVE). 0 with the
 * resolved path, or -1 with e = 403 forbidden (or 400 for an empty path). */
int daemon_check_dataset_path(daemon_t *d, const char *path, char *resolved, size_t len,
                              daemon_err_t *e);

#endif
