/* tests/tools/mkframes.c — writes camera frames and their import manifest:
 * the synthetic renderer's hands at W x H (tests/frames.h) as JPEG or PNG
 * files DIR/img/NNNNNN.{jpg,png} and DIR/manifest.jsonl, one line a frame
 * (joints_3d, joints_valid, has_hand, K). For the import integration test
 * and the import benchmark (bench/import_device.sh).
 *
 *   mkframes --out DIR --frames N [--width 640] [--height 480] [--format jpeg|png]
 *            [--quality 90] [--seed 1] [--threads N] [--shared-k] [--units m|mm]
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/frames.h"

static struct {
    const char *out;
    long n, w, h, quality, seed, threads;
    int png, shared_k, mm;
} g = {NULL, -1, 640, 480, 90, 1, 0, 0, 0, 0};

static char **lines;
static atomic_long next_frame;
static atomic_int failed;

static void *worker(void *arg) {
    (void)arg;
    char path[4096], rel[64], line[8192];
    for (;;) {
        long i = atomic_fetch_add(&next_frame, 1);
        if (i >= g.n || atomic_load(&failed)) break;
        frame_t f;
        if (frame_render((uint64_t)g.seed, i, (int)g.w, (int)g.h, &f)) { atomic_store(&failed, 1); break; }
        uint8_t *buf = NULL;
        size_t len = 0;
        int r = g.png ? frames_png(f.rgb, f.w, f.h, PNG_COLOR_TYPE_RGB, 8, &buf, &len)
                      : frames_jpeg(f.rgb, f.w, f.h, TJPF_RGB, (int)g.quality, &buf, &len);
        snprintf(rel, sizeof rel, "img/%06ld.%s", i, g.png ? "png" : "jpg");
        snprintf(path, sizeof path, "%s/%s", g.out, rel);
        if (r == 0 && frames_write_file(path, buf, len)) r = -1;
        if (g.png) free(buf);
        else tjFree(buf);
        if (g.mm)
            for (int j = 0; j < HAND_JOINTS; j++)
                for (int c = 0; c < 3; c++) f.joints[j][c] *= 1000.0f;
        frames_manifest_line(line, sizeof line, rel, &f, g.shared_k ? NULL : f.K);
        lines[i] = strdup(line);
        frame_free(&f);
        if (r || !lines[i]) {
            fprintf(stderr, "mkframes: cannot write %s\n", path);
            atomic_store(&failed, 1);
            break;
        }
    }
    return NULL;
}

static long num(const char *opt, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "mkframes: %s must be an integer in %ld..%ld, got '%s'\n", opt, lo, hi, v);
        exit(2);
    }
    return x;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--shared-k")) { g.shared_k = 1; continue; }
        if (!v) { fprintf(stderr, "mkframes: %s needs a value (or is unknown)\n", a); return 2; }
        i++;
        if (!strcmp(a, "--out")) g.out = v;
        else if (!strcmp(a, "--frames")) g.n = num(a, v, 1, 100000000);
        else if (!strcmp(a, "--width")) g.w = num(a, v, 1, 8192);
        else if (!strcmp(a, "--height")) g.h = num(a, v, 1, 8192);
        else if (!strcmp(a, "--quality")) g.quality = num(a, v, 1, 100);
        else if (!strcmp(a, "--seed")) g.seed = num(a, v, 0, 1L << 40);
        else if (!strcmp(a, "--threads")) g.threads = num(a, v, 1, 256);
        else if (!strcmp(a, "--format") && (!strcmp(v, "jpeg") || !strcmp(v, "png"))) g.png = !strcmp(v, "png");
        else if (!strcmp(a, "--units") && (!strcmp(v, "m") || !strcmp(v, "mm"))) g.mm = !strcmp(v, "mm");
        else { fprintf(stderr, "mkframes: bad argument %s %s\n", a, v); return 2; }
    }
    if (!g.out || g.n < 1) {
        fprintf(stderr, "usage: mkframes --out DIR --frames N [--width W] [--height H] [--format jpeg|png] "
                        "[--quality Q] [--seed K] [--threads N] [--shared-k] [--units m|mm]\n");
        return 2;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/img", g.out);
    mkdir(g.out, 0755);
    if (mkdir(dir, 0755) && errno != EEXIST) { perror(dir); return 1; }
    lines = calloc((size_t)g.n, sizeof *lines);
    if (!lines) return 1;
    long T = g.threads > 0 ? g.threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (T < 1) T = 1;
    if (T > 256) T = 256;
    pthread_t th[256];
    for (long t = 0; t < T; t++) pthread_create(&th[t], NULL, worker, NULL);
    for (long t = 0; t < T; t++) pthread_join(th[t], NULL);
    if (atomic_load(&failed)) return 1;
    snprintf(dir, sizeof dir, "%s/manifest.jsonl", g.out);
    FILE *f = fopen(dir, "w");
    if (!f) { perror(dir); return 1; }
    if (g.shared_k || g.mm) {
        frame_t f0;
        if (frame_render((uint64_t)g.seed, 0, (int)g.w, (int)g.h, &f0)) return 1;
        fprintf(f, "{\"units\":\"%s\"", g.mm ? "mm" : "m");
        if (g.shared_k)
            fprintf(f, ",\"K\":[[%.9g,%.9g,%.9g],[%.9g,%.9g,%.9g],[%.9g,%.9g,%.9g]]", (double)f0.K[0], (double)f0.K[1],
                    (double)f0.K[2], (double)f0.K[3], (double)f0.K[4], (double)f0.K[5], (double)f0.K[6],
                    (double)f0.K[7], (double)f0.K[8]);
        fprintf(f, "}\n");
        frame_free(&f0);
    }
    for (long i = 0; i < g.n; i++) {
        fprintf(f, "%s\n", lines[i]);
        free(lines[i]);
    }
    free(lines);
    if (fclose(f)) { perror(dir); return 1; }
    return 0;
}
