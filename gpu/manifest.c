/* gpu/manifest.c — parsing import manifests into frames (see gpu/manifest.h).
 *
 * Owns: the JSON Lines format and its defaults line, the FreiHAND layout,
 * every check of a label (shape, finiteness, units, K), and the messages
 * that name the manifest line. No file is opened here: gpu/import.c reads
 * the files beneath the dataset roots and hands the bytes over.
 * Also the process's localeconv() (below): jansson calls it for every real
 * number it reads, and glibc's rewrites one static struct on each call, which
 * the parse threads then fight over.
 */
#define _GNU_SOURCE   /* RTLD_NEXT */
#include "gpu/manifest.h"
#include "store/errbuf.h"
#include "store/par.h"

#include <dlfcn.h>
#include <jansson.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MF_MAX_LINE ((size_t)1 << 20)

/* ---- localeconv ---------------------------------------------------------------------
 * jansson converts each real number with strtod after asking localeconv() for the
 * decimal point; glibc's localeconv() fills one static struct lconv on every call,
 * so parse threads writing it at once bounce its cache lines between cores: on this
 * project's 2-core machine an 8000-line manifest parsed in 0.111-0.114 s on two
 * threads against 0.092-0.100 s with the definition below (one thread: 0.17-0.22 s
 * either way). This definition, in the executable, is the one every library's call
 * binds to: glibc's answer, copied once and then only read. It stays right as long
 * as the process's locale does not change after the first call — traind never calls
 * setlocale (the C locale throughout), and the struct is the C locale's. */
static struct lconv mf_lconv;
static pthread_once_t mf_lconv_once = PTHREAD_ONCE_INIT;

static void mf_lconv_fill(void) {
    struct lconv *(*libc)(void) = (struct lconv *(*)(void))dlsym(RTLD_NEXT, "localeconv");
    struct lconv *l = libc ? libc() : NULL;
    if (l) {
        mf_lconv = *l;
        return;
    }
    /* no C library's to ask (not with glibc): the C locale's, as POSIX gives them */
    static char dot[] = ".", none[] = "";
    mf_lconv = (struct lconv){.decimal_point = dot, .thousands_sep = none, .grouping = none,
                              .int_curr_symbol = none, .currency_symbol = none, .mon_decimal_point = none,
                              .mon_thousands_sep = none, .mon_grouping = none, .positive_sign = none,
                              .negative_sign = none, .int_frac_digits = CHAR_MAX, .frac_digits = CHAR_MAX,
                              .p_cs_precedes = CHAR_MAX, .p_sep_by_space = CHAR_MAX, .n_cs_precedes = CHAR_MAX,
                              .n_sep_by_space = CHAR_MAX, .p_sign_posn = CHAR_MAX, .n_sign_posn = CHAR_MAX,
                              .int_p_cs_precedes = CHAR_MAX, .int_p_sep_by_space = CHAR_MAX,
                              .int_n_cs_precedes = CHAR_MAX, .int_n_sep_by_space = CHAR_MAX,
                              .int_p_sign_posn = CHAR_MAX, .int_n_sign_posn = CHAR_MAX};
}

struct lconv *localeconv(void) {
    pthread_once(&mf_lconv_once, mf_lconv_fill);
    return &mf_lconv;
}

void manifest_free(manifest_t *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->frames[i].image);
        free(m->frames[i].error);
    }
    free(m->frames);
    m->frames = NULL;
    m->n = m->n_errors = 0;
}

/* Records why frame f cannot be imported (m->n_errors is counted at the end:
 * frames are parsed by several threads). */
__attribute__((format(printf, 2, 3)))
static void mf_fail(mf_frame_t *f, const char *fmt, ...) {
    if (f->error) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    f->error = strdup(buf);
    if (!f->error) f->error = strdup("out of memory");   /* still non-NULL in practice */
}

static void mf_count_errors(manifest_t *m) {
    m->n_errors = 0;
    for (size_t i = 0; i < m->n; i++) m->n_errors += m->frames[i].error != NULL;
}

