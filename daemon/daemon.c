/* daemon/daemon.c — the daemon context: start-up and shutdown, and the
 * actions the HTTP API calls (see daemon.h). Each action validates, reads or
 * writes the store, and hands long work to residency.c or sched.c. */
#include "daemon/daemon.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/admit.h"
#include "daemon/log.h"
#include "daemon/residency.h"
#include "daemon/retain.h"
#include "daemon/sched.h"
#include "gpu/checkpoint.h"
#include "gpu/jobspec.h"
#include "gpu/model.h"
#include "store/checkpoint.h"
#include "store/errbuf.h"
#include "store/fsutil.h"
#include "store/mono.h"

#ifdef TRAIND_CUDA
#include <cuda_runtime_api.h>
#endif

void daemon_err_set(daemon_err_t *e, int status, const char *code, const char *field, const char *fmt, ...) {
    if (!e) return;
    e->status = status;
    snprintf(e->code, sizeof e->code, "%s", code);
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

/* Maps a store failure to an API error. */
static void store_fail(daemon_err_t *e, int rc, const char *err) {
    if (rc == STORE_NOTFOUND) daemon_err_set(e, 404, "not_found", "", "%s", err);
    else if (rc == STORE_CONFLICT || rc == STORE_BADSTATE) daemon_err_set(e, 409, "conflict", "", "%s", err);
    else daemon_err_set(e, 500, "internal", "", "%s", err);
}

void daemon_bind_device(daemon_t *d, int slot) {
#ifdef TRAIND_CUDA
    if (!strcmp(d->backend_name, "cuda")) cudaSetDevice(d->dev_index[slot]);
#else
    (void)d;
    (void)slot;
#endif
}

const char *daemon_token(const daemon_t *d) { return d->cfg.token[0] ? d->cfg.token : NULL; }
store_t *daemon_store(daemon_t *d) { return d->store; }

/* ---- events -------------------------------------------------------------------------- */
void daemon_event_notify(daemon_t *d) {
    pthread_mutex_lock(&d->ev_mu);
    d->ev_seq++;
    pthread_cond_broadcast(&d->ev_cv);
    pthread_mutex_unlock(&d->ev_mu);
    atomic_fetch_add(&d->events_total, 1);
}

static void event_hook(void *ud) { daemon_event_notify(ud); }

unsigned long long daemon_event_seq(daemon_t *d) {
    pthread_mutex_lock(&d->ev_mu);
    unsigned long long s = d->ev_seq;
    pthread_mutex_unlock(&d->ev_mu);
    return s;
}

int daemon_event_wait(daemon_t *d, unsigned long long *seq, int timeout_ms) {
    struct timespec ts;
    mono_deadline(&ts, timeout_ms);
    int r = 0;
    pthread_mutex_lock(&d->ev_mu);
    while (d->ev_seq == *seq && !atomic_load(&d->stopping))
        if (pthread_cond_timedwait(&d->ev_cv, &d->ev_mu, &ts) == ETIMEDOUT) break;
    if (d->ev_seq != *seq) { *seq = d->ev_seq; r = 1; }
    else if (atomic_load(&d->stopping)) r = -1;
    pthread_mutex_unlock(&d->ev_mu);
    return r;
}

/* ---- lifetime ----------------------------------------------------------------------------- */
/* The state dir holds job specs (with inline images), checkpoints and the
 * store: others must not read it. Group access is the installation's choice
 * (the unit's StateDirectoryMode=0750, UMask=0027), so only "other" warns. */
static void daemon_check_state_mode(const char *sd) {
    struct stat st;
    if (stat(sd, &st) == 0 && (st.st_mode & S_IRWXO))
        log_warn(NULL, "state dir %s is accessible by others (mode %04o): job specs, images and checkpoints in it "
                 "can be read; chmod o-rwx it (chmod 750; systemd: StateDirectoryMode=0750)", sd,
                 (unsigned)(st.st_mode & 07777));
}

/* traind.db is created FS_FILE_MODE less the umask before SQLite opens it
 * (SQLite alone would make it 0644 less the umask; its -wal and -shm files
 * copy the database's mode); a symbolic link or a non-regular file there is
 * refused. */
static int daemon_db_create(const char *dbpath, char *err, size_t errlen) {
    int fd = open(dbpath, O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, FS_FILE_MODE);
    if (fd < 0)
        return errbuf_set(err, errlen, "%s: %s", dbpath, errno == ELOOP ? "a symbolic link (refused)" : strerror(errno));
    struct stat st;
    int reg = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    close(fd);
    return reg ? 0 : errbuf_set(err, errlen, "%s: not a regular file", dbpath);
}

/* After the store opened it (a file SQLite refuses is left exactly as it
 * was): an existing database, -wal or -shm that others may access loses those
 * bits, with a warning — never widened, only narrowed. By path, without
 * opening the files: closing any fd of a file SQLite holds would drop its
 * POSIX locks (and another connection could then reset the -shm under it). */
static void daemon_db_narrow(const char *dbpath) {
    static const char *const sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char p[PATH_MAX + 32];
        snprintf(p, sizeof p, "%s%s", dbpath, sfx[i]);
        struct stat st;
        if (fstatat(AT_FDCWD, p, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) || !(st.st_mode & S_IRWXO))
            continue;
        mode_t m = st.st_mode & 07770;
        if (fchmodat(AT_FDCWD, p, m, 0) == 0)
            log_warn(NULL, "%s was accessible by others (mode %04o): now %04o", p, (unsigned)(st.st_mode & 07777),
                     (unsigned)m);
        else
            log_warn(NULL, "%s is accessible by others (mode %04o) and cannot be changed: %s", p,
                     (unsigned)(st.st_mode & 07777), strerror(errno));
    }
}

