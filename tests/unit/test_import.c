/* tests/unit/test_import.c — gpu/import.c, gpu/imgdec.c, gpu/manifest.c.
 *
 * Frames of the synthetic renderer at 640x480 (and 480x640) with a known K,
 * written as JPEG q95 and PNG (tests/frames.h), imported at 224 with
 * `stretch` and `crop`:
 *   - labels exact (joints bit for bit, masks), K = the exact geometry's A K;
 *   - PNG pixels equal image_resize_u8 of the rendered pixels (lossless);
 *     JPEG pixels within 1 level of an independent decode (djpeg at the same
 *     DCT scale, then the same crop/resize) and within JPEG tolerance of
 *     the rendered pixels resized at full resolution;
 *   - every unoccluded joint disc's centre (colour-weighted centroid) within
 *     0.5 px of the stored joint projected with the stored K;
 *   - grayscale, CMYK (Adobe), EXIF orientations 2-8, 16-bit, gray and alpha
 *     PNG;
 * bad frames (truncated/corrupt JPEG and PNG, not an image, too small,
 * missing) fail naming the manifest line, or are skipped and counted;
 * manifest lines with every kind of label problem; cancel leaves nothing;
 * the cache key and cache hits; the fuzz corpus and its crashes replayed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>

#include "gpu/backend.h"
#include "gpu/dataset.h"
#include "gpu/image.h"
#include "gpu/imgdec.h"
#include "gpu/import.h"
#include "gpu/manifest.h"
#include "store/dataset.h"
#include "store/fsutil.h"
#include "store/safetensors.h"
#include "tests/frames.h"
#include "tests/fuzz/fuzz_import.h"
#include "tests/tap.h"

#ifndef FIXTURES
#define FIXTURES "tests/fixtures"
#endif

static char root[256];

/* ---- reading an imported directory back --------------------------------------------- */
typedef struct {
    int64_t n;
    int S;
    uint8_t *img;      /* [n][S][S][3] */
    float *joints, *K; /* [n][63], [n][9] */
    uint8_t *valid, *hh;
} shards_t;

static void shards_free(shards_t *s) {
    free(s->img);
    free(s->joints);
    free(s->K);
    free(s->valid);
    free(s->hh);
    memset(s, 0, sizeof *s);
}

static int shards_read(const char *dir, shards_t *out) {
    memset(out, 0, sizeof *out);
    ds_info_t info;
    char err[512];
    if (ds_scan(dir, &info, err, sizeof err)) {
        diag("ds_scan: %s", err);
        return -1;
    }
    int64_t n = info.n;
    int S = info.h;
    out->n = n;
    out->S = S;
    out->img = malloc((size_t)n * S * S * 3);
    out->joints = malloc((size_t)n * 63 * 4);
    out->K = malloc((size_t)n * 9 * 4);
    out->valid = malloc((size_t)n * 21);
    out->hh = malloc((size_t)n);
    int64_t off = 0;
    int rc = 0;
    for (int i = 0; i < info.nshards && rc == 0; i++) {
        st_file_t *f = st_open_in(dir, info.shards[i].name, err, sizeof err);
        if (!f) { rc = -1; break; }
        int64_t m = info.shards[i].n;
        rc |= st_read(f, st_find(f, "image"), out->img + (size_t)off * S * S * 3, err, sizeof err);
        rc |= st_read(f, st_find(f, "hand_joints"), out->joints + off * 63, err, sizeof err);
        rc |= st_read(f, st_find(f, "camera_intrinsics"), out->K + off * 9, err, sizeof err);
        rc |= st_read(f, st_find(f, "hand_joints_valid"), out->valid + off * 21, err, sizeof err);
        rc |= st_read(f, st_find(f, "has_hand"), out->hh + off, err, sizeof err);
        st_close(f);
        off += m;
    }
    ds_info_free(&info);
    return rc;
}

/* ---- writing frames ---------------------------------------------------------------------- */
static int write_file(const char *path, const void *p, size_t n) {
    int r = frames_write_file(path, p, n);
    if (r) diag("cannot write %s: %s", path, strerror(errno));
    return r;
}

/* A manifest at dir/name with one line per (image, frame). */
static void write_manifest(const char *dir, const char *name, int n, char *const *images, const frame_t *const *fr,
                           const char *extra_first_line) {
    char path[512], line[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (extra_first_line) fprintf(f, "%s\n", extra_first_line);
    for (int i = 0; i < n; i++) {
        frames_manifest_line(line, sizeof line, images[i], fr[i], fr[i]->K);
        fprintf(f, "%s\n", line);
    }
    fclose(f);
}

/* ---- the reference decode: djpeg (libjpeg-turbo-progs) ------------------------------------ */
static int have_djpeg(void) { return system("command -v djpeg >/dev/null 2>&1") == 0; }

/* RGB [h][w][3] of `djpeg -scale num/den -pnm path` (gray expanded), malloc'd. */
static uint8_t *djpeg(const char *path, int num, int den, int *w, int *h) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "djpeg -scale %d/%d -pnm '%s'", num, den, path);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    char magic[3] = "";
    int maxv = 0;
    uint8_t *rgb = NULL;
    if (fscanf(p, "%2s %d %d %d", magic, w, h, &maxv) == 4 && maxv == 255 && fgetc(p) != EOF) {
        int ch = strcmp(magic, "P6") == 0 ? 3 : strcmp(magic, "P5") == 0 ? 1 : 0;
        size_t n = (size_t)*w * *h;
        uint8_t *raw = ch ? malloc(n * ch) : NULL;
        if (raw && fread(raw, 1, n * ch, p) == n * ch) {
            rgb = malloc(n * 3);
            for (size_t i = 0; i < n; i++)
                for (int c = 0; c < 3; c++) rgb[i * 3 + c] = raw[i * ch + (ch == 3 ? c : 0)];
        }
        free(raw);
    }
    pclose(p);
    return rgb;
}

/* ---- geometry -------------------------------------------------------------------------------- */
/* The expected K' = A K for an image of w x h decoded at num/den (decoded size
 * dw x dh) and imported at S (gpu/import.h); also the region in source pixels. */
typedef struct { double ax, ay, bx, by; double rx0, ry0, rw, rh; int dx0, dy0, dside_w, dside_h; } geo_t;
static geo_t geometry(int w, int h, int num, int den, int S, int crop) {
    geo_t g;
    int dw = (w * num + den - 1) / den, dh = (h * num + den - 1) / den;
    int x0 = 0, y0 = 0, rw = dw, rh = dh;
    if (crop) {
        int side = dw < dh ? dw : dh;
        x0 = (dw - side) / 2;
        y0 = (dh - side) / 2;
        rw = rh = side;
    }
    double s = (double)num / den;
    g.ax = s * S / rw;
    g.ay = s * S / rh;
    g.bx = -(double)x0 * S / rw;
    g.by = -(double)y0 * S / rh;
    g.rx0 = x0 / s;
    g.ry0 = y0 / s;
    g.rw = rw / s;
    g.rh = rh / s;
    g.dx0 = x0;
    g.dy0 = y0;
    g.dside_w = rw;
    g.dside_h = rh;
    return g;
}

static double k_err(const float *K, const float *K0, const geo_t *g) {
    double want[9] = {g->ax * K0[0] + g->bx * K0[6], g->ax * K0[1] + g->bx * K0[7], g->ax * K0[2] + g->bx * K0[8],
                      g->ay * K0[3] + g->by * K0[6], g->ay * K0[4] + g->by * K0[7], g->ay * K0[5] + g->by * K0[8],
                      K0[6], K0[7], K0[8]};
    double worst = 0;
    for (int q = 0; q < 9; q++) {
        double e = fabs(K[q] - want[q]) / (fabs(want[q]) > 1 ? fabs(want[q]) : 1);
        if (e > worst) worst = e;
    }
    return worst;
}

/* image_resize_u8 of the region (x0,y0,rw,rh) of an RGB image [h][w][3]: malloc'd S x S. */
static uint8_t *resize_region(const uint8_t *rgb, int w, int x0, int y0, int rw, int rh, int S) {
    uint8_t *crop = malloc((size_t)rw * rh * 3), *out = malloc((size_t)S * S * 3);
    for (int y = 0; y < rh; y++) memcpy(crop + (size_t)y * rw * 3, rgb + ((size_t)(y + y0) * w + x0) * 3, (size_t)rw * 3);
    char err[256];
    if (image_resize_u8(crop, rh, rw, out, S, S, err, sizeof err)) diag("resize: %s", err);
    free(crop);
    return out;
}

static void pixel_diff(const uint8_t *a, const uint8_t *b, size_t n, double *mean, int *max) {
    double s = 0;
    *max = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        s += d;
        if (d > *max) *max = d;
    }
    *mean = s / (double)n;
}

/* ---- joint discs ----------------------------------------------------------------------------- */
/* Centres of the unoccluded joint discs of frame f, measured in the imported
 * image (S x S, stored K2 and joints J2), against the stored joints projected
 * with K2. The region (source pixels) is what the import kept; sx, sy the
 * source->imported scale. Returns the worst error in px, counts the joints. */
static double disc_sum;   /* sum of the errors disc_check measured (for a mean) */
static double disc_check(const frame_t *f, const uint8_t *img, int S, const float *K2, const float *J2, double rx0,
                         double ry0, double rw, double rh, int *count) {
    int Sr = f->w > f->h ? f->w : f->h;
    double sx = S / rw, sy = S / rh, worst = 0;
    float u[HAND_JOINTS], v[HAND_JOINTS], r[HAND_JOINTS];
    for (int j = 0; j < HAND_JOINTS; j++) {
        float z = f->joints[j][2];
        u[j] = f->K[0] * f->joints[j][0] / z + f->K[2];
        v[j] = f->K[4] * f->joints[j][1] / z + f->K[5];
        r[j] = synth_joint_radius(Sr, z);
    }
    for (int j = 0; j < HAND_JOINTS && f->has_hand; j++) {
        float z = f->joints[j][2];
        int clean = z > 0.05f && u[j] - r[j] - 3 >= rx0 && u[j] + r[j] + 3 <= rx0 + rw && v[j] - r[j] - 3 >= ry0 &&
                    v[j] + r[j] + 3 <= ry0 + rh;
        for (int k = 0; k < HAND_JOINTS && clean; k++) {
            if (k == j) continue;
            double d = hypot(u[j] - u[k], v[j] - v[k]);
            if (d < r[j] + r[k] + 3) clean = 0;   /* any neighbour near: its colour would bias the centroid */
        }
        if (!clean) continue;
        const float *X = J2 + j * 3;
        double p0 = K2[0] * X[0] + K2[1] * X[1] + K2[2] * X[2], p1 = K2[3] * X[0] + K2[4] * X[1] + K2[5] * X[2],
               p2 = K2[6] * X[0] + K2[7] * X[1] + K2[8] * X[2];
        double pu = p0 / p2, pv = p1 / p2;
        uint8_t col[3];
        synth_joint_color(j, col);
        double ex = (r[j] + 2) * sx, ey = (r[j] + 2) * sy, sw = 0, su = 0, sv = 0;
        for (int y = (int)floor(pv - ey) - 1; y <= (int)ceil(pv + ey) + 1; y++)
            for (int x = (int)floor(pu - ex) - 1; x <= (int)ceil(pu + ex) + 1; x++) {
                if (x < 0 || y < 0 || x >= S || y >= S) continue;
                double dx = (x + 0.5 - pu) / ex, dy = (y + 0.5 - pv) / ey;
                if (dx * dx + dy * dy > 1) continue;
                const uint8_t *px = img + ((size_t)y * S + x) * 3;
                int d = 0;
                for (int c = 0; c < 3; c++) d = abs(px[c] - col[c]) > d ? abs(px[c] - col[c]) : d;
                double wgt = d <= 20 ? 1 : d >= 45 ? 0 : (45.0 - d) / 25.0;
                sw += wgt;
                su += wgt * (x + 0.5);
                sv += wgt * (y + 0.5);
            }
        if (sw < 4) continue;
        double e = hypot(su / sw - pu, sv / sw - pv);
        if (e > worst) worst = e;
        disc_sum += e;
        (*count)++;
    }
    return worst;
}

/* ---- import helpers ---------------------------------------------------------------------------- */
static int do_import(const char *manifest, const char *out, int S, int crop, int skip, import_result_t *res,
                     char *err, size_t errlen) {
    import_opts_t o = {.image_size = S, .crop = crop, .skip = skip, .threads = 2};
    fs_rm_rf(out, NULL, 0);
    return import_to_dir(manifest, out, &o, res, err, errlen);
}

/* ---- 1. the main case: 640x480 JPEG q95 and PNG, stretch and crop --------------------------------- */
#define NF 10
static frame_t fr[NF];
static char *img_jpg[NF], *img_png[NF];

