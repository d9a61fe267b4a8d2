/* tests/unit/test_safetensors.c — safetensors round trip of every dtype and
 * rejection of malformed files with a precise message; fsutil basics. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/fsutil.h"
#include "store/safetensors.h"
#include "tests/tap.h"

static char dir[256];

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

/* Write 8-byte length `declared` (or strlen(hdr) when declared < 0), the
 * header text, then `ndata` bytes of data. */
static void write_raw(const char *name, const char *hdr, long long declared, size_t ndata) {
    char p[512];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    if (!f) { perror(p); exit(1); }
    unsigned long long L = declared < 0 ? strlen(hdr) : (unsigned long long)declared;
    for (int i = 0; i < 8; i++) fputc((int)((L >> (8 * i)) & 0xff), f);
    fwrite(hdr, 1, strlen(hdr), f);
    for (size_t i = 0; i < ndata; i++) fputc((int)(i & 0xff), f);
    fclose(f);
}

/* Expect st_open to fail with a message containing every needle (NULL-terminated list). */
static void expect_reject(const char *name, const char *what, const char *n1, const char *n2) {
    char p[512], err[512] = "";
    path_of(p, sizeof p, name);
    st_file_t *f = st_open(p, err, sizeof err);
    int good = f == NULL && strstr(err, p) && (!n1 || strstr(err, n1)) && (!n2 || strstr(err, n2));
    ok(good, "reject %s", what);
    if (!good) diag("  message: %s", err);
    st_close(f);
}

static void test_round_trip(void) {
    st_writer_t *w = st_writer_new();
    ok(w != NULL, "writer created");
    uint8_t buf[ST_NDTYPES][64];
    for (int d = 0; d < ST_NDTYPES; d++)
        for (int i = 0; i < 64; i++) buf[d][i] = (uint8_t)(d * 31 + i * 7 + 1);
    /* every dtype with a shape of 3*2 = 6 elements (6*8 = 48 bytes max) */
    for (int d = 0; d < ST_NDTYPES; d++) {
        char name[32];
        snprintf(name, sizeof name, "t_%s", st_dtype_name((st_dtype_t)d));
        int64_t shape[2] = {3, 2};
        ok(st_writer_add(w, name, (st_dtype_t)d, 2, shape, buf[d]) == 0, "add %s", name);
    }
    int64_t s0[1] = {0}, s8[8] = {1, 2, 1, 1, 1, 1, 1, 3};
    float sc = 3.5f;
    ok(st_writer_add(w, "scalar", ST_F32, 0, NULL, &sc) == 0, "add rank-0 scalar");
    ok(st_writer_add(w, "empty", ST_F32, 1, s0, NULL) == 0, "add empty tensor");
    float r8[6] = {1, 2, 3, 4, 5, 6};
    ok(st_writer_add_ref(w, "rank8", ST_F32, 8, s8, r8) == 0, "add rank-8 by reference");
    ok(st_writer_meta(w, "format", "pt") == 0 && st_writer_meta(w, "mean", "[0.5,0.5,0.5]") == 0,
       "metadata set");
    ok(st_writer_meta(w, "format", "traind") == 0, "metadata replaced");
    char p[512], err[512] = "";
    path_of(p, sizeof p, "rt.safetensors");
    ok(st_writer_write(w, p, err, sizeof err) == 0, "write: %s", err);
    st_writer_free(w);

    /* no temporary file left behind */
    DIR *dd = opendir(dir);
    int tmps = 0;
    struct dirent *de;
    while ((de = readdir(dd))) tmps += strstr(de->d_name, ".tmp.") != NULL;
    closedir(dd);
    ok(tmps == 0, "no temporary file left");

    st_file_t *f = st_open(p, err, sizeof err);
    ok(f != NULL, "reopen: %s", err);
    if (!f) return;
    ok(st_count(f) == ST_NDTYPES + 3, "tensor count %d", st_count(f));
    ok(st_data_start(f) % 8 == 0, "data area 8-byte aligned");
    int aligned = 1;
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor_t *t = st_get(f, i);
        if (t->offset % st_dtype_size(t->dtype)) aligned = 0;
    }
    ok(aligned, "every tensor aligned to its element size");
    for (int d = 0; d < ST_NDTYPES; d++) {
        char name[32];
        snprintf(name, sizeof name, "t_%s", st_dtype_name((st_dtype_t)d));
        const st_tensor_t *t = st_find(f, name);
        uint8_t got[64];
        int good = t && t->dtype == (st_dtype_t)d && t->rank == 2 && t->shape[0] == 3 && t->shape[1] == 2 &&
                   t->numel == 6 && t->nbytes == 6 * st_dtype_size((st_dtype_t)d) &&
                   st_read(f, t, got, err, sizeof err) == 0 && memcmp(got, buf[d], t->nbytes) == 0;
        ok(good, "round trip %s", name);
        ok(st_dtype_from_name(st_dtype_name((st_dtype_t)d)) == d, "dtype name %s", st_dtype_name((st_dtype_t)d));
    }
    const st_tensor_t *t = st_find(f, "scalar");
    float v = 0;
    ok(t && t->rank == 0 && t->numel == 1 && st_read(f, t, &v, err, sizeof err) == 0 && v == 3.5f, "scalar");
    t = st_find(f, "empty");
    ok(t && t->numel == 0 && t->nbytes == 0 && st_read(f, t, NULL, err, sizeof err) == 0, "empty tensor");
    t = st_find(f, "rank8");
    float r8b[6] = {0};
    ok(t && t->rank == 8 && t->numel == 6 && st_read(f, t, r8b, err, sizeof err) == 0 && memcmp(r8, r8b, 24) == 0,
       "rank 8");
    /* ranged reads */
    float part[2];
    ok(t && st_read_range(f, t, 8, 8, part, err, sizeof err) == 0 && part[0] == 3 && part[1] == 4, "read_range");
    ok(t && st_read_range(f, t, 20, 8, part, err, sizeof err) != 0 && strstr(err, "outside"),
       "read_range past the tensor refused: %s", err);
    ok(st_find(f, "nope") == NULL, "find missing name");
    ok(st_get(f, -1) == NULL && st_get(f, st_count(f)) == NULL, "get out of range");
    ok(st_meta(f, "format") && strcmp(st_meta(f, "format"), "traind") == 0, "metadata value");
    ok(st_meta(f, "absent") == NULL, "metadata missing key");
    ok(st_meta_count(f) == 2 && strcmp(st_meta_key(f, 0), "format") == 0 && strcmp(st_meta_key(f, 1), "mean") == 0 &&
       strcmp(st_meta_value(f, 1), "[0.5,0.5,0.5]") == 0, "metadata iteration in key order");
    st_close(f);
}