daemon_t *daemon_create(const daemon_cfg_t *cfg, char *err, size_t errlen) {
    daemon_t *d = calloc(1, sizeof *d);
    if (!d) { snprintf(err, errlen, "out of memory"); return NULL; }
    d->cfg = *cfg;
    d->lock_fd = -1;
    d->started = mono_now();
    pthread_mutex_init(&d->ev_mu, NULL);
    mono_cond_init(&d->ev_cv);
    char e2[512];
    if (fs_mkdir_p(cfg->state_dir, FS_DIR_MODE, e2, sizeof e2)) { snprintf(err, errlen, "state dir: %s", e2); goto fail; }
    char sd[PATH_MAX];
    if (!realpath(cfg->state_dir, sd)) { snprintf(err, errlen, "state dir %s: %s", cfg->state_dir, strerror(errno)); goto fail; }
    snprintf(d->cfg.state_dir, sizeof d->cfg.state_dir, "%s", sd);
    daemon_check_state_mode(sd);
    if (snprintf(d->checkpoint_root, sizeof d->checkpoint_root, "%s/checkpoints", sd) >= (int)sizeof d->checkpoint_root ||
        snprintf(d->work_root, sizeof d->work_root, "%s/work", sd) >= (int)sizeof d->work_root) {
        snprintf(err, errlen, "state dir path too long");
        goto fail;
    }
    char lockp[PATH_MAX + 16];
    snprintf(lockp, sizeof lockp, "%s/traind.lock", sd);
    d->lock_fd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, FS_FILE_MODE);
    if (d->lock_fd < 0) { snprintf(err, errlen, "%s: %s", lockp, strerror(errno)); goto fail; }
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "state dir %s is in use by another traind (%s is locked)", sd, lockp);
        goto fail;
    }
    /* beneath the state dir: a symbolic link in place of either is refused */
    if (fs_mkdir_under(sd, "checkpoints", FS_DIR_MODE, e2, sizeof e2) ||
        fs_mkdir_under(sd, "work", FS_DIR_MODE, e2, sizeof e2)) {
        snprintf(err, errlen, "state dir: %s", e2);
        goto fail;
    }
    ssize_t n = readlink("/proc/self/exe", d->exe, sizeof d->exe - 1);
    if (n <= 0) { snprintf(err, errlen, "cannot find this binary (/proc/self/exe): %s", strerror(errno)); goto fail; }
    d->exe[n] = 0;
    log_debug(NULL, "workers run %s", d->exe);
    /* exec through /proc/self/exe: still this binary after a package upgrade replaced the file */
    snprintf(d->exe, sizeof d->exe, "/proc/self/exe");

    char dbpath[PATH_MAX + 16];
    snprintf(dbpath, sizeof dbpath, "%s/traind.db", sd);
    if (daemon_db_create(dbpath, err, errlen)) goto fail;
    d->store = store_open(dbpath, err, errlen);
    if (!d->store) goto fail;
    daemon_db_narrow(dbpath);
    store_set_event_hook(d->store, event_hook, d);
    /* a checkpoint being written when the last daemon died is a temporary
     * directory that was never renamed into place: incomplete by design */
    int swept = ckpt_sweep_tmp(d->checkpoint_root, NULL, e2, sizeof e2);
    if (swept < 0) log_warn(NULL, "checkpoints: cannot remove unfinished checkpoint directories: %s", e2);
    else if (swept > 0) log_warn(NULL, "checkpoints: removed %d unfinished checkpoint director%s left by a crash",
                                 swept, swept == 1 ? "y" : "ies");
    int pruned = ckpt_sweep_pruned(d->store, d->checkpoint_root, e2, sizeof e2);
    if (e2[0]) log_warn(NULL, "checkpoints: %s", e2);
    if (pruned > 0) log_warn(NULL, "checkpoints: removed %d pruned checkpoint director%s a crash left on disk", pruned,
                             pruned == 1 ? "y" : "ies");
    /* job files of workers (work/jobs/<id>.json) live as long as their worker:
     * none runs yet, so any there is a crash's leftover */
    char jobs_dir[PATH_MAX + 16];
    snprintf(jobs_dir, sizeof jobs_dir, "%s/jobs", d->work_root);
    if (fs_rm_rf(jobs_dir, e2, sizeof e2)) log_warn(NULL, "work: %s", e2);

    /* backends: one per device; on cpu each listed device is a virtual one (its own
     * backend instance; they share the host's memory and cores) */
    for (int i = 0; i < cfg->n_devices; i++) {
        char be_err[BACKEND_ERR_MAX];
        backend_t *be = backend_open(cfg->backend, cfg->devices[i], be_err, sizeof be_err);
        if (!be) { snprintf(err, errlen, "%s", be_err); goto fail; }   /* names the backend and device */
        if (i == 0) snprintf(d->backend_name, sizeof d->backend_name, "%s", be->name);
        else if (strcmp(d->backend_name, be->name) != 0) {
            be->destroy(be);
            snprintf(err, errlen, "device %d opened as %s but device %d as %s", cfg->devices[0], d->backend_name,
                     cfg->devices[i], be->name);
            goto fail;
        }
        d->be[d->n_dev] = be;
        d->dev_index[d->n_dev] = cfg->devices[i];
        d->n_dev++;
    }
    for (int i = 0; i < d->n_dev; i++)
        log_info(NULL, "device %d: %s (%s)", d->dev_index[i], d->be[i]->device_name(d->be[i]), d->backend_name);

    sched_recover(d);
    retain_jobs(d, NULL);
    d->sched = sched_create(d);
    if (!d->sched) { snprintf(err, errlen, "out of memory"); goto fail; }
    d->res = residency_create(d);
    if (!d->res) { snprintf(err, errlen, "cannot start the dataset loader"); goto fail; }
    residency_reload_all(d->res);
    if (sched_start(d->sched, err, errlen)) goto fail;
    log_info(NULL, "traind %s: state %s, backend %s, %d device(s)", TRAIND_VERSION, sd, d->backend_name, d->n_dev);
    return d;
