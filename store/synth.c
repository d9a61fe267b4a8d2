/* store/synth.c — the synthetic hand dataset and `traind synth` (see synth.h).
 *
 * Camera frame as OpenCV: x right, y down, z forward (metres). Sample i is
 * generated from its own PRNG stream seeded by (seed, i), so shards can be
 * produced in any order and any range can be regenerated on its own. */
#define _GNU_SOURCE
#include "store/synth.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/rng.h"
#include "store/dataset.h"
#include "store/hand.h"
#include "store/fsutil.h"
#include "store/errbuf.h"

/* ---- PRNG (store/rng.h): one xoshiro256** stream per sample ------------------- */
static float synth_range(rng_t *r, float a, float b) { return a + (b - a) * rng_unif(r); }

/* ---- colours and radius -------------------------------------------------------- */
void synth_joint_color(int j, uint8_t rgb[3]) {
    /* hues spread so that neighbouring joints differ strongly; full saturation */
    float h = (float)((j * 8) % HAND_JOINTS) / (float)HAND_JOINTS * 6.0f;
    float v = (j % 2) ? 1.0f : 0.78f;
    int sector = (int)h;
    float f = h - (float)sector;
    float p = 0, q = v * (1 - f), t = v * f, c[3];
    switch (sector % 6) {
    case 0: c[0] = v; c[1] = t; c[2] = p; break;
    case 1: c[0] = q; c[1] = v; c[2] = p; break;
    case 2: c[0] = p; c[1] = v; c[2] = t; break;
    case 3: c[0] = p; c[1] = q; c[2] = v; break;
    case 4: c[0] = t; c[1] = p; c[2] = v; break;
    default: c[0] = v; c[1] = p; c[2] = q; break;
    }
    for (int k = 0; k < 3; k++) rgb[k] = (uint8_t)lrintf(c[k] * 255.0f);
}

float synth_joint_radius(int image_size, float z) {
    float r = 0.02f * (float)image_size / (z > 0.05f ? z : 0.05f);
    return r < 1.0f ? 1.0f : r;
}

/* ---- hand model ------------------------------------------------------------------ */
/* Rest pose in the hand frame (metres): wrist at the origin, fingers along +y,
 * palm in the z=0 plane, the palm's inside facing -z. For each finger: base
 * joint position, in-plane direction angle (radians from +y towards -x) and
 * the three bone lengths from the base joint to the tip. */
static const struct { float base[3]; float angle; float len[3]; } synth_fingers[5] = {
    {{-0.030f, 0.030f, -0.008f}, 0.95f, {0.038f, 0.032f, 0.027f}},   /* thumb:  1..4   */
    {{-0.024f, 0.088f, 0.0f}, 0.10f, {0.040f, 0.025f, 0.022f}},      /* index:  5..8   */
    {{-0.002f, 0.093f, 0.0f}, 0.0f, {0.045f, 0.028f, 0.024f}},       /* middle: 9..12  */
    {{0.019f, 0.088f, 0.0f}, -0.10f, {0.042f, 0.027f, 0.023f}},      /* ring:   13..16 */
    {{0.037f, 0.078f, 0.0f}, -0.22f, {0.033f, 0.021f, 0.020f}},      /* little: 17..20 */
};