static void test_main_case(void) {
    char dir[512], path[600], err[2048];
    snprintf(dir, sizeof dir, "%s/main", root);
    fs_mkdir_p(dir, 0755, NULL, 0);
    for (int i = 0; i < NF; i++) {
        int w = i == NF - 1 ? 480 : 640, h = i == NF - 1 ? 640 : 480;   /* the last one is portrait */
        frame_render(11, i, w, h, &fr[i]);
        uint8_t *buf;
        size_t len;
        snprintf(path, sizeof path, "%s/f%d.jpg", dir, i);
        frames_jpeg(fr[i].rgb, w, h, TJPF_RGB, 95, &buf, &len);
        write_file(path, buf, len);
        tjFree(buf);
        img_jpg[i] = strdup(path + strlen(dir) + 1);
        snprintf(path, sizeof path, "%s/f%d.png", dir, i);
        frames_png(fr[i].rgb, w, h, PNG_COLOR_TYPE_RGB, 8, &buf, &len);
        write_file(path, buf, len);
        free(buf);
        img_png[i] = strdup(path + strlen(dir) + 1);
    }
    const frame_t *fp[NF];
    for (int i = 0; i < NF; i++) fp[i] = &fr[i];
    write_manifest(dir, "jpg.jsonl", NF, img_jpg, fp, NULL);
    write_manifest(dir, "png.jsonl", NF, img_png, fp, NULL);
    int djp = have_djpeg();
    if (!djp) diag("djpeg not found (libjpeg-turbo-progs): the independent-decode comparison is skipped");

    /* the estimator itself, on a rendered frame: exact to a small fraction of a pixel */
    {
        frame_t sq;
        frame_render(11, 0, 640, 640, &sq);
        int cnt = 0;
        double worst = disc_check(&sq, sq.rgb, 640, sq.K, &sq.joints[0][0], 0, 0, 640, 640, &cnt);
        ok(cnt >= 1 && worst < 0.05, "disc-centre estimator on a rendered 640x640 frame: %d joints, worst %.3f px",
           cnt, worst);
        frame_free(&sq);
    }

    const int S = 224;
    for (int fmt = 0; fmt < 2; fmt++)
        for (int crop = 0; crop < 2; crop++) {
            const char *fname = fmt ? "png" : "jpeg", *mode = crop ? "crop" : "stretch";
            char man[600], out[600];
            snprintf(man, sizeof man, "%s/%s.jsonl", dir, fmt ? "png" : "jpg");
            snprintf(out, sizeof out, "%s/out-%s-%s", root, fname, mode);
            import_result_t res;
            int r = do_import(man, out, S, crop, 0, &res, err, sizeof err);
            ok(r == 0 && res.imported == NF && res.skipped == 0, "%s %s: imported %lld of %d (%s)", fname, mode,
               (long long)res.imported, NF, r ? err : "ok");
            shards_t sh;
            if (r || shards_read(out, &sh) || sh.n != NF || sh.S != S) {
                ok(0, "%s %s: shards readable", fname, mode);
                continue;
            }
            int labels = 1, discs = 0;
            disc_sum = 0;
            double kworst = 0, dworst = 0, ref_mean_worst = 0, orig_mean_worst = 0;
            int ref_max_worst = 0, pixels_exact = 1;
            for (int i = 0; i < NF; i++) {
                const frame_t *f = &fr[i];
                labels &= memcmp(sh.joints + i * 63, f->joints, sizeof f->joints) == 0 &&
                          memcmp(sh.valid + i * 21, f->valid, 21) == 0 && sh.hh[i] == f->has_hand;
                int num = 1, den = 1;
                if (!fmt) {   /* JPEG: the smallest k/8 keeping both sides >= S */
                    for (num = 1; num < 8; num++)
                        if ((f->w * num + 7) / 8 >= S && (f->h * num + 7) / 8 >= S) break;
                    den = 8;
                }
                geo_t g = geometry(f->w, f->h, num, den, S, crop);
                double ke = k_err(sh.K + i * 9, f->K, &g);
                if (ke > kworst) kworst = ke;
                const uint8_t *im = sh.img + (size_t)i * S * S * 3;
                double e = disc_check(f, im, S, sh.K + i * 9, sh.joints + i * 63, g.rx0, g.ry0, g.rw, g.rh, &discs);
                if (e > dworst) dworst = e;
                /* pixels against the rendered frame resized at full resolution */
                uint8_t *ref = resize_region(f->rgb, f->w, (int)lround(g.rx0), (int)lround(g.ry0), (int)lround(g.rw),
                                             (int)lround(g.rh), S);
                double mean;
                int mx;
                pixel_diff(im, ref, (size_t)S * S * 3, &mean, &mx);
                if (fmt) pixels_exact &= mx == 0;
                if (mean > orig_mean_worst) orig_mean_worst = mean;
                free(ref);
                if (!fmt && djp) {   /* against djpeg at the same scale, same crop and resize */
                    int dw, dh;
                    snprintf(path, sizeof path, "%s/%s", dir, img_jpg[i]);
                    uint8_t *dj = djpeg(path, num, den, &dw, &dh);
                    if (!dj) {
                        ref_max_worst = 999;
                        continue;
                    }
                    uint8_t *r2 = resize_region(dj, dw, g.dx0, g.dy0, g.dside_w, g.dside_h, S);
                    pixel_diff(im, r2, (size_t)S * S * 3, &mean, &mx);
                    if (mx > ref_max_worst) ref_max_worst = mx;
                    if (mean > ref_mean_worst) ref_mean_worst = mean;
                    free(dj);
                    free(r2);
                }
            }
            ok(labels, "%s %s: joints, validity and has_hand stored bit for bit", fname, mode);
            ok(kworst < 1e-6, "%s %s: stored K = A K of the exact geometry (worst relative error %.2g)", fname, mode,
               kworst);
            ok(discs >= 6 && dworst <= 0.5, "%s %s: %d unoccluded joint discs' centres within 0.5 px of the stored "
               "joints projected with the stored K (worst %.3f px)", fname, mode, discs, dworst);
            /* stricter: a half-pixel slip of the pixel-centre convention would be 0.3-0.4 px on every disc */
            ok(discs && disc_sum / discs < 0.2, "%s %s: mean disc-centre error %.3f px < 0.2 px", fname, mode,
               discs ? disc_sum / discs : 0.0);
            if (fmt) {
                ok(pixels_exact, "%s %s: pixels = image_resize_u8 of the rendered pixels (lossless)", fname, mode);
            } else {
                ok(orig_mean_worst < 3.0, "%s %s: pixels within JPEG tolerance of the rendered frame resized at full "
                   "resolution (worst mean |diff| %.2f)", fname, mode, orig_mean_worst);
                if (djp)
                    ok(ref_max_worst <= 1, "%s %s: pixels within 1 level of djpeg at the same DCT scale, same "
                       "crop/resize (max %d, mean %.3f)", fname, mode, ref_max_worst, ref_mean_worst);
            }
            shards_free(&sh);
        }
}

/* ---- 2. colour types, orientation, bit depth ----------------------------------------------------- */
static int import_one_file(const char *dir, const char *name, const frame_t *f, int S, int crop, shards_t *sh,
                           char *err, size_t errlen) {
    char man[600], out[600], *images[1] = {(char *)name};
    const frame_t *fp[1] = {f};
    snprintf(man, sizeof man, "%s.jsonl", name);
    write_manifest(dir, man, 1, images, fp, NULL);
    snprintf(man, sizeof man, "%s/%s.jsonl", dir, name);
    snprintf(out, sizeof out, "%s/out-%s", root, name);
    import_result_t res;
    if (do_import(man, out, S, crop, 0, &res, err, errlen)) return -1;
    return shards_read(out, sh);
}

