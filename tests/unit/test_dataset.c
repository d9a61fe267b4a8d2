/* tests/unit/test_dataset.c — dataset shards: scan, validation errors,
 * resident layout, and loading U8 / BF16 / F32 shards through the CPU
 * backend, with values checked against a direct computation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu/backend.h"
#include "gpu/dataset.h"
#include "store/dataset.h"
#include "store/fsutil.h"
#include "store/safetensors.h"
#include "tests/tap.h"

static char root[256];
static backend_t *be;

/* deterministic test values */
static uint32_t lcg = 12345;
static uint32_t rnd(void) { return (lcg = lcg * 1664525u + 1013904223u) >> 8; }
static float rndf(void) { return (float)(rnd() % 20001) / 10000.0f - 1.0f; }

typedef struct {
    int64_t n;
    int h, w;
    dtype_t idt;
    void *image;
    float *joints, *K, *poses;
    uint8_t *valid, *hh;
    int32_t *ids, *nobj;
} shard_t;

static void shard_make(shard_t *s, int64_t n, int h, int w, dtype_t idt, int optional) {
    memset(s, 0, sizeof *s);
    s->n = n;
    s->h = h;
    s->w = w;
    s->idt = idt;
    size_t px = (size_t)n * h * w * 3;
    s->image = malloc(px * dtype_size(idt));
    for (size_t i = 0; i < px; i++) {
        if (idt == DT_U8) ((uint8_t *)s->image)[i] = (uint8_t)(rnd() & 0xff);
        else if (idt == DT_F32) ((float *)s->image)[i] = rndf() * 2.5f;
        else ((bf16 *)s->image)[i] = f32_to_bf16(rndf() * 2.5f);
    }
    s->joints = malloc((size_t)n * 63 * 4);
    for (int64_t i = 0; i < n * 63; i++) s->joints[i] = rndf() * 0.3f + 0.123456789f;
    if (!optional) return;
    s->K = malloc((size_t)n * 9 * 4);
    s->poses = malloc((size_t)n * 120 * 4);
    s->valid = malloc((size_t)n * 21);
    s->hh = malloc((size_t)n);
    s->ids = malloc((size_t)n * 10 * 4);
    s->nobj = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n * 9; i++) s->K[i] = rndf() * 100;
    for (int64_t i = 0; i < n * 120; i++) s->poses[i] = rndf();
    for (int64_t i = 0; i < n * 21; i++) s->valid[i] = (uint8_t)(rnd() % 2);
    for (int64_t i = 0; i < n; i++) s->hh[i] = (uint8_t)(rnd() % 2);
    for (int64_t i = 0; i < n * 10; i++) s->ids[i] = (int32_t)(rnd() % 22) - 1;
    for (int64_t i = 0; i < n; i++) s->nobj[i] = (int32_t)(rnd() % 11);
}

static void shard_free(shard_t *s) {
    free(s->image);
    free(s->joints);
    free(s->K);
    free(s->poses);
    free(s->valid);
    free(s->hh);
    free(s->ids);
    free(s->nobj);
}

