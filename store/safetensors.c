/* store/safetensors.c — safetensors reader (validating, pread-based) and
 * writer (atomic replace). Format and checks: see safetensors.h. */
#define _GNU_SOURCE
#include "store/safetensors.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/fsutil.h"
#include "store/errbuf.h"

/* ---- dtypes ------------------------------------------------------------------ */
static const struct { const char *name; size_t size; } st_dtypes[ST_NDTYPES] = {
    [ST_BOOL] = {"BOOL", 1},   [ST_U8] = {"U8", 1},       [ST_I8] = {"I8", 1},
    [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
    [ST_U16] = {"U16", 2},     [ST_I16] = {"I16", 2},     [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2},   [ST_U32] = {"U32", 4},     [ST_I32] = {"I32", 4},
    [ST_F32] = {"F32", 4},     [ST_U64] = {"U64", 8},     [ST_I64] = {"I64", 8},
    [ST_F64] = {"F64", 8},
};

const char *st_dtype_name(st_dtype_t dt) {
    return (unsigned)dt < ST_NDTYPES ? st_dtypes[dt].name : "?";
}

size_t st_dtype_size(st_dtype_t dt) {
    return (unsigned)dt < ST_NDTYPES ? st_dtypes[dt].size : 0;
}

int st_dtype_from_name(const char *name) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (strcmp(name, st_dtypes[i].name) == 0) return i;
    return -1;
}

int st_dtype_to_dt(st_dtype_t dt) {
    switch (dt) {
    case ST_F32: return DT_F32;
    case ST_BF16: return DT_BF16;
    case ST_U8: return DT_U8;
    case ST_I32: return DT_I32;
    default: return -1;
    }
}

st_dtype_t st_dtype_from_dt(dtype_t dt) {
    switch (dt) {
    case DT_F32: return ST_F32;
    case DT_BF16: return ST_BF16;
    case DT_U8: return ST_U8;
    case DT_I32: return ST_I32;
    }
    assert(0 && "unknown dtype_t");
    return ST_F32;
}

/* numel and nbytes of a shape with overflow checks; -1 on overflow. */
static int st_sizes(st_dtype_t dt, int rank, const int64_t *shape, int64_t *numel, size_t *nbytes) {
    uint64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0) return -1;
        if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return -1;
    }
    uint64_t b;
    if (n > (uint64_t)INT64_MAX || __builtin_mul_overflow(n, (uint64_t)st_dtype_size(dt), &b)) return -1;
    if (b > (uint64_t)SIZE_MAX) return -1;
    *numel = (int64_t)n;
    *nbytes = (size_t)b;
    return 0;
}

