/* gpu/dataset.c — putting a dataset directory into backend memory: the
 * streaming loader (reader thread, two pinned staging buffers, conversion
 * on the device) and the view of a loaded layout. The format itself (scan,
 * validation, layout) is store/dataset.c's. */
#define _GNU_SOURCE
#include "gpu/dataset.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/errbuf.h"
#include "store/fsutil.h"
#include "store/par.h"
#include "store/safetensors.h"

void dataset_view(dataset_t *out, void *base, const ds_layout_t *l) {
    char *b = base;
    memset(out, 0, sizeof *out);
    out->n = l->n;
    out->first = 0;
    out->held = l->n;
    out->h = l->h;
    out->w = l->w;
    memcpy(out->mean, l->mean, sizeof out->mean);
    memcpy(out->std, l->std, sizeof out->std);
    out->image_dtype = DT_BF16;
    out->images = b + l->off_images;
    out->joints = (float *)(void *)(b + l->off_joints);
    out->joints_valid = (uint8_t *)(b + l->off_valid);
    out->has_hand = (uint8_t *)(b + l->off_has_hand);
    out->intrinsics = (l->fields & DS_F_INTRINSICS) ? (float *)(void *)(b + l->off_intrinsics) : NULL;
    out->object_poses = (l->fields & DS_F_OBJECT_POSES) ? (float *)(void *)(b + l->off_object_poses) : NULL;
    out->object_ids = (l->fields & DS_F_OBJECT_IDS) ? (int32_t *)(void *)(b + l->off_object_ids) : NULL;
    out->num_objects = (l->fields & DS_F_NUM_OBJECTS) ? (int32_t *)(void *)(b + l->off_num_objects) : NULL;
}

/* ---- loading ----------------------------------------------------------------- */
static size_t ds_stage_bytes = (size_t)32 << 20;   /* per staging buffer; two of them */

void dataset_set_stage_bytes(size_t bytes) { ds_stage_bytes = bytes ? bytes : ((size_t)32 << 20); }

typedef struct {
    backend_t *be;
    const ds_layout_t *l;
    char *base;
    uint64_t done, total;
    dataset_progress_fn cb;
    void *ud;
    int64_t masked;            /* joints with a non-finite coordinate, made invalid */
} ds_loader_t;

/* Joints [c][21][3] with a NaN/Inf coordinate become invalid: coordinates 0,
 * mask 0 in valid [c][21] (a writable host copy). Returns how many. */
static int64_t ds_mask_nonfinite(float *joints, uint8_t *valid, int64_t c) {
    int64_t bad = 0;
    for (int64_t i = 0; i < c * HAND_JOINTS; i++) {
        float *p = joints + 3 * i;
        if (isfinite(p[0]) && isfinite(p[1]) && isfinite(p[2])) continue;
        p[0] = p[1] = p[2] = 0.0f;
        valid[i] = 0;
        bad++;
    }
    return bad;
}

static size_t ds_image_file_row(dtype_t dt, int h, int w) {
    return (size_t)h * (size_t)w * 3 * dtype_size(dt);
}

/* Parallel pread of one byte range: the bulk of a chunk (the images) is
 * split over up to DS_READERS threads, which is what it takes to go beyond
 * one core's copy rate out of the page cache. */
#define DS_READERS 8
#define DS_READ_SLICE ((size_t)4 << 20)

typedef struct {
    st_file_t *f;
    const st_tensor_t *t;
    uint64_t off;
    size_t n;
    char *dst;
    int rc;
    char err[256];
} ds_slice_t;

static void *ds_slice_main(void *arg) {
    ds_slice_t *s = arg;
    s->rc = st_read_range(s->f, s->t, s->off, s->n, s->dst, s->err, sizeof s->err);
    return NULL;
}

static int ds_read_parallel(st_file_t *f, const st_tensor_t *t, uint64_t off, size_t n, char *dst, char *err,
                            size_t errlen) {
    int k = (int)(n / DS_READ_SLICE);
    if (k > DS_READERS) k = DS_READERS;
    if (k <= 1) return st_read_range(f, t, off, n, dst, err, errlen);
    ds_slice_t sl[DS_READERS];
    size_t per = (n + (size_t)k - 1) / (size_t)k;
    for (int i = 0; i < k; i++) {
        size_t b = (size_t)i * per, e = b + per < n ? b + per : n;
        sl[i] = (ds_slice_t){.f = f, .t = t, .off = off + b, .n = e - b, .dst = dst + b};
    }
    par_run(ds_slice_main, sl, sizeof sl[0], k);
    int rc = 0;
    for (int i = 0; i < k; i++) {
        if (sl[i].rc != 0 && rc == 0) {
            rc = -1;
            snprintf(err, errlen, "%s", sl[i].err);
        }
    }
    return rc;
}

