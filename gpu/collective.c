/* gpu/collective.c — the rendezvous segment, the cpu collectives through it,
 * the gradient buckets, and the dispatch to NCCL on cuda (see collective.h).
 *
 * Segment layout (one POSIX shm object, created by the daemon, mapped by every
 * rank): coll_hdr_t, then on cpu `world` data slots of COLL_CPU_CHUNK floats
 * each. The barrier is a central counter + generation word in the segment,
 * waited on with a shared futex (not FUTEX_PRIVATE: the waiters are other
 * processes); a waiter wakes every 50 ms to look at the abort word, and every
 * 0.5 s at its peers' processes (/proc/<pid>/stat: gone, or a zombie = died).
 * The last rank to arrive resets the counter before it bumps the generation,
 * so no rank of the next barrier can count in before the reset.
 */
#define _GNU_SOURCE
#include "gpu/collective.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#include "store/errbuf.h"
#include "store/mono.h"

#define COLL_MAGIC 0x6c6c6f63646e7274ull   /* "trndcoll" */
#define COLL_VERSION 1

typedef struct {
    uint64_t magic;
    uint32_t version, world;
    uint64_t chunk;                       /* floats per data slot (0: no data area, cuda) */
    _Atomic uint32_t abort;               /* 0, else the reason in why is final */
    _Atomic uint32_t why_lock;            /* first writer of why wins */
    char why[512];
    _Atomic uint32_t bar_count, bar_gen;  /* the barrier */
    _Atomic uint32_t joined;              /* ranks that have registered */
    _Atomic int32_t pid[COLL_MAX_WORLD];  /* each rank's pid, 0 until it joins */
    _Atomic uint32_t uid_ready;           /* cuda: rank 0 wrote uid */
    unsigned char uid[COLL_UID_BYTES];
    double host[COLL_MAX_WORLD][COLL_HOST_MAX];   /* coll_allreduce_host slots */
} coll_hdr_t;

#define COLL_DATA_OFF (((sizeof(coll_hdr_t)) + 4095) & ~(size_t)4095)

struct coll {
    backend_t *be;
    int rank, world;
    int cuda;
    coll_hdr_t *h;               /* NULL for a world of one */
    size_t map_bytes;
    float *slot0;                /* cpu data slots: slot r at slot0 + r * chunk */
    double timeout_s;
    /* buckets */
    float *bk_buf;
    size_t bk_n, bk_done_lo, bk_elems;   /* [bk_done_lo, bk_n) launched */
    int bk_launched, bk_failed;
    char bk_err[512];
#ifdef TRAIND_CUDA
    cu_nccl_t *nccl;
    pthread_t watcher;
    int watcher_live;
    _Atomic int watcher_stop;
#endif
};

static size_t coll_seg_bytes(int cpu, int world) {
    return COLL_DATA_OFF + (cpu ? (size_t)world * COLL_CPU_CHUNK * sizeof(float) : 0);
}

/* ---- the daemon's side ------------------------------------------------------------------- */
int coll_segment_create(const char *be_name, int world, const char *job, char name[COLL_NAME_MAX], char *err,
                        size_t errlen) {
    if (world < 2 || world > COLL_MAX_WORLD)
        return errbuf_set(err, errlen, "collectives: %d ranks (2..%d)", world, COLL_MAX_WORLD);
    int cpu = strcmp(be_name, "cpu") == 0;
    size_t bytes = coll_seg_bytes(cpu, world);
    int fd = -1;
    for (int attempt = 0; attempt < 8 && fd < 0; attempt++) {
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
            rnd = (uint32_t)getpid() * 2654435761u ^ (uint32_t)attempt ^ (uint32_t)(uintptr_t)&rnd;
        snprintf(name, COLL_NAME_MAX, "/traind-%ld-coll-%.32s-%08x", (long)getpid(), job, rnd);
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0 && errno != EEXIST) return errbuf_set(err, errlen, "collectives: shm_open %s: %s", name, strerror(errno));
    }
    if (fd < 0) return errbuf_set(err, errlen, "collectives: shm_open: no free name after 8 attempts");
    int ferr = ftruncate(fd, (off_t)bytes) ? errno : posix_fallocate(fd, 0, (off_t)bytes);
    if (ferr && ferr != EOPNOTSUPP && ferr != EINVAL) {
        close(fd);
        shm_unlink(name);
        return errbuf_set(err, errlen, "collectives: %zu bytes of shared memory in /dev/shm: %s", bytes, strerror(ferr));
    }
    coll_hdr_t *h = mmap(NULL, sizeof *h, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (h == MAP_FAILED) {
        shm_unlink(name);
        return errbuf_set(err, errlen, "collectives: mmap %s: %s", name, strerror(errno));
    }
    memset(h, 0, sizeof *h);
    h->version = COLL_VERSION;
    h->world = (uint32_t)world;
    h->chunk = cpu ? COLL_CPU_CHUNK : 0;
    atomic_thread_fence(memory_order_release);
    h->magic = COLL_MAGIC;   /* last: a rank that sees it sees the rest */
    munmap(h, sizeof *h);
    return 0;
}

