/* daemon/residency.c — resident datasets owned by the daemon (see residency.h).
 *
 * One loader thread takes datasets in request order; the list of datasets and
 * their live state are guarded by r->mu. Long work (generation, import, scan,
 * load) runs without the lock; a delete of a dataset being loaded sets its
 * cancel flag and waits until the loader lets go of it.
 *
 * Imports (source {"import":{manifest, image_size, resize, on_error}}) are
 * decoded by gpu/import.c on all cores into <state>/imports/<key>/ (phase
 * "decoding": progress and images/s live in the record), then loaded like a
 * path dataset — or, with on_error "fail" and a replicated placement, put on
 * the devices shard by shard as the import writes them (on_import_rows), so
 * nothing is read back; the record's "import" keeps the key, so a restart loads the
 * cache without reading the manifest again. A delete removes the cache
 * directory unless another dataset uses it.
 */
#include "daemon/residency.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "daemon/admit.h"
#include "daemon/log.h"
#include "daemon/notify.h"
#include "daemon/sched.h"
#include "gpu/dataset.h"
#include "gpu/import.h"
#include "gpu/jpeg_gpu.h"
#include "store/dataset.h"
#include "store/errbuf.h"
#include "store/fsutil.h"
#include "store/mono.h"
#include "store/synth.h"

enum { RS_QUEUED, RS_GENERATING, RS_DECODING, RS_LOADING, RS_READY, RS_FAILED };
static const char *const phase_names[] = {"queued", "generating", "decoding", "loading", "ready", "failed"};

typedef struct res_ds {
    char name[72];
    char dir[PATH_MAX + 128];    /* shard directory (synthetic: under work/synthetic) */
    int synthetic;
    int import;                  /* source is an import: dir is <state>/imports/<cache_key> */
    char cache_key[65];          /* import: the cache directory's key, "" until known */
    int64_t imp_frames, imp_done, imp_skipped;   /* import: live decoding progress */
    double imp_rate;             /* import: images/s so far */
    json_t *source;              /* as recorded */
    int phase;
    ds_layout_t layout;          /* the whole dataset's */
    size_t bytes;                /* resident bytes on the fullest device (estimate until scanned) */
    /* the placement (res_plan): replicated (shards 1: every device holds all of it) or
     * sharded across every device (device s holds the samples [first[s], first[s] + lay[s].n)) */
    int shards;
    int placed;                  /* the placement is decided (res_plan applied; an estimate until scanned) */
    ds_layout_t lay[CFG_MAX_DEVICES];
    int64_t first[CFG_MAX_DEVICES];
    size_t need[CFG_MAX_DEVICES];   /* bytes device s holds or will hold */
    void *base[CFG_MAX_DEVICES];
    char handle[CFG_MAX_DEVICES][BACKEND_HANDLE_MAX];
    uint64_t done, total;        /* load progress (bytes over all devices) */
    double t0, gbps;             /* load start (monotonic seconds), rate so far */
    int64_t masked_joints;       /* labelled joints with NaN/Inf coordinates, made invalid at load */
    int refs;                    /* workers holding it */
    volatile int cancel;
    int busy;                    /* the loader works on it (without the lock) */
    struct res_ds *next;
} res_ds_t;

struct residency {
    daemon_t *d;
    char imports_root[PATH_MAX + 16];   /* <state>/imports */
    pthread_mutex_t mu;
    pthread_cond_t cv;           /* loader wake-up and "loader let go" */
    res_ds_t *list;
    pthread_t loader;
    int stop;
    char (*rm_keys)[65];         /* import caches to remove once unused (done by the loader) */
    int n_rm;
    jpeg_gpu_t *jpeg;            /* the imports' GPU JPEG decoder (import_gpu), loader thread only */
    int jpeg_tried;              /* import_gpu ran: it opens (or gives up) once; loader thread only */
};

static res_ds_t *find(residency_t *r, const char *name) {
    for (res_ds_t *x = r->list; x; x = x->next)
        if (strcmp(x->name, name) == 0) return x;
    return NULL;
}

static void ds_free_memory(residency_t *r, res_ds_t *x) {
    for (int s = 0; s < r->d->n_dev; s++)
        if (x->base[s]) {
            daemon_bind_device(r->d, s);
            r->d->be[s]->shared_free(r->d->be[s], x->base[s], x->lay[s].total, x->handle[s]);
            x->base[s] = NULL;
            x->handle[s][0] = 0;
        }
}

static void ds_destroy(residency_t *r, res_ds_t *x) {
    ds_free_memory(r, x);
    json_decref(x->source);
    free(x);
}

/* How a dataset goes onto the devices (see res_ds_t). */
typedef struct {
    int shards;
    ds_layout_t lay[CFG_MAX_DEVICES];
    int64_t first[CFG_MAX_DEVICES];
    size_t need[CFG_MAX_DEVICES];
} res_place_t;

static void place_replicated(res_place_t *p, int n_dev, const ds_layout_t *l) {
    p->shards = 1;
    for (int s = 0; s < n_dev; s++) {
        p->lay[s] = *l;
        p->first[s] = 0;
        p->need[s] = l->total;
    }
}

/* Device s gets the contiguous samples [n·s/D, n·(s+1)/D). 0, or -1 when a
 * shard would be empty or cannot be laid out. */
static int place_sharded(res_place_t *p, int n_dev, const ds_layout_t *l) {
    p->shards = n_dev;
    for (int s = 0; s < n_dev; s++) {
        int64_t a = l->n * s / n_dev, e = l->n * (s + 1) / n_dev;
        if (e <= a || !ds_layout(&p->lay[s], e - a, l->h, l->w, l->fields)) return -1;
        memcpy(p->lay[s].mean, l->mean, sizeof l->mean);
        memcpy(p->lay[s].std, l->std, sizeof l->std);
        p->first[s] = a;
        p->need[s] = p->lay[s].total;
    }
    return 0;
}

/* Bytes that queued/in-progress loads other than except will still allocate, per device. */
static void pending_bytes(residency_t *r, const res_ds_t *except, size_t *pend) {
    for (int s = 0; s < r->d->n_dev; s++) pend[s] = 0;
    for (res_ds_t *x = r->list; x; x = x->next)
        if (x != except && x->phase < RS_READY && !x->base[0])
            for (int s = 0; s < r->d->n_dev; s++) pend[s] += x->need[s];
}

/* What each device can still take: avail[s] (cuda: its free memory less the
 * reserve and the loads pending there). On cpu the virtual devices share the
 * host: *pool is what all of them together can take (available memory and
 * /dev/shm's free space, less the reserve and every pending load), and each
 * also has avail[s] = --cpu-device-memory-gb less what it holds and awaits
 * (SIZE_MAX without that cap). 0, or -1 with msg. Caller holds r->mu. */
static int res_room(residency_t *r, const res_ds_t *except, size_t *avail, size_t *pool, size_t *fr_out, char *msg,
                    size_t msglen) {
    daemon_t *d = r->d;
    size_t pend[CFG_MAX_DEVICES];
    pending_bytes(r, except, pend);
    size_t reserve = (size_t)(d->cfg.memory_reserve_gb * 1e9);
    int cpu = strcmp(d->backend_name, "cpu") == 0;
    *pool = SIZE_MAX;
    for (int s = 0; s < d->n_dev; s++) {
        size_t fr = 0, tot = 0;
        daemon_bind_device(d, s);
        if (d->be[s]->mem_info(d->be[s], &fr, &tot))
            return errbuf_set(msg, msglen, "device %d: cannot read memory: %s", d->dev_index[s], d->be[s]->err);
        fr_out[s] = fr;
        if (!cpu) {
            avail[s] = fr > reserve + pend[s] ? fr - reserve - pend[s] : 0;
            continue;
        }
        if (s == 0) {   /* the host, once */
            size_t all = 0;
            for (int t = 0; t < d->n_dev; t++) all += pend[t];
            size_t host = fr;
            struct statvfs vs;   /* POSIX shm lives in /dev/shm: its free space bounds us too */
            if (statvfs("/dev/shm", &vs) == 0 && (size_t)vs.f_bavail * vs.f_frsize < host) host = (size_t)vs.f_bavail * vs.f_frsize;
            *pool = host > reserve + all ? host - reserve - all : 0;
        }
        avail[s] = SIZE_MAX;
        if (d->cfg.cpu_device_memory_gb > 0) {
            size_t cap = (size_t)(d->cfg.cpu_device_memory_gb * 1e9), held = pend[s];
            for (res_ds_t *y = r->list; y; y = y->next)
                if (y != except && y->base[s]) held += y->lay[s].total;
            avail[s] = cap > held ? cap - held : 0;
        }
    }
    return 0;
}

