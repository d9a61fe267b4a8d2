/* store/dataset.c — scan and validate a dataset directory of safetensors
 * shards (SPEC §6), compute the resident layout, and write shards. See
 * dataset.h for the format; gpu/dataset.c loads it into backend memory. */
#define _GNU_SOURCE
#include "store/dataset.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/fsutil.h"
#include "store/safetensors.h"
#include "store/errbuf.h"

static const float ds_imagenet_mean[3] = HAND_IMAGENET_MEAN;
static const float ds_imagenet_std[3] = HAND_IMAGENET_STD;

/* The label arrays of the format: name, bit, dtype, per-sample shape (after N). */
const ds_field_t ds_fields[DS_NFIELDS] = {
    {"hand_joints", 0, ST_F32, 2, {HAND_JOINTS, 3, 0}, HAND_JOINTS * 3 * 4},
    {"hand_joints_valid", DS_F_JOINTS_VALID, ST_U8, 1, {HAND_JOINTS, 0, 0}, HAND_JOINTS},
    {"has_hand", DS_F_HAS_HAND, ST_U8, 0, {0, 0, 0}, 1},
    {"camera_intrinsics", DS_F_INTRINSICS, ST_F32, 2, {3, 3, 0}, 9 * 4},
    {"object_poses", DS_F_OBJECT_POSES, ST_F32, 3, {HAND_MAX_OBJECTS, 3, 4}, HAND_MAX_OBJECTS * 12 * 4},
    {"object_ids", DS_F_OBJECT_IDS, ST_I32, 1, {HAND_MAX_OBJECTS, 0, 0}, HAND_MAX_OBJECTS * 4},
    {"num_objects", DS_F_NUM_OBJECTS, ST_I32, 0, {0, 0, 0}, 4},
};


json_t *ds_fields_to_json(unsigned fields) {
    json_t *a = json_array();
    if (!a) return NULL;
    json_array_append_new(a, json_string("image"));
    for (int i = 0; i < DS_NFIELDS; i++)
        if (ds_fields[i].bit == 0 || (fields & ds_fields[i].bit)) json_array_append_new(a, json_string(ds_fields[i].name));
    return a;
}

static void ds_shape_str(char *buf, size_t len, const st_tensor_t *t) {
    size_t o = (size_t)snprintf(buf, len, "%s ", st_dtype_name(t->dtype));
    if (o < len) st_shape_str(buf + o, len - o, t->rank, t->shape);
}

/* Parse a metadata value "[a,b,c]" into v[3]; positive requires > 0. */
static int ds_parse_triplet(const char *shard, const char *key, const char *s, float v[3], int positive,
                            char *err, size_t errlen) {
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    int bad = !json_is_array(j) || json_array_size(j) != 3;
    for (size_t i = 0; !bad && i < 3; i++) {
        json_t *x = json_array_get(j, i);
        if (!json_is_number(x)) { bad = 1; break; }
        double d = json_number_value(x);
        if (!isfinite(d) || (positive && d <= 0) || fabs(d) > 1e6) { bad = 1; break; }
        v[i] = (float)d;
    }
    json_decref(j);
    if (bad)
        return errbuf_set(err, errlen, "%s: __metadata__ \"%s\" must be a JSON array of 3 finite numbers%s",
                          shard, key, positive ? " > 0" : "");
    return 0;
}