static void test_variants(void) {
    char dir[512], path[600], err[2048];
    snprintf(dir, sizeof dir, "%s/var", root);
    fs_mkdir_p(dir, 0755, NULL, 0);
    const frame_t *f = &fr[0];
    const int W = f->w, H = f->h, S = 224;
    size_t np = (size_t)W * H;
    uint8_t *buf;
    size_t len;
    shards_t sh, base;
    /* the 8-bit RGB PNG import is the reference for the lossless variants */
    frames_png(f->rgb, W, H, PNG_COLOR_TYPE_RGB, 8, &buf, &len);
    snprintf(path, sizeof path, "%s/base.png", dir);
    write_file(path, buf, len);
    free(buf);
    int have_base = import_one_file(dir, "base.png", f, S, 1, &base, err, sizeof err) == 0;
    ok(have_base, "reference PNG imported (%s)", have_base ? "ok" : err);
    geo_t g = geometry(W, H, 1, 2, S, 1);

    /* grayscale JPEG: against djpeg's gray, expanded */
    uint8_t *gray = malloc(np), *gray3 = malloc(np * 3);
    for (size_t i = 0; i < np; i++) {
        gray[i] = (uint8_t)((f->rgb[i * 3] * 77 + f->rgb[i * 3 + 1] * 150 + f->rgb[i * 3 + 2] * 29) >> 8);
        for (int c = 0; c < 3; c++) gray3[i * 3 + c] = gray[i];
    }
    frames_jpeg(gray, W, H, TJPF_GRAY, 95, &buf, &len);
    snprintf(path, sizeof path, "%s/gray.jpg", dir);
    write_file(path, buf, len);
    tjFree(buf);
    if (import_one_file(dir, "gray.jpg", f, S, 1, &sh, err, sizeof err) == 0) {
        int dw, dh, mx = 999;
        double mean = 0;
        uint8_t *dj = have_djpeg() ? djpeg(path, 1, 2, &dw, &dh) : NULL;
        if (dj) {
            uint8_t *r2 = resize_region(dj, dw, g.dx0, g.dy0, g.dside_w, g.dside_h, S);
            pixel_diff(sh.img, r2, (size_t)S * S * 3, &mean, &mx);
            free(r2);
            free(dj);
        }
        int grey = 1;
        for (size_t i = 0; i < (size_t)S * S; i++) grey &= sh.img[i * 3] == sh.img[i * 3 + 1] && sh.img[i * 3] == sh.img[i * 3 + 2];
        ok(grey && (mx <= 1 || !have_djpeg()), "grayscale JPEG: R=G=B, within 1 level of djpeg (max %d)", mx);
        shards_free(&sh);
    } else {
        ok(0, "grayscale JPEG imported: %s", err);
    }

    /* CMYK JPEG (TurboJPEG writes YCCK with an Adobe marker: values stored inverted) */
    uint8_t *cmyk = malloc(np * 4);
    for (size_t i = 0; i < np; i++) {
        for (int c = 0; c < 3; c++) cmyk[i * 4 + c] = f->rgb[i * 3 + c];   /* inverted C = R when K = 0 */
        cmyk[i * 4 + 3] = 255;                                               /* inverted K: no black */
    }
    int cm = frames_jpeg(cmyk, W, H, TJPF_CMYK, 95, &buf, &len) == 0;
    int ori, adobe = 0;
    if (cm) {
        imgdec_jpeg_markers(buf, len, &ori, &adobe);
        snprintf(path, sizeof path, "%s/cmyk.jpg", dir);
        write_file(path, buf, len);
        tjFree(buf);
    }
    ok(cm && adobe, "a CMYK JPEG with an Adobe marker written");
    if (cm && import_one_file(dir, "cmyk.jpg", f, S, 1, &sh, err, sizeof err) == 0) {
        uint8_t *ref = resize_region(f->rgb, W, (int)g.rx0, (int)g.ry0, (int)g.rw, (int)g.rh, S);
        double mean;
        int mx;
        pixel_diff(sh.img, ref, (size_t)S * S * 3, &mean, &mx);
        ok(mean < 3.0, "CMYK JPEG: RGB = C*K/255 of the inverted values, within JPEG tolerance of the frame "
           "(mean |diff| %.2f)", mean);
        free(ref);
        shards_free(&sh);
    } else {
        ok(0, "CMYK JPEG imported: %s", err);
    }
    free(cmyk);

    /* EXIF orientations: the stored pixels are the frame turned so that showing
     * them with the tag gives the frame back; the labels describe the frame. */
    for (int o = 2; o <= 8; o++) {
        int swap = o >= 5, sw = swap ? H : W, shh = swap ? W : H;
        uint8_t *st = malloc(np * 3);
        for (int y = 0; y < H; y++)      /* displayed (x, y) comes from stored (sx, sy) */
            for (int x = 0; x < W; x++) {
                int sx, sy;
                switch (o) {   /* the inverse of each EXIF transform, written out */
                case 2: sx = W - 1 - x; sy = y; break;            /* mirror: its own inverse */
                case 3: sx = W - 1 - x; sy = H - 1 - y; break;    /* 180 */
                case 4: sx = x; sy = H - 1 - y; break;            /* flip */
                case 5: sx = y; sy = x; break;                    /* transpose */
                case 6: sx = y; sy = W - 1 - x; break;            /* shown turned 90 cw: stored turned 90 ccw */
                case 7: sx = H - 1 - y; sy = W - 1 - x; break;    /* transverse */
                default: sx = H - 1 - y; sy = x; break;           /* 8: shown turned 90 ccw */
                }
                memcpy(st + ((size_t)sy * sw + sx) * 3, f->rgb + ((size_t)y * W + x) * 3, 3);
            }
        frames_jpeg(st, sw, shh, TJPF_RGB, 95, &buf, &len);
        if (have_djpeg()) {   /* the construction, checked by jpegtran's own transforms (EXIF's meaning) */
            static const char *const op[9] = {"", "", "-flip horizontal", "-rotate 180", "-flip vertical",
                                              "-transpose", "-rotate 90", "-transverse", "-rotate 270"};
            char plain[600], turned[600], cmd[2048];
            snprintf(plain, sizeof plain, "%s/plain%d.jpg", dir, o);
            snprintf(turned, sizeof turned, "%s/turned%d.jpg", dir, o);
            write_file(plain, buf, len);
            snprintf(cmd, sizeof cmd, "jpegtran %s -outfile '%s' '%s'", op[o], turned, plain);
            int tw = 0, th = 0;
            uint8_t *t = system(cmd) == 0 ? djpeg(turned, 1, 1, &tw, &th) : NULL;
            double mean = 999;
            int mx;
            if (t && tw == W && th == H) pixel_diff(t, f->rgb, np * 3, &mean, &mx);
            ok(mean < 3.0, "EXIF %d test image: jpegtran %s of it shows the frame (mean |diff| %.2f)", o, op[o], mean);
            free(t);
        }
        size_t elen;
        uint8_t *ex = frames_jpeg_exif(buf, len, o, &elen);
        tjFree(buf);
        int o2, a2;
        imgdec_jpeg_markers(ex, elen, &o2, &a2);
        char name[64];
        snprintf(name, sizeof name, "exif%d.jpg", o);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        write_file(path, ex, elen);
        free(ex);
        free(st);
        if (import_one_file(dir, name, f, S, 1, &sh, err, sizeof err) == 0) {
            uint8_t *ref = resize_region(f->rgb, W, (int)g.rx0, (int)g.ry0, (int)g.rw, (int)g.rh, S);
            double mean;
            int mx, cnt = 0;
            pixel_diff(sh.img, ref, (size_t)S * S * 3, &mean, &mx);
            double e = disc_check(f, sh.img, S, sh.K, sh.joints, g.rx0, g.ry0, g.rw, g.rh, &cnt);
            ok(o2 == o && mean < 3.0 && k_err(sh.K, f->K, &g) < 1e-6 && e <= 0.5,
               "EXIF orientation %d: shown upright (mean |diff| %.2f), K of the shown image, %d disc centres within "
               "0.5 px (worst %.3f)", o, mean, cnt, e);
            free(ref);
            shards_free(&sh);
        } else {
            ok(0, "EXIF orientation %d imported: %s", o, err);
        }
    }

    /* PNG: 16-bit (v * 257), gray, gray+alpha, RGBA: the colours exactly */
    uint8_t *p16 = malloc(np * 6), *rgba = malloc(np * 4), *ga = malloc(np * 2);
    for (size_t i = 0; i < np; i++) {
        for (int c = 0; c < 3; c++) p16[i * 6 + 2 * c] = p16[i * 6 + 2 * c + 1] = f->rgb[i * 3 + c];   /* v*257, BE */
        memcpy(rgba + i * 4, f->rgb + i * 3, 3);
        rgba[i * 4 + 3] = (uint8_t)(i * 7);   /* every alpha, 0 included */
        ga[i * 2] = gray[i];
        ga[i * 2 + 1] = (uint8_t)(i * 13);
    }
    struct { const char *name; const uint8_t *px; int type, depth, is_gray; } pv[] = {
        {"rgb16.png", p16, PNG_COLOR_TYPE_RGB, 16, 0},
        {"rgba.png", rgba, PNG_COLOR_TYPE_RGB_ALPHA, 8, 0},
        {"gray.png", gray, PNG_COLOR_TYPE_GRAY, 8, 1},
        {"grayalpha.png", ga, PNG_COLOR_TYPE_GRAY_ALPHA, 8, 1},
    };
    uint8_t *gref = resize_region(gray3, W, (int)g.rx0, (int)g.ry0, (int)g.rw, (int)g.rh, S);
    for (size_t k = 0; k < sizeof pv / sizeof pv[0]; k++) {
        frames_png(pv[k].px, W, H, pv[k].type, pv[k].depth, &buf, &len);
        snprintf(path, sizeof path, "%s/%s", dir, pv[k].name);
        write_file(path, buf, len);
        free(buf);
        if (import_one_file(dir, pv[k].name, f, S, 1, &sh, err, sizeof err) == 0) {
            const uint8_t *want = pv[k].is_gray ? gref : have_base ? base.img : NULL;
            double mean = 0;
            int mx = 999;
            if (want) pixel_diff(sh.img, want, (size_t)S * S * 3, &mean, &mx);
            ok(mx == 0, "%s: the stored colours exactly (alpha dropped, 16-bit read as sRGB) (max diff %d)",
               pv[k].name, mx);
            shards_free(&sh);
        } else {
            ok(0, "%s imported: %s", pv[k].name, err);
        }
    }
    free(gref);
    free(p16);
    free(rgba);
    free(ga);
    free(gray);
    free(gray3);
    if (have_base) shards_free(&base);
}

/* ---- 3. bad frames: fail names the line, skip counts --------------------------------------------- */
static void test_bad_frames(void) {
    char dir[512], path[600], err[2048], man[600], out[600];
    snprintf(dir, sizeof dir, "%s/bad", root);
    fs_mkdir_p(dir, 0755, NULL, 0);
    uint8_t *jpg, *png;
    size_t jl, pl;
    frames_jpeg(fr[0].rgb, 640, 480, TJPF_RGB, 90, &jpg, &jl);
    frames_png(fr[0].rgb, 640, 480, PNG_COLOR_TYPE_RGB, 8, &png, &pl);
    snprintf(path, sizeof path, "%s/good.jpg", dir);
    write_file(path, jpg, jl);
    snprintf(path, sizeof path, "%s/trunc.jpg", dir);
    write_file(path, jpg, jl / 2);
    uint8_t *cj = malloc(jl);
    memcpy(cj, jpg, jl);
    for (size_t i = jl / 3; i < jl / 3 + 64; i++) cj[i] = 0xFF;   /* markers in the entropy data */
    snprintf(path, sizeof path, "%s/corrupt.jpg", dir);
    write_file(path, cj, jl);
    free(cj);
    snprintf(path, sizeof path, "%s/trunc.png", dir);
    write_file(path, png, pl / 2);
    uint8_t *cp = malloc(pl);
    memcpy(cp, png, pl);
    cp[pl / 2] ^= 0x55;   /* a CRC error in the image data */
    snprintf(path, sizeof path, "%s/corrupt.png", dir);
    write_file(path, cp, pl);
    free(cp);
    snprintf(path, sizeof path, "%s/text.jpg", dir);
    write_file(path, "hello, not an image\n", 20);
    uint8_t small[10 * 10 * 3] = {0}, *sb;
    size_t sl;
    frames_jpeg(small, 10, 10, TJPF_RGB, 90, &sb, &sl);
    snprintf(path, sizeof path, "%s/small.jpg", dir);
    write_file(path, sb, sl);
    tjFree(sb);
    tjFree(jpg);
    free(png);

    struct { const char *file, *want; } cases[] = {
        {"trunc.jpg", "corrupt or truncated JPEG"},
        {"corrupt.jpg", "JPEG"},
        {"trunc.png", "PNG"},
        {"corrupt.png", "PNG"},
        {"text.jpg", "not a JPEG or PNG file"},
        {"small.jpg", "smaller than 14 px"},
        {"missing.jpg", "no such file"},
    };
    const int NC = (int)(sizeof cases / sizeof cases[0]);
    char *images[16];
    const frame_t *fp[16];
    for (int i = 0; i < NC; i++) {
        /* good, bad: the bad one is on line 2 */
        images[0] = "good.jpg";
        images[1] = (char *)cases[i].file;
        fp[0] = fp[1] = &fr[0];
        write_manifest(dir, "one.jsonl", 2, images, fp, NULL);
        snprintf(man, sizeof man, "%s/one.jsonl", dir);
        snprintf(out, sizeof out, "%s/out-bad", root);
        import_result_t res;
        int r = do_import(man, out, 28, 0, 0, &res, err, sizeof err);
        struct stat st;
        ok(r == -1 && strstr(err, "one.jsonl line 2") && strstr(err, cases[i].file) && strstr(err, cases[i].want) &&
           stat(out, &st) != 0,
           "%s: the import fails naming the manifest line and the file, nothing written: %s", cases[i].file, err);
    }
    /* skip mode: all of them in one manifest, in order; the reasons are the first five by line */
    images[0] = "good.jpg";
    fp[0] = &fr[0];
    for (int i = 0; i < NC; i++) {
        images[i + 1] = (char *)cases[i].file;
        fp[i + 1] = &fr[0];
    }
    images[NC + 1] = "good.jpg";
    fp[NC + 1] = &fr[0];
    write_manifest(dir, "all.jsonl", NC + 2, images, fp, NULL);
    snprintf(man, sizeof man, "%s/all.jsonl", dir);
    import_result_t res;
    int r = do_import(man, out, 28, 0, 1, &res, err, sizeof err);
    ok(r == 0 && res.imported == 2 && res.skipped == NC && res.n_reasons == IMPORT_MAX_REASONS &&
       strstr(res.reasons[0], "line 2") && strstr(res.reasons[4], "line 6"),
       "on_error skip: %lld imported, %lld skipped, the first %d reasons in line order (%s ...)",
       (long long)res.imported, (long long)res.skipped, res.n_reasons, res.reasons[0]);
    /* every frame bad: fails even when skipping */
    for (int i = 0; i < NC; i++) images[i] = (char *)cases[i].file;
    write_manifest(dir, "none.jsonl", NC, images, fp, NULL);
    snprintf(man, sizeof man, "%s/none.jsonl", dir);
    r = do_import(man, out, 28, 0, 1, &res, err, sizeof err);
    ok(r == -1 && strstr(err, "no frame could be imported"), "all frames bad, skip mode: fails: %.120s", err);

    /* confinement: an image outside the roots (a symlink out, and ..) is refused like a missing one */
    char outside[300];
    snprintf(outside, sizeof outside, "%s/outside", root);
    fs_mkdir_p(outside, 0755, NULL, 0);
    snprintf(path, sizeof path, "%s/good.jpg", outside);
    frames_jpeg(fr[0].rgb, 640, 480, TJPF_RGB, 90, &jpg, &jl);
    write_file(path, jpg, jl);
    tjFree(jpg);
    char link[600];
    snprintf(link, sizeof link, "%s/link.jpg", dir);
    unlink(link);
    if (symlink(path, link)) diag("symlink: %s", strerror(errno));
    const char *roots[1] = {dir};
    const char *outs[] = {"link.jpg", "../outside/good.jpg", "../outside/nothing.jpg"};
    for (int i = 0; i < 3; i++) {
        images[0] = (char *)outs[i];
        fp[0] = &fr[0];
        write_manifest(dir, "out.jsonl", 1, images, fp, NULL);
        snprintf(man, sizeof man, "%s/out.jsonl", dir);
        import_opts_t o = {.image_size = 28, .roots = roots, .n_roots = 1, .threads = 1};
        fs_rm_rf(out, NULL, 0);
        r = import_to_dir(man, out, &o, &res, err, sizeof err);
        ok(r == -1 && strstr(err, "is not under a dataset root") && strstr(err, "line 1"),
           "%s beneath a root's manifest: refused the same whether or not it exists: %s", outs[i], err);
    }
    /* inside the root, paths the short way (opened beneath the root, no link followed) refuses
     * and the resolving way allows: a link to a file of the root, a '..' that stays inside,
     * a './'; with a plain file beside them, each imported with the same pixels */
    char inside[600], inlink[600], sub[600];
    snprintf(inside, sizeof inside, "%s/in.jpg", dir);
    frames_jpeg(fr[0].rgb, 640, 480, TJPF_RGB, 90, &jpg, &jl);
    write_file(inside, jpg, jl);
    tjFree(jpg);
    snprintf(inlink, sizeof inlink, "%s/inlink.jpg", dir);
    unlink(inlink);
    if (symlink("in.jpg", inlink)) diag("symlink: %s", strerror(errno));
    snprintf(sub, sizeof sub, "%s/sub", dir);
    fs_mkdir_p(sub, 0755, NULL, 0);
    const char *ins[] = {"in.jpg", "inlink.jpg", "sub/../in.jpg", "./sub/../in.jpg"};
    for (int i = 0; i < 4; i++) {
        images[i] = (char *)ins[i];
        fp[i] = &fr[0];
    }
    write_manifest(dir, "in.jsonl", 4, images, fp, NULL);
    snprintf(man, sizeof man, "%s/in.jsonl", dir);
    {
        import_opts_t o = {.image_size = 28, .roots = roots, .n_roots = 1, .threads = 2};
        fs_rm_rf(out, NULL, 0);
        r = import_to_dir(man, out, &o, &res, err, sizeof err);
        int same = 0;
        shards_t sh;
        if (r == 0 && shards_read(out, &sh) == 0) {
            size_t one = (size_t)sh.S * sh.S * 3;
            same = sh.n == 4;
            for (int i = 1; same && i < 4; i++) same = memcmp(sh.img + (size_t)i * one, sh.img, one) == 0;
            shards_free(&sh);
        }
        ok(r == 0 && res.imported == 4 && same,
           "beneath the root: a plain path, a link to a file of the root, '..' and './' inside it: all 4 imported, "
           "the same pixels (%s)", r ? err : "ok");
    }
    /* the manifest itself outside the roots */
    snprintf(man, sizeof man, "%s/../bad/one.jsonl", outside);
    const char *roots2[1] = {outside};
    import_opts_t o2 = {.image_size = 28, .roots = roots2, .n_roots = 1, .threads = 1};
    r = import_to_dir(man, out, &o2, &res, err, sizeof err);
    ok(r == IMPORT_FORBIDDEN, "a manifest outside the roots: IMPORT_FORBIDDEN (%s)", err);
}

