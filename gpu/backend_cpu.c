/* gpu/backend_cpu.c — the CPU backend: plain C plus OpenBLAS's CBLAS.
 *
 * Implements every op of gpu/backend.h for host memory. It is the numerical
 * reference the CUDA kernels are checked against, so it is written to be
 * simple and right first:
 *   - bf16 values are read exactly (bf16 -> fp32 is exact) and every output
 *     stored in DT_BF16 is rounded once with f32_to_bf16 (round to nearest
 *     even), exactly where the GPU stores bf16;
 *   - every matrix product (linear layers, attention's QK^T and PV per batch
 *     and head) is a cblas_sgemm on fp32 operands (converted copies when the
 *     compute dtype is bf16), i.e. fp32 accumulation;
 *   - softmax, GELU and the optimizer run in fp32 (reductions in double where
 *     that is free), the softmax numerically stable with its log-sum-exp saved
 *     for the backward pass; the hand loss is computed in double.
 * LayerNorm statistics and normalization are computed in double (the saved
 * mean/rstd are fp32), so large common offsets in the residual stream do not
 * cost digits.
 *
 * Shared memory for the resident dataset is POSIX shm (shm_open, ftruncate,
 * posix_fallocate so that an oversized request fails instead of SIGBUS-ing,
 * mmap MAP_SHARED). The handle is the shm name "/traind-<pid>-<n>-<random>";
 * daemon/residency.c relies on the "traind-<pid>-" prefix to free the
 * segments of a daemon that died.
 *
 * Scratch: a few growable fp32 buffers per backend (bf16 operands converted
 * for sgemm, attention's T x T scores); a backend is used by one thread.
 *
 * Ops that receive impossible arguments (a dtype the op does not take,
 * negative sizes) are programming errors: the backend prints the op and
 * aborts, as an assert would. Ordinary failures (allocation, sharing, /proc)
 * return NULL / -1 with a message in be->err. */
#define _GNU_SOURCE
#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu/backend.h"
#include "gpu/dataset.h"
#include "gpu/hand_loss.h"

#define CPU_ALIGN 64
#define CPU_NSCRATCH 6

typedef struct {
    float *scr[CPU_NSCRATCH];   /* growable fp32 work buffers, one per slot */
    size_t cap[CPU_NSCRATCH];   /* capacity in floats */
    char name[128];             /* device_name cache */
    unsigned shm_counter;       /* makes shared-memory names unique in this process */
} cpu_impl_t;

/* ---- helpers ----------------------------------------------------------------- */

__attribute__((noreturn, format(printf, 2, 3)))
static void cpu_fatal(const char *op, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "traind: cpu backend: %s: ", op);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

static void cpu_seterr(backend_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cpu_seterr(backend_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, sizeof b->err, fmt, ap);
    va_end(ap);
}

static cpu_impl_t *cpu_impl(backend_t *b) { return (cpu_impl_t *)b->impl; }

/* 64-byte aligned block of at least `bytes` (a zero-byte request gets one line). */
static void *cpu_aligned_alloc(size_t bytes) {
    if (bytes > SIZE_MAX - CPU_ALIGN) return NULL;
    size_t n = bytes == 0 ? CPU_ALIGN : (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN;
    return aligned_alloc(CPU_ALIGN, n);
}

/* Scratch slot `slot` with room for n floats; contents undefined. */
static float *cpu_scratch(backend_t *b, int slot, size_t n) {
    cpu_impl_t *c = cpu_impl(b);
    if (slot < 0 || slot >= CPU_NSCRATCH) cpu_fatal("scratch", "bad slot %d", slot);
    if (n > c->cap[slot]) {
        if (n > SIZE_MAX / sizeof(float)) cpu_fatal("scratch", "size overflow (%zu floats)", n);
        float *p = cpu_aligned_alloc(n * sizeof(float));
        if (!p) cpu_fatal("scratch", "out of memory (%zu bytes)", n * sizeof(float));
        free(c->scr[slot]);
        c->scr[slot] = p;
        c->cap[slot] = n;
    }
    return c->scr[slot];
}

static void cpu_check_fdt(const char *op, dtype_t dt) {
    if (dt != DT_F32 && dt != DT_BF16) cpu_fatal(op, "dtype %s is not fp32 or bf16", dtype_name(dt));
}

static void cpu_check_dims(const char *op, long a, long b2, long c2) {
    if (a < 0 || b2 < 0 || c2 < 0) cpu_fatal(op, "negative size (%ld, %ld, %ld)", a, b2, c2);
}

/* dst[n] f32 = src[n] (f32 or bf16); exact. */
static void cpu_to_f32(float *dst, const void *src, dtype_t dt, size_t n) {
    if (dt == DT_F32) {
        if (dst != src) memcpy(dst, src, n * sizeof(float));
    } else {
        const bf16 *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i]);
    }
}

/* dst[n] (f32 or bf16) = src[n] f32; bf16 rounds to nearest even. */
static void cpu_from_f32(void *dst, dtype_t dt, const float *src, size_t n) {
    if (dt == DT_F32) {
        if (dst != src) memcpy(dst, src, n * sizeof(float));
    } else {
        bf16 *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = f32_to_bf16(src[i]);
    }
}

/* An fp32 view of p[n]: p itself when fp32, else a converted copy in scratch slot. */
static const float *cpu_as_f32(backend_t *b, int slot, const void *p, dtype_t dt, size_t n) {
    if (dt == DT_F32) return p;
    float *s = cpu_scratch(b, slot, n);
    cpu_to_f32(s, p, dt, n);
    return s;
}

/* Contiguous converting copy between any of f32/bf16. */
static void cpu_convert(void *dst, dtype_t ddt, const void *src, dtype_t sdt, size_t n) {
    if (ddt == sdt) {
        memcpy(dst, src, n * dtype_size(ddt));
    } else if (ddt == DT_F32) {
        cpu_to_f32(dst, src, sdt, n);
    } else {
        cpu_from_f32(dst, ddt, src, n);
    }
}

/* ---- lifetime and memory ----------------------------------------------------- */

static void cpu_destroy(backend_t *b) {
    if (!b) return;
    cpu_impl_t *c = cpu_impl(b);
    if (c) {
        for (int i = 0; i < CPU_NSCRATCH; i++) free(c->scr[i]);
        free(c);
    }
    free(b);
}

static void *cpu_alloc(backend_t *b, size_t bytes) {
    void *p = cpu_aligned_alloc(bytes);
    if (!p) cpu_seterr(b, "cpu: cannot allocate %zu bytes: %s", bytes, strerror(errno ? errno : ENOMEM));
    return p;
}

static void cpu_free(backend_t *b, void *p) { free(p); }

static void cpu_upload(backend_t *b, void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) memcpy(dst, src, bytes);
}

static void cpu_copy(backend_t *b, void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) memmove(dst, src, bytes);
}

static void cpu_zero(backend_t *b, void *p, size_t bytes) {
    if (bytes) memset(p, 0, bytes);
}

static void cpu_sync(backend_t *b) {}

