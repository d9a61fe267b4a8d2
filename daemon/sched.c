/* daemon/sched.c — the scheduler (priority queue; a job takes one device, or
 * several at once) and the supervision of worker processes (see sched.h).
 *
 * Threads: the scheduler thread starts jobs; one supervisor thread per running
 * job (a "run") forks its workers — one per rank —, reads their events,
 * records them and the outcome. The supervisor forks the workers itself and
 * lives exactly as long as they do, so a worker's PR_SET_PDEATHSIG (tied to
 * the forking thread) fires only when the daemon dies. s->mu guards the slots
 * and the runs.
 */
#include "daemon/sched.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <assert.h>

#include "daemon/admit.h"
#include "daemon/log.h"
#include "daemon/notify.h"
#include "daemon/residency.h"
#include "daemon/retain.h"
#include "store/sha256.h"
#include "daemon/worker.h"
#include "gpu/collective.h"
#include "gpu/jobspec.h"
#include "store/checkpoint.h"
#include "store/errbuf.h"
#include "store/fsutil.h"
#include "store/mono.h"

#define LINE_MAX_BYTES (64u << 20)
#define PROGRESS_STORE_S 0.5
#define FINAL_RETRY_S 5          /* a final state the store refused is tried again this often */
#define STORE_WARN_S 10          /* events the store refuses: one log line at most this often */

/* A running job: one worker process per rank, each on its device slot. */
typedef struct run {
    sched_t *s;
    char job[32];
    char type[16];
    char dataset[JS_NAME_MAX];
    int world;                 /* ranks */
    int slot[COLL_MAX_WORLD];  /* device slot of each rank */
    pid_t pid[COLL_MAX_WORLD];
    json_t *shares;            /* dataset share of each rank (array) */
    char coll[COLL_NAME_MAX];  /* rendezvous segment ("" for one rank) */
    int cancel;                /* cancel requested */
    int shutdown;              /* stopped because the daemon stops */
    int killed;                /* we sent SIGKILL */
    double kill_at;            /* 0 = none */
    json_t *progress;          /* latest, from rank 0 */
    double images_per_s;
    double last_store;
    int keep_checkpoints;
    int batch_size;            /* from the spec (for /metrics' steps per second) */
    json_t *result;
    char last_error[COLL_MAX_WORLD][1024];   /* each rank's last "error" event */
    int done;                  /* the supervisor has recorded the outcome and freed the slots */
    double store_warn_t;       /* when an event the store refused was last logged (supervisor only) */
    long store_warn_held;      /* refused events not logged since */
    pthread_t thr;
} run_t;

struct sched {
    daemon_t *d;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    run_t *slot_run[CFG_MAX_DEVICES];   /* the run holding each device slot, or NULL */
    run_t *runs[CFG_MAX_DEVICES];       /* live runs (at most one per slot), joined by the loop */
    pthread_t thr;
    int started, stop, kicked;
    double tick;
};