int manifest_check_K(const double K[9], char *why, size_t len) {
    double mx = 0;
    for (int i = 0; i < 9; i++) {
        if (!isfinite(K[i]) || !isfinite((float)K[i])) return errbuf_set(why, len, "K has a non-finite entry");
        if (fabs(K[i]) > mx) mx = fabs(K[i]);
    }
    double det = K[0] * (K[4] * K[8] - K[5] * K[7]) - K[1] * (K[3] * K[8] - K[5] * K[6]) +
                 K[2] * (K[3] * K[7] - K[4] * K[6]);
    if (!(mx > 0) || !(fabs(det) > 1e-9 * mx * mx * mx))
        return errbuf_set(why, len, "K is singular (determinant %.3g)", det);
    return 0;
}

/* A 3x3 matrix as [[a,b,c],[d,e,f],[g,h,i]]. 0 or -1 with why. */
static int mf_matrix3(const json_t *v, double K[9], char *why, size_t len) {
    if (!json_is_array(v) || json_array_size(v) != 3)
        return errbuf_set(why, len, "K must be a 3x3 array [[fx,0,cx],[0,fy,cy],[0,0,1]]");
    for (int r = 0; r < 3; r++) {
        const json_t *row = json_array_get(v, (size_t)r);
        if (!json_is_array(row) || json_array_size(row) != 3)
            return errbuf_set(why, len, "K row %d must be an array of 3 numbers", r);
        for (int c = 0; c < 3; c++) {
            const json_t *x = json_array_get(row, (size_t)c);
            if (!json_is_number(x)) return errbuf_set(why, len, "K[%d][%d] is not a number", r, c);
            K[r * 3 + c] = json_number_value(x);
        }
    }
    return manifest_check_K(K, why, len);
}

/* 21 [x,y,z] triples, times unit, into float. */
static int mf_joints(const json_t *v, double unit, float J[HAND_JOINTS][3], char *why, size_t len) {
    if (!json_is_array(v)) return errbuf_set(why, len, "joints_3d must be an array of %d [x,y,z]", HAND_JOINTS);
    if (json_array_size(v) != HAND_JOINTS)
        return errbuf_set(why, len, "joints_3d has %zu joints, expected %d", json_array_size(v), HAND_JOINTS);
    for (int j = 0; j < HAND_JOINTS; j++) {
        const json_t *p = json_array_get(v, (size_t)j);
        if (!json_is_array(p) || json_array_size(p) != 3)
            return errbuf_set(why, len, "joints_3d[%d] must be [x,y,z] (3 numbers)", j);
        for (int c = 0; c < 3; c++) {
            const json_t *x = json_array_get(p, (size_t)c);
            if (!json_is_number(x)) return errbuf_set(why, len, "joints_3d[%d][%d] is not a number", j, c);
            float f = (float)(json_number_value(x) * unit);
            if (!isfinite(f)) return errbuf_set(why, len, "joints_3d[%d][%d] is not finite as fp32 metres", j, c);
            J[j][c] = f;
        }
    }
    return 0;
}

static int mf_flag(const json_t *x, uint8_t *out) {
    if (json_is_boolean(x)) { *out = json_is_true(x); return 0; }
    if (json_is_integer(x) && (json_integer_value(x) == 0 || json_integer_value(x) == 1)) {
        *out = (uint8_t)json_integer_value(x);
        return 0;
    }
    return -1;
}

static int mf_units(const json_t *u, double *unit, char *why, size_t len) {
    const char *s = json_string_value(u);
    if (s && strcmp(s, "m") == 0) *unit = 1;
    else if (s && strcmp(s, "mm") == 0) *unit = 1e-3;
    else return errbuf_set(why, len, "units must be \"m\" or \"mm\"");
    return 0;
}