/* Joints of a random hand in the camera frame, [21][3]. */
static void synth_hand(rng_t *r, float out[HAND_JOINTS][3]) {
    float loc[HAND_JOINTS][3] = {{0}};
    float scale = synth_range(r, 0.9f, 1.1f);
    for (int fi = 0; fi < 5; fi++) {
        float ang = synth_fingers[fi].angle + synth_range(r, -0.12f, 0.12f);         /* abduction */
        float curl = synth_range(r, 0.0f, fi == 0 ? 0.9f : 1.4f);                    /* overall flexion */
        float flex[3] = {curl * synth_range(r, 0.2f, 0.8f), curl * synth_range(r, 0.6f, 1.0f),
                         curl * synth_range(r, 0.4f, 0.8f)};
        float d[3] = {-sinf(ang), cosf(ang), 0.0f};   /* in-plane direction */
        float n[3] = {0.0f, 0.0f, -1.0f};             /* bends towards the inside of the palm */
        if (fi == 0) {                                /* thumb leaves the palm plane a little */
            d[2] = -0.35f;
            float l = sqrtf(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
            for (int k = 0; k < 3; k++) d[k] /= l;
            /* n orthogonal to d within the plane spanned by d and -z */
            float dn = d[2] * -1.0f;
            for (int k = 0; k < 3; k++) n[k] = (k == 2 ? -1.0f : 0.0f) - dn * d[k];
            l = sqrtf(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
            for (int k = 0; k < 3; k++) n[k] /= l;
        }
        int j0 = 1 + 4 * fi;
        for (int k = 0; k < 3; k++) loc[j0][k] = synth_fingers[fi].base[k] * scale;
        float phi = 0;
        for (int b = 0; b < 3; b++) {
            phi += flex[b];
            float L = synth_fingers[fi].len[b] * scale, c = cosf(phi), s = sinf(phi);
            for (int k = 0; k < 3; k++) loc[j0 + b + 1][k] = loc[j0 + b][k] + L * (c * d[k] + s * n[k]);
        }
    }
    /* rotation: in-image-plane angle within ±0.8 rad, pitch and roll within
     * ±0.5 rad; most of the variation is position and depth (learnable) */
    float yaw = synth_range(r, -0.8f, 0.8f), pitch = synth_range(r, -0.5f, 0.5f),
          roll = synth_range(r, -0.5f, 0.5f);
    float cy = cosf(yaw), sy = sinf(yaw), cp = cosf(pitch), sp = sinf(pitch), cr = cosf(roll), sr = sinf(roll);
    float Rz[3][3] = {{cy, -sy, 0}, {sy, cy, 0}, {0, 0, 1}};
    float Rx[3][3] = {{1, 0, 0}, {0, cp, -sp}, {0, sp, cp}};
    float Ry[3][3] = {{cr, 0, sr}, {0, 1, 0}, {-sr, 0, cr}};
    float T[3][3], R[3][3];
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            T[a][b] = 0;
            for (int k = 0; k < 3; k++) T[a][b] += Rx[a][k] * Ry[k][b];
        }
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            R[a][b] = 0;
            for (int k = 0; k < 3; k++) R[a][b] += Rz[a][k] * T[k][b];
        }
    /* the hand's centre (about the middle finger's base) is placed at depth z
     * with a lateral spread that keeps it well inside the view */
    float z = synth_range(r, 0.35f, 0.8f);
    float cx = z * synth_range(r, -0.22f, 0.22f), cyy = z * synth_range(r, -0.22f, 0.22f);
    float centre[3] = {0.0f, 0.06f * scale, 0.0f}, rc[3];
    for (int a = 0; a < 3; a++) rc[a] = R[a][0] * centre[0] + R[a][1] * centre[1] + R[a][2] * centre[2];
    float t[3] = {cx - rc[0], cyy - rc[1], z - rc[2]};
    for (int j = 0; j < HAND_JOINTS; j++)
        for (int a = 0; a < 3; a++)
            out[j][a] = R[a][0] * loc[j][0] + R[a][1] * loc[j][1] + R[a][2] * loc[j][2] + t[a];
}

/* Smooth random background with mild noise, img [S,S,3]. */
static void synth_background(rng_t *r, uint8_t *img, int S) {
    float base[3], tint = synth_range(r, -12.0f, 12.0f);
    float g = synth_range(r, 70.0f, 170.0f);
    for (int c = 0; c < 3; c++) base[c] = g + synth_range(r, -10.0f, 10.0f) + (c == 2 ? -tint : c == 0 ? tint : 0);
    float amp[3], fx[3], fy[3], ph[3];
    for (int k = 0; k < 3; k++) {
        amp[k] = synth_range(r, 6.0f, 18.0f);
        fx[k] = synth_range(r, -3.0f, 3.0f) * 6.2831853f / (float)S;
        fy[k] = synth_range(r, -3.0f, 3.0f) * 6.2831853f / (float)S;
        ph[k] = synth_range(r, 0.0f, 6.2831853f);
    }
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            float v = 0;
            for (int k = 0; k < 3; k++) v += amp[k] * sinf(fx[k] * (float)x + fy[k] * (float)y + ph[k]);
            uint64_t noise = rng_next(r);
            for (int c = 0; c < 3; c++) {
                float n = (float)((noise >> (16 * c)) & 0xff) * (8.0f / 255.0f) - 4.0f;   /* ±4 */
                float p = base[c] + v + n;
                img[((size_t)y * S + x) * 3 + c] = (uint8_t)(p < 0 ? 0 : p > 255 ? 255 : lrintf(p));
            }
        }
}

