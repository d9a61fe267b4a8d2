/* store/checkpoint.c — checkpoint directories and their records: recording
 * with checksums, pruning, deletion and the sweeps of what a crash leaves.
 * The crash-safety invariants these functions keep are the design note of
 * store/checkpoint.h. */
#include "store/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/errbuf.h"
#include "store/fsutil.h"
#include "store/par.h"
#include "store/sha256.h"

int ckpt_path_under(const char *root, const char *path) {
    size_t rl = strlen(root);
    return path && rl > 0 && strncmp(path, root, rl) == 0 && path[rl] == '/' && path[rl + 1] != 0;
}

/* Sets warn (when warn is empty: the first message is the one kept). */
__attribute__((format(printf, 3, 4)))
static void warn_once(char *warn, size_t warnlen, const char *fmt, ...) {
    if (!warn || !warnlen || warn[0]) return;
    va_list ap;
    va_start(ap, fmt);
    errbuf_vset(warn, warnlen, fmt, ap);
    va_end(ap);
}

static void warn_clear(char *warn, size_t warnlen) {
    if (warn && warnlen) warn[0] = 0;
}

/* ---- recording ----------------------------------------------------------------------- */
/* One file's sum. A checkpoint is a few files of ~1 GB each (dinov2-large:
 * model and optimizer, 1.2 GB apiece) and one thread hashes ~1.4 GB/s, so the
 * files are summed side by side, up to CKPT_HASH_THREADS at a time (par_run). */
#define CKPT_HASH_THREADS 8

typedef struct {
    char path[PATH_MAX + 260];
    const char *name;
    char hex[65], err[512];
    long long bytes;
    int rc;
} ckpt_hash_t;

static void *ckpt_hash_main(void *arg) {
    ckpt_hash_t *h = arg;
    h->rc = sha256_file(h->path, h->hex, &h->bytes, h->err, sizeof h->err);
    return NULL;
}

/* The sums of every regular file directly in dir, sorted by name. */
static json_t *ckpt_hash_files(const char *dir, long long *total, char model_sha[65], char *warn, size_t warnlen) {
    json_t *files = json_array();
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) warn_once(warn, warnlen, "cannot list %s: %s", dir, strerror(errno));
    *total = 0;
    model_sha[0] = 0;
    ckpt_hash_t *h = n > 0 ? calloc((size_t)n, sizeof *h) : NULL;
    if (n > 0 && !h) warn_once(warn, warnlen, "%s: out of memory for the sums", dir);
    int nh = 0;
    for (int i = 0; h && i < n; i++) {
        struct stat st;
        ckpt_hash_t *f = &h[nh];
        if (names[i]->d_name[0] != '.' && fs_join(f->path, sizeof f->path, dir, names[i]->d_name) == 0 &&
            lstat(f->path, &st) == 0 && S_ISREG(st.st_mode)) {   /* links: not followed */
            f->name = names[i]->d_name;
            nh++;
        }
    }
    for (int b = 0; b < nh; b += CKPT_HASH_THREADS)   /* CKPT_HASH_THREADS files at a time */
        par_run(ckpt_hash_main, h + b, sizeof *h, nh - b < CKPT_HASH_THREADS ? nh - b : CKPT_HASH_THREADS);
    for (int i = 0; i < nh; i++) {   /* in name order, as listed */
        ckpt_hash_t *f = &h[i];
        if (f->rc == 0) {
            json_array_append_new(files, json_pack("{s:s, s:I, s:s}", "name", f->name, "bytes", (json_int_t)f->bytes,
                                                   "sha256", f->hex));
            *total += f->bytes;
            if (strcmp(f->name, "model.safetensors") == 0) memcpy(model_sha, f->hex, 65);
        } else {
            warn_once(warn, warnlen, "%s (left out of the record)", f->err);
        }
    }
    free(h);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return files;
}