fail:
    daemon_destroy(d);
    return NULL;
}

void daemon_shutdown(daemon_t *d) {
    if (!d) return;
    atomic_store(&d->stopping, 1);
    pthread_mutex_lock(&d->ev_mu);
    pthread_cond_broadcast(&d->ev_cv);
    pthread_mutex_unlock(&d->ev_mu);
    if (d->sched) sched_stop_all(d->sched);
}

void daemon_destroy(daemon_t *d) {
    if (!d) return;
    atomic_store(&d->stopping, 1);
    if (d->sched) sched_stop_all(d->sched);     /* workers stopped (idempotent) */
    if (d->res) residency_destroy(d->res);      /* loader joined, resident memory freed */
    d->res = NULL;
    if (d->sched) sched_destroy(d->sched);      /* after the loader, which kicks it */
    d->sched = NULL;
    for (int i = 0; i < d->n_dev; i++)
        if (d->be[i]) { daemon_bind_device(d, i); d->be[i]->destroy(d->be[i]); }
    store_close(d->store);
    if (d->lock_fd >= 0) close(d->lock_fd);
    pthread_mutex_destroy(&d->ev_mu);
    pthread_cond_destroy(&d->ev_cv);
    free(d);
}

/* ---- client paths ------------------------------------------------------------------------------ */
int daemon_open_client_path(const daemon_cfg_t *cfg, const char *path, int roots, int kind, int flags,
                            const char *field, char *resolved, size_t len, daemon_err_t *e) {
    const char *noun = kind == FS_DIR ? "a directory" : "a file";
    const char *where = roots == DAEMON_ROOTS_MODEL ? "a model or dataset root" : "a dataset root";
    if (!path || !*path) {
        daemon_err_set(e, 400, "invalid_field", field, "%s must be a non-empty string", field);
        return -1;
    }
    const char *list[2 * CFG_MAX_ROOTS];
    int n = 0;
    if (roots == DAEMON_ROOTS_MODEL)
        for (int i = 0; i < cfg->n_model_roots; i++) list[n++] = cfg->model_roots[i];
    for (int i = 0; i < cfg->n_roots; i++) list[n++] = cfg->dataset_roots[i];
    if (n == 0) {
        daemon_err_set(e, 403, "forbidden", field, "no %s is configured (%s): %s paths are refused",
                       roots == DAEMON_ROOTS_MODEL ? "model or dataset root" : "dataset root",
                       roots == DAEMON_ROOTS_MODEL ? "--model-root, --dataset-root" : "--dataset-root", field);
        return -1;
    }
    char why[1024];
    int fd = fs_open_confined(path, list, n, kind, flags, resolved, len, why, sizeof why);
    if (fd < 0 && (flags & FS_CONFINE_RESOLVE)) {
        log_debug(NULL, "%s refused: %s", field, why);   /* the reason stays in the log */
        daemon_err_set(e, 403, "forbidden", field, "%s %s is not %s under %s", field, path, noun, where);
    } else if (fd < 0) {
        /* a recorded path checked again: nothing outside the roots was looked at (no
         * resolving, nothing followed), so the reason can be told */
        daemon_err_set(e, 403, "forbidden", field, "%s %s is no longer %s under %s: %s", field, path, noun, where, why);
    }
    return fd;
}

/* ---- datasets ------------------------------------------------------------------------------- */
int daemon_check_dataset_path(daemon_t *d, const char *path, char *resolved, size_t len, daemon_err_t *e) {
    return residency_check_path(&d->cfg, path, resolved, len, e);
}

json_t *daemon_dataset_load(daemon_t *d, const json_t *body, daemon_err_t *e) {
    if (atomic_load(&d->stopping)) { daemon_err_set(e, 503, "unavailable", "", "the daemon is stopping"); return NULL; }
    return residency_load(d->res, body, e);
}