/* Fills f from one frame object; 0 or -1 with why. */
static int mf_frame(const json_t *o, const char *dir, double unit, const double *defK, mf_frame_t *f, char *why,
                    size_t len) {
    static const char *const keys[] = {"image", "joints_3d", "K", "joints_valid", "has_hand", "hand_side"};
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        int known = 0;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0] && !known; i++) known = strcmp(k, keys[i]) == 0;
        if (!known) {
            json_t *shown = errbuf_json_string(k);
            errbuf_set(why, len, "unknown field '%.80s' (image, joints_3d, K, joints_valid, has_hand, hand_side)",
                       json_string_value(shown) ? json_string_value(shown) : "?");
            json_decref(shown);
            return -1;
        }
    }
    const json_t *im = json_object_get(o, "image");
    const char *path = json_string_value(im);
    if (!path) return errbuf_set(why, len, "image must be a string (a path)");
    if (!*path) return errbuf_set(why, len, "image is an empty path");
    size_t pl = strlen(path), dl = strlen(dir);
    if (pl >= PATH_MAX || (path[0] != '/' && dl + 1 + pl >= PATH_MAX))
        return errbuf_set(why, len, "image path is longer than %d bytes", PATH_MAX - 1);
    f->has_hand = 1;
    if ((v = json_object_get(o, "has_hand")) && mf_flag(v, &f->has_hand))
        return errbuf_set(why, len, "has_hand must be true/false or 0/1");
    if ((v = json_object_get(o, "joints_3d"))) {
        if (mf_joints(v, unit, f->joints, why, len)) return -1;
    } else if (f->has_hand) {
        return errbuf_set(why, len, "joints_3d is required (or \"has_hand\":false)");
    }
    double K[9];
    if ((v = json_object_get(o, "K"))) {
        if (mf_matrix3(v, K, why, len)) return -1;
    } else if (defK) {
        memcpy(K, defK, sizeof K);
    } else {
        return errbuf_set(why, len, "no K (neither on the line nor a shared \"K\" on the first line)");
    }
    for (int i = 0; i < 9; i++) f->K[i] = (float)K[i];
    memset(f->valid, f->has_hand, sizeof f->valid);
    if ((v = json_object_get(o, "joints_valid"))) {
        if (!json_is_array(v) || json_array_size(v) != HAND_JOINTS)
            return errbuf_set(why, len, "joints_valid must be an array of %d flags (0/1 or booleans)", HAND_JOINTS);
        for (int j = 0; j < HAND_JOINTS; j++)
            if (mf_flag(json_array_get(v, (size_t)j), &f->valid[j]))
                return errbuf_set(why, len, "joints_valid[%d] must be 0/1 or a boolean", j);
    }
    f->side = MF_SIDE_UNKNOWN;
    if ((v = json_object_get(o, "hand_side"))) {
        const char *s = json_string_value(v);
        if (s && strcmp(s, "left") == 0) f->side = MF_SIDE_LEFT;
        else if (s && strcmp(s, "right") == 0) f->side = MF_SIDE_RIGHT;
        else return errbuf_set(why, len, "hand_side must be \"left\" or \"right\"");
    }
    if (path[0] == '/') f->image = strdup(path);
    else if ((f->image = malloc(dl + 1 + pl + 1))) snprintf(f->image, dl + 1 + pl + 1, "%s/%s", dir, path);
    if (!f->image) return errbuf_set(why, len, "out of memory");
    return 0;
}

/* The line's jansson failure, with a hint for NaN/Infinity (not JSON). */
static void mf_json_error(mf_frame_t *f, const char *name, long line, const char *text, size_t l,
                          const json_error_t *je) {
    int nonfinite = 0;
    for (size_t i = 0; i + 3 <= l && !nonfinite; i++)
        nonfinite = memcmp(text + i, "NaN", 3) == 0 || (i + 8 <= l && memcmp(text + i, "Infinity", 8) == 0);
    json_t *shown = errbuf_json_string(je->text);
    mf_fail(f, "%s line %ld: not valid JSON: %s (column %d)%s", name, line,
            json_string_value(shown) ? json_string_value(shown) : "?", je->column,
            nonfinite ? "; NaN and Infinity are not JSON numbers" : "");
    json_decref(shown);
}