void st_shape_str(char *buf, size_t len, int rank, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int i = 0; i < rank && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

/* ---- reader ------------------------------------------------------------------ */
struct st_file {
    char *path;
    int fd;
    uint64_t size, data_start;
    int n;
    st_tensor_t *t;        /* [n] by offset */
    int *by_name;          /* [n] indices of t sorted by name */
    int nmeta;
    char **meta_k, **meta_v;
};

static int st_cmp_offset(const void *a, const void *b) {
    const st_tensor_t *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int st_cmp_name_idx(const void *a, const void *b, void *ctx) {
    const st_file_t *f = ctx;
    return strcmp(f->t[*(const int *)a].name, f->t[*(const int *)b].name);
}

static st_file_t *st_open_fd(int fd, const char *path, char *err, size_t errlen);

st_file_t *st_open_in(const char *dir, const char *name, char *err, size_t errlen) {
    char path[4096];
    if (fs_join(path, sizeof path, dir, name) != 0) {
        errbuf_set(err, errlen, "%s/%s: path too long", dir, name);
        return NULL;
    }
    int fd = fs_open_under(dir, name, FS_REG, err, errlen);
    return fd < 0 ? NULL : st_open_fd(fd, path, err, errlen);
}

st_file_t *st_open_at(int dirfd, const char *name, const char *dir, char *err, size_t errlen) {
    char path[4096];
    if (fs_join(path, sizeof path, dir, name) != 0) {
        errbuf_set(err, errlen, "%s/%s: path too long", dir, name);
        return NULL;
    }
    int fd = fs_open_beneath(dirfd, name, FS_REG, path, err, errlen);
    return fd < 0 ? NULL : st_open_fd(fd, path, err, errlen);
}

void st_close(st_file_t *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    for (int i = 0; i < f->n; i++) free((char *)f->t[i].name);
    free(f->t);
    free(f->by_name);
    for (int i = 0; i < f->nmeta; i++) {
        free(f->meta_k[i]);
        free(f->meta_v[i]);
    }
    free(f->meta_k);
    free(f->meta_v);
    free(f->path);
    free(f);
}

static int st_pread_all(int fd, void *dst, size_t n, uint64_t off) {
    char *p = dst;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) {
            errno = 0;  /* end of file: caller reports truncation */
            return -1;
        }
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Parse one tensor entry of the header into t (name set by caller). */
static int st_parse_entry(const char *path, const char *name, json_t *v, st_tensor_t *t,
                          uint64_t *begin, uint64_t *end, char *err, size_t errlen) {
    if (!json_is_object(v))
        return errbuf_set(err, errlen, "%s: tensor \"%s\": entry is not a JSON object", path, name);
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return errbuf_set(err, errlen, "%s: tensor \"%s\": unknown key \"%s\"", path, name, k);
    }
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd))
        return errbuf_set(err, errlen, "%s: tensor \"%s\": missing or non-string \"dtype\"", path, name);
    int dt = st_dtype_from_name(json_string_value(jd));
    if (dt < 0)
        return errbuf_set(err, errlen, "%s: tensor \"%s\": unknown dtype \"%s\"", path, name, json_string_value(jd));
    t->dtype = (st_dtype_t)dt;
    if (!json_is_array(js))
        return errbuf_set(err, errlen, "%s: tensor \"%s\": missing or non-array \"shape\"", path, name);
    if (json_array_size(js) > ST_MAX_RANK)
        return errbuf_set(err, errlen, "%s: tensor \"%s\": rank %zu exceeds the maximum %d", path, name,
                          json_array_size(js), ST_MAX_RANK);
    t->rank = (int)json_array_size(js);
    for (int i = 0; i < t->rank; i++) {
        json_t *d = json_array_get(js, (size_t)i);
        if (!json_is_integer(d))
            return errbuf_set(err, errlen, "%s: tensor \"%s\": shape[%d] is not an integer", path, name, i);
        json_int_t dv = json_integer_value(d);
        if (dv < 0)
            return errbuf_set(err, errlen, "%s: tensor \"%s\": shape[%d] = %lld is negative", path, name, i,
                              (long long)dv);
        t->shape[i] = (int64_t)dv;
    }
    char sh[160];
    st_shape_str(sh, sizeof sh, t->rank, t->shape);
    if (st_sizes(t->dtype, t->rank, t->shape, &t->numel, &t->nbytes) != 0)
        return errbuf_set(err, errlen, "%s: tensor \"%s\": size of %s %s overflows", path, name,
                          st_dtype_name(t->dtype), sh);
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return errbuf_set(err, errlen, "%s: tensor \"%s\": \"data_offsets\" must be [begin, end] integers", path, name);
    json_int_t b = json_integer_value(json_array_get(jo, 0)), e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < b)
        return errbuf_set(err, errlen, "%s: tensor \"%s\": bad data_offsets [%lld,%lld]", path, name,
                          (long long)b, (long long)e);
    if ((uint64_t)(e - b) != (uint64_t)t->nbytes)
        return errbuf_set(err, errlen, "%s: tensor \"%s\": data_offsets [%lld,%lld] hold %lld bytes but %s %s needs %zu",
                          path, name, (long long)b, (long long)e, (long long)(e - b), st_dtype_name(t->dtype), sh,
                          t->nbytes);
    *begin = (uint64_t)b;
    *end = (uint64_t)e;
    return 0;
}