/* What one shard holds, validated. */
int ds_check_shard(st_file_t *f, ds_shape_t *s, char *err, size_t errlen) {
    const char *p = st_path(f);
    char sh[200];
    memset(s, 0, sizeof *s);
    /* every tensor must be one we know */
    for (int i = 0; i < st_count(f); i++) {
        const char *nm = st_get(f, i)->name;
        int known = strcmp(nm, "image") == 0;
        for (int k = 0; k < DS_NFIELDS && !known; k++) known = strcmp(nm, ds_fields[k].name) == 0;
        if (!known)
            return errbuf_set(err, errlen, "%s: unknown tensor \"%s\" (expected image, hand_joints, hand_joints_valid, "
                           "has_hand, camera_intrinsics, object_poses, object_ids, num_objects)", p, nm);
    }
    const st_tensor_t *im = st_find(f, "image");
    if (!im) return errbuf_set(err, errlen, "%s: missing required tensor \"image\"", p);
    ds_shape_str(sh, sizeof sh, im);
    if (im->rank != 4)
        return errbuf_set(err, errlen, "%s: tensor \"image\" is %s; expected U8 [N,H,W,3] or BF16/F32 [N,3,H,W]", p, sh);
    if (im->dtype == ST_U8) {
        if (im->shape[3] != 3)
            return errbuf_set(err, errlen, "%s: tensor \"image\" is %s; U8 images must be [N,H,W,3] RGB", p, sh);
        s->h = (int)im->shape[1] == im->shape[1] ? (int)im->shape[1] : -1;
        s->w = (int)im->shape[2] == im->shape[2] ? (int)im->shape[2] : -1;
        s->image_dtype = DT_U8;
    } else if (im->dtype == ST_BF16 || im->dtype == ST_F32) {
        if (im->shape[1] != 3)
            return errbuf_set(err, errlen, "%s: tensor \"image\" is %s; %s images must be [N,3,H,W] normalized", p, sh,
                              st_dtype_name(im->dtype));
        s->h = (int)im->shape[2] == im->shape[2] ? (int)im->shape[2] : -1;
        s->w = (int)im->shape[3] == im->shape[3] ? (int)im->shape[3] : -1;
        s->image_dtype = im->dtype == ST_BF16 ? DT_BF16 : DT_F32;
    } else {
        return errbuf_set(err, errlen, "%s: tensor \"image\" has dtype %s; expected U8 [N,H,W,3] or BF16/F32 [N,3,H,W]", p,
                          st_dtype_name(im->dtype));
    }
    if (s->h < 1 || s->w < 1 || s->h > 65536 || s->w > 65536)
        return errbuf_set(err, errlen, "%s: tensor \"image\" is %s; image height and width must be 1..65536", p, sh);
    s->n = im->shape[0];
    for (int k = 0; k < DS_NFIELDS; k++) {
        const ds_field_t *fd = &ds_fields[k];
        const st_tensor_t *t = st_find(f, fd->name);
        if (!t) {
            if (fd->bit == 0) return errbuf_set(err, errlen, "%s: missing required tensor \"%s\"", p, fd->name);
            continue;
        }
        s->fields |= fd->bit;
        char want[64];
        size_t o = (size_t)snprintf(want, sizeof want, "%s [N", st_dtype_name(fd->dtype));
        for (int d = 0; d < fd->rank; d++) o += (size_t)snprintf(want + o, sizeof want - o, ",%lld", (long long)fd->dims[d]);
        snprintf(want + o, sizeof want - o, "]");
        ds_shape_str(sh, sizeof sh, t);
        int good = t->dtype == fd->dtype && t->rank == fd->rank + 1;
        for (int d = 0; good && d < fd->rank; d++) good = t->shape[d + 1] == fd->dims[d];
        if (!good) return errbuf_set(err, errlen, "%s: tensor \"%s\" is %s; expected %s", p, fd->name, sh, want);
        if (t->shape[0] != s->n)
            return errbuf_set(err, errlen, "%s: tensor \"%s\" has N=%lld but \"image\" has N=%lld", p, fd->name,
                              (long long)t->shape[0], (long long)s->n);
    }
    const char *m = st_meta(f, "mean"), *sd = st_meta(f, "std");
    if (m) {
        if (ds_parse_triplet(p, "mean", m, s->mean, 0, err, errlen) != 0) return -1;
        s->has_mean = 1;
    }
    if (sd) {
        if (ds_parse_triplet(p, "std", sd, s->std, 1, err, errlen) != 0) return -1;
        s->has_std = 1;
    }
    return 0;
}