/* One frame line (not blank) into f. */
static void mf_parse_line(const char *p, size_t l, long line, const char *name, const char *dir, double unit,
                          const double *defK, mf_frame_t *f) {
    char why[512];
    f->line = line;
    if (l > MF_MAX_LINE) {
        mf_fail(f, "%s line %ld: longer than %zu bytes", name, line, MF_MAX_LINE);
        return;
    }
    json_error_t je;
    json_t *o = json_loadb(p, l, JSON_REJECT_DUPLICATES, &je);
    if (!o) mf_json_error(f, name, line, p, l, &je);
    else if (!json_is_object(o)) mf_fail(f, "%s line %ld: not a JSON object", name, line);
    else if (mf_frame(o, dir, unit, defK, f, why, sizeof why)) {
        const char *img = json_string_value(json_object_get(o, "image"));
        if (img) {
            json_t *shown = errbuf_json_string(img);
            mf_fail(f, "%s line %ld (%.200s): %s", name, line, json_string_value(shown), why);
            json_decref(shown);
        } else {
            mf_fail(f, "%s line %ld: %s", name, line, why);
        }
    }
    json_decref(o);
}

/* Threads for n items, at least MF_MIN_PER_THREAD each (~10 ms of parsing): 1 to
 * min(threads, PAR_MAX). */
#define MF_MIN_PER_THREAD 256
static int mf_threads(int threads, size_t n) {
    int T = threads < 1 ? 1 : threads > PAR_MAX ? PAR_MAX : threads;
    if ((size_t)T > n / MF_MIN_PER_THREAD) T = n >= MF_MIN_PER_THREAD ? (int)(n / MF_MIN_PER_THREAD) : 1;
    return T;
}

typedef struct { const char *p; size_t len; long line; } mf_line_t;

typedef struct {
    const mf_line_t *lines;
    mf_frame_t *frames;
    size_t first, count;
    const char *name, *dir;
    double unit;
    const double *defK;
} mf_job_t;

static void *mf_parse_range(void *arg) {
    mf_job_t *j = arg;
    for (size_t i = j->first; i < j->first + j->count; i++)
        mf_parse_line(j->lines[i].p, j->lines[i].len, j->lines[i].line, j->name, j->dir, j->unit, j->defK,
                      &j->frames[i]);
    return NULL;
}

int manifest_parse(const char *text, size_t len, const char *name, const char *dir, int threads, manifest_t *m,
                   char *err, size_t errlen) {
    m->n = m->n_errors = 0;
    m->frames = NULL;
    m->freihand = 0;
    /* 1. the non-blank lines */
    mf_line_t *lines = NULL;
    size_t nl = 0, cap = 0;
    long line = 0;
    for (const char *p = text, *end = text + len; p < end;) {
        const char *e = memchr(p, '\n', (size_t)(end - p)), *le = e ? e : end;
        line++;
        size_t l = (size_t)(le - p);
        if (l && p[l - 1] == '\r') l--;
        size_t b = 0;
        while (b < l && (p[b] == ' ' || p[b] == '\t' || p[b] == '\r')) b++;
        if (b < l) {
            if (nl == cap) {
                size_t nc = cap ? 2 * cap : 1024;
                mf_line_t *q = nc <= (size_t)MF_MAX_FRAMES + 1 ? realloc(lines, nc * sizeof *q) : NULL;
                if (!q) {
                    free(lines);
                    return errbuf_set(err, errlen, "%s: more than %ld frames, or out of memory at line %ld", name,
                                      MF_MAX_FRAMES, line);
                }
                lines = q;
                cap = nc;
            }
            lines[nl++] = (mf_line_t){p, l, line};
        }
        p = e ? e + 1 : end;
    }
    /* 2. a first line without "image" holds the defaults */
    double unit = 1, defK[9];
    int have_defK = 0;
    size_t first = 0;
    if (nl > 0 && lines[0].len <= MF_MAX_LINE) {
        json_error_t je;
        json_t *o = json_loadb(lines[0].p, lines[0].len, JSON_REJECT_DUPLICATES, &je);
        if (json_is_object(o) && !json_object_get(o, "image")) {
            const char *k;
            json_t *v;
            char why[512];
            int bad = 0;
            json_object_foreach(o, k, v) {
                if (strcmp(k, "units") == 0) bad = mf_units(v, &unit, why, sizeof why);
                else if (strcmp(k, "K") == 0) {
                    bad = mf_matrix3(v, defK, why, sizeof why);
                    have_defK = !bad;
                } else {
                    json_t *shown = errbuf_json_string(k);
                    errbuf_set(why, sizeof why, "unknown field '%.80s' (the first line without \"image\" holds "
                               "defaults: units, K)", json_string_value(shown) ? json_string_value(shown) : "?");
                    json_decref(shown);
                    bad = -1;
                }
                if (bad) break;
            }
            if (bad) {
                errbuf_set(err, errlen, "%s line %ld (defaults): %s", name, lines[0].line, why);
                json_decref(o);
                free(lines);
                return -1;
            }
            first = 1;
        }
        json_decref(o);
    }
    size_t n = nl - first;
    if (n == 0) {
        free(lines);
        return errbuf_set(err, errlen, "%s: no frames (an empty manifest)", name);
    }
    if (n > (size_t)MF_MAX_FRAMES) {
        free(lines);
        return errbuf_set(err, errlen, "%s: more than %ld frames", name, MF_MAX_FRAMES);
    }
    m->frames = calloc(n, sizeof *m->frames);
    if (!m->frames) {
        free(lines);
        return errbuf_set(err, errlen, "%s: out of memory for %zu frames", name, n);
    }
    m->n = n;
    /* 3. the frames, in parallel for large manifests (jansson has no shared mutable state once seeded) */
    int T = mf_threads(threads, n);
    json_object_seed(0);
    mf_job_t jobs[PAR_MAX];
    for (int t = 0; t < T; t++) {
        size_t a = n * (size_t)t / (size_t)T, b = n * (size_t)(t + 1) / (size_t)T;
        jobs[t] = (mf_job_t){lines + first, m->frames, a, b - a, name, dir, unit, have_defK ? defK : NULL};
    }
    par_run(mf_parse_range, jobs, sizeof jobs[0], T);
    free(lines);
    mf_count_errors(m);
    return 0;
}