/* One unsigned number from a file (cgroup limits); 0 when absent or "max". */
static int cpu_read_u64(const char *path, unsigned long long *v) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int got = fscanf(f, "%llu", v) == 1;
    fclose(f);
    return got;
}

/* The value of KEY in a cgroup memory.stat file ("key value" lines); 0 when absent. */
static unsigned long long cpu_stat_key(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char k[64];
    unsigned long long v, out = 0;
    while (fscanf(f, "%63s %llu", k, &v) == 2)
        if (!strcmp(k, key)) { out = v; break; }
    fclose(f);
    return out;
}

/* Room under one cgroup directory's limit. Usage counts the page cache, which
 * in a busy container sits at the limit although the kernel gives it back on
 * demand; file pages that are not shmem are therefore counted as room (shmem,
 * which holds our own resident datasets, is not reclaimable). 1 with a limit. */
static int cpu_cgroup_dir_room(const char *dir, int v2, unsigned long long *lim, unsigned long long *room) {
    char p[4200];
    unsigned long long l = 0, used = 0;
    if (snprintf(p, sizeof p, "%s/%s", dir, v2 ? "memory.max" : "memory.limit_in_bytes") >= (int)sizeof p ||
        !cpu_read_u64(p, &l) || l == 0)
        return 0;
    if (snprintf(p, sizeof p, "%s/%s", dir, v2 ? "memory.current" : "memory.usage_in_bytes") >= (int)sizeof p ||
        !cpu_read_u64(p, &used))
        return 0;
    if (snprintf(p, sizeof p, "%s/memory.stat", dir) >= (int)sizeof p) return 0;
    unsigned long long file = cpu_stat_key(p, v2 ? "file" : "total_cache");
    unsigned long long shmem = cpu_stat_key(p, v2 ? "shmem" : "total_shmem");
    if (!v2 && !file) { file = cpu_stat_key(p, "cache"); shmem = cpu_stat_key(p, "shmem"); }
    unsigned long long cache = file > shmem ? file - shmem : 0;
    unsigned long long busy = used > cache ? used - cache : 0;
    *lim = l;
    *room = busy < l ? l - busy : 0;
    return 1;
}

int backend_cpu_cgroup_room(const char *cg_root, const char *proc_cgroup,
                            unsigned long long *limit, unsigned long long *room) {
    /* /proc/self/cgroup: "0::/path" for cgroup v2, "N:a,memory,b:/path" for a v1
     * memory hierarchy (which, on a hybrid system, is where the limits are). */
    char rel[4096] = "", rel_v1[4096] = "", line[4096];
    int have_v1 = 0;
    FILE *f = fopen(proc_cgroup, "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = 0;
            char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            if (!c2) continue;
            *c1 = *c2 = 0;
            const char *ctrl = c1 + 1, *path = c2 + 1;
            char ctrls[256];
            snprintf(ctrls, sizeof ctrls, ",%s,", ctrl);
            if (!strcmp(line, "0") && !*ctrl) snprintf(rel, sizeof rel, "%s", path);
            else if (strstr(ctrls, ",memory,")) { snprintf(rel_v1, sizeof rel_v1, "%s", path); have_v1 = 1; }
        }
        fclose(f);
    }
    int v2 = !have_v1;
    if (have_v1) snprintf(rel, sizeof rel, "%s", rel_v1);
    /* From the process's own cgroup up to the mount: every ancestor's limit
     * applies, the tightest wins. */
    char dir[4200];
    if (snprintf(dir, sizeof dir, "%s%s%s", cg_root, v2 ? "" : "/memory", rel) >= (int)sizeof dir) return 0;
    size_t floor_len = strlen(cg_root) + (v2 ? 0 : strlen("/memory"));
    int found = 0;
    for (;;) {
        size_t n = strlen(dir);
        while (n > floor_len && dir[n - 1] == '/') dir[--n] = 0;
        unsigned long long l, r;
        if (cpu_cgroup_dir_room(dir, v2, &l, &r)) {
            if (!found || r < *room) { *room = r; *limit = l; }
            found = 1;
        }
        if (n <= floor_len) break;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < floor_len) break;
        *slash = 0;
    }
    return found;
}

/* MemAvailable / MemTotal of /proc/meminfo, narrowed to the memory cgroup's
 * limit when there is one (see backend_cpu_cgroup_room), since /proc/meminfo
 * shows the host inside a container or a systemd unit with MemoryMax=. */
int backend_host_mem_info(size_t *free_bytes, size_t *total_bytes, char *err, size_t errlen) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) {
        snprintf(err, errlen, "cannot open /proc/meminfo: %s", strerror(errno));
        return -1;
    }
    char line[256];
    unsigned long long avail = 0, total = 0;
    int have_avail = 0, have_total = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) { total = kb * 1024ull; have_total = 1; }
        else if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) { avail = kb * 1024ull; have_avail = 1; }
    }
    fclose(f);
    if (!have_total || !have_avail) {
        snprintf(err, errlen, "/proc/meminfo lacks %s", have_total ? "MemAvailable" : "MemTotal");
        return -1;
    }
    unsigned long long lim = 0, room = 0;
    if (backend_cpu_cgroup_room("/sys/fs/cgroup", "/proc/self/cgroup", &lim, &room) && lim < total) {
        total = lim;
        if (room < avail) avail = room;
    }
    if (avail > total) avail = total;
    if (free_bytes) *free_bytes = (size_t)avail;
    if (total_bytes) *total_bytes = (size_t)total;
    return 0;
}

static int cpu_mem_info(backend_t *b, size_t *free_bytes, size_t *total_bytes) {
    char e[200];
    if (backend_host_mem_info(free_bytes, total_bytes, e, sizeof e)) {
        cpu_seterr(b, "cpu: %s", e);
        return -1;
    }
    return 0;
}

/* The CPU model from /proc/cpuinfo ("model name"), else "cpu". */
static const char *cpu_device_name(backend_t *b) {
    cpu_impl_t *c = cpu_impl(b);
    if (c->name[0]) return c->name;
    snprintf(c->name, sizeof c->name, "cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return c->name;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *colon = strchr(line, ':');
        if (!colon) continue;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        size_t len = strcspn(v, "\r\n");
        while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t')) len--;
        if (len == 0) continue;
        if (len >= sizeof c->name) len = sizeof c->name - 1;
        memcpy(c->name, v, len);
        c->name[len] = '\0';
        break;
    }
    fclose(f);
    return c->name;
}

/* ---- shared memory (POSIX shm) ------------------------------------------------ */

/* A handle is a shm name: "/" followed by 1..200 characters of [A-Za-z0-9._-]. */
static int cpu_handle_ok(const char *h) {
    if (!h || h[0] != '/') return 0;
    size_t n = strlen(h);
    if (n < 2 || n > 201) return 0;
    for (size_t i = 1; i < n; i++) {
        char ch = h[i];
        int good = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                   ch == '.' || ch == '_' || ch == '-';
        if (!good) return 0;
    }
    return 1;
}