/* Draw joint discs, far ones first. */
static void synth_draw(uint8_t *img, int S, const float K[9], float J[HAND_JOINTS][3]) {
    int order[HAND_JOINTS];
    for (int j = 0; j < HAND_JOINTS; j++) order[j] = j;
    /* insertion sort: decreasing depth, then increasing index (stable) */
    for (int a = 1; a < HAND_JOINTS; a++)
        for (int b = a; b > 0 && J[order[b - 1]][2] < J[order[b]][2]; b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    for (int q = 0; q < HAND_JOINTS; q++) {
        int j = order[q];
        float z = J[j][2];
        if (z <= 0.05f) continue;
        float u = K[0] * J[j][0] / z + K[2], v = K[4] * J[j][1] / z + K[5];
        float rad = synth_joint_radius(S, z);
        uint8_t col[3];
        synth_joint_color(j, col);
        int x0 = (int)floorf(u - rad), x1 = (int)ceilf(u + rad), y0 = (int)floorf(v - rad), y1 = (int)ceilf(v + rad);
        if (x0 < 0) x0 = 0;
        if (y0 < 0) y0 = 0;
        if (x1 > S - 1) x1 = S - 1;
        if (y1 > S - 1) y1 = S - 1;
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) {
                float dx = (float)x + 0.5f - u, dy = (float)y + 0.5f - v;
                if (dx * dx + dy * dy <= rad * rad) memcpy(img + ((size_t)y * S + x) * 3, col, 3);
            }
    }
}

/* The camera view: J <- Mirror · Rz(roll) · J. */
static void synth_apply_view(const synth_view_t *v, uint64_t seed, int64_t i, float J[HAND_JOINTS][3]) {
    rng_t r;
    rng_seed_stream(&r, seed ^ 0x7669657773796e74ull, (uint64_t)i);   /* "viewsynt": apart from the sample's */
    float roll = synth_range(&r, v->roll_deg[0], v->roll_deg[1]) * 0.017453292519943295f;
    int mirror = rng_unif(&r) < v->mirror;
    float c = cosf(roll), s = sinf(roll);
    for (int j = 0; j < HAND_JOINTS; j++) {
        float x = c * J[j][0] - s * J[j][1], y = s * J[j][0] + c * J[j][1];
        J[j][0] = mirror ? -x : x;
        J[j][1] = y;
    }
}

void synth_samples(uint64_t seed, int S, int64_t first, int64_t count, uint8_t *img, float *joints,
                   uint8_t *valid, uint8_t *has_hand, float *K) {
    synth_samples_view(seed, S, first, count, NULL, img, joints, valid, has_hand, K);
}

void synth_samples_view(uint64_t seed, int S, int64_t first, int64_t count, const synth_view_t *view,
                        uint8_t *img, float *joints, uint8_t *valid, uint8_t *has_hand, float *K) {
    float Kc[9] = {1.1f * (float)S, 0, 0.5f * (float)S, 0, 1.1f * (float)S, 0.5f * (float)S, 0, 0, 1};
    for (int64_t i = 0; i < count; i++) {
        rng_t r;
        rng_seed_stream(&r, seed, (uint64_t)(first + i));
        int hand = rng_unif(&r) >= 0.05f;
        float J[HAND_JOINTS][3];
        synth_hand(&r, J);
        if (view) synth_apply_view(view, seed, first + i, J);
        uint8_t vmask[HAND_JOINTS];
        for (int j = 0; j < HAND_JOINTS; j++) vmask[j] = hand && rng_unif(&r) >= 0.03f;
        if (img) {
            uint8_t *im = img + (size_t)i * S * S * 3;
            synth_background(&r, im, S);
            if (hand) synth_draw(im, S, Kc, J);
        }
        if (joints) memcpy(joints + i * HAND_JOINTS * 3, J, sizeof J);
        if (valid) memcpy(valid + i * HAND_JOINTS, vmask, HAND_JOINTS);
        if (has_hand) has_hand[i] = (uint8_t)hand;
        if (K) memcpy(K + i * 9, Kc, sizeof Kc);
    }
}