static int shard_write(const char *dir, const char *name, const shard_t *s, const float *mean, const float *std) {
    char p[512], err[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    ds_shard_data_t d = {.n = s->n, .h = s->h, .w = s->w, .image_dtype = s->idt, .image = s->image,
                         .joints = s->joints, .joints_valid = s->valid, .has_hand = s->hh, .intrinsics = s->K,
                         .object_poses = s->poses, .object_ids = s->ids, .num_objects = s->nobj,
                         .mean = mean, .std = std};
    int r = ds_write_shard(p, &d, err, sizeof err);
    if (r) diag("write %s: %s", p, err);
    return r;
}

static void mkdir_in(char *out, size_t n, const char *name) {
    char err[256];
    snprintf(out, n, "%s/%s", root, name);
    fs_mkdir_p(out, 0755, err, sizeof err);
}

/* progress recorder */
typedef struct { int calls, monotonic; uint64_t last, total; } prog_t;
static void on_progress(void *ud, uint64_t done, uint64_t total) {
    prog_t *p = ud;
    if (p->calls && done < p->last) p->monotonic = 0;
    p->calls++;
    p->last = done;
    p->total = total;
}

/* Compare the loaded sample range [g0, g0+s->n) with a shard. */
static void check_loaded(const dataset_t *ds, const shard_t *s, int64_t g0, const float mean[3], const float std[3],
                         const char *what) {
    size_t plane = (size_t)s->h * s->w, bad = 0, exact = 0, total = 0;
    const bf16 *img = ds->images;
    for (int64_t i = 0; i < s->n; i++)
        for (int c = 0; c < 3; c++)
            for (size_t k = 0; k < plane; k++) {
                float got = bf16_to_f32(img[((size_t)(g0 + i) * 3 + c) * plane + k]);
                double want;
                float want_rne;
                if (s->idt == DT_U8) {
                    uint8_t u = ((uint8_t *)s->image)[((size_t)i * plane + k) * 3 + c];
                    want = ((double)u / 255.0 - mean[c]) / std[c];
                    want_rne = bf16_round((float)want);
                } else if (s->idt == DT_F32) {
                    want = ((float *)s->image)[((size_t)i * 3 + c) * plane + k];
                    want_rne = bf16_round((float)want);
                } else {
                    want = bf16_to_f32(((bf16 *)s->image)[((size_t)i * 3 + c) * plane + k]);
                    want_rne = (float)want;
                }
                /* bf16 keeps 8 significant bits: rounding error <= half an ulp <= 2^-8 relative */
                if (fabs(got - want) > fabs(want) * (1.0 / 256) * (1 + 1e-6) + 1e-30) bad++;
                exact += got == want_rne;
                total++;
            }
    ok(bad == 0, "%s: images within bf16 rounding of the exact normalization (%zu bad of %zu)", what, bad, total);
    if (s->idt != DT_U8) ok(exact == total, "%s: images rounded to nearest even (%zu of %zu)", what, exact, total);
    else ok(exact >= total * 99 / 100, "%s: images equal the fp32 normalization rounded once (%zu of %zu)", what, exact, total);
    ok(memcmp(ds->joints + g0 * 63, s->joints, (size_t)s->n * 63 * 4) == 0, "%s: joints fp32 bit-exact", what);
    if (s->valid) {
        ok(memcmp(ds->joints_valid + g0 * 21, s->valid, (size_t)s->n * 21) == 0, "%s: joints_valid", what);
        ok(memcmp(ds->has_hand + g0, s->hh, (size_t)s->n) == 0, "%s: has_hand", what);
        ok(memcmp(ds->intrinsics + g0 * 9, s->K, (size_t)s->n * 36) == 0, "%s: intrinsics", what);
        ok(memcmp(ds->object_poses + g0 * 120, s->poses, (size_t)s->n * 480) == 0, "%s: object_poses", what);
        ok(memcmp(ds->object_ids + g0 * 10, s->ids, (size_t)s->n * 40) == 0, "%s: object_ids", what);
        ok(memcmp(ds->num_objects + g0, s->nobj, (size_t)s->n * 4) == 0, "%s: num_objects", what);
    } else {
        int ones = 1;
        for (int64_t i = 0; i < s->n * 21; i++) ones &= ds->joints_valid[g0 * 21 + i] == 1;
        for (int64_t i = 0; i < s->n; i++) ones &= ds->has_hand[g0 + i] == 1;
        ok(ones, "%s: absent masks are all ones", what);
    }
}

static void test_u8(void) {
    char dir[512], err[512];
    mkdir_in(dir, sizeof dir, "u8");
    const float mean[3] = {0.5f, 0.25f, 0.125f}, std[3] = {0.3f, 0.2f, 0.1f};
    shard_t s[3];
    int64_t ns[3] = {5, 9, 3};
    for (int i = 0; i < 3; i++) shard_make(&s[i], ns[i], 6, 10, DT_U8, 1);
    /* names chosen so that name order differs from creation order */
    shard_write(dir, "b.safetensors", &s[1], NULL, NULL);
    shard_write(dir, "a.safetensors", &s[0], mean, std);
    shard_write(dir, "c.safetensors", &s[2], NULL, NULL);
    char junk[600];
    snprintf(junk, sizeof junk, "%s/README.txt", dir);
    fs_write_file_atomic(junk, "not a shard", 11, err, sizeof err);

    ds_info_t info;
    int r = ds_scan(dir, &info, err, sizeof err);
    if (!ok(r == 0, "scan u8 dataset: %s", r ? err : "")) return;
    ok(info.nshards == 3 && strcmp(info.shards[0].name, "a.safetensors") == 0 &&
       strcmp(info.shards[2].name, "c.safetensors") == 0, "shards in name order");
    ok(info.n == 17 && info.h == 6 && info.w == 10, "n=17 h=6 w=10 (got %lld %d %d)", (long long)info.n, info.h, info.w);
    ok(info.fields == DS_F_ALL, "all optional fields found");
    ok(info.mean[0] == 0.5f && info.mean[2] == 0.125f && info.std[1] == 0.2f, "mean/std from the first shard");
    ok(info.shards[1].image_dtype == DT_U8 && info.shards[1].n == 9, "shard record");
    ds_layout_t l;
    size_t tot = ds_layout_for(&l, &info);
    ok(tot == info.resident_bytes && tot > 0, "resident bytes = layout total");
    void *base = be->alloc(be, l.total);
    memset(base, 0xAB, l.total);
    prog_t pg = {.monotonic = 1};
    dataset_set_stage_bytes(700);   /* about 2 samples per chunk: many chunks, both buffers */
    r = dataset_load(be, dir, &info, base, &l, on_progress, &pg, NULL, NULL, err, sizeof err);
    dataset_set_stage_bytes(0);
    ok(r == 0, "load u8 dataset in small chunks: %s", r ? err : "");
    ok(pg.calls > 9 && pg.monotonic && pg.last == pg.total && pg.total > 0, "progress: %d calls, monotonic, ends at total",
       pg.calls);
    dataset_t ds;
    dataset_view(&ds, base, &l);
    ok(ds.n == 17 && ds.h == 6 && ds.w == 10 && ds.image_dtype == DT_BF16 && ds.mean[1] == 0.25f, "view header");
    check_loaded(&ds, &s[0], 0, mean, std, "u8 shard a");
    check_loaded(&ds, &s[1], 5, mean, std, "u8 shard b");
    check_loaded(&ds, &s[2], 14, mean, std, "u8 shard c");

    /* cancellation */
    volatile int cancel = 1;
    r = dataset_load(be, dir, &info, base, &l, NULL, NULL, &cancel, NULL, err, sizeof err);
    ok(r == DATASET_LOAD_CANCELLED && strstr(err, "cancelled"), "cancel: %s", err);

    /* a shard replaced after the scan */
    shard_t other;
    shard_make(&other, 4, 6, 10, DT_U8, 1);
    shard_write(dir, "b.safetensors", &other, NULL, NULL);
    r = dataset_load(be, dir, &info, base, &l, NULL, NULL, NULL, NULL, err, sizeof err);
    ok(r == -1 && strstr(err, "b.safetensors") && strstr(err, "changed since"), "shard changed after scan: %s", err);
    shard_free(&other);

    /* layout mismatch */
    ds_layout_t l2;
    ds_layout(&l2, 16, 6, 10, info.fields);
    r = dataset_load(be, dir, &info, base, &l2, NULL, NULL, NULL, NULL, err, sizeof err);
    ok(r == -1 && strstr(err, "layout"), "layout not matching the scan refused: %s", err);

    be->free(be, base);
    ds_info_free(&info);
    for (int i = 0; i < 3; i++) shard_free(&s[i]);
}

static void test_float_shards(void) {
    char dir[512], err[512];
    mkdir_in(dir, sizeof dir, "float");
    shard_t a, b, c;
    shard_make(&a, 4, 14, 7, DT_BF16, 0);
    shard_make(&b, 6, 14, 7, DT_F32, 0);
    shard_make(&c, 3, 14, 7, DT_U8, 0);
    shard_write(dir, "00.safetensors", &a, NULL, NULL);
    shard_write(dir, "01.safetensors", &b, NULL, NULL);
    shard_write(dir, "02.safetensors", &c, NULL, NULL);
    ds_info_t info;
    int r = ds_scan(dir, &info, err, sizeof err);
    if (!ok(r == 0, "scan bf16+f32+u8 dataset: %s", r ? err : "")) return;
    ok(info.fields == 0 && info.n == 13, "no optional fields, n=13");
    ok(info.mean[0] == 0.485f && info.std[2] == 0.225f, "default ImageNet mean/std");
    ok(info.shards[0].image_dtype == DT_BF16 && info.shards[1].image_dtype == DT_F32 &&
       info.shards[2].image_dtype == DT_U8, "per-shard image dtypes");
    ds_layout_t l;
    ds_layout_for(&l, &info);
    void *base = be->alloc(be, l.total);
    r = dataset_load(be, dir, &info, base, &l, NULL, NULL, NULL, NULL, err, sizeof err);
    ok(r == 0, "load: %s", r ? err : "");
    dataset_t ds;
    dataset_view(&ds, base, &l);
    ok(ds.intrinsics == NULL && ds.object_poses == NULL && ds.object_ids == NULL && ds.num_objects == NULL,
       "absent optional arrays are NULL in the view");
    check_loaded(&ds, &a, 0, info.mean, info.std, "bf16 shard");
    check_loaded(&ds, &b, 4, info.mean, info.std, "f32 shard");
    check_loaded(&ds, &c, 10, info.mean, info.std, "u8 shard");
    be->free(be, base);
    ds_info_free(&info);
    shard_free(&a);
    shard_free(&b);
    shard_free(&c);
}

/* A shard big enough that a chunk's image bytes are read by several threads. */
static void test_parallel_read(void) {
    char dir[512], err[512];
    mkdir_in(dir, sizeof dir, "big");
    shard_t a;
    shard_make(&a, 70, 224, 224, DT_U8, 1);
    shard_write(dir, "big.safetensors", &a, NULL, NULL);
    ds_info_t info;
    if (!ok(ds_scan(dir, &info, err, sizeof err) == 0, "scan big shard: %s", err)) return;
    ds_layout_t l;
    ds_layout_for(&l, &info);
    void *base = be->alloc(be, l.total);
    int r = dataset_load(be, dir, &info, base, &l, NULL, NULL, NULL, NULL, err, sizeof err);
    ok(r == 0, "load a 10 MB shard with parallel reads: %s", r ? err : "");
    dataset_t ds;
    dataset_view(&ds, base, &l);
    check_loaded(&ds, &a, 0, info.mean, info.std, "big u8 shard");
    be->free(be, base);
    ds_info_free(&info);
    shard_free(&a);
}

/* NaN/Inf joint coordinates (missing annotations) become invalid joints at
 * load, with and without a validity mask in the files, across chunks. */
static void test_nonfinite_labels(int with_mask) {
    char dir[512], err[512];
    mkdir_in(dir, sizeof dir, with_mask ? "nan-masked" : "nan-plain");
    shard_t a;
    shard_make(&a, 9, 8, 8, DT_U8, with_mask);
    float *orig = malloc((size_t)a.n * 63 * 4);
    uint8_t *ovalid = malloc((size_t)a.n * 21);
    const int bad[][2] = {{0, 0}, {0, 20}, {3, 7}, {8, 4}};   /* (sample, joint) */
    const float what[] = {NAN, INFINITY, -INFINITY, NAN};
    const int coord[] = {0, 2, 1, 1};
    for (int k = 0; k < 4; k++) a.joints[(bad[k][0] * 21 + bad[k][1]) * 3 + coord[k]] = what[k];
    memcpy(orig, a.joints, (size_t)a.n * 63 * 4);
    for (int64_t i = 0; i < a.n * 21; i++) ovalid[i] = with_mask ? a.valid[i] : 1;
    shard_write(dir, "a.safetensors", &a, NULL, NULL);
    ds_info_t info;
    if (!ok(ds_scan(dir, &info, err, sizeof err) == 0, "scan a dataset with NaN/Inf joints: %s", err)) return;
    ds_layout_t l;
    ds_layout_for(&l, &info);
    void *base = be->alloc(be, l.total);
    dataset_set_stage_bytes(3 * (8 * 8 * 3 + 63 * 4 + 64));   /* a few samples per chunk */
    int64_t masked = -1;
    int r = dataset_load(be, dir, &info, base, &l, NULL, NULL, NULL, &masked, err, sizeof err);
    dataset_set_stage_bytes(0);
    ok(r == 0, "load (%s mask in the files): %s", with_mask ? "with a" : "no", r ? err : "");
    ok(masked == 4, "four non-finite joints counted as masked (%lld)", (long long)masked);
    dataset_t ds;
    dataset_view(&ds, base, &l);
    int bad_ok = 1, rest_ok = 1;
    for (int64_t i = 0; i < a.n * 21; i++) {
        int is_bad = 0;
        for (int k = 0; k < 4; k++) is_bad |= bad[k][0] * 21 + bad[k][1] == i;
        const float *j = ds.joints + 3 * i;
        if (is_bad) bad_ok &= ds.joints_valid[i] == 0 && j[0] == 0 && j[1] == 0 && j[2] == 0;
        else rest_ok &= ds.joints_valid[i] == ovalid[i] && memcmp(j, orig + 3 * i, 12) == 0;
    }
    ok(bad_ok, "non-finite joints: invalid, coordinates 0");
    ok(rest_ok, "every other joint and mask bit for bit as in the files");
    int all_finite = 1;
    for (int64_t i = 0; i < a.n * 63; i++) all_finite &= isfinite(ds.joints[i]) != 0;
    ok(all_finite, "no NaN/Inf in the resident labels");
    be->free(be, base);
    ds_info_free(&info);
    shard_free(&a);
    free(orig);
    free(ovalid);
}

static void test_layout(void) {
    ds_layout_t l;
    size_t tot = ds_layout(&l, 1001, 30, 44, DS_F_ALL);
    ok(tot > 0 && tot % DS_ALIGN == 0, "layout total aligned");
    struct { size_t off, len; } a[8] = {
        {l.off_images, 1001u * 3 * 30 * 44 * 2}, {l.off_joints, 1001u * 63 * 4}, {l.off_valid, 1001u * 21},
        {l.off_has_hand, 1001u}, {l.off_intrinsics, 1001u * 36}, {l.off_object_poses, 1001u * 480},
        {l.off_object_ids, 1001u * 40}, {l.off_num_objects, 1001u * 4}};
    int aligned = 1, disjoint = 1, inside = 1;
    for (int i = 0; i < 8; i++) {
        aligned &= a[i].off % DS_ALIGN == 0;
        inside &= a[i].off + a[i].len <= tot;
        for (int j = 0; j < 8; j++)
            if (i != j && a[i].off < a[j].off + a[j].len && a[j].off < a[i].off + a[i].len) disjoint = 0;
    }
    ok(aligned, "every array 256-byte aligned");
    ok(disjoint, "arrays do not overlap");
    ok(inside, "arrays inside the allocation");
    ds_layout_t m;
    ds_layout(&m, 1001, 30, 44, DS_F_INTRINSICS);
    ok(m.total < l.total && m.off_object_poses == 0 && m.off_intrinsics > 0 &&
       (m.fields & (DS_F_JOINTS_VALID | DS_F_HAS_HAND)) == (DS_F_JOINTS_VALID | DS_F_HAS_HAND),
       "layout without optional arrays is smaller; masks always present");
    ok(ds_layout(&m, 0, 30, 44, 0) == 0 && ds_layout(&m, 5, 0, 44, 0) == 0, "empty layout refused");
    ok(ds_layout(&m, (int64_t)1 << 62, 4096, 4096, 0) == 0, "overflowing layout refused");

    /* JSON round trip */
    l.mean[0] = 0.25f;
    json_t *j = ds_layout_to_json(&l);
    char err[256];
    ds_layout_t back;
    ok(j && ds_layout_from_json(j, &back, err, sizeof err) == 0 && back.total == l.total &&
       back.off_num_objects == l.off_num_objects && back.fields == l.fields && back.mean[0] == 0.25f &&
       back.std[2] == l.std[2], "layout JSON round trip");
    json_object_set_new(json_object_get(j, "offsets"), "hand_joints", json_integer(12345));
    ok(ds_layout_from_json(j, &back, err, sizeof err) != 0 && strstr(err, "hand_joints"), "tampered offset refused: %s",
       err);
    json_object_set_new(j, "n", json_string("x"));
    ok(ds_layout_from_json(j, &back, err, sizeof err) != 0, "bad n refused: %s", err);
    json_decref(j);
    json_t *f = ds_fields_to_json(DS_F_HAS_HAND | DS_F_OBJECT_IDS);
    char *s = json_dumps(f, JSON_COMPACT);
    ok(s && strcmp(s, "[\"image\",\"hand_joints\",\"has_hand\",\"object_ids\"]") == 0, "fields to JSON: %s", s);
    free(s);
    json_decref(f);
}

/* Write a shard with arbitrary tensors (for malformed datasets). */
typedef struct { const char *name; st_dtype_t dt; int rank; int64_t shape[4]; } spec_t;
static void raw_shard(const char *dir, const char *file, const spec_t *sp, int n, const char *mean) {
    st_writer_t *w = st_writer_new();
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        for (int d = 0; d < sp[i].rank; d++) numel *= sp[i].shape[d];
        void *z = calloc((size_t)numel * st_dtype_size(sp[i].dt) + 1, 1);
        st_writer_add(w, sp[i].name, sp[i].dt, sp[i].rank, sp[i].shape, z);
        free(z);
    }
    if (mean) st_writer_meta(w, "mean", mean);
    char p[600], err[256];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    if (st_writer_write(w, p, err, sizeof err)) diag("%s", err);
    st_writer_free(w);
}