/* Maps bytes of the shm object fd (closing fd) read-write and shared; NULL + be->err. */
static void *cpu_map_shared(backend_t *b, int fd, size_t bytes, const char *name) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int merr = errno;
    close(fd);
    if (p == MAP_FAILED) {
        cpu_seterr(b, "cpu: mmap of %zu shared bytes (%s): %s", bytes, name, strerror(merr));
        return NULL;
    }
    return p;
}

static void *cpu_shared_alloc(backend_t *b, size_t bytes, char handle[BACKEND_HANDLE_MAX]) {
    cpu_impl_t *c = cpu_impl(b);
    if (bytes == 0) {
        cpu_seterr(b, "cpu: shared_alloc of 0 bytes");
        return NULL;
    }
    if ((unsigned long long)bytes > (unsigned long long)INT64_MAX) {
        cpu_seterr(b, "cpu: shared_alloc of %zu bytes is too large", bytes);
        return NULL;
    }
    char name[BACKEND_HANDLE_MAX];
    int fd = -1;
    for (int attempt = 0; attempt < 8 && fd < 0; attempt++) {
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
            rnd = (uint32_t)((uintptr_t)&rnd ^ (uint32_t)getpid() * 2654435761u ^ (uint32_t)attempt);
        snprintf(name, sizeof name, "/traind-%ld-%u-%08x", (long)getpid(), c->shm_counter++, rnd);
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0 && errno != EEXIST) {
            cpu_seterr(b, "cpu: shm_open %s: %s", name, strerror(errno));
            return NULL;
        }
    }
    if (fd < 0) {
        cpu_seterr(b, "cpu: shm_open: no free name after 8 attempts");
        return NULL;
    }
    if (ftruncate(fd, (off_t)bytes) != 0) {
        cpu_seterr(b, "cpu: shared memory of %zu bytes (ftruncate %s): %s", bytes, name, strerror(errno));
        close(fd);
        shm_unlink(name);
        return NULL;
    }
    /* Reserve the pages now: a sparse tmpfs file larger than /dev/shm's free
     * space would otherwise end in SIGBUS on first touch, not in an error. */
    int ferr = posix_fallocate(fd, 0, (off_t)bytes);
    if (ferr != 0 && ferr != EOPNOTSUPP && ferr != EINVAL) {
        cpu_seterr(b, "cpu: cannot reserve %zu bytes of shared memory in /dev/shm: %s", bytes, strerror(ferr));
        close(fd);
        shm_unlink(name);
        return NULL;
    }
    void *p = cpu_map_shared(b, fd, bytes, name);
    if (!p) {
        shm_unlink(name);
        return NULL;
    }
    snprintf(handle, BACKEND_HANDLE_MAX, "%s", name);
    return p;
}

static void cpu_shared_free(backend_t *b, void *p, size_t bytes, const char *handle) {
    if (p && bytes) munmap(p, bytes);
    if (handle && cpu_handle_ok(handle)) shm_unlink(handle);
}