st_file_t *st_open(const char *path, char *err, size_t errlen) {
    /* O_NONBLOCK: a FIFO must not block the caller (st_open_fd refuses it) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        errbuf_set(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return st_open_fd(fd, path, err, errlen);
}

/* Takes fd (closed on failure and by st_close). Messages never quote the
 * file's bytes: a file that is not safetensors at all (a token, a password
 * file) must not show up in an error. */
static st_file_t *st_open_fd(int fd, const char *path, char *err, size_t errlen) {
    st_file_t *f = calloc(1, sizeof *f);
    json_t *root = NULL;
    char *hdr = NULL;
    if (!f || !(f->path = strdup(path))) {
        free(f);
        close(fd);
        errbuf_set(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    f->fd = fd;
    struct stat sb;
    if (fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        errbuf_set(err, errlen, "%s: not a regular file", path);
        goto fail;
    }
    f->size = (uint64_t)sb.st_size;
    if (f->size < 8) {
        errbuf_set(err, errlen, "%s: truncated: %llu bytes, too short for the 8-byte header length", path,
                   (unsigned long long)f->size);
        goto fail;
    }
    uint8_t lb[8];
    if (st_pread_all(f->fd, lb, 8, 0) != 0) {
        errbuf_set(err, errlen, "%s: read: %s", path, errno ? strerror(errno) : "file shrank");
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lb[i];
    /* the 8 bytes are not shown: in a file that is not safetensors they are its content */
    if (hlen > ST_MAX_HEADER) {
        errbuf_set(err, errlen, "%s: the header length exceeds the limit of %u bytes (not a safetensors file?)", path,
                   ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > f->size - 8) {
        errbuf_set(err, errlen, "%s: truncated: the header length points beyond the end of the file (%llu bytes)", path,
                   (unsigned long long)f->size);
        goto fail;
    }
    if (hlen < 2) {
        errbuf_set(err, errlen, "%s: the header length is too short for a JSON object", path);
        goto fail;
    }
    f->data_start = 8 + hlen;
    hdr = malloc(hlen);
    if (!hdr) {
        errbuf_set(err, errlen, "%s: out of memory for the header", path);
        goto fail;
    }
    if (st_pread_all(f->fd, hdr, hlen, 8) != 0) {
        errbuf_set(err, errlen, "%s: read header: %s", path, errno ? strerror(errno) : "file shrank");
        goto fail;
    }
    json_error_t je;
    root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        /* jansson's text quotes the bytes near the error: not shown */
        if (json_error_code(&je) == json_error_duplicate_key)
            errbuf_set(err, errlen, "%s: header: duplicate tensor name (at byte %d of the header)", path, je.position);
        else
            errbuf_set(err, errlen, "%s: header is not valid JSON (at byte %d of the header)", path, je.position);
        goto fail;
    }
    if (!json_is_object(root)) {
        errbuf_set(err, errlen, "%s: header is not a JSON object", path);
        goto fail;
    }
    size_t nkeys = json_object_size(root);
    json_t *meta = json_object_get(root, "__metadata__");
    size_t ntens = nkeys - (meta ? 1 : 0);
    f->t = calloc(ntens ? ntens : 1, sizeof *f->t);
    f->by_name = calloc(ntens ? ntens : 1, sizeof *f->by_name);
    if (!f->t || !f->by_name) {
        errbuf_set(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    if (meta) {
        if (!json_is_object(meta)) {
            errbuf_set(err, errlen, "%s: __metadata__ is not a JSON object", path);
            goto fail;
        }
        size_t nm = json_object_size(meta);
        f->meta_k = calloc(nm ? nm : 1, sizeof(char *));
        f->meta_v = calloc(nm ? nm : 1, sizeof(char *));
        if (!f->meta_k || !f->meta_v) {
            errbuf_set(err, errlen, "%s: out of memory", path);
            goto fail;
        }
        const char *k;
        json_t *v;
        json_object_foreach(meta, k, v) {
            if (!json_is_string(v)) {
                errbuf_set(err, errlen, "%s: __metadata__ \"%s\" is not a string", path, k);
                goto fail;
            }
            f->meta_k[f->nmeta] = strdup(k);
            f->meta_v[f->nmeta] = strdup(json_string_value(v));
            f->nmeta++;
            if (!f->meta_k[f->nmeta - 1] || !f->meta_v[f->nmeta - 1]) {
                errbuf_set(err, errlen, "%s: out of memory", path);
                goto fail;
            }
        }
        /* sort keys (values follow): iterate pairs through an index */
        for (int i = 1; i < f->nmeta; i++)
            for (int j = i; j > 0 && strcmp(f->meta_k[j - 1], f->meta_k[j]) > 0; j--) {
                char *tk = f->meta_k[j], *tv = f->meta_v[j];
                f->meta_k[j] = f->meta_k[j - 1];
                f->meta_v[j] = f->meta_v[j - 1];
                f->meta_k[j - 1] = tk;
                f->meta_v[j - 1] = tv;
            }
    }
    uint64_t data_len = f->size - f->data_start;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "__metadata__") == 0) continue;
        st_tensor_t *t = &f->t[f->n];
        uint64_t b = 0, e = 0;
        if (st_parse_entry(path, k, v, t, &b, &e, err, errlen) != 0) goto fail;
        if (e > data_len) {
            errbuf_set(err, errlen, "%s: tensor \"%s\": data_offsets [%llu,%llu] run past the end of the data (%llu bytes; truncated file?)",
                       path, k, (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_len);
            goto fail;
        }
        t->offset = f->data_start + b;
        t->name = strdup(k);
        if (!t->name) {
            errbuf_set(err, errlen, "%s: out of memory", path);
            goto fail;
        }
        f->n++;
    }
    /* The byte ranges must tile the data area: sorted by offset, each begins
     * where the previous ended, the last ends at the end of the file. */
    qsort(f->t, (size_t)f->n, sizeof *f->t, st_cmp_offset);
    uint64_t pos = f->data_start;
    for (int i = 0; i < f->n; i++) {
        st_tensor_t *t = &f->t[i];
        uint64_t b = t->offset - f->data_start, e = b + t->nbytes;
        if (t->offset < pos) {
            const st_tensor_t *p = &f->t[i - 1];
            uint64_t pb = p->offset - f->data_start;
            errbuf_set(err, errlen, "%s: tensor \"%s\": data_offsets [%llu,%llu] overlap tensor \"%s\" [%llu,%llu]", path,
                       t->name, (unsigned long long)b, (unsigned long long)e, p->name, (unsigned long long)pb,
                       (unsigned long long)(pb + p->nbytes));
            goto fail;
        }
        if (t->offset > pos) {
            errbuf_set(err, errlen, "%s: tensor \"%s\": gap of %llu bytes before its data_offsets [%llu,%llu]", path,
                       t->name, (unsigned long long)(t->offset - pos), (unsigned long long)b, (unsigned long long)e);
            goto fail;
        }
        pos = t->offset + t->nbytes;
    }
    if (pos != f->size) {
        errbuf_set(err, errlen, "%s: %llu bytes after the last tensor's data are not covered by any tensor", path,
                   (unsigned long long)(f->size - pos));
        goto fail;
    }
    for (int i = 0; i < f->n; i++) f->by_name[i] = i;
    qsort_r(f->by_name, (size_t)f->n, sizeof(int), st_cmp_name_idx, f);
    json_decref(root);
    free(hdr);
    return f;
fail:
    json_decref(root);
    free(hdr);
    st_close(f);
    return NULL;
}

const char *st_path(const st_file_t *f) { return f->path; }
uint64_t st_file_size(const st_file_t *f) { return f->size; }
uint64_t st_data_start(const st_file_t *f) { return f->data_start; }
int st_count(const st_file_t *f) { return f->n; }

const st_tensor_t *st_get(const st_file_t *f, int i) {
    return (i >= 0 && i < f->n) ? &f->t[i] : NULL;
}

const st_tensor_t *st_find(const st_file_t *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const st_tensor_t *t = &f->t[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const char *st_meta(const st_file_t *f, const char *key) {
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_k[i], key) == 0) return f->meta_v[i];
    return NULL;
}

int st_meta_count(const st_file_t *f) { return f->nmeta; }
const char *st_meta_key(const st_file_t *f, int i) { return (i >= 0 && i < f->nmeta) ? f->meta_k[i] : NULL; }
const char *st_meta_value(const st_file_t *f, int i) { return (i >= 0 && i < f->nmeta) ? f->meta_v[i] : NULL; }

int st_read_range(st_file_t *f, const st_tensor_t *t, uint64_t byte_off, size_t nbytes, void *dst,
                  char *err, size_t errlen) {
    if (byte_off > t->nbytes || nbytes > t->nbytes - byte_off)
        return errbuf_set(err, errlen, "%s: tensor \"%s\": read of [%llu,+%zu) outside its %zu bytes", f->path, t->name,
                       (unsigned long long)byte_off, nbytes, t->nbytes);
    if (nbytes == 0) return 0;
    if (st_pread_all(f->fd, dst, nbytes, t->offset + byte_off) != 0)
        return errbuf_set(err, errlen, "%s: tensor \"%s\": read: %s", f->path, t->name,
                          errno ? strerror(errno) : "unexpected end of file (file truncated since it was opened)");
    return 0;
}

int st_read(st_file_t *f, const st_tensor_t *t, void *dst, char *err, size_t errlen) {
    return st_read_range(f, t, 0, t->nbytes, dst, err, errlen);
}

static float st_f16_to_f32(uint16_t h) {
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
    if (e == 0) {
        if (m == 0) {
            u = s;
        } else {                           /* subnormal: normalize */
            int sh = 0;
            while (!(m & 0x400)) { m <<= 1; sh++; }
            m &= 0x3ff;
            u = s | ((uint32_t)(127 - 15 + 1 - sh) << 23) | (m << 13);
        }
    } else if (e == 31) {
        u = s | 0x7f800000u | (m << 13);
    } else {
        u = s | ((e + 127 - 15) << 23) | (m << 13);
    }
    float x;
    memcpy(&x, &u, 4);
    return x;
}

int st_read_f32(st_file_t *f, const st_tensor_t *t, float *dst, char *err, size_t errlen) {
    if (t->dtype == ST_F32) return st_read(f, t, dst, err, errlen);
    if (t->dtype != ST_BF16 && t->dtype != ST_F16 && t->dtype != ST_F64)
        return errbuf_set(err, errlen, "%s: tensor \"%s\": dtype %s is not a floating type", f->path, t->name,
                          st_dtype_name(t->dtype));
    size_t es = st_dtype_size(t->dtype);
    enum { CHUNK = 1 << 16 };              /* elements per read */
    void *buf = malloc(CHUNK * es);
    if (!buf) return errbuf_set(err, errlen, "%s: out of memory", f->path);
    for (int64_t i = 0; i < t->numel; i += CHUNK) {
        size_t n = (size_t)((t->numel - i) < CHUNK ? (t->numel - i) : CHUNK);
        if (st_read_range(f, t, (uint64_t)i * es, n * es, buf, err, errlen) != 0) {
            free(buf);
            return -1;
        }
        for (size_t j = 0; j < n; j++) {
            float x;
            if (t->dtype == ST_BF16) {
                uint16_t h;
                memcpy(&h, (char *)buf + 2 * j, 2);
                x = bf16_to_f32(h);
            } else if (t->dtype == ST_F16) {
                uint16_t h;
                memcpy(&h, (char *)buf + 2 * j, 2);
                x = st_f16_to_f32(h);
            } else {
                double d;
                memcpy(&d, (char *)buf + 8 * j, 8);
                x = (float)d;
            }
            dst[i + (int64_t)j] = x;
        }
    }
    free(buf);
    return 0;
}

/* ---- writer ------------------------------------------------------------------ */
typedef struct {
    char *name;
    st_dtype_t dtype;
    int rank;
    int64_t shape[ST_MAX_RANK];
    size_t nbytes;
    const void *data;
    void *owned;          /* copy made by st_writer_add, freed with the writer */
} st_wentry_t;

struct st_writer {
    st_wentry_t *e;
    int n, cap;
    json_t *meta;
    char error[512];
};

st_writer_t *st_writer_new(void) {
    st_writer_t *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->meta = json_object();
    if (!w->meta) {
        free(w);
        return NULL;
    }
    return w;
}

void st_writer_free(st_writer_t *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].owned);
    }
    free(w->e);
    json_decref(w->meta);
    free(w);
}

const char *st_writer_error(const st_writer_t *w) { return w->error; }

__attribute__((format(printf, 2, 3)))
static int st_wfail(st_writer_t *w, const char *fmt, ...) {
    if (!w->error[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->error, sizeof w->error, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int st_writer_add_impl(st_writer_t *w, const char *name, st_dtype_t dt, int rank, const int64_t *shape,
                              const void *data, int copy) {
    if (!name || !name[0]) return st_wfail(w, "tensor with an empty name");
    if (strncmp(name, "__", 2) == 0) return st_wfail(w, "tensor \"%s\": names starting with \"__\" are reserved", name);
    if ((unsigned)dt >= ST_NDTYPES) return st_wfail(w, "tensor \"%s\": bad dtype %d", name, (int)dt);
    if (rank < 0 || rank > ST_MAX_RANK) return st_wfail(w, "tensor \"%s\": rank %d not in 0..%d", name, rank, ST_MAX_RANK);
    for (int i = 0; i < rank; i++)
        if (shape[i] < 0) return st_wfail(w, "tensor \"%s\": negative dim %lld", name, (long long)shape[i]);
    int64_t numel;
    size_t nbytes;
    if (st_sizes(dt, rank, shape, &numel, &nbytes) != 0) return st_wfail(w, "tensor \"%s\": size overflows", name);
    if (nbytes > 0 && !data) return st_wfail(w, "tensor \"%s\": no data", name);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0) return st_wfail(w, "tensor \"%s\" added twice", name);
    if (w->n == w->cap) {
        int nc = w->cap ? 2 * w->cap : 16;
        st_wentry_t *ne = realloc(w->e, (size_t)nc * sizeof *ne);
        if (!ne) return st_wfail(w, "out of memory");
        w->e = ne;
        w->cap = nc;
    }
    st_wentry_t *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return st_wfail(w, "out of memory");
    e->dtype = dt;
    e->rank = rank;
    for (int i = 0; i < rank; i++) e->shape[i] = shape[i];
    e->nbytes = nbytes;
    if (copy && nbytes > 0) {
        e->owned = malloc(nbytes);
        if (!e->owned) {
            free(e->name);
            return st_wfail(w, "tensor \"%s\": out of memory for %zu bytes", name, nbytes);
        }
        memcpy(e->owned, data, nbytes);
        e->data = e->owned;
    } else {
        e->data = data;
    }
    w->n++;
    return 0;
}

int st_writer_add(st_writer_t *w, const char *name, st_dtype_t dt, int rank, const int64_t *shape,
                  const void *data) {
    return st_writer_add_impl(w, name, dt, rank, shape, data, 1);
}

int st_writer_add_ref(st_writer_t *w, const char *name, st_dtype_t dt, int rank, const int64_t *shape,
                      const void *data) {
    return st_writer_add_impl(w, name, dt, rank, shape, data, 0);
}

int st_writer_meta(st_writer_t *w, const char *key, const char *value) {
    if (!key || !value) return st_wfail(w, "metadata with a NULL key or value");
    json_t *s = json_string(value);
    if (!s) return st_wfail(w, "metadata \"%s\": value is not valid UTF-8", key);
    if (json_object_set_new(w->meta, key, s) != 0) return st_wfail(w, "metadata \"%s\": bad key", key);
    return 0;
}

/* Data order: larger elements first (so every tensor stays aligned to its
 * element size once the data area is 8-aligned), then by name. */
static int st_cmp_wdata(const void *a, const void *b) {
    const st_wentry_t *x = *(st_wentry_t *const *)a, *y = *(st_wentry_t *const *)b;
    size_t sx = st_dtype_size(x->dtype), sy = st_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int st_cmp_wname(const void *a, const void *b) {
    const st_wentry_t *x = *(st_wentry_t *const *)a, *y = *(st_wentry_t *const *)b;
    return strcmp(x->name, y->name);
}

static int st_write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t r = write(fd, c, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = EIO;
            return -1;
        }
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

int st_writer_write(st_writer_t *w, const char *path, char *err, size_t errlen) {
    if (w->error[0]) return errbuf_set(err, errlen, "%s: %s", path, w->error);
    int rc = -1, fd = -1;
    char *hdr = NULL, tmp[4096];
    tmp[0] = 0;
    json_t *root = json_object();
    st_wentry_t **byname = malloc(((size_t)w->n + 1) * sizeof *byname);
    st_wentry_t **bydata = malloc(((size_t)w->n + 1) * sizeof *bydata);
    uint64_t *offs = calloc((size_t)w->n + 1, sizeof *offs);
    if (!root || !byname || !bydata || !offs) {
        errbuf_set(err, errlen, "%s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < w->n; i++) byname[i] = bydata[i] = &w->e[i];
    qsort(bydata, (size_t)w->n, sizeof *bydata, st_cmp_wdata);
    qsort(byname, (size_t)w->n, sizeof *byname, st_cmp_wname);
    uint64_t pos = 0;
    for (int i = 0; i < w->n; i++) {
        offs[bydata[i] - w->e] = pos;
        pos += bydata[i]->nbytes;
    }
    if (json_object_size(w->meta) > 0 && json_object_set(root, "__metadata__", w->meta) != 0) {
        errbuf_set(err, errlen, "%s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < w->n; i++) {
        const st_wentry_t *e = byname[i];
        uint64_t b = offs[e - w->e];
        json_t *shape = json_array();
        for (int d = 0; d < e->rank && shape; d++) json_array_append_new(shape, json_integer(e->shape[d]));
        json_t *ent = json_pack("{s:s, s:o, s:[I,I]}", "dtype", st_dtype_name(e->dtype), "shape", shape,
                                "data_offsets", (json_int_t)b, (json_int_t)(b + e->nbytes));
        if (!ent || json_object_set_new(root, e->name, ent) != 0) {
            errbuf_set(err, errlen, "%s: tensor \"%s\": cannot build the header", path, e->name);
            goto out;
        }
    }
    hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!hdr) {
        errbuf_set(err, errlen, "%s: cannot serialize the header", path);
        goto out;
    }
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;   /* 8 + padded is a multiple of 8 */
    if (padded > ST_MAX_HEADER) {
        errbuf_set(err, errlen, "%s: header of %zu bytes exceeds the limit", path, padded);
        goto out;
    }
    char *h2 = realloc(hdr, padded + 1);
    if (!h2) {
        errbuf_set(err, errlen, "%s: out of memory", path);
        goto out;
    }
    hdr = h2;
    memset(hdr + hl, ' ', padded - hl);
    uint8_t lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (uint8_t)((uint64_t)padded >> (8 * i));

    /* temporary file in the destination directory */
    const char *slash = strrchr(path, '/');
    int r;
    if (slash)
        r = snprintf(tmp, sizeof tmp, "%.*s/.%s.tmp.XXXXXX", (int)(slash - path), path, slash + 1);
    else
        r = snprintf(tmp, sizeof tmp, ".%s.tmp.XXXXXX", path);
    if (r < 0 || (size_t)r >= sizeof tmp) {
        tmp[0] = 0;
        errbuf_set(err, errlen, "%s: path too long", path);
        goto out;
    }
    fd = fs_create_temp(tmp, FS_FILE_MODE);
    if (fd < 0) {
        errbuf_set(err, errlen, "%s: cannot create a temporary file %s: %s", path, tmp, strerror(errno));
        tmp[0] = 0;
        goto out;
    }
    /* errors name the file asked for: its temporary name is gone with it */
    if (st_write_all(fd, lb, 8) != 0 || st_write_all(fd, hdr, padded) != 0) {
        errbuf_set(err, errlen, "%s: write: %s", path, strerror(errno));
        goto out;
    }
    for (int i = 0; i < w->n; i++) {
        if (bydata[i]->nbytes && st_write_all(fd, bydata[i]->data, bydata[i]->nbytes) != 0) {
            errbuf_set(err, errlen, "%s: write tensor \"%s\": %s", path, bydata[i]->name, strerror(errno));
            goto out;
        }
    }
    if (fsync(fd) != 0) {
        errbuf_set(err, errlen, "%s: fsync: %s", path, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        errbuf_set(err, errlen, "%s: close: %s", path, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        errbuf_set(err, errlen, "rename %s -> %s: %s", tmp, path, strerror(errno));
        goto out;
    }
    tmp[0] = 0;
    {
        char dir[4096];
        if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        else strcpy(dir, ".");
        if (!dir[0]) strcpy(dir, "/");
        if (fs_fsync_dir(dir, err, errlen) != 0) goto out;
    }
    rc = 0;
out:
    if (fd >= 0) close(fd);
    if (tmp[0]) unlink(tmp);
    free(hdr);
    free(byname);
    free(bydata);
    free(offs);
    json_decref(root);
    return rc;
}
