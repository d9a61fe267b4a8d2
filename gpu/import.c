/* gpu/import.c — JPEG/PNG frames + labels -> a shard directory, on all cores
 * (see gpu/import.h for the pipeline, the geometry and the cache key).
 *
 * Owns: opening files beneath the dataset roots, the manifest's files
 * (JSON Lines or FreiHAND), the per-frame stat pass and the cache key, the
 * thread pool that decodes and resizes, the ring of shard buffers, the
 * temporary directory and its atomic rename, import.json, and
 * `traind import`.
 *
 * Threads: frames are handed out in order by one atomic counter. Frame i
 * goes to shard i / M, held by ring slot (i / M) % R; a thread whose shard's
 * slot still holds an earlier shard waits for it to be written. The thread
 * that finishes a shard's last frame compacts it (skipped frames out),
 * writes it and hands the slot to shard + R. At most R shards of host
 * memory are in flight, whatever the dataset's size. A thread feeding a GPU
 * decoder takes up to a batch from the same counter (compare-and-swap,
 * never past its shard's end), so it waits for one slot as a frame does.
 */
#define _GNU_SOURCE
#include "gpu/import.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "gpu/image.h"
#include "gpu/imgdec.h"
#include "gpu/manifest.h"
#include "store/dataset.h"
#include "store/errbuf.h"
#include "store/fsutil.h"
#include "store/hand.h"
#include "store/mono.h"
#include "store/sha256.h"