/* ---- 4. manifest lines ------------------------------------------------------------------------------ */
static void test_manifest_lines(void) {
    char err[1024], line[8192];
    frames_manifest_line(line, sizeof line, "a.jpg", &fr[0], fr[0].K);
    char good[8192];
    snprintf(good, sizeof good, "%s", line);
    /* a good line, a shared K and mm on a defaults line, blank lines, CRLF */
    char text[65536];
    frames_manifest_line(line, sizeof line, "b.jpg", &fr[1], NULL);
    snprintf(text, sizeof text, "{\"units\":\"mm\",\"K\":[[500,0,320],[0,500,240],[0,0,1]]}\r\n\n%s\r\n  \n", line);
    manifest_t m;
    int r = manifest_parse(text, strlen(text), "m.jsonl", "/data", 1, &m, err, sizeof err);
    ok(r == 0 && m.n == 1 && !m.frames[0].error && m.frames[0].line == 3 && strcmp(m.frames[0].image, "/data/b.jpg") == 0 &&
       m.frames[0].K[0] == 500 && fabsf(m.frames[0].joints[0][2] - fr[1].joints[0][2] / 1000) < 1e-9f,
       "defaults line (mm, shared K), CRLF and blank lines: frame on line 3, metres, shared K (%s)", r ? err : "ok");
    manifest_free(&m);

    struct { const char *line, *want; } bad[] = {
        {"{\"image\":\"a.jpg\", \"joints_3d\":[[1,2,3]], \"K\":[[1,0,0],[0,1,0],[0,0,1]]}", "joints_3d has 1 joints, expected 21"},
        {"{\"image\":\"a.jpg\"", "not valid JSON"},
        {"[1,2,3]", "not a JSON object"},
        {"{\"image\":\"a.jpg\", \"joints_3d\":[[NaN,0,0]]}", "NaN and Infinity are not JSON numbers"},
        {"{\"image\":\"a.jpg\", \"joints_3d\":[[1e999,0,0]]}", "not valid JSON"},
        {"{\"image\":\"\\u00ff\xff.jpg\"}", "not valid JSON"},
        {"{\"joints_3d\":[]}", "image must be a string"},
        {"{\"image\":\"a.jpg\",\"joints_3d\":[],\"K\":[[1,0,0],[0,1,0],[0,0,1]],\"extra\":1}", "unknown field 'extra'"},
        {"{\"image\":\"a.jpg\",\"has_hand\":false,\"K\":[[0,0,0],[0,0,0],[0,0,1]]}", "K is singular"},
        {"{\"image\":\"a.jpg\",\"has_hand\":false,\"K\":[[1,0],[0,1,0],[0,0,1]]}", "K row 0 must be an array of 3"},
        {"{\"image\":\"a.jpg\",\"has_hand\":false}", "no K"},
        {"{\"image\":\"a.jpg\",\"has_hand\":2,\"K\":[[1,0,0],[0,1,0],[0,0,1]]}", "has_hand must be"},
        {"{\"image\":\"a.jpg\",\"has_hand\":false,\"hand_side\":\"up\",\"K\":[[1,0,0],[0,1,0],[0,0,1]]}", "hand_side must be"},
        {"{\"image\":\"a.jpg\",\"has_hand\":false,\"joints_valid\":[1],\"K\":[[1,0,0],[0,1,0],[0,0,1]]}", "joints_valid must be an array of 21"},
        {"{\"image\":\"a.jpg\",\"has_hand\":false,\"K\":[[1,0,0],[0,1,0],[0,0,1]],\"K\":1}", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "%s\n%s\n", good, bad[i].line);
        r = manifest_parse(text, strlen(text), "m.jsonl", "/data", 1, &m, err, sizeof err);
        ok(r == 0 && m.n == 2 && !m.frames[0].error && m.n_errors == 1 && m.frames[1].error &&
           strstr(m.frames[1].error, "m.jsonl line 2") && strstr(m.frames[1].error, bad[i].want),
           "bad line %zu: %s", i, m.n == 2 && m.frames[1].error ? m.frames[1].error : r ? err : "(accepted)");
        manifest_free(&m);
    }
    /* a joint with two coordinates among 21 */
    {
        char two[4096];
        size_t o = (size_t)snprintf(two, sizeof two, "{\"image\":\"a.jpg\",\"K\":[[1,0,0],[0,1,0],[0,0,1]],"
                                    "\"joints_3d\":[[0.1,0.2]");
        for (int j = 1; j < 21; j++) o += (size_t)snprintf(two + o, sizeof two - o, ",[0.1,0.2,0.5]");
        snprintf(two + o, sizeof two - o, "]}");
        r = manifest_parse(two, strlen(two), "m.jsonl", "/data", 1, &m, err, sizeof err);
        ok(r == 0 && m.n == 1 && m.frames[0].error && strstr(m.frames[0].error, "joints_3d[0] must be [x,y,z]"),
           "a joint with 2 numbers: %s", m.n && m.frames[0].error ? m.frames[0].error : "(accepted)");
        manifest_free(&m);
    }

    /* a large manifest parsed by 4 threads = parsed by one (frames, lines, errors) */
    {
        size_t cap = 5000 * 1200, o = 0;
        char *big = malloc(cap);
        o += (size_t)snprintf(big + o, cap - o, "{\"units\":\"mm\"}\n");
        for (int i = 0; i < 5000; i++) {
            if (i % 97 == 13) o += (size_t)snprintf(big + o, cap - o, "{\"image\":\"x%d.jpg\",\"bad\":1}\n", i);
            else if (i % 101 == 7) o += (size_t)snprintf(big + o, cap - o, "\n");
            else {
                frames_manifest_line(line, sizeof line, "f.jpg", &fr[i % NF], fr[i % NF].K);
                o += (size_t)snprintf(big + o, cap - o, "%s\n", line);
            }
        }
        manifest_t a, b;
        int ra = manifest_parse(big, o, "big.jsonl", "/d", 1, &a, err, sizeof err);
        int rb = manifest_parse(big, o, "big.jsonl", "/d", 4, &b, err, sizeof err);
        int same = ra == 0 && rb == 0 && a.n == b.n && a.n_errors == b.n_errors && a.n_errors > 0;
        for (size_t i = 0; same && i < a.n; i++) {
            const mf_frame_t *x = &a.frames[i], *y = &b.frames[i];
            same = x->line == y->line && !x->error == !y->error && (!x->error || !strcmp(x->error, y->error)) &&
                   (!x->image || !strcmp(x->image, y->image)) && !memcmp(x->joints, y->joints, sizeof x->joints) &&
                   !memcmp(x->K, y->K, sizeof x->K);
        }
        ok(same, "a manifest of %zu frames (%zu bad, blank lines, mm defaults) parses the same on 1 and 4 threads",
           a.n, a.n_errors);
        manifest_free(&a);
        manifest_free(&b);
        free(big);
    }

    /* problems of the whole manifest */
    const char *whole[][2] = {
        {"", "no frames"},
        {"\n\n  \n", "no frames"},
        {"{\"units\":\"inch\"}\n", "units must be"},
        {"{\"K\":[[0,0,0],[0,0,0],[0,0,0]]}\n", "K is singular"},
        {"{\"unit\":\"m\"}\n", "unknown field 'unit'"},
    };
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        r = manifest_parse(whole[i][0], strlen(whole[i][0]), "m.jsonl", "/data", 1, &m, err, sizeof err);
        ok(r == -1 && strstr(err, whole[i][1]) && m.n == 0, "whole manifest %zu refused: %s", i, err);
        manifest_free(&m);
    }
    /* FreiHAND: sizes must agree */
    r = manifest_parse_freihand("[]", 2, "[]", 2, "x_xyz.json", "/r/%08ld.jpg", NULL, NULL, 1, &m, err, sizeof err);
    ok(r == -1 && strstr(err, "0 samples"), "FreiHAND with no samples refused: %s", err);
    manifest_free(&m);
}

/* ---- 5. FreiHAND layout ------------------------------------------------------------------------------ */
static void test_freihand(void) {
    char dir[512], path[700], err[1024];
    snprintf(dir, sizeof dir, "%s/FreiHAND_pub_v2", root);
    snprintf(path, sizeof path, "%s/training/rgb", dir);
    fs_mkdir_p(path, 0755, NULL, 0);
    const int N = 3, V = 2;   /* 3 labelled samples shown twice: 6 images */
    FILE *fx, *fk;
    snprintf(path, sizeof path, "%s/training_xyz.json", dir);
    fx = fopen(path, "w");
    snprintf(path, sizeof path, "%s/training_K.json", dir);
    fk = fopen(path, "w");
    fprintf(fx, "[");
    fprintf(fk, "[");
    frame_t sq[3];
    for (int i = 0; i < N; i++) {
        frame_render(5, i, 224, 224, &sq[i]);
        fprintf(fx, "%s[", i ? "," : "");
        for (int j = 0; j < 21; j++)
            fprintf(fx, "%s[%.9g,%.9g,%.9g]", j ? "," : "", (double)sq[i].joints[j][0], (double)sq[i].joints[j][1],
                    (double)sq[i].joints[j][2]);
        fprintf(fx, "]");
        const float *K = sq[i].K;
        fprintf(fk, "%s[[%.9g,%.9g,%.9g],[%.9g,%.9g,%.9g],[%.9g,%.9g,%.9g]]", i ? "," : "", (double)K[0], (double)K[1],
                (double)K[2], (double)K[3], (double)K[4], (double)K[5], (double)K[6], (double)K[7], (double)K[8]);
        for (int v = 0; v < V; v++) {
            uint8_t *buf;
            size_t len;
            frames_jpeg(sq[i].rgb, 224, 224, TJPF_RGB, 95, &buf, &len);
            snprintf(path, sizeof path, "%s/training/rgb/%08d.jpg", dir, v * N + i);
            write_file(path, buf, len);
            tjFree(buf);
        }
    }
    fprintf(fx, "]");
    fprintf(fk, "]");
    fclose(fx);
    fclose(fk);
    char out[600];
    snprintf(out, sizeof out, "%s/out-frei", root);
    for (int how = 0; how < 2; how++) {
        import_result_t res;
        snprintf(path, sizeof path, how ? "%s/training_xyz.json" : "%s", dir);
        int r = do_import(path, out, 112, 0, 0, &res, err, sizeof err);
        shards_t sh;
        int good = r == 0 && res.imported == N * V && shards_read(out, &sh) == 0;
        for (int i = 0; good && i < N * V; i++) good = memcmp(sh.joints + i * 63, sq[i % N].joints, 63 * 4) == 0;
        ok(good, "FreiHAND layout as %s: %d images of %d labelled samples, labels of sample i %% N (%s)",
           how ? "training_xyz.json" : "the directory", N * V, N, r ? err : "ok");
        if (r == 0) shards_free(&sh);
    }
    for (int i = 0; i < N; i++) frame_free(&sq[i]);
}

/* ---- 6. cache key, cache hits, cancel ------------------------------------------------------------------ */
static volatile int cancel_flag;
static void cancel_soon(void *ud, const import_progress_t *p) {
    (void)ud;
    if (strcmp(p->phase, "decoding") == 0) cancel_flag = 1;
}