/* Read samples [s0, s0+c) of one shard into a staging buffer:
 * image rows first, then each label array present, each at a 64-byte
 * aligned position. offs[k] receives the staging offset of field k
 * (SIZE_MAX when absent). */
static int ds_read_chunk(st_file_t *f, const ds_shard_t *sh, int h, int w, int64_t s0, int64_t c, char *stage,
                         size_t *off_img, size_t offs[DS_NFIELDS], char *err, size_t errlen) {
    const st_tensor_t *im = st_find(f, "image");
    size_t row = ds_image_file_row(sh->image_dtype, h, w), pos = 0;
    if (ds_read_parallel(f, im, (uint64_t)s0 * row, (size_t)c * row, stage, err, errlen) != 0) return -1;
    *off_img = 0;
    pos = ((size_t)c * row + 63) & ~(size_t)63;
    for (int k = 0; k < DS_NFIELDS; k++) {
        const st_tensor_t *t = st_find(f, ds_fields[k].name);
        offs[k] = SIZE_MAX;
        if (!t) continue;
        size_t rb = ds_fields[k].row_bytes;
        if (st_read_range(f, t, (uint64_t)s0 * rb, (size_t)c * rb, stage + pos, err, errlen) != 0) return -1;
        offs[k] = pos;
        pos = (pos + (size_t)c * rb + 63) & ~(size_t)63;
    }
    return 0;
}

/* Bytes of staging one sample needs (image in its file dtype + labels). */
static size_t ds_stage_row(const ds_info_t *info, dtype_t dt) {
    size_t r = ds_image_file_row(dt, info->h, info->w);
    for (int k = 0; k < DS_NFIELDS; k++) r += ds_fields[k].row_bytes;
    return r;
}

/* The conversion/upload of c samples at index g0 of the resident layout from
 * host arrays: img in image_dtype, field[k] the rows of ds_fields[k] (NULL:
 * absent in the source). Joints with a non-finite coordinate become invalid
 * in field[1] (the source's validity rows, written in place), or in mask
 * (all ones otherwise) when the source has none. tmp_f32: device scratch for
 * an f32 image chunk. Adds the bytes uploaded to ld->done. */
static void ds_put_rows(ds_loader_t *ld, dtype_t image_dtype, int64_t g0, int64_t c, const void *img,
                        const void *const field[DS_NFIELDS], void *tmp_f32, const uint8_t *ones, uint8_t *mask) {
    backend_t *be = ld->be;
    const ds_layout_t *l = ld->l;
    size_t plane = (size_t)l->h * (size_t)l->w * 3;     /* elements per image */
    char *dimg = ld->base + l->off_images + (size_t)g0 * plane * 2;
    if (image_dtype == DT_U8) {
        be->images_from_u8(be, dimg, DT_BF16, (const uint8_t *)img, (int)c, l->h, l->w, l->mean, l->std);
    } else if (image_dtype == DT_BF16) {
        be->upload(be, dimg, img, (size_t)c * plane * 2);
    } else {
        assert(tmp_f32);
        be->upload(be, tmp_f32, img, (size_t)c * plane * 4);
        be->cast(be, dimg, DT_BF16, tmp_f32, DT_F32, (size_t)c * plane);
    }
    ld->done += (uint64_t)c * plane * 2;
    size_t dst_off[DS_NFIELDS] = {l->off_joints, l->off_valid, l->off_has_hand, l->off_intrinsics,
                                  l->off_object_poses, l->off_object_ids, l->off_num_objects};
    assert(field[0]);
    uint8_t *valid = field[1] ? (uint8_t *)(uintptr_t)field[1] : mask;
    if (valid == mask) memset(mask, 1, (size_t)c * HAND_JOINTS);
    ld->masked += ds_mask_nonfinite((float *)(uintptr_t)field[0], valid, c);
    for (int k = 0; k < DS_NFIELDS; k++) {
        const ds_field_t *fd = &ds_fields[k];
        size_t rb = fd->row_bytes, bytes = (size_t)c * rb;
        char *dst = ld->base + dst_off[k] + (size_t)g0 * rb;
        const void *src = field[k];                   /* an absent optional field: nothing */
        if (!src && fd->bit == DS_F_JOINTS_VALID) src = mask;
        else if (!src && fd->bit == DS_F_HAS_HAND) src = ones;  /* absent: every sample has a hand */
        if (!src) continue;
        be->upload(be, dst, src, bytes);
        ld->done += bytes;
    }
}