/* ---- writing a dataset ------------------------------------------------------------ */
/* "shard-NNNNN.safetensors" exactly as synth_generate names them. */
static int synth_is_own_shard(const char *name, long long *idx) {
    if (strncmp(name, "shard-", 6) != 0 || name[6] < '0' || name[6] > '9') return 0;
    char *end, canon[64];
    errno = 0;
    long long n = strtoll(name + 6, &end, 10);
    if (errno || strcmp(end, ".safetensors") != 0) return 0;
    snprintf(canon, sizeof canon, "shard-%05lld.safetensors", n);
    if (strcmp(canon, name) != 0) return 0;
    *idx = n;
    return 1;
}

int synth_generate(const char *outdir, int64_t samples, int S, uint64_t seed, int shard_samples,
                   const volatile int *cancel, char *err, size_t errlen) {
    if (samples < 1 || samples > ((int64_t)1 << 40))
        return errbuf_set(err, errlen, "synth: samples must be 1..2^40, got %lld", (long long)samples);
    if (S < SYNTH_MIN_SIZE || S > SYNTH_MAX_SIZE)
        return errbuf_set(err, errlen, "synth: image size must be %d..%d, got %d", SYNTH_MIN_SIZE, SYNTH_MAX_SIZE, S);
    size_t row = (size_t)S * S * 3 + HAND_JOINTS * 3 * 4 + HAND_JOINTS + 1 + 9 * 4;
    if (shard_samples <= 0) {
        int64_t m = (int64_t)((64u << 20) / row);
        shard_samples = (int)(m < 1 ? 1 : m > 100000 ? 100000 : m);
    }
    if ((size_t)shard_samples > ((size_t)1 << 34) / row)
        return errbuf_set(err, errlen, "synth: %d samples of %dx%d per shard is too large", shard_samples, S, S);
    char e2[512];
    if (fs_mkdir_p(outdir, FS_DIR_MODE, e2, sizeof e2) != 0) return errbuf_set(err, errlen, "synth: %s", e2);
    int64_t nshards = (samples + shard_samples - 1) / shard_samples;
    if (nshards > 9999999) return errbuf_set(err, errlen, "synth: too many shards (%lld)", (long long)nshards);

    /* Other *.safetensors files would become part of the dataset: refuse;
     * our own shard names beyond this run's count (an earlier, larger run)
     * are removed after the new shards are written. */
    DIR *d = opendir(outdir);
    if (!d) return errbuf_set(err, errlen, "synth: open %s: %s", outdir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        long long idx;
        if (de->d_name[0] == '.' || l <= 12 || strcmp(de->d_name + l - 12, ".safetensors") != 0) continue;
        if (!synth_is_own_shard(de->d_name, &idx)) {
            errbuf_set(err, errlen, "synth: %s already holds %s, which is not a synth shard; use an empty directory",
                       outdir, de->d_name);
            closedir(d);
            return -1;
        }
    }
    closedir(d);

    size_t m = (size_t)shard_samples;
    uint8_t *img = malloc(m * S * S * 3), *valid = malloc(m * HAND_JOINTS), *hh = malloc(m);
    float *joints = malloc(m * HAND_JOINTS * 3 * sizeof(float)), *K = malloc(m * 9 * sizeof(float));
    int rc = -1;
    if (!img || !valid || !hh || !joints || !K) {
        errbuf_set(err, errlen, "synth: out of memory for a shard of %d samples", shard_samples);
        goto out;
    }
    static const float mean[3] = HAND_IMAGENET_MEAN, std[3] = HAND_IMAGENET_STD;
    for (int64_t s = 0; s < nshards; s++) {
        if (cancel && *cancel) {
            errbuf_set(err, errlen, "synth: cancelled after %lld of %lld shards", (long long)s, (long long)nshards);
            rc = SYNTH_CANCELLED;
            goto out;
        }
        int64_t first = s * shard_samples, n = samples - first < shard_samples ? samples - first : shard_samples;
        synth_samples(seed, S, first, n, img, joints, valid, hh, K);
        char name[64], path[4096];
        snprintf(name, sizeof name, "shard-%05lld.safetensors", (long long)s);
        if (fs_join(path, sizeof path, outdir, name) != 0) {
            errbuf_set(err, errlen, "synth: path too long");
            goto out;
        }
        ds_shard_data_t sd = {.n = n, .h = S, .w = S, .image_dtype = DT_U8, .image = img, .joints = joints,
                              .joints_valid = valid, .has_hand = hh, .intrinsics = K, .mean = mean, .std = std};
        if (ds_write_shard(path, &sd, e2, sizeof e2) != 0) {
            errbuf_set(err, errlen, "synth: %s", e2);
            goto out;
        }
    }
    d = opendir(outdir);
    if (!d) {
        errbuf_set(err, errlen, "synth: open %s: %s", outdir, strerror(errno));
        goto out;
    }
    while ((de = readdir(d)) != NULL) {
        long long idx;
        if (synth_is_own_shard(de->d_name, &idx) && idx >= nshards) {
            char path[4096];
            if (fs_join(path, sizeof path, outdir, de->d_name) == 0) fs_rm_rf(path, NULL, 0);
        }
    }
    closedir(d);
    rc = fs_fsync_dir(outdir, e2, sizeof e2);
    if (rc) errbuf_set(err, errlen, "synth: %s", e2);
out:
    free(img);
    free(valid);
    free(hh);
    free(joints);
    free(K);
    return rc;
}