/* Copies src into dst[len], truncating (messages and paths checked elsewhere). */
static void imp_copy(char *dst, size_t len, const char *src) {
    size_t n = strnlen(src, len - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* ---- files beneath the roots ------------------------------------------------------- */
int import_path_under(const char *rp, const char *const *roots, int n_roots) {
    for (int i = 0; i < n_roots; i++) {
        const char *root = roots[i];
        size_t n = strlen(root);
        if (strncmp(rp, root, n) == 0 && (rp[n] == '/' || rp[n] == 0 || (n == 1 && root[0] == '/'))) return 1;
    }
    return 0;
}

static int imp_forbidden(const char *path, char *err, size_t errlen) {
    errbuf_set(err, errlen, "%s is not under a dataset root", path);
    return IMPORT_FORBIDDEN;
}

int import_resolve(const char *path, const char *const *roots, int n_roots, char *resolved, size_t len,
                   struct stat *st, char *err, size_t errlen) {
    int confined = roots && n_roots > 0;
    char rp[PATH_MAX];
    if (!path || !*path) return errbuf_set(err, errlen, "empty path");
    if (!realpath(path, rp)) {
        int e = errno;
        if (confined) {
            /* a missing file may be named as such only when its directory lies under a root */
            char parent[PATH_MAX], prp[PATH_MAX];
            snprintf(parent, sizeof parent, "%s", path);
            if ((e != ENOENT && e != ENOTDIR) || !realpath(dirname(parent), prp) ||
                !import_path_under(prp, roots, n_roots))
                return imp_forbidden(path, err, errlen);
        }
        return errbuf_set(err, errlen, "%s: %s", path, e == ENOENT ? "no such file" : strerror(e));
    }
    if (confined && !import_path_under(rp, roots, n_roots)) return imp_forbidden(path, err, errlen);
    if (stat(rp, st) != 0) return errbuf_set(err, errlen, "%s: %s", path, strerror(errno));
    if (snprintf(resolved, len, "%s", rp) >= (int)len) return errbuf_set(err, errlen, "%s: path too long", path);
    return 0;
}

int import_open(const char *path, const char *const *roots, int n_roots, struct stat *st, char *err, size_t errlen) {
    int confined = roots && n_roots > 0;
    int fd;
    if (confined) {
        /* resolved and confined (with the messages above), then opened beneath its
         * root without following any link (store/fsutil.h): a path swapped for a
         * symbolic link between the two is refused, not followed */
        char rp[PATH_MAX], why[512];
        struct stat s0;
        int r = import_resolve(path, roots, n_roots, rp, sizeof rp, &s0, err, errlen);
        if (r) return r;
        fd = fs_open_confined(rp, roots, n_roots, FS_REG, 0, NULL, 0, why, sizeof why);
        if (fd < 0)
            return errbuf_set(err, errlen, "%s: %s", path, errno == ELOOP ? "a symbolic link (replaced while opening)"
                              : errno == ENOENT ? "no such file" : "not a regular file beneath its root");
    } else {
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            return errbuf_set(err, errlen, "%s: %s", path, e == ENOENT ? "no such file" : strerror(e));
        }
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return errbuf_set(err, errlen, "%s: not a regular file", path);
    }
    return fd;
}

/* Reads size bytes of fd into *buf (grown as needed). 0 or -1 with err. */
static int imp_read_fd(int fd, int64_t size, uint8_t **buf, size_t *cap, char *err, size_t errlen) {
    if ((size_t)size + 1 > *cap) {
        size_t nc = (size_t)size + 1 > 2 * *cap ? (size_t)size + 1 : 2 * *cap;
        uint8_t *nb = realloc(*buf, nc);
        if (!nb) return errbuf_set(err, errlen, "out of memory for %lld bytes", (long long)size);
        *buf = nb;
        *cap = nc;
    }
    int64_t got = 0;
    while (got < size) {
        ssize_t r = pread(fd, *buf + got, (size_t)(size - got), got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errbuf_set(err, errlen, "read: %s", strerror(errno));
        if (r == 0) return errbuf_set(err, errlen, "the file shrank while being read");
        got += r;
    }
    return 0;
}

/* A whole file beneath the roots (manifests). NULL with err (rc: -1 or IMPORT_FORBIDDEN). */
static char *imp_read_file(const char *path, const import_opts_t *o, size_t max, size_t *len, int *rc, char *err,
                           size_t errlen) {
    struct stat st;
    int fd = import_open(path, o->roots, o->n_roots, &st, err, errlen);
    *rc = fd == IMPORT_FORBIDDEN ? IMPORT_FORBIDDEN : -1;
    if (fd < 0) return NULL;
    if ((uint64_t)st.st_size > max) {
        close(fd);
        errbuf_set(err, errlen, "%s: %lld bytes, more than the limit of %zu", path, (long long)st.st_size, max);
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t cap = 0;
    char e[256];
    if (imp_read_fd(fd, st.st_size, &buf, &cap, e, sizeof e)) {
        close(fd);
        free(buf);
        errbuf_set(err, errlen, "%s: %s", path, e);
        return NULL;
    }
    close(fd);
    buf[st.st_size] = 0;
    *len = (size_t)st.st_size;
    return (char *)buf;
}

/* ---- the manifest ------------------------------------------------------------------ */
static int imp_cpus(void);

static int imp_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Does the image file of a FreiHAND index exist (beneath the roots)? */
typedef struct { const char *fmt; const import_opts_t *o; } imp_probe_t;
static int imp_exists(const char *fmt, long idx, const import_opts_t *o);
static int imp_exists_cb(void *ud, long idx) {
    const imp_probe_t *p = ud;
    return imp_exists(p->fmt, idx, p->o);
}
static int imp_exists(const char *fmt, long idx, const import_opts_t *o) {
    char path[PATH_MAX + 64], e[64];
    struct stat st;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(path, sizeof path, fmt, idx);
#pragma GCC diagnostic pop
    int fd = import_open(path, o->roots, o->n_roots, &st, e, sizeof e);
    if (fd < 0) return 0;
    close(fd);
    return 1;
}

/* The manifest's hash, computed on a thread of its own beside the parse. */
typedef struct {
    const char *text;
    size_t len;
    char *out;                      /* [65] */
    int rc;
    double seconds;
    char err[256];
} imp_hash_t;

static void *imp_hash_main(void *arg) {
    imp_hash_t *h = arg;
    double t = mono_now();
    h->rc = sha256_buf(h->text, h->len, h->out, h->err, sizeof h->err);
    h->seconds = mono_now() - t;
    return NULL;
}

/* Starts h's hash on a thread of its own (1), or runs it on this one when none
 * starts (0: nothing to join). */
static int imp_hash_start(imp_hash_t *h, pthread_t *t) {
    if (pthread_create(t, NULL, imp_hash_main, h) == 0) return 1;
    imp_hash_main(h);
    return 0;
}

/* A JSON Lines manifest's own path (resolved) and the base of its relative image paths. */
static void imp_manifest_at(manifest_t *m, const char *rp) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", rp);
    snprintf(m->dir, sizeof m->dir, "%s", dirname(tmp));
    snprintf(m->path, sizeof m->path, "%s", rp);
}

/* Loads the manifest at path (JSON Lines file, or FreiHAND directory / *_xyz.json),
 * with the seconds of reading, parsing and hashing (beside the parse) in times[3].
 * 0, IMPORT_FORBIDDEN or -1 with err. */
static int imp_load_manifest(const char *path, const import_opts_t *o, manifest_t *m, double times[3], char *err,
                             size_t errlen) {
    memset(m, 0, sizeof *m);
    char rp[PATH_MAX];
    struct stat st;
    int r = import_resolve(path, o->roots, o->n_roots, rp, sizeof rp, &st, err, errlen);
    if (r) return r;
    char dir[PATH_MAX], set[64] = "training", xyz[PATH_MAX + 64], kf[PATH_MAX + 64];
    int freihand = 0;
    if (S_ISDIR(st.st_mode)) {
        freihand = 1;
        snprintf(dir, sizeof dir, "%s", rp);
    } else if (S_ISREG(st.st_mode) && imp_ends_with(rp, "_xyz.json")) {
        freihand = 1;
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s", rp);
        snprintf(dir, sizeof dir, "%s", dirname(tmp));
        snprintf(tmp, sizeof tmp, "%s", rp);
        const char *base = basename(tmp);
        snprintf(set, sizeof set, "%.*s", (int)(strlen(base) - strlen("_xyz.json")), base);
    } else if (!S_ISREG(st.st_mode)) {
        return errbuf_set(err, errlen, "%s: not a manifest file or a FreiHAND directory", path);
    }
    size_t len = 0, klen = 0;
    if (!freihand) {
        imp_manifest_at(m, rp);
        double t0 = mono_now();
        char *text = imp_read_file(rp, o, MF_MAX_BYTES, &len, &r, err, errlen);
        if (!text) return r;
        double t1 = mono_now();
        /* the hash beside the parse (each ~30 ms for 8000 frames on the GPU machine) */
        imp_hash_t hj = {text, len, m->sha256, -1, 0.0, ""};
        pthread_t ht;
        int threaded = imp_hash_start(&hj, &ht);
        char dcopy[PATH_MAX];
        snprintf(dcopy, sizeof dcopy, "%s", m->dir);
        r = manifest_parse(text, len, rp, dcopy, o->threads > 0 ? o->threads : imp_cpus(), m, err, errlen);
        times[0] = t1 - t0;
        times[1] = mono_now() - t1;
        if (threaded) pthread_join(ht, NULL);
        times[2] = hj.seconds;
        free(text);
        if (r == 0 && hj.rc) {
            manifest_free(m);
            return errbuf_set(err, errlen, "%s: %s", rp, hj.err);
        }
        return r;
    }
    if (snprintf(xyz, sizeof xyz, "%s/%s_xyz.json", dir, set) >= (int)sizeof xyz ||
        snprintf(kf, sizeof kf, "%s/%s_K.json", dir, set) >= (int)sizeof kf)
        return errbuf_set(err, errlen, "%s: path too long", dir);
    /* images: <dir>/<set>/rgb/ (the published layout) or <dir>/rgb/; '%' in names escaped for the format */
    char fmt[2 * PATH_MAX + 64], esc[2 * PATH_MAX];
    size_t o2 = 0;
    for (const char *c = dir; *c && o2 + 2 < sizeof esc; c++) {
        if (*c == '%') esc[o2++] = '%';
        esc[o2++] = *c;
    }
    esc[o2] = 0;
    if (snprintf(fmt, sizeof fmt, "%s/%s/rgb/%%08ld.jpg", esc, set) >= (int)sizeof fmt)
        return errbuf_set(err, errlen, "%s: path too long", dir);
    if (!imp_exists(fmt, 0, o) && snprintf(fmt, sizeof fmt, "%s/rgb/%%08ld.jpg", esc) >= (int)sizeof fmt)
        return errbuf_set(err, errlen, "%s: path too long", dir);
    double t0 = mono_now();
    char *tx = imp_read_file(xyz, o, MF_MAX_BYTES, &len, &r, err, errlen);
    if (!tx) return r;
    char *tk = imp_read_file(kf, o, MF_MAX_BYTES, &klen, &r, err, errlen);
    if (!tk) {
        free(tx);
        return r;
    }
    double t1 = mono_now();
    char h1[65], h2[65], e[256], meta[256];
    imp_copy(m->path, sizeof m->path, xyz);
    imp_copy(m->dir, sizeof m->dir, dir);
    /* the two files' hashes beside the parse, as a JSON Lines manifest's */
    imp_hash_t hx = {tx, len, h1, -1, 0.0, ""}, hk = {tk, klen, h2, -1, 0.0, ""};
    pthread_t thx, thk;
    int jx = imp_hash_start(&hx, &thx), jk = imp_hash_start(&hk, &thk);
    imp_probe_t probe = {fmt, o};
    r = manifest_parse_freihand(tx, len, tk, klen, xyz, fmt, imp_exists_cb, &probe,
                                o->threads > 0 ? o->threads : imp_cpus(), m, err, errlen);
    times[0] = t1 - t0;
    times[1] = mono_now() - t1;
    if (jx) pthread_join(thx, NULL);
    if (jk) pthread_join(thk, NULL);
    times[2] = hx.seconds + hk.seconds;
    if (r == 0 && (hx.rc || hk.rc)) {
        manifest_free(m);
        r = errbuf_set(err, errlen, "%s: %s", xyz, hx.rc ? hx.err : hk.err);
    } else if (r == 0) {
        /* the versions found are part of the key through the frame count (imp_key) */
        snprintf(meta, sizeof meta, "freihand %s %s %s", set, h1, h2);
        if (sha256_buf(meta, strlen(meta), m->sha256, e, sizeof e)) {
            manifest_free(m);
            r = errbuf_set(err, errlen, "%s: %s", xyz, e);
        }
    }
    free(tx);
    free(tk);
    return r;
}

/* "manifest line N (image)" / "xyz.json image N (path)" */
static void imp_where(const manifest_t *m, const mf_frame_t *f, char *out, size_t len) {
    snprintf(out, len, "%s %s %ld (%s)", m->path, m->freihand ? "image" : "line", f->line, f->image ? f->image : "?");
}

/* ---- threads ------------------------------------------------------------------------- */
static int imp_cpus(void) {
    cpu_set_t cs;
    if (sched_getaffinity(0, sizeof cs, &cs) == 0 && CPU_COUNT(&cs) > 0) return CPU_COUNT(&cs);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

typedef struct {
    int64_t shard;                  /* the shard this slot holds now (guarded by ctx mu) */
    atomic_llong remaining;         /* frames of it not yet done */
    uint8_t *img;                   /* [M][S][S][3] */
    int pinned;                     /* img came from o->gpu->host_alloc (else malloc) */
    float *joints, *K;              /* [M][63], [M][9] */
    uint8_t *valid, *hh, *ok;       /* [M][21], [M], [M] */
} imp_slot_t;

typedef struct {
    const import_opts_t *o;
    const manifest_t *m;
    int64_t n;
    int64_t *fsize, *fmtime;        /* per frame, from the stat pass */
    char **ferr;                    /* per frame, the stat pass's error (or NULL) */
    int S, R, T;
    int G;                          /* threads that feed o->gpu (0: none), after the T decoding on the CPU */
    int64_t M;                      /* frames per shard */
    int *rootfd;                    /* [o->n_roots] each root's directory (O_PATH), -1 where it would not open */
    char outdir[PATH_MAX];
    imp_slot_t *slots;
    atomic_llong next, done, checked, gpu_frames;
    atomic_llong feed_ns[3];        /* the feeding threads' time: reading files, the decoder's calls, the rest */
    atomic_int abort, running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* guarded by mu */
    int64_t *wq;                    /* [R] shards whose frames are all done, to be written by a CPU thread */
    int wq_n;
    int64_t shards, shards_done;    /* shards in all, and written (or given up) so far */
    int64_t err_idx;                /* fail mode: the lowest failing frame seen, -1 none */
    char err[1024];
    int64_t skipped, imported, left, right;
    int n_reasons;
    int64_t reason_idx[IMPORT_MAX_REASONS];
    char reasons[IMPORT_MAX_REASONS][512];
} imp_ctx_t;

typedef struct {
    imp_ctx_t *c;
    imgdec_t *dec;
    image_resizer_t *rz;
    uint8_t *buf;
    size_t cap;
    int gpu;                        /* -1: decodes frames on the CPU; else feeds o->gpu as its caller `gpu` */
    uint8_t **fbuf;                 /* gpu: [batch] files of a batch, and their capacities */
    size_t *fcap;
    jpeg_gpu_frame_t *gf;           /* gpu: [batch] the frames of a batch handed to the decoder */
    pthread_t th;
} imp_thread_t;

static int imp_cancelled(const imp_ctx_t *c) { return c->o->cancel && *c->o->cancel; }

/* A frame could not be imported: fail mode aborts (keeping the lowest frame's
 * message), skip mode counts it and keeps the first reasons by frame order. */
static void imp_frame_error(imp_ctx_t *c, int64_t i, const char *msg) {
    pthread_mutex_lock(&c->mu);
    if (!c->o->skip) {
        if (c->err_idx < 0 || i < c->err_idx) {
            c->err_idx = i;
            imp_copy(c->err, sizeof c->err, msg);
        }
        atomic_store(&c->abort, 1);
        pthread_cond_broadcast(&c->cv);
    } else {
        c->skipped++;
        int pos = c->n_reasons;
        while (pos > 0 && c->reason_idx[pos - 1] > i) pos--;
        if (pos < IMPORT_MAX_REASONS) {
            int last = c->n_reasons < IMPORT_MAX_REASONS ? c->n_reasons : IMPORT_MAX_REASONS - 1;
            for (int q = last; q > pos; q--) {
                c->reason_idx[q] = c->reason_idx[q - 1];
                memcpy(c->reasons[q], c->reasons[q - 1], sizeof c->reasons[q]);
            }
            c->reason_idx[pos] = i;
            imp_copy(c->reasons[pos], sizeof c->reasons[pos], msg);
            if (c->n_reasons < IMPORT_MAX_REASONS) c->n_reasons++;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

static void imp_fatal(imp_ctx_t *c, const char *msg) {
    pthread_mutex_lock(&c->mu);
    if (c->err_idx < 0) imp_copy(c->err, sizeof c->err, msg);
    c->err_idx = 0;
    atomic_store(&c->abort, 1);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static int64_t imp_mtime_ns(const struct stat *st) {
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* An image opened the short way when it can be: a path that names a root's
 * descendant as written is opened beneath that root's directory with no link
 * followed (fs_open_beneath: openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS),
 * which is where import_open's resolving way ends for such a path anyway, in
 * one call in place of realpath's walk, a stat and the root's open. Whatever
 * that refuses (a link on the way, '..', a missing file, not a regular file)
 * goes the resolving way for its verdict and its message. Per frame on this
 * CI-class machine: 17-20 us to open and read against 33-37 (bench/RESULTS.md). */
static int imp_open_image(const imp_ctx_t *c, const char *path, struct stat *st, char *err, size_t errlen) {
    for (int i = 0; c->rootfd && i < c->o->n_roots; i++) {
        const char *rel = c->rootfd[i] >= 0 ? fs_rel_under(c->o->roots[i], path) : NULL;
        if (!rel || !*rel) continue;
        char e[64];
        int fd = fs_open_beneath(c->rootfd[i], rel, FS_REG, path, e, sizeof e);
        if (fd < 0) break;
        if (fstat(fd, st) == 0) return fd;   /* FS_REG: a regular file, fs_open_beneath checked */
        close(fd);
        break;
    }
    return import_open(path, c->o->roots, c->o->n_roots, st, err, errlen);
}

/* Opens frame i's file beneath the roots and reads it into *buf (grown): 0
 * with *len, or -1 with why (naming the frame). */
static int imp_read_frame(imp_ctx_t *c, int64_t i, uint8_t **buf, size_t *cap, size_t *len, char *why, size_t wl) {
    const mf_frame_t *f = &c->m->frames[i];
    char where[PATH_MAX + 256], e[512];
    if (f->error) return errbuf_set(why, wl, "%s", f->error);
    imp_where(c->m, f, where, sizeof where);
    if (c->ferr[i]) return errbuf_set(why, wl, "%s: %s", where, c->ferr[i]);
    struct stat st;
    int fd = imp_open_image(c, f->image, &st, e, sizeof e);
    if (fd < 0) return errbuf_set(why, wl, "%s: %s", where, e);
    if (st.st_size != c->fsize[i] || imp_mtime_ns(&st) != c->fmtime[i]) {
        close(fd);
        return errbuf_set(why, wl, "%s: the file changed during the import", where);
    }
    int r = imp_read_fd(fd, st.st_size, buf, cap, e, sizeof e);
    close(fd);
    if (r) return errbuf_set(why, wl, "%s: %s", where, e);
    *len = (size_t)st.st_size;
    return 0;
}

/* The region of a decoded w x h image that is resized: all of it (stretch)
 * or its centre square (crop). */
static void imp_region(const imp_ctx_t *c, int w, int h, int *x0, int *y0, int *rw, int *rh) {
    *x0 = *y0 = 0;
    *rw = w;
    *rh = h;
    if (c->o->crop) {
        int side = w < h ? w : h;
        *x0 = (w - side) / 2;
        *y0 = (h - side) / 2;
        *rw = *rh = side;
    }
}

/* Frame i's labels into slot position j, K adjusted to the image: decoded at
 * factor sc, the region (x0, y0, rw, rh) resized to S x S. 0 or -1 with why. */
static int imp_labels(imp_ctx_t *c, int64_t i, imp_slot_t *s, int64_t j, double sc, int x0, int y0, int rw, int rh,
                      char *why, size_t wl) {
    const mf_frame_t *f = &c->m->frames[i];
    const int S = c->S;
    /* K' = A K (gpu/import.h) */
    double ax = sc * S / rw, ay = sc * S / rh, bx = -(double)x0 * S / rw, by = -(double)y0 * S / rh;
    float *K = s->K + (size_t)j * 9;
    for (int col = 0; col < 3; col++) {
        K[col] = (float)(ax * f->K[col] + bx * f->K[6 + col]);
        K[3 + col] = (float)(ay * f->K[3 + col] + by * f->K[6 + col]);
        K[6 + col] = f->K[6 + col];
    }
    for (int q = 0; q < 9; q++)
        if (!isfinite(K[q])) {
            char where[PATH_MAX + 256];
            imp_where(c->m, f, where, sizeof where);
            return errbuf_set(why, wl, "%s: the adjusted K is not finite", where);
        }
    memcpy(s->joints + (size_t)j * HAND_COORDS, f->joints, sizeof f->joints);
    memcpy(s->valid + (size_t)j * HAND_JOINTS, f->valid, HAND_JOINTS);
    s->hh[j] = f->has_hand;
    return 0;
}

/* Decode (buf, len: frame i's file), crop/resize and relabel frame i into
 * slot position j, on this CPU. 0 or -1 with why. */
static int imp_frame_cpu(imp_ctx_t *c, imp_thread_t *t, int64_t i, const uint8_t *buf, size_t len, imp_slot_t *s,
                         int64_t j, char *why, size_t wl) {
    const int S = c->S;
    char where[PATH_MAX + 256], e[512];
    imp_where(c->m, &c->m->frames[i], where, sizeof where);
    imgdec_out_t out;
    if (imgdec_decode(t->dec, buf, len, S, IMPORT_MIN_SIDE, &out, e, sizeof e))
        return errbuf_set(why, wl, "%s: %s", where, e);
    int x0, y0, rw, rh;
    imp_region(c, out.w, out.h, &x0, &y0, &rw, &rh);
    uint8_t *img = s->img + (size_t)j * S * S * 3;
    if (image_resizer_run(t->rz, out.rgb + ((size_t)y0 * out.w + x0) * 3, rh, rw, (size_t)out.w * 3, img, S, S, e,
                          sizeof e))
        return errbuf_set(why, wl, "%s: %s", where, e);
    return imp_labels(c, i, s, j, (double)out.scale_num / out.scale_den, x0, y0, rw, rh, why, wl);
}

/* Reads, decodes and relabels frame i into slot position j on this CPU. */
static int imp_frame(imp_ctx_t *c, imp_thread_t *t, int64_t i, imp_slot_t *s, int64_t j, char *why, size_t wl) {
    size_t len;
    if (imp_read_frame(c, i, &t->buf, &t->cap, &len, why, wl)) return -1;
    return imp_frame_cpu(c, t, i, t->buf, len, s, j, why, wl);
}

static int64_t imp_shard_count(const imp_ctx_t *c, int64_t k) {
    int64_t first = k * c->M;
    if (first >= c->n) return 0;
    return c->n - first < c->M ? c->n - first : c->M;
}

/* A slot's image memory: 2 MB aligned and marked for transparent huge pages
 * (where the kernel has them on request, as Debian's and Ubuntu's do), so its
 * first filling faults in 2 MB at a time rather than 4 KB. NULL if out of memory. */
static uint8_t *imp_slot_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 2u << 20, bytes)) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE);   /* advice only: without it, 4 KB pages */
#endif
    return p;
}

/* Compacts shard k (skipped frames out) and writes it. 0 or -1 with err. */
static int imp_write_shard(imp_ctx_t *c, imp_slot_t *s, int64_t k, char *err, size_t errlen) {
    const int64_t cnt = imp_shard_count(c, k), first = k * c->M;
    const size_t isz = (size_t)c->S * c->S * 3;
    int64_t w = 0, left = 0, right = 0;
    for (int64_t j = 0; j < cnt; j++) {
        if (!s->ok[j]) continue;
        uint8_t side = c->m->frames[first + j].side;
        left += side == MF_SIDE_LEFT;
        right += side == MF_SIDE_RIGHT;
        if (w != j) {
            memmove(s->img + (size_t)w * isz, s->img + (size_t)j * isz, isz);
            memmove(s->joints + w * HAND_COORDS, s->joints + j * HAND_COORDS, HAND_COORDS * sizeof(float));
            memmove(s->K + w * 9, s->K + j * 9, 9 * sizeof(float));
            memmove(s->valid + w * HAND_JOINTS, s->valid + j * HAND_JOINTS, HAND_JOINTS);
            s->hh[w] = s->hh[j];
        }
        w++;
    }
    if (w > 0) {
        static const float mean[3] = HAND_IMAGENET_MEAN, std[3] = HAND_IMAGENET_STD;
        char name[64], path[PATH_MAX + 64];
        snprintf(name, sizeof name, "shard-%05lld.safetensors", (long long)k);
        if (fs_join(path, sizeof path, c->outdir, name)) return errbuf_set(err, errlen, "path too long");
        ds_shard_data_t sd = {.n = w, .h = c->S, .w = c->S, .image_dtype = DT_U8, .image = s->img,
                              .joints = s->joints, .joints_valid = s->valid, .has_hand = s->hh, .intrinsics = s->K,
                              .mean = mean, .std = std};
        if (ds_write_shard(path, &sd, err, errlen)) return -1;
        if (c->o->sink && !c->o->skip) {   /* fail mode: nothing was compacted, row = frame */
            assert(w == cnt);
            import_rows_t rows = {.n = w, .image_size = c->S, .images = s->img, .joints = s->joints,
                                  .valid = s->valid, .has_hand = s->hh, .intrinsics = s->K};
            if (c->o->sink(c->o->ud, first, &rows, err, errlen)) return -1;
        }
    }
    pthread_mutex_lock(&c->mu);
    c->imported += w;
    c->left += left;
    c->right += right;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

/* A pool thread leaves: the last one wakes the watching thread (imp_run_threads),
 * which would otherwise notice only at its next progress tick. */
static void imp_thread_done(imp_ctx_t *c) {
    pthread_mutex_lock(&c->mu);
    if (atomic_fetch_sub(&c->running, 1) == 1) pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Shard k's frames are all done: writes it and hands its slot to shard k + R. */
static void imp_shard_finish(imp_ctx_t *c, int64_t k) {
    imp_slot_t *s = &c->slots[k % c->R];
    char err[512];
    if (!atomic_load(&c->abort) && imp_write_shard(c, s, k, err, sizeof err)) imp_fatal(c, err);
    pthread_mutex_lock(&c->mu);
    s->shard = k + c->R;
    atomic_store(&s->remaining, imp_shard_count(c, k + c->R));
    c->shards_done++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Frame i (slot position j of shard k) is done, imported (r == 0) or not
 * (why). The thread that finishes a shard's last frame writes it — unless it
 * feeds the GPU decoder (defer): a shard write (~64 MB to the file and to the
 * devices, tens of ms) would leave the decoder unfed, so the shard is queued
 * for the CPU decoding threads (imp_decode_main), which always exist. */
static void imp_frame_end(imp_ctx_t *c, int64_t i, int64_t k, int64_t j, int r, const char *why, int defer) {
    imp_slot_t *s = &c->slots[k % c->R];
    s->ok[j] = r == 0;
    if (r) imp_frame_error(c, i, why);
    atomic_fetch_add(&c->done, 1);
    if (atomic_fetch_sub(&s->remaining, 1) != 1) return;   /* not the shard's last frame */
    if (!defer) {
        imp_shard_finish(c, k);
        return;
    }
    pthread_mutex_lock(&c->mu);
    assert(c->wq_n < c->R);   /* a queued shard holds its slot: at most R */
    c->wq[c->wq_n++] = k;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Takes a queued shard, mu held: 1 with *k, or 0 when none is queued or the
 * import aborts. */
static int imp_pop_write(imp_ctx_t *c, int64_t *k) {
    if (c->wq_n == 0 || atomic_load(&c->abort)) return 0;
    *k = c->wq[--c->wq_n];
    return 1;
}

/* A CPU decoding thread's next shard to write: 1 with *k, or 0 when none is
 * queued. With wait, it waits for one until every shard is written or the
 * import aborts (the frames are all taken: what is left is the feeding
 * threads' shards). */
static int imp_next_write(imp_ctx_t *c, int wait, int64_t *k) {
    pthread_mutex_lock(&c->mu);
    while (wait && c->wq_n == 0 && c->shards_done < c->shards && !atomic_load(&c->abort))
        pthread_cond_wait(&c->cv, &c->mu);
    int got = imp_pop_write(c, k);
    pthread_mutex_unlock(&c->mu);
    return got;
}

/* Waits until shard k's slot holds it: 0, or -1 when the import aborts. A
 * CPU decoding thread (serve) writes queued shards meanwhile: the one that
 * holds the slot may be among them. */
static int imp_wait_slot(imp_ctx_t *c, int64_t k, int serve) {
    imp_slot_t *s = &c->slots[k % c->R];
    pthread_mutex_lock(&c->mu);
    while (s->shard != k && !atomic_load(&c->abort)) {
        int64_t q;
        if (serve && imp_pop_write(c, &q)) {
            pthread_mutex_unlock(&c->mu);
            imp_shard_finish(c, q);
            pthread_mutex_lock(&c->mu);
            continue;
        }
        pthread_cond_wait(&c->cv, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return atomic_load(&c->abort) ? -1 : 0;
}

/* A thread that feeds the GPU decoder: takes up to a batch of consecutive
 * frames within one shard (so that it waits for one slot, as a frame does),
 * reads their files, hands the plain JPEGs (imgdec_jpeg_plain) to the
 * decoder and decodes the others — and any it refuses — on this CPU. */
static void imp_gpu_batch(imp_thread_t *t, int64_t i0, int64_t i1) {
    imp_ctx_t *c = t->c;
    jpeg_gpu_t *g = c->o->gpu;
    const int S = c->S;
    const int64_t k = i0 / c->M;
    imp_slot_t *s = &c->slots[k % c->R];
    const long long maxp = c->o->max_pixels > 0 ? c->o->max_pixels : IMGDEC_MAX_PIXELS;
    char why[1536];
    int n = (int)(i1 - i0), rc[n > 0 ? n : 1], at[n > 0 ? n : 1], np = 0;
    char *whys[n > 0 ? n : 1];
    size_t len[n > 0 ? n : 1];
    memset(whys, 0, sizeof whys);
    double t0 = mono_now();
    /* read every file; the plain JPEGs go to t->gf[np] (at[q] = np, else -1) */
    for (int q = 0; q < n; q++) {
        int64_t i = i0 + q, j = i - k * c->M;
        at[q] = -1;
        rc[q] = imp_read_frame(c, i, &t->fbuf[q], &t->fcap[q], &len[q], why, sizeof why);
        if (rc[q]) {
            whys[q] = strdup(why);
            continue;
        }
        int w, h;
        if (!imgdec_jpeg_plain(t->fbuf[q], len[q], &w, &h) || w < IMPORT_MIN_SIDE || h < IMPORT_MIN_SIDE ||
            (long long)w * h > maxp)
            continue;
        jpeg_gpu_frame_t *x = &t->gf[np];
        *x = (jpeg_gpu_frame_t){.data = t->fbuf[q], .len = len[q], .w = w, .h = h,
                                .dst = s->img + (size_t)j * S * S * 3, .pinned = s->pinned};
        imp_region(c, w, h, &x->x0, &x->y0, &x->rw, &x->rh);
        at[q] = np++;
    }
    double t1 = mono_now();
    if (np > 0 && g->decode(g, t->gpu, np, t->gf, S, why, sizeof why)) imp_fatal(c, why);
    double t2 = mono_now();
    int64_t on_gpu = 0;
    for (int q = 0; q < n; q++) {
        int64_t i = i0 + q, j = i - k * c->M;
        int r = rc[q];
        if (atomic_load(&c->abort)) {   /* the import fails with another frame's error: these are not done */
            free(whys[q]);
            continue;
        }
        const jpeg_gpu_frame_t *x = at[q] >= 0 ? &t->gf[at[q]] : NULL;
        if (r == 0 && x && x->ok == 1) {
            on_gpu++;
            r = imp_labels(c, i, s, j, 1.0, x->x0, x->y0, x->rw, x->rh, why, sizeof why);
        } else if (r == 0) {   /* not handed over, or refused */
            r = imp_frame_cpu(c, t, i, t->fbuf[q], len[q], s, j, why, sizeof why);
        } else {
            snprintf(why, sizeof why, "%s", whys[q] ? whys[q] : "out of memory");
        }
        free(whys[q]);
        imp_frame_end(c, i, k, j, r, why, 1);
    }
    atomic_fetch_add(&c->gpu_frames, on_gpu);
    double t3 = mono_now();
    atomic_fetch_add(&c->feed_ns[0], (long long)((t1 - t0) * 1e9));
    atomic_fetch_add(&c->feed_ns[1], (long long)((t2 - t1) * 1e9));
    atomic_fetch_add(&c->feed_ns[2], (long long)((t3 - t2) * 1e9));
}

static void *imp_decode_main(void *arg) {
    imp_thread_t *t = arg;
    imp_ctx_t *c = t->c;
    char why[1536];
    for (;;) {
        if (atomic_load(&c->abort) || imp_cancelled(c)) break;
        if (t->gpu >= 0) {   /* a batch: up to o->gpu->batch frames, within one shard */
            long long i0 = atomic_load(&c->next), i1 = 0;
            do {
                if (i0 >= c->n) break;
                int64_t end = (i0 / c->M + 1) * c->M;
                i1 = i0 + c->o->gpu->batch;
                if (i1 > end) i1 = end;
                if (i1 > c->n) i1 = c->n;
            } while (!atomic_compare_exchange_weak(&c->next, &i0, i1));
            if (i0 >= c->n) break;
            if (imp_wait_slot(c, i0 / c->M, 0)) break;
            imp_gpu_batch(t, i0, i1);
            continue;
        }
        int64_t k;
        if (c->G > 0 && imp_next_write(c, 0, &k)) {   /* a feeding thread's shard first */
            imp_shard_finish(c, k);
            continue;
        }
        int64_t i = atomic_fetch_add(&c->next, 1);
        if (i >= c->n) {
            if (c->G > 0 && imp_next_write(c, 1, &k)) {
                imp_shard_finish(c, k);
                continue;
            }
            break;
        }
        k = i / c->M;
        int64_t j = i - k * c->M;
        if (imp_wait_slot(c, k, 1)) break;
        int r = imp_frame(c, t, i, &c->slots[k % c->R], j, why, sizeof why);
        imp_frame_end(c, i, k, j, r, why, 0);
    }
    imp_thread_done(c);
    return NULL;
}

/* The stat pass: every image opened beneath the roots and fstat'ed. */
static void *imp_check_main(void *arg) {
    imp_thread_t *t = arg;
    imp_ctx_t *c = t->c;
    for (;;) {
        if (imp_cancelled(c)) break;
        int64_t i = atomic_fetch_add(&c->next, 1);
        if (i >= c->n) break;
        const mf_frame_t *f = &c->m->frames[i];
        if (!f->error) {
            char e[512];
            struct stat st;
            int fd = imp_open_image(c, f->image, &st, e, sizeof e);
            if (fd >= 0) {
                close(fd);
                c->fsize[i] = st.st_size;
                c->fmtime[i] = imp_mtime_ns(&st);
                if (st.st_size == 0) snprintf(e, sizeof e, "empty file");
                else if (st.st_size > IMPORT_MAX_FILE_BYTES)
                    snprintf(e, sizeof e, "%lld bytes, more than the limit of %lld", (long long)st.st_size,
                             (long long)IMPORT_MAX_FILE_BYTES);
                else e[0] = 0;
            }
            if (e[0] && !(c->ferr[i] = strdup(e))) c->ferr[i] = strdup("out of memory");
        }
        atomic_fetch_add(&c->checked, 1);
    }
    imp_thread_done(c);
    return NULL;
}

/* Runs fn on nt threads (th[0..nt)) while the calling thread reports
 * progress and watches for a cancel. */
static int imp_run_threads(imp_ctx_t *c, imp_thread_t *th, int nt, void *(*fn)(void *), const char *phase, double t0,
                           char *err, size_t errlen) {
    atomic_store(&c->next, 0);
    atomic_store(&c->running, nt);
    int started = 0;
    for (; started < nt; started++)
        if (pthread_create(&th[started].th, NULL, fn, &th[started])) break;
    if (started < nt) {
        atomic_fetch_sub(&c->running, nt - started);
        imp_fatal(c, "cannot start the import threads");
    }
    int cancel_seen = 0;
    double last = 0;
    for (;;) {
        /* until the last thread leaves (it broadcasts) or 50 ms pass: a cancel and progress */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 50 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&c->mu);
        while (atomic_load(&c->running) > 0 && pthread_cond_timedwait(&c->cv, &c->mu, &ts) == 0) {}
        int left = (int)atomic_load(&c->running);
        pthread_mutex_unlock(&c->mu);
        if (left == 0) break;
        if (imp_cancelled(c) && !cancel_seen) {
            cancel_seen = 1;
            pthread_mutex_lock(&c->mu);
            atomic_store(&c->abort, 1);
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
        }
        double now = mono_now();
        if (c->o->progress && now - last >= 0.2) {
            last = now;
            pthread_mutex_lock(&c->mu);
            int64_t skipped = c->skipped;
            pthread_mutex_unlock(&c->mu);
            int64_t done = strcmp(phase, "decoding") == 0 ? atomic_load(&c->done) : 0;
            import_progress_t p = {phase, c->n, done, skipped, now > t0 && done ? (double)done / (now - t0) : 0};
            c->o->progress(c->o->ud, &p);
        }
    }
    for (int i = 0; i < started; i++) pthread_join(th[i].th, NULL);
    if (imp_cancelled(c)) {
        errbuf_set(err, errlen, "import cancelled");
        return IMPORT_CANCELLED;
    }
    return 0;
}

/* ---- result and import.json ------------------------------------------------------------ */
json_t *import_result_json(const import_result_t *r) {
    json_t *reasons = json_array();
    for (int i = 0; i < r->n_reasons; i++) json_array_append_new(reasons, errbuf_json_string(r->reasons[i]));
    return json_pack("{s:s, s:i, s:s, s:I, s:I, s:I, s:o, s:{s:I, s:I}, s:f, s:f, s:f, s:b, s:s, s:I}", "format",
                     "traind-import", "version", IMPORT_FORMAT_VERSION, "key", r->key, "frames", (json_int_t)r->frames,
                     "imported", (json_int_t)r->imported, "skipped", (json_int_t)r->skipped, "skip_reasons", reasons,
                     "hand_side", "left", (json_int_t)r->left, "right", (json_int_t)r->right, "decode_s", r->seconds,
                     "prepare_s", r->prepare_s, "images_per_s", r->images_per_s, "cache_hit", r->cache_hit,
                     "decoder", r->decoder[0] ? r->decoder : "cpu", "gpu_frames", (json_int_t)r->gpu_frames);
}

int import_read_result(const char *dir, import_result_t *res, char *err, size_t errlen) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/import.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) return errbuf_set(err, errlen, "%s: %s", path, je.text);
    memset(res, 0, sizeof *res);
    const char *key = json_string_value(json_object_get(j, "key"));
    json_t *rs = json_object_get(j, "skip_reasons");
    int bad = !key || strlen(key) != 64 || json_integer_value(json_object_get(j, "version")) != IMPORT_FORMAT_VERSION ||
              !json_is_integer(json_object_get(j, "imported")) || !json_is_array(rs);
    if (!bad) {
        snprintf(res->key, sizeof res->key, "%s", key);
        snprintf(res->dir, sizeof res->dir, "%s", dir);
        res->frames = json_integer_value(json_object_get(j, "frames"));
        res->imported = json_integer_value(json_object_get(j, "imported"));
        res->skipped = json_integer_value(json_object_get(j, "skipped"));
        res->left = json_integer_value(json_object_get(json_object_get(j, "hand_side"), "left"));
        res->right = json_integer_value(json_object_get(json_object_get(j, "hand_side"), "right"));
        res->seconds = json_number_value(json_object_get(j, "decode_s"));
        res->prepare_s = json_number_value(json_object_get(j, "prepare_s"));   /* 0 in older caches */
        res->images_per_s = json_number_value(json_object_get(j, "images_per_s"));
        const char *dec = json_string_value(json_object_get(j, "decoder"));   /* absent in older caches */
        snprintf(res->decoder, sizeof res->decoder, "%s", dec ? dec : "cpu");
        res->gpu_frames = json_integer_value(json_object_get(j, "gpu_frames"));
        size_t i;
        json_t *x;
        json_array_foreach(rs, i, x) {
            if (res->n_reasons >= IMPORT_MAX_REASONS || !json_is_string(x)) break;
            snprintf(res->reasons[res->n_reasons++], sizeof res->reasons[0], "%s", json_string_value(x));
        }
    }
    json_decref(j);
    return bad ? errbuf_set(err, errlen, "%s: not an import description of this version", path) : 0;
}

int import_sweep_tmp(const char *cache_root) {
    DIR *d = opendir(cache_root);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] != '.' || !strstr(de->d_name, ".tmp.")) continue;
        char path[PATH_MAX + 256];
        if (fs_join(path, sizeof path, cache_root, de->d_name) == 0 && fs_rm_rf(path, NULL, 0) == 0) n++;
    }
    closedir(d);
    return n;
}

/* ---- the listed way to a cache hit --------------------------------------------------------
 * A cache entry made from a JSON Lines manifest keeps beside its shards the
 * list of its frames' image paths (frames.list). When the same manifest file
 * (same path, same options, same content hash) is imported again — a restart's
 * reload, another name — its frames are taken from that list instead of
 * parsing the manifest (~50 us a line on one core), then stat'ed and keyed as
 * always: only a hit is taken this way. A list whose key no longer matches (an
 * image changed or vanished) sends the import the full way, which parses. */
#define IMP_LIST_FILE "frames.list"
#define IMP_LIST_VERSION 1
#define IMP_RETRY (-100)             /* the listed way found no hit: go the full way */

/* The list's lookup: the manifest's resolved path and the options that make the key. */
static int imp_list_lookup(const char *manifest_rp, const import_opts_t *o, char out[65]) {
    char buf[PATH_MAX + 256], e[64];
    int n = snprintf(buf, sizeof buf, "traind-frames %d %d\nmanifest %s\nimage_size %d\nresize %s\non_error %s\n",
                     IMP_LIST_VERSION, IMPORT_FORMAT_VERSION, manifest_rp, o->image_size, o->crop ? "crop" : "stretch",
                     o->skip ? "skip" : "fail");
    return n < 0 || n >= (int)sizeof buf ? -1 : sha256_buf(buf, (size_t)n, out, e, sizeof e);
}

/* Writes dir/frames.list: "traind-frames 1 LOOKUP SHA256 N", then a line a
 * frame, "-" (no image: its line had an error) or "LEN PATH". 0 or -1 with err. */
static int imp_list_write(const char *dir, const manifest_t *m, const char *lookup, char *err, size_t errlen) {
    size_t cap = 256, len = 0;
    for (size_t i = 0; i < m->n; i++) cap += (m->frames[i].image ? strlen(m->frames[i].image) : 0) + 24;
    char *buf = malloc(cap);
    if (!buf) return errbuf_set(err, errlen, "out of memory");
    len = (size_t)snprintf(buf, cap, "traind-frames %d %s %s %zu\n", IMP_LIST_VERSION, lookup, m->sha256, m->n);
    for (size_t i = 0; i < m->n; i++) {
        const mf_frame_t *f = &m->frames[i];
        if (f->error || !f->image) len += (size_t)snprintf(buf + len, cap - len, "-\n");
        else len += (size_t)snprintf(buf + len, cap - len, "%zu %s\n", strlen(f->image), f->image);
    }
    assert(len < cap);
    char path[PATH_MAX + 32];
    int r = fs_join(path, sizeof path, dir, IMP_LIST_FILE) ? errbuf_set(err, errlen, "path too long")
                                                           : fs_write_file_atomic(path, buf, len, err, errlen);
    free(buf);
    return r;
}

/* Builds m from the list of entry (its header already read: n frames, the
 * manifest's path rp): frames with an image path, or an error marker. 0, or
 * -1 when the list is not one this code wrote. */
static int imp_list_read(const char *text, size_t len, size_t n, const char *rp, manifest_t *m) {
    const char *p = memchr(text, '\n', len), *end = text + len;
    if (!p || n == 0 || n > (size_t)MF_MAX_FRAMES || !(m->frames = calloc(n, sizeof *m->frames))) return -1;
    p++;
    for (size_t i = 0; i < n; i++) {
        mf_frame_t *f = &m->frames[i];
        f->line = (long)i + 1;
        m->n = i + 1;
        if (p < end && *p == '-') {
            if (p + 1 >= end || p[1] != '\n' || !(f->error = strdup("(listed with an error)"))) return -1;
            p += 2;
            continue;
        }
        char *q;
        errno = 0;
        unsigned long long l = strtoull(p, &q, 10);
        if (errno || q == p || q >= end || *q != ' ' || l == 0 || l >= PATH_MAX || (size_t)(end - q - 1) < l + 1 ||
            q[1 + l] != '\n' || memchr(q + 1, 0, l) || !(f->image = strndup(q + 1, l)))
            return -1;
        p = q + 2 + l;
    }
    if (p != end) return -1;
    imp_manifest_at(m, rp);
    for (size_t i = 0; i < n; i++) m->n_errors += m->frames[i].error != NULL;
    return 0;
}

/* The listed way's start: the manifest resolved beneath the roots, a list in
 * cache_root made with the same lookup, the manifest's content hash the
 * list's. 1 with m built from the list; 0 when there is none
 * (the full way; nothing reported: it reports what is wrong itself). */
static int imp_list_load(const char *manifest, const char *cache_root, const import_opts_t *o, manifest_t *m) {
    char rp[PATH_MAX], e[512], lookup[65];
    struct stat st;
    memset(m, 0, sizeof *m);
    if (import_resolve(manifest, o->roots, o->n_roots, rp, sizeof rp, &st, e, sizeof e) || !S_ISREG(st.st_mode) ||
        imp_ends_with(rp, "_xyz.json") || imp_list_lookup(rp, o, lookup))
        return 0;
    DIR *d = opendir(cache_root);
    if (!d) return 0;
    /* the newest list made with this lookup (an older one is of files since changed) */
    char best[PATH_MAX + 300] = "", want_sha[65] = "";
    size_t n = 0;
    int64_t best_ns = -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[PATH_MAX + 300], head[256];
        if (snprintf(path, sizeof path, "%s/%s/%s", cache_root, de->d_name, IMP_LIST_FILE) >= (int)sizeof path) continue;
        FILE *f = fopen(path, "re");
        if (!f) continue;
        char lk[65], sha[65];
        int ver = 0;
        size_t cnt = 0;
        struct stat ls;
        if (fgets(head, sizeof head, f) && sscanf(head, "traind-frames %d %64s %64s %zu", &ver, lk, sha, &cnt) == 4 &&
            ver == IMP_LIST_VERSION && strcmp(lk, lookup) == 0 && fstat(fileno(f), &ls) == 0 &&
            imp_mtime_ns(&ls) > best_ns) {
            best_ns = imp_mtime_ns(&ls);
            snprintf(best, sizeof best, "%s", path);
            snprintf(want_sha, sizeof want_sha, "%s", sha);
            n = cnt;
        }
        fclose(f);
    }
    closedir(d);
    size_t list_len = 0;
    char *list = best[0] ? fs_read_file(best, MF_MAX_BYTES, &list_len, e, sizeof e) : NULL;   /* header too */
    if (!list) return 0;
    int r = -1;
    size_t len = 0;
    char *text = imp_read_file(rp, o, MF_MAX_BYTES, &len, &r, e, sizeof e);
    char sha[65];
    if (text && sha256_buf(text, len, sha, e, sizeof e) == 0 && strcmp(sha, want_sha) == 0 &&
        imp_list_read(list, list_len, n, rp, m) == 0) {
        snprintf(m->sha256, sizeof m->sha256, "%s", sha);
        r = 1;
    } else {
        manifest_free(m);
        memset(m, 0, sizeof *m);
        r = 0;
    }
    free(text);
    free(list);
    return r;
}

/* ---- the import ---------------------------------------------------------------------------- */
static void imp_ctx_free(imp_ctx_t *c, imp_thread_t *th) {
    if (th)
        for (int i = 0; i < c->T + c->G; i++) {
            imgdec_free(th[i].dec);
            image_resizer_free(th[i].rz);
            free(th[i].buf);
            for (int q = 0; th[i].fbuf && q < c->o->gpu->batch; q++) free(th[i].fbuf[q]);
            free(th[i].fbuf);
            free(th[i].fcap);
            free(th[i].gf);
        }
    free(th);
    if (c->slots)
        for (int r = 0; r < c->R; r++) {
            imp_slot_t *s = &c->slots[r];
            if (s->pinned) c->o->gpu->host_free(c->o->gpu, s->img);
            else free(s->img);
            free(s->joints);
            free(s->K);
            free(s->valid);
            free(s->hh);
            free(s->ok);
        }
    free(c->slots);
    free(c->wq);
    for (int i = 0; c->rootfd && i < c->o->n_roots; i++)
        if (c->rootfd[i] >= 0) close(c->rootfd[i]);
    free(c->rootfd);
    if (c->ferr)
        for (int64_t i = 0; i < c->n; i++) free(c->ferr[i]);
    free(c->ferr);
    free(c->fsize);
    free(c->fmtime);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

int import_gpu_reserve(jpeg_gpu_t *gpu) {
    if (!gpu || !gpu->host_alloc || !gpu->host_free) return 0;
    void *p[IMPORT_GPU_MIN_SLOTS];
    int n = 0;
    while (n < IMPORT_GPU_MIN_SLOTS && (p[n] = gpu->host_alloc(gpu, JPEG_GPU_HOST_BLOCK))) n++;
    for (int i = 0; i < n; i++) gpu->host_free(gpu, p[i]);
    return n;
}

/* The cache key (gpu/import.h) of a loaded and checked manifest. */
static int imp_key(const imp_ctx_t *c, char key[65], char *err, size_t errlen) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) return errbuf_set(err, errlen, "out of memory");
    len = (size_t)snprintf(buf, cap, "traind-import %d\nimage_size %d\nresize %s\non_error %s\nmanifest %s %s\n",
                           IMPORT_FORMAT_VERSION, c->S, c->o->crop ? "crop" : "stretch", c->o->skip ? "skip" : "fail",
                           c->m->freihand ? "freihand" : "jsonl", c->m->sha256);
    for (int64_t i = 0; i < c->n; i++) {
        const mf_frame_t *f = &c->m->frames[i];
        size_t need = (f->image ? strlen(f->image) : 0) + 64;
        if (len + need >= cap) {
            while (len + need >= cap) cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                return errbuf_set(err, errlen, "out of memory");
            }
            buf = nb;
        }
        if (f->error || c->ferr[i]) len += (size_t)snprintf(buf + len, cap - len, "%lld -\n", (long long)i);
        else
            len += (size_t)snprintf(buf + len, cap - len, "%lld %s %lld %lld\n", (long long)i, f->image,
                                    (long long)c->fsize[i], (long long)c->fmtime[i]);
    }
    int r = sha256_buf(buf, len, key, err, errlen);
    free(buf);
    return r;
}

/* Sets c up for manifest m under o: its counts, the per-frame arrays, the
 * roots' directories held open, and *thp, a decoder and a resizer for each of
 * the T + G threads (the feeding threads' batch buffers too). 0, or -1 with
 * err; imp_ctx_free(c, *thp) undoes it either way. */
static int imp_ctx_init(imp_ctx_t *c, const import_opts_t *o, const manifest_t *m, imp_thread_t **thp, char *err,
                        size_t errlen) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;   /* timed waits on the monotonic clock (imp_run_threads) */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    c->o = o;
    c->m = m;
    c->n = (int64_t)m->n;
    c->S = o->image_size;
    c->err_idx = -1;
    /* the decoder's feeding threads need little CPU but must get it: one core each off the default */
    c->G = o->gpu ? o->gpu->threads : 0;
    c->T = o->threads > 0 ? o->threads : imp_cpus() - c->G;
    if (c->T < 1) c->T = 1;
    if (c->T > 256) c->T = 256;
    if (c->T > c->n) c->T = (int)c->n;
    imp_thread_t *th = *thp = calloc((size_t)(c->T + c->G), sizeof *th);
    c->fsize = calloc((size_t)c->n, sizeof *c->fsize);
    c->fmtime = calloc((size_t)c->n, sizeof *c->fmtime);
    c->ferr = calloc((size_t)c->n, sizeof *c->ferr);
    if (o->roots && o->n_roots > 0 && (c->rootfd = malloc((size_t)o->n_roots * sizeof *c->rootfd)))
        for (int i = 0; i < o->n_roots; i++) c->rootfd[i] = open(o->roots[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (!th || !c->fsize || !c->fmtime || !c->ferr || (o->roots && o->n_roots > 0 && !c->rootfd)) {
        errbuf_set(err, errlen, "out of memory for %lld frames", (long long)c->n);
        return -1;
    }
    for (int i = 0; i < c->T + c->G; i++) {
        th[i].c = c;
        th[i].gpu = i < c->T ? -1 : i - c->T;
        th[i].dec = imgdec_new();
        th[i].rz = image_resizer_new();
        if (!th[i].dec || !th[i].rz) {
            errbuf_set(err, errlen, "out of memory for the decoders");
            return -1;
        }
        imgdec_set_max_pixels(th[i].dec, o->max_pixels);
        if (th[i].gpu >= 0) {
            size_t b = (size_t)o->gpu->batch;
            th[i].fbuf = calloc(b, sizeof *th[i].fbuf);
            th[i].fcap = calloc(b, sizeof *th[i].fcap);
            th[i].gf = calloc(b, sizeof *th[i].gf);
            if (!th[i].fbuf || !th[i].fcap || !th[i].gf) {
                errbuf_set(err, errlen, "out of memory for the decoders");
                return -1;
            }
        }
    }
    return 0;
}

/* Loads the manifest and stats the images; then either stops at a cache hit
 * (cache_root given and cache_root/<key> complete) or converts into
 * final_dir (cache_root/<key> when final_dir is NULL). */
static int imp_run_once(const char *manifest, const char *cache_root, const char *final_dir, const import_opts_t *o,
                        int try_list, import_result_t *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    if (o->image_size < IMPORT_MIN_SIDE || o->image_size > IMPORT_MAX_SIZE)
        return errbuf_set(err, errlen, "image_size must be %d..%d, got %d", IMPORT_MIN_SIDE, IMPORT_MAX_SIZE,
                          o->image_size);
    double t_start = mono_now();
    if (o->progress) {
        import_progress_t p = {"checking", 0, 0, 0, 0};
        o->progress(o->ud, &p);
    }
    manifest_t m;
    const int listed = try_list && cache_root && !final_dir && imp_list_load(manifest, cache_root, o, &m) == 1;
    int rc = listed ? 0 : imp_load_manifest(manifest, o, &m, res->manifest_parts, err, errlen);
    if (rc) {
        manifest_free(&m);
        return rc;
    }
    const double t_manifest = mono_now();
    imp_ctx_t c;
    imp_thread_t *th = NULL;
    char tmpdir[PATH_MAX] = "";
    rc = -1;
    if (imp_ctx_init(&c, o, &m, &th, err, errlen)) goto out;

    /* 1. every image opened and fstat'ed; 2. the key */
    rc = imp_run_threads(&c, th, c.T, imp_check_main, "checking", t_start, err, errlen);
    if (rc) goto out;
    rc = -1;
    const double t_files = mono_now();
    res->prepare_parts[0] = t_manifest - t_start;
    res->prepare_parts[1] = t_files - t_manifest;
    if (!o->skip && !listed) {   /* fail mode: the first bad frame, before anything is decoded */
        for (int64_t i = 0; i < c.n; i++) {
            const mf_frame_t *f = &m.frames[i];
            if (f->error) {
                errbuf_set(err, errlen, "%s", f->error);
                goto out;
            }
            if (c.ferr[i]) {
                char where[PATH_MAX + 256];
                imp_where(&m, f, where, sizeof where);
                errbuf_set(err, errlen, "%s: %s", where, c.ferr[i]);
                goto out;
            }
        }
    }
    if (imp_key(&c, res->key, err, errlen)) goto out;
    res->frames = c.n;
    char final[PATH_MAX];
    if (final_dir) snprintf(final, sizeof final, "%s", final_dir);
    else if (snprintf(final, sizeof final, "%s/%s", cache_root, res->key) >= (int)sizeof final) {
        errbuf_set(err, errlen, "%s: path too long", cache_root);
        goto out;
    }
    if (cache_root && !final_dir) {
        import_result_t hit;
        char e2[256];
        struct stat st;
        if (stat(final, &st) == 0 && S_ISDIR(st.st_mode) && import_read_result(final, &hit, e2, sizeof e2) == 0 &&
            strcmp(hit.key, res->key) == 0) {
            *res = hit;
            res->cache_hit = 1;
            res->listed = listed;
            rc = 0;
            goto out;
        }
    }
    if (listed) {   /* only a hit is taken the listed way */
        rc = IMP_RETRY;
        goto out;
    }
    if (o->admit && o->admit(o->ud, c.n, c.S, err, errlen)) goto out;

    /* 3. room for the shards */
    c.M = o->shard_frames > 0 ? o->shard_frames : (int64_t)((64u << 20) / ((size_t)c.S * c.S * 3));
    if (c.M < 1) c.M = 1;
    if (c.M > c.n) c.M = c.n;
    {   /* slots for every frame in flight: a frame a CPU thread, a batch a GPU one */
        int64_t flight = c.T + (int64_t)c.G * (c.G ? o->gpu->batch : 0);
        c.R = 2 + (int)((flight + c.M - 1) / c.M);
        /* and room for shards being written and put while the next fill: with a GPU decoder the
         * frames come faster than one thread writes a shard */
        if (c.G && c.R < IMPORT_GPU_MIN_SLOTS) c.R = IMPORT_GPU_MIN_SLOTS;
    }
    if (c.R < 3) c.R = 3;
    {
        struct statvfs vs;
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%s", final);
        const char *pd = dirname(parent);
        if (fs_mkdir_p(pd, 0750, err, errlen)) goto out;
        double need = (double)c.n * ((double)c.S * c.S * 3 + HAND_COORDS * 4 + HAND_JOINTS + 1 + 36) + (64 << 20);
        if (statvfs(pd, &vs) == 0 && (double)vs.f_bavail * vs.f_frsize < need) {
            errbuf_set(err, errlen, "not enough free space in %s for the import: needs %.2f GB, %.2f GB free", pd,
                       need / 1e9, (double)vs.f_bavail * vs.f_frsize / 1e9);
            goto out;
        }
    }
    c.slots = calloc((size_t)c.R, sizeof *c.slots);
    c.wq = calloc((size_t)c.R, sizeof *c.wq);
    c.shards = (c.n + c.M - 1) / c.M;
    if (!c.slots || !c.wq) {
        errbuf_set(err, errlen, "out of memory");
        goto out;
    }
    for (int r = 0; r < c.R; r++) {
        imp_slot_t *s = &c.slots[r];
        size_t M = (size_t)c.M;
        /* with a decoder that lends pinned memory, the frames come back straight into the slot */
        if (c.G && o->pinned_slots && o->gpu->host_alloc && o->gpu->host_free)
            s->pinned = (s->img = o->gpu->host_alloc(o->gpu, M * c.S * c.S * 3)) != NULL;
        if (!s->img) s->img = imp_slot_alloc(M * c.S * c.S * 3);
        s->joints = malloc(M * HAND_COORDS * sizeof(float));
        s->K = malloc(M * 9 * sizeof(float));
        s->valid = malloc(M * HAND_JOINTS);
        s->hh = malloc(M);
        s->ok = malloc(M);
        if (!s->img || !s->joints || !s->K || !s->valid || !s->hh || !s->ok) {
            errbuf_set(err, errlen, "out of memory for the shard buffers (%d x %lld frames of %dx%d)", c.R,
                       (long long)c.M, c.S, c.S);
            goto out;
        }
        s->shard = r;
        atomic_store(&s->remaining, imp_shard_count(&c, r));
    }
    if (fs_make_tmpdir_for(final, tmpdir, sizeof tmpdir, err, errlen)) {
        tmpdir[0] = 0;
        goto out;
    }
    snprintf(c.outdir, sizeof c.outdir, "%s", tmpdir);

    /* 4. decode, resize, write shards */
    double t0 = mono_now();
    res->prepare_s = t0 - t_start;
    res->prepare_parts[2] = t0 - t_files;
    double spent0[3] = {0, 0, 0}, spent1[3] = {0, 0, 0};
    if (c.G && o->gpu->spent) o->gpu->spent(o->gpu, spent0);
    rc = imp_run_threads(&c, th, c.T + c.G, imp_decode_main, "decoding", t0, err, errlen);
    if (c.G && o->gpu->spent) o->gpu->spent(o->gpu, spent1);
    for (int q = 0; q < 3; q++) res->decoder_s[q] = spent1[q] - spent0[q];
    if (rc) goto out;
    rc = -1;
    double el = mono_now() - t0;
    if (c.err_idx >= 0) {
        errbuf_set(err, errlen, "%s", c.err);
        goto out;
    }
    if (c.imported == 0) {
        errbuf_set(err, errlen, "no frame could be imported (%lld skipped%s%s)", (long long)c.skipped,
                   c.n_reasons ? "; the first: " : "", c.n_reasons ? c.reasons[0] : "");
        goto out;
    }
    res->imported = c.imported;
    res->skipped = c.skipped;
    res->left = c.left;
    res->right = c.right;
    res->n_reasons = c.n_reasons;
    memcpy(res->reasons, c.reasons, sizeof res->reasons);
    res->seconds = el;
    res->images_per_s = el > 0 ? (double)c.n / el : 0;
    res->gpu_frames = atomic_load(&c.gpu_frames);
    for (int q = 0; q < 3; q++) res->feed_s[q] = atomic_load(&c.feed_ns[q]) / 1e9;
    snprintf(res->decoder, sizeof res->decoder, "%s", o->gpu ? o->gpu->name : "cpu");
    {
        json_t *j = import_result_json(res);
        json_object_set_new(j, "manifest", errbuf_json_string(m.path));
        json_object_set_new(j, "image_size", json_integer(c.S));
        json_object_set_new(j, "resize", json_string(o->crop ? "crop" : "stretch"));
        json_object_set_new(j, "on_error", json_string(o->skip ? "skip" : "fail"));
        json_object_del(j, "cache_hit");
        char *text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
        json_decref(j);
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/import.json", tmpdir);
        int w = text ? fs_write_file_atomic(path, text, strlen(text), err, errlen)
                     : errbuf_set(err, errlen, "out of memory");
        free(text);
        if (w) goto out;
    }
    char lookup[65];
    if (cache_root && !final_dir && !m.freihand &&
        (imp_list_lookup(m.path, o, lookup) ? errbuf_set(err, errlen, "%s: cannot key its frame list", m.path)
                                            : imp_list_write(tmpdir, &m, lookup, err, errlen)))
        goto out;
    if (imp_cancelled(&c)) {
        rc = IMPORT_CANCELLED;
        errbuf_set(err, errlen, "import cancelled");
        goto out;
    }
    if (fs_rename_dir_atomic(tmpdir, final, err, errlen)) goto out;
    tmpdir[0] = 0;
    snprintf(res->dir, sizeof res->dir, "%s", final);
    rc = 0;
out:
    if (rc == 0 && res->cache_hit) snprintf(res->dir, sizeof res->dir, "%s", final);
    if (tmpdir[0]) fs_rm_rf(tmpdir, NULL, 0);
    imp_ctx_free(&c, th);
    manifest_free(&m);
    return rc;
}

int import_cached(const char *manifest, const char *cache_root, const import_opts_t *o, import_result_t *res,
                  char *err, size_t errlen) {
    int rc = imp_run_once(manifest, cache_root, NULL, o, 1, res, err, errlen);
    if (rc == IMP_RETRY) rc = imp_run_once(manifest, cache_root, NULL, o, 0, res, err, errlen);
    return rc;
}

int import_to_dir(const char *manifest, const char *outdir, const import_opts_t *o, import_result_t *res,
                  char *err, size_t errlen) {
    return imp_run_once(manifest, NULL, outdir, o, 0, res, err, errlen);
}

/* ---- `traind import` ----------------------------------------------------------------------- */
static void imp_usage(FILE *f) {
    fprintf(f,
            "usage: traind import --manifest FILE --out DIR --image-size S [--resize stretch|crop]\n"
            "                     [--on-error fail|skip] [--threads N] [--dataset-root DIR]...\n"
            "                     [--decoder cpu|auto|hardware|cuda]\n"
            "  decodes the JPEG/PNG frames of a manifest (JSON Lines, or a FreiHAND directory or\n"
            "  training_xyz.json) to SxS and writes them with their labels as a dataset directory\n"
            "  (safetensors shards, SPEC §6) at DIR, replaced atomically; --dataset-root confines\n"
            "  every file read to the given roots (as the daemon does). --decoder: JPEGs decoded by\n"
            "  the CPU threads alone (cpu, the default), or also by nvJPEG on GPU 0 (gpu/jpeg_gpu.h:\n"
            "  auto falls back to the CPU when there is none; hardware and cuda require it).\n");
}

static void imp_cli_progress(void *ud, const import_progress_t *p) {
    (void)ud;
    if (!isatty(2) || strcmp(p->phase, "decoding") != 0) return;
    fprintf(stderr, "\rdecoding %lld/%lld frames (%lld skipped), %.0f images/s   ", (long long)p->done,
            (long long)p->frames, (long long)p->skipped, p->images_per_s);
}

int import_main(int argc, char **argv) {
    const char *manifest = NULL, *out = NULL, *roots[16], *decoder = "cpu";
    int n_roots = 0;
    import_opts_t o = {0};
    o.image_size = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            imp_usage(stdout);
            return 0;
        }
        static const char *const opts[] = {"--manifest", "--out", "--image-size", "--resize", "--on-error",
                                           "--threads", "--dataset-root", "--decoder"};
        int which = -1;
        const char *val = NULL;
        for (int k = 0; k < 8 && which < 0; k++) {
            size_t l = strlen(opts[k]);
            if (!strcmp(a, opts[k])) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "traind import: %s needs a value\n", opts[k]);
                    return 2;
                }
                val = argv[++i];
                which = k;
            } else if (!strncmp(a, opts[k], l) && a[l] == '=') {
                val = a + l + 1;
                which = k;
            }
        }
        if (which < 0) {
            fprintf(stderr, "traind import: unknown argument '%s'\n", a);
            imp_usage(stderr);
            return 2;
        }
        char *end;
        long v;
        switch (which) {
        case 0: manifest = val; break;
        case 1: out = val; break;
        case 2:
        case 5:
            errno = 0;
            v = strtol(val, &end, 10);
            if (errno || end == val || *end || (which == 2 && (v < IMPORT_MIN_SIDE || v > IMPORT_MAX_SIZE)) ||
                (which == 5 && (v < 1 || v > 256))) {
                fprintf(stderr, "traind import: %s must be an integer in %s, got '%s'\n", opts[which],
                        which == 2 ? "14..4096" : "1..256", val);
                return 2;
            }
            if (which == 2) o.image_size = (int)v;
            else o.threads = (int)v;
            break;
        case 3:
            if (strcmp(val, "stretch") && strcmp(val, "crop")) {
                fprintf(stderr, "traind import: --resize must be stretch or crop, got '%s'\n", val);
                return 2;
            }
            o.crop = !strcmp(val, "crop");
            break;
        case 4:
            if (strcmp(val, "fail") && strcmp(val, "skip")) {
                fprintf(stderr, "traind import: --on-error must be fail or skip, got '%s'\n", val);
                return 2;
            }
            o.skip = !strcmp(val, "skip");
            break;
        case 6: {
            static char rbuf[16][PATH_MAX];
            if (n_roots >= 16 || !realpath(val, rbuf[n_roots])) {
                fprintf(stderr, "traind import: --dataset-root %s: %s\n", val,
                        n_roots >= 16 ? "at most 16" : strerror(errno));
                return 2;
            }
            roots[n_roots] = rbuf[n_roots];
            n_roots++;
            break;
        }
        case 7:
            if (strcmp(val, "cpu") && strcmp(val, "auto") && strcmp(val, "hardware") && strcmp(val, "cuda")) {
                fprintf(stderr, "traind import: --decoder must be cpu, auto, hardware or cuda, got '%s'\n", val);
                return 2;
            }
            decoder = val;
            break;
        }
    }
    if (!manifest || !*manifest || !out || !*out || o.image_size < 0) {
        fprintf(stderr, "traind import: missing%s%s%s\n", manifest && *manifest ? "" : " --manifest",
                out && *out ? "" : " --out", o.image_size < 0 ? " --image-size" : "");
        imp_usage(stderr);
        return 2;
    }
    o.roots = n_roots ? roots : NULL;
    o.n_roots = n_roots;
    o.progress = imp_cli_progress;
    import_result_t res;
    char err[2048];
    if (strcmp(decoder, "cpu") != 0) {
        o.gpu = jpeg_gpu_open(0, decoder, 4, 64, err, sizeof err);
        if (!o.gpu && strcmp(decoder, "auto") != 0) {
            fprintf(stderr, "traind import: --decoder %s: %s\n", decoder, err);
            return 1;
        }
        const char *pe = getenv("TRAIND_IMPORT_PINNED");
        /* pinning the slots (~400 MB) takes ~0.2 s and saves ~3 ms per 1000 frames (H100): a one-shot
         * import pins them only when asked, the daemon once at its start */
        o.pinned_slots = o.gpu && pe && strcmp(pe, "1") == 0;
        if (o.pinned_slots) import_gpu_reserve(o.gpu);
    }
    int rc = import_to_dir(manifest, out, &o, &res, err, sizeof err);
    if (o.gpu) o.gpu->close(o.gpu);
    if (isatty(2)) fprintf(stderr, "\n");
    if (rc) {
        fprintf(stderr, "traind import: %s\n", err);
        return 1;
    }
    printf("imported %lld of %lld frames (%lld skipped) as %dx%d (%s) into %s in %.2f s (%.0f images/s; decoder %s, "
           "%lld frames on it; %.3f s before: manifest %.3f (read %.3f, parse %.3f, hash %.3f beside), files %.3f, "
           "key %.3f)\n", (long long)res.imported, (long long)res.frames, (long long)res.skipped, o.image_size,
           o.image_size, o.crop ? "crop" : "stretch", out, res.seconds, res.images_per_s, res.decoder,
           (long long)res.gpu_frames, res.prepare_s, res.prepare_parts[0], res.manifest_parts[0],
           res.manifest_parts[1], res.manifest_parts[2], res.prepare_parts[1], res.prepare_parts[2]);
    if (res.gpu_frames > 0)
        printf("the decoder's feeding threads' seconds: reading %.3f, in the decoder %.3f (its calls %.3f, waiting "
               "for the resize and copy back %.3f, copying out %.3f), the rest %.3f\n", res.feed_s[0], res.feed_s[1],
               res.decoder_s[0], res.decoder_s[1], res.decoder_s[2], res.feed_s[2]);
    for (int i = 0; i < res.n_reasons; i++) printf("  skipped: %s\n", res.reasons[i]);
    return 0;
}