static void *cpu_shared_open(backend_t *b, const char *handle, size_t bytes) {
    if (!cpu_handle_ok(handle)) {
        cpu_seterr(b, "cpu: invalid shared memory handle \"%.64s\"", handle ? handle : "(null)");
        return NULL;
    }
    if (bytes == 0) {
        cpu_seterr(b, "cpu: shared_open of 0 bytes");
        return NULL;
    }
    int fd = shm_open(handle, O_RDWR, 0);
    if (fd < 0) {
        cpu_seterr(b, "cpu: shm_open %s: %s", handle, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        cpu_seterr(b, "cpu: fstat %s: %s", handle, strerror(errno));
        close(fd);
        return NULL;
    }
    if (st.st_size < 0 || (unsigned long long)st.st_size < (unsigned long long)bytes) {
        cpu_seterr(b, "cpu: shared memory %s holds %lld bytes, %zu expected", handle,
                   (long long)st.st_size, bytes);
        close(fd);
        return NULL;
    }
    return cpu_map_shared(b, fd, bytes, handle);
}

static void cpu_shared_close(backend_t *b, void *p, size_t bytes) {
    if (p && bytes) munmap(p, bytes);
}

/* ---- data ---------------------------------------------------------------------- */

/* dst[n,3,H,W] (ddt) = (src/255 - mean[c]) / std[c], src u8 [n,H,W,3]; computed in fp32. */
static void cpu_images_from_u8(backend_t *b, void *dst, dtype_t ddt, const uint8_t *src,
                               int n, int H, int W, const float mean[3], const float std[3]) {
    cpu_check_fdt("images_from_u8", ddt);
    cpu_check_dims("images_from_u8", n, H, W);
    size_t hw = (size_t)H * W;
    for (int i = 0; i < n; i++) {
        const uint8_t *s = src + (size_t)i * hw * 3;
        for (int ch = 0; ch < 3; ch++) {
            size_t o = ((size_t)i * 3 + ch) * hw;
            float m = mean[ch], sd = std[ch];
            if (ddt == DT_F32) {
                float *d = (float *)dst + o;
                for (size_t k = 0; k < hw; k++) d[k] = ((float)s[k * 3 + ch] / 255.0f - m) / sd;
            } else {
                bf16 *d = (bf16 *)dst + o;
                for (size_t k = 0; k < hw; k++) d[k] = f32_to_bf16(((float)s[k * 3 + ch] / 255.0f - m) / sd);
            }
        }
    }
}

static void cpu_cast(backend_t *b, void *dst, dtype_t ddt, const void *src, dtype_t sdt, size_t n) {
    if (ddt == sdt) {
        if (dtype_size(ddt) == 0) cpu_fatal("cast", "unknown dtype %d", (int)ddt);
        if (n && dst != src) memmove(dst, src, n * dtype_size(ddt));
        return;
    }
    cpu_check_fdt("cast", ddt);
    cpu_check_fdt("cast", sdt);
    if (dst == src) cpu_fatal("cast", "in-place conversion between %s and %s", dtype_name(sdt), dtype_name(ddt));
    cpu_convert(dst, ddt, src, sdt, n);
}

static void cpu_gather_rows(backend_t *b, void *dst, const void *src, const int32_t *idx,
                            int n, size_t row_bytes) {
    cpu_check_dims("gather_rows", n, 0, 0);
    for (int i = 0; i < n; i++) {
        if (idx[i] < 0) cpu_fatal("gather_rows", "negative row index %d at %d", idx[i], i);
        memcpy((char *)dst + (size_t)i * row_bytes, (const char *)src + (size_t)idx[i] * row_bytes, row_bytes);
    }
}

/* out[Bn,21,3] = aug[b].m · joints[idx[b]] */
static void cpu_aug_joints(backend_t *b, float *out, const float *joints, const int32_t *idx,
                           const aug_sample_t *aug, int Bn) {
    cpu_check_dims("aug_joints", Bn, 0, 0);
    for (int bi = 0; bi < Bn; bi++) {
        int s = idx ? idx[bi] : bi;
        if (s < 0) cpu_fatal("aug_joints", "negative sample index %d at %d", s, bi);
        for (int j = 0; j < HAND_JOINTS; j++)
            aug_joint(aug[bi].m, joints + ((size_t)s * HAND_JOINTS + j) * 3, out + ((size_t)bi * HAND_JOINTS + j) * 3);
    }
}

/* ---- layers -------------------------------------------------------------------- */

static inline float cpu_ld(const void *p, dtype_t dt, size_t i) {
    return dt == DT_BF16 ? bf16_to_f32(((const bf16 *)p)[i]) : ((const float *)p)[i];
}
static inline void cpu_st(void *p, dtype_t dt, size_t i, float v) {
    if (dt == DT_BF16) ((bf16 *)p)[i] = f32_to_bf16(v);
    else ((float *)p)[i] = v;
}

/* The augmented gather: batch row bi is image idx[bi] seen through
 * aug->samples[bi] (gpu/augment_math.h), one output pixel at a time, patch
 * by patch (no divisions in the inner loop). */
static void cpu_im2col_aug(void *out, dtype_t cdt, const void *images, dtype_t idt, const int32_t *idx,
                           int Bn, int H, int W, int p, const im2col_aug_t *aug) {
    int Hp = H / p, Wp = W / p;
    size_t P = (size_t)Hp * Wp, cols = (size_t)3 * p * p, pp = (size_t)p * p, hw = (size_t)H * W;
    for (int bi = 0; bi < Bn; bi++) {
        int img = idx ? idx[bi] : bi;
        if (img < 0) cpu_fatal("im2col", "negative image index %d", img);
        const aug_sample_t *s = &aug->samples[bi];
        if (s->n_erase < 0 || s->n_erase > AUG_MAX_ERASE) cpu_fatal("im2col", "sample %d: %d erase rectangles", bi, s->n_erase);
        float K[9], G[9];
        aug_camera(aug->intrinsics ? aug->intrinsics + (size_t)img * 9 : NULL, H, W, K);
        int mapped = !s->geom || aug_source_map(K, s->minv, G);
        const void *src = (const char *)images + (size_t)img * 3 * hw * dtype_size(idt);
        for (int py = 0; py < Hp; py++)
            for (int px = 0; px < Wp; px++) {
                size_t row = ((size_t)bi * P + (size_t)py * Wp + px) * cols;
                for (int ky = 0; ky < p; ky++)
                    for (int kx = 0; kx < p; kx++) {
                        float v[3];
                        aug_pixel(s, mapped, G, src, idt == DT_BF16, H, W, px * p + kx, py * p + ky, aug->mean,
                                  aug->std, v);
                        size_t col = (size_t)ky * p + kx;
                        for (int c = 0; c < 3; c++) cpu_st(out, cdt, row + c * pp + col, v[c]);
                    }
            }
    }
}

/* out[Bn*P, 3*p*p] (cdt) from images[N,3,H,W] (idt) at idx[Bn]; columns (c, ky, kx). */
static void cpu_im2col(backend_t *b, void *out, dtype_t cdt, const void *images, dtype_t idt,
                       const int32_t *idx, int Bn, int H, int W, int p, const im2col_aug_t *aug) {
    cpu_check_fdt("im2col", cdt);
    cpu_check_fdt("im2col", idt);
    cpu_check_dims("im2col", Bn, H, W);
    if (p <= 0 || p > H || p > W) cpu_fatal("im2col", "patch size %d for a %dx%d image", p, H, W);
    if (aug) {
        if (!aug->samples) cpu_fatal("im2col", "augmentation without its per-sample records");
        cpu_im2col_aug(out, cdt, images, idt, idx, Bn, H, W, p, aug);
        return;
    }
    int Hp = H / p, Wp = W / p;
    size_t P = (size_t)Hp * Wp, cols = (size_t)3 * p * p;
    size_t isz = dtype_size(idt), osz = dtype_size(cdt);
    for (int bi = 0; bi < Bn; bi++) {
        int img = idx ? idx[bi] : bi;
        if (img < 0) cpu_fatal("im2col", "negative image index %d", img);
        const char *base = (const char *)images + (size_t)img * 3 * H * W * isz;
        for (int py = 0; py < Hp; py++) {
            for (int px = 0; px < Wp; px++) {
                char *row = (char *)out + (((size_t)bi * P) + (size_t)py * Wp + px) * cols * osz;
                for (int ch = 0; ch < 3; ch++) {
                    for (int ky = 0; ky < p; ky++) {
                        size_t si = ((size_t)ch * H + (size_t)py * p + ky) * W + (size_t)px * p;
                        size_t di = ((size_t)ch * p + ky) * p;
                        cpu_convert(row + di * osz, cdt, base + si * isz, idt, (size_t)p);
                    }
                }
            }
        }
    }
}

/* out[M,N] (odt) = inp[M,K] @ w[N,K]^T + bias[N]; sgemm in fp32, bias added in fp32, one rounding. */
static void cpu_matmul_fwd(backend_t *b, void *out, dtype_t odt, const void *inp, const void *w,
                           const float *bias, dtype_t cdt, int M, int N, int K) {
    cpu_check_fdt("matmul_fwd", odt);
    cpu_check_fdt("matmul_fwd", cdt);
    cpu_check_dims("matmul_fwd", M, N, K);
    if (M == 0 || N == 0) return;
    size_t MN = (size_t)M * N;
    float *C = odt == DT_F32 ? (float *)out : cpu_scratch(b, 2, MN);
    if (K == 0) {
        memset(C, 0, MN * sizeof(float));
    } else {
        const float *A = cpu_as_f32(b, 0, inp, cdt, (size_t)M * K);
        const float *Wt = cpu_as_f32(b, 1, w, cdt, (size_t)N * K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, Wt, K, 0.0f, C, N);
    }
    if (bias) {
        for (int m = 0; m < M; m++) {
            float *r = C + (size_t)m * N;
            for (int n = 0; n < N; n++) r[n] += bias[n];
        }
    }
    if (odt != DT_F32) cpu_from_f32(out, odt, C, MN);
}

/* acc[N] += the column sums of x[M,N], row by row (the order every bias gradient uses). */
static void cpu_add_colsums(float *acc, const float *x, size_t M, size_t N) {
    for (size_t m = 0; m < M; m++)
        for (size_t n = 0; n < N; n++) acc[n] += x[m * N + n];
}

/* dinp[M,K] = dout @ w; dw[N,K] += dout^T @ inp; dbias[N] += sum_m dout. */
static void cpu_matmul_bwd(backend_t *b, float *dinp, float *dw, float *dbias, const void *dout_g, dtype_t gdt,
                           const void *inp, const void *w, dtype_t cdt, int M, int N, int K) {
    cpu_check_fdt("matmul_bwd", cdt);
    cpu_check_dims("matmul_bwd", M, N, K);
    if (gdt != DT_F32 && (gdt != DT_BF16 || cdt != DT_BF16))
        cpu_fatal("matmul_bwd", "a %s gradient with %s operands", dtype_name(gdt), dtype_name(cdt));
    if (gdt != DT_F32 && dbias) cpu_fatal("matmul_bwd", "a bias gradient from a bf16 dout (its producer sums it)");
    const float *dout = cpu_as_f32(b, 2, dout_g, gdt, (size_t)M * N);
    if (dinp && M > 0 && K > 0) {
        if (N == 0) {
            memset(dinp, 0, (size_t)M * K * sizeof(float));
        } else {
            const float *Wt = cpu_as_f32(b, 1, w, cdt, (size_t)N * K);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, Wt, K,
                        0.0f, dinp, K);
        }
    }
    if (dw && M > 0 && N > 0 && K > 0) {
        const float *A = cpu_as_f32(b, 0, inp, cdt, (size_t)M * K);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dout, N, A, K, 1.0f, dw, K);
    }
    if (dbias) cpu_add_colsums(dbias, dout, (size_t)M, (size_t)N);
}