static int ds_cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ds_is_shard_name(const char *n) {
    size_t l = strlen(n);
    return n[0] != '.' && l > 12 && strcmp(n + l - 12, ".safetensors") == 0;
}

void ds_info_free(ds_info_t *info) {
    if (!info) return;
    free(info->shards);
    memset(info, 0, sizeof *info);
}

int ds_scan(const char *dir, ds_info_t *info, char *err, size_t errlen) {
    memset(info, 0, sizeof *info);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return errbuf_set(err, errlen, "dataset %s: cannot open directory: %s", dir, strerror(errno));
    int rc = ds_scan_at(dfd, dir, info, err, errlen);
    close(dfd);
    return rc;
}

int ds_scan_at(int dirfd, const char *dir, ds_info_t *info, char *err, size_t errlen) {
    memset(info, 0, sizeof *info);
    /* a fresh open file description of the same directory for readdir: dirfd stays the caller's */
    int rfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = rfd >= 0 ? fdopendir(rfd) : NULL;
    if (!d) {
        int e = errno;
        if (rfd >= 0) close(rfd);
        return errbuf_set(err, errlen, "dataset %s: cannot open directory: %s", dir, strerror(e));
    }
    char **names = NULL;
    int nn = 0, cap = 0, rc = -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!ds_is_shard_name(de->d_name)) continue;
        if (strlen(de->d_name) >= DS_NAME_MAX) {
            errbuf_set(err, errlen, "dataset %s: shard name too long: %.80s...", dir, de->d_name);
            goto out;
        }
        if (nn == cap) {
            cap = cap ? 2 * cap : 16;
            char **nw = realloc(names, (size_t)cap * sizeof *nw);
            if (!nw) {
                errbuf_set(err, errlen, "dataset %s: out of memory", dir);
                goto out;
            }
            names = nw;
        }
        if (!(names[nn] = strdup(de->d_name))) {
            errbuf_set(err, errlen, "dataset %s: out of memory", dir);
            goto out;
        }
        nn++;
    }
    if (nn == 0) {
        errbuf_set(err, errlen, "dataset %s: no *.safetensors shards in the directory", dir);
        goto out;
    }
    qsort(names, (size_t)nn, sizeof *names, ds_cmp_name);
    info->shards = calloc((size_t)nn, sizeof *info->shards);
    if (!info->shards) {
        errbuf_set(err, errlen, "dataset %s: out of memory", dir);
        goto out;
    }
    memcpy(info->mean, ds_imagenet_mean, sizeof info->mean);
    memcpy(info->std, ds_imagenet_std, sizeof info->std);
    char path[4096];
    ds_shape_t first = {0};
    for (int i = 0; i < nn; i++) {
        st_file_t *f = st_open_at(dirfd, names[i], dir, err, errlen);
        if (!f) goto out;
        ds_shape_t s;
        int r = ds_check_shard(f, &s, err, errlen);
        uint64_t fb = st_file_size(f);
        snprintf(path, sizeof path, "%s", st_path(f));   /* for the messages below */
        st_close(f);
        if (r != 0) goto out;
        if (i == 0) {
            first = s;
            if (s.has_mean) memcpy(info->mean, s.mean, sizeof info->mean);
            if (s.has_std) memcpy(info->std, s.std, sizeof info->std);
            info->h = s.h;
            info->w = s.w;
            info->fields = s.fields;
        } else {
            if (s.h != first.h || s.w != first.w) {
                errbuf_set(err, errlen, "%s: images are %dx%d but the first shard %s has %dx%d", path, s.h, s.w, names[0],
                           first.h, first.w);
                goto out;
            }
            if (s.fields != first.fields) {
                char a[300], b[300];
                json_t *ja = ds_fields_to_json(s.fields), *jb = ds_fields_to_json(first.fields);
                char *sa = json_dumps(ja, JSON_COMPACT), *sb = json_dumps(jb, JSON_COMPACT);
                snprintf(a, sizeof a, "%s", sa ? sa : "?");
                snprintf(b, sizeof b, "%s", sb ? sb : "?");
                free(sa);
                free(sb);
                json_decref(ja);
                json_decref(jb);
                errbuf_set(err, errlen, "%s: has fields %s but the first shard %s has %s", path, a, names[0], b);
                goto out;
            }
            if ((s.has_mean && memcmp(s.mean, info->mean, sizeof s.mean) != 0) ||
                (s.has_std && memcmp(s.std, info->std, sizeof s.std) != 0)) {
                errbuf_set(err, errlen, "%s: __metadata__ mean/std differ from the first shard %s", path, names[0]);
                goto out;
            }
        }
        ds_shard_t *sh = &info->shards[i];
        snprintf(sh->name, sizeof sh->name, "%s", names[i]);
        sh->n = s.n;
        sh->image_dtype = s.image_dtype;
        sh->file_bytes = fb;
        info->nshards = i + 1;
        if (__builtin_add_overflow(info->n, s.n, &info->n)) {
            errbuf_set(err, errlen, "dataset %s: sample count overflows", dir);
            goto out;
        }
        info->file_bytes += fb;
    }
    if (info->n < 1) {
        errbuf_set(err, errlen, "dataset %s: the shards hold no samples", dir);
        goto out;
    }
    ds_layout_t l;
    info->resident_bytes = ds_layout_for(&l, info);
    if (info->resident_bytes == 0) {
        errbuf_set(err, errlen, "dataset %s: %lld samples of %dx%d: resident size overflows", dir, (long long)info->n,
                   info->h, info->w);
        goto out;
    }
    rc = 0;