/* Issue the conversion/upload of one chunk of samples (global index g0) from
 * a staging buffer: the image at off_img, field k at offs[k] (SIZE_MAX: absent). */
static void ds_issue_chunk(ds_loader_t *ld, const ds_shard_t *sh, int64_t g0, int64_t c, char *stage,
                           size_t off_img, const size_t offs[DS_NFIELDS], void *tmp_f32,
                           const uint8_t *ones, uint8_t *mask) {
    const void *field[DS_NFIELDS];
    for (int k = 0; k < DS_NFIELDS; k++) field[k] = offs[k] != SIZE_MAX ? stage + offs[k] : NULL;
    ds_put_rows(ld, sh->image_dtype, g0, c, stage + off_img, field, tmp_f32, ones, mask);
}

int dataset_put_rows(backend_t *be, void *base, const ds_layout_t *l, int64_t g0, int64_t c, const uint8_t *images,
                     float *joints, uint8_t *valid, const uint8_t *has_hand, const float *intrinsics,
                     int64_t *masked_joints, char *err, size_t errlen) {
    if (g0 < 0 || c < 1 || g0 > l->n - c)
        return errbuf_set(err, errlen, "rows [%lld, %lld) are not within the %lld samples laid out", (long long)g0,
                          (long long)(g0 + c), (long long)l->n);
    if (!images || !joints || !valid || !has_hand || !intrinsics ||
        l->fields != (DS_F_JOINTS_VALID | DS_F_HAS_HAND | DS_F_INTRINSICS))
        return errbuf_set(err, errlen, "the rows do not match the layout's fields");
    ds_loader_t ld = {.be = be, .l = l, .base = base};
    const void *field[DS_NFIELDS] = {joints, valid, has_hand, intrinsics, NULL, NULL, NULL};   /* ds_fields' order */
    ds_put_rows(&ld, DT_U8, g0, c, images, field, NULL, NULL, NULL);
    if (masked_joints) *masked_joints += ld.masked;
    return 0;
}

/* One planned chunk: samples [s0, s0+c) of shard `shard`, global index g0. */
typedef struct {
    int shard;
    int64_t s0, c, g0;
} ds_chunk_t;

/* A staging buffer and what the reader put in it. */
typedef struct {
    char *mem;
    int chunk;                 /* chunk index it holds, -1 when free */
    size_t off_img, offs[DS_NFIELDS];
} ds_stage_t;

/* The reader thread fills the two staging buffers in turn, ahead of the
 * main thread that converts/uploads them (double buffering). */
typedef struct {
    const char *dir;
    int dirfd;                 /* shards are opened beneath it */
    const ds_info_t *info;
    const ds_layout_t *l;
    const ds_chunk_t *plan;
    int nchunks;
    ds_stage_t st[2];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;                  /* main -> reader: give up */
    int failed_at;             /* chunk index the reader failed on, -1 none */
    char err[512];
} ds_pipe_t;

