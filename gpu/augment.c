/* gpu/augment.c — drawing each sample's augmentation on the host and
 * checking the dataset's cameras (see gpu/augment.h for what the kinds do).
 *
 * Matrices are built in double and rounded to fp32 once, so m and minv are
 * inverse to fp32 precision. */
#include "gpu/augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store/errbuf.h"
#include "store/rng.h"

#define AUG_SALT 0x6175676d656e7421ull   /* "augment!": its own streams, apart from data order and init */

/* A double in [0, 1) with 53 random bits. */
static double aug_unif(rng_t *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
static double aug_lerp(double a, double b, double t) { return a + (b - a) * t; }

static void aug_mul3d(const double a[9], const double b[9], double c[9]) {
    double t[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) t[i * 3 + j] = a[i * 3] * b[j] + a[i * 3 + 1] * b[3 + j] + a[i * 3 + 2] * b[6 + j];
    memcpy(c, t, sizeof t);
}

static void aug_rot(int axis, double rad, double R[9]) {
    double c = cos(rad), s = sin(rad);
    memset(R, 0, 9 * sizeof *R);
    R[axis * 4] = 1;
    int i = (axis + 1) % 3, j = (axis + 2) % 3;   /* the plane the rotation turns */
    R[i * 3 + i] = c;
    R[i * 3 + j] = -s;
    R[j * 3 + i] = s;
    R[j * 3 + j] = c;
}

int augment_is_geometric(const augment_spec_t *a) {
    return a->on && (a->rotate_deg[0] != 0 || a->rotate_deg[1] != 0 || a->shift_deg > 0 || a->flip > 0 ||
                     a->zoom[0] != 1 || a->zoom[1] != 1);
}

void augment_draw(const augment_spec_t *a, uint64_t seed, long epoch, int64_t sample, int H, int W,
                  const float mean[3], aug_sample_t *out, augment_draw_t *drawn) {
    rng_t r;
    rng_seed_stream(&r, seed ^ AUG_SALT, ((uint64_t)epoch << 32) ^ (uint64_t)sample);
    /* every value is drawn, in this order, whether or not its kind is on */
    double u[9];
    for (int k = 0; k < 9; k++) u[k] = aug_unif(&r);
    double ue[AUG_MAX_ERASE][5];
    for (int k = 0; k < AUG_MAX_ERASE; k++)
        for (int q = 0; q < 5; q++) ue[k][q] = aug_unif(&r);

    augment_draw_t d;
    memset(&d, 0, sizeof d);
    d.rotate_deg = aug_lerp(a->rotate_deg[0], a->rotate_deg[1], u[0]);
    d.tilt_deg = a->shift_deg * (2 * u[1] - 1);
    d.pan_deg = a->shift_deg * (2 * u[2] - 1);
    d.flip = u[3] < a->flip;
    d.zoom = a->zoom[0] == a->zoom[1] ? a->zoom[0] : exp(aug_lerp(log(a->zoom[0]), log(a->zoom[1]), u[4]));
    d.brightness = 1 + a->brightness * (2 * u[5] - 1);
    d.contrast = 1 + a->contrast * (2 * u[6] - 1);
    d.saturation = 1 + a->saturation * (2 * u[7] - 1);
    d.hue = a->hue * (2 * u[8] - 1);
    if (drawn) *drawn = d;

    memset(out, 0, sizeof *out);
    /* geometry: M = Zoom · Flip · Rz · Rx · Ry and its inverse */
    const double deg = M_PI / 180.0;
    double Rz[9], Rx[9], Ry[9], R[9], M[9], Mi[9];
    aug_rot(2, d.rotate_deg * deg, Rz);
    aug_rot(0, d.tilt_deg * deg, Rx);
    aug_rot(1, d.pan_deg * deg, Ry);
    aug_mul3d(Rx, Ry, R);
    aug_mul3d(Rz, R, R);
    double fz[9] = {d.flip ? -1 : 1, 0, 0, 0, 1, 0, 0, 0, 1 / d.zoom};
    double fzi[9] = {d.flip ? -1 : 1, 0, 0, 0, 1, 0, 0, 0, d.zoom};
    aug_mul3d(fz, R, M);
    double Rt[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) Rt[i * 3 + j] = R[j * 3 + i];
    aug_mul3d(Rt, fzi, Mi);
    for (int i = 0; i < 9; i++) {
        out->m[i] = (float)M[i];
        out->minv[i] = (float)Mi[i];
    }
    out->geom = !(d.rotate_deg == 0 && d.tilt_deg == 0 && d.pan_deg == 0 && !d.flip && d.zoom == 1);

    /* colour: C = Hue · Saturation · Contrast · Brightness, d = Hue · Saturation · (1-c)·g */
    out->photo = a->on && (a->brightness > 0 || a->contrast > 0 || a->saturation > 0 || a->hue > 0);
    static const double luma[3] = {0.299, 0.587, 0.114};
    double g = luma[0] * mean[0] + luma[1] * mean[1] + luma[2] * mean[2];
    double C[9] = {0}, off[3];
    for (int i = 0; i < 3; i++) C[i * 4] = d.brightness * d.contrast;
    for (int i = 0; i < 3; i++) off[i] = (1 - d.contrast) * g;
    double S[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) S[i * 3 + j] = (i == j ? d.saturation : 0) + (1 - d.saturation) * luma[j];
    double phi = 2 * M_PI * d.hue, c = cos(phi), s = sin(phi), n = 1 / sqrt(3.0);
    /* Rodrigues about the gray axis n = (1,1,1)/sqrt(3): c·I + s·[n]x + (1-c)·n·nᵀ */
    double Hm[9] = {c + (1 - c) / 3, (1 - c) / 3 - s * n, (1 - c) / 3 + s * n,
                    (1 - c) / 3 + s * n, c + (1 - c) / 3, (1 - c) / 3 - s * n,
                    (1 - c) / 3 - s * n, (1 - c) / 3 + s * n, c + (1 - c) / 3};
    double HS[9], T[9];
    aug_mul3d(Hm, S, HS);
    aug_mul3d(HS, C, T);
    for (int i = 0; i < 9; i++) out->color[i] = (float)T[i];
    for (int i = 0; i < 3; i++)
        out->color[9 + i] = (float)(HS[i * 3] * off[0] + HS[i * 3 + 1] * off[1] + HS[i * 3 + 2] * off[2]);

    /* erasing: whole pixels, inside the image */
    for (int k = 0; k < a->erase_count && k < AUG_MAX_ERASE; k++) {
        if (!(ue[k][0] < a->erase_p)) continue;
        double area = aug_lerp(a->erase_area[0], a->erase_area[1], ue[k][1]) * (double)H * W;
        double asp = exp(aug_lerp(log(a->erase_aspect[0]), log(a->erase_aspect[1]), ue[k][2]));
        int w = (int)lround(sqrt(area * asp)), h = (int)lround(sqrt(area / asp));
        w = w < 1 ? 1 : w > W ? W : w;
        h = h < 1 ? 1 : h > H ? H : h;
        int x0 = (int)(ue[k][3] * (W - w + 1)), y0 = (int)(ue[k][4] * (H - h + 1));
        int32_t *e = out->erase[out->n_erase++];
        e[0] = x0;
        e[1] = y0;
        e[2] = x0 + w;
        e[3] = y0 + h;
    }
}

int augment_check_intrinsics(backend_t *be, const dataset_t *ds, int64_t begin, int64_t end, char *err,
                             size_t errlen) {
    /* only the samples this view holds (a shard checks its own) */
    if (begin < ds->first) begin = ds->first;
    if (end > ds->first + ds->held) end = ds->first + ds->held;
    if (!ds->intrinsics || end <= begin) return 0;
    const int64_t chunk = 4096;
    float *h = malloc((size_t)chunk * 9 * sizeof(float));
    if (!h) return errbuf_set(err, errlen, "augment: out of memory checking the camera intrinsics");
    for (int64_t s0 = begin; s0 < end; s0 += chunk) {
        int64_t n = end - s0 < chunk ? end - s0 : chunk;
        be->download(be, h, ds->intrinsics + (size_t)(s0 - ds->first) * 9, (size_t)n * 9 * sizeof(float));
        for (int64_t i = 0; i < n; i++) {
            const float *k = h + i * 9;
            int finite = 1;
            for (int q = 0; q < 9; q++) finite &= isfinite(k[q]) != 0;
            if (finite && k[0] > 0 && k[4] > 0 && k[8] > 0 && k[3] == 0 && k[6] == 0 && k[7] == 0) continue;
            errbuf_set(err, errlen,
                       "augment: sample %lld's camera_intrinsics [[%g,%g,%g],[%g,%g,%g],[%g,%g,%g]] are not a "
                       "pinhole camera matrix [[fx,s,cx],[0,fy,cy],[0,0,1]] with fx, fy > 0; the geometric "
                       "augmentations (rotate_deg, shift_deg, flip, zoom) need one",
                       (long long)(s0 + i), k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8]);
            free(h);
            return -1;
        }
    }
    free(h);
    return 0;
}