/* ---- FreiHAND ----------------------------------------------------------------------
 * FreiHAND's two files are each one JSON array (32560 samples: 28 MB of xyz
 * numbers), which jansson parses on one thread in ~0.7 s. With several threads,
 * mf_array_elems finds where each file's top-level elements start and end
 * (strings and nesting followed, nothing else checked), and each sample's two
 * elements are parsed on their own by json_loadb, its frame made and the values
 * let go, the samples spread over threads. Whatever looks odd to the scan — not
 * an array, an empty element, nesting near jansson's limit, anything but
 * whitespace after the closing bracket, counts that differ — and any element
 * jansson refuses make the files parsed whole instead, so the frames and the
 * messages are always those of the whole parse (the fuzz target holds the two
 * ways to it). */
#define MF_JSON_MAX_DEPTH 2048   /* jansson's JSON_PARSER_MAX_DEPTH; the scan stops well short of it */

typedef struct { size_t a, b; } mf_span_t;

static int mf_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The spans of text's top-level array elements into *out (n of them; NULL when
 * none), or -1 when the scan cannot vouch for them (see above) or out of memory. */
static int mf_array_elems(const char *p, size_t len, mf_span_t **out, size_t *n) {
    size_t i = 0, cap = 0, cnt = 0, start;
    mf_span_t *sp = NULL;
    int depth = 0, in_str = 0, closed = 0;
    *out = NULL;
    *n = 0;
    while (i < len && mf_ws(p[i])) i++;
    if (i == len || p[i] != '[') return -1;
    start = ++i;
    for (; i < len && !closed; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\') i++;   /* the escaped character */
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
            continue;
        }
        if (c == '[' || c == '{') {
            if (++depth >= MF_JSON_MAX_DEPTH - 8) goto fail;
            continue;
        }
        if ((c == ']' || c == '}' || c == ',') && depth > 0) {
            depth -= c != ',';
            continue;
        }
        if (c == '}') goto fail;
        if (c != ',' && c != ']') continue;
        /* a top-level ',' or the closing ']': the element before it ends */
        closed = c == ']';
        size_t a = start, b = i;
        while (a < b && mf_ws(p[a])) a++;
        while (b > a && mf_ws(p[b - 1])) b--;
        start = i + 1;
        if (a == b) {
            if (closed && cnt == 0) continue;   /* "[ ]" */
            goto fail;                          /* "[1,,2]", "[1,]", "[,1]" */
        }
        if (cnt == cap) {
            size_t nc = cap ? 2 * cap : 4096;
            mf_span_t *q = realloc(sp, nc * sizeof *q);
            if (!q) goto fail;
            sp = q;
            cap = nc;
        }
        sp[cnt++] = (mf_span_t){a, b};
    }
    if (!closed) goto fail;
    for (; i < len; i++)
        if (!mf_ws(p[i])) goto fail;
    *out = sp;
    *n = cnt;
    return 0;