static int place_fits(residency_t *r, const res_place_t *p, const size_t *avail, size_t pool, int *bad) {
    size_t sum = 0;
    for (int s = 0; s < r->d->n_dev; s++) {
        sum += p->need[s];
        if (p->need[s] > avail[s]) { *bad = s; return 0; }
    }
    *bad = -1;
    return sum <= pool;
}

/* Where the dataset of layout l goes: replicated when every device can hold
 * all of it, else sharded when each can hold its 1/D (D = the devices),
 * else -1 with msg (the request's 507). Caller holds r->mu. */
static int res_plan(residency_t *r, const res_ds_t *except, const ds_layout_t *l, res_place_t *p, char *msg,
                    size_t msglen) {
    daemon_t *d = r->d;
    size_t avail[CFG_MAX_DEVICES], fr[CFG_MAX_DEVICES], pool;
    if (res_room(r, except, avail, &pool, fr, msg, msglen)) return -1;
    int bad_rep, bad_sh = -1;
    place_replicated(p, d->n_dev, l);
    if (place_fits(r, p, avail, pool, &bad_rep)) return 0;
    size_t per_rep = l->total;
    int can_shard = d->n_dev > 1 && place_sharded(p, d->n_dev, l) == 0;
    if (can_shard && place_fits(r, p, avail, pool, &bad_sh)) return 0;
    size_t per_sh = can_shard ? p->lay[d->n_dev - 1].total : 0;
    int cpu = strcmp(d->backend_name, "cpu") == 0, s = can_shard ? bad_sh : bad_rep;
    char sharded[160] = "";
    if (can_shard)
        snprintf(sharded, sizeof sharded, ", or %.3f GB per device sharded across the %d devices", per_sh / 1e9,
                 d->n_dev);
    if (s >= 0 && !cpu)
        snprintf(msg, msglen, "dataset needs %.3f GB per device%s but device %d has %.3f GB available (free %.3f GB, "
                 "reserve %.3f GB, other loads counted)", per_rep / 1e9, sharded, d->dev_index[s], avail[s] / 1e9,
                 fr[s] / 1e9, d->cfg.memory_reserve_gb);
    else if (s >= 0)
        snprintf(msg, msglen, "dataset needs %.3f GB per device%s but virtual device %d may hold %.3f GB more "
                 "(--cpu-device-memory-gb %g)", per_rep / 1e9, sharded, d->dev_index[s], avail[s] / 1e9,
                 d->cfg.cpu_device_memory_gb);
    else
        snprintf(msg, msglen, "dataset needs %.3f GB per device%s (%.3f GB in all) but the host has %.3f GB available "
                 "for it (free %.3f GB, /dev/shm counted, reserve %.3f GB, other loads counted)", per_rep / 1e9,
                 sharded, (can_shard ? (double)l->total : (double)per_rep * d->n_dev) / 1e9, pool / 1e9, fr[0] / 1e9,
                 d->cfg.memory_reserve_gb);
    return -1;
}

static void place_apply(res_ds_t *x, const res_place_t *p, int n_dev) {
    x->shards = p->shards;
    x->placed = 1;
    size_t most = 0;
    for (int s = 0; s < n_dev; s++) {
        x->lay[s] = p->lay[s];
        x->first[s] = p->first[s];
        x->need[s] = p->need[s];
        if (p->need[s] > most) most = p->need[s];
    }
    x->bytes = most;
}