/* out[N,C] (odt) = (inp - mean) * rstd * w + bias; biased variance, eps inside the sqrt. */
static void cpu_layernorm_fwd(backend_t *b, void *out, dtype_t odt, float *mean, float *rstd,
                              const float *inp, const float *w, const float *bias, int N, int C, float eps) {
    cpu_check_fdt("layernorm_fwd", odt);
    cpu_check_dims("layernorm_fwd", N, C, 0);
    if (N == 0) return;
    if (C == 0) cpu_fatal("layernorm_fwd", "zero channels");
    float *row = odt == DT_F32 ? NULL : cpu_scratch(b, 0, (size_t)C);
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        double s = 0;
        for (int j = 0; j < C; j++) s += x[j];
        double mu = s / C;
        double v = 0;
        for (int j = 0; j < C; j++) {
            double d = x[j] - mu;
            v += d * d;
        }
        double r = 1.0 / sqrt(v / C + (double)eps);
        if (mean) mean[i] = (float)mu;
        if (rstd) rstd[i] = (float)r;
        /* normalized in double: with a large common offset, x - (float)mean would
         * lose the digits that the variance is made of */
        float *y = odt == DT_F32 ? (float *)out + (size_t)i * C : row;
        for (int j = 0; j < C; j++) y[j] = (float)(((double)x[j] - mu) * r * w[j] + bias[j]);
        if (odt != DT_F32) cpu_from_f32((bf16 *)out + (size_t)i * C, odt, row, (size_t)C);
    }
}

/* One row of the residual sum out[C] = res[C] + gamma * x[o .. o+C) (x in xdt):
 * layerscale_fwd's expression, and the input LayerNorm's backward remakes from
 * the two terms — one piece of code for the bits both must agree on. */
static inline void cpu_layerscale_row(float *out, const float *res, const void *x, dtype_t xdt, size_t o,
                                      const float *gamma, int C) {
    for (int j = 0; j < C; j++) out[j] = res[j] + gamma[j] * cpu_ld(x, xdt, o + (size_t)j);
}

/* dinp[N,C] += rstd * (dn - mean(dn) - xhat * mean(dn * xhat)) with dn = dout * w;
 * dw += dout * xhat; db += dout. dinp, dw, db may each be NULL. With lx, the
 * input row is inp + gamma * lx, made by cpu_layerscale_row as the forward made it. */
static void cpu_layernorm_bwd(backend_t *b, float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const void *lx, dtype_t lxdt, const float *gamma,
                              const float *w, const float *mean, const float *rstd, int N, int C) {
    cpu_check_dims("layernorm_bwd", N, C, 0);
    if (lx) cpu_check_fdt("layernorm_bwd", lxdt);
    if (N == 0 || C == 0) return;
    float *sum = lx ? cpu_scratch(b, 1, (size_t)C) : NULL;
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C, *g = dout + (size_t)i * C;
        if (lx) {
            cpu_layerscale_row(sum, x, lx, lxdt, (size_t)i * C, gamma, C);
            x = sum;
        }
        /* the saved fp32 mean, refined by the mean residual in double (zero when
         * the saved mean is exact), so xhat stays right under a large offset */
        double m = mean[i], r = rstd[i], res = 0;
        for (int j = 0; j < C; j++) res += (double)x[j] - m;
        m += res / C;
        double sdn = 0, sdnx = 0;
        for (int j = 0; j < C; j++) {
            double xh = ((double)x[j] - m) * r;
            double dn = (double)g[j] * w[j];
            sdn += dn;
            sdnx += dn * xh;
            if (dw) dw[j] += (float)(g[j] * xh);
            if (db) db[j] += g[j];
        }
        if (!dinp) continue;
        double a = sdn / C, c2 = sdnx / C;
        float *d = dinp + (size_t)i * C;
        for (int j = 0; j < C; j++) {
            double xh = ((double)x[j] - m) * r;
            double dn = (double)g[j] * w[j];
            d[j] += (float)(r * (dn - a - xh * c2));
        }
    }
}

/* Attention, per (batch, head):
 *   S[T,T] = Q K^T / sqrt(HS);  lse[t] = log sum_s exp S[t,s];  P = exp(S - lse);  O = P V.
 * Q, K, V are strided views of qkv[Bn,T,3,NH,HS] (row stride 3*NH*HS). */
static void cpu_attention_fwd(backend_t *b, void *out, float *lse, const void *qkv, dtype_t cdt,
                              int Bn, int T, int NH, int HS) {
    cpu_check_fdt("attention_fwd", cdt);
    cpu_check_dims("attention_fwd", Bn, T, NH);
    cpu_check_dims("attention_fwd", HS, 0, 0);
    if (Bn == 0 || T == 0 || NH == 0 || HS == 0) return;
    size_t ld3 = (size_t)3 * NH * HS, ldo = (size_t)NH * HS;
    size_t nqkv = (size_t)Bn * T * ld3, nout = (size_t)Bn * T * ldo;
    const float *X = cpu_as_f32(b, 0, qkv, cdt, nqkv);
    float *O = cdt == DT_F32 ? (float *)out : cpu_scratch(b, 1, nout);
    float *S = cpu_scratch(b, 2, (size_t)T * T);
    float scale = 1.0f / sqrtf((float)HS);
    for (int bi = 0; bi < Bn; bi++) {
        for (int h = 0; h < NH; h++) {
            const float *Q = X + (size_t)bi * T * ld3 + (size_t)h * HS;
            const float *Kp = Q + ldo, *V = Q + 2 * ldo;
            float *Ob = O + (size_t)bi * T * ldo + (size_t)h * HS;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, scale, Q, (int)ld3, Kp, (int)ld3,
                        0.0f, S, T);
            for (int t = 0; t < T; t++) {
                float *s = S + (size_t)t * T;
                float mx = -INFINITY;
                for (int u = 0; u < T; u++) mx = s[u] > mx ? s[u] : mx;
                double sum = 0;
                for (int u = 0; u < T; u++) {
                    s[u] = expf(s[u] - mx);
                    sum += s[u];
                }
                float inv = (float)(1.0 / sum);
                for (int u = 0; u < T; u++) s[u] *= inv;
                if (lse) lse[((size_t)bi * NH + h) * T + t] = mx + (float)log(sum);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, S, T, V, (int)ld3,
                        0.0f, Ob, (int)ldo);
        }
    }
    if (cdt != DT_F32) cpu_from_f32(out, cdt, O, nout);
}