out:
    closedir(d);
    for (int i = 0; i < nn; i++) free(names[i]);
    free(names);
    if (rc != 0) ds_info_free(info);
    return rc;
}

/* ---- layout ------------------------------------------------------------------ */
/* Append an array of n*row bytes at the next aligned offset; 0 on overflow. */
static int ds_place(size_t *cursor, size_t *off, int64_t n, size_t row) {
    size_t bytes, start;
    if (__builtin_mul_overflow((size_t)n, row, &bytes)) return -1;
    if (__builtin_add_overflow(*cursor, (size_t)DS_ALIGN - 1, &start)) return -1;
    start &= ~((size_t)DS_ALIGN - 1);
    if (__builtin_add_overflow(start, bytes, cursor)) return -1;
    *off = start;
    return 0;
}

size_t ds_layout(ds_layout_t *l, int64_t n, int h, int w, unsigned fields) {
    memset(l, 0, sizeof *l);
    if (n < 1 || h < 1 || w < 1 || (fields & ~DS_F_ALL)) return 0;
    l->n = n;
    l->h = h;
    l->w = w;
    l->fields = fields | DS_F_JOINTS_VALID | DS_F_HAS_HAND;
    memcpy(l->mean, ds_imagenet_mean, sizeof l->mean);
    memcpy(l->std, ds_imagenet_std, sizeof l->std);
    size_t cur = 0, img_row;
    if (__builtin_mul_overflow((size_t)h * 3 * 2, (size_t)w, &img_row)) return 0;
    int bad = ds_place(&cur, &l->off_images, n, img_row) || ds_place(&cur, &l->off_joints, n, ds_fields[0].row_bytes) ||
              ds_place(&cur, &l->off_valid, n, ds_fields[1].row_bytes) ||
              ds_place(&cur, &l->off_has_hand, n, ds_fields[2].row_bytes);
    if (!bad && (fields & DS_F_INTRINSICS)) bad = ds_place(&cur, &l->off_intrinsics, n, ds_fields[3].row_bytes);
    if (!bad && (fields & DS_F_OBJECT_POSES)) bad = ds_place(&cur, &l->off_object_poses, n, ds_fields[4].row_bytes);
    if (!bad && (fields & DS_F_OBJECT_IDS)) bad = ds_place(&cur, &l->off_object_ids, n, ds_fields[5].row_bytes);
    if (!bad && (fields & DS_F_NUM_OBJECTS)) bad = ds_place(&cur, &l->off_num_objects, n, ds_fields[6].row_bytes);
    if (bad || cur > (size_t)INT64_MAX - DS_ALIGN) {
        memset(l, 0, sizeof *l);
        return 0;
    }
    l->total = (cur + DS_ALIGN - 1) & ~((size_t)DS_ALIGN - 1);
    return l->total;
}