/* ---- path confinement ------------------------------------------------------------- */
int residency_check_path(const daemon_cfg_t *cfg, const char *path, char *resolved, size_t len,
                         daemon_err_t *e) {
    int fd = daemon_open_client_path(cfg, path, DAEMON_ROOTS_DATA, FS_DIR, FS_CONFINE_RESOLVE, "path", resolved, len, e);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

/* The directory of x, opened for scanning and loading: an import's cache
 * beneath <state>/imports, a synthetic one beneath the state dir's
 * work/synthetic, a path dataset confined to the dataset roots
 * again (the recorded, resolved path: no symbolic link may have appeared on
 * it since it was accepted, and the roots may have changed since). */
static int res_open_dir(residency_t *r, const res_ds_t *x, char *msg, size_t msglen) {
    if (x->import) return fs_open_under(r->imports_root, x->cache_key, FS_DIR, msg, msglen);
    if (x->synthetic) {
        char rel[128];
        snprintf(rel, sizeof rel, "synthetic/%s", x->name);
        return fs_open_under(r->d->work_root, rel, FS_DIR, msg, msglen);
    }
    daemon_err_t e;
    int fd = daemon_open_client_path(&r->d->cfg, x->dir, DAEMON_ROOTS_DATA, FS_DIR, 0, "path", NULL, 0, &e);
    if (fd < 0) snprintf(msg, msglen, "%s", e.message);
    return fd;
}

/* rm -rf of a synthetic dataset's directory, beneath the state dir. */
static void res_rm_synthetic(residency_t *r, const char *name) {
    char rel[128], err[512];
    snprintf(rel, sizeof rel, "synthetic/%s", name);
    if (fs_rm_rf_under(r->d->work_root, rel, err, sizeof err)) log_warn(NULL, "dataset %s: %s", name, err);
}

/* ---- the loader ---------------------------------------------------------------------- */

/* GB/s, always finite (0 when no time has passed): JSON has no Inf. */
static double res_gbps(double bytes, double seconds) {
    return seconds > 0 && bytes >= 0 ? bytes / seconds / 1e9 : 0.0;
}

typedef struct { residency_t *r; res_ds_t *x; uint64_t before; double last_store; } prog_ud_t;

static void on_load_progress(void *ud, uint64_t done, uint64_t total) {
    prog_ud_t *p = ud;
    residency_t *r = p->r;
    pthread_mutex_lock(&r->mu);
    p->x->done = p->before + done;   /* bytes of the devices before this one, and this one's so far */
    p->x->gbps = res_gbps((double)p->x->done, mono_now() - p->x->t0);
    double frac = p->x->total ? (double)p->x->done / (double)p->x->total : 0;
    double gbps = p->x->gbps;
    pthread_mutex_unlock(&r->mu);
    double now = mono_now();
    if (now - p->last_store >= 1.0) {   /* durable progress for other readers, at most 1/s */
        p->last_store = now;
        json_t *upd = json_pack("{s:f, s:f}", "progress", frac, "gb_per_s", gbps);
        char err[256];
        store_dataset_update(r->d->store, p->x->name, upd, err, sizeof err);
        json_decref(upd);
        notify_status("loading dataset %s: %.0f%% (%.2f GB/s)", p->x->name, frac * 100, gbps);
    }
}

static int synth_source(const json_t *src, long long *n, int *size, unsigned long long *seed) {
    const json_t *syn = json_object_get(src, "synthetic");
    if (!json_is_object(syn)) return 0;
    *n = json_integer_value(json_object_get(syn, "samples"));
    *size = (int)json_integer_value(json_object_get(syn, "image_size"));
    *seed = (unsigned long long)json_integer_value(json_object_get(syn, "seed"));
    return 1;
}

/* ---- imports --------------------------------------------------------------------------- */
typedef struct {
    residency_t *r;
    res_ds_t *x;
    double last_store;
    /* streaming (on_import_rows): on_error "fail", so that shard k's frames are rows
     * k*M.. of the dataset, and a replicated placement (every device holds every row);
     * the shards go to the devices as written */
    int stream;                  /* set by on_import_admit: the placement is replicated */
    pthread_mutex_t put_mu;      /* one backend per device, one put at a time */
    int64_t rows;                /* rows put so far */
    int64_t masked;              /* of them, joints with a non-finite coordinate */
} imp_ud_t;

static void on_import_progress(void *ud, const import_progress_t *p) {
    imp_ud_t *u = ud;
    residency_t *r = u->r;
    res_ds_t *x = u->x;
    pthread_mutex_lock(&r->mu);
    x->imp_frames = p->frames;
    x->imp_done = p->done;
    x->imp_skipped = p->skipped;
    x->imp_rate = p->images_per_s;
    pthread_mutex_unlock(&r->mu);
    double now = mono_now();
    if (p->frames > 0 && now - u->last_store >= 1.0) {   /* durable progress, at most 1/s */
        u->last_store = now;
        json_t *upd = json_pack("{s:f}", "progress", (double)p->done / (double)p->frames);
        char err[256];
        store_dataset_update(r->d->store, x->name, upd, err, sizeof err);
        json_decref(upd);
        notify_status("importing dataset %s: %lld/%lld frames (%.0f images/s)", x->name, (long long)p->done,
                      (long long)p->frames, p->images_per_s);
    }
}

/* Before anything is decoded: will the dataset fit the devices? */
static int on_import_admit(void *ud, int64_t frames, int size, char *msg, size_t msglen) {
    imp_ud_t *u = ud;
    ds_layout_t l;
    size_t need = ds_layout(&l, frames, size, size, DS_F_JOINTS_VALID | DS_F_HAS_HAND | DS_F_INTRINSICS);
    if (!need) return errbuf_set(msg, msglen, "%lld frames of %dx%d: too large to lay out", (long long)frames, size, size);
    res_place_t p;
    pthread_mutex_lock(&u->r->mu);
    int rc = res_plan(u->r, u->x, &l, &p, msg, msglen);
    if (rc == 0) place_apply(u->x, &p, u->r->d->n_dev);
    u->stream = rc == 0 && p.shards == 1;   /* sharded: loaded from the shards afterwards */
    pthread_mutex_unlock(&u->r->mu);
    return rc;
}

/* A decoding import's shard, just written: onto every device (the admitted
 * placement is replicated), at the rows its frame numbers give; the first
 * shard allocates. Nothing when the placement is sharded. */
static int on_import_rows(void *ud, int64_t first, const import_rows_t *rows, char *msg, size_t msglen) {
    imp_ud_t *u = ud;
    residency_t *r = u->r;
    res_ds_t *x = u->x;
    daemon_t *d = r->d;
    if (!u->stream) return 0;
    int rc = 0;
    pthread_mutex_lock(&u->put_mu);
    for (int s = 0; s < d->n_dev && rc == 0; s++) {
        const ds_layout_t *ls = &x->lay[s];
        daemon_bind_device(d, s);   /* this pool thread, that device's context */
        if (!x->base[s]) {
            char handle[BACKEND_HANDLE_MAX];
            void *base = d->be[s]->shared_alloc(d->be[s], ls->total, handle);
            if (!base) {
                rc = errbuf_set(msg, msglen, "device %d: cannot allocate %.3f GB: %s", d->dev_index[s],
                                ls->total / 1e9, d->be[s]->err);
                break;
            }
            pthread_mutex_lock(&r->mu);
            x->base[s] = base;
            snprintf(x->handle[s], sizeof x->handle[s], "%s", handle);
            pthread_mutex_unlock(&r->mu);
        }
        if (rows->image_size != ls->h || rows->image_size != ls->w)
            rc = errbuf_set(msg, msglen, "import rows of %dx%d for a %dx%d layout", rows->image_size,
                            rows->image_size, ls->h, ls->w);
        else   /* the first device's put makes non-finite joints invalid: counted once */
            rc = dataset_put_rows(d->be[s], x->base[s], ls, first, rows->n, rows->images, rows->joints, rows->valid,
                                  rows->has_hand, rows->intrinsics, &u->masked, msg, msglen);
    }
    if (rc == 0) u->rows += rows->n;
    pthread_mutex_unlock(&u->put_mu);
    return rc;
}

/* The streamed rows are the dataset: the written directory, scanned, lays out
 * as the device holds it and has as many samples as were put. 1 when so (x is
 * then loaded), 0 when not (the caller frees and loads from the files). */
static int import_streamed_ok(residency_t *r, res_ds_t *x, const imp_ud_t *u) {
    char e[512];
    int dfd = res_open_dir(r, x, e, sizeof e);
    if (dfd < 0) return 0;
    ds_info_t info;
    int ok = 0;
    if (ds_scan_at(dfd, x->dir, &info, e, sizeof e) == 0) {
        ds_layout_t l;
        ok = ds_layout_for(&l, &info) && info.n == u->rows && x->shards == 1;
        for (int s = 0; s < r->d->n_dev && ok; s++) {
            const ds_layout_t *h = &x->lay[s];
            ok = x->base[s] && x->first[s] == 0 && l.n == h->n && l.h == h->h && l.w == h->w &&
                 l.fields == h->fields && l.total == h->total && memcmp(l.mean, h->mean, sizeof l.mean) == 0 &&
                 memcmp(l.std, h->std, sizeof l.std) == 0;
        }
        if (ok) {
            pthread_mutex_lock(&r->mu);
            x->layout = l;
            x->total = x->done = (uint64_t)l.total * (uint64_t)r->d->n_dev;
            x->masked_joints = u->masked;
            pthread_mutex_unlock(&r->mu);
        }
        ds_info_free(&info);
    }
    close(dfd);
    if (!ok) log_warn(NULL, "dataset %s: the frames put on the device while importing do not match the written "
                      "shards (%s); loading them from the files", x->name, e[0] ? e : "another layout");
    return ok;
}

/* The GPU JPEG decoder imports use beside the CPU's (--import-decoder),
 * opened on the first device by the loader at its first idle moment, or by
 * the first import if that comes sooner (the loader alone uses it); NULL
 * when there is none (the cpu backend, no nvJPEG: said once in the log). */
#define IMPORT_GPU_THREADS 4
#define IMPORT_GPU_BATCH 64
#define IMPORT_PINNED 1   /* shard slots in pinned memory lent by the decoder: +5 % end to end on an H100 */
/* Benchmark knobs (bench/import_device.sh), not configuration: an integer
 * environment variable in lo..hi, else def. */
static int env_int(const char *name, int lo, int hi, int def) {
    const char *v = getenv(name);
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    return v && *v && !*end && x >= lo && x <= hi ? (int)x : def;
}

static jpeg_gpu_t *import_gpu(residency_t *r) {
    daemon_t *d = r->d;
    const char *want = d->cfg.import_decoder;
    if (r->jpeg_tried) return r->jpeg;
    r->jpeg_tried = 1;
    if (strcmp(want, "cpu") == 0) return NULL;
    if (strcmp(d->be[0]->name, "cuda") != 0) {
        if (strcmp(want, "auto") != 0)
            log_warn(NULL, "imports: --import-decoder %s needs the cuda backend; decoding on the CPU only", want);
        return NULL;
    }
    char why[256];
    daemon_bind_device(d, 0);
    double t0 = mono_now();
    r->jpeg = jpeg_gpu_open(d->be[0]->device, want, env_int("TRAIND_IMPORT_GPU_THREADS", 1, 64, IMPORT_GPU_THREADS),
                            env_int("TRAIND_IMPORT_GPU_BATCH", 1, 4096, IMPORT_GPU_BATCH), why, sizeof why);
    if (r->jpeg) {
        double t1 = mono_now();
        /* the slots pinned now, not in the first import (only when imports use them) */
        int pinned = env_int("TRAIND_IMPORT_PINNED", 0, 1, IMPORT_PINNED) ? import_gpu_reserve(r->jpeg) : 0;
        log_info(NULL, "imports: JPEG frames decoded by %s on device %d (%d threads, batches of %d) beside the CPU "
                 "decoders; opened in %.2f s, %d shard slots of pinned host memory (%.0f MB) in %.2f s",
                 r->jpeg->name, r->jpeg->device, r->jpeg->threads, r->jpeg->batch, t1 - t0, pinned,
                 pinned * (double)JPEG_GPU_HOST_BLOCK / 1e6, mono_now() - t1);
    }
    else if (strcmp(want, "auto") == 0)
        log_info(NULL, "imports: JPEG frames decoded on the CPU only (%s)", why);
    else
        log_warn(NULL, "imports: --import-decoder %s: %s; decoding on the CPU only", want, why);
    return r->jpeg;
}

/* Makes x->dir the import's shard directory: the recorded cache when it is
 * still there, else the import (a cache hit or a decode). With on_error
 * "fail" and a replicated placement, a decoding import puts each shard on
 * the devices as it writes it (on_import_rows): *resident is then 1 and x is
 * loaded. 0,
 * DATASET_LOAD_CANCELLED or -1 + msg; nothing stays allocated unless
 * *resident. */
static int import_one(residency_t *r, res_ds_t *x, int *resident, char *msg, size_t msglen) {
    daemon_t *d = r->d;
    char key[65], dir[PATH_MAX + 128], e[512];
    pthread_mutex_lock(&r->mu);
    snprintf(key, sizeof key, "%s", x->cache_key);
    pthread_mutex_unlock(&r->mu);
    import_result_t res;
    if (key[0]) {
        snprintf(dir, sizeof dir, "%s/%s", r->imports_root, key);
        if (import_read_result(dir, &res, e, sizeof e) == 0 && strcmp(res.key, key) == 0) {
            pthread_mutex_lock(&r->mu);
            snprintf(x->dir, sizeof x->dir, "%s", dir);
            pthread_mutex_unlock(&r->mu);
            return 0;
        }
        log_warn(NULL, "dataset %s: its import cache is gone (%s): importing the manifest again", x->name, e);
    }
    const json_t *im = json_object_get(x->source, "import");
    const char *manifest = json_string_value(json_object_get(im, "manifest"));
    const char *resize = json_string_value(json_object_get(im, "resize"));
    const char *on_error = json_string_value(json_object_get(im, "on_error"));
    if (!manifest || !resize || !on_error) return errbuf_set(msg, msglen, "the recorded import source is incomplete");
    const char *roots[CFG_MAX_ROOTS];
    for (int i = 0; i < d->cfg.n_roots; i++) roots[i] = d->cfg.dataset_roots[i];
    imp_ud_t u = {.r = r, .x = x};
    pthread_mutex_init(&u.put_mu, NULL);
    import_opts_t o = {.image_size = (int)json_integer_value(json_object_get(im, "image_size")),
                       .crop = strcmp(resize, "crop") == 0, .skip = strcmp(on_error, "skip") == 0,
                       .roots = roots, .n_roots = d->cfg.n_roots, .cancel = &x->cancel,
                       .progress = on_import_progress, .admit = on_import_admit, .ud = &u,
                       .threads = env_int("TRAIND_IMPORT_THREADS", 1, 256, 0),
                       .pinned_slots = env_int("TRAIND_IMPORT_PINNED", 0, 1, IMPORT_PINNED)};
    if (!o.skip) o.sink = on_import_rows;
    o.gpu = import_gpu(r);
    if (o.n_roots == 0) {
        pthread_mutex_destroy(&u.put_mu);
        return errbuf_set(msg, msglen, "no dataset root is configured (--dataset-root)");
    }
    pthread_mutex_lock(&r->mu);
    x->phase = RS_DECODING;
    x->t0 = mono_now();   /* a streamed import's load rate counts from here */
    pthread_mutex_unlock(&r->mu);
    log_info(NULL, "dataset %s: importing %s (%dx%d, %s, on_error %s)", x->name, manifest, o.image_size,
             o.image_size, resize, on_error);
    const double t_import = mono_now();
    int rc = import_cached(manifest, r->imports_root, &o, &res, msg, msglen);
    const double import_s = mono_now() - t_import;
    if (o.gpu && o.gpu->trim) o.gpu->trim(o.gpu);   /* its batch buffers back to the jobs */
    pthread_mutex_destroy(&u.put_mu);
    if (rc) {
        pthread_mutex_lock(&r->mu);
        ds_free_memory(r, x);   /* what a failed or cancelled import put on the device */
        pthread_mutex_unlock(&r->mu);
        return rc == IMPORT_CANCELLED ? DATASET_LOAD_CANCELLED : -1;
    }
    pthread_mutex_lock(&r->mu);
    snprintf(x->cache_key, sizeof x->cache_key, "%s", res.key);
    snprintf(x->dir, sizeof x->dir, "%s", res.dir);
    x->imp_done = x->imp_frames = res.frames;
    x->imp_skipped = res.skipped;
    int put = 0;
    for (int s = 0; s < d->n_dev; s++) put |= x->base[s] != NULL;
    pthread_mutex_unlock(&r->mu);
    if (put) {
        *resident = !res.cache_hit && import_streamed_ok(r, x, &u);
        if (*resident) {
            log_info(NULL, "dataset %s: its %lld frames went to the device as they were decoded", x->name,
                     (long long)u.rows);
        } else {
            pthread_mutex_lock(&r->mu);
            ds_free_memory(r, x);
            pthread_mutex_unlock(&r->mu);
        }
    }
    json_t *upd = json_pack("{s:o}", "import", import_result_json(&res));
    if (!upd || store_dataset_update(d->store, x->name, upd, e, sizeof e))
        log_error(NULL, "dataset %s: cannot record the import: %s", x->name, upd ? e : "out of memory");
    json_decref(upd);
    if (res.cache_hit)
        log_info(NULL, "dataset %s: import cache hit (%s): %lld frames, %lld skipped; found in %.3f s (%s)", x->name,
                 res.key, (long long)res.imported, (long long)res.skipped, import_s,
                 res.listed ? "the frames from its list, the manifest not parsed" : "the manifest parsed");
    else
        log_info(NULL, "dataset %s: imported %lld of %lld frames (%lld skipped) in %.2f s (%.0f images/s; %.3f s "
                 "before: manifest %.3f (read %.3f, parse %.3f, hash %.3f beside), files %.3f, key %.3f)", x->name,
                 (long long)res.imported, (long long)res.frames, (long long)res.skipped, res.seconds,
                 res.images_per_s, res.prepare_s, res.prepare_parts[0], res.manifest_parts[0], res.manifest_parts[1],
                 res.manifest_parts[2], res.prepare_parts[1], res.prepare_parts[2]);
    if (res.gpu_frames > 0 && !res.cache_hit)
        log_info(NULL, "dataset %s: %lld frames decoded by %s; its feeding threads' seconds: reading %.3f, in the "
                 "decoder %.3f (its calls %.3f, waiting for the resize and copy back %.3f, copying out %.3f), the "
                 "rest %.3f", x->name, (long long)res.gpu_frames, res.decoder, res.feed_s[0], res.feed_s[1],
                 res.decoder_s[0], res.decoder_s[1], res.decoder_s[2], res.feed_s[2]);
    return 0;
}

/* Import caches whose dataset was deleted are removed here, by the loader
 * (which alone uses them), when no other dataset has the same key. Called
 * with r->mu held; the removal itself runs without it. */
static void remove_unused_caches(residency_t *r) {
    while (r->n_rm > 0) {
        char key[65];
        snprintf(key, sizeof key, "%s", r->rm_keys[--r->n_rm]);
        int used = 0;
        for (res_ds_t *y = r->list; y && !used; y = y->next) used = y->import && strcmp(y->cache_key, key) == 0;
        if (used) continue;
        char err[512];
        pthread_mutex_unlock(&r->mu);
        if (fs_rm_rf_under(r->imports_root, key, err, sizeof err)) log_warn(NULL, "import cache %s: %s", key, err);
        else log_info(NULL, "import cache %s removed (no dataset uses it)", key);
        pthread_mutex_lock(&r->mu);
    }
}

/* Generates (synthetic), scans, allocates and loads x. Returns 0, DATASET_LOAD_CANCELLED or -1 + msg. */
static int load_one(residency_t *r, res_ds_t *x, char *msg, size_t msglen) {
    daemon_t *d = r->d;
    long long n = 0;
    int size = 0;
    unsigned long long seed = 0;
    if (x->synthetic && synth_source(x->source, &n, &size, &seed)) {
        /* reuse a complete earlier generation of the same source */
        char marker[PATH_MAX + 256];
        snprintf(marker, sizeof marker, "%s/.traind-source.json", x->dir);
        char *want = json_dumps(x->source, JSON_COMPACT | JSON_SORT_KEYS);
        char mrel[160];
        snprintf(mrel, sizeof mrel, "synthetic/%s/.traind-source.json", x->name);
        char *have = fs_read_file_under(d->work_root, mrel, 1 << 16, NULL, NULL, 0);
        int reuse = want && have && strcmp(want, have) == 0;
        free(have);
        if (!reuse) {
            pthread_mutex_lock(&r->mu);
            x->phase = RS_GENERATING;
            pthread_mutex_unlock(&r->mu);
            log_info(NULL, "dataset %s: generating %lld synthetic samples of %dx%d (seed %llu)", x->name, n, size, size, seed);
            res_rm_synthetic(r, x->name);
            /* created beneath the state dir first: a symbolic link planted there is refused */
            char rel[128];
            snprintf(rel, sizeof rel, "synthetic/%s", x->name);
            if (fs_mkdir_under(d->work_root, rel, FS_DIR_MODE, msg, msglen)) {
                free(want);
                return -1;
            }
            int g = synth_generate(x->dir, n, size, seed, 0, &x->cancel, msg, msglen);
            if (g == SYNTH_CANCELLED) {   /* a delete or a stop: the half-written shards go */
                res_rm_synthetic(r, x->name);
                free(want);
                return DATASET_LOAD_CANCELLED;
            }
            if (g || fs_write_file_atomic(marker, want, strlen(want), msg, msglen)) {
                free(want);
                return -1;
            }
        }
        free(want);
        if (x->cancel) return DATASET_LOAD_CANCELLED;
    }
    if (x->import) {
        int resident = 0;
        int rc = import_one(r, x, &resident, msg, msglen);
        if (rc) return rc;
        if (x->cancel) {
            pthread_mutex_lock(&r->mu);
            ds_free_memory(r, x);
            pthread_mutex_unlock(&r->mu);
            return DATASET_LOAD_CANCELLED;
        }
        if (resident) return 0;   /* streamed to the device while decoding */
    }
    int dfd = res_open_dir(r, x, msg, msglen);
    if (dfd < 0) return -1;
    ds_info_t info;
    if (ds_scan_at(dfd, x->dir, &info, msg, msglen)) {
        close(dfd);
        return -1;
    }
    ds_layout_t l;
    if (!ds_layout_for(&l, &info)) {
        ds_info_free(&info);
        close(dfd);
        snprintf(msg, msglen, "dataset too large to lay out");
        return -1;
    }
    res_place_t place;
    pthread_mutex_lock(&r->mu);
    x->layout = l;
    int fit = res_plan(r, x, &l, &place, msg, msglen);
    if (fit == 0) {
        place_apply(x, &place, d->n_dev);
        x->phase = RS_LOADING;
        x->t0 = mono_now();
        x->done = 0;
        x->total = 0;
        for (int s = 0; s < d->n_dev; s++) x->total += x->lay[s].total;
    }
    pthread_mutex_unlock(&r->mu);
    if (fit) { ds_info_free(&info); close(dfd); return -1; }
    if (x->shards > 1)
        log_info(NULL, "dataset %s: sharded across %d devices (%.3f GB per device; all of it on each would need "
                 "%.3f GB)", x->name, x->shards, x->bytes / 1e9, l.total / 1e9);
    int rc = 0;
    uint64_t before = 0;
    x->masked_joints = 0;
    for (int s = 0; s < d->n_dev && rc == 0; s++) {
        char handle[BACKEND_HANDLE_MAX];
        const ds_layout_t *ls = &x->lay[s];
        daemon_bind_device(d, s);
        void *base = d->be[s]->shared_alloc(d->be[s], ls->total, handle);
        if (!base) {
            snprintf(msg, msglen, "device %d: cannot allocate %.3f GB: %s", d->dev_index[s], ls->total / 1e9, d->be[s]->err);
            rc = -1;
            break;
        }
        pthread_mutex_lock(&r->mu);
        x->base[s] = base;
        snprintf(x->handle[s], sizeof x->handle[s], "%s", handle);
        pthread_mutex_unlock(&r->mu);
        prog_ud_t pu = {r, x, before, 0};
        int64_t masked = 0;
        rc = dataset_load_range_at(d->be[s], dfd, x->dir, &info, x->first[s], base, ls, on_load_progress, &pu,
                                   &x->cancel, &masked, msg, msglen);
        if (rc == 0) x->masked_joints = x->shards > 1 ? x->masked_joints + masked : masked;
        before += ls->total;
    }
    ds_info_free(&info);
    close(dfd);
    if (rc) {
        pthread_mutex_lock(&r->mu);
        ds_free_memory(r, x);
        pthread_mutex_unlock(&r->mu);
    }
    return rc;
}

/* Tests: TRAIND_TEST_LOAD_GATE=FILE holds each load until FILE exists, so a
 * job can be submitted while its dataset is certainly still loading. */
static void load_gate(residency_t *r, res_ds_t *x) {
    const char *gate = getenv("TRAIND_TEST_LOAD_GATE");
    while (gate && gate[0] && access(gate, F_OK) != 0) {
        pthread_mutex_lock(&r->mu);
        int stop = r->stop || x->cancel;
        pthread_mutex_unlock(&r->mu);
        if (stop) return;
        usleep(20000);
    }
}

static void *loader_main(void *arg) {
    residency_t *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        remove_unused_caches(r);
        res_ds_t *x = NULL;
        for (res_ds_t *y = r->list; y; y = y->next)
            if (y->phase == RS_QUEUED && !y->cancel) { x = y; break; }
        if (!x && !r->jpeg_tried) {
            /* the first idle moment (after a restart's reloads): nvJPEG's start-up (~1 s) is
             * paid here rather than by the first import */
            pthread_mutex_unlock(&r->mu);
            import_gpu(r);
            pthread_mutex_lock(&r->mu);
            continue;
        }
        if (!x) { pthread_cond_wait(&r->cv, &r->mu); continue; }
        x->busy = 1;
        pthread_mutex_unlock(&r->mu);

        char msg[1024] = "";
        load_gate(r, x);
        double t0 = mono_now();
        int rc = load_one(r, x, msg, sizeof msg);
        double el = mono_now() - t0;
        char err[256];
        json_t *upd;
        if (rc == 0) {
            double gbps = res_gbps((double)x->total, mono_now() - x->t0);
            upd = json_pack("{s:s, s:I, s:[i,i], s:o, s:I, s:f, s:f, s:b, s:n, s:I}", "state", "ready",
                            "samples", (json_int_t)x->layout.n, "image_size", x->layout.h, x->layout.w,
                            "fields", ds_fields_to_json(x->layout.fields), "bytes", (json_int_t)x->bytes,
                            "progress", 1.0, "gb_per_s", gbps, "loaded_at", 1, "error",
                            "masked_joints", (json_int_t)x->masked_joints);
            if (x->masked_joints)
                log_warn(NULL, "dataset %s: %lld labelled joints have NaN/Inf coordinates; they are masked out "
                         "(invalid) in every loss and metric", x->name, (long long)x->masked_joints);
            if (store_dataset_update(r->d->store, x->name, upd, err, sizeof err))
                log_error(NULL, "dataset %s: %s", x->name, err);
            log_info(NULL, "dataset %s: ready, %lld samples %dx%d, %.3f GB per device%s, %.2f GB/s (%.1f s)",
                     x->name, (long long)x->layout.n, x->layout.h, x->layout.w, x->bytes / 1e9,
                     x->shards > 1 ? " (sharded)" : "", gbps, el);
            notify_status("dataset %s ready (%.2f GB/s)", x->name, gbps);
            pthread_mutex_lock(&r->mu);
            x->phase = RS_READY;
            x->gbps = gbps;
        } else if (rc == DATASET_LOAD_CANCELLED || x->cancel) {
            log_info(NULL, "dataset %s: load cancelled%s%s%s", x->name, msg[0] ? " (" : "", msg, msg[0] ? ")" : "");
            pthread_mutex_lock(&r->mu);
            x->phase = RS_FAILED;
        } else {
            log_error(NULL, "dataset %s: load failed: %s", x->name, msg);
            upd = json_pack("{s:s, s:o}", "state", "failed", "error", errbuf_json_string(msg));
            if (store_dataset_update(r->d->store, x->name, upd, err, sizeof err))
                log_error(NULL, "dataset %s: %s", x->name, err);
            json_decref(upd);
            upd = NULL;
            pthread_mutex_lock(&r->mu);
            x->phase = RS_FAILED;
        }
        if (rc == 0) json_decref(upd);
        x->busy = 0;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        if (r->d->sched) sched_kick(r->d->sched);   /* queued jobs may now start (or fail) */
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* POSIX shm segments "traind-<pid>-..." of daemons that are gone (kill -9) are freed. */
static void sweep_stale_shm(void) {
    DIR *dir = opendir("/dev/shm");
    if (!dir) return;
    struct dirent *de;
    while ((de = readdir(dir))) {
        long pid;
        if (sscanf(de->d_name, "traind-%ld-", &pid) != 1 || pid <= 0) continue;
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char name[300];
        snprintf(name, sizeof name, "/%s", de->d_name);
        if (shm_unlink(name) == 0) log_info(NULL, "freed stale shared memory %s of a dead daemon (pid %ld)", name, pid);
    }
    closedir(dir);
}

residency_t *residency_create(daemon_t *d) {
    residency_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->d = d;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (strcmp(d->backend_name, "cpu") == 0) sweep_stale_shm();
    snprintf(r->imports_root, sizeof r->imports_root, "%s/imports", d->cfg.state_dir);
    char err[512];
    if (fs_mkdir_p(r->imports_root, 0750, err, sizeof err)) log_warn(NULL, "imports: %s", err);
    int swept = import_sweep_tmp(r->imports_root);   /* imports a crash or a kill interrupted */
    if (swept > 0) log_warn(NULL, "imports: removed %d unfinished import director%s left by a crash", swept,
                            swept == 1 ? "y" : "ies");
    if (pthread_create(&r->loader, NULL, loader_main, r)) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        free(r);
        return NULL;
    }
    return r;
}

void residency_destroy(residency_t *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    for (res_ds_t *x = r->list; x; x = x->next) x->cancel = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->loader, NULL);
    if (r->jpeg) r->jpeg->close(r->jpeg);
    pthread_mutex_lock(&r->mu);
    remove_unused_caches(r);
    pthread_mutex_unlock(&r->mu);
    free(r->rm_keys);
    while (r->list) {
        res_ds_t *x = r->list;
        r->list = x->next;
        ds_destroy(r, x);
    }
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

static int name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-') return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.') return 0;
    return 1;
}