json_t *daemon_dataset_get(daemon_t *d, const char *name, daemon_err_t *e) {
    char err[256];
    json_t *rec = NULL;
    int rc = store_dataset_get(d->store, name, &rec, err, sizeof err);
    if (rc) {
        if (rc == STORE_NOTFOUND) daemon_err_set(e, 404, "not_found", "", "no dataset '%s'", name);
        else store_fail(e, rc, err);
        return NULL;
    }
    residency_decorate(d->res, rec);
    return rec;
}

json_t *daemon_dataset_list(daemon_t *d, daemon_err_t *e) {
    char err[256];
    json_t *arr = NULL;
    int rc = store_dataset_list(d->store, &arr, err, sizeof err);
    if (rc) { store_fail(e, rc, err); return NULL; }
    size_t i;
    json_t *rec;
    json_array_foreach(arr, i, rec) residency_decorate(d->res, rec);
    return json_pack("{s:o}", "datasets", arr);
}

int daemon_dataset_delete(daemon_t *d, const char *name, daemon_err_t *e) {
    return residency_delete(d->res, name, e);
}

/* ---- jobs ---------------------------------------------------------------------------------- */
/* The directory of a checkpoint id (its record's path); "" when there is no such record. */
static void checkpoint_dir(daemon_t *d, const char *id, char *dir, size_t len) {
    json_t *c = NULL;
    char err[256];
    dir[0] = 0;
    if (store_checkpoint_get(d->store, id, &c, err, sizeof err) == STORE_OK)
        snprintf(dir, len, "%s", json_string_value(json_object_get(c, "path")) ?: "");
    json_decref(c);
}

static int checkpoint_exists(daemon_t *d, const char *id) {
    char dir[PATH_MAX];
    checkpoint_dir(d, id, dir, sizeof dir);
    return dir[0] != 0;
}

/* The patch size of the model the job will build: that of the checkpoint or
 * weights it starts from (their config.json; a checkpoint comes first, as in
 * the worker), else its backbone's. 0 when it cannot be known here (a damaged
 * checkpoint: the worker reports that). */
static int job_patch_size(daemon_t *d, const jobspec_t *js) {
    char dir[JS_PATH_MAX + 64], err[512];
    model_config_t cfg;
    const char *cid = js->resume_from[0] ? js->resume_from : js->checkpoint[0] ? js->checkpoint : NULL;
    if (cid || js->model.weights[0]) {
        checkpoint_dir(d, cid ? cid : js->model.weights, dir, sizeof dir);
        if (!cid && !dir[0]) snprintf(dir, sizeof dir, "%s", js->model.weights);   /* a HF directory */
        ckpt_meta_t meta;
        int has_meta;
        return dir[0] && ckpt_read_config(dir, &cfg, &meta, &has_meta, err, sizeof err) == 0 ? cfg.patch : 0;
    }
    return js->model.backbone[0] && model_config_by_name(js->model.backbone, js->model.registers, &cfg, err,
                                                         sizeof err) == 0 ? cfg.patch : 0;
}

/* The dataset's image size: recorded once known (a path dataset's from its
 * manifest at the load request), a synthetic one's from its source. 0 when
 * not known. */
static void dataset_image_size(const json_t *ds, int *h, int *w) {
    const json_t *size = json_object_get(ds, "image_size");
    const json_t *syn = json_object_get(json_object_get(ds, "source"), "synthetic");
    *h = *w = 0;
    if (json_is_array(size) && json_array_size(size) == 2) {
        *h = (int)json_integer_value(json_array_get(size, 0));
        *w = (int)json_integer_value(json_array_get(size, 1));
    } else if (json_is_integer(json_object_get(syn, "image_size"))) {
        *h = *w = (int)json_integer_value(json_object_get(syn, "image_size"));
    }
}