static void test_read_f32(void) {
    /* bf16, f16 and f64 converted to fp32 */
    uint16_t bf[4] = {0x3f80, 0xc040, 0x0000, 0x7f80};          /* 1, -3, 0, inf */
    uint16_t hf[5] = {0x3c00, 0xc200, 0x0001, 0x7bff, 0x3555};  /* 1, -3, 2^-24, 65504, ~0.333 */
    double df[2] = {0.25, -1e3};
    st_writer_t *w = st_writer_new();
    int64_t s4[1] = {4}, s5[1] = {5}, s2[1] = {2};
    st_writer_add(w, "bf", ST_BF16, 1, s4, bf);
    st_writer_add(w, "hf", ST_F16, 1, s5, hf);
    st_writer_add(w, "df", ST_F64, 1, s2, df);
    st_writer_add(w, "ii", ST_I32, 1, s2, (int32_t[2]){1, 2});
    char p[512], err[512];
    path_of(p, sizeof p, "conv.safetensors");
    ok(st_writer_write(w, p, err, sizeof err) == 0, "write conversions: %s", err);
    st_writer_free(w);
    st_file_t *f = st_open(p, err, sizeof err);
    if (!ok(f != NULL, "open conversions")) return;
    float o[5];
    ok(st_read_f32(f, st_find(f, "bf"), o, err, sizeof err) == 0 && o[0] == 1 && o[1] == -3 && o[2] == 0 &&
       isinf(o[3]), "bf16 -> f32");
    ok(st_read_f32(f, st_find(f, "hf"), o, err, sizeof err) == 0 && o[0] == 1 && o[1] == -3 &&
       o[2] == 5.9604644775390625e-8f && o[3] == 65504 && fabsf(o[4] - 0.33325195f) < 1e-7f, "f16 -> f32");
    ok(st_read_f32(f, st_find(f, "df"), o, err, sizeof err) == 0 && o[0] == 0.25f && o[1] == -1000, "f64 -> f32");
    ok(st_read_f32(f, st_find(f, "ii"), o, err, sizeof err) != 0 && strstr(err, "\"ii\"") &&
       strstr(err, "not a floating type"), "i32 refused by read_f32: %s", err);
    st_close(f);
}