/* Adds x to the list (caller holds the lock) and wakes the loader. */
static res_ds_t *enqueue(residency_t *r, const char *name, const char *dir, int synthetic,
                         const json_t *source, size_t est_bytes) {
    res_ds_t *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    snprintf(x->name, sizeof x->name, "%s", name);
    snprintf(x->dir, sizeof x->dir, "%s", dir);
    x->synthetic = synthetic;
    x->source = json_deep_copy(source);
    x->phase = RS_QUEUED;
    x->bytes = est_bytes;
    x->shards = 1;
    for (int s = 0; s < r->d->n_dev; s++) x->need[s] = est_bytes;
    x->next = r->list;
    r->list = x;
    pthread_cond_broadcast(&r->cv);
    return x;
}

static int get_int_field(const json_t *o, const char *key, const char *path, long long lo, long long hi,
                         long long *out, daemon_err_t *e) {
    const json_t *v = json_object_get(o, key);
    if (!v) { daemon_err_set(e, 400, "invalid_field", path, "%s is required", path); return -1; }
    if (!json_is_integer(v)) { daemon_err_set(e, 400, "invalid_field", path, "%s must be an integer", path); return -1; }
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        daemon_err_set(e, 400, "invalid_field", path, "%s must be in [%lld, %lld]", path, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

/* The recorded source of an import request {"manifest","image_size","resize","on_error"}:
 * defaults filled in, the manifest resolved beneath a dataset root (403 outside,
 * the same whether or not it exists; 422 missing or not a file or directory). */
/* 422 for a path the record cannot hold (a dataset is recorded by its exact resolved
 * path, which JSON needs as UTF-8), naming it with its bytes escaped. */
static void residency_err_not_utf8(daemon_err_t *e, const char *field, const char *what, const char *path) {
    json_t *shown = errbuf_json_string(path);
    daemon_err_set(e, 422, "unprocessable", field, "the %s resolves to %s, which is not valid UTF-8; rename it", what,
                   json_string_value(shown) ? json_string_value(shown) : "a name");
    json_decref(shown);
}

static json_t *import_source(daemon_t *d, const json_t *ji, daemon_err_t *e) {
    if (!json_is_object(ji)) {
        daemon_err_set(e, 400, "invalid_field", "import", "import must be an object");
        return NULL;
    }
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)ji, k, v)
        if (strcmp(k, "manifest") && strcmp(k, "image_size") && strcmp(k, "resize") && strcmp(k, "on_error")) {
            char f[96];
            snprintf(f, sizeof f, "import.%s", k);
            daemon_err_set(e, 400, "invalid_field", f, "unknown field '%s' (manifest, image_size, resize, on_error)", f);
            return NULL;
        }
    const json_t *jm = json_object_get(ji, "manifest");
    if (!json_is_string(jm) || !*json_string_value(jm)) {
        daemon_err_set(e, 400, "invalid_field", "import.manifest", "import.manifest must be a non-empty string (a path)");
        return NULL;
    }
    long long size = 224;
    if (json_object_get(ji, "image_size") &&
        get_int_field(ji, "image_size", "import.image_size", IMPORT_MIN_SIDE, IMPORT_MAX_SIZE, &size, e))
        return NULL;
    const char *resize = "stretch", *on_error = "fail";
    if ((v = json_object_get(ji, "resize"))) {
        resize = json_string_value(v);
        if (!resize || (strcmp(resize, "stretch") && strcmp(resize, "crop"))) {
            daemon_err_set(e, 400, "invalid_field", "import.resize", "import.resize must be \"stretch\" or \"crop\"");
            return NULL;
        }
    }
    if ((v = json_object_get(ji, "on_error"))) {
        on_error = json_string_value(v);
        if (!on_error || (strcmp(on_error, "fail") && strcmp(on_error, "skip"))) {
            daemon_err_set(e, 400, "invalid_field", "import.on_error", "import.on_error must be \"fail\" or \"skip\"");
            return NULL;
        }
    }
    const char *path = json_string_value(jm);
    if (d->cfg.n_roots == 0) {
        daemon_err_set(e, 403, "forbidden", "import.manifest", "no dataset root is configured (--dataset-root): "
                       "import manifests are refused");
        return NULL;
    }
    const char *roots[CFG_MAX_ROOTS];
    for (int i = 0; i < d->cfg.n_roots; i++) roots[i] = d->cfg.dataset_roots[i];
    char rp[PATH_MAX], msg[PATH_MAX + 128];
    struct stat st;
    int rc = import_resolve(path, roots, d->cfg.n_roots, rp, sizeof rp, &st, msg, sizeof msg);
    if (rc == IMPORT_FORBIDDEN) {
        daemon_err_set(e, 403, "forbidden", "import.manifest", "manifest %s is not under a dataset root", path);
        return NULL;
    }
    if (rc) {
        daemon_err_set(e, 422, "unprocessable", "import.manifest", "manifest %s", msg);
        return NULL;
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        daemon_err_set(e, 422, "unprocessable", "import.manifest", "manifest %s is not a file or a (FreiHAND) directory",
                       path);
        return NULL;
    }
    json_t *src = json_pack("{s:{s:s, s:I, s:s, s:s}}", "import", "manifest", rp, "image_size", (json_int_t)size,
                            "resize", resize, "on_error", on_error);
    if (!src)   /* the record must name the manifest exactly, to import it again at start */
        residency_err_not_utf8(e, "import.manifest", "manifest", rp);
    return src;
}