static void *ds_reader_main(void *arg) {
    ds_pipe_t *p = arg;
    st_file_t *f = NULL;
    int cur = -1;
    char err[512];
    for (int k = 0; k < p->nchunks; k++) {
        ds_stage_t *b = &p->st[k % 2];
        pthread_mutex_lock(&p->mu);
        while (b->chunk != -1 && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
        const ds_chunk_t *c = &p->plan[k];
        const ds_shard_t *sh = &p->info->shards[c->shard];
        int rc = 0;
        if (c->shard != cur) {
            st_close(f);
            f = NULL;
            cur = c->shard;
            ds_shape_t s;
            if (!(f = st_open_at(p->dirfd, sh->name, p->dir, err, sizeof err)) ||
                ds_check_shard(f, &s, err, sizeof err) != 0) {
                rc = -1;
            } else if (s.n != sh->n || s.h != p->info->h || s.w != p->info->w || s.image_dtype != sh->image_dtype ||
                       s.fields != p->info->fields) {
                errbuf_set(err, sizeof err, "%s: shard changed since the dataset was scanned", st_path(f));
                rc = -1;
            }
        }
        if (rc == 0)
            rc = ds_read_chunk(f, sh, p->l->h, p->l->w, c->s0, c->c, b->mem, &b->off_img, b->offs, err, sizeof err);
        pthread_mutex_lock(&p->mu);
        if (rc != 0) {
            p->failed_at = k;
            snprintf(p->err, sizeof p->err, "%s", err);
        } else {
            b->chunk = k;
        }
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (rc != 0) break;
    }
    st_close(f);
    return NULL;
}

int dataset_load(backend_t *be, const char *dir, const ds_info_t *info, void *base, const ds_layout_t *l,
            dataset_progress_fn cb, void *ud, volatile int *cancel, int64_t *masked_joints, char *err, size_t errlen) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return errbuf_set(err, errlen, "dataset %s: cannot open directory: %s", dir, strerror(errno));
    int rc = dataset_load_at(be, dfd, dir, info, base, l, cb, ud, cancel, masked_joints, err, errlen);
    close(dfd);
    return rc;
}

int dataset_load_at(backend_t *be, int dirfd, const char *dir, const ds_info_t *info, void *base, const ds_layout_t *l,
            dataset_progress_fn cb, void *ud, volatile int *cancel, int64_t *masked_joints, char *err, size_t errlen) {
    if (l->n != info->n) return errbuf_set(err, errlen, "dataset %s: layout does not match the scan", dir);
    return dataset_load_range_at(be, dirfd, dir, info, 0, base, l, cb, ud, cancel, masked_joints, err, errlen);
}