static void test_writer_errors(void) {
    st_writer_t *w = st_writer_new();
    int64_t s[1] = {2}, neg[1] = {-1}, huge[2] = {(int64_t)1 << 62, 16};
    float d[2] = {1, 2};
    ok(st_writer_add(w, "a", ST_F32, 1, s, d) == 0, "writer add a");
    ok(st_writer_add(w, "a", ST_F32, 1, s, d) != 0, "writer refuses a duplicate name");
    ok(st_writer_add(w, "n", ST_F32, 1, neg, d) != 0, "writer refuses a negative dim");
    ok(st_writer_add(w, "h", ST_F32, 2, huge, d) != 0, "writer refuses an overflowing size");
    ok(st_writer_add(w, "__metadata__", ST_F32, 1, s, d) != 0, "writer refuses a reserved name");
    ok(st_writer_add(w, "r", ST_F32, 9, huge, d) != 0, "writer refuses rank 9");
    char p[512], err[512] = "";
    path_of(p, sizeof p, "werr.safetensors");
    ok(st_writer_write(w, p, err, sizeof err) != 0 && strstr(err, "\"a\" added twice"),
       "write reports the first error: %s", err);
    ok(access(p, F_OK) != 0, "nothing written after an error");
    st_writer_free(w);
    path_of(p, sizeof p, "no/such/dir/x.safetensors");
    w = st_writer_new();
    ok(st_writer_write(w, p, err, sizeof err) != 0 && strstr(err, "x.safetensors"), "unwritable path: %s", err);
    st_writer_free(w);
}