json_t *residency_load(residency_t *r, const json_t *body, daemon_err_t *e) {
    daemon_t *d = r->d;
    if (!json_is_object(body)) { daemon_err_set(e, 400, "bad_request", "", "the body must be a JSON object"); return NULL; }
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)body, k, v)
        if (strcmp(k, "name") && strcmp(k, "path") && strcmp(k, "synthetic") && strcmp(k, "import")) {
            daemon_err_set(e, 400, "invalid_field", k, "unknown field '%s'", k);
            return NULL;
        }
    const json_t *jn = json_object_get(body, "name");
    if (!json_is_string(jn)) { daemon_err_set(e, 400, "invalid_field", "name", "name must be a string"); return NULL; }
    const char *name = json_string_value(jn);
    if (!name_ok(name)) {
        daemon_err_set(e, 400, "invalid_field", "name", "name must be 1-64 characters of [A-Za-z0-9._-], not starting with '.' or '-'");
        return NULL;
    }
    const json_t *jp = json_object_get(body, "path"), *js = json_object_get(body, "synthetic"),
                 *ji = json_object_get(body, "import");
    if (json_is_null(js)) js = NULL;   /* null is absent, as the API reads it */
    if (json_is_null(ji)) ji = NULL;
    if ((jp != NULL) + (js != NULL) + (ji != NULL) != 1) {
        daemon_err_set(e, 400, "invalid_field", jp ? (js ? "synthetic" : "import") : js ? "import" : "path",
                       "give exactly one of path, synthetic and import");
        return NULL;
    }
    char dir[PATH_MAX + 128];
    json_t *source;
    size_t est = 0;
    ds_layout_t est_layout;   /* the dataset as far as known: an import's is a placeholder of 1 sample */
    memset(&est_layout, 0, sizeof est_layout);
    int img_h = 0, img_w = 0;   /* a path dataset's image size, known from its manifest */
    char msg[512];
    if (jp) {
        if (!json_is_string(jp)) { daemon_err_set(e, 400, "invalid_field", "path", "path must be a string"); return NULL; }
        int dfd = daemon_open_client_path(&d->cfg, json_string_value(jp), DAEMON_ROOTS_DATA, FS_DIR, FS_CONFINE_RESOLVE,
                                          "path", dir, sizeof dir, e);
        if (dfd < 0) return NULL;
        ds_info_t info;
        int sr = ds_scan_at(dfd, dir, &info, msg, sizeof msg);
        close(dfd);
        if (sr) {
            daemon_err_set(e, 422, "unprocessable", "path", "%s", msg);
            return NULL;
        }
        est = ds_layout_for(&est_layout, &info);
        img_h = info.h;
        img_w = info.w;
        ds_info_free(&info);
        if (!est) { daemon_err_set(e, 422, "unprocessable", "path", "dataset too large to lay out"); return NULL; }
        source = json_pack("{s:s}", "path", dir);
        if (!source) {   /* the record must name the directory exactly, to load it again at start */
            residency_err_not_utf8(e, "path", "path", dir);
            return NULL;
        }
    } else if (ji) {
        if (!(source = import_source(d, ji, e))) return NULL;
        dir[0] = 0;   /* known once imported (its size is checked before decoding: on_import_admit) */
        ds_layout(&est_layout, 1, IMPORT_MIN_SIDE, IMPORT_MIN_SIDE, DS_F_JOINTS_VALID | DS_F_HAS_HAND);
    } else {
        if (!json_is_object(js)) { daemon_err_set(e, 400, "invalid_field", "synthetic", "synthetic must be an object"); return NULL; }
        json_object_foreach((json_t *)js, k, v)
            if (strcmp(k, "samples") && strcmp(k, "image_size") && strcmp(k, "seed")) {
                char f[96];
                snprintf(f, sizeof f, "synthetic.%s", k);
                daemon_err_set(e, 400, "invalid_field", f, "unknown field '%s'", f);
                return NULL;
            }
        long long n, size, seed = 0;
        if (get_int_field(js, "samples", "synthetic.samples", 1, 100000000, &n, e) ||
            get_int_field(js, "image_size", "synthetic.image_size", SYNTH_MIN_SIZE, SYNTH_MAX_SIZE, &size, e))
            return NULL;
        if (json_object_get(js, "seed") && get_int_field(js, "seed", "synthetic.seed", 0, INT64_MAX, &seed, e)) return NULL;
        est = ds_layout(&est_layout, n, (int)size, (int)size, DS_F_JOINTS_VALID | DS_F_HAS_HAND | DS_F_INTRINSICS);
        if (!est) { daemon_err_set(e, 400, "invalid_field", "synthetic.samples", "dataset too large"); return NULL; }
        source = json_pack("{s:{s:I, s:I, s:I}}", "synthetic", "samples", (json_int_t)n, "image_size", (json_int_t)size,
                           "seed", (json_int_t)seed);
        snprintf(dir, sizeof dir, "%s/synthetic/%s", d->work_root, name);
    }
    pthread_mutex_lock(&r->mu);
    if (find(r, name)) {
        pthread_mutex_unlock(&r->mu);
        json_decref(source);
        daemon_err_set(e, 409, "conflict", "name", "dataset '%s' exists", name);
        return NULL;
    }
    res_place_t place;
    if (res_plan(r, NULL, &est_layout, &place, msg, sizeof msg)) {
        pthread_mutex_unlock(&r->mu);
        json_decref(source);
        daemon_err_set(e, 507, "insufficient_storage", "", "%s", msg);
        return NULL;
    }
    char err[256];
    json_t *rec = NULL;
    int rc = store_dataset_insert(d->store, name, source, &rec, err, sizeof err);
    if (rc == STORE_CONFLICT) {
        pthread_mutex_unlock(&r->mu);
        json_decref(source);
        daemon_err_set(e, 409, "conflict", "name", "dataset '%s' exists", name);
        return NULL;
    }
    if (rc != STORE_OK) {
        pthread_mutex_unlock(&r->mu);
        json_decref(source);
        daemon_err_set(e, 500, "internal", "", "%s", err);
        return NULL;
    }
    if (img_h > 0) {   /* recorded now, so a job submitted while it loads is checked against it */
        json_t *upd = json_pack("{s:[i,i]}", "image_size", img_h, img_w);
        if (store_dataset_update(d->store, name, upd, err, sizeof err) == STORE_OK)
            json_object_set(rec, "image_size", json_object_get(upd, "image_size"));
        else
            log_warn(NULL, "dataset %s: %s", name, err);
        json_decref(upd);
    }
    res_ds_t *x = enqueue(r, name, dir, js != NULL, source, est);
    if (x && ji) x->import = 1;
    if (x && !ji) place_apply(x, &place, d->n_dev);   /* what it will take until it is scanned */
    pthread_mutex_unlock(&r->mu);
    json_decref(source);
    if (!x) { json_decref(rec); daemon_err_set(e, 500, "internal", "", "out of memory"); return NULL; }
    log_info(NULL, "dataset %s: load requested (%.3f GB per device)", name, est / 1e9);
    residency_decorate(r, rec);
    return rec;
}