/* ---- `traind synth` ---------------------------------------------------------------- */
static void synth_usage(FILE *f) {
    fprintf(f, "usage: traind synth --out DIR --samples N --image-size S --seed K [--shard-samples M]\n"
               "  writes a synthetic hand dataset (safetensors shards, SPEC §6) to DIR:\n"
               "  N samples of SxS RGB images (%d..%d) whose coloured discs are the 21 projected\n"
               "  hand joints; deterministic for a seed K. M samples per shard (default: ~64 MB shards).\n",
               SYNTH_MIN_SIZE, SYNTH_MAX_SIZE);
}

static int synth_parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "traind synth: %s must be an integer in %lld..%lld, got '%s'\n", opt, (long long)lo,
                (long long)hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int synth_main(int argc, char **argv) {
    const char *out = NULL;
    int64_t samples = -1, size = -1, shard = 0;
    uint64_t seed = 0;
    int have_seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            synth_usage(stdout);
            return 0;
        }
        static const char *opts[] = {"--out", "--samples", "--image-size", "--seed", "--shard-samples"};
        int which = -1;
        for (int k = 0; k < 5 && which < 0; k++) {
            size_t l = strlen(opts[k]);
            if (strcmp(a, opts[k]) == 0) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "traind synth: %s needs a value\n", opts[k]);
                    synth_usage(stderr);
                    return 2;
                }
                val = argv[++i];
                which = k;
            } else if (strncmp(a, opts[k], l) == 0 && a[l] == '=') {
                val = a + l + 1;
                which = k;
            }
        }
        if (which < 0) {
            fprintf(stderr, "traind synth: unknown argument '%s'\n", a);
            synth_usage(stderr);
            return 2;
        }
        switch (which) {
        case 0:
            if (!val[0]) {
                fprintf(stderr, "traind synth: --out needs a directory\n");
                return 2;
            }
            out = val;
            break;
        case 1:
            if (synth_parse_i64("--samples", val, 1, (int64_t)1 << 40, &samples)) return 2;
            break;
        case 2:
            if (synth_parse_i64("--image-size", val, SYNTH_MIN_SIZE, SYNTH_MAX_SIZE, &size)) return 2;
            break;
        case 3: {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(val, &end, 0);
            if (errno || end == val || *end || val[0] == '-') {
                fprintf(stderr, "traind synth: --seed must be a non-negative integer, got '%s'\n", val);
                return 2;
            }
            seed = v;
            have_seed = 1;
            break;
        }
        case 4:
            if (synth_parse_i64("--shard-samples", val, 1, 100000000, &shard)) return 2;
            break;
        }
    }
    if (!out || samples < 0 || size < 0 || !have_seed) {
        fprintf(stderr, "traind synth: missing%s%s%s%s\n", out ? "" : " --out", samples < 0 ? " --samples" : "",
                size < 0 ? " --image-size" : "", have_seed ? "" : " --seed");
        synth_usage(stderr);
        return 2;
    }
    char err[512];
    if (synth_generate(out, samples, (int)size, seed, (int)shard, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "traind %s\n", err);   /* "synth: ..." */
        return 1;
    }
    printf("wrote %lld samples of %lldx%lld (seed %" PRIu64 ") to %s\n", (long long)samples, (long long)size,
           (long long)size, seed, out);
    return 0;
}