fail:
    free(sp);
    return -1;
}

/* FreiHAND sample i's frame from its xyz (21 x 3) and K (3 x 3) values. */
static void mf_fh_sample(mf_frame_t *f, const json_t *x, const json_t *k, const char *name, size_t i) {
    char why[512];
    double Kd[9];
    f->line = (long)i;
    f->has_hand = 1;
    f->side = MF_SIDE_RIGHT;   /* FreiHAND: right hands only */
    memset(f->valid, 1, sizeof f->valid);
    if (mf_joints(x, 1.0, f->joints, why, sizeof why) || mf_matrix3(k, Kd, why, sizeof why))
        mf_fail(f, "%s[%zu]: %s", name, i, why);
    else
        for (int q = 0; q < 9; q++) f->K[q] = (float)Kd[q];
}

typedef struct {
    const char *xyz, *K, *name;
    const mf_span_t *sx, *sk;
    mf_frame_t *frames;
    size_t first, count;
    int bad;                   /* an element jansson refused */
} mf_fh_job_t;

/* Samples [first, first + count): each one's elements parsed, its frame made, the
 * values let go on this thread. */
static void *mf_fh_range(void *arg) {
    mf_fh_job_t *j = arg;
    for (size_t i = j->first; i < j->first + j->count && !j->bad; i++) {
        json_error_t je;
        json_t *x = json_loadb(j->xyz + j->sx[i].a, j->sx[i].b - j->sx[i].a, JSON_DECODE_ANY, &je);
        json_t *k = x ? json_loadb(j->K + j->sk[i].a, j->sk[i].b - j->sk[i].a, JSON_DECODE_ANY, &je) : NULL;
        if (x && k) mf_fh_sample(&j->frames[i], x, k, j->name, i);
        else j->bad = 1;
        json_decref(x);
        json_decref(k);
    }
    return NULL;
}

/* The n samples' frames from the two files' element spans, by up to `threads`
 * threads: 0, or -1 when jansson refused an element (the frames then zeroed). */
static int mf_fh_parallel(const char *xyz, const mf_span_t *sx, const char *K, const mf_span_t *sk, size_t n,
                          const char *name, int threads, mf_frame_t *frames) {
    int T = mf_threads(threads, n), bad = 0;
    mf_fh_job_t jobs[PAR_MAX];
    for (int t = 0; t < T; t++) {
        size_t a = n * (size_t)t / (size_t)T, b = n * (size_t)(t + 1) / (size_t)T;
        jobs[t] = (mf_fh_job_t){xyz, K, name, sx, sk, frames, a, b - a, 0};
    }
    par_run(mf_fh_range, jobs, sizeof jobs[0], T);
    for (int t = 0; t < T; t++) bad |= jobs[t].bad;
    if (!bad) return 0;
    for (size_t i = 0; i < n; i++) free(frames[i].error);
    memset(frames, 0, n * sizeof *frames);
    return -1;
}

/* Both files parsed whole into *jx, *jk, arrays of one size *n > 0: 0, or -1 with err. */
static int mf_fh_load(const char *xyz, size_t xyz_len, const char *K, size_t K_len, const char *name, json_t **jx,
                      json_t **jk, size_t *n, char *err, size_t errlen) {
    json_error_t je;
    *jx = json_loadb(xyz, xyz_len, 0, &je);
    if (!json_is_array(*jx))
        return errbuf_set(err, errlen, "%s: not a JSON array of samples%s%s", name, *jx ? "" : ": ",
                          *jx ? "" : je.text);
    *jk = json_loadb(K, K_len, 0, &je);
    if (!json_is_array(*jk))
        return errbuf_set(err, errlen, "%s: the K file is not a JSON array of 3x3 matrices%s%s", name,
                          *jk ? "" : ": ", *jk ? "" : je.text);
    *n = json_array_size(*jx);
    if (*n == 0 || json_array_size(*jk) != *n)
        return errbuf_set(err, errlen, "%s: %zu samples but the K file has %zu", name, *n, json_array_size(*jk));
    return 0;
}