static void test_rejections(void) {
    char p[512], err[512];
    /* a good small file, then truncated copies of it */
    write_raw("good.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", -1, 16);
    path_of(p, sizeof p, "good.safetensors");
    st_file_t *f = st_open(p, err, sizeof err);
    ok(f != NULL, "hand-written good file accepted: %s", f ? "" : err);
    st_close(f);

    write_raw("short.safetensors", "", 0, 0);
    path_of(p, sizeof p, "short.safetensors");
    if (truncate(p, 5) != 0) diag("truncate %s failed", p);
    expect_reject("short.safetensors", "a 5-byte file", "truncated", NULL);
    write_raw("trunc.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", -1, 10);
    expect_reject("trunc.safetensors", "truncated data", "\"a\"", "run past the end");
    write_raw("beyond.safetensors", "{}", 5000, 0);
    expect_reject("beyond.safetensors", "header length beyond the file", "beyond the end of the file", NULL);
    write_raw("huge.safetensors", "{}", 1LL << 40, 0);
    expect_reject("huge.safetensors", "header length over 100 MB", "exceeds the limit", NULL);
    write_raw("badjson.safetensors", "{\"a\":{\"dtype\":\"F32\",", -1, 0);
    expect_reject("badjson.safetensors", "bad JSON", "not valid JSON", NULL);
    write_raw("array.safetensors", "[1,2,3]", -1, 0);
    expect_reject("array.safetensors", "non-object header", "not a JSON object", NULL);
    write_raw("entry.safetensors", "{\"a\":[1]}", -1, 0);
    expect_reject("entry.safetensors", "non-object entry", "\"a\"", "not a JSON object");
    write_raw("dtype.safetensors", "{\"w\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,1]}}", -1, 1);
    expect_reject("dtype.safetensors", "unknown dtype", "\"w\"", "unknown dtype \"Q7\"");
    write_raw("nodtype.safetensors", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", -1, 1);
    expect_reject("nodtype.safetensors", "missing dtype", "\"w\"", "dtype");
    write_raw("extra.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", -1, 1);
    expect_reject("extra.safetensors", "unknown key in an entry", "\"w\"", "unknown key \"x\"");
    write_raw("size.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", -1, 12);
    expect_reject("size.safetensors", "shape/size mismatch", "\"w\"", "hold 12 bytes but F32 [2,2] needs 16");
    write_raw("overlap.safetensors",
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", -1, 12);
    expect_reject("overlap.safetensors", "overlapping offsets", "\"b\"", "overlap tensor \"a\"");
    write_raw("same.safetensors",
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8);
    expect_reject("same.safetensors", "two tensors on the same bytes", "overlap", NULL);
    write_raw("gap.safetensors",
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", -1, 20);
    expect_reject("gap.safetensors", "gap between tensors", "\"b\"", "gap of 4 bytes");
    write_raw("gap0.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", -1, 4);
    expect_reject("gap0.safetensors", "gap at the start", "\"a\"", "gap of 2 bytes");
    write_raw("tail.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", -1, 6);
    expect_reject("tail.safetensors", "bytes after the last tensor", "4 bytes after", NULL);
    write_raw("past.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", -1, 4);
    expect_reject("past.safetensors", "offsets past the end", "\"a\"", "run past the end");
    write_raw("overflow.safetensors",
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4611686018427387904],"
              "\"data_offsets\":[0,0]}}", -1, 0);
    expect_reject("overflow.safetensors", "huge dims that overflow", "\"a\"", "overflows");
    write_raw("overflow2.safetensors",
              "{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", -1, 0);
    expect_reject("overflow2.safetensors", "numel*size overflow", "\"a\"", "overflows");
    write_raw("neg.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-2],\"data_offsets\":[0,0]}}", -1, 0);
    expect_reject("neg.safetensors", "negative dims", "\"a\"", "shape[1] = -2 is negative");
    write_raw("frac.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", -1, 4);
    expect_reject("frac.safetensors", "non-integer dim", "\"a\"", "not an integer");
    write_raw("rank.safetensors",
              "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", -1, 1);
    expect_reject("rank.safetensors", "rank 9", "\"a\"", "rank 9");
    write_raw("negoff.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", -1, 1);
    expect_reject("negoff.safetensors", "negative offsets", "\"a\"", "bad data_offsets");
    write_raw("offs3.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", -1, 1);
    expect_reject("offs3.safetensors", "three offsets", "\"a\"", "[begin, end]");
    write_raw("dup.safetensors",
              "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
              "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", -1, 2);
    expect_reject("dup.safetensors", "duplicated names", "duplicate tensor name", NULL);
    write_raw("meta.safetensors", "{\"__metadata__\":{\"k\":1}}", -1, 0);
    expect_reject("meta.safetensors", "metadata non-string", "__metadata__ \"k\" is not a string", NULL);
    write_raw("meta2.safetensors", "{\"__metadata__\":[\"k\"]}", -1, 0);
    expect_reject("meta2.safetensors", "metadata non-object", "__metadata__ is not a JSON object", NULL);
    write_raw("trail.safetensors", "{} x", -1, 0);
    expect_reject("trail.safetensors", "garbage after the JSON", "not valid JSON", NULL);

    /* a file that is not safetensors (a token, /etc/passwd) shows none of its bytes */
    path_of(p, sizeof p, "token.safetensors");
    FILE *tf = fopen(p, "wb");
    if (tf) { fputs("s3cretTOKEN-abcdef0123456789\n", tf); fclose(tf); }
    unsigned long long hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | (unsigned char)"s3cretTO"[i];
    char num[32], num2[32];
    snprintf(num, sizeof num, "%llu", hl);
    snprintf(num2, sizeof num2, "%llx", hl);
    f = st_open(p, err, sizeof err);
    ok(!f && strstr(err, "header length") && !strstr(err, num) && !strstr(err, num2) && !strstr(err, "s3cret") &&
       !strstr(err, "TOKEN"), "a token file: the header length (its first 8 bytes) is not shown: %s", err);
    st_close(f);
    path_of(p, sizeof p, "passwd.safetensors");
    tf = fopen(p, "wb");
    if (tf) { fputs("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n", tf); fclose(tf); }
    f = st_open(p, err, sizeof err);
    ok(!f && !strstr(err, "root:x") && !strstr(err, "bash"), "a passwd file: nothing of it shown: %s", err);
    st_close(f);
    write_raw("secret.safetensors", "SECRET-VALUE-42 and more text", -1, 0);
    expect_reject("secret.safetensors", "a header that is not JSON", "not valid JSON", "at byte");
    path_of(p, sizeof p, "secret.safetensors");
    f = st_open(p, err, sizeof err);
    ok(!f && !strstr(err, "SECRET") && !strstr(err, "VALUE"), "invalid JSON: jansson's quote of the bytes is not shown: %s",
       err);
    st_close(f);
    write_raw("dupkey.safetensors", "{\"SECRETKEY\":{},\"SECRETKEY\":{}}", -1, 0);
    path_of(p, sizeof p, "dupkey.safetensors");
    f = st_open(p, err, sizeof err);
    ok(!f && strstr(err, "duplicate") && !strstr(err, "SECRETKEY"), "a duplicate key is not quoted: %s", err);
    st_close(f);
    expect_reject("missing.safetensors", "missing file", "cannot open", NULL);
    /* padding with spaces and an empty file with no tensors are fine */
    write_raw("pad.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}     ", -1, 3);
    path_of(p, sizeof p, "pad.safetensors");
    f = st_open(p, err, sizeof err);
    ok(f && st_count(f) == 1, "space-padded header accepted");
    st_close(f);
    write_raw("empty.safetensors", "{}", -1, 0);
    path_of(p, sizeof p, "empty.safetensors");
    f = st_open(p, err, sizeof err);
    ok(f && st_count(f) == 0, "file with no tensors accepted");
    st_close(f);
}

/* Every truncation and many random corruptions of a valid file: st_open
 * either refuses with a message naming the file or returns tensors that lie
 * inside the file and tile its data area; never a crash (ASan watches). */
static void put_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fwrite(data, 1, n, f);
    fclose(f);
}

static void test_fuzz(void) {
    st_writer_t *w = st_writer_new();
    int64_t s1[2] = {3, 5}, s2[1] = {7}, s3[3] = {2, 2, 2};
    float a[15] = {0};
    uint16_t b[7] = {0};
    uint8_t c[8] = {0};
    st_writer_add(w, "alpha", ST_F32, 2, s1, a);
    st_writer_add(w, "beta", ST_BF16, 1, s2, b);
    st_writer_add(w, "gamma", ST_U8, 3, s3, c);
    st_writer_meta(w, "k", "v");
    char p[512], q[512], err[512];
    path_of(p, sizeof p, "fuzz.safetensors");
    path_of(q, sizeof q, "fuzzed.safetensors");
    st_writer_write(w, p, err, sizeof err);
    st_writer_free(w);
    size_t len;
    char *orig = fs_read_file(p, 1 << 20, &len, err, sizeof err);
    if (!ok(orig != NULL, "fuzz base file")) return;
    int trunc_ok = 1;
    for (size_t n = 0; n < len; n++) {
        put_file(q, orig, n);
        st_file_t *f = st_open(q, err, sizeof err);
        if (f || !strstr(err, q)) trunc_ok = 0;
        st_close(f);
    }
    ok(trunc_ok, "every truncation of a valid file is refused with a message naming it");
    char *buf = malloc(len);
    uint32_t x = 2463534242u;
    int consistent = 1, refused = 0, accepted = 0;
    for (int it = 0; it < 2000; it++) {
        memcpy(buf, orig, len);
        int flips = 1 + it % 3;
        for (int k = 0; k < flips; k++) {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            size_t pos = x % (len < 200 ? len : 200);           /* mostly the length and the header */
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            buf[pos] = (it % 2) ? (char)(x & 0xff) : "0123456789[]{},:\"\\ -eE"[x % 22];
        }
        put_file(q, buf, len);
        st_file_t *f = st_open(q, err, sizeof err);
        if (!f) {
            refused++;
            if (!strstr(err, q)) consistent = 0;
            continue;
        }
        accepted++;
        uint64_t pos = st_data_start(f);
        for (int i = 0; i < st_count(f); i++) {
            const st_tensor_t *t = st_get(f, i);
            if (t->offset != pos || t->offset + t->nbytes > st_file_size(f) ||
                t->nbytes != (size_t)t->numel * st_dtype_size(t->dtype) || st_find(f, t->name) != t)
                consistent = 0;
            pos += t->nbytes;
            char tmp[64];
            if (t->nbytes <= sizeof tmp && st_read(f, t, tmp, err, sizeof err) != 0) consistent = 0;
        }
        if (pos != st_file_size(f)) consistent = 0;
        st_close(f);
    }
    ok(consistent, "2000 corrupted files: refused with a message or internally consistent (%d refused, %d accepted)",
       refused, accepted);
    free(buf);
    free(orig);
}

static void test_fsutil(void) {
    char p[512], q[512], tmp[512], err[512];
    path_of(p, sizeof p, "a/b/c");
    ok(fs_mkdir_p(p, 0755, err, sizeof err) == 0 && fs_mkdir_p(p, 0755, err, sizeof err) == 0, "mkdir -p twice");
    path_of(q, sizeof q, "a/b/c/f.txt");
    ok(fs_write_file_atomic(q, "hello", 5, err, sizeof err) == 0, "atomic write");
    ok(fs_write_file_atomic(q, "world!", 6, err, sizeof err) == 0, "atomic overwrite");
    size_t len = 0;
    char *s = fs_read_file(q, 100, &len, err, sizeof err);
    ok(s && len == 6 && strcmp(s, "world!") == 0, "read back");
    free(s);
    ok(fs_read_file(q, 3, &len, err, sizeof err) == NULL && strstr(err, "limit"), "read limit: %s", err);
    ok(fs_file_size(q, err, sizeof err) == 6, "file size");
    ok(fs_mkdir_p(q, 0755, err, sizeof err) != 0 && strstr(err, "not a directory"), "mkdir over a file: %s", err);

    /* directory replacement: fresh, then over an existing one */
    path_of(p, sizeof p, "ckpt/100");
    ok(fs_make_tmpdir_for(p, tmp, sizeof tmp, err, sizeof err) == 0 && strstr(tmp, "/ckpt/.100.tmp."), "tmpdir %s", tmp);
    char f1[600];
    snprintf(f1, sizeof f1, "%s/model.safetensors", tmp);
    fs_write_file_atomic(f1, "v1", 2, err, sizeof err);
    ok(fs_rename_dir_atomic(tmp, p, err, sizeof err) == 0, "rename dir into place: %s", err);
    snprintf(f1, sizeof f1, "%s/model.safetensors", p);
    s = fs_read_file(f1, 100, NULL, err, sizeof err);
    ok(s && strcmp(s, "v1") == 0, "content in place");
    free(s);
    ok(access(tmp, F_OK) != 0, "temporary dir gone");
    ok(fs_make_tmpdir_for(p, tmp, sizeof tmp, err, sizeof err) == 0, "second tmpdir");
    snprintf(f1, sizeof f1, "%s/model.safetensors", tmp);
    fs_write_file_atomic(f1, "v2", 2, err, sizeof err);
    ok(fs_rename_dir_atomic(tmp, p, err, sizeof err) == 0, "replace existing dir: %s", err);
    snprintf(f1, sizeof f1, "%s/model.safetensors", p);
    s = fs_read_file(f1, 100, NULL, err, sizeof err);
    ok(s && strcmp(s, "v2") == 0, "new content in place");
    free(s);
    ok(access(tmp, F_OK) != 0, "old content removed");
    path_of(p, sizeof p, "a");
    path_of(q, sizeof q, "sym");
    if (symlink("/", q) != 0) diag("symlink %s failed", q);
    ok(fs_rm_rf(p, err, sizeof err) == 0 && access(p, F_OK) != 0, "rm -rf tree");
    ok(fs_rm_rf(q, err, sizeof err) == 0 && access("/", F_OK) == 0, "rm -rf symlink only removes the link");
    ok(fs_rm_rf(p, err, sizeof err) == 0, "rm -rf missing path is fine");
    char j[16];
    ok(fs_join(j, sizeof j, "ab/", "c") == 0 && strcmp(j, "ab/c") == 0 && fs_join(j, 4, "ab", "cd") != 0, "join");
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/test_safetensors.XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    test_round_trip();
    test_read_f32();
    test_writer_errors();
    test_rejections();
    test_fuzz();
    test_fsutil();
    char err[256];
    if (!getenv("KEEP")) fs_rm_rf(dir, err, sizeof err);
    return tap_done();
}