void residency_reload_all(residency_t *r) {
    json_t *all = NULL;
    char err[256];
    if (store_dataset_list(r->d->store, &all, err, sizeof err)) {
        log_error(NULL, "cannot list datasets to reload: %s", err);
        return;
    }
    size_t i;
    json_t *rec;
    /* import caches no record names (a delete's removal a crash cut short) go */
    DIR *dir_imports = opendir(r->imports_root);
    struct dirent *de;
    while (dir_imports && (de = readdir(dir_imports))) {
        if (strlen(de->d_name) != 64 || strspn(de->d_name, "0123456789abcdef") != 64) continue;
        int named = 0;
        json_array_foreach(all, i, rec) {
            const char *key = json_string_value(json_object_get(json_object_get(rec, "import"), "key"));
            if (key && strcmp(key, de->d_name) == 0) named = 1;
        }
        if (named) continue;
        char cdir[PATH_MAX + 128];
        if (fs_join(cdir, sizeof cdir, r->imports_root, de->d_name)) continue;
        if (fs_rm_rf(cdir, err, sizeof err) == 0) log_info(NULL, "import cache %s removed (no dataset uses it)", de->d_name);
    }
    if (dir_imports) closedir(dir_imports);
    json_array_foreach(all, i, rec) {
        const char *name = json_string_value(json_object_get(rec, "name"));
        const char *state = json_string_value(json_object_get(rec, "state"));
        json_t *src = json_object_get(rec, "source");
        if (!name || !state || strcmp(state, "failed") == 0) continue;
        char dir[PATH_MAX + 128] = "";
        int synthetic = json_is_object(json_object_get(src, "synthetic"));
        int import = json_is_object(json_object_get(src, "import"));
        const char *key = json_string_value(json_object_get(json_object_get(rec, "import"), "key"));
        if (synthetic) snprintf(dir, sizeof dir, "%s/synthetic/%s", r->d->work_root, name);
        else if (!import) snprintf(dir, sizeof dir, "%s", json_string_value(json_object_get(src, "path")) ?: "");
        json_t *upd = json_pack("{s:s, s:f}", "state", "loading", "progress", 0.0);
        store_dataset_update(r->d->store, name, upd, err, sizeof err);
        json_decref(upd);
        pthread_mutex_lock(&r->mu);
        res_ds_t *x = find(r, name) ? NULL
                      : enqueue(r, name, dir, synthetic, src, (size_t)json_integer_value(json_object_get(rec, "bytes")));
        if (x && import) {
            x->import = 1;
            if (key && strlen(key) == 64) snprintf(x->cache_key, sizeof x->cache_key, "%s", key);
        }
        pthread_mutex_unlock(&r->mu);
        log_info(NULL, "dataset %s: reloading after start", name);
    }
    json_decref(all);
}