json_t *daemon_job_submit(daemon_t *d, const json_t *body, int *created, daemon_err_t *e) {
    *created = 0;
    if (atomic_load(&d->stopping)) { daemon_err_set(e, 503, "unavailable", "", "the daemon is stopping"); return NULL; }
    if (!json_is_object(body)) { daemon_err_set(e, 400, "bad_request", "", "the body must be a JSON object"); return NULL; }
    jobspec_t js;
    memset(&js, 0, sizeof js);
    char field[128] = "", msg[512] = "";
    if (jobspec_parse(body, &js, field, sizeof field, msg, sizeof msg)) {
        daemon_err_set(e, 400, "invalid_field", field, "%s", msg);
        jobspec_free(&js);
        return NULL;
    }
    json_t *out = NULL;
    char err[512];
    json_t *ds = NULL;
    int rc = store_dataset_get(d->store, js.dataset, &ds, err, sizeof err);
    if (rc == STORE_NOTFOUND) {
        daemon_err_set(e, 422, "unprocessable", "dataset", "dataset '%s' is not loaded (POST /v1/datasets first)", js.dataset);
        goto out;
    }
    if (rc) { store_fail(e, rc, err); goto out; }
    if (!strcmp(json_string_value(json_object_get(ds, "state")), "failed")) {
        daemon_err_set(e, 422, "unprocessable", "dataset", "dataset '%s' failed to load: %s", js.dataset,
                       json_string_value(json_object_get(ds, "error")) ?: "unknown error");
        goto out;
    }
    if (js.checkpoint[0] && !checkpoint_exists(d, js.checkpoint)) {
        daemon_err_set(e, 422, "unprocessable", "checkpoint", "no checkpoint '%s'", js.checkpoint);
        goto out;
    }
    if (js.resume_from[0] && !checkpoint_exists(d, js.resume_from)) {
        daemon_err_set(e, 422, "unprocessable", "resume_from", "no checkpoint '%s'", js.resume_from);
        goto out;
    }
    if (js.model.weights[0] && !checkpoint_exists(d, js.model.weights)) {
        /* a path: confined to the model and dataset roots, one answer for whatever is not there */
        if (js.model.weights[0] != '/') {
            daemon_err_set(e, 422, "unprocessable", "model.weights",
                           "'%s' is neither a checkpoint id nor an absolute path", js.model.weights);
            goto out;
        }
        char rp[PATH_MAX], why[512];
        int wfd = daemon_open_client_path(&d->cfg, js.model.weights, DAEMON_ROOTS_MODEL, FS_DIR, FS_CONFINE_RESOLVE,
                                          "model.weights", rp, sizeof rp, e);
        if (wfd < 0) goto out;
        int cfd = fs_open_beneath(wfd, "config.json", FS_REG, NULL, why, sizeof why);
        close(wfd);
        if (cfd < 0) {   /* inside a root: saying why is fine */
            daemon_err_set(e, 422, "unprocessable", "model.weights", "%s has no usable config.json (%s)", rp, why);
            goto out;
        }
        close(cfd);
        /* the resolved path is what the job records and what its start checks again */
        if (snprintf(js.model.weights, sizeof js.model.weights, "%s", rp) >= (int)sizeof js.model.weights) {
            daemon_err_set(e, 400, "invalid_field", "model.weights", "the resolved path is too long");
            goto out;
        }
    }
    /* the model works on whole patches: refused here, not by the worker later */
    int h, w, patch = job_patch_size(d, &js);
    dataset_image_size(ds, &h, &w);
    if (patch > 0 && h > 0 && w > 0 && (h % patch || w % patch)) {
        daemon_err_set(e, 422, "unprocessable", "dataset",
                       "dataset '%s' has images of %dx%d, which is not a multiple of the model's patch size %d",
                       js.dataset, h, w, patch);
        goto out;
    }
    /* indices against the dataset, the effective batch, the memory estimate */
    int requested = 0, expanded = 0, shards = residency_planned_shards(d->res, js.dataset);
    if (admit_devices(d, &js, shards, &expanded, e)) goto out;
    if (admit_submission(d, &js, ds, &requested, e)) goto out;
    json_t *spec = jobspec_to_json(&js);
    dtype_plan_t plan = jobspec_plan(&js);
    json_t *pj = dtype_plan_to_json(&plan);
    if (js.augment.on) {   /* the resolved augmentation beside the dtype plan, with the camera it will use */
        int camera = -1;   /* h, w: the dataset's image size, as found above */
        json_t *fields = json_object_get(ds, "fields");
        const char *dstate = json_string_value(json_object_get(ds, "state"));
        if (json_is_array(fields) && dstate && !strcmp(dstate, "ready")) {
            size_t i;
            json_t *f;
            camera = 0;
            json_array_foreach(fields, i, f) {
                if (json_is_string(f) && !strcmp(json_string_value(f), "camera_intrinsics")) camera = 1;
            }
        }
        json_t *ap = augment_plan_to_json(&js, camera, w, h);
        if (ap) json_object_set_new(pj, "augment", ap);
    }
    /* the parsed spec (decoded images) is not needed past this point */
    char dataset[JS_NAME_MAX], subid[JS_NAME_MAX];
    job_type_t type = js.type;
    int priority = js.priority, batch = js.batch_size;
    snprintf(dataset, sizeof dataset, "%s", js.dataset);
    snprintf(subid, sizeof subid, "%s", js.submission_id);
    jobspec_free(&js);
    rc = store_job_insert(d->store, type, dataset, priority, subid[0] ? subid : NULL, spec, pj, &out, created, err,
                          sizeof err);
    json_decref(spec);
    json_decref(pj);
    if (rc == STORE_CONFLICT) {
        daemon_err_set(e, 409, "conflict", "submission_id", "%s", err);
        goto out;
    }
    if (rc) { store_fail(e, rc, err); goto out; }
    if (*created) {
        const char *id = json_string_value(json_object_get(out, "id"));
        log_info(id, "job submitted: %s on %s, priority %d", job_type_name(type), dataset, priority);
        if (requested)
            admit_note(d, id, json_pack("{s:i, s:i}", "batch_size", batch, "requested_batch_size", requested),
                       "batch_size %d is more than the samples a batch can draw from (%d): the effective batch is %d",
                       requested, batch, batch);
        if (expanded) admit_note_sharded(d, id, dataset, shards);
        sched_kick(d->sched);
    }
out:
    json_decref(ds);
    jobspec_free(&js);
    return out;
}

json_t *daemon_job_get(daemon_t *d, const char *id, daemon_err_t *e) {
    char err[256];
    json_t *j = NULL;
    int rc = store_job_get(d->store, id, &j, err, sizeof err);
    if (rc == STORE_NOTFOUND) { daemon_err_set(e, 404, "not_found", "", "no job '%s'", id); return NULL; }
    if (rc) { store_fail(e, rc, err); return NULL; }
    return j;
}