/* Backward, per (batch, head), with P recomputed from lse:
 *   dV = P^T dO;  dP = dO V^T;  dS = P * (dP - rowsum(P * dP));
 *   dQ = dS K / sqrt(HS);  dK = dS^T Q / sqrt(HS).
 * rowsum(P * dP) equals rowsum(dO * O); it is taken from P and dP so that it
 * does not depend on the rounding of the stored output. The f32 result is then
 * summed into dbias token by token and stored in ddt. */
static void cpu_attention_bwd(backend_t *b, void *dqkv_out, dtype_t ddt, float *dbias, const float *dout,
                              const void *qkv, const void *out, const float *lse, dtype_t cdt,
                              int Bn, int T, int NH, int HS) {
    cpu_check_fdt("attention_bwd", cdt);
    cpu_check_fdt("attention_bwd", ddt);
    cpu_check_dims("attention_bwd", Bn, T, NH);
    cpu_check_dims("attention_bwd", HS, 0, 0);
    if (Bn == 0 || T == 0 || NH == 0 || HS == 0) return;
    size_t ld3 = (size_t)3 * NH * HS, ldo = (size_t)NH * HS, nall = (size_t)Bn * T * ld3;
    const float *X = cpu_as_f32(b, 0, qkv, cdt, nall);
    float *dqkv = ddt == DT_F32 ? (float *)dqkv_out : cpu_scratch(b, 1, nall);
    float *P = cpu_scratch(b, 2, (size_t)T * T);
    float *dP = cpu_scratch(b, 3, (size_t)T * T);
    float scale = 1.0f / sqrtf((float)HS);
    for (int bi = 0; bi < Bn; bi++) {
        for (int h = 0; h < NH; h++) {
            const float *Q = X + (size_t)bi * T * ld3 + (size_t)h * HS;
            const float *Kp = Q + ldo, *V = Q + 2 * ldo;
            const float *dO = dout + (size_t)bi * T * ldo + (size_t)h * HS;
            const float *L = lse + ((size_t)bi * NH + h) * T;
            float *dQ = dqkv + (size_t)bi * T * ld3 + (size_t)h * HS;
            float *dK = dQ + ldo, *dV = dQ + 2 * ldo;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, scale, Q, (int)ld3, Kp, (int)ld3,
                        0.0f, P, T);
            for (int t = 0; t < T; t++) {
                float *p = P + (size_t)t * T;
                for (int u = 0; u < T; u++) p[u] = expf(p[u] - L[t]);
            }
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, P, T, dO, (int)ldo,
                        0.0f, dV, (int)ld3);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, 1.0f, dO, (int)ldo, V, (int)ld3,
                        0.0f, dP, T);
            for (int t = 0; t < T; t++) {
                float *p = P + (size_t)t * T, *dp = dP + (size_t)t * T;
                double d = 0;
                for (int u = 0; u < T; u++) d += (double)p[u] * dp[u];
                float df = (float)d;
                for (int u = 0; u < T; u++) dp[u] = p[u] * (dp[u] - df);   /* dS, in place */
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, scale, dP, T, Kp, (int)ld3,
                        0.0f, dQ, (int)ld3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, scale, dP, T, Q, (int)ld3,
                        0.0f, dK, (int)ld3);
        }
    }
    if (dbias) cpu_add_colsums(dbias, dqkv, (size_t)Bn * T, ld3);
    cpu_from_f32(dqkv_out, ddt, dqkv, nall);
}

static inline float cpu_gelu(float x) { return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); }

static inline float cpu_gelu_grad(float x) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    return 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)) + x * inv_sqrt_2pi * expf(-0.5f * x * x);
}

static void cpu_gelu_fwd(backend_t *b, void *out, dtype_t odt, const void *inp, dtype_t idt, size_t n) {
    cpu_check_fdt("gelu_fwd", odt);
    cpu_check_fdt("gelu_fwd", idt);
    const float *x = cpu_as_f32(b, 0, inp, idt, n);
    if (odt == DT_F32) {
        float *y = out;
        for (size_t i = 0; i < n; i++) y[i] = cpu_gelu(x[i]);
    } else {
        bf16 *y = out;
        for (size_t i = 0; i < n; i++) y[i] = f32_to_bf16(cpu_gelu(x[i]));
    }
}

/* The reference of the fused op: the product into tmp (rounded to odt), then the GELU. */
static void cpu_matmul_gelu_fwd(backend_t *b, void *out, dtype_t odt, void *tmp, const void *inp, const void *w,
                                const float *bias, dtype_t cdt, int M, int N, int K) {
    if (!tmp) cpu_fatal("matmul_gelu_fwd", "no tmp buffer");
    cpu_matmul_fwd(b, tmp, odt, inp, w, bias, cdt, M, N, K);
    cpu_gelu_fwd(b, out, odt, tmp, odt, (size_t)M * N);
}

/* g = dout * gelu'(inp) row by row; stored in ddt, its f32 column sums into dbias. */
static void cpu_gelu_bwd(backend_t *b, void *dinp, dtype_t ddt, float *dbias, const float *dout,
                         const void *inp, dtype_t idt, int M, int N) {
    cpu_check_fdt("gelu_bwd", idt);
    cpu_check_fdt("gelu_bwd", ddt);
    cpu_check_dims("gelu_bwd", M, N, 0);
    const float *x = cpu_as_f32(b, 0, inp, idt, (size_t)M * N);
    float *row = cpu_scratch(b, 1, (size_t)N);
    for (int i = 0; i < M; i++) {
        size_t o = (size_t)i * N;
        for (int j = 0; j < N; j++) row[j] = dout[o + j] * cpu_gelu_grad(x[o + j]);
        if (dbias)
            for (int j = 0; j < N; j++) dbias[j] += row[j];
        cpu_from_f32((char *)dinp + o * dtype_size(ddt), ddt, row, (size_t)N);
    }
}

/* The reference of the fused op: the input gradient of the product into tmp, then GELU'. */
static void cpu_matmul_dgelu(backend_t *b, void *g, dtype_t gdt, float *dbias, float *tmp, const void *dout,
                             const void *w, const void *x, dtype_t cdt, int M, int N, int K) {
    if (!tmp) cpu_fatal("matmul_dgelu", "no tmp buffer");
    cpu_matmul_bwd(b, tmp, NULL, NULL, dout, cdt, NULL, w, cdt, M, N, K);
    if (cdt == DT_BF16)   /* the product's bf16 output, as the CUDA backend (and autocast) has it */
        for (size_t i = 0; i < (size_t)M * K; i++) tmp[i] = bf16_to_f32(f32_to_bf16(tmp[i]));
    cpu_gelu_bwd(b, g, gdt, dbias, tmp, x, cdt, M, K);
}

static void cpu_layerscale_fwd(backend_t *b, float *out, const float *res, const void *x, dtype_t xdt,
                               const float *gamma, int N, int C) {
    cpu_check_fdt("layerscale_fwd", xdt);
    cpu_check_dims("layerscale_fwd", N, C, 0);
    for (int i = 0; i < N; i++) {
        size_t o = (size_t)i * C;
        cpu_layerscale_row(out + o, res + o, x, xdt, o, gamma, C);
    }
}