static void test_cache_and_cancel(void) {
    char man[600], cache[600], err[2048];
    snprintf(man, sizeof man, "%s/main/jpg.jsonl", root);
    snprintf(cache, sizeof cache, "%s/cache", root);
    import_opts_t o = {.image_size = 56, .threads = 2};
    import_result_t a, b, c, d;
    int r1 = import_cached(man, cache, &o, &a, err, sizeof err);
    int r2 = import_cached(man, cache, &o, &b, err, sizeof err);
    ok(r1 == 0 && r2 == 0 && !a.cache_hit && b.cache_hit && strcmp(a.key, b.key) == 0 && strcmp(a.dir, b.dir) == 0 &&
       b.imported == NF, "the same manifest again: a cache hit (%.12s...)", a.key);
    ok(!a.listed && b.listed, "the hit found from the entry's frame list, the manifest not parsed");
    o.crop = 1;
    int r3 = import_cached(man, cache, &o, &c, err, sizeof err);
    ok(r3 == 0 && !c.cache_hit && strcmp(a.key, c.key) != 0, "another resize mode: another key");
    o.crop = 0;
    char img[600];
    snprintf(img, sizeof img, "%s/main/%s", root, img_jpg[0]);
    struct timeval tv[2] = {{1000000000, 0}, {1000000000, 0}};
    utimes(img, tv);
    int r4 = import_cached(man, cache, &o, &d, err, sizeof err);
    ok(r4 == 0 && !d.cache_hit && !d.listed && strcmp(a.key, d.key) != 0,
       "an image's mtime changed: the list's key no longer matches, the full way: another key");
    ok(count_entries(cache) == 3, "three complete cache directories, no temporary ones (%d entries)",
       count_entries(cache));
    {   /* the newest of two lists of one manifest; a damaged list; the manifest's content changed */
        import_result_t e1, e2, e3;
        int r5 = import_cached(man, cache, &o, &e1, err, sizeof err);
        ok(r5 == 0 && e1.cache_hit && e1.listed && strcmp(e1.key, d.key) == 0,
           "again: a listed hit on the newer entry (two lists of this manifest)");
        /* both lists of this manifest (a's, of files since changed, gives the same frames: a hit too) */
        char list[2][PATH_MAX + 32];
        size_t ll[2] = {0, 0};
        char *keep[2];
        for (int q = 0; q < 2; q++) {
            snprintf(list[q], sizeof list[q], "%s/frames.list", q ? d.dir : a.dir);
            keep[q] = fs_read_file(list[q], 1 << 20, &ll[q], err, sizeof err);
        }
        static const char *damage[] = {"garbage\n", "traind-frames 1 x y 3\n-\n", NULL};
        for (int k = 0; damage[k]; k++) {
            for (int q = 0; q < 2; q++) write_file(list[q], damage[k], strlen(damage[k]));
            int r = import_cached(man, cache, &o, &e2, err, sizeof err);
            ok(r == 0 && e2.cache_hit && !e2.listed && strcmp(e2.key, d.key) == 0,
               "a damaged frame list (%d): the manifest parsed, still the hit%s%s", k, r ? ": " : "", r ? err : "");
        }
        if (keep[0] && keep[1]) {   /* lists cut short; a path length that runs past its line */
            for (int q = 0; q < 2; q++) write_file(list[q], keep[q], ll[q] - 10);
            int r = import_cached(man, cache, &o, &e2, err, sizeof err);
            ok(r == 0 && e2.cache_hit && !e2.listed, "a frame list cut short: the manifest parsed, still the hit");
            for (int q = 0; q < 2; q++) {
                char *sp = strchr(strchr(keep[q], '\n') + 1, ' ');
                if (sp) sp[-1] = '9';
                write_file(list[q], keep[q], ll[q]);
            }
            r = import_cached(man, cache, &o, &e2, err, sizeof err);
            ok(r == 0 && e2.cache_hit && !e2.listed, "a path length that runs past its line: the manifest parsed");
        }
        for (int q = 0; q < 2; q++) free(keep[q]);
        e2.listed = 0;
        int r7 = import_cached(man, cache, &o, &e2, err, sizeof err);
        ok(r7 == 0 && e2.cache_hit && !e2.listed, "and the damaged lists stay unused (%d)", e2.listed);
        FILE *mf = fopen(man, "a");
        fputs("\n", mf);   /* a blank line: the same frames, another content hash */
        fclose(mf);
        int r6 = import_cached(man, cache, &o, &e3, err, sizeof err);
        ok(r6 == 0 && !e3.listed && !e3.cache_hit && strcmp(e3.key, d.key) != 0,
           "the manifest's content changed: its list not used, another key");
    }
    {   /* skip mode: a malformed line and a missing file listed as such; the hit the same */
        char sm[600], line[8192];
        snprintf(sm, sizeof sm, "%s/main/skiplist.jsonl", root);
        FILE *f = fopen(sm, "w");
        for (int i = 0; i < 4; i++) {
            frames_manifest_line(line, sizeof line, i == 2 ? "nothing-here.jpg" : img_jpg[i], &fr[i], fr[i].K);
            fprintf(f, "%s\n%s", line, i == 1 ? "{\"image\":\n" : "");
        }
        fclose(f);
        import_opts_t os = {.image_size = 28, .threads = 2, .skip = 1};
        import_result_t s1, s2;
        int q1 = import_cached(sm, cache, &os, &s1, err, sizeof err);
        int q2 = import_cached(sm, cache, &os, &s2, err, sizeof err);
        ok(q1 == 0 && q2 == 0 && !s1.cache_hit && s2.cache_hit && s2.listed && strcmp(s1.key, s2.key) == 0 &&
           s1.imported == 3 && s1.skipped == 2 && s2.imported == 3 && s2.skipped == 2,
           "skip mode, a malformed line and a missing file: the second import a listed hit, 3 imported, 2 skipped "
           "(%lld, %lld)%s%s", (long long)s2.imported, (long long)s2.skipped, q1 || q2 ? ": " : "", q1 || q2 ? err : "");
    }

    /* cancel during the decoding (60 frames, cancelled at the first progress report): nothing left */
    char out[600], path[600];
    snprintf(out, sizeof out, "%s/out-cancel", root);
    fs_rm_rf(out, NULL, 0);
    snprintf(path, sizeof path, "%s/main/many.jsonl", root);
    FILE *f = fopen(path, "w");
    char line[8192];
    for (int i = 0; i < 60; i++) {
        frames_manifest_line(line, sizeof line, img_jpg[i % NF], &fr[i % NF], fr[i % NF].K);
        fprintf(f, "%s\n", line);
    }
    fclose(f);
    cancel_flag = 0;
    import_opts_t oc = {.image_size = 224, .threads = 1, .cancel = &cancel_flag, .progress = cancel_soon};
    import_result_t res;
    int before = count_entries(root);
    int rc = import_to_dir(path, out, &oc, &res, err, sizeof err);
    struct stat st;
    ok(rc == IMPORT_CANCELLED && stat(out, &st) != 0, "cancelled while decoding: IMPORT_CANCELLED, no output (%s)",
       err);
    ok(import_sweep_tmp(root) == 0 && count_entries(root) == before, "and no temporary directory left");
}

/* ---- streaming: the sink gets every written shard's frames, as written ----------------------------- */
typedef struct {
    shards_t got;          /* rows as the sink received them, at their index */
    uint8_t *seen;         /* [n] times each row came */
    int calls, fail_at;    /* fail_at: the call that returns -1 (0: none) */
    backend_t *be;         /* with base/l: also put on the backend */
    void *base;
    const ds_layout_t *l;
    int64_t masked;
    pthread_mutex_t mu;    /* the sink is called from several pool threads: it serializes */
} sink_t;

static int rec_sink_locked(sink_t *k, int64_t first, const import_rows_t *rows, char *msg, size_t msglen) {
    if (++k->calls == k->fail_at) return snprintf(msg, msglen, "the sink refuses call %d", k->calls), -1;
    int S = rows->image_size;
    for (int64_t j = 0; j < rows->n; j++) {
        int64_t i = first + j;
        if (i < 0 || i >= k->got.n) return snprintf(msg, msglen, "row %lld out of range", (long long)i), -1;
        k->seen[i]++;
        memcpy(k->got.img + (size_t)i * S * S * 3, rows->images + (size_t)j * S * S * 3, (size_t)S * S * 3);
        memcpy(k->got.joints + i * 63, rows->joints + j * 63, 63 * 4);
        memcpy(k->got.K + i * 9, rows->intrinsics + j * 9, 9 * 4);
        memcpy(k->got.valid + i * 21, rows->valid + j * 21, 21);
        k->got.hh[i] = rows->has_hand[j];
    }
    if (k->be)
        return dataset_put_rows(k->be, k->base, k->l, first, rows->n, rows->images, rows->joints, rows->valid,
                                rows->has_hand, rows->intrinsics, &k->masked, msg, msglen);
    return 0;
}

static int rec_sink(void *ud, int64_t first, const import_rows_t *rows, char *msg, size_t msglen) {
    sink_t *k = ud;
    pthread_mutex_lock(&k->mu);
    int r = rec_sink_locked(k, first, rows, msg, msglen);
    pthread_mutex_unlock(&k->mu);
    return r;
}

static void test_sink(void) {
    char man[600], out[600], out2[600], err[2048];
    const int n = 300, S = 28;
    snprintf(man, sizeof man, "%s/main/sink.jsonl", root);
    FILE *f = fopen(man, "w");
    char line[8192];
    for (int i = 0; i < n; i++) {
        frames_manifest_line(line, sizeof line, img_jpg[i % NF], &fr[i % NF], fr[i % NF].K);
        fprintf(f, "%s\n", line);
    }
    fclose(f);
    snprintf(out, sizeof out, "%s/out-sink", root);
    snprintf(out2, sizeof out2, "%s/out-sink2", root);
    char berr[256];
    backend_t *be = backend_cpu_create(berr, sizeof berr);
    ds_layout_t l;
    size_t bytes = ds_layout(&l, n, S, S, DS_F_JOINTS_VALID | DS_F_HAS_HAND | DS_F_INTRINSICS);
    sink_t k = {.be = be, .l = &l, .mu = PTHREAD_MUTEX_INITIALIZER};
    k.got.n = n;
    k.got.S = S;
    k.got.img = calloc((size_t)n * S * S * 3, 1);
    k.got.joints = calloc((size_t)n * 63, 4);
    k.got.K = calloc((size_t)n * 9, 4);
    k.got.valid = calloc((size_t)n * 21, 1);
    k.got.hh = calloc(n, 1);
    k.seen = calloc(n, 1);
    k.base = be && bytes ? be->alloc(be, bytes) : NULL;
    if (k.base) be->zero(be, k.base, bytes);   /* the layout's alignment gaps, compared below */
    import_opts_t o = {.image_size = S, .threads = 2, .sink = rec_sink, .ud = &k, .shard_frames = 16};   /* 19 shards */
    import_result_t res;
    fs_rm_rf(out, NULL, 0);
    int rc = import_to_dir(man, out, &o, &res, err, sizeof err);
    int once = 1;
    for (int i = 0; i < n; i++) once &= k.seen[i] == 1;
    ok(rc == 0 && res.imported == n && once && k.calls > 1,
       "fail mode: every frame handed to the sink once, at its row (%d calls, %s)", k.calls, rc ? err : "ok");
    shards_t sh;
    int rr = shards_read(out, &sh);
    ok(rr == 0 && sh.n == n && !memcmp(sh.img, k.got.img, (size_t)n * S * S * 3) &&
       !memcmp(sh.joints, k.got.joints, (size_t)n * 63 * 4) && !memcmp(sh.K, k.got.K, (size_t)n * 9 * 4) &&
       !memcmp(sh.valid, k.got.valid, (size_t)n * 21) && !memcmp(sh.hh, k.got.hh, n),
       "the rows the sink got are the written shards', bit for bit");
    /* the rows put on the backend = the written directory loaded as any dataset */
    ds_info_t info;
    ds_layout_t l2;
    void *base2 = NULL;
    int lr = -1;
    if (be && k.base && ds_scan(out, &info, err, sizeof err) == 0) {
        if (ds_layout_for(&l2, &info) && l2.total == l.total && (base2 = be->alloc(be, l2.total))) {
            be->zero(be, base2, l2.total);
            lr = dataset_load(be, out, &info, base2, &l2, NULL, NULL, NULL, NULL, err, sizeof err);
        }
        ds_info_free(&info);
    }
    char *a = malloc(l.total), *b = malloc(l.total);
    if (lr == 0) {
        be->download(be, a, k.base, l.total);
        be->download(be, b, base2, l.total);
    }
    ok(lr == 0 && !memcmp(a, b, l.total), "dataset_put_rows of the streamed rows == dataset_load of the files, bit "
       "for bit (%.1f MB)", l.total / 1e6);
    free(a);
    free(b);
    if (base2) be->free(be, base2);
    shards_free(&sh);

    /* skip mode: rows move by the frames skipped before them, so no sink */
    memset(k.seen, 0, n);
    k.calls = 0;
    o.skip = 1;
    rc = import_to_dir(man, out2, &o, &res, err, sizeof err);
    ok(rc == 0 && k.calls == 0, "on_error skip: the sink is not called");
    o.skip = 0;

    /* a sink that fails fails the import, and nothing is left */
    k.calls = 0;
    k.fail_at = 2;
    fs_rm_rf(out2, NULL, 0);
    rc = import_to_dir(man, out2, &o, &res, err, sizeof err);
    struct stat st;
    ok(rc != 0 && strstr(err, "the sink refuses call 2") && stat(out2, &st) != 0,
       "a failing sink fails the import, naming why, no output (%s)", err);
    ok(import_sweep_tmp(root) == 0, "and no temporary directory left");
    /* rows outside the layout are refused */
    float j0[63] = {0}, k0[9] = {0};
    uint8_t v0[21] = {0}, h0 = 0, px[28 * 28 * 3] = {0};
    ok(be && k.base && dataset_put_rows(be, k.base, &l, n, 1, px, j0, v0, &h0, k0, NULL, err, sizeof err) != 0 &&
       strstr(err, "not within"), "dataset_put_rows past the layout: refused (%s)", err);
    if (k.base) be->free(be, k.base);
    if (be) be->destroy(be);
    shards_free(&k.got);
    free(k.seen);
}