int daemon_job_state(daemon_t *d, const char *id, job_state_t *state, daemon_err_t *e) {
    char err[256];
    int rc = store_job_state(d->store, id, state, err, sizeof err);
    if (rc == STORE_NOTFOUND) { daemon_err_set(e, 404, "not_found", "", "no job '%s'", id); return -1; }
    if (rc) { store_fail(e, rc, err); return -1; }
    return 0;
}

json_t *daemon_job_list(daemon_t *d, job_state_t state, job_type_t type, int limit, int offset, daemon_err_t *e) {
    if (limit < 0 || limit > 1000) { daemon_err_set(e, 400, "invalid_field", "limit", "limit must be in [0, 1000]"); return NULL; }
    if (offset < 0) { daemon_err_set(e, 400, "invalid_field", "offset", "offset must be >= 0"); return NULL; }
    char err[256];
    json_t *out = NULL;
    int rc = store_job_list(d->store, state, type, limit, offset, &out, err, sizeof err);
    if (rc) { store_fail(e, rc, err); return NULL; }
    return out;
}

json_t *daemon_job_cancel(daemon_t *d, const char *id, daemon_err_t *e) {
    char err[256];
    for (int attempt = 0; attempt < 3; attempt++) {
        json_t *j = daemon_job_get(d, id, e);
        if (!j) return NULL;
        job_state_t st;
        if (job_state_parse(json_string_value(json_object_get(j, "state")), &st)) {
            daemon_err_set(e, 500, "internal", "", "job %s has an unknown state", id);
            json_decref(j);
            return NULL;
        }
        if (st == JOB_CANCELLING) return j;
        if (job_state_terminal(st)) {
            daemon_err_set(e, 409, "conflict", "", "job %s is already %s", id, job_state_name(st));
            json_decref(j);
            return NULL;
        }
        json_decref(j);
        job_state_t to = st == JOB_QUEUED ? JOB_CANCELLED : JOB_CANCELLING;
        json_t *extra = json_pack("{s:s}", "reason", "cancelled on request");
        int rc = store_job_set_state(d->store, id, st, to, extra, err, sizeof err);
        json_decref(extra);
        if (rc == STORE_BADSTATE) continue;   /* it moved meanwhile (e.g. just started): look again */
        if (rc) { store_fail(e, rc, err); return NULL; }
        if (to == JOB_CANCELLING) {
            if (sched_cancel(d->sched, id) != 0) {
                /* not running here (finished in between): the supervisor records the end */
                log_warn(id, "cancel: no worker found for the job");
            }
        } else {
            log_info(id, "job cancelled while queued");
            retain_jobs(d, id);
        }
        return daemon_job_get(d, id, e);
    }
    daemon_err_set(e, 409, "conflict", "", "job %s keeps changing state; try again", id);
    return NULL;
}

json_t *daemon_job_result(daemon_t *d, const char *id, daemon_err_t *e) {
    json_t *j = daemon_job_get(d, id, e);
    if (!j) return NULL;
    json_t *r = json_object_get(j, "result");
    if (!r || json_is_null(r)) {
        const char *st = json_string_value(json_object_get(j, "state"));
        const char *er = json_string_value(json_object_get(j, "error"));
        daemon_err_set(e, 409, "conflict", "", "job %s is %s and has no result%s%s", id, st, er ? ": " : "", er ? er : "");
        json_decref(j);
        return NULL;
    }
    r = json_deep_copy(r);
    json_decref(j);
    /* a large output file (infer features) is fetched through the API */
    json_t *feat = r ? json_object_get(r, "features") : NULL;
    const char *file = json_string_value(json_object_get(feat, "file"));
    if (file) {
        char url[512];
        snprintf(url, sizeof url, "/v1/jobs/%s/result/files/%s", id, file);
        json_object_set_new(feat, "url", json_string(url));
    }
    return r;
}

int daemon_job_result_file(daemon_t *d, const char *id, const char *name, int *fd, daemon_err_t *e) {
    *fd = -1;
    if (!name || !*name || name[0] == '.' || strchr(name, '/') || strlen(name) > 255) {
        daemon_err_set(e, 404, "not_found", "", "no such result file of job %s", id);
        return -1;
    }
    job_state_t state;
    if (daemon_job_state(d, id, &state, e)) return -1;   /* exists? (the state only, never the spec) */
    char rel[512], why[512];
    int n = snprintf(rel, sizeof rel, "results/%s/%s", id, name);
    /* beneath the state dir: a symbolic link planted on the way is not followed */
    if (n < 0 || (size_t)n >= sizeof rel || (*fd = fs_open_under(d->work_root, rel, FS_REG, why, sizeof why)) < 0) {
        if (n > 0 && (size_t)n < sizeof rel && errno != ENOENT) log_warn(id, "result file refused: %s", why);
        daemon_err_set(e, 404, "not_found", "", "no result file '%s' for job %s", name, id);
        return -1;
    }
    return 0;
}