/* The reference is the composition itself. */
static void cpu_layerscale_layernorm_fwd(backend_t *b, float *out, const float *res, const void *x, dtype_t xdt,
                                         const float *gamma, void *ln, dtype_t odt, float *mean, float *rstd,
                                         const float *w, const float *bias, int N, int C, float eps) {
    cpu_layerscale_fwd(b, out, res, x, xdt, gamma, N, C);
    cpu_layernorm_fwd(b, ln, odt, mean, rstd, out, w, bias, N, C, eps);
}

static void cpu_layerscale_bwd(backend_t *b, void *dx, dtype_t ddt, float *dgamma, float *dbias, const float *dout,
                               const void *x, dtype_t xdt, const float *gamma, int N, int C) {
    cpu_check_fdt("layerscale_bwd", xdt);
    cpu_check_fdt("layerscale_bwd", ddt);
    cpu_check_dims("layerscale_bwd", N, C, 0);
    const float *xf = dgamma ? cpu_as_f32(b, 0, x, xdt, (size_t)N * C) : NULL;
    float *row = cpu_scratch(b, 1, (size_t)C);
    for (int i = 0; i < N; i++) {
        size_t o = (size_t)i * C;
        for (int j = 0; j < C; j++) {
            row[j] = dout[o + j] * gamma[j];
            if (dgamma) dgamma[j] += dout[o + j] * xf[o + j];
            if (dbias) dbias[j] += row[j];
        }
        if (dx) cpu_from_f32((char *)dx + o * dtype_size(ddt), ddt, row, (size_t)C);
    }
}

static void cpu_embed_fwd(backend_t *b, float *x, const float *patches, const float *cls,
                          const float *reg, const float *pos, int Bn, int P, int R, int D) {
    cpu_check_dims("embed_fwd", Bn, P, R);
    cpu_check_dims("embed_fwd", D, 0, 0);
    size_t T = (size_t)1 + R + P;
    for (int bi = 0; bi < Bn; bi++) {
        float *xb = x + (size_t)bi * T * D;
        for (int d = 0; d < D; d++) xb[d] = cls[d] + pos[d];
        for (int r = 0; r < R; r++) memcpy(xb + (size_t)(1 + r) * D, reg + (size_t)r * D, (size_t)D * sizeof(float));
        for (int i = 0; i < P; i++) {
            float *xt = xb + (size_t)(1 + R + i) * D;
            const float *pt = patches + ((size_t)bi * P + i) * D, *pe = pos + (size_t)(1 + i) * D;
            for (int d = 0; d < D; d++) xt[d] = pt[d] + pe[d];
        }
    }
}

static void cpu_embed_bwd(backend_t *b, float *dpatches, float *dcls, float *dreg, float *dpos,
                          const float *dx, int Bn, int P, int R, int D) {
    cpu_check_dims("embed_bwd", Bn, P, R);
    cpu_check_dims("embed_bwd", D, 0, 0);
    size_t T = (size_t)1 + R + P;
    for (int bi = 0; bi < Bn; bi++) {
        const float *g = dx + (size_t)bi * T * D;
        for (int d = 0; d < D; d++) {
            if (dcls) dcls[d] += g[d];
            if (dpos) dpos[d] += g[d];
        }
        if (dreg)
            for (int r = 0; r < R; r++)
                for (int d = 0; d < D; d++) dreg[(size_t)r * D + d] += g[(size_t)(1 + r) * D + d];
        for (int i = 0; i < P; i++) {
            const float *gt = g + (size_t)(1 + R + i) * D;
            if (dpatches) memcpy(dpatches + ((size_t)bi * P + i) * D, gt, (size_t)D * sizeof(float));
            if (dpos)
                for (int d = 0; d < D; d++) dpos[(size_t)(1 + i) * D + d] += gt[d];
        }
    }
}

static void cpu_token_slice(backend_t *b, void *out, const void *x, dtype_t dt, int Bn, int T, int D, int t) {
    cpu_check_dims("token_slice", Bn, T, D);
    if (t < 0 || t >= T) cpu_fatal("token_slice", "token %d outside [0,%d)", t, T);
    size_t es = dtype_size(dt), row = (size_t)D * es;
    if (es == 0) cpu_fatal("token_slice", "unknown dtype %d", (int)dt);
    for (int bi = 0; bi < Bn; bi++)
        memcpy((char *)out + (size_t)bi * row, (const char *)x + ((size_t)bi * T + t) * row, row);
}

static void cpu_token_scatter_add(backend_t *b, float *dx, const float *dout, int Bn, int T, int D, int t) {
    cpu_check_dims("token_scatter_add", Bn, T, D);
    if (t < 0 || t >= T) cpu_fatal("token_scatter_add", "token %d outside [0,%d)", t, T);
    for (int bi = 0; bi < Bn; bi++) {
        float *d = dx + ((size_t)bi * T + t) * D;
        const float *g = dout + (size_t)bi * D;
        for (int k = 0; k < D; k++) d[k] += g[k];
    }
}

/* ---- loss and optimizer ---------------------------------------------------------- */

/* SPEC §4 hand loss: a sample's terms are gpu/hand_loss.h's, as in the CUDA kernel;
 * everything in double, outputs rounded to fp32 once. */
static void cpu_hand_loss(backend_t *b, hand_loss_t *o, float *dpred, float *dconf,
                          const float *pred, const float *conf_logit, const float *joints,
                          const uint8_t *valid, const uint8_t *has_hand, const int32_t *idx, int Bn,
                          const hand_norm_t *norm) {
    cpu_check_dims("hand_loss", Bn, 0, 0);
    memset(o, 0, sizeof *o);
    if (dpred) memset(dpred, 0, (size_t)Bn * HAND_COORDS * sizeof(float));
    if (dconf) memset(dconf, 0, (size_t)Bn * HAND_JOINTS * sizeof(float));
    if (Bn == 0) return;

    /* pass 1: which joints take part, their weights and the number of pairs */
    double sw = 0, nj = 0, npair = 0;
    for (int bi = 0; bi < Bn; bi++) {
        int s = idx ? idx[bi] : bi;
        if (s < 0) cpu_fatal("hand_loss", "negative sample index %d", s);
        if (has_hand && !has_hand[s]) continue;
        int nv = hand_sample_count(valid ? valid + (size_t)s * HAND_JOINTS : NULL, &sw);
        nj += nv;
        npair += (double)nv * (nv - 1) / 2;
    }
    double nj_here = nj;
    if (norm) {   /* a data-parallel rank: divide by the global batch's normalizers */
        sw = norm->sw;
        nj = norm->nj;
        npair = norm->npair;
        if (nj_here == 0) return;
    }
    if (nj == 0) return;

    /* pass 2: each sample's terms and gradients (gpu/hand_loss.h, as the CUDA kernel) */
    double *gp = calloc((size_t)Bn * HAND_COORDS, sizeof(double));
    if (!gp) cpu_fatal("hand_loss", "out of memory");
    hand_terms_t t = {0, 0, 0};
    for (int bi = 0; bi < Bn; bi++) {
        int s = idx ? idx[bi] : bi;
        if (has_hand && !has_hand[s]) continue;
        hand_loss_sample(&t, gp + (size_t)bi * HAND_COORDS, dconf ? dconf + (size_t)bi * HAND_JOINTS : NULL,
                         pred + (size_t)bi * HAND_COORDS, joints + (size_t)s * HAND_COORDS,
                         valid ? valid + (size_t)s * HAND_JOINTS : NULL, conf_logit + (size_t)bi * HAND_JOINTS,
                         sw, nj, npair);
    }
    double joint = t.joint / sw, pair = npair > 0 ? t.pair / npair : 0, conf = t.conf / nj;
    o->joint = (float)joint;
    o->pair = (float)pair;
    o->conf = (float)conf;
    o->total = (float)(joint + HAND_W_PAIR * pair + HAND_W_CONF * conf);
    o->valid = (float)nj_here;
    if (dpred)
        for (size_t i = 0; i < (size_t)Bn * HAND_COORDS; i++) dpred[i] = (float)gp[i];
    free(gp);
}

