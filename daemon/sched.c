/* daemon/sched.c — the scheduler (priority queue, one job per device) and the
 * supervision of worker processes (see sched.h).
 *
 * Threads: the scheduler thread starts jobs; one supervisor thread per running
 * job forks the worker, reads its events, records them and the outcome. The
 * supervisor forks the worker itself and lives exactly as long as it, so the
 * worker's PR_SET_PDEATHSIG (tied to the forking thread) fires only when the
 * daemon dies. s->mu guards the slots.
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

#include "daemon/admit.h"
#include "daemon/log.h"
#include "daemon/notify.h"
#include "daemon/residency.h"
#include "daemon/retain.h"
#include "store/sha256.h"
#include "daemon/worker.h"
#include "gpu/jobspec.h"
#include "store/checkpoint.h"
#include "store/errbuf.h"
#include "store/fsutil.h"
#include "store/mono.h"

#define LINE_MAX_BYTES (64u << 20)
#define PROGRESS_STORE_S 0.5

typedef struct {
    sched_t *s;
    int index;                 /* slot = device slot */
    int busy;
    char job[32];
    char type[16];
    char dataset[JS_NAME_MAX];
    pid_t pid;
    int cancel;                /* cancel requested */
    int shutdown;              /* stopped because the daemon stops */
    int killed;                /* we sent SIGKILL */
    double kill_at;            /* 0 = none */
    json_t *progress;          /* latest, from the worker */
    double images_per_s;
    double last_store;
    int keep_checkpoints;
    int batch_size;            /* from the spec (for /metrics' steps per second) */
    json_t *result;
    char last_error[1024];
    json_t *share;             /* dataset share for the worker */
    pthread_t thr;
    int thr_live;              /* thread created and not joined */
} slot_t;