size_t ds_layout_for(ds_layout_t *l, const ds_info_t *info) {
    size_t r = ds_layout(l, info->n, info->h, info->w, info->fields);
    if (r) {
        memcpy(l->mean, info->mean, sizeof l->mean);
        memcpy(l->std, info->std, sizeof l->std);
    }
    return r;
}

json_t *ds_layout_to_json(const ds_layout_t *l) {
    json_t *fields = json_array();
    for (int i = 1; i < DS_NFIELDS && fields; i++)
        if (l->fields & ds_fields[i].bit) json_array_append_new(fields, json_string(ds_fields[i].name));
    return json_pack("{s:I, s:i, s:i, s:o, s:[f,f,f], s:[f,f,f], s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}, s:I}",
                     "n", (json_int_t)l->n, "h", l->h, "w", l->w, "fields", fields,
                     "mean", (double)l->mean[0], (double)l->mean[1], (double)l->mean[2],
                     "std", (double)l->std[0], (double)l->std[1], (double)l->std[2],
                     "offsets", "images", (json_int_t)l->off_images, "hand_joints", (json_int_t)l->off_joints,
                     "hand_joints_valid", (json_int_t)l->off_valid, "has_hand", (json_int_t)l->off_has_hand,
                     "camera_intrinsics", (json_int_t)l->off_intrinsics,
                     "object_poses", (json_int_t)l->off_object_poses,
                     "object_ids", (json_int_t)l->off_object_ids, "num_objects", (json_int_t)l->off_num_objects,
                     "total", (json_int_t)l->total);
}

int ds_layout_from_json(const json_t *j, ds_layout_t *l, char *err, size_t errlen) {
    memset(l, 0, sizeof *l);
    json_t *jn = json_object_get(j, "n"), *jh = json_object_get(j, "h"), *jw = json_object_get(j, "w"),
           *jf = json_object_get(j, "fields"), *jm = json_object_get(j, "mean"), *js = json_object_get(j, "std"),
           *jo = json_object_get(j, "offsets"), *jt = json_object_get(j, "total");
    if (!json_is_object(j) || !json_is_integer(jn) || !json_is_integer(jh) || !json_is_integer(jw) ||
        !json_is_array(jf) || !json_is_array(jm) || !json_is_array(js) || !json_is_object(jo) || !json_is_integer(jt))
        return errbuf_set(err, errlen, "dataset layout: needs n, h, w, fields, mean, std, offsets, total");
    unsigned fields = 0;
    size_t i;
    json_t *x;
    json_array_foreach(jf, i, x) {
        const char *s = json_string_value(x);
        int found = 0;
        for (int k = 1; k < DS_NFIELDS && s; k++)
            if (strcmp(s, ds_fields[k].name) == 0) { fields |= ds_fields[k].bit; found = 1; }
        if (!found) return errbuf_set(err, errlen, "dataset layout: unknown field %s", s ? s : "(not a string)");
    }
    json_int_t n = json_integer_value(jn), h = json_integer_value(jh), w = json_integer_value(jw);
    if (n < 1 || h < 1 || w < 1 || h > 65536 || w > 65536 || ds_layout(l, n, (int)h, (int)w, fields) == 0)
        return errbuf_set(err, errlen, "dataset layout: bad sizes n=%lld h=%lld w=%lld", (long long)n, (long long)h,
                          (long long)w);
    if (json_array_size(jm) != 3 || json_array_size(js) != 3)
        return errbuf_set(err, errlen, "dataset layout: mean and std need 3 numbers");
    for (int c = 0; c < 3; c++) {
        json_t *a = json_array_get(jm, (size_t)c), *b = json_array_get(js, (size_t)c);
        if (!json_is_number(a) || !json_is_number(b) || !(json_number_value(b) > 0))
            return errbuf_set(err, errlen, "dataset layout: bad mean/std");
        l->mean[c] = (float)json_number_value(a);
        l->std[c] = (float)json_number_value(b);
    }
    static const char *keys[8] = {"images", "hand_joints", "hand_joints_valid", "has_hand", "camera_intrinsics",
                                  "object_poses", "object_ids", "num_objects"};
    size_t want[8] = {l->off_images, l->off_joints, l->off_valid, l->off_has_hand, l->off_intrinsics,
                      l->off_object_poses, l->off_object_ids, l->off_num_objects};
    for (int k = 0; k < 8; k++) {
        json_t *o = json_object_get(jo, keys[k]);
        if (!json_is_integer(o) || (size_t)json_integer_value(o) != want[k])
            return errbuf_set(err, errlen, "dataset layout: offset of %s does not match this build's layout", keys[k]);
    }
    if ((size_t)json_integer_value(jt) != l->total)
        return errbuf_set(err, errlen, "dataset layout: total %lld does not match this build's layout (%zu)",
                          (long long)json_integer_value(jt), l->total);
    return 0;
}