int residency_delete(residency_t *r, const char *name, daemon_err_t *e) {
    daemon_t *d = r->d;
    char err[256];
    json_t *rec = NULL;
    int rc = store_dataset_get(d->store, name, &rec, err, sizeof err);
    json_decref(rec);
    if (rc == STORE_NOTFOUND) { daemon_err_set(e, 404, "not_found", "", "no dataset '%s'", name); return -1; }
    if (rc) { daemon_err_set(e, 500, "internal", "", "%s", err); return -1; }
    pthread_mutex_lock(&r->mu);
    res_ds_t *x = find(r, name);
    int n = 0;
    if (store_dataset_in_use(d->store, name, &n, err, sizeof err) == STORE_OK && n > 0) {
        pthread_mutex_unlock(&r->mu);
        daemon_err_set(e, 409, "conflict", "", "dataset '%s' is used by %d queued or running job(s)", name, n);
        return -1;
    }
    if (x && x->refs > 0) {
        pthread_mutex_unlock(&r->mu);
        daemon_err_set(e, 409, "conflict", "", "dataset '%s' is open in %d worker(s)", name, x->refs);
        return -1;
    }
    if (x) {
        x->cancel = 1;
        while (x->busy) pthread_cond_wait(&r->cv, &r->mu);
        res_ds_t **pp = &r->list;
        while (*pp != x) pp = &(*pp)->next;
        *pp = x->next;
    }
    pthread_mutex_unlock(&r->mu);
    rc = store_dataset_delete(d->store, name, err, sizeof err);
    if (x && x->import && x->cache_key[0]) {   /* the loader removes it when no other dataset uses it */
        pthread_mutex_lock(&r->mu);
        char(*nk)[65] = realloc(r->rm_keys, (size_t)(r->n_rm + 1) * sizeof *nk);
        if (nk) {
            r->rm_keys = nk;
            snprintf(r->rm_keys[r->n_rm++], sizeof r->rm_keys[0], "%s", x->cache_key);
            pthread_cond_broadcast(&r->cv);
        }
        pthread_mutex_unlock(&r->mu);
    }
    if (x) {
        if (x->synthetic) res_rm_synthetic(r, x->name);
        ds_destroy(r, x);
    }
    if (rc && rc != STORE_NOTFOUND) { daemon_err_set(e, 500, "internal", "", "%s", err); return -1; }
    log_info(NULL, "dataset %s: deleted", name);
    return 0;
}