struct sched {
    daemon_t *d;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    slot_t slots[CFG_MAX_DEVICES];
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
    for (int i = 0; i < CFG_MAX_DEVICES; i++) { s->slots[i].s = s; s->slots[i].index = i; }
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

/* ---- recording what a worker reports ---------------------------------------------------- */
/* A checkpoint the worker renamed into place: recorded, then the job's older
 * ones pruned under keep_checkpoints (store/checkpoint.c owns both). */
static void record_checkpoint(slot_t *sl, const json_t *data) {
    daemon_t *d = sl->s->d;
    char err[512], warn[512];
    const char *dir = json_string_value(json_object_get(data, "dir"));
    long step = (long)json_integer_value(json_object_get(data, "step"));
    const json_t *metrics = json_object_get(data, "metrics");
    json_t *rec = NULL;
    if (ckpt_record(d->store, d->checkpoint_root, sl->job, dir, step, metrics, &rec, warn, sizeof warn, err,
                    sizeof err)) {
        log_error(sl->job, "checkpoint at step %ld not recorded: %s", step, err);
        return;
    }
    if (warn[0]) log_warn(sl->job, "checkpoint: %s", warn);
    log_info(sl->job, "checkpoint %s at step %ld: %s (%.1f MB)", json_string_value(json_object_get(rec, "id")), step,
             json_string_value(json_object_get(rec, "path")), json_integer_value(json_object_get(rec, "bytes")) / 1e6);
    json_decref(rec);
    json_t *pruned = NULL;
    if (ckpt_prune(d->store, d->checkpoint_root, sl->job, sl->keep_checkpoints, metrics, &pruned, err, sizeof err))
        log_warn(sl->job, "checkpoints not pruned: %s", err);
    size_t i;
    json_t *id;
    json_array_foreach(pruned, i, id)
        log_info(sl->job, "checkpoint %s pruned (keep_checkpoints %d)", json_string_value(id), sl->keep_checkpoints);
    json_decref(pruned);
}

static void handle_line(slot_t *sl, const char *line) {
    daemon_t *d = sl->s->d;
    char err[512];
    json_error_t je;
    json_t *o = json_loads(line, 0, &je);
    const char *type = json_string_value(json_object_get(o, "type"));
    json_t *data = json_object_get(o, "data");
    if (!o || !type) {
        log_warn(sl->job, "worker sent a malformed event line (%s)", o ? "no type" : je.text);
        json_decref(o);
        return;
    }
    if (!strcmp(type, "progress")) {
        double now = mono_now();
        long step = (long)json_integer_value(json_object_get(data, "step"));
        long total = (long)json_integer_value(json_object_get(data, "total_steps"));
        pthread_mutex_lock(&sl->s->mu);
        long prev = sl->progress ? (long)json_integer_value(json_object_get(sl->progress, "step")) : 0;
        json_decref(sl->progress);
        sl->progress = json_deep_copy(data);
        sl->images_per_s = json_number_value(json_object_get(data, "images_per_s"));
        int store_it = now - sl->last_store >= PROGRESS_STORE_S || step >= total;
        if (store_it) sl->last_store = now;
        pthread_mutex_unlock(&sl->s->mu);
        if (step > prev) atomic_fetch_add(&d->steps_total, step - prev);
        if (store_it) {
            if (store_job_set_progress(d->store, sl->job, data, 1, err, sizeof err))
                log_warn(sl->job, "progress: %s", err);
            notify_status("job %s: step %ld/%ld", sl->job, step, total);
        }
    } else if (!strcmp(type, "metric")) {
        const char *name = json_string_value(json_object_get(data, "name"));
        json_t *v = json_object_get(data, "value");
        if (name && store_metric_append(d->store, sl->job, name, (long)json_integer_value(json_object_get(data, "step")),
                                        json_is_number(v) ? json_number_value(v) : NAN, 1, err, sizeof err))
            log_warn(sl->job, "metric: %s", err);
    } else if (!strcmp(type, "checkpoint")) {
        record_checkpoint(sl, data);
    } else if (!strcmp(type, "log")) {
        if (store_event_append(d->store, sl->job, "log", data, NULL, err, sizeof err)) log_warn(sl->job, "log: %s", err);
    } else if (!strcmp(type, "result")) {
        pthread_mutex_lock(&sl->s->mu);
        json_decref(sl->result);
        sl->result = json_incref(data);
        pthread_mutex_unlock(&sl->s->mu);
    } else if (!strcmp(type, "error")) {
        const char *m = json_string_value(json_object_get(data, "message"));
        snprintf(sl->last_error, sizeof sl->last_error, "%s", m ? m : "error");
        json_t *ev = json_pack("{s:o, s:s}", "message", errbuf_json_string(sl->last_error), "level", "error");
        store_event_append(d->store, sl->job, "log", ev, NULL, err, sizeof err);
        json_decref(ev);
    } else if (!strcmp(type, "state")) {
        log_debug(sl->job, "worker %d started", (int)json_integer_value(json_object_get(data, "pid")));
    } else {
        log_warn(sl->job, "worker sent an unknown event type '%s'", type);
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

/* Writes the job file for the worker. 0 or -1 with err. */
static int write_job_file(slot_t *sl, const json_t *job, char *path, size_t plen, char *err, size_t errlen) {
    daemon_t *d = sl->s->d;
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
    snprintf(rel, sizeof rel, "results/%s", sl->job);
    if (fs_mkdir_under(d->work_root, rel, FS_DIR_MODE, err, errlen)) return -1;
    if (!strcmp(sl->type, "train") && fs_mkdir_under(d->checkpoint_root, sl->job, FS_DIR_MODE, err, errlen)) return -1;
    snprintf(result_dir, sizeof result_dir, "%s/results/%s", d->work_root, sl->job);
    json_t *doc = json_pack("{s:s, s:O, s:s, s:i, s:O, s:s, s:s, s:o, s:o}", "job_id", sl->job, "spec", spec,
                            "backend", d->backend_name, "device", d->dev_index[sl->index], "dataset", sl->share,
                            "checkpoint_root", d->checkpoint_root, "result_dir", result_dir,
                            "weights_path", weights[0] ? json_string(weights) : json_null(),
                            "checkpoint_path", ck[0] ? json_string(ck) : json_null());
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/jobs", d->work_root);
    if (snprintf(path, plen, "%s/%s.json", dir, sl->job) >= (int)plen || fs_mkdir_p(dir, 0700, err, errlen)) {
        json_decref(doc);
        return -1;
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    int rc = text ? fs_write_file_atomic(path, text, strlen(text), err, errlen) : -1;
    free(text);
    return rc;
}

/* ---- the supervisor ----------------------------------------------------------------------------- */
static void finish_job(slot_t *sl, int status, int spawned) {
    daemon_t *d = sl->s->d;
    char err[512], reason[1200] = "";
    job_state_t state = JOB_RUNNING;   /* when it cannot be read back: judged by the slot's flags */
    if (store_job_state(d->store, sl->job, &state, err, sizeof err) != STORE_OK) state = JOB_RUNNING;
    int cancelling = state == JOB_CANCELLING || sl->cancel;
    job_state_t to;
    pthread_mutex_lock(&sl->s->mu);
    int shutdown = sl->shutdown, killed = sl->killed;
    json_t *result = sl->result ? json_incref(sl->result) : NULL;
    pthread_mutex_unlock(&sl->s->mu);
    if (!spawned) {
        to = JOB_FAILED;
        snprintf(reason, sizeof reason, "%s", sl->last_error);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        to = cancelling ? JOB_CANCELLED : JOB_SUCCEEDED;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_STOPPED) {
        to = cancelling ? JOB_CANCELLED : shutdown ? JOB_INTERRUPTED : JOB_FAILED;
        if (!cancelling && !shutdown) snprintf(reason, sizeof reason, "worker stopped unexpectedly");
        if (shutdown && !cancelling) snprintf(reason, sizeof reason, "daemon stopped");
    } else if (WIFEXITED(status)) {
        to = JOB_FAILED;
        if (sl->last_error[0]) snprintf(reason, sizeof reason, "%s", sl->last_error);
        else snprintf(reason, sizeof reason, "worker exited with status %d", WEXITSTATUS(status));
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
            snprintf(reason, sizeof reason, "worker killed by signal %d (%s)%s%s", sig, strsignal(sig),
                     sl->last_error[0] ? ": " : "", sl->last_error);
        }
    } else {
        to = JOB_FAILED;
        snprintf(reason, sizeof reason, "worker ended with status 0x%x", status);
    }
    /* a worker that died writing a checkpoint left a temporary directory
     * (no one else writes into this job's checkpoints); gone before the
     * final state is visible */
    int swept = ckpt_sweep_tmp(d->checkpoint_root, sl->job, err, sizeof err);
    if (swept < 0) log_warn(sl->job, "cannot remove an unfinished checkpoint directory: %s", err);
    else if (swept > 0) log_info(sl->job, "removed %d unfinished checkpoint director%s", swept, swept == 1 ? "y" : "ies");
    json_t *extra = json_object();
    if (result) json_object_set_new(extra, "result", result);
    if (to == JOB_FAILED) json_object_set_new(extra, "error", errbuf_json_string(reason[0] ? reason : "failed"));
    else if (reason[0]) json_object_set_new(extra, "reason", errbuf_json_string(reason));
    int rc = store_job_set_state(d->store, sl->job, JOB_STATE_ANY, to, extra, err, sizeof err);
    json_decref(extra);
    if (rc) log_error(sl->job, "cannot record the final state %s: %s", job_state_name(to), err);
    else if (to == JOB_FAILED) log_error(sl->job, "job failed: %s", reason);
    else log_info(sl->job, "job %s%s%s", job_state_name(to), reason[0] ? ": " : "", reason);
    atomic_fetch_add(&d->jobs_finished, 1);
    notify_status("job %s %s", sl->job, job_state_name(to));
    /* a job interrupted by the stop is requeued by the next start: leave it be */
    if (rc == STORE_OK && !shutdown) retain_jobs(d, sl->job);
}

static void *supervise(void *arg) {
    slot_t *sl = arg;
    sched_t *s = sl->s;
    daemon_t *d = s->d;
    char err[900], job_file[PATH_MAX + 64] = "";
    json_t *job = NULL;
    int status = 0, spawned = 0, fd = -1;
    pid_t pid = -1;
    if (store_job_get(d->store, sl->job, &job, err, sizeof err) ||
        write_job_file(sl, job, job_file, sizeof job_file, err, sizeof err)) {
        snprintf(sl->last_error, sizeof sl->last_error, "cannot prepare the worker: %s", err);
        goto done;
    }
    pid = worker_spawn(d->exe, job_file, &fd, err, sizeof err);
    if (pid < 0) {
        snprintf(sl->last_error, sizeof sl->last_error, "cannot start the worker: %s", err);
        goto done;
    }
    spawned = 1;
    store_job_set_worker(d->store, sl->job, (int)pid, err, sizeof err);
    /* a cancel that came between the start and this point found no worker to signal */
    job_state_t now;
    int cancelled_early = store_job_state(d->store, sl->job, &now, err, sizeof err) == STORE_OK &&
                          now == JOB_CANCELLING;
    pthread_mutex_lock(&s->mu);
    sl->pid = pid;
    if (cancelled_early && !sl->cancel) {
        sl->cancel = 1;
        sl->kill_at = mono_now() + d->cfg.cancel_grace_s;
    }
    if (sl->cancel || sl->shutdown) kill(pid, SIGTERM);
    pthread_mutex_unlock(&s->mu);
    log_info(sl->job, "worker %d started on device %d", (int)pid, d->dev_index[sl->index]);

    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    int eof = 0;
    while (buf && !eof) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, 250);
        pthread_mutex_lock(&s->mu);
        if (sl->kill_at > 0 && mono_now() >= sl->kill_at && !sl->killed) {
            log_warn(sl->job, "worker %d did not stop in time: SIGKILL", (int)pid);
            kill(pid, SIGKILL);
            sl->killed = 1;
        }
        pthread_mutex_unlock(&s->mu);
        if (pr <= 0) continue;
        if (len + 4096 > cap) {
            if (cap >= LINE_MAX_BYTES) {
                log_error(sl->job, "worker sent a line over %u bytes: killing it", LINE_MAX_BYTES);
                snprintf(sl->last_error, sizeof sl->last_error, "worker event line too long");
                kill(pid, SIGKILL);
                len = 0;
            } else {
                char *nb = realloc(buf, cap * 2);
                if (!nb) break;
                buf = nb;
                cap *= 2;
            }
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) { eof = 1; n = 0; }
        len += (size_t)n;
        buf[len] = 0;
        char *start = buf, *nl;
        while ((nl = memchr(start, '\n', len - (size_t)(start - buf)))) {
            *nl = 0;
            if (nl > start) handle_line(sl, start);
            start = nl + 1;
        }
        len -= (size_t)(start - buf);
        memmove(buf, start, len);
    }
    free(buf);
    close(fd);
    /* reap, still honouring the kill deadline */
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) { status = 0; break; }
        pthread_mutex_lock(&s->mu);
        double deadline = sl->kill_at > 0 ? sl->kill_at : 0;
        pthread_mutex_unlock(&s->mu);
        if (!sl->killed && deadline == 0) {
            /* closed its events pipe but has not exited: give it the grace period */
            pthread_mutex_lock(&s->mu);
            sl->kill_at = mono_now() + d->cfg.cancel_grace_s;
            pthread_mutex_unlock(&s->mu);
        } else if (!sl->killed && mono_now() >= deadline) {
            kill(pid, SIGKILL);
            sl->killed = 1;
        }
        usleep(20000);
    }