/* ---- 7. the fuzz corpus and the crashes it found ------------------------------------------------------- */
static void replay_dir(const char *dir, int *n) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    imgdec_t *dec = imgdec_new();
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        size_t len;
        char *buf = fs_read_file(path, 1 << 24, &len, NULL, 0);
        if (!buf) continue;
        fuzz_import_one(dec, (const uint8_t *)buf, len);   /* asserts inside */
        free(buf);
        (*n)++;
    }
    imgdec_free(dec);
    closedir(d);
}

/* FreiHAND's files parsed element by element on several threads give what the whole
 * parse gives: the frames, a frame's error, or the whole file's error (the scan
 * hands anything odd to the whole parse). */
static char *fh_samples(int n, int bad_at, const char *bad) {
    size_t cap = (size_t)n * 700 + 256, o = 0;
    char *t = malloc(cap);
    o += (size_t)snprintf(t + o, cap - o, " [");
    for (int i = 0; i < n; i++) {
        if (i == bad_at) {
            o += (size_t)snprintf(t + o, cap - o, "%s%s", i ? "," : "", bad);
            continue;
        }
        o += (size_t)snprintf(t + o, cap - o, "%s\n [", i ? "," : "");
        for (int j = 0; j < 21; j++)
            o += (size_t)snprintf(t + o, cap - o, "%s[%.9g, %.9g, %.9g]", j ? "," : "", 0.001 * i - 0.05 + 0.002 * j,
                                  0.03 - 0.0005 * j, 0.4 + 0.001 * i);
        o += (size_t)snprintf(t + o, cap - o, "]");
    }
    snprintf(t + o, cap - o, "]\n");
    return t;
}

static char *fh_Ks(int n) {
    size_t cap = (size_t)n * 64 + 16, o = 0;
    char *t = malloc(cap);
    o += (size_t)snprintf(t + o, cap - o, "[");
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(t + o, cap - o, "%s[[%d,0,112],[0,%d,112],[0,0,1]]", i ? "," : "", 500 + i % 50,
                              500 + i % 50);
    snprintf(t + o, cap - o, "]");
    return t;
}