static int entry_cmp(const void *a, const void *b) {
    const sched_entry_t *x = a, *y = b;
    if (x->priority != y->priority) return x->priority > y->priority ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

void sched_order(sched_entry_t *e, int n) {
    if (n > 1) qsort(e, (size_t)n, sizeof *e, entry_cmp);
}

sched_t *sched_create(daemon_t *d) {
    sched_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->d = d;
    pthread_mutex_init(&s->mu, NULL);
    mono_cond_init(&s->cv);
    s->tick = mono_now();
    return s;
}

void sched_kick(sched_t *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->kicked = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int sched_alive(void *arg) {
    sched_t *s = arg;
    pthread_mutex_lock(&s->mu);
    double t = s->tick;
    pthread_mutex_unlock(&s->mu);
    return mono_now() - t < 30.0;
}

int sched_running_on(const json_t *r, int device, int *pid) {
    const json_t *devs = json_object_get(r, "devices"), *pids = json_object_get(r, "pids");
    for (size_t i = 0; i < json_array_size(devs); i++)
        if (json_integer_value(json_array_get(devs, i)) == device) {
            if (pid) *pid = (int)json_integer_value(json_array_get(pids, i));
            return 1;
        }
    return 0;
}

/* ---- recording what a worker reports ---------------------------------------------------- */
/* A checkpoint the worker renamed into place: recorded, then the job's older
 * ones pruned under keep_checkpoints (store/checkpoint.c owns both). */
static void record_checkpoint(run_t *rn, const json_t *data) {
    daemon_t *d = rn->s->d;
    char err[512], warn[512];
    const char *dir = json_string_value(json_object_get(data, "dir"));
    long step = (long)json_integer_value(json_object_get(data, "step"));
    const json_t *metrics = json_object_get(data, "metrics");
    json_t *rec = NULL;
    if (ckpt_record(d->store, d->checkpoint_root, rn->job, dir, step, metrics, &rec, warn, sizeof warn, err,
                    sizeof err)) {
        log_error(rn->job, "checkpoint at step %ld not recorded: %s", step, err);
        return;
    }
    if (warn[0]) log_warn(rn->job, "checkpoint: %s", warn);
    log_info(rn->job, "checkpoint %s at step %ld: %s (%.1f MB)", json_string_value(json_object_get(rec, "id")), step,
             json_string_value(json_object_get(rec, "path")), json_integer_value(json_object_get(rec, "bytes")) / 1e6);
    json_decref(rec);
    json_t *pruned = NULL;
    if (ckpt_prune(d->store, d->checkpoint_root, rn->job, rn->keep_checkpoints, metrics, &pruned, err, sizeof err))
        log_warn(rn->job, "checkpoints not pruned: %s", err);
    size_t i;
    json_t *id;
    json_array_foreach(pruned, i, id)
        log_info(rn->job, "checkpoint %s pruned (keep_checkpoints %d)", json_string_value(id), rn->keep_checkpoints);
    json_decref(pruned);
}

/* An event the store refused (a full disk refuses every one: at most one
 * log line per STORE_WARN_S, counting the rest). Supervisor thread only. */
static void store_refused(run_t *rn, const char *what, const char *err) {
    double now = mono_now();
    if (rn->store_warn_t > 0 && now - rn->store_warn_t < STORE_WARN_S) {
        rn->store_warn_held++;
        return;
    }
    if (rn->store_warn_held > 0)
        log_warn(rn->job, "%s not recorded: %s (and %ld more events not recorded in the last %.0f s)", what, err,
                 rn->store_warn_held, now - rn->store_warn_t);
    else
        log_warn(rn->job, "%s not recorded: %s", what, err);
    rn->store_warn_t = now;
    rn->store_warn_held = 0;
}

/* One event line of rank `rank`. Rank 0 speaks for the job (progress,
 * metrics, checkpoints, logs, the result); the other ranks' lines matter only
 * when they fail: their "error" is kept (the job's error when that rank failed
 * first) and recorded as a log event naming the rank. */
static void handle_line(run_t *rn, int rank, const char *line) {
    daemon_t *d = rn->s->d;
    char err[512];
    json_error_t je;
    json_t *o = json_loads(line, 0, &je);
    const char *type = json_string_value(json_object_get(o, "type"));
    json_t *data = json_object_get(o, "data");
    if (!o || !type) {
        log_warn(rn->job, "worker (rank %d) sent a malformed event line (%s)", rank, o ? "no type" : je.text);
        json_decref(o);
        return;
    }
    if (!strcmp(type, "error")) {
        const char *m = json_string_value(json_object_get(data, "message"));
        snprintf(rn->last_error[rank], sizeof rn->last_error[rank], "%s", m ? m : "error");
        char text[1100];
        if (rn->world > 1) snprintf(text, sizeof text, "rank %d: %s", rank, rn->last_error[rank]);
        else snprintf(text, sizeof text, "%s", rn->last_error[rank]);
        json_t *ev = json_pack("{s:o, s:s}", "message", errbuf_json_string(text), "level", "error");
        store_event_append(d->store, rn->job, "log", ev, NULL, err, sizeof err);
        json_decref(ev);
    } else if (!strcmp(type, "state")) {
        log_debug(rn->job, "worker %d (rank %d) started", (int)json_integer_value(json_object_get(data, "pid")), rank);
    } else if (rank != 0) {
        /* only rank 0 reports for the job */
    } else if (!strcmp(type, "progress")) {
        double now = mono_now();
        long step = (long)json_integer_value(json_object_get(data, "step"));
        long total = (long)json_integer_value(json_object_get(data, "total_steps"));
        pthread_mutex_lock(&rn->s->mu);
        long prev = rn->progress ? (long)json_integer_value(json_object_get(rn->progress, "step")) : 0;
        json_decref(rn->progress);
        rn->progress = json_deep_copy(data);
        rn->images_per_s = json_number_value(json_object_get(data, "images_per_s"));
        int store_it = now - rn->last_store >= PROGRESS_STORE_S || step >= total;
        if (store_it) rn->last_store = now;
        pthread_mutex_unlock(&rn->s->mu);
        if (step > prev) atomic_fetch_add(&d->steps_total, step - prev);
        if (store_it) {
            if (store_job_set_progress(d->store, rn->job, data, 1, err, sizeof err)) store_refused(rn, "progress", err);
            notify_status("job %s: step %ld/%ld", rn->job, step, total);
        }
    } else if (!strcmp(type, "metric")) {
        const char *name = json_string_value(json_object_get(data, "name"));
        json_t *v = json_object_get(data, "value");
        if (name && store_metric_append(d->store, rn->job, name, (long)json_integer_value(json_object_get(data, "step")),
                                        json_is_number(v) ? json_number_value(v) : NAN, 1, err, sizeof err))
            store_refused(rn, "metric", err);
    } else if (!strcmp(type, "checkpoint")) {
        record_checkpoint(rn, data);
    } else if (!strcmp(type, "log")) {
        if (store_event_append(d->store, rn->job, "log", data, NULL, err, sizeof err)) store_refused(rn, "log event", err);
    } else if (!strcmp(type, "result")) {
        pthread_mutex_lock(&rn->s->mu);
        json_decref(rn->result);
        rn->result = json_incref(data);
        pthread_mutex_unlock(&rn->s->mu);
    } else {
        log_warn(rn->job, "worker sent an unknown event type '%s'", type);
    }
    json_decref(o);
}

/* ---- paths the worker needs ----------------------------------------------------------------- */
static int ckpt_path(daemon_t *d, const char *id, char *out, size_t len, char *err, size_t errlen) {
    json_t *c = NULL;
    if (store_checkpoint_get(d->store, id, &c, err, errlen)) return -1;
    snprintf(out, len, "%s", json_string_value(json_object_get(c, "path")));
    json_decref(c);
    /* still a real directory beneath the checkpoint root (no link planted since) */
    char why[512];
    int fd = daemon_checkpoint_open(d, out, NULL, FS_DIR, why, sizeof why);
    if (fd < 0) return errbuf_set(err, errlen, "checkpoint %s: %s", id, why);
    close(fd);
    return 0;
}

/* Writes the job file every rank of the job reads (worker.h). 0 or -1 with err. */
static int write_job_file(run_t *rn, const json_t *job, char *path, size_t plen, char *err, size_t errlen) {
    daemon_t *d = rn->s->d;
    const json_t *spec = json_object_get(job, "spec");
    char ck[PATH_MAX] = "", weights[PATH_MAX] = "", result_dir[PATH_MAX + 64];
    const char *resume = json_string_value(json_object_get(job, "resume_checkpoint"));
    const char *spec_resume = json_string_value(json_object_get(spec, "resume_from"));
    const char *spec_ck = json_string_value(json_object_get(spec, "checkpoint"));
    const char *cid = resume && *resume ? resume : spec_resume && *spec_resume ? spec_resume
                      : spec_ck && *spec_ck ? spec_ck : NULL;
    if (cid && ckpt_path(d, cid, ck, sizeof ck, err, errlen)) return -1;
    const char *w = json_string_value(json_object_get(json_object_get(spec, "model"), "weights"));
    if (w && *w) {
        json_t *c = NULL;
        char e2[256];
        int is_ckpt = store_checkpoint_get(d->store, w, &c, e2, sizeof e2) == STORE_OK;
        json_decref(c);
        if (is_ckpt) {
            if (ckpt_path(d, w, weights, sizeof weights, err, errlen)) return -1;
        } else {
            /* a path: accepted at submission, confined to the roots again now */
            daemon_err_t e;
            int fd = daemon_open_client_path(&d->cfg, w, DAEMON_ROOTS_MODEL, FS_DIR, 0, "model.weights", weights,
                                             sizeof weights, &e);
            if (fd < 0) return errbuf_set(err, errlen, "%s", e.message);
            close(fd);
        }
    }
    /* created by the daemon beneath the state dir: a link planted there is refused */
    char rel[64];
    snprintf(rel, sizeof rel, "results/%s", rn->job);
    if (fs_mkdir_under(d->work_root, rel, FS_DIR_MODE, err, errlen)) return -1;
    if (!strcmp(rn->type, "train") && fs_mkdir_under(d->checkpoint_root, rn->job, FS_DIR_MODE, err, errlen)) return -1;
    snprintf(result_dir, sizeof result_dir, "%s/results/%s", d->work_root, rn->job);
    json_t *ranks = json_array();
    for (int r = 0; r < rn->world; r++)
        json_array_append_new(ranks, json_pack("{s:i, s:O}", "device", d->dev_index[rn->slot[r]], "dataset",
                                               json_array_get(rn->shares, (size_t)r)));
    json_t *doc = json_pack("{s:s, s:O, s:s, s:i, s:O, s:i, s:o, s:o, s:s, s:s, s:o, s:o}", "job_id", rn->job,
                            "spec", spec, "backend", d->backend_name, "device", d->dev_index[rn->slot[0]], "dataset",
                            json_array_get(rn->shares, 0), "world", rn->world, "ranks", ranks, "collective",
                            rn->coll[0] ? json_string(rn->coll) : json_null(), "checkpoint_root", d->checkpoint_root,
                            "result_dir", result_dir, "weights_path", weights[0] ? json_string(weights) : json_null(),
                            "checkpoint_path", ck[0] ? json_string(ck) : json_null());
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/jobs", d->work_root);
    if (!doc || snprintf(path, plen, "%s/%s.json", dir, rn->job) >= (int)plen || fs_mkdir_p(dir, 0700, err, errlen)) {
        json_decref(doc);
        return doc ? -1 : errbuf_set(err, errlen, "out of memory");
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    int rc = text ? fs_write_file_atomic(path, text, strlen(text), err, errlen) : -1;
    free(text);
    return rc;
}

/* ---- the supervisor ----------------------------------------------------------------------------- */
/* "worker killed by signal 9 (Killed)", "worker exited with status 1", ... for a
 * process status, plus the rank's own error when it sent one. */
static void describe_exit(int status, const char *last_error, char *out, size_t len) {
    if (WIFSIGNALED(status))
        snprintf(out, len, "worker killed by signal %d (%s)%s%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                 last_error[0] ? ": " : "", last_error);
    else if (WIFEXITED(status) && last_error[0])
        snprintf(out, len, "%s", last_error);
    else if (WIFEXITED(status))
        snprintf(out, len, "worker exited with status %d", WEXITSTATUS(status));
    else
        snprintf(out, len, "worker ended with status 0x%x", status);
}

/* Records a run's final state. A store that cannot be written (a full disk,
 * say) must not leave the job "running" for good: the write is tried again
 * every FINAL_RETRY_S until it succeeds or the daemon stops (sched_stop_all
 * marks the run shut down; the next start then finds the job running and
 * marks it interrupted, as after a crash). The run's devices stay taken
 * meanwhile: nothing of a next job could be recorded either. STORE_OK, or
 * the last error. */
static int record_final_state(run_t *rn, job_state_t to, const json_t *extra, char *err, size_t errlen) {
    daemon_t *d = rn->s->d;
    for (int attempt = 0;; attempt++) {
        int rc = store_job_set_state(d->store, rn->job, JOB_STATE_ANY, to, extra, err, errlen);
        if (rc != STORE_ERR) {   /* recorded, or refused for good (the job is gone) */
            if (rc == STORE_OK && attempt > 0)
                log_info(rn->job, "final state %s recorded after %d attempts", job_state_name(to), attempt + 1);
            return rc;
        }
        if (attempt == 0)
            log_error(rn->job, "cannot record the final state %s: %s; trying again every %d s", job_state_name(to), err,
                      FINAL_RETRY_S);
        pthread_mutex_lock(&rn->s->mu);
        struct timespec ts;
        mono_deadline(&ts, FINAL_RETRY_S * 1000);
        while (!rn->s->stop && !rn->shutdown && pthread_cond_timedwait(&rn->s->cv, &rn->s->mu, &ts) != ETIMEDOUT) {
        }
        int stop = rn->s->stop || rn->shutdown;
        pthread_mutex_unlock(&rn->s->mu);
        if (stop) return rc;
    }
}

/* The job's final state from the status of rank `rank` (rank 0, or the rank
 * that failed first when one did). */
static void finish_job(run_t *rn, int status, int rank, int spawned) {
    daemon_t *d = rn->s->d;
    char err[512], reason[1400] = "", why[1200];
    job_state_t state = JOB_RUNNING;   /* when it cannot be read back: judged by the run's flags */
    if (store_job_state(d->store, rn->job, &state, err, sizeof err) != STORE_OK) state = JOB_RUNNING;
    int cancelling = state == JOB_CANCELLING || rn->cancel;
    job_state_t to;
    pthread_mutex_lock(&rn->s->mu);
    int shutdown = rn->shutdown, killed = rn->killed;
    json_t *result = rn->result ? json_incref(rn->result) : NULL;
    pthread_mutex_unlock(&rn->s->mu);
    const char *last_error = rn->last_error[rank];
    char who[96] = "";
    if (rn->world > 1 && rank > 0)
        snprintf(who, sizeof who, "rank %d (device %d, pid %d): ", rank, d->dev_index[rn->slot[rank]],
                 (int)rn->pid[rank]);
    if (!spawned) {
        to = JOB_FAILED;
        snprintf(reason, sizeof reason, "%s", last_error);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        to = cancelling ? JOB_CANCELLED : JOB_SUCCEEDED;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_STOPPED) {
        to = cancelling ? JOB_CANCELLED : shutdown ? JOB_INTERRUPTED : JOB_FAILED;
        if (!cancelling && !shutdown) snprintf(reason, sizeof reason, "%sworker stopped unexpectedly", who);
        if (shutdown && !cancelling) snprintf(reason, sizeof reason, "daemon stopped");
    } else if (WIFEXITED(status)) {
        to = JOB_FAILED;
        describe_exit(status, last_error, why, sizeof why);
        snprintf(reason, sizeof reason, "%s%s", who, why);
    } else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        if (cancelling) {
            to = JOB_CANCELLED;
            if (killed) snprintf(reason, sizeof reason, "worker killed after the %.0f s cancel grace period", d->cfg.cancel_grace_s);
            else snprintf(reason, sizeof reason, "worker ended by signal %d (%s) while cancelling", sig, strsignal(sig));
        } else if (shutdown) {
            to = JOB_INTERRUPTED;
            snprintf(reason, sizeof reason, "daemon stopped; worker killed by signal %d (%s)", sig, strsignal(sig));
        } else {
            to = JOB_FAILED;
            describe_exit(status, last_error, why, sizeof why);
            snprintf(reason, sizeof reason, "%s%s", who, why);
        }
    } else {
        to = JOB_FAILED;
        snprintf(reason, sizeof reason, "%sworker ended with status 0x%x", who, status);
    }
    /* a worker that died writing a checkpoint left a temporary directory
     * (no one else writes into this job's checkpoints); gone before the
     * final state is visible */
    int swept = ckpt_sweep_tmp(d->checkpoint_root, rn->job, err, sizeof err);
    if (swept < 0) log_warn(rn->job, "cannot remove an unfinished checkpoint directory: %s", err);
    else if (swept > 0) log_info(rn->job, "removed %d unfinished checkpoint director%s", swept, swept == 1 ? "y" : "ies");
    json_t *extra = json_object();
    if (result) json_object_set_new(extra, "result", result);
    if (to == JOB_FAILED) json_object_set_new(extra, "error", errbuf_json_string(reason[0] ? reason : "failed"));
    else if (reason[0]) json_object_set_new(extra, "reason", errbuf_json_string(reason));
    int rc = record_final_state(rn, to, extra, err, sizeof err);
    json_decref(extra);
    if (rc) log_error(rn->job, "cannot record the final state %s: %s", job_state_name(to), err);
    else if (to == JOB_FAILED) log_error(rn->job, "job failed: %s", reason);
    else log_info(rn->job, "job %s%s%s", job_state_name(to), reason[0] ? ": " : "", reason);
    atomic_fetch_add(&d->jobs_finished, 1);
    notify_status("job %s %s", rn->job, job_state_name(to));
    /* a job interrupted by the stop is requeued by the next start: leave it be */
    if (rc == STORE_OK && !shutdown) retain_jobs(d, rn->job);
}

/* Signals every rank not reaped yet. Caller holds s->mu. */
static void signal_ranks(run_t *rn, const int *reaped, int sig) {
    for (int r = 0; r < rn->world; r++)
        if (rn->pid[r] > 0 && !(reaped && reaped[r])) kill(rn->pid[r], sig);
}

/* A rank ended while others may still run. A clean end (done, or stopped on
 * request) lets them finish; any other end fails the job: the others are told
 * through the rendezvous segment (their collectives return at once; on cuda a
 * watcher thread ends them), get SIGTERM, and SIGKILL 10 s later at most. */
static void rank_ended(run_t *rn, int rank, int status, const int *reaped, int *first_fail, int *root_fail) {
    daemon_t *d = rn->s->d;
    int clean = WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == WORKER_EXIT_STOPPED);
    if (clean || rn->world == 1) return;
    /* a rank that failed because another did reports "collectives aborted: ..." */
    int secondary = WIFEXITED(status) && strstr(rn->last_error[rank], "collectives aborted") != NULL;
    if (*root_fail < 0 && !secondary) *root_fail = rank;
    if (*first_fail >= 0) return;
    *first_fail = rank;
    char why[1200], msg[1400];
    describe_exit(status, rn->last_error[rank], why, sizeof why);
    snprintf(msg, sizeof msg, "rank %d (device %d, pid %d): %s", rank, d->dev_index[rn->slot[rank]],
             (int)rn->pid[rank], why);
    log_warn(rn->job, "%s: stopping the other ranks", msg);
    coll_segment_abort(rn->coll, msg);
    pthread_mutex_lock(&rn->s->mu);
    signal_ranks(rn, reaped, SIGTERM);
    double grace = d->cfg.cancel_grace_s < 10 ? d->cfg.cancel_grace_s : 10;
    if (rn->kill_at == 0 || rn->kill_at > mono_now() + grace) rn->kill_at = mono_now() + grace;
    pthread_mutex_unlock(&rn->s->mu);
}

static void *supervise(void *arg) {
    run_t *rn = arg;
    sched_t *s = rn->s;
    daemon_t *d = s->d;
    const int W = rn->world;
    char err[900], job_file[PATH_MAX + 64] = "";
    json_t *job = NULL;
    int status[COLL_MAX_WORLD] = {0}, fd[COLL_MAX_WORLD], reaped[COLL_MAX_WORLD] = {0}, eof[COLL_MAX_WORLD] = {0};
    int spawned = 0, nreaped = 0, first_fail = -1, root_fail = -1;
    char *buf[COLL_MAX_WORLD] = {0};
    size_t cap[COLL_MAX_WORLD], len[COLL_MAX_WORLD];
    for (int r = 0; r < W; r++) { fd[r] = -1; cap[r] = 1 << 16; len[r] = 0; }
    if (store_job_get(d->store, rn->job, &job, err, sizeof err) ||
        (W > 1 && coll_segment_create(d->backend_name, W, rn->job, rn->coll, err, sizeof err)) ||
        write_job_file(rn, job, job_file, sizeof job_file, err, sizeof err)) {
        snprintf(rn->last_error[0], sizeof rn->last_error[0], "cannot prepare the worker: %s", err);
        goto done;
    }
    for (int r = 0; r < W; r++) {
        pid_t pid = worker_spawn(d->exe, job_file, r, &fd[r], err, sizeof err);
        if (pid < 0) {
            if (W > 1) snprintf(rn->last_error[0], sizeof rn->last_error[0], "cannot start the worker of rank %d: %s", r, err);
            else snprintf(rn->last_error[0], sizeof rn->last_error[0], "cannot start the worker: %s", err);
            /* the ranks already started cannot meet the missing one: they go */
            coll_segment_abort(rn->coll, rn->last_error[0]);
            pthread_mutex_lock(&s->mu);
            for (int k = 0; k < r; k++) kill(rn->pid[k], SIGKILL);
            pthread_mutex_unlock(&s->mu);
            for (int k = 0; k < r; k++) {
                waitpid(rn->pid[k], NULL, 0);
                close(fd[k]);
                fd[k] = -1;
            }
            goto done;
        }
        pthread_mutex_lock(&s->mu);
        rn->pid[r] = pid;
        pthread_mutex_unlock(&s->mu);
        buf[r] = malloc(cap[r]);
    }
    spawned = 1;
    store_job_set_worker(d->store, rn->job, (int)rn->pid[0], err, sizeof err);
    /* a cancel that came between the start and this point found no worker to signal */
    job_state_t now;
    int cancelled_early = store_job_state(d->store, rn->job, &now, err, sizeof err) == STORE_OK &&
                          now == JOB_CANCELLING;
    pthread_mutex_lock(&s->mu);
    if (cancelled_early && !rn->cancel) {
        rn->cancel = 1;
        rn->kill_at = mono_now() + d->cfg.cancel_grace_s;
    }
    if (rn->cancel || rn->shutdown) signal_ranks(rn, NULL, SIGTERM);
    pthread_mutex_unlock(&s->mu);
    for (int r = 0; r < W; r++)
        if (W > 1) log_info(rn->job, "worker %d (rank %d of %d) started on device %d", (int)rn->pid[r], r, W,
                            d->dev_index[rn->slot[r]]);
        else log_info(rn->job, "worker %d started on device %d", (int)rn->pid[r], d->dev_index[rn->slot[r]]);

    while (nreaped < W) {
        struct pollfd pfd[COLL_MAX_WORLD];
        int who[COLL_MAX_WORLD], np = 0;
        for (int r = 0; r < W; r++)
            if (!eof[r]) { pfd[np] = (struct pollfd){fd[r], POLLIN, 0}; who[np++] = r; }
        int pr = np ? poll(pfd, (nfds_t)np, 250) : 0;
        if (!np) usleep(20000);
        pthread_mutex_lock(&s->mu);
        if (rn->kill_at > 0 && mono_now() >= rn->kill_at && !rn->killed) {
            log_warn(rn->job, "worker%s did not stop in time: SIGKILL", W > 1 ? "s" : "");
            signal_ranks(rn, reaped, SIGKILL);
            rn->killed = 1;
        }
        pthread_mutex_unlock(&s->mu);
        for (int k = 0; pr > 0 && k < np; k++) {
            if (!pfd[k].revents) continue;
            int r = who[k];
            if (len[r] + 4096 > cap[r]) {
                if (cap[r] >= LINE_MAX_BYTES) {
                    log_error(rn->job, "worker sent a line over %u bytes: killing it", LINE_MAX_BYTES);
                    snprintf(rn->last_error[r], sizeof rn->last_error[r], "worker event line too long");
                    kill(rn->pid[r], SIGKILL);
                    len[r] = 0;
                } else {
                    char *nb = realloc(buf[r], cap[r] * 2);
                    if (nb) { buf[r] = nb; cap[r] *= 2; }
                }
            }
            ssize_t n = buf[r] && len[r] + 1 < cap[r] ? read(fd[r], buf[r] + len[r], cap[r] - len[r] - 1) : 0;
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n <= 0) {
                eof[r] = 1;
                close(fd[r]);
                fd[r] = -1;
                continue;
            }
            len[r] += (size_t)n;
            buf[r][len[r]] = 0;
            char *start = buf[r], *nl;
            while ((nl = memchr(start, '\n', len[r] - (size_t)(start - buf[r])))) {
                *nl = 0;
                if (nl > start) handle_line(rn, r, start);
                start = nl + 1;
            }
            len[r] -= (size_t)(start - buf[r]);
            memmove(buf[r], start, len[r]);
        }
        /* reap the ranks whose pipes closed, still honouring the kill deadline */
        for (int r = 0; r < W; r++) {
            if (!eof[r] || reaped[r]) continue;
            int st = 0;
            pid_t w = waitpid(rn->pid[r], &st, WNOHANG);
            if (w == rn->pid[r] || (w < 0 && errno != EINTR)) {
                status[r] = w == rn->pid[r] ? st : 0;
                reaped[r] = 1;
                nreaped++;
                rank_ended(rn, r, status[r], reaped, &first_fail, &root_fail);
            } else {
                pthread_mutex_lock(&s->mu);
                if (!rn->killed && rn->kill_at == 0)   /* closed its pipe but has not exited: the grace period */
                    rn->kill_at = mono_now() + d->cfg.cancel_grace_s;
                pthread_mutex_unlock(&s->mu);
            }
        }
    }
done:
    for (int r = 0; r < W; r++) {
        free(buf[r]);
        if (fd[r] >= 0) close(fd[r]);
    }
    if (job_file[0]) unlink(job_file);
    coll_segment_unlink(rn->coll);
    int rank = root_fail >= 0 ? root_fail : first_fail >= 0 ? first_fail : 0;
    finish_job(rn, status[rank], rank, spawned);
    json_decref(job);
    residency_release(d->res, rn->dataset);
    pthread_mutex_lock(&s->mu);
    for (int r = 0; r < W; r++) s->slot_run[rn->slot[r]] = NULL;
    rn->done = 1;
    s->kicked = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void run_free(run_t *rn) {
    if (!rn) return;
    json_decref(rn->progress);
    json_decref(rn->result);
    json_decref(rn->shares);
    free(rn);
}

/* ---- the scheduler loop ---------------------------------------------------------------------- */
static int slot_of_device(daemon_t *d, int device) {
    for (int i = 0; i < d->n_dev; i++)
        if (d->dev_index[i] == device) return i;
    return -1;
}

/* The queued job fails before it starts (its dataset failed, it cannot be placed, ...). */
static void fail_queued(daemon_t *d, const char *id, const char *msg) {
    char err[512];
    json_t *extra = json_pack("{s:o}", "error", errbuf_json_string(msg));
    if (store_job_set_state(d->store, id, JOB_QUEUED, JOB_FAILED, extra, err, sizeof err) == STORE_OK) {
        log_error(id, "job failed before start: %s", msg);
        retain_jobs(d, id);
    }
    json_decref(extra);
}

/* The device slots a queued job asks for: a list (its "devices" list) or a
 * count. A job on a sharded dataset needs every device that holds a shard
 * (all of them): without "devices" (submitted before the placement was known)
 * it gets them (*expanded = 1); a debug job or another count cannot run. 0
 * with *is_list/list/k, or -1 with msg (the job can never start here). */
static int want_slots(daemon_t *d, const json_t *want, int debug, int shards, const char *dataset, int *is_list,
                      int *list, int *k, int *expanded, char *msg, size_t msglen) {
    *is_list = 0;
    *k = 1;
    *expanded = 0;
    if (json_is_array(want)) {
        *is_list = 1;
        *k = (int)json_array_size(want);
        for (int i = 0; i < *k; i++) {
            int dev = (int)json_integer_value(json_array_get(want, (size_t)i));
            list[i] = slot_of_device(d, dev);
            if (list[i] < 0) return errbuf_set(msg, msglen, "devices[%d] = %d is not one of this daemon's devices "
                                               "(--devices)", i, dev);
        }
    } else if (json_is_integer(want)) {
        *k = (int)json_integer_value(want);
    } else if (shards > 1 && !debug) {
        *k = d->n_dev;
        *expanded = 1;
    }
    if (*k < 1 || *k > d->n_dev)
        return errbuf_set(msg, msglen, "the job needs %d devices; this daemon has %d (--devices)", *k, d->n_dev);
    if (shards > 1 && (*k != shards || debug)) return admit_sharded_why(msg, msglen, dataset, shards, debug);
    return 0;
}

/* Starts what can start. Called with s->mu held; drops it around store/residency calls.
 *
 * Policy: jobs are taken in queue order (priority, then FIFO). A job takes its
 * devices all at once or not at all. A job whose dataset is ready but whose
 * devices are busy HOLDS the free ones it needs (a list: those listed; a
 * count: up to that many free ones): jobs after it in the queue start only on
 * devices it does not hold. So a job on several devices is never starved by a
 * stream of smaller jobs behind it; jobs before it in the queue (a higher
 * priority) still go first. */
static void try_start(sched_t *s) {
    daemon_t *d = s->d;
    int nfree = 0;
    for (int i = 0; i < CFG_MAX_DEVICES; i++) {
        run_t *rn = s->runs[i];
        if (rn && rn->done) {   /* reap a finished supervisor */
            pthread_mutex_unlock(&s->mu);
            pthread_join(rn->thr, NULL);
            pthread_mutex_lock(&s->mu);
            s->runs[i] = NULL;
            run_free(rn);
        }
    }
    for (int i = 0; i < d->n_dev; i++) nfree += !s->slot_run[i];
    if (!nfree || atomic_load(&d->stopping)) return;
    pthread_mutex_unlock(&s->mu);
    char err[512];
    json_t *q = NULL;
    if (store_jobs_queued(d->store, &q, err, sizeof err)) {
        log_error(NULL, "scheduler: %s", err);
        pthread_mutex_lock(&s->mu);
        return;
    }
    int n = (int)json_array_size(q);
    sched_entry_t *e = calloc((size_t)n + 1, sizeof *e);
    for (int i = 0; e && i < n; i++) {
        json_t *j = json_array_get(q, (size_t)i);
        snprintf(e[i].id, sizeof e[i].id, "%s", json_string_value(json_object_get(j, "id")));
        e[i].priority = (int)json_integer_value(json_object_get(j, "priority"));
        e[i].seq = json_integer_value(json_object_get(j, "seq"));
        e[i].pos = i;
    }
    if (e) sched_order(e, n);
    int held[CFG_MAX_DEVICES] = {0};
    for (int i = 0; e && i < n && !atomic_load(&d->stopping); i++) {
        /* what the queue listing gives (no spec is read until a job starts) */
        const json_t *qe = json_array_get(q, (size_t)e[i].pos);
        const char *dataset = json_string_value(json_object_get(qe, "dataset"));
        if (!dataset) continue;
        char msg[1024];
        int is_list, k, slots[CFG_MAX_DEVICES], expanded;
        int shards = residency_shards(d->res, dataset);
        const char *type = json_string_value(json_object_get(qe, "type"));
        int debug = type && !strcmp(type, "debug");
        if (want_slots(d, json_object_get(qe, "devices"), debug, shards, dataset, &is_list, slots, &k, &expanded, msg,
                       sizeof msg)) {
            fail_queued(d, e[i].id, msg);   /* never placeable here */
            continue;
        }
        if (shards > 1 && !is_list) {   /* every shard, rank r on the device of shard r */
            is_list = 1;
            for (int r = 0; r < k; r++) slots[r] = r;
        }
        /* free devices not held for a job before this one */
        pthread_mutex_lock(&s->mu);
        int nav = 0, fits = 1;
        for (int sl = 0; sl < d->n_dev; sl++) nav += !s->slot_run[sl] && !held[sl];
        if (is_list) {
            for (int r = 0; r < k; r++) fits &= !s->slot_run[slots[r]] && !held[slots[r]];
        } else if (nav >= k) {
            for (int sl = 0, r = 0; sl < d->n_dev && r < k; sl++)
                if (!s->slot_run[sl] && !held[sl]) slots[r++] = sl;
        } else {
            fits = 0;
        }
        if (!fits && shards > 0) {   /* ready and waiting for devices: hold what it needs */
            if (is_list) for (int r = 0; r < k; r++) held[slots[r]] = 1;
            else
                for (int sl = 0, r = 0; sl < d->n_dev && r < k; sl++)
                    if (!s->slot_run[sl] && !held[sl]) { held[sl] = 1; r++; }
        }
        pthread_mutex_unlock(&s->mu);
        if (!nav) break;
        if (!fits) continue;
        json_t *shares = NULL;
        int r = residency_acquire(d->res, dataset, slots, k, &shares, msg, sizeof msg);
        if (r == 1) continue;       /* dataset still loading: let others go */
        json_t *job = NULL, *ds = NULL;
        if (r == 0) {
            if (store_job_get(d->store, e[i].id, &job, err, sizeof err) ||
                store_dataset_get(d->store, dataset, &ds, err, sizeof err)) {
                residency_release(d->res, dataset);
                json_decref(shares);
                json_decref(job);
                json_decref(ds);
                continue;
            }
            /* the memory estimate against these devices' room now */
            if (admit_start(d, json_object_get(job, "spec"), slots, k, ds, msg, sizeof msg)) {
                residency_release(d->res, dataset);
                json_decref(shares);
                r = -1;
            }
            json_decref(ds);
        }
        if (r < 0) {
            fail_queued(d, e[i].id, msg);
            json_decref(job);
            continue;
        }
        json_t *devs = json_array();
        for (int x = 0; x < k; x++) json_array_append_new(devs, json_integer(d->dev_index[slots[x]]));
        json_t *extra = json_pack("{s:i, s:o}", "device", d->dev_index[slots[0]], "devices", devs);
        int rc = store_job_set_state(d->store, e[i].id, JOB_QUEUED, JOB_RUNNING, extra, err, sizeof err);
        json_decref(extra);
        run_t *rn = rc ? NULL : calloc(1, sizeof *rn);
        if (!rn) {   /* cancelled meanwhile (or out of memory) */
            if (!rc) fail_queued(d, e[i].id, "out of memory");
            residency_release(d->res, dataset);
            json_decref(shares);
            json_decref(job);
            continue;
        }
        rn->s = s;
        rn->world = k;
        snprintf(rn->job, sizeof rn->job, "%s", e[i].id);
        snprintf(rn->type, sizeof rn->type, "%s", json_string_value(json_object_get(job, "type")));
        snprintf(rn->dataset, sizeof rn->dataset, "%s", dataset);
        memcpy(rn->slot, slots, (size_t)k * sizeof(int));
        rn->shares = shares;
        json_t *ke = json_object_get(json_object_get(job, "spec"), "keep_checkpoints");
        rn->keep_checkpoints = json_is_integer(ke) ? (int)json_integer_value(ke) : 3;
        rn->batch_size = (int)json_integer_value(json_object_get(json_object_get(job, "spec"), "batch_size"));
        pthread_mutex_lock(&s->mu);
        int at = -1;
        for (int x = 0; x < CFG_MAX_DEVICES && at < 0; x++)
            if (!s->runs[x]) at = x;
        assert(at >= 0);   /* at most one run per slot, and this one has a free slot */
        for (int x = 0; x < k; x++) s->slot_run[slots[x]] = rn;
        s->runs[at] = rn;
        int ok = pthread_create(&rn->thr, NULL, supervise, rn) == 0;
        if (!ok) {
            for (int x = 0; x < k; x++) s->slot_run[slots[x]] = NULL;
            s->runs[at] = NULL;
        }
        pthread_mutex_unlock(&s->mu);
        if (!ok) {
            json_t *x = json_pack("{s:s}", "error", "cannot create the supervisor thread");
            store_job_set_state(d->store, e[i].id, JOB_RUNNING, JOB_FAILED, x, err, sizeof err);
            json_decref(x);
            residency_release(d->res, dataset);
            run_free(rn);
        } else {
            atomic_fetch_add(&d->jobs_started, 1);
            char where[160] = "";
            for (int x = 0, o = 0; x < k && o < (int)sizeof where - 8; x++)
                o += snprintf(where + o, sizeof where - (size_t)o, "%s%d", x ? "," : "", d->dev_index[slots[x]]);
            if (expanded) admit_note_sharded(d, e[i].id, dataset, k);
            log_info(e[i].id, "job started: %s on dataset %s, device%s %s", rn->type, dataset, k > 1 ? "s" : "", where);
        }
        json_decref(job);
    }
    free(e);
    json_decref(q);
    pthread_mutex_lock(&s->mu);
}

static void *sched_main(void *arg) {
    sched_t *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        s->tick = mono_now();
        s->kicked = 0;
        try_start(s);
        if (s->stop) break;
        if (!s->kicked) {
            struct timespec ts;
            mono_deadline(&ts, 1000);
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int sched_start(sched_t *s, char *err, size_t errlen) {
    if (pthread_create(&s->thr, NULL, sched_main, s)) {
        snprintf(err, errlen, "cannot create the scheduler thread");
        return -1;
    }
    s->started = 1;
    return 0;
}

int sched_cancel(sched_t *s, const char *job_id) {
    int found = -1;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < CFG_MAX_DEVICES; i++) {
        run_t *rn = s->runs[i];
        if (!rn || rn->done || strcmp(rn->job, job_id) != 0) continue;
        found = 0;
        if (!rn->cancel) {
            rn->cancel = 1;
            rn->kill_at = mono_now() + s->d->cfg.cancel_grace_s;
            signal_ranks(rn, NULL, SIGTERM);
            log_info(job_id, "cancelling: SIGTERM to worker %d%s (SIGKILL in %.0f s)", (int)rn->pid[0],
                     rn->world > 1 ? " and the other ranks" : "", s->d->cfg.cancel_grace_s);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

void sched_stop_all(sched_t *s) {
    daemon_t *d = s->d;
    pthread_mutex_lock(&s->mu);
    int running = 0;
    double deadline = mono_now() + d->cfg.cancel_grace_s;
    for (int i = 0; i < CFG_MAX_DEVICES; i++) {
        run_t *rn = s->runs[i];
        if (!rn || rn->done) continue;
        running++;
        rn->shutdown = 1;
        if (rn->kill_at == 0 || rn->kill_at > deadline) rn->kill_at = deadline;
        signal_ranks(rn, NULL, SIGTERM);
        log_info(rn->job, "daemon stopping: SIGTERM to worker %d%s (a train job checkpoints)", (int)rn->pid[0],
                 rn->world > 1 ? " and the other ranks" : "");
    }
    if (running) notify_extend_timeout(d->cfg.cancel_grace_s + 15);
    pthread_cond_broadcast(&s->cv);   /* a run retrying its final state gives up (record_final_state) */
    for (;;) {
        int busy = 0;
        for (int i = 0; i < CFG_MAX_DEVICES; i++) busy += s->runs[i] && !s->runs[i]->done;
        if (!busy) break;
        struct timespec ts;
        mono_deadline(&ts, 5000);
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        notify_extend_timeout(15);
    }
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->started) {
        pthread_join(s->thr, NULL);
        s->started = 0;
    }
    for (int i = 0; i < CFG_MAX_DEVICES; i++)
        if (s->runs[i]) {
            pthread_join(s->runs[i]->thr, NULL);
            run_free(s->runs[i]);
            s->runs[i] = NULL;
        }
}

void sched_destroy(sched_t *s) {
    if (!s) return;
    if (s->started) sched_stop_all(s);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

json_t *sched_running(sched_t *s) {
    json_t *a = json_array();
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < CFG_MAX_DEVICES; i++) {
        run_t *rn = s->runs[i];
        if (!rn || rn->done) continue;
        json_t *devs = json_array(), *pids = json_array();
        for (int r = 0; r < rn->world; r++) {
            json_array_append_new(devs, json_integer(s->d->dev_index[rn->slot[r]]));
            json_array_append_new(pids, json_integer(rn->pid[r]));
        }
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:i, s:i, s:o, s:o, s:o, s:b, s:i}", "id", rn->job, "type",
                                           rn->type, "dataset", rn->dataset, "device", s->d->dev_index[rn->slot[0]],
                                           "pid", (int)rn->pid[0], "devices", devs, "pids", pids, "progress",
                                           rn->progress ? json_deep_copy(rn->progress) : json_object(),
                                           "cancelling", rn->cancel, "batch_size", rn->batch_size));
    }
    pthread_mutex_unlock(&s->mu);
    return a;
}

double sched_images_per_s(sched_t *s) {
    double t = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < CFG_MAX_DEVICES; i++)
        if (s->runs[i] && !s->runs[i]->done && isfinite(s->runs[i]->images_per_s)) t += s->runs[i]->images_per_s;
    pthread_mutex_unlock(&s->mu);
    return t;
}

/* ---- start-up recovery ------------------------------------------------------------------------ */
void sched_recover(daemon_t *d) {
    char err[512];
    /* what the last daemon left running ends: running -> interrupted, cancelling -> cancelled */
    static const job_state_t found[2] = {JOB_RUNNING, JOB_CANCELLING}, ends[2] = {JOB_INTERRUPTED, JOB_CANCELLED};
    for (int k = 0; k < 2; k++) {
        json_t *ids = NULL;
        if (store_job_ids_in_state(d->store, found[k], &ids, err, sizeof err)) continue;
        size_t i;
        json_t *v;
        json_array_foreach(ids, i, v) {
            const char *id = json_string_value(v);
            json_t *extra = json_pack("{s:s}", "reason", "the daemon stopped while the job ran");
            if (store_job_set_state(d->store, id, found[k], ends[k], extra, err, sizeof err) == STORE_OK)
                log_warn(id, "found %s at start: now %s", job_state_name(found[k]), job_state_name(ends[k]));
            json_decref(extra);
        }
        json_decref(ids);
    }
    /* train jobs interrupted with a checkpoint resume from it under the same id */
    json_t *ids = NULL;
    if (store_job_ids_in_state(d->store, JOB_INTERRUPTED, &ids, err, sizeof err)) return;
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) {
        const char *id = json_string_value(v);
        json_t *job = NULL, *ck = NULL;
        if (store_job_get(d->store, id, &job, err, sizeof err)) continue;
        job_type_t type;
        if (job_type_parse(json_string_value(json_object_get(job, "type")), &type) == 0 && type == JOB_TRAIN &&
            store_checkpoint_latest(d->store, id, &ck, err, sizeof err) == STORE_OK) {
            const char *cid = json_string_value(json_object_get(ck, "id"));
            json_t *extra = json_pack("{s:s, s:s, s:s}", "resume_checkpoint", cid, "resumed_from", cid, "reason",
                                      "requeued after restart to resume from its latest checkpoint");
            if (store_job_set_state(d->store, id, JOB_INTERRUPTED, JOB_QUEUED, extra, err, sizeof err) == STORE_OK)
                log_info(id, "requeued to resume from checkpoint %s (step %lld)", cid,
                         (long long)json_integer_value(json_object_get(ck, "step")));
            else
                log_error(id, "cannot requeue: %s", err);
            json_decref(extra);
        }
        json_decref(ck);
        json_decref(job);
    }
    json_decref(ids);
}