done:
    if (job_file[0]) unlink(job_file);
    finish_job(sl, status, spawned);
    json_decref(job);
    residency_release(d->res, sl->dataset);
    pthread_mutex_lock(&s->mu);
    sl->busy = 0;
    sl->pid = 0;
    json_decref(sl->progress);
    sl->progress = NULL;
    json_decref(sl->result);
    sl->result = NULL;
    json_decref(sl->share);
    sl->share = NULL;
    s->kicked = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- the scheduler loop ---------------------------------------------------------------------- */
/* Starts what can start. Called with s->mu held; drops it around store/residency calls. */
static void try_start(sched_t *s) {
    daemon_t *d = s->d;
    int nfree = 0;
    for (int i = 0; i < d->n_dev; i++) {
        slot_t *sl = &s->slots[i];
        if (!sl->busy && sl->thr_live) {   /* reap a finished supervisor */
            pthread_mutex_unlock(&s->mu);
            pthread_join(sl->thr, NULL);
            pthread_mutex_lock(&s->mu);
            sl->thr_live = 0;
        }
        nfree += !sl->busy;
    }
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
    for (int i = 0; e && i < n && !atomic_load(&d->stopping); i++) {
        /* what the queue listing gives (no spec is read until a job starts) */
        const char *dataset = json_string_value(json_object_get(json_array_get(q, (size_t)e[i].pos), "dataset"));
        if (!dataset) continue;
        pthread_mutex_lock(&s->mu);
        int slot = -1;
        for (int k = 0; k < d->n_dev && slot < 0; k++)
            if (!s->slots[k].busy && !s->slots[k].thr_live) slot = k;
        pthread_mutex_unlock(&s->mu);
        if (slot < 0) break;
        json_t *share = NULL;
        char msg[1024];
        int r = residency_acquire(d->res, dataset, slot, &share, msg, sizeof msg);
        if (r == 1) continue;       /* dataset still loading: let others go */
        json_t *job = NULL, *ds = NULL;
        if (r == 0) {
            if (store_job_get(d->store, e[i].id, &job, err, sizeof err) ||
                store_dataset_get(d->store, dataset, &ds, err, sizeof err)) {
                residency_release(d->res, dataset);
                json_decref(share);
                json_decref(job);
                json_decref(ds);
                continue;
            }
            /* the memory estimate against this device's room now */
            if (admit_start(d, json_object_get(job, "spec"), slot, ds, msg, sizeof msg)) {
                residency_release(d->res, dataset);
                json_decref(share);
                r = -1;
            }
            json_decref(ds);
        }
        if (r < 0) {
            json_t *extra = json_pack("{s:o}", "error", errbuf_json_string(msg));
            if (store_job_set_state(d->store, e[i].id, JOB_QUEUED, JOB_FAILED, extra, err, sizeof err) == STORE_OK) {
                log_error(e[i].id, "job failed before start: %s", msg);
                retain_jobs(d, e[i].id);
            }
            json_decref(extra);
            json_decref(job);
            continue;
        }
        json_t *extra = json_pack("{s:i}", "device", d->dev_index[slot]);
        int rc = store_job_set_state(d->store, e[i].id, JOB_QUEUED, JOB_RUNNING, extra, err, sizeof err);
        json_decref(extra);
        if (rc) {   /* cancelled meanwhile */
            residency_release(d->res, dataset);
            json_decref(share);
            json_decref(job);
            continue;
        }
        pthread_mutex_lock(&s->mu);
        slot_t *sl = &s->slots[slot];
        sl->busy = 1;
        snprintf(sl->job, sizeof sl->job, "%s", e[i].id);
        snprintf(sl->type, sizeof sl->type, "%s", json_string_value(json_object_get(job, "type")));
        snprintf(sl->dataset, sizeof sl->dataset, "%s", dataset);
        sl->pid = 0;
        sl->cancel = sl->shutdown = sl->killed = 0;
        sl->kill_at = 0;
        sl->progress = NULL;
        sl->images_per_s = 0;
        sl->last_store = 0;
        sl->result = NULL;
        sl->last_error[0] = 0;
        sl->share = share;
        json_t *ke = json_object_get(json_object_get(job, "spec"), "keep_checkpoints");
        sl->keep_checkpoints = json_is_integer(ke) ? (int)json_integer_value(ke) : 3;
        sl->batch_size = (int)json_integer_value(json_object_get(json_object_get(job, "spec"), "batch_size"));
        int ok = pthread_create(&sl->thr, NULL, supervise, sl) == 0;
        sl->thr_live = ok;
        if (!ok) sl->busy = 0;
        pthread_mutex_unlock(&s->mu);
        if (!ok) {
            json_t *x = json_pack("{s:s}", "error", "cannot create the supervisor thread");
            store_job_set_state(d->store, e[i].id, JOB_RUNNING, JOB_FAILED, x, err, sizeof err);
            json_decref(x);
            residency_release(d->res, dataset);
        } else {
            atomic_fetch_add(&d->jobs_started, 1);
            log_info(e[i].id, "job started: %s on dataset %s, device %d", sl->type, dataset, d->dev_index[slot]);
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
    for (int i = 0; i < s->d->n_dev; i++) {
        slot_t *sl = &s->slots[i];
        if (sl->busy && strcmp(sl->job, job_id) == 0) {
            found = 0;
            if (!sl->cancel) {
                sl->cancel = 1;
                sl->kill_at = mono_now() + s->d->cfg.cancel_grace_s;
                if (sl->pid > 0) kill(sl->pid, SIGTERM);
                log_info(job_id, "cancelling: SIGTERM to worker %d (SIGKILL in %.0f s)", (int)sl->pid,
                         s->d->cfg.cancel_grace_s);
            }
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
    for (int i = 0; i < d->n_dev; i++) {
        slot_t *sl = &s->slots[i];
        if (!sl->busy) continue;
        running++;
        sl->shutdown = 1;
        if (sl->kill_at == 0 || sl->kill_at > deadline) sl->kill_at = deadline;
        if (sl->pid > 0) kill(sl->pid, SIGTERM);
        log_info(sl->job, "daemon stopping: SIGTERM to worker %d (a train job checkpoints)", (int)sl->pid);
    }
    if (running) notify_extend_timeout(d->cfg.cancel_grace_s + 15);
    for (;;) {
        int busy = 0;
        for (int i = 0; i < d->n_dev; i++) busy += s->slots[i].busy;
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
    for (int i = 0; i < d->n_dev; i++)
        if (s->slots[i].thr_live) {
            pthread_join(s->slots[i].thr, NULL);
            s->slots[i].thr_live = 0;
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
    for (int i = 0; i < s->d->n_dev; i++) {
        slot_t *sl = &s->slots[i];
        if (!sl->busy) continue;
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:i, s:i, s:o, s:b, s:i}", "id", sl->job, "type",
                                           sl->type, "dataset", sl->dataset, "device", s->d->dev_index[i], "pid",
                                           (int)sl->pid, "progress",
                                           sl->progress ? json_deep_copy(sl->progress) : json_object(),
                                           "cancelling", sl->cancel, "batch_size", sl->batch_size));
    }
    pthread_mutex_unlock(&s->mu);
    return a;
}

double sched_images_per_s(sched_t *s) {
    double t = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->d->n_dev; i++)
        if (s->slots[i].busy && isfinite(s->slots[i].images_per_s)) t += s->slots[i].images_per_s;
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