void residency_decorate(residency_t *r, json_t *rec) {
    const char *name = json_string_value(json_object_get(rec, "name"));
    if (!name) return;
    pthread_mutex_lock(&r->mu);
    res_ds_t *x = find(r, name);
    json_t *devs = json_array();
    if (x) {
        json_object_set_new(rec, "phase", json_string(phase_names[x->phase]));
        if (x->phase == RS_DECODING) {
            json_object_set_new(rec, "progress", json_real(x->imp_frames ? (double)x->imp_done / (double)x->imp_frames : 0));
            json_object_set_new(rec, "images_per_s", json_real(x->imp_rate));
            json_object_set_new(rec, "decoding", json_pack("{s:I, s:I, s:I}", "frames", (json_int_t)x->imp_frames, "done",
                                                           (json_int_t)x->imp_done, "skipped",
                                                           (json_int_t)x->imp_skipped));
        } else if (x->phase < RS_READY) {
            json_object_set_new(rec, "progress", json_real(x->total ? (double)x->done / (double)x->total : 0));
            json_object_set_new(rec, "gb_per_s", json_real(x->gbps));
        }
        for (int s = 0; s < r->d->n_dev; s++) {
            json_t *o = json_pack("{s:i, s:I}", "index", r->d->dev_index[s], "bytes",
                                  (json_int_t)(x->base[s] ? x->lay[s].total : 0));
            if (x->phase >= RS_LOADING && x->phase != RS_FAILED)
                json_object_set_new(o, "samples", json_pack("[I,I]", (json_int_t)x->first[s],
                                                            (json_int_t)(x->first[s] + x->lay[s].n)));
            json_array_append_new(devs, o);
        }
        json_object_set_new(rec, "workers", json_integer(x->refs));
        if (x->phase >= RS_LOADING && x->phase != RS_FAILED)
            json_object_set_new(rec, "residency", json_string(x->shards > 1 ? "sharded" : "replicated"));
    }
    json_object_set_new(rec, "devices", devs);
    pthread_mutex_unlock(&r->mu);
}

int residency_acquire(residency_t *r, const char *name, const int *slots, int n, json_t **shares, char *msg,
                      size_t msglen) {
    *shares = NULL;
    pthread_mutex_lock(&r->mu);
    res_ds_t *x = find(r, name);
    int rc;
    if (!x) { snprintf(msg, msglen, "dataset '%s' is not loaded (deleted or never loaded)", name); rc = -1; }
    else if (x->phase == RS_FAILED) { snprintf(msg, msglen, "dataset '%s' failed to load", name); rc = -1; }
    else if (x->phase != RS_READY || x->cancel) rc = 1;
    else {
        rc = 0;
        if (x->shards > 1) {   /* the ranks must hold every shard once */
            int seen[CFG_MAX_DEVICES] = {0}, all = n == x->shards;
            for (int k = 0; all && k < n; k++) all = slots[k] >= 0 && slots[k] < x->shards && !seen[slots[k]]++;
            if (!all) {
                admit_sharded_why(msg, msglen, name, x->shards, 0);
                rc = -1;
            }
        }
        if (rc == 0) {
            x->refs++;
            *shares = json_array();
            for (int k = 0; k < n; k++) {
                int s = slots[k];
                json_array_append_new(*shares, json_pack("{s:s, s:I, s:o, s:I, s:I}", "handle", x->handle[s], "bytes",
                                                         (json_int_t)x->lay[s].total, "layout",
                                                         ds_layout_to_json(&x->lay[s]), "first", (json_int_t)x->first[s],
                                                         "samples", (json_int_t)x->layout.n));
            }
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int residency_shards(residency_t *r, const char *name) {
    pthread_mutex_lock(&r->mu);
    res_ds_t *x = find(r, name);
    int rc = !x || x->phase == RS_FAILED ? -1 : x->phase != RS_READY ? 0 : x->shards;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int residency_planned_shards(residency_t *r, const char *name) {
    pthread_mutex_lock(&r->mu);
    res_ds_t *x = find(r, name);
    int rc = !x || x->phase == RS_FAILED ? -1 : !x->placed ? 0 : x->shards;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void residency_release(residency_t *r, const char *name) {
    pthread_mutex_lock(&r->mu);
    res_ds_t *x = find(r, name);
    if (x && x->refs > 0) x->refs--;
    pthread_mutex_unlock(&r->mu);
}

size_t residency_bytes_on(residency_t *r, int slot) {
    size_t b = 0;
    pthread_mutex_lock(&r->mu);
    for (res_ds_t *x = r->list; x; x = x->next)
        if (x->base[slot]) b += x->lay[slot].total;
    pthread_mutex_unlock(&r->mu);
    return b;
}

json_t *residency_summary(residency_t *r) {
    json_t *a = json_array();
    pthread_mutex_lock(&r->mu);
    for (res_ds_t *x = r->list; x; x = x->next) {
        json_t *o = json_pack("{s:s, s:s, s:I}", "name", x->name,
                              "state", x->phase == RS_READY ? "ready" : x->phase == RS_FAILED ? "failed" : "loading",
                              "bytes", (json_int_t)(x->base[0] ? x->lay[0].total : 0));
        if (x->phase == RS_READY) json_object_set_new(o, "residency", json_string(x->shards > 1 ? "sharded" : "replicated"));
        if (x->phase == RS_DECODING)
            json_object_set_new(o, "progress", json_real(x->imp_frames ? (double)x->imp_done / (double)x->imp_frames : 0));
        else if (x->phase < RS_READY)
            json_object_set_new(o, "progress", json_real(x->total ? (double)x->done / (double)x->total : 0));
        json_array_append_new(a, o);
    }
    pthread_mutex_unlock(&r->mu);
    return a;
}