/* ---- writing ----------------------------------------------------------------- */
int ds_write_shard(const char *path, const ds_shard_data_t *d, char *err, size_t errlen) {
    if (d->n < 0 || d->h < 1 || d->w < 1)
        return errbuf_set(err, errlen, "%s: bad shard sizes n=%lld h=%d w=%d", path, (long long)d->n, d->h, d->w);
    if (!d->joints || (!d->image && d->n > 0))
        return errbuf_set(err, errlen, "%s: image and hand_joints are required", path);
    if (d->image_dtype != DT_U8 && d->image_dtype != DT_BF16 && d->image_dtype != DT_F32)
        return errbuf_set(err, errlen, "%s: image dtype %s not supported (u8, bf16, f32)", path, dtype_name(d->image_dtype));
    st_writer_t *w = st_writer_new();
    if (!w) return errbuf_set(err, errlen, "%s: out of memory", path);
    int64_t img_u8[4] = {d->n, d->h, d->w, 3}, img_chw[4] = {d->n, 3, d->h, d->w};
    st_writer_add_ref(w, "image", st_dtype_from_dt(d->image_dtype), 4, d->image_dtype == DT_U8 ? img_u8 : img_chw,
                      d->image);
    const void *arr[DS_NFIELDS] = {d->joints, d->joints_valid, d->has_hand, d->intrinsics, d->object_poses,
                                   d->object_ids, d->num_objects};
    for (int k = 0; k < DS_NFIELDS; k++) {
        if (!arr[k]) continue;
        int64_t shape[4] = {d->n, 0, 0, 0};
        for (int q = 0; q < ds_fields[k].rank; q++) shape[q + 1] = ds_fields[k].dims[q];
        st_writer_add_ref(w, ds_fields[k].name, ds_fields[k].dtype, ds_fields[k].rank + 1, shape, arr[k]);
    }
    char buf[128];
    if (d->mean) {
        snprintf(buf, sizeof buf, "[%.9g,%.9g,%.9g]", (double)d->mean[0], (double)d->mean[1], (double)d->mean[2]);
        st_writer_meta(w, "mean", buf);
    }
    if (d->std) {
        snprintf(buf, sizeof buf, "[%.9g,%.9g,%.9g]", (double)d->std[0], (double)d->std[1], (double)d->std[2]);
        st_writer_meta(w, "std", buf);
    }
    st_writer_meta(w, "format", "traind-dataset");
    int rc = st_writer_write(w, path, err, errlen);
    st_writer_free(w);
    return rc;
}