/* Records why (the first reason wins) and raises the abort word. */
static void hdr_abort(coll_hdr_t *h, const char *why) {
    uint32_t z = 0;
    if (atomic_compare_exchange_strong(&h->why_lock, &z, 1)) {
        snprintf(h->why, sizeof h->why, "%s", why && *why ? why : "aborted");
        atomic_store(&h->abort, 1);
        syscall(SYS_futex, &h->bar_gen, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    }
}

void coll_segment_abort(const char *name, const char *why) {
    if (!name || !*name) return;
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0) return;
    struct stat st;
    coll_hdr_t *h = fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeof *h
                    ? mmap(NULL, sizeof *h, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    close(fd);
    if (h == MAP_FAILED) return;
    if (h->magic == COLL_MAGIC) hdr_abort(h, why);
    munmap(h, sizeof *h);
}

void coll_segment_unlink(const char *name) {
    if (name && *name) shm_unlink(name);
}

/* ---- waiting ---------------------------------------------------------------------------------- */
/* 1 when process pid is gone or a zombie (it died; its parent has not reaped it yet). */
static int coll_pid_dead(pid_t pid) {
    if (pid <= 0) return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH) return 1;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char *p = strrchr(buf, ')');   /* the command name may hold spaces and parens */
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* -1 with the reason when the job is aborted, a peer died, or the wait timed out. */
static int coll_check(coll_t *c, double t0, double *last_peer_check, char *err, size_t errlen) {
    coll_hdr_t *h = c->h;
    if (atomic_load(&h->abort)) return errbuf_set(err, errlen, "collectives aborted: %s", h->why);
    double now = mono_now();
    if (now - *last_peer_check >= 0.5) {
        *last_peer_check = now;
        for (int r = 0; r < c->world; r++) {
            pid_t p = atomic_load(&h->pid[r]);
            if (r != c->rank && coll_pid_dead(p)) {
                char why[160];
                snprintf(why, sizeof why, "rank %d (pid %d) exited", r, (int)p);
                hdr_abort(h, why);
                return errbuf_set(err, errlen, "collectives aborted: %s", h->why);
            }
        }
    }
    if (now - t0 > c->timeout_s) {
        char why[160];
        snprintf(why, sizeof why, "rank %d waited %.0f s for the others (TRAIND_COLL_TIMEOUT_S)", c->rank, c->timeout_s);
        hdr_abort(h, why);
        return errbuf_set(err, errlen, "collectives: %s", why);
    }
    return 0;
}

static int coll_bar(coll_t *c, char *err, size_t errlen) {
    coll_hdr_t *h = c->h;
    if (atomic_load(&h->abort)) return errbuf_set(err, errlen, "collectives aborted: %s", h->why);
    uint32_t gen = atomic_load(&h->bar_gen);
    if (atomic_fetch_add(&h->bar_count, 1) == (uint32_t)c->world - 1) {
        atomic_store(&h->bar_count, 0);
        atomic_fetch_add(&h->bar_gen, 1);
        syscall(SYS_futex, &h->bar_gen, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
        return 0;
    }
    double t0 = mono_now(), peer = t0;
    for (int spin = 0; atomic_load(&h->bar_gen) == gen; spin++) {
        if (spin < 64) { sched_yield(); continue; }
        struct timespec ts = {0, 50 * 1000 * 1000};
        syscall(SYS_futex, &h->bar_gen, FUTEX_WAIT, gen, &ts, NULL, 0);
        if (atomic_load(&h->bar_gen) != gen) break;
        if (coll_check(c, t0, &peer, err, errlen)) return -1;
    }
    return 0;
}

/* ---- opening --------------------------------------------------------------------------------- */
static double coll_timeout(void) {
    const char *t = getenv("TRAIND_COLL_TIMEOUT_S");
    double v = t ? atof(t) : 0;
    return v > 0 ? v : 1800.0;
}

coll_t *coll_open_single(backend_t *be) {
    coll_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->be = be;
    c->world = 1;
    c->timeout_s = coll_timeout();
    return c;
}

#ifdef TRAIND_CUDA
/* cuda: a rank blocked in NCCL cannot look at the abort word itself; this
 * thread does, and ends the process when the job was aborted (the driver
 * frees its device memory; the daemon records the rank that failed first). */
static void *coll_watch(void *arg) {
    coll_t *c = arg;
    while (!atomic_load(&c->watcher_stop)) {
        if (atomic_load(&c->h->abort)) {
            fprintf(stderr, "traind worker (rank %d): collectives aborted: %s: exiting\n", c->rank, c->h->why);
            _exit(1);
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}
#endif

coll_t *coll_open(backend_t *be, const char *segment, int rank, int world, char *err, size_t errlen) {
    if (world == 1) return coll_open_single(be);
    if (world < 2 || world > COLL_MAX_WORLD || rank < 0 || rank >= world) {
        errbuf_set(err, errlen, "collectives: rank %d of %d", rank, world);
        return NULL;
    }
    if (!segment || strncmp(segment, "/traind-", 8) != 0 || strchr(segment + 1, '/')) {
        errbuf_set(err, errlen, "collectives: bad segment name");
        return NULL;
    }
    int cpu = strcmp(be->name, "cpu") == 0;
    int fd = shm_open(segment, O_RDWR, 0);
    if (fd < 0) {
        errbuf_set(err, errlen, "collectives: shm_open %s: %s", segment, strerror(errno));
        return NULL;
    }
    size_t bytes = coll_seg_bytes(cpu, world);
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size != bytes) {
        close(fd);
        errbuf_set(err, errlen, "collectives: segment %s is not a %s segment of %d ranks", segment, be->name, world);
        return NULL;
    }
    void *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        errbuf_set(err, errlen, "collectives: mmap %s: %s", segment, strerror(errno));
        return NULL;
    }
    coll_hdr_t *h = map;
    atomic_thread_fence(memory_order_acquire);
    if (h->magic != COLL_MAGIC || h->version != COLL_VERSION || h->world != (uint32_t)world ||
        h->chunk != (cpu ? COLL_CPU_CHUNK : 0)) {
        munmap(map, bytes);
        errbuf_set(err, errlen, "collectives: segment %s does not match (%d ranks, %s)", segment, world, be->name);
        return NULL;
    }
    coll_t *c = calloc(1, sizeof *c);
    if (!c) {
        munmap(map, bytes);
        errbuf_set(err, errlen, "out of memory");
        return NULL;
    }
    c->be = be;
    c->rank = rank;
    c->world = world;
    c->cuda = !cpu;
    c->h = h;
    c->map_bytes = bytes;
    c->slot0 = cpu ? (float *)((char *)map + COLL_DATA_OFF) : NULL;
    c->timeout_s = coll_timeout();
    int32_t zero = 0;
    if (!atomic_compare_exchange_strong(&h->pid[rank], &zero, (int32_t)getpid())) {
        errbuf_set(err, errlen, "collectives: rank %d has joined already (pid %d)", rank, (int)atomic_load(&h->pid[rank]));
        coll_close(c);
        return NULL;
    }
    atomic_fetch_add(&h->joined, 1);
    if (!cpu) {
#ifdef TRAIND_CUDA
        if (rank == 0) {
            if (cu_nccl_unique_id(h->uid, err, errlen)) {
                hdr_abort(h, err);
                coll_close(c);
                return NULL;
            }
            atomic_store(&h->uid_ready, 1);
        }
#else
        errbuf_set(err, errlen, "collectives: backend %s has no collectives in this build", be->name);
        hdr_abort(h, err);
        coll_close(c);
        return NULL;
#endif
    }
    /* everyone is here (rank 0's id is written before it arrives) */
    if (coll_bar(c, err, errlen)) {
        coll_close(c);
        return NULL;
    }
#ifdef TRAIND_CUDA
    if (!cpu) {
        if (!atomic_load(&h->uid_ready)) {
            errbuf_set(err, errlen, "collectives: rank 0 published no NCCL id");
            coll_close(c);
            return NULL;
        }
        if (pthread_create(&c->watcher, NULL, coll_watch, c) == 0) c->watcher_live = 1;
        c->nccl = cu_nccl_open(be, h->uid, rank, world, err, errlen);
        if (!c->nccl) {
            coll_abort(c, err);
            coll_close(c);
            return NULL;
        }
    }
#endif
    return c;
}

void coll_close(coll_t *c) {
    if (!c) return;
#ifdef TRAIND_CUDA
    if (c->watcher_live) {
        atomic_store(&c->watcher_stop, 1);
        pthread_join(c->watcher, NULL);
    }
    if (c->nccl) cu_nccl_close(c->nccl, c->h && atomic_load(&c->h->abort));
#endif
    if (c->h) munmap(c->h, c->map_bytes);
    free(c);
}

int coll_rank(const coll_t *c) { return c->rank; }
int coll_world(const coll_t *c) { return c->world; }

void coll_abort(coll_t *c, const char *why) {
    if (!c || !c->h) return;
    char msg[600];
    snprintf(msg, sizeof msg, "rank %d failed: %s", c->rank, why && *why ? why : "error");
    hdr_abort(c->h, msg);
}

/* ---- cpu collectives ---------------------------------------------------------------------------- */
static int cpu_allreduce(coll_t *c, float *buf, size_t n, char *err, size_t errlen) {
    const size_t C = c->h->chunk;
    const int W = c->world;
    for (size_t off = 0; off < n; off += C) {
        size_t m = n - off < C ? n - off : C;
        memcpy(c->slot0 + (size_t)c->rank * C, buf + off, m * sizeof(float));
        if (coll_bar(c, err, errlen)) return -1;
        size_t lo = m * (size_t)c->rank / (size_t)W, hi = m * (size_t)(c->rank + 1) / (size_t)W;
        float *s0 = c->slot0;
        for (int r = 1; r < W; r++) {   /* in rank order: ((x0 + x1) + x2) ... for every element */
            const float *sr = c->slot0 + (size_t)r * C;
            for (size_t i = lo; i < hi; i++) s0[i] += sr[i];
        }
        if (coll_bar(c, err, errlen)) return -1;
        memcpy(buf + off, c->slot0, m * sizeof(float));
        if (coll_bar(c, err, errlen)) return -1;   /* slot 0 is read by all before the next chunk */
    }
    return 0;
}

static int cpu_broadcast(coll_t *c, void *buf, size_t bytes, int root, char *err, size_t errlen) {
    const size_t C = c->h->chunk * sizeof(float);
    for (size_t off = 0; off < bytes; off += C) {
        size_t m = bytes - off < C ? bytes - off : C;
        if (c->rank == root) memcpy(c->slot0, (char *)buf + off, m);
        if (coll_bar(c, err, errlen)) return -1;
        if (c->rank != root) memcpy((char *)buf + off, c->slot0, m);
        if (coll_bar(c, err, errlen)) return -1;
    }
    return 0;
}

static int cpu_gather_host(coll_t *c, const void *mine, const size_t *bytes, void *out, char *err, size_t errlen) {
    const size_t C = c->h->chunk * sizeof(float);
    size_t at = 0;
    for (int r = 0; r < c->world; r++) {
        if (r == 0) {
            if (c->rank == 0 && bytes[0]) memcpy(out, mine, bytes[0]);
            at += bytes[0];
            continue;
        }
        for (size_t off = 0; off < bytes[r]; off += C) {
            size_t m = bytes[r] - off < C ? bytes[r] - off : C;
            if (c->rank == r) memcpy(c->slot0, (const char *)mine + off, m);
            if (coll_bar(c, err, errlen)) return -1;
            if (c->rank == 0) memcpy((char *)out + at + off, c->slot0, m);
            if (coll_bar(c, err, errlen)) return -1;
        }
        at += bytes[r];
    }
    return 0;
}

/* Host doubles through the header's slots (cpu; cuda sums them with NCCL). */
static int cpu_allreduce_host(coll_t *c, double *buf, size_t n, char *err, size_t errlen) {
    for (size_t off = 0; off < n; off += COLL_HOST_MAX) {
        size_t m = n - off < COLL_HOST_MAX ? n - off : COLL_HOST_MAX;
        memcpy(c->h->host[c->rank], buf + off, m * sizeof(double));
        if (coll_bar(c, err, errlen)) return -1;
        for (size_t i = 0; i < m; i++) {
            double s = c->h->host[0][i];
            for (int r = 1; r < c->world; r++) s += c->h->host[r][i];
            buf[off + i] = s;
        }
        if (coll_bar(c, err, errlen)) return -1;
    }
    return 0;
}

/* ---- the interface ------------------------------------------------------------------------------- */
int coll_allreduce(coll_t *c, float *buf, size_t n, char *err, size_t errlen) {
    if (c->world == 1 || n == 0) return 0;
#ifdef TRAIND_CUDA
    if (c->cuda) return cu_nccl_allreduce(c->nccl, buf, n, err, errlen);
#endif
    return cpu_allreduce(c, buf, n, err, errlen);
}

int coll_wait(coll_t *c, char *err, size_t errlen) {
    if (c->world == 1) return 0;
#ifdef TRAIND_CUDA
    if (c->cuda) return cu_nccl_wait(c->nccl, err, errlen);
#endif
    return atomic_load(&c->h->abort) ? errbuf_set(err, errlen, "collectives aborted: %s", c->h->why) : 0;
}

int coll_broadcast(coll_t *c, void *buf, size_t bytes, int root, char *err, size_t errlen) {
    if (c->world == 1 || bytes == 0) return 0;
    if (root < 0 || root >= c->world) return errbuf_set(err, errlen, "collectives: broadcast root %d", root);
#ifdef TRAIND_CUDA
    if (c->cuda) return cu_nccl_broadcast(c->nccl, buf, bytes, root, err, errlen);
#endif
    return cpu_broadcast(c, buf, bytes, root, err, errlen);
}

int coll_allreduce_host(coll_t *c, double *buf, size_t n, char *err, size_t errlen) {
    if (c->world == 1 || n == 0) return 0;
#ifdef TRAIND_CUDA
    if (c->cuda) return cu_nccl_allreduce_host(c->nccl, buf, n, err, errlen);
#endif
    return cpu_allreduce_host(c, buf, n, err, errlen);
}

int coll_gather_host(coll_t *c, const void *mine, const size_t *bytes, void *out, char *err, size_t errlen) {
    if (c->world == 1) {
        if (bytes[0] && out != mine) memcpy(out, mine, bytes[0]);
        return 0;
    }
#ifdef TRAIND_CUDA
    if (c->cuda) return cu_nccl_gather_host(c->nccl, mine, bytes, out, err, errlen);
#endif
    return cpu_gather_host(c, mine, bytes, out, err, errlen);
}

int coll_barrier(coll_t *c, char *err, size_t errlen) {
    if (c->world == 1) return 0;
#ifdef TRAIND_CUDA
    if (c->cuda) {
        double z = 0;
        return cu_nccl_allreduce_host(c->nccl, &z, 1, err, errlen);
    }
#endif
    return coll_bar(c, err, errlen);
}

/* ---- gradient buckets --------------------------------------------------------------------------------- */
static size_t coll_bucket_elems(void) {
    const char *e = getenv("TRAIND_COLL_BUCKET_MB");
    double mb = e ? atof(e) : 0;
    if (!(mb > 0)) mb = 25;
    size_t n = (size_t)(mb * 1024 * 1024 / sizeof(float));
    return n ? n : 1;
}

void coll_buckets_begin(coll_t *c, float *grads, size_t n) {
    c->bk_buf = grads;
    c->bk_n = n;
    c->bk_done_lo = n;
    c->bk_elems = coll_bucket_elems();
    c->bk_launched = 0;
    c->bk_failed = 0;
    c->bk_err[0] = 0;
}

/* Launches every whole bucket at or above `from` (buckets are cut from the end). */
void coll_buckets_ready(coll_t *c, size_t from) {
    if (c->world == 1 || c->bk_failed) return;
    while (c->bk_done_lo > 0) {
        size_t hi = c->bk_done_lo, lo = hi > c->bk_elems ? hi - c->bk_elems : 0;
        if (lo < from) break;
        if (coll_allreduce(c, c->bk_buf + lo, hi - lo, c->bk_err, sizeof c->bk_err)) {
            c->bk_failed = 1;
            return;
        }
        c->bk_done_lo = lo;
        c->bk_launched++;
    }
}

int coll_buckets_finish(coll_t *c, char *err, size_t errlen) {
    if (c->world == 1) return 0;
    coll_buckets_ready(c, 0);
    if (c->bk_failed) return errbuf_set(err, errlen, "%s", c->bk_err);
    return coll_wait(c, err, errlen);
}

int coll_buckets_launched(const coll_t *c) { return c->bk_launched; }