json_t *daemon_job_metrics(daemon_t *d, const char *id, const char *name, long since_step, daemon_err_t *e) {
    job_state_t st;
    if (daemon_job_state(d, id, &st, e)) return NULL;
    char err[256];
    json_t *out = NULL;
    int rc = store_metrics_query(d->store, id, name && *name ? name : NULL, since_step, &out, err, sizeof err);
    if (rc) { store_fail(e, rc, err); return NULL; }
    return out;
}

json_t *daemon_job_events(daemon_t *d, const char *id, long long after_id, int limit, daemon_err_t *e) {
    job_state_t st;
    if (daemon_job_state(d, id, &st, e)) return NULL;
    char err[256];
    json_t *out = NULL;
    int rc = store_events_since(d->store, id, after_id, limit, &out, err, sizeof err);
    if (rc) { store_fail(e, rc, err); return NULL; }
    return out;
}

/* ---- checkpoints ------------------------------------------------------------------------------ */
int daemon_checkpoint_open(daemon_t *d, const char *dir, const char *name, int kind, char *err, size_t errlen) {
    const char *rel = dir ? fs_rel_under(d->checkpoint_root, dir) : NULL;
    char path[PATH_MAX + 300];
    if (!rel || !*rel || snprintf(path, sizeof path, "%s%s%s", rel, name ? "/" : "", name ? name : "") >= (int)sizeof path) {
        errno = EXDEV;
        return errbuf_set(err, errlen, "%s is not a directory under %s", dir ? dir : "(none)", d->checkpoint_root);
    }
    return fs_open_under(d->checkpoint_root, path, kind, err, errlen);
}

json_t *daemon_checkpoint_list(daemon_t *d, const char *job, daemon_err_t *e) {
    char err[256];
    json_t *arr = NULL;
    job_state_t st;
    if (job && *job && daemon_job_state(d, job, &st, e)) return NULL;
    int rc = store_checkpoint_list(d->store, job && *job ? job : NULL, &arr, err, sizeof err);
    if (rc) { store_fail(e, rc, err); return NULL; }
    return json_pack("{s:o}", "checkpoints", arr);
}

json_t *daemon_checkpoint_get(daemon_t *d, const char *id, daemon_err_t *e) {
    char err[256];
    json_t *c = NULL;
    int rc = store_checkpoint_get(d->store, id, &c, err, sizeof err);
    if (rc == STORE_NOTFOUND) { daemon_err_set(e, 404, "not_found", "", "no checkpoint '%s'", id); return NULL; }
    if (rc) { store_fail(e, rc, err); return NULL; }
    return c;
}

int daemon_checkpoint_delete(daemon_t *d, const char *id, daemon_err_t *e) {
    char err[256], warn[512];
    json_t *c = NULL;
    int rc = ckpt_delete(d->store, d->checkpoint_root, id, &c, warn, sizeof warn, err, sizeof err);
    if (rc) { store_fail(e, rc, err); return -1; }
    if (warn[0]) log_warn(NULL, "%s", warn);
    log_info(json_string_value(json_object_get(c, "job")), "checkpoint %s deleted", id);
    json_decref(c);
    return 0;
}

int daemon_checkpoint_file(daemon_t *d, const char *id, const char *name, int *fd, daemon_err_t *e) {
    *fd = -1;
    if (!name || !*name || name[0] == '.' || strchr(name, '/') || strlen(name) > 255) {
        daemon_err_set(e, 404, "not_found", "", "no such file in checkpoint %s", id);
        return -1;
    }
    json_t *c = daemon_checkpoint_get(d, id, e);
    if (!c) return -1;
    char why[512];
    *fd = daemon_checkpoint_open(d, json_string_value(json_object_get(c, "path")), name, FS_REG, why, sizeof why);
    json_decref(c);
    if (*fd < 0) {
        if (errno != ENOENT) log_warn(NULL, "checkpoint %s: file refused: %s", id, why);
        daemon_err_set(e, 404, "not_found", "", "no file '%s' in checkpoint %s", name, id);
        return -1;
    }
    return 0;
}

/* ---- status and metrics ------------------------------------------------------------------------- */
json_t *daemon_status(daemon_t *d) {
    json_t *devs = json_array();
    json_t *running = sched_running(d->sched);
    for (int i = 0; i < d->n_dev; i++) {
        size_t fr = 0, tot = 0;
        daemon_bind_device(d, i);
        int ok = d->be[i]->mem_info(d->be[i], &fr, &tot) == 0;
        size_t dsb = residency_bytes_on(d->res, i);
        json_t *job = json_null(), *job_bytes = json_null();
        size_t k;
        json_t *r;
        json_array_foreach(running, k, r) {
            int pid = 0;
            if (!sched_running_on(r, d->dev_index[i], &pid)) continue;
            json_decref(job);
            job = json_string(json_string_value(json_object_get(r, "id")));
            long long b = ok ? admit_job_bytes(d, i, pid, fr, tot) : -1;
            if (b >= 0) { json_decref(job_bytes); job_bytes = json_integer(b); }
        }
        if (json_is_null(job) && ok) atomic_store(&d->idle_used[i], tot - fr);
        json_array_append_new(devs, json_pack("{s:i, s:s, s:{s:o, s:o, s:I, s:o}, s:o}", "index", d->dev_index[i], "name",
                                              d->be[i]->device_name(d->be[i]), "memory",
                                              "total", ok ? json_integer((json_int_t)tot) : json_null(),
                                              "used", ok ? json_integer((json_int_t)(tot - fr)) : json_null(),
                                              "datasets", (json_int_t)dsb, "job", job_bytes, "job", job));
    }
    json_t *counts = NULL;
    char err[256];
    long long queued = 0;
    if (store_job_counts(d->store, &counts, err, sizeof err) == STORE_OK)
        queued = json_integer_value(json_object_get(counts, job_state_name(JOB_QUEUED)));
    json_decref(counts);
    return json_pack("{s:s, s:f, s:s, s:o, s:o, s:o, s:I, s:b}", "version", TRAIND_VERSION, "uptime_s",
                     mono_now() - d->started, "backend", d->backend_name, "devices", devs,
                     "datasets", residency_summary(d->res), "running", running, "queue_length", (json_int_t)queued,
                     "stopping", atomic_load(&d->stopping));
}