int dataset_load_range_at(backend_t *be, int dirfd, const char *dir, const ds_info_t *info, int64_t first, void *base,
                          const ds_layout_t *l, dataset_progress_fn cb, void *ud, volatile int *cancel,
                          int64_t *masked_joints, char *err, size_t errlen) {
    if (first < 0 || l->n < 1 || first > info->n - l->n || l->h != info->h || l->w != info->w ||
        (l->fields & ~(DS_F_JOINTS_VALID | DS_F_HAS_HAND)) != (info->fields & ~(DS_F_JOINTS_VALID | DS_F_HAS_HAND)))
        return errbuf_set(err, errlen, "dataset %s: layout does not match the scan", dir);
    ds_loader_t ld = {.be = be, .l = l, .base = base, .cb = cb, .ud = ud};
    size_t plane = (size_t)l->h * (size_t)l->w * 3;
    ld.total = (uint64_t)l->n * (plane * 2 + ds_fields[0].row_bytes + ds_fields[1].row_bytes + ds_fields[2].row_bytes);
    for (int k = 3; k < DS_NFIELDS; k++)
        if (l->fields & ds_fields[k].bit) ld.total += (uint64_t)l->n * ds_fields[k].row_bytes;

    /* samples per chunk: bounded by the staging size, for the widest shard dtype */
    size_t worst = 0;
    int any_f32 = 0;
    for (int i = 0; i < info->nshards; i++) {
        size_t r = ds_stage_row(info, info->shards[i].image_dtype);
        if (r > worst) worst = r;
        any_f32 |= info->shards[i].image_dtype == DT_F32;
    }
    int64_t chunk = (int64_t)(ds_stage_bytes / worst);
    if (chunk < 1) chunk = 1;
    if (chunk > l->n) chunk = l->n;
    if (chunk > INT32_MAX / 2) chunk = INT32_MAX / 2;

    /* the plan: the samples [first, first + l->n) of every shard, cut into chunks; g0 is
     * the position in the allocation (sample - first) */
    int64_t nplan = 0, end = first + l->n, at = 0;
    for (int i = 0; i < info->nshards; at += info->shards[i].n, i++) {
        int64_t a = at > first ? at : first, e = at + info->shards[i].n < end ? at + info->shards[i].n : end;
        if (e > a) nplan += (e - a + chunk - 1) / chunk;
    }
    if (nplan > INT32_MAX) return errbuf_set(err, errlen, "dataset %s: too many chunks", dir);
    ds_chunk_t *plan = calloc((size_t)(nplan ? nplan : 1), sizeof *plan);
    if (!plan) return errbuf_set(err, errlen, "dataset %s: out of memory", dir);
    int np = 0;
    int64_t g = 0;
    at = 0;
    for (int i = 0; i < info->nshards; at += info->shards[i].n, i++) {
        int64_t a = at > first ? at : first, e = at + info->shards[i].n < end ? at + info->shards[i].n : end;
        for (int64_t s0 = a - at; s0 < e - at; s0 += chunk) {
            int64_t c = e - at - s0 < chunk ? e - at - s0 : chunk;
            plan[np++] = (ds_chunk_t){.shard = i, .s0 = s0, .c = c, .g0 = g};
            g += c;
        }
    }
    assert(g == l->n && np == nplan);

    size_t stage_bytes = (size_t)chunk * worst + (DS_NFIELDS + 1) * 64;   /* + alignment slack */
    ds_pipe_t p = {.dir = dir, .dirfd = dirfd, .info = info, .l = l, .plan = plan, .nchunks = np, .failed_at = -1};
    p.st[0] = (ds_stage_t){.mem = be->host_alloc(be, stage_bytes), .chunk = -1};
    p.st[1] = (ds_stage_t){.mem = be->host_alloc(be, stage_bytes), .chunk = -1};
    uint8_t *ones = be->host_alloc(be, (size_t)chunk);              /* has_hand when absent */
    uint8_t *mask = be->host_alloc(be, (size_t)chunk * HAND_JOINTS);  /* hand_joints_valid when absent */
    void *tmp = any_f32 ? be->alloc(be, (size_t)chunk * plane * 4) : NULL;
    int rc = -1, started = 0;
    pthread_t reader;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    if (!p.st[0].mem || !p.st[1].mem || !ones || !mask || (any_f32 && !tmp)) {
        errbuf_set(err, errlen, "dataset %s: cannot allocate staging memory (2 x %zu bytes): %s", dir, stage_bytes, be->err);
        goto out;
    }
    memset(ones, 1, (size_t)chunk);
    if (pthread_create(&reader, NULL, ds_reader_main, &p) != 0) {
        errbuf_set(err, errlen, "dataset %s: cannot start the reader thread", dir);
        goto out;
    }
    started = 1;
    if (cb) cb(ud, 0, ld.total);
    for (int k = 0; k < np; k++) {
        if (cancel && *cancel) {
            errbuf_set(err, errlen, "dataset %s: loading cancelled", dir);
            rc = DATASET_LOAD_CANCELLED;
            goto out;
        }
        ds_stage_t *b = &p.st[k % 2];
        pthread_mutex_lock(&p.mu);
        while (b->chunk != k && p.failed_at != k) pthread_cond_wait(&p.cv, &p.mu);
        int failed = p.failed_at == k;
        pthread_mutex_unlock(&p.mu);
        if (failed) {
            errbuf_set(err, errlen, "%s", p.err);
            goto out;
        }
        const ds_chunk_t *c = &plan[k];
        ds_issue_chunk(&ld, &info->shards[c->shard], c->g0, c->c, b->mem, b->off_img, b->offs, tmp, ones, mask);
        /* the device must be done with this buffer before the reader refills
         * it; meanwhile the reader is filling the other one */
        be->sync(be);
        pthread_mutex_lock(&p.mu);
        b->chunk = -1;
        pthread_cond_broadcast(&p.cv);
        pthread_mutex_unlock(&p.mu);
        if (cb) cb(ud, ld.done, ld.total);
    }
    assert(ld.done == ld.total);
    if (masked_joints) *masked_joints = ld.masked;
    rc = 0;
out:
    if (started) {
        pthread_mutex_lock(&p.mu);
        p.stop = 1;
        pthread_cond_broadcast(&p.cv);
        pthread_mutex_unlock(&p.mu);
        pthread_join(reader, NULL);
    }
    be->sync(be);   /* nothing may still read the staging buffers */
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    if (tmp) be->free(be, tmp);
    if (p.st[0].mem) be->host_free(be, p.st[0].mem);
    if (p.st[1].mem) be->host_free(be, p.st[1].mem);
    if (ones) be->host_free(be, ones);
    if (mask) be->host_free(be, mask);
    free(plan);
    return rc;
}