/* Four interleaved double partial sums combined in a fixed order: deterministic for n. */
static double cpu_sumsq(backend_t *b, const float *x, size_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += (double)x[i] * x[i];
        s1 += (double)x[i + 1] * x[i + 1];
        s2 += (double)x[i + 2] * x[i + 2];
        s3 += (double)x[i + 3] * x[i + 3];
    }
    for (; i < n; i++) s0 += (double)x[i] * x[i];
    return (s0 + s1) + (s2 + s3);
}

static void cpu_scale(backend_t *b, float *x, float s, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

static void cpu_adamw(backend_t *b, float *params, void *pc, dtype_t cdt, const float *grads,
                      float *m, float *v, const adamw_seg_t *segs, int nsegs,
                      float beta1, float beta2, float eps, int t, float gscale) {
    if (t < 1) cpu_fatal("adamw", "step %d (must be >= 1)", t);
    if (pc) cpu_check_fdt("adamw", cdt);
    float bc1 = (float)(1.0 - pow((double)beta1, t));
    float bc2 = (float)(1.0 - pow((double)beta2, t));
    for (int s = 0; s < nsegs; s++) {
        const adamw_seg_t *sg = &segs[s];
        float lr = sg->lr, wd = sg->wd;
        for (size_t i = sg->off; i < sg->off + sg->n; i++) {
            float g = grads[i] * gscale;
            float mi = beta1 * m[i] + (1.0f - beta1) * g;
            float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
            m[i] = mi;
            v[i] = vi;
            float mhat = mi / bc1, vhat = vi / bc2;
            float p = params[i];
            p -= lr * (mhat / (sqrtf(vhat) + eps) + wd * p);
            params[i] = p;
            if (pc) {
                if (cdt == DT_F32) ((float *)pc)[i] = p;
                else ((bf16 *)pc)[i] = f32_to_bf16(p);
            }
        }
    }
}

/* out = {sum, sum of squares, min, max} over finite values, then {nan, inf, zero} counts.
 * min = max = 0 when no value is finite. */
static void cpu_stats(backend_t *b, double out[7], const void *x, dtype_t dt, size_t n) {
    double sum = 0, sq = 0, mn = INFINITY, mx = -INFINITY, nn = 0, ni = 0, nz = 0;
    for (size_t i = 0; i < n; i++) {
        double v;
        switch (dt) {
        case DT_F32: v = ((const float *)x)[i]; break;
        case DT_BF16: v = bf16_to_f32(((const bf16 *)x)[i]); break;
        case DT_U8: v = ((const uint8_t *)x)[i]; break;
        case DT_I32: v = ((const int32_t *)x)[i]; break;
        default: cpu_fatal("stats", "unknown dtype %d", (int)dt);
        }
        if (isnan(v)) { nn++; continue; }
        if (isinf(v)) { ni++; continue; }
        if (v == 0) nz++;
        sum += v;
        sq += v * v;
        if (v < mn) mn = v;
        if (v > mx) mx = v;
    }
    if (mn > mx) mn = mx = 0;
    out[0] = sum; out[1] = sq; out[2] = mn; out[3] = mx;
    out[4] = nn; out[5] = ni; out[6] = nz;
}

/* ---- construction ------------------------------------------------------------------ */

void backend_cpu_share_cores(int ranks) {
    if (ranks <= 1 || getenv("OPENBLAS_NUM_THREADS")) return;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    int t = n > 0 ? (int)(n / ranks) : 1;
    openblas_set_num_threads(t < 1 ? 1 : t);
}

backend_t *backend_cpu_create(char *err, size_t errlen) {
    backend_t *b = calloc(1, sizeof *b);
    cpu_impl_t *c = calloc(1, sizeof *c);
    if (!b || !c) {
        free(b);
        free(c);
        if (err && errlen) snprintf(err, errlen, "cpu backend: out of memory");
        return NULL;
    }
    b->name = "cpu";
    b->device = 0;
    b->impl = c;
    b->destroy = cpu_destroy;
    b->alloc = cpu_alloc;
    b->free = cpu_free;
    b->host_alloc = cpu_alloc;
    b->host_free = cpu_free;
    b->upload = cpu_upload;
    b->download = cpu_upload;
    b->copy = cpu_copy;
    b->zero = cpu_zero;
    b->sync = cpu_sync;
    b->mem_info = cpu_mem_info;
    b->device_name = cpu_device_name;
    b->shared_alloc = cpu_shared_alloc;
    b->shared_free = cpu_shared_free;
    b->shared_open = cpu_shared_open;
    b->shared_close = cpu_shared_close;
    b->images_from_u8 = cpu_images_from_u8;
    b->cast = cpu_cast;
    b->gather_rows = cpu_gather_rows;
    b->im2col = cpu_im2col;
    b->aug_joints = cpu_aug_joints;
    b->matmul_fwd = cpu_matmul_fwd;
    b->matmul_gelu_fwd = cpu_matmul_gelu_fwd;
    b->matmul_dgelu = cpu_matmul_dgelu;
    b->matmul_bwd = cpu_matmul_bwd;
    b->layernorm_fwd = cpu_layernorm_fwd;
    b->layernorm_bwd = cpu_layernorm_bwd;
    b->attention_fwd = cpu_attention_fwd;
    b->attention_bwd = cpu_attention_bwd;
    b->gelu_fwd = cpu_gelu_fwd;
    b->gelu_bwd = cpu_gelu_bwd;
    b->layerscale_fwd = cpu_layerscale_fwd;
    b->layerscale_layernorm_fwd = cpu_layerscale_layernorm_fwd;
    b->layerscale_bwd = cpu_layerscale_bwd;
    b->embed_fwd = cpu_embed_fwd;
    b->embed_bwd = cpu_embed_bwd;
    b->token_slice = cpu_token_slice;
    b->token_scatter_add = cpu_token_scatter_add;
    b->hand_loss = cpu_hand_loss;
    b->sumsq = cpu_sumsq;
    b->scale = cpu_scale;
    b->adamw = cpu_adamw;
    b->stats = cpu_stats;
    return b;
}