static void test_freihand_split(void) {
    static const struct { int n, bad_at; const char *bad, *what; } cases[] = {
        {700, -1, NULL, "700 samples (two threads' worth)"},
        {700, 400, "[[1,2,3]]", "a sample with one joint (a frame's error)"},
        {700, 123, "{\"a\": [1, \"],[\"]}", "an object with brackets in a string"},
        {700, 650, "[[1.2.3, 0, 0]]", "a number jansson refuses (the whole file's error)"},
        {700, 5, "", "an empty element (1,,2)"},
        {600, 599, "5", "a number for a sample"},
        {3, 1, "\"x\\\"],[\"", "an escaped quote in a string"},
        {512, 0, "[[0,0,0]]]", "a bracket too many"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *x = fh_samples(cases[c].n, cases[c].bad_at, cases[c].bad ? cases[c].bad : ""), *k = fh_Ks(cases[c].n);
        ok(fuzz_freihand_same(x, strlen(x), k, strlen(k), 1 + (int)c % 3), "FreiHAND split = whole: %s", cases[c].what);
        free(x);
        free(k);
    }
    /* whole files refused the same way: trailing bytes, an unclosed array, a K count off by one, nesting deeper than
     * jansson takes (the scan stops short of it) */
    char *k700 = fh_Ks(700), *k699 = fh_Ks(699), *x = fh_samples(700, -1, NULL);
    size_t xl = strlen(x);
    char *tail = malloc(xl + 8);
    snprintf(tail, xl + 8, "%s x", x);
    ok(fuzz_freihand_same(tail, strlen(tail), k700, strlen(k700), 1), "FreiHAND split = whole: bytes after the array");
    ok(fuzz_freihand_same(x, xl - 2, k700, strlen(k700), 1), "FreiHAND split = whole: the array not closed");
    ok(fuzz_freihand_same(x, xl, k699, strlen(k699), 1), "FreiHAND split = whole: one K fewer");
    size_t dn = 5000;
    char *deep = malloc(2 * dn + 3);
    memset(deep, '[', dn);
    memset(deep + dn, ']', dn);
    deep[2 * dn] = 0;
    ok(fuzz_freihand_same(deep, 2 * dn, "[[[1,0,0],[0,1,0],[0,0,1]]]", 27, 1), "FreiHAND split = whole: 5000 deep");
    manifest_t m;
    char err[512];
    int v = 1;
    ok(manifest_parse_freihand(x, xl, k700, strlen(k700), "x", "/r/%08ld.jpg", fuzz_versions, &v, 4, &m, err,
                               sizeof err) == 0 && m.n == 700 && m.n_errors == 0 && fabsf(m.frames[699].joints[20][2] - 1.099f) < 1e-6f,
       "FreiHAND on 4 threads: 700 frames, the last one's labels");
    manifest_free(&m);
    free(deep); free(tail); free(x); free(k700); free(k699);
}

static void test_fuzz_replay(void) {
    int n = 0;
    replay_dir("tests/fuzz/corpus", &n);
    replay_dir("tests/fuzz/crashes", &n);
    ok(n >= 10, "fuzz corpus and crash inputs replayed without a finding (%d inputs)", n);
}

/* ---- markers ------------------------------------------------------------------------------------------ */
static void test_markers(void) {
    uint8_t *buf;
    size_t len, el;
    frames_jpeg(fr[0].rgb, 32, 32, TJPF_RGB, 90, &buf, &len);
    int o, a;
    ok(imgdec_jpeg_markers(buf, len, &o, &a) == 0 && o == 1 && a == 0, "plain JPEG: orientation 1, no Adobe marker");
    for (int k = 0; k <= 9; k++) {
        uint8_t *e = frames_jpeg_exif(buf, len, k, &el);
        imgdec_jpeg_markers(e, el, &o, &a);
        ok(o == (k >= 1 && k <= 8 ? k : 1), "EXIF orientation %d read as %d", k, o);
        free(e);
    }
    uint8_t *e = frames_jpeg_exif(buf, len, 6, &el);
    e[2 + 2] = 0xff;   /* APP1 length (high byte) beyond the file */
    imgdec_jpeg_markers(e, el, &o, &a);
    ok(o == 1, "an APP1 longer than the file is ignored");
    free(e);
    ok(imgdec_jpeg_markers((const uint8_t *)"\x89PNG", 4, &o, &a) == -1, "not a JPEG: -1");
    tjFree(buf);
}

/* ---- 9. a GPU decoder (gpu/jpeg_gpu.h): batches, refusals, failure --------------------------------- */
/* A sink that notes which thread wrote each shard and which rows it put. */
typedef struct {
    pthread_mutex_t mu;
    int calls;
    pthread_t th[64];
    int seen[64];
} feed_sink_t;

static int feed_sink(void *ud, int64_t first, const import_rows_t *rows, char *msg, size_t msglen) {
    feed_sink_t *k = ud;
    pthread_mutex_lock(&k->mu);
    if (k->calls < 64) k->th[k->calls] = pthread_self();
    k->calls++;
    for (int64_t j = 0; j < rows->n; j++)
        if (first + j >= 0 && first + j < 64) k->seen[first + j]++;
    pthread_mutex_unlock(&k->mu);
    return 0;
}

/* A stand-in with the decoder's contract, on the host: each frame decoded at
 * full size (imgdec, no DCT scaling) and its region resized with
 * image_resizer_run — what gpu/cuda/jpeg_gpu.cu computes on the device (its
 * own exactness is test_ops_gpu's). It checks its callers, refuses every
 * refuse_mod-th frame it is handed and can fail a call. */
typedef struct {
    jpeg_gpu_t g;
    imgdec_t *dec[4];
    image_resizer_t *rz[4];
    pthread_mutex_t mu;
    int calls, frames, refused, bad_t, bad_n, busy[4], overlap;
    int refuse_mod, fail_at;
    int cancel_at;                   /* the call that sets *cancel (0: none) */
    volatile int *cancel;
    pthread_t caller[4];             /* the thread that called as t (the importer's feeding thread t) */
    /* host_alloc's pool, when lend: blocks of plain memory standing in for pinned ones */
    int lend, lend_max;              /* lend_max: blocks at most (then NULL, as a full pool) */
    struct { uint8_t *p; size_t bytes; int used; } block[16];
    int blocks, out, pinned_frames, bad_pinned, bad_free;
} fake_gpu_t;

static void *fake_host_alloc(jpeg_gpu_t *g, size_t bytes) {
    fake_gpu_t *x = g->impl;
    void *p = NULL;
    pthread_mutex_lock(&x->mu);
    for (int i = 0; i < x->blocks && !p; i++)
        if (!x->block[i].used && x->block[i].bytes >= bytes) {
            x->block[i].used = 1;
            p = x->block[i].p;
        }
    if (!p && x->blocks < x->lend_max && x->blocks < 16 && (p = malloc(bytes)))
        x->block[x->blocks++] = (typeof(x->block[0])){p, bytes, 1};
    x->out += p != NULL;
    pthread_mutex_unlock(&x->mu);
    return p;
}

static void fake_host_free(jpeg_gpu_t *g, void *p) {
    fake_gpu_t *x = g->impl;
    pthread_mutex_lock(&x->mu);
    int found = 0;
    for (int i = 0; i < x->blocks; i++)
        if (x->block[i].p == p && x->block[i].used) {
            x->block[i].used = 0;
            found = 1;
            x->out--;
            break;
        }
    x->bad_free += !found;
    pthread_mutex_unlock(&x->mu);
}

/* Is [p, p + n) inside a block lent out now? (mu held) */
static int fake_lent(const fake_gpu_t *x, const uint8_t *p, size_t n) {
    for (int i = 0; i < x->blocks; i++)
        if (x->block[i].used && p >= x->block[i].p && p + n <= x->block[i].p + x->block[i].bytes) return 1;
    return 0;
}

static int fake_gpu_decode(jpeg_gpu_t *g, int t, int n, jpeg_gpu_frame_t *f, int S, char *err, size_t errlen) {
    fake_gpu_t *x = g->impl;
    pthread_mutex_lock(&x->mu);
    int call = ++x->calls;
    x->bad_t += t < 0 || t >= g->threads;
    x->bad_n += n < 1 || n > g->batch;
    if (t < 0 || t >= g->threads) {
        pthread_mutex_unlock(&x->mu);
        return -1;
    }
    x->overlap += x->busy[t]++ != 0;   /* one caller per t at a time */
    x->caller[t] = pthread_self();
    for (int i = 0; i < n; i++)   /* pinned: exactly the frames whose slot the pool lent */
        if (f[i].pinned) {
            x->pinned_frames++;
            x->bad_pinned += !fake_lent(x, f[i].dst, (size_t)S * S * 3);
        } else {
            x->bad_pinned += fake_lent(x, f[i].dst, (size_t)S * S * 3);
        }
    pthread_mutex_unlock(&x->mu);
    int rc = 0;
    if (x->cancel_at && call == x->cancel_at) *x->cancel = 1;
    if (x->fail_at && call == x->fail_at) {
        snprintf(err, errlen, "GPU JPEG decoder: the device fell off the bus");
        rc = -1;
    }
    for (int i = 0; i < n && rc == 0; i++) {
        imgdec_out_t out;
        char e[256];
        f[i].ok = 0;
        if (x->refuse_mod && (x->frames + i) % x->refuse_mod == x->refuse_mod - 1) {
            pthread_mutex_lock(&x->mu);
            x->refused++;
            pthread_mutex_unlock(&x->mu);
            continue;
        }
        if (imgdec_decode(x->dec[t], f[i].data, f[i].len, 0, 1, &out, e, sizeof e) || out.w != f[i].w ||
            out.h != f[i].h)
            continue;
        f[i].ok = image_resizer_run(x->rz[t], out.rgb + ((size_t)f[i].y0 * out.w + f[i].x0) * 3, f[i].rh, f[i].rw,
                                    (size_t)out.w * 3, f[i].dst, S, S, e, sizeof e) == 0;
    }
    pthread_mutex_lock(&x->mu);
    x->frames += n;
    x->busy[t]--;
    pthread_mutex_unlock(&x->mu);
    return rc;
}

static void fake_gpu_init(fake_gpu_t *x, int threads, int batch) {
    memset(x, 0, sizeof *x);
    pthread_mutex_init(&x->mu, NULL);
    x->g = (jpeg_gpu_t){.name = "host stand-in", .threads = threads, .batch = batch, .decode = fake_gpu_decode,
                        .impl = x};
    for (int t = 0; t < threads; t++) {
        x->dec[t] = imgdec_new();
        x->rz[t] = image_resizer_new();
    }
}

/* Lends host memory from now on: at most max blocks. */
static void fake_gpu_lend(fake_gpu_t *x, int max) {
    x->lend = 1;
    x->lend_max = max;
    x->g.host_alloc = fake_host_alloc;
    x->g.host_free = fake_host_free;
}

static void fake_gpu_free(fake_gpu_t *x) {
    for (int i = 0; i < x->blocks; i++) free(x->block[i].p);
    for (int t = 0; t < 4; t++) {
        imgdec_free(x->dec[t]);
        image_resizer_free(x->rz[t]);
    }
    pthread_mutex_destroy(&x->mu);
}


/* A whole file into memory (NULL when it cannot be read). */
static uint8_t *slurp(const char *path, size_t *len) {
    FILE *fh = fopen(path, "rb");
    if (!fh) return NULL;
    uint8_t *b = malloc(1 << 20);
    *len = fread(b, 1, 1 << 20, fh);
    fclose(fh);
    return b;
}

/* imgdec_jpeg_plain reads the entropy-coded data's markers: restart markers in
 * turn and as many as the MCUs need (fixtures from cjpeg -restart), nothing
 * else — a marker written into the data, a restart out of turn or missing
 * sends the file to the CPU path, which refuses it by name. */
static void test_plain_markers(const uint8_t *rgb, int w, int h) {
    static const char *const fx[] = {FIXTURES "/jpeg/restart_rows.jpg", FIXTURES "/jpeg/restart_blocks.jpg"};
    imgdec_t *d = imgdec_new();
    for (int q = 0; q < 2; q++) {
        size_t len = 0;
        uint8_t *b = slurp(fx[q], &len);
        int pw = 0, ph = 0, p = b ? imgdec_jpeg_plain(b, len, &pw, &ph) : -1;
        ok(p == 1 && pw == 200 && ph == 150, "imgdec_jpeg_plain: %s (restart interval) yes, 200x150 (%d, %dx%d)",
           fx[q], p, pw, ph);
        /* the markers: RSTn at i (FF Dn), in the entropy-coded data */
        size_t at[64];
        int nr = 0;
        for (size_t i = 0; b && i + 1 < len && nr < 64; i++)
            if (b[i] == 0xFF && b[i + 1] >= 0xD0 && b[i + 1] <= 0xD7) at[nr++] = i;
        if (nr >= 3) {
            uint8_t *c = malloc(len);
            memcpy(c, b, len);
            c[at[1] + 1] = (uint8_t)(0xD0 + ((c[at[1] + 1] - 0xD0 + 1) & 7));   /* out of turn */
            ok(imgdec_jpeg_plain(c, len, &pw, &ph) == 0, "imgdec_jpeg_plain: %s with a restart out of turn: no",
               fx[q]);
            memcpy(c, b, at[2]);   /* the third restart marker taken out */
            memcpy(c + at[2], b + at[2] + 2, len - at[2] - 2);
            ok(imgdec_jpeg_plain(c, len - 2, &pw, &ph) == 0, "imgdec_jpeg_plain: %s without one restart: no", fx[q]);
            free(c);
        } else {
            ok(0, "%s: %d restart markers found", fx[q], nr);
        }
        free(b);
    }
    /* a marker written mid-data (a corrupt file): not plain, and the CPU names it */
    uint8_t *jpg;
    size_t len;
    frames_jpeg(rgb, w, h, TJPF_RGB, 90, &jpg, &len);
    size_t sos = 0;
    for (size_t i = 2; i + 1 < len && !sos; i++)
        if (jpg[i] == 0xFF && jpg[i + 1] == 0xDA) sos = i;
    size_t mid = sos + (len - sos) / 2;
    while (jpg[mid] == 0xFF || jpg[mid + 1] == 0xFF) mid++;   /* not inside a stuffed pair */
    jpg[mid] = 0xFF;
    jpg[mid + 1] = 0x42;
    int pw, ph;
    ok(imgdec_jpeg_plain(jpg, len, &pw, &ph) == 0, "imgdec_jpeg_plain: a marker (FF 42) inside the data: no");
    imgdec_out_t o;
    char e[256];
    int r = imgdec_decode(d, jpg, len, 224, 1, &o, e, sizeof e);
    ok(r == -1 && strstr(e, "corrupt"), "... and the CPU path refuses it: %s", r ? e : "decoded");
    tjFree(jpg);
    imgdec_free(d);
}

static void test_gpu_decoder(void) {
    char dir[512], path[700], man[700], out[700], out2[700], err[2048];
    snprintf(dir, sizeof dir, "%s/gpu", root);
    fs_mkdir_p(dir, 0755, NULL, 0);
    /* plain JPEGs, PNGs, a rotated JPEG, a grayscale JPEG, a truncated JPEG */
    const int n = 61, S = 32;
    enum { K_PLAIN, K_PNG, K_ROT, K_GRAY, K_TRUNC };
    int kind[61];
    char *names[61];
    const frame_t *fp[61];
    int plain = 0;
    for (int i = 0; i < n; i++) {
        const frame_t *f = &fr[i % NF];
        fp[i] = f;
        kind[i] = i == 7 ? K_PNG : i == 19 ? K_ROT : i == 33 ? K_GRAY : i == 50 ? K_TRUNC : K_PLAIN;
        uint8_t *buf = NULL, *b2 = NULL;
        size_t len = 0, l2 = 0;
        snprintf(path, sizeof path, "%s/g%02d.%s", dir, i, kind[i] == K_PNG ? "png" : "jpg");
        if (kind[i] == K_PNG) {
            frames_png(f->rgb, f->w, f->h, PNG_COLOR_TYPE_RGB, 8, &buf, &len);
            write_file(path, buf, len);
            free(buf);
        } else if (kind[i] == K_GRAY) {
            uint8_t *g = malloc((size_t)f->w * f->h);
            for (int q = 0; q < f->w * f->h; q++) g[q] = f->rgb[q * 3 + 1];
            frames_jpeg(g, f->w, f->h, TJPF_GRAY, 90, &buf, &len);
            write_file(path, buf, len);
            tjFree(buf);
            free(g);
        } else {
            frames_jpeg(f->rgb, f->w, f->h, TJPF_RGB, 90, &buf, &len);
            if (kind[i] == K_ROT) {   /* orientation 1 written explicitly would be plain; 3 turns it */
                b2 = frames_jpeg_exif(buf, len, 3, &l2);
                write_file(path, b2, l2);
                free(b2);
            } else {
                write_file(path, buf, kind[i] == K_TRUNC ? len * 2 / 3 : len);
            }
            tjFree(buf);
        }
        names[i] = strdup(path + strlen(dir) + 1);
        if (kind[i] == K_PLAIN) plain++;
    }
    write_manifest(dir, "all.jsonl", n, names, fp, NULL);
    snprintf(man, sizeof man, "%s/all.jsonl", dir);

    /* imgdec_jpeg_plain sorts them */
    {
        int right = 1;
        for (int i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            FILE *fh = fopen(path, "rb");
            uint8_t *b = malloc(1 << 20);
            size_t len = fread(b, 1, 1 << 20, fh);
            fclose(fh);
            int w = 0, h = 0, p = imgdec_jpeg_plain(b, len, &w, &h);
            right &= p == (kind[i] == K_PLAIN) && (!p || (w == fp[i]->w && h == fp[i]->h));
            free(b);
        }
        ok(right, "imgdec_jpeg_plain: baseline 4:2:0 JPEGs yes (with their size); PNG, EXIF-rotated, grayscale and "
           "truncated JPEGs no");
        /* the other subsamplings the engines take, and a progressive file (several scans) */
        static const struct { int samp, flags, want; const char *what; } v[] = {
            {TJSAMP_444, 0, 1, "4:4:4"}, {TJSAMP_422, 0, 1, "4:2:2"}, {TJSAMP_440, 0, 1, "4:4:0"},
            {TJSAMP_411, 0, 0, "4:1:1"}, {TJSAMP_420, TJFLAG_PROGRESSIVE, 0, "progressive 4:2:0"}};
        tjhandle tj = tjInitCompress();
        for (size_t q = 0; q < sizeof v / sizeof v[0]; q++) {
            unsigned char *b = NULL;
            unsigned long len = 0;
            int w = 0, h = 0, p = -1;
            if (tjCompress2(tj, fr[0].rgb, fr[0].w, 0, fr[0].h, TJPF_RGB, &b, &len, v[q].samp, 90, v[q].flags) == 0)
                p = imgdec_jpeg_plain(b, len, &w, &h);
            ok(p == v[q].want && (!p || (w == fr[0].w && h == fr[0].h)), "imgdec_jpeg_plain: %s %s", v[q].what,
               v[q].want ? "yes" : "no");
            tjFree(b);
        }
        tjDestroy(tj);
        test_plain_markers(fr[0].rgb, fr[0].w, fr[0].h);
    }

    for (int crop = 0; crop < 2; crop++) {
        /* the reference: every frame on the CPU, skipping the truncated one */
        import_opts_t o = {.image_size = S, .crop = crop, .skip = 1, .threads = 2, .shard_frames = 8};
        import_result_t r0, r1;
        snprintf(out, sizeof out, "%s/out-gpu-cpu%d", root, crop);
        snprintf(out2, sizeof out2, "%s/out-gpu-gpu%d", root, crop);
        fs_rm_rf(out, NULL, 0);
        fs_rm_rf(out2, NULL, 0);
        int rc0 = import_to_dir(man, out, &o, &r0, err, sizeof err);
        fake_gpu_t x;
        fake_gpu_init(&x, 2, 5);
        x.refuse_mod = 4;   /* every 4th frame handed over comes back refused: the CPU decodes it */
        /* the slots from the decoder's pool: crop 0 all of them (reserved first), crop 1 two of six (the
         * others malloc'd, as when pinning fails) */
        int no_pool = import_gpu_reserve(NULL) + import_gpu_reserve(&x.g);   /* no decoder; one that lends nothing */
        fake_gpu_lend(&x, crop ? 2 : 16);
        int reserved = import_gpu_reserve(&x.g);   /* crop 1: the pool lends 2 blocks at most */
        int blocks_before = x.blocks;
        o.gpu = &x.g;
        if (crop == 0) {   /* slots from the pool only when asked: not by default */
            fake_gpu_t y;
            fake_gpu_init(&y, 2, 5);
            fake_gpu_lend(&y, 16);
            import_gpu_reserve(&y.g);
            int yblocks = y.blocks;
            import_opts_t on = o;
            on.gpu = &y.g;
            import_result_t rn;
            char out3[760];
            snprintf(out3, sizeof out3, "%s/out-gpu-nopin", root);
            fs_rm_rf(out3, NULL, 0);
            int rcn = import_to_dir(man, out3, &on, &rn, err, sizeof err);
            ok(rcn == 0 && y.frames > 0 && y.pinned_frames == 0 && y.out == 0 && y.blocks == yblocks,
               "without pinned_slots no shard slot comes from the decoder's pool (%d frames handed over, %d with a "
               "pinned slot, %d blocks out)", y.frames, y.pinned_frames, y.out);
            fs_rm_rf(out3, NULL, 0);
            fake_gpu_free(&y);
        }
        o.pinned_slots = 1;
        int rc1 = import_to_dir(man, out2, &o, &r1, err, sizeof err);
        ok(x.out == 0 && x.bad_free == 0 && x.pinned_frames > 0 && x.bad_pinned == 0 &&
           no_pool == 0 && (crop ? reserved == 2 && x.blocks == 2 : reserved == IMPORT_GPU_MIN_SLOTS &&
                                                                      x.blocks == blocks_before),
           "crop %d: shard slots %s: %d frames handed over with pinned slots, each flag right (%d wrong), every "
           "block handed back (%d out, %d bad frees), %d blocks", crop,
           crop ? "2 of 6 from the decoder's pool (all import_gpu_reserve got), the rest malloc'd"
                : "from the pool import_gpu_reserve filled (6; 0 without a decoder or a pool), none pinned anew",
           x.pinned_frames, x.bad_pinned, x.out, x.bad_free, x.blocks);
        ok(rc0 == 0 && rc1 == 0 && r1.imported == n - 1 && r1.skipped == 1, "crop %d: imported with a GPU decoder: "
           "%lld of %d, %lld skipped (%s)", crop, (long long)r1.imported, n, (long long)r1.skipped, rc1 ? err : "ok");
        /* its two threads take batches beside the two decoding on the CPU: some of the plain JPEGs */
        ok(x.bad_t == 0 && x.bad_n == 0 && x.overlap == 0 && x.frames > 0 && x.frames <= plain,
           "crop %d: the decoder was handed %d of the %d plain JPEGs (nothing else), batches of 1..%d, each caller "
           "its own t (bad t %d, bad n %d, overlaps %d)", crop, x.frames, plain, x.g.batch, x.bad_t, x.bad_n,
           x.overlap);
        ok(r1.gpu_frames == x.frames - x.refused && strcmp(r1.decoder, "host stand-in") == 0,
           "crop %d: %lld frames decoded by it (%d handed, %d refused), decoder recorded", crop,
           (long long)r1.gpu_frames, x.frames, x.refused);
        import_result_t back;
        ok(rc1 == 0 && import_read_result(out2, &back, err, sizeof err) == 0 && back.gpu_frames == r1.gpu_frames &&
           strcmp(back.decoder, "host stand-in") == 0, "crop %d: import.json says the decoder and its frames", crop);
        ok(strcmp(r0.decoder, "cpu") == 0 && r0.gpu_frames == 0, "crop %d: without one the decoder is \"cpu\"", crop);
        shards_t a, b;
        if (rc0 || rc1 || shards_read(out, &a) || shards_read(out2, &b) || a.n != n - 1 || b.n != n - 1) {
            ok(0, "crop %d: both imports readable", crop);
            fake_gpu_free(&x);
            continue;
        }
        /* row by row: labels the same; a frame the decoder did = the full-size decode resized, K of factor 1;
         * a frame the CPU did = the CPU import's row (the same code) */
        int labels = 1, cpu_rows_same = 0, gpu_rows_exact = 0, rows = 0;
        double kworst = 0;
        imgdec_t *dec = imgdec_new();
        for (int i = 0, row = 0; i < n; i++) {
            if (kind[i] == K_TRUNC) continue;
            const frame_t *f = fp[i];
            const size_t fb = (size_t)S * S * 3;
            labels &= memcmp(b.joints + row * 63, a.joints + row * 63, 63 * 4) == 0 &&
                      memcmp(b.valid + row * 21, a.valid + row * 21, 21) == 0 && b.hh[row] == a.hh[row];
            int same = memcmp(b.img + row * fb, a.img + row * fb, fb) == 0 &&
                       memcmp(b.K + row * 9, a.K + row * 9, 36) == 0;
            if (kind[i] == K_PLAIN) {
                snprintf(path, sizeof path, "%s/%s", dir, names[i]);
                FILE *fh = fopen(path, "rb");
                uint8_t *buf = malloc(1 << 20);
                size_t len = fread(buf, 1, 1 << 20, fh);
                fclose(fh);
                imgdec_out_t o2;
                char e[256];
                geo_t g = geometry(f->w, f->h, 1, 1, S, crop);
                if (imgdec_decode(dec, buf, len, 0, 1, &o2, e, sizeof e) == 0) {
                    uint8_t *ref = resize_region(o2.rgb, o2.w, g.dx0, g.dy0, g.dside_w, g.dside_h, S);
                    if (memcmp(ref, b.img + row * fb, fb) == 0 && k_err(b.K + row * 9, f->K, &g) < 1e-6)
                        gpu_rows_exact++;
                    else if (same)
                        cpu_rows_same++;   /* refused: decoded on the CPU */
                    free(ref);
                }
                double ke = k_err(b.K + row * 9, f->K, &g);
                if (!same && ke > kworst) kworst = ke;
                free(buf);
            } else {
                cpu_rows_same += same;
            }
            rows++;
            row++;
        }
        imgdec_free(dec);
        ok(labels, "crop %d: labels the same as the CPU import's, row for row", crop);
        ok(gpu_rows_exact == r1.gpu_frames && kworst < 1e-6, "crop %d: the %lld decoded frames = their full-size "
           "decode resized (region, placement) with K = A K of factor 1 (%d exact, worst K error %.2g)", crop,
           (long long)r1.gpu_frames, gpu_rows_exact, kworst);
        ok(cpu_rows_same == rows - gpu_rows_exact, "crop %d: every other frame (PNG, rotated, grayscale, refused) "
           "the CPU import's bytes (%d of %d)", crop, cpu_rows_same, rows - gpu_rows_exact);
        shards_free(&a);
        shards_free(&b);
        fake_gpu_free(&x);
    }

    /* the device fails on its 3rd call: the import fails with its message, nothing is left */
    {
        fake_gpu_t x;
        fake_gpu_init(&x, 2, 5);
        x.fail_at = 3;
        import_opts_t o = {.image_size = S, .skip = 1, .threads = 2, .shard_frames = 8, .gpu = &x.g};
        import_result_t r;
        snprintf(out, sizeof out, "%s/out-gpu-fail", root);
        fs_rm_rf(out, NULL, 0);
        int rc = import_to_dir(man, out, &o, &r, err, sizeof err);
        struct stat st;
        int left = 0;   /* the temporary directory beside it is gone too */
        DIR *dd = opendir(root);
        for (struct dirent *e; dd && (e = readdir(dd));) left += strstr(e->d_name, "out-gpu-fail") != NULL;
        if (dd) closedir(dd);
        ok(rc == -1 && strstr(err, "fell off the bus") && stat(out, &st) != 0 && left == 0,
           "a failing GPU decoder fails the import with its message, leaving nothing (%s)", rc ? err : "succeeded");
        fake_gpu_free(&x);
    }
    /* fail mode: the truncated frame is named, as without a decoder */
    {
        fake_gpu_t x;
        fake_gpu_init(&x, 1, 16);
        import_opts_t o = {.image_size = S, .threads = 2, .shard_frames = 8, .gpu = &x.g};
        import_result_t r;
        snprintf(out, sizeof out, "%s/out-gpu-failmode", root);
        fs_rm_rf(out, NULL, 0);
        int rc = import_to_dir(man, out, &o, &r, err, sizeof err);
        ok(rc == -1 && strstr(err, "g50.jpg") && strstr(err, "line 51"), "fail mode with a GPU decoder: the "
           "truncated frame is named: %s", err);
        fake_gpu_free(&x);
    }
    /* fail mode, plain JPEGs only, with a sink: every shard written and put once, its rows in place, and
     * never by a thread that feeds the decoder (those queue their shards for the CPU threads) */
    {
        char *pn[64];
        const frame_t *pf[64];
        int np = 0;
        for (int i = 0; i < n && np < 64; i++)
            if (kind[i] == K_PLAIN) {
                pn[np] = names[i];
                pf[np++] = fp[i];
            }
        write_manifest(dir, "plain.jsonl", np, pn, pf, NULL);
        snprintf(path, sizeof path, "%s/plain.jsonl", dir);
        fake_gpu_t x;
        fake_gpu_init(&x, 2, 3);
        feed_sink_t k = {.mu = PTHREAD_MUTEX_INITIALIZER};
        import_opts_t o = {.image_size = S, .threads = 2, .shard_frames = 4, .gpu = &x.g, .sink = feed_sink, .ud = &k};
        import_result_t r;
        snprintf(out, sizeof out, "%s/out-gpu-sink", root);
        fs_rm_rf(out, NULL, 0);
        int rc = import_to_dir(path, out, &o, &r, err, sizeof err);
        int by_feeder = 0, rows_ok = 1;
        for (int c = 0; c < k.calls && c < 64; c++)
            for (int t = 0; t < x.g.threads; t++) by_feeder += x.calls && pthread_equal(k.th[c], x.caller[t]);
        for (int i = 0; i < np; i++) rows_ok &= k.seen[i] == 1;
        ok(rc == 0 && r.gpu_frames > 0 && k.calls == (np + 3) / 4 && rows_ok && by_feeder == 0,
           "with a decoder and a sink: %d shards written and put once each (%d calls), every row once, %lld frames "
           "decoded by it, no shard written by a feeding thread (%d)%s%s", (np + 3) / 4, k.calls,
           (long long)r.gpu_frames, by_feeder, rc ? ": " : "", rc ? err : "");
        fake_gpu_free(&x);
        /* cancelled from the decoder's second call: the threads that wait for slots or queued shards all
         * leave, nothing is written */
        fake_gpu_init(&x, 2, 3);
        cancel_flag = 0;
        x.cancel_at = 2;
        x.cancel = &cancel_flag;
        feed_sink_t k2 = {.mu = PTHREAD_MUTEX_INITIALIZER};
        import_opts_t oc = {.image_size = S, .threads = 2, .shard_frames = 4, .gpu = &x.g, .sink = feed_sink,
                            .ud = &k2, .cancel = &cancel_flag};
        snprintf(out, sizeof out, "%s/out-gpu-cancel", root);
        fs_rm_rf(out, NULL, 0);
        rc = import_to_dir(path, out, &oc, &r, err, sizeof err);
        struct stat st;
        ok(rc == IMPORT_CANCELLED && stat(out, &st) != 0 && x.calls >= 2,
           "cancelled during a decoder's batch: IMPORT_CANCELLED, no output (%s)", err);
        cancel_flag = 0;
        fake_gpu_free(&x);
    }
    for (int i = 0; i < n; i++) free(names[i]);
}

/* gpu/manifest.c's localeconv (jansson asks it for the decimal point of every real
 * number): the definition every call binds to, not the C library's; the C
 * library's answer (the C locale); one struct, the same from any thread. */
static void *lc_thread(void *arg) {
    (void)arg;
    return localeconv();
}

static void test_localeconv(void) {
    struct lconv *(*libc)(void) = (struct lconv *(*)(void))dlsym(RTLD_NEXT, "localeconv");
    void *bound = dlsym(RTLD_DEFAULT, "localeconv");
    ok(bound == (void *)localeconv && libc && (void *)libc != bound,
       "localeconv: the process's is gpu/manifest.c's, the C library's behind it");
    struct lconv *a = localeconv(), *g = libc ? libc() : a;
    ok(strcmp(a->decimal_point, ".") == 0 && strcmp(a->decimal_point, g->decimal_point) == 0 &&
           strcmp(a->thousands_sep, g->thousands_sep) == 0 && strcmp(a->grouping, g->grouping) == 0 &&
           strcmp(a->currency_symbol, g->currency_symbol) == 0 && a->frac_digits == g->frac_digits &&
           a->n_sign_posn == g->n_sign_posn,
       "localeconv: the C library's answer (decimal point '%s')", a->decimal_point);
    pthread_t th;
    void *b = NULL;
    ok(pthread_create(&th, NULL, lc_thread, NULL) == 0 && pthread_join(th, &b) == 0 && b == a && localeconv() == a,
       "localeconv: one struct for every call and thread");
    /* and jansson still reads real numbers through it */
    json_error_t je;
    json_t *v = json_loads("[0.5, -1.25e-3]", 0, &je);
    ok(v && json_real_value(json_array_get(v, 0)) == 0.5 && json_real_value(json_array_get(v, 1)) == -1.25e-3,
       "localeconv: jansson parses real numbers");
    json_decref(v);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/traind-test-import-XXXXXX");
    if (!mkdtemp(root)) {
        printf("Bail out! mkdtemp\n");
        return 1;
    }
    test_main_case();
    test_variants();
    test_markers();
    test_manifest_lines();
    test_localeconv();
    test_bad_frames();
    test_freihand();
    test_freihand_split();
    test_cache_and_cancel();
    test_sink();
    test_fuzz_replay();
    test_gpu_decoder();
    for (int i = 0; i < NF; i++) {
        frame_free(&fr[i]);
        free(img_jpg[i]);
        free(img_png[i]);
    }
    fs_rm_rf(root, NULL, 0);
    return tap_done();
}