static void expect_scan_fail(const char *dir, const char *what, const char *n1, const char *n2) {
    char err[512] = "";
    ds_info_t info;
    int r = ds_scan(dir, &info, err, sizeof err);
    int good = r != 0 && (!n1 || strstr(err, n1)) && (!n2 || strstr(err, n2));
    ok(good, "reject %s", what);
    if (!good) diag("  message: %s", err);
    if (r == 0) ds_info_free(&info);
}

static void test_bad_datasets(void) {
    char dir[512];
    mkdir_in(dir, sizeof dir, "empty");
    expect_scan_fail(dir, "empty directory", "no *.safetensors", NULL);
    expect_scan_fail("/nonexistent/traind-test", "missing directory", "cannot open", NULL);

    spec_t img = {"image", ST_U8, 4, {4, 6, 8, 3}}, hj = {"hand_joints", ST_F32, 3, {4, 21, 3}};
    mkdir_in(dir, sizeof dir, "nojoints");
    raw_shard(dir, "s.safetensors", (spec_t[]){img}, 1, NULL);
    expect_scan_fail(dir, "missing hand_joints", "s.safetensors", "missing required tensor \"hand_joints\"");

    mkdir_in(dir, sizeof dir, "noimage");
    raw_shard(dir, "s.safetensors", (spec_t[]){hj}, 1, NULL);
    expect_scan_fail(dir, "missing image", "missing required tensor \"image\"", NULL);

    mkdir_in(dir, sizeof dir, "badn");
    raw_shard(dir, "s.safetensors", (spec_t[]){img, hj, {"has_hand", ST_U8, 1, {5}}}, 3, NULL);
    expect_scan_fail(dir, "mismatched N between tensors", "\"has_hand\" has N=5", "\"image\" has N=4");

    mkdir_in(dir, sizeof dir, "badhj");
    raw_shard(dir, "s.safetensors", (spec_t[]){img, {"hand_joints", ST_BF16, 3, {4, 21, 3}}}, 2, NULL);
    expect_scan_fail(dir, "wrong dtype of hand_joints", "\"hand_joints\" is BF16 [4,21,3]", "expected F32 [N,21,3]");

    mkdir_in(dir, sizeof dir, "badhjshape");
    raw_shard(dir, "s.safetensors", (spec_t[]){img, {"hand_joints", ST_F32, 2, {4, 63}}}, 2, NULL);
    expect_scan_fail(dir, "wrong shape of hand_joints", "\"hand_joints\" is F32 [4,63]", NULL);

    mkdir_in(dir, sizeof dir, "badimg");
    raw_shard(dir, "s.safetensors", (spec_t[]){{"image", ST_U8, 4, {4, 3, 6, 8}}, hj}, 2, NULL);
    expect_scan_fail(dir, "U8 image in CHW", "\"image\" is U8 [4,3,6,8]", "[N,H,W,3]");

    mkdir_in(dir, sizeof dir, "badimgdt");
    raw_shard(dir, "s.safetensors", (spec_t[]){{"image", ST_F16, 4, {4, 3, 6, 8}}, hj}, 2, NULL);
    expect_scan_fail(dir, "F16 image", "dtype F16", NULL);

    mkdir_in(dir, sizeof dir, "unknown");
    raw_shard(dir, "s.safetensors", (spec_t[]){img, hj, {"hand_joint", ST_F32, 3, {4, 21, 3}}}, 3, NULL);
    expect_scan_fail(dir, "unknown tensor", "unknown tensor \"hand_joint\"", NULL);

    mkdir_in(dir, sizeof dir, "hw");
    raw_shard(dir, "a.safetensors", (spec_t[]){img, hj}, 2, NULL);
    raw_shard(dir, "b.safetensors", (spec_t[]){{"image", ST_U8, 4, {4, 6, 9, 3}}, hj}, 2, NULL);
    expect_scan_fail(dir, "mismatched H/W across shards", "b.safetensors: images are 6x9", "a.safetensors has 6x8");

    mkdir_in(dir, sizeof dir, "fields");
    raw_shard(dir, "a.safetensors", (spec_t[]){img, hj}, 2, NULL);
    raw_shard(dir, "b.safetensors", (spec_t[]){img, hj, {"has_hand", ST_U8, 1, {4}}}, 3, NULL);
    expect_scan_fail(dir, "different fields across shards", "b.safetensors: has fields", "has_hand");

    mkdir_in(dir, sizeof dir, "mean");
    raw_shard(dir, "a.safetensors", (spec_t[]){img, hj}, 2, "[0.5,0.5]");
    expect_scan_fail(dir, "bad mean metadata", "\"mean\" must be a JSON array of 3", NULL);

    mkdir_in(dir, sizeof dir, "zero");
    raw_shard(dir, "a.safetensors", (spec_t[]){{"image", ST_U8, 4, {0, 6, 8, 3}}, {"hand_joints", ST_F32, 3, {0, 21, 3}}},
              2, NULL);
    expect_scan_fail(dir, "no samples", "no samples", NULL);

    mkdir_in(dir, sizeof dir, "corrupt");
    char p[600], err[256];
    snprintf(p, sizeof p, "%s/a.safetensors", dir);
    fs_write_file_atomic(p, "\x09\0\0\0\0\0\0\0{\"image\":", 17, err, sizeof err);
    expect_scan_fail(dir, "corrupt shard (message from the reader)", "a.safetensors", "not valid JSON");

    /* ds_write_shard argument checks */
    ds_shard_data_t d = {.n = 2, .h = 4, .w = 4, .image_dtype = DT_U8};
    snprintf(p, sizeof p, "%s/x.safetensors", dir);
    ok(ds_write_shard(p, &d, err, sizeof err) != 0 && strstr(err, "required"), "write without arrays refused: %s", err);
}

int main(void) {
    char err[256];
    snprintf(root, sizeof root, "/tmp/test_dataset.XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    be = backend_cpu_create(err, sizeof err);
    if (!ok(be != NULL, "cpu backend: %s", be ? "" : err)) return tap_done();
    test_layout();
    test_u8();
    test_float_shards();
    test_parallel_read();
    test_nonfinite_labels(1);
    test_nonfinite_labels(0);
    test_bad_datasets();
    be->destroy(be);
    fs_rm_rf(root, err, sizeof err);
    return tap_done();
}