int manifest_parse_freihand(const char *xyz, size_t xyz_len, const char *K, size_t K_len, const char *name,
                            const char *image_fmt, int (*exists)(void *ud, long index), void *ud, int threads,
                            manifest_t *m, char *err, size_t errlen) {
    m->n = m->n_errors = 0;
    m->frames = NULL;
    m->freihand = 1;
    json_t *jx = NULL, *jk = NULL;
    mf_span_t *sx = NULL, *sk = NULL;
    size_t n = 0, nk = 0;
    int rc = -1;
    /* element by element on several threads where both scans vouch for their elements
     * and agree on the count; else (and with threads <= 1, the reference: on one thread
     * the whole parse is the faster) each file parsed whole */
    int split = threads > 1 && mf_array_elems(xyz, xyz_len, &sx, &n) == 0 &&
                mf_array_elems(K, K_len, &sk, &nk) == 0 && n > 0 && n == nk;
    if (!split && mf_fh_load(xyz, xyz_len, K, K_len, name, &jx, &jk, &n, err, errlen)) goto out;
    int versions = 1;   /* image v*N+i shows sample i again (FreiHAND's versions) */
    while (exists && versions < MF_MAX_VERSIONS && exists(ud, (long)((size_t)versions * n))) versions++;
    if ((size_t)versions > (size_t)MF_MAX_FRAMES / n) {
        /* split: the elements are not parsed yet; a file the whole parse refuses is said first, as it says it */
        if (!(split && mf_fh_load(xyz, xyz_len, K, K_len, name, &jx, &jk, &nk, err, errlen)))
            errbuf_set(err, errlen, "%s: %d versions of %zu samples: too many frames", name, versions, n);
        goto out;
    }
    m->frames = calloc(n * (size_t)versions, sizeof *m->frames);
    if (!m->frames) {
        errbuf_set(err, errlen, "%s: out of memory for %zu frames", name, n * (size_t)versions);
        goto out;
    }
    if (split && mf_fh_parallel(xyz, sx, K, sk, n, name, threads, m->frames)) {
        /* an element jansson refused: the whole files say which, as they always have */
        split = 0;
        if (mf_fh_load(xyz, xyz_len, K, K_len, name, &jx, &jk, &nk, err, errlen)) goto out;
        if (nk != n) {   /* cannot be (the scan counted the elements jansson found) */
            errbuf_set(err, errlen, "%s: %zu samples, then %zu", name, n, nk);
            goto out;
        }
    }
    if (!split)
        for (size_t i = 0; i < n; i++) mf_fh_sample(&m->frames[i], json_array_get(jx, i), json_array_get(jk, i), name, i);
    m->n = n;
    char path[PATH_MAX + 32];
    for (int v = 1; v < versions; v++)
        for (size_t i = 0; i < n; i++) {
            mf_frame_t *f = &m->frames[(size_t)v * n + i];
            *f = m->frames[i];
            f->line = (long)((size_t)v * n + i);
            if (m->frames[i].error) f->error = strdup(m->frames[i].error);
            m->n = (size_t)v * n + i + 1;
        }
    for (size_t i = 0; i < m->n; i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(path, sizeof path, image_fmt, (long)i);
#pragma GCC diagnostic pop
        if (!(m->frames[i].image = strdup(path))) {
            errbuf_set(err, errlen, "%s: out of memory", name);
            goto out;
        }
    }
    mf_count_errors(m);
    rc = 0;
out:
    json_decref(jx);
    json_decref(jk);
    free(sx);
    free(sk);
    if (rc) manifest_free(m);
    return rc;
}