int ckpt_record(store_t *s, const char *root, const char *job, const char *dir, long step,
                const json_t *metrics, json_t **rec, char *warn, size_t warnlen, char *err, size_t errlen) {
    *rec = NULL;
    warn_clear(warn, warnlen);
    char rp[PATH_MAX];
    if (!dir || !realpath(dir, rp) || !ckpt_path_under(root, rp)) {
        errbuf_set(err, errlen, "checkpoint %s is not under %s", dir ? dir : "(none)", root);
        return STORE_ERR;
    }
    long long total = 0;
    char model_sha[65];
    json_t *files = ckpt_hash_files(rp, &total, model_sha, warn, warnlen);
    int rc = store_checkpoint_insert(s, job, step, rp, total, model_sha[0] ? model_sha : NULL, files,
                                     json_is_object(metrics) ? metrics : NULL, rec, err, errlen);
    json_decref(files);
    return rc;
}

/* ---- removal ------------------------------------------------------------------------- */
/* The record first (durably), then the files, and those only under root. */
static int ckpt_remove(store_t *s, const char *root, const json_t *c, char *warn, size_t warnlen,
                       char *err, size_t errlen) {
    const char *id = json_string_value(json_object_get(c, "id"));
    const char *path = json_string_value(json_object_get(c, "path"));
    int rc = store_checkpoint_delete(s, id, err, errlen);
    if (rc != STORE_OK) return rc;
    char e2[512];
    const char *rel = path ? fs_rel_under(root, path) : NULL;   /* beneath root: links not followed */
    if (rel && *rel && fs_rm_rf_under(root, rel, e2, sizeof e2))
        warn_once(warn, warnlen, "checkpoint %s: %s", id, e2);
    return STORE_OK;
}

int ckpt_prune(store_t *s, const char *root, const char *job, int keep, const json_t *newest_metrics,
               json_t **pruned, char *err, size_t errlen) {
    *pruned = json_array();
    const char *best = json_object_get(newest_metrics, "val_mpjpe") ? "val_mpjpe"
                       : json_object_get(newest_metrics, "mpjpe") ? "mpjpe" : "val_mpjpe";
    /* a checkpoint this job itself resumed from does not keep itself alive */
    json_t *self = NULL;
    char e2[512];
    store_job_get(s, job, &self, e2, sizeof e2);
    const char *self_resume = json_string_value(json_object_get(self, "resume_checkpoint"));
    const char *self_from = json_string_value(json_object_get(json_object_get(self, "spec"), "resume_from"));
    json_t *list = NULL;
    int rc = store_checkpoint_prune_list(s, job, keep, best, &list, err, errlen);
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c) {
        const char *cid = json_string_value(json_object_get(c, "id"));
        int users = 0;
        if (store_checkpoint_in_use(s, cid, &users, e2, sizeof e2)) continue;
        int self_uses = (self_resume && !strcmp(self_resume, cid)) || (self_from && !strcmp(self_from, cid));
        if (users - self_uses > 0) continue;
        if (ckpt_remove(s, root, c, NULL, 0, e2, sizeof e2) == STORE_OK) json_array_append_new(*pruned, json_string(cid));
    }
    json_decref(list);
    json_decref(self);
    return rc;
}

int ckpt_delete(store_t *s, const char *root, const char *id, json_t **rec, char *warn, size_t warnlen,
                char *err, size_t errlen) {
    if (rec) *rec = NULL;
    warn_clear(warn, warnlen);
    json_t *c = NULL;
    int rc = store_checkpoint_get(s, id, &c, err, errlen);
    if (rc == STORE_NOTFOUND) errbuf_set(err, errlen, "no checkpoint '%s'", id);
    if (rc != STORE_OK) return rc;
    int users = 0;
    rc = store_checkpoint_in_use(s, id, &users, err, errlen);
    if (rc == STORE_OK && users > 0) {
        errbuf_set(err, errlen, "checkpoint %s is needed by %d queued or running job(s)", id, users);
        rc = STORE_CONFLICT;
    }
    if (rc == STORE_OK) rc = ckpt_remove(s, root, c, warn, warnlen, err, errlen);
    if (rc == STORE_OK && rec) *rec = c;
    else json_decref(c);
    return rc;
}

/* ---- what a crash leaves ------------------------------------------------------------- */
static int ckpt_is_tmp_name(const char *name) {
    return name[0] == '.' && strstr(name, ".tmp.") != NULL;
}

/* The temporary directories directly inside one job's checkpoint directory,
 * opened beneath root: a symbolic link planted there is not followed. */