char *daemon_metrics_text(daemon_t *d) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    char err[256];
    json_t *counts = NULL;
    fprintf(f, "# HELP traind_jobs Jobs by state.\n# TYPE traind_jobs gauge\n");
    if (store_job_counts(d->store, &counts, err, sizeof err) == STORE_OK) {
        const char *k;
        json_t *v;
        json_object_foreach(counts, k, v) fprintf(f, "traind_jobs{state=\"%s\"} %lld\n", k, (long long)json_integer_value(v));
    }
    json_decref(counts);
    fprintf(f, "# HELP traind_jobs_started_total Jobs started since the daemon started.\n"
               "# TYPE traind_jobs_started_total counter\ntraind_jobs_started_total %lld\n",
            (long long)atomic_load(&d->jobs_started));
    fprintf(f, "# HELP traind_jobs_finished_total Jobs finished since the daemon started.\n"
               "# TYPE traind_jobs_finished_total counter\ntraind_jobs_finished_total %lld\n",
            (long long)atomic_load(&d->jobs_finished));
    fprintf(f, "# HELP traind_steps_total Training/eval steps reported by workers.\n"
               "# TYPE traind_steps_total counter\ntraind_steps_total %lld\n", (long long)atomic_load(&d->steps_total));
    fprintf(f, "# HELP traind_job_events_total Job events recorded.\n"
               "# TYPE traind_job_events_total counter\ntraind_job_events_total %lld\n",
            (long long)atomic_load(&d->events_total));
    json_t *running = sched_running(d->sched);
    fprintf(f, "# HELP traind_images_per_second Images per second of running jobs.\n"
               "# TYPE traind_images_per_second gauge\n");
    size_t i;
    json_t *r;
    json_array_foreach(running, i, r) {
        json_t *p = json_object_get(r, "progress");
        fprintf(f, "traind_images_per_second{job=\"%s\",device=\"%lld\"} %.3f\n",
                json_string_value(json_object_get(r, "id")), (long long)json_integer_value(json_object_get(r, "device")),
                json_number_value(json_object_get(p, "images_per_s")));
    }
    fprintf(f, "# HELP traind_job_step Current step of running jobs.\n# TYPE traind_job_step gauge\n");
    json_array_foreach(running, i, r)
        fprintf(f, "traind_job_step{job=\"%s\"} %lld\n", json_string_value(json_object_get(r, "id")),
                (long long)json_integer_value(json_object_get(json_object_get(r, "progress"), "step")));
    json_decref(running);
    fprintf(f, "# HELP traind_device_memory_bytes Device memory.\n# TYPE traind_device_memory_bytes gauge\n");
    for (int k = 0; k < d->n_dev; k++) {
        size_t fr = 0, tot = 0;
        daemon_bind_device(d, k);
        if (d->be[k]->mem_info(d->be[k], &fr, &tot) == 0) {
            fprintf(f, "traind_device_memory_bytes{device=\"%d\",kind=\"total\"} %zu\n", d->dev_index[k], tot);
            fprintf(f, "traind_device_memory_bytes{device=\"%d\",kind=\"used\"} %zu\n", d->dev_index[k], tot - fr);
        }
        fprintf(f, "traind_device_memory_bytes{device=\"%d\",kind=\"datasets\"} %zu\n", d->dev_index[k],
                residency_bytes_on(d->res, k));
    }
    json_t *sum = residency_summary(d->res);
    fprintf(f, "# HELP traind_dataset_bytes Resident bytes per dataset (per device).\n# TYPE traind_dataset_bytes gauge\n");
    json_array_foreach(sum, i, r)
        fprintf(f, "traind_dataset_bytes{dataset=\"%s\",state=\"%s\"} %lld\n", json_string_value(json_object_get(r, "name")),
                json_string_value(json_object_get(r, "state")), (long long)json_integer_value(json_object_get(r, "bytes")));
    json_decref(sum);
    fprintf(f, "# HELP traind_job_records_read_total Whole job records (spec included) read from the store.\n"
               "# TYPE traind_job_records_read_total counter\ntraind_job_records_read_total %llu\n",
            store_job_records_read(d->store));
    fprintf(f, "# HELP traind_uptime_seconds Seconds since the daemon started.\n# TYPE traind_uptime_seconds gauge\n"
               "traind_uptime_seconds %.3f\n", mono_now() - d->started);
    fclose(f);
    return buf;
}