static int ckpt_sweep_job_dir(const char *root, const char *job, char *err, size_t errlen) {
    int fd = fs_open_under(root, job, FS_DIR, NULL, 0);
    DIR *jd = fd >= 0 ? fdopendir(fd) : NULL;
    if (!jd) {                                /* no checkpoints, a link, or not a directory: nothing of ours */
        if (fd >= 0) close(fd);
        return 0;
    }
    int removed = 0, rc = 0;
    struct dirent *ce;
    while (rc == 0 && (ce = readdir(jd)) != NULL) {
        if (!ckpt_is_tmp_name(ce->d_name)) continue;
        char rel[600];
        if (snprintf(rel, sizeof rel, "%s/%s", job, ce->d_name) >= (int)sizeof rel) continue;
        if (fs_rm_rf_under(root, rel, err, errlen) != 0) rc = -1;
        else removed++;
    }
    closedir(jd);
    return rc ? -1 : removed;
}

int ckpt_sweep_tmp(const char *root, const char *job, char *err, size_t errlen) {
    if (job) {
        if (!*job || strchr(job, '/') || job[0] == '.') return errbuf_set(err, errlen, "bad job id '%s'", job);
        return ckpt_sweep_job_dir(root, job, err, errlen);
    }
    DIR *d = opendir(root);
    if (!d) {
        if (errno == ENOENT) return 0;
        return errbuf_set(err, errlen, "open %s: %s", root, strerror(errno));
    }
    int removed = 0;
    struct dirent *je;
    while ((je = readdir(d)) != NULL) {
        if (je->d_name[0] == '.') continue;   /* ".", "..", and nothing of ours */
        int n = ckpt_sweep_job_dir(root, je->d_name, err, errlen);
        if (n < 0) { removed = -1; break; }
        removed += n;
    }
    closedir(d);
    return removed;
}

/* One job's unrecorded step directories older than its newest record. */
static int ckpt_sweep_pruned_job(store_t *s, const char *root, const char *job, char *warn, size_t warnlen) {
    json_t *list = NULL;
    char e2[512];
    if (store_checkpoint_list(s, job, &list, e2, sizeof e2) != STORE_OK) return 0;
    long newest = -1;
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c) {
        long st = (long)json_integer_value(json_object_get(c, "step"));
        if (st > newest) newest = st;
    }
    char jobdir[PATH_MAX + 256];
    snprintf(jobdir, sizeof jobdir, "%s/%s", root, job);
    /* opened beneath the root: a symbolic link planted there is not followed */
    int jfd = newest >= 0 ? fs_open_under(root, job, FS_DIR, NULL, 0) : -1;
    DIR *jd = jfd >= 0 ? fdopendir(jfd) : NULL;
    if (jfd >= 0 && !jd) close(jfd);
    int removed = 0;
    struct dirent *se;
    while (jd && (se = readdir(jd)) != NULL) {
        char *end;
        long step = strtol(se->d_name, &end, 10);
        if (se->d_name[0] < '0' || se->d_name[0] > '9' || *end || step >= newest) continue;
        char path[PATH_MAX + 512];
        snprintf(path, sizeof path, "%s/%s", jobdir, se->d_name);
        int recorded = 0;
        json_array_foreach(list, i, c) recorded |= strcmp(json_string_value(json_object_get(c, "path")), path) == 0;
        if (recorded) continue;
        char rel[600];
        if (snprintf(rel, sizeof rel, "%s/%s", job, se->d_name) >= (int)sizeof rel) continue;
        if (fs_rm_rf_under(root, rel, e2, sizeof e2) == 0) removed++;
        else warn_once(warn, warnlen, "%s", e2);
    }
    if (jd) closedir(jd);
    json_decref(list);
    return removed;
}

int ckpt_sweep_pruned(store_t *s, const char *root, char *warn, size_t warnlen) {
    warn_clear(warn, warnlen);
    DIR *d = opendir(root);
    if (!d) return 0;
    int removed = 0;
    struct dirent *je;
    while ((je = readdir(d)) != NULL)
        if (je->d_name[0] != '.') removed += ckpt_sweep_pruned_job(s, root, je->d_name, warn, warnlen);
    closedir(d);
    return removed;
}
