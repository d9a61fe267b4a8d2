/* tests/unit/test_augment.c — the augmentation keeps the 3D joints true to
 * the image (gpu/augment.h), on the CPU reference backend.
 *
 * Frames from the synthetic renderer (store/synth.c draws each joint as a disc
 * of its own colour at its projection) go through the augmented gather
 * (im2col) and the label transform (aug_joints); in the augmented image the
 * centre of every disc that can be measured (not covered by another disc, not
 * cut by the border or an erased rectangle) must lie within 1 px of its
 * augmented joint projected with K — for each kind alone, with the dataset's
 * intrinsics and with the assumed camera, and for random combinations. Also:
 * the identity is an exact copy; flip mirrors x and keeps the joint order; the
 * colour map is the documented one and its draws stay in their ranges; erasing
 * sets exactly its rectangles; the assumed camera is f = W at the centre;
 * draws are a function of (seed, epoch, sample); a joint carried out of the
 * image keeps its validity; bad intrinsics are refused by name. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/augment.h"
#include "gpu/backend.h"
#include "gpu/stage_common.h"
#include "store/synth.h"
#include "tests/tap.h"

#define S 168      /* image side: 12x12 patches of 14 */
#define PT 14
#define NS 48      /* samples */

static backend_t *be;
static bf16 *images;             /* [NS,3,S,S] normalized */
static float joints[NS * 63], K[NS * 9];
static uint8_t valid[NS * 21], has[NS];
static int32_t idx[NS];
static const float mean[3] = HAND_IMAGENET_MEAN, sd[3] = HAND_IMAGENET_STD;

/* The augmented batch: images [NS,3,S,S] RGB in [0,1] decoded from the
 * columns, and the transformed joints. */
typedef struct {
    aug_sample_t aug[NS];
    augment_draw_t drawn[NS];
    float *rgb;          /* [NS,3,S,S] */
    float *cols;         /* im2col output, fp32 */
    float jt[NS * 63];
} batch_t;

static void run_batch(const augment_spec_t *a, long epoch, int use_K, batch_t *o) {
    size_t ncols = (size_t)NS * S * S * 3;
    o->cols = malloc(ncols * sizeof(float));
    o->rgb = malloc(ncols * sizeof(float));
    for (int i = 0; i < NS; i++) augment_draw(a, 9, epoch, idx[i], S, S, mean, &o->aug[i], &o->drawn[i]);
    im2col_aug_t ia = {.samples = o->aug, .intrinsics = use_K ? K : NULL};
    memcpy(ia.mean, mean, sizeof mean);
    memcpy(ia.std, sd, sizeof sd);
    be->im2col(be, o->cols, DT_F32, images, DT_BF16, idx, NS, S, S, PT, &ia);
    be->aug_joints(be, o->jt, joints, idx, o->aug, NS);
    const int G = S / PT, P = G * G, C = 3 * PT * PT;
    for (int b = 0; b < NS; b++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                for (int c = 0; c < 3; c++) {
                    size_t row = (size_t)b * P + (y / PT) * G + x / PT;
                    float v = o->cols[row * C + c * PT * PT + (y % PT) * PT + x % PT];
                    o->rgb[(((size_t)b * 3 + c) * S + y) * S + x] = v * sd[c] + mean[c];
                }
}
static void batch_free(batch_t *o) {
    free(o->cols);
    free(o->rgb);
}

static void project(const float *Km, const float J[3], double *u, double *v) {
    double X = Km[0] * J[0] + Km[1] * J[1] + Km[2] * J[2], Y = Km[3] * J[0] + Km[4] * J[1] + Km[5] * J[2],
           Z = Km[6] * J[0] + Km[7] * J[1] + Km[8] * J[2];
    *u = X / Z;
    *v = Y / Z;
}

/* The disc test over a batch. Returns the number of discs measured; *worst the
 * largest distance (px) between a disc's centre and its projected joint;
 * *missing the discs expected but not found. */
static int disc_check(const batch_t *o, double *worst, int *missing) {
    int measured = 0;
    *worst = 0;
    *missing = 0;
    for (int b = 0; b < NS; b++) {
        if (!has[b]) continue;
        const float *J = joints + b * 63, *Jt = o->jt + b * 63;
        double scale = o->drawn[b].zoom * 1.1;   /* apparent size bound (zoom, a little perspective) */
        /* Both through the renderer's K: with the assumed camera the kinds that
         * do not depend on the focal length (roll, flip, zoom) must still land
         * the discs on the augmented joints. */
        double u0[21], v0[21], r0[21], u1[21], v1[21];
        for (int j = 0; j < 21; j++) {
            project(K + b * 9, J + 3 * j, &u0[j], &v0[j]);    /* where the renderer drew it */
            project(K + b * 9, Jt + 3 * j, &u1[j], &v1[j]);   /* where the augmented label says it is */
            r0[j] = synth_joint_radius(S, J[3 * j + 2]);
        }
        for (int j = 0; j < 21; j++) {
            if (J[3 * j + 2] <= 0.05f || Jt[3 * j + 2] <= 0.05f) continue;
            double rj = r0[j] * scale, R = rj + 4;
            /* whole in the rendered frame, and in the augmented one with the window */
            int ok_j = u0[j] - r0[j] > 1 && v0[j] - r0[j] > 1 && u0[j] + r0[j] < S - 1 && v0[j] + r0[j] < S - 1;
            ok_j = ok_j && u1[j] - R > 0 && v1[j] - R > 0 && u1[j] + R < S && v1[j] + R < S;
            /* not covered by a disc drawn after it (nearer; equal depth: higher index) */
            for (int k = 0; k < 21 && ok_j; k++) {
                int later = J[3 * k + 2] < J[3 * j + 2] || (J[3 * k + 2] == J[3 * j + 2] && k > j);
                if (k != j && later && J[3 * k + 2] > 0.05f) ok_j = hypot(u0[j] - u0[k], v0[j] - v0[k]) > r0[j] + r0[k] + 1.5;
            }
            for (int e = 0; e < o->aug[b].n_erase && ok_j; e++) {
                const int32_t *Rc = o->aug[b].erase[e];
                ok_j = u1[j] + R < Rc[0] || u1[j] - R > Rc[2] || v1[j] + R < Rc[1] || v1[j] - R > Rc[3];
            }
            if (!ok_j) continue;
            /* the expected colour of the disc after the colour map */
            uint8_t c8[3];
            synth_joint_color(j, c8);
            float cj[3], ce[3];
            for (int c = 0; c < 3; c++) cj[c] = c8[c] / 255.0f;
            const float *Cm = o->aug[b].color;
            for (int c = 0; c < 3; c++) {
                float q = o->aug[b].photo ? Cm[c * 3] * cj[0] + Cm[c * 3 + 1] * cj[1] + Cm[c * 3 + 2] * cj[2] + Cm[9 + c]
                                          : cj[c];
                ce[c] = q < 0 ? 0 : q > 1 ? 1 : q;
            }
            /* colour-weighted centroid of pixel centres in a window around the
             * projection (joint colours are >= 0.16 apart: 0.12 admits none of
             * the neighbours' interiors) */
            double sw = 0, sx = 0, sy = 0;
            for (int y = (int)floor(v1[j] - R); y <= (int)ceil(v1[j] + R); y++)
                for (int x = (int)floor(u1[j] - R); x <= (int)ceil(u1[j] + R); x++) {
                    if (x < 0 || y < 0 || x >= S || y >= S) continue;
                    double d = 0;
                    for (int c = 0; c < 3; c++) {
                        double t = o->rgb[(((size_t)b * 3 + c) * S + y) * S + x] - ce[c];
                        d += t * t;
                    }
                    double w = 1 - sqrt(d) / 0.12;
                    if (w <= 0) continue;
                    sw += w;
                    sx += w * (x + 0.5);
                    sy += w * (y + 0.5);
                }
            if (sw < 0.5 * M_PI * r0[j] * r0[j] * o->drawn[b].zoom * o->drawn[b].zoom) {
                if (++*missing <= 3)
                    diag("  sample %d joint %d: no disc near (%.1f, %.1f) (weight %.1f)", b, j, u1[j], v1[j], sw);
                continue;
            }
            double err = hypot(sx / sw - u1[j], sy / sw - v1[j]);
            if (err > 1.0 && err > *worst)
                diag("  sample %d joint %d: disc centre (%.2f, %.2f), projected joint (%.2f, %.2f): %.2f px", b, j,
                     sx / sw, sy / sw, u1[j], v1[j], err);
            if (err > *worst) *worst = err;
            measured++;
        }
    }
    return measured;
}

static void disc_case(const char *name, const augment_spec_t *a, int use_K, long epoch, int min_measured) {
    batch_t o;
    run_batch(a, epoch, use_K, &o);
    double worst;
    int missing;
    int n = disc_check(&o, &worst, &missing);
    ok(n >= min_measured && worst <= 1.0 && missing == 0,
       "%s (%s camera): %d discs within %.2f px of their augmented joints (<= 1), %d missing", name,
       use_K ? "dataset" : "assumed", n, worst, missing);
    batch_free(&o);
}

static augment_spec_t spec0(void) {
    augment_spec_t a;
    memset(&a, 0, sizeof a);
    a.on = 1;
    a.zoom[0] = a.zoom[1] = 1;
    return a;
}

static uint64_t trng = 12345;
static double tu(void) {
    trng ^= trng << 13;
    trng ^= trng >> 7;
    trng ^= trng << 17;
    return (double)(trng >> 11) / 9007199254740992.0;
}

int main(void) {
    char err[512];
    be = backend_cpu_create(err, sizeof err);
    if (!be) { printf("Bail out! backend: %s\n", err); return 1; }
    uint8_t *u8 = malloc((size_t)NS * S * S * 3);
    images = malloc((size_t)NS * 3 * S * S * sizeof(bf16));
    synth_samples(3, S, 0, NS, u8, joints, valid, has, K);
    be->images_from_u8(be, images, DT_BF16, u8, NS, S, S, mean, sd);
    free(u8);
    for (int i = 0; i < NS; i++) idx[i] = i;

    /* ---- identity: augmentation on, every kind off, is an exact copy ---- */
    {
        augment_spec_t a = spec0();
        batch_t o;
        run_batch(&a, 0, 1, &o);
        float *plain = malloc((size_t)NS * S * S * 3 * sizeof(float));
        be->im2col(be, plain, DT_F32, images, DT_BF16, idx, NS, S, S, PT, NULL);
        ok(memcmp(plain, o.cols, (size_t)NS * S * S * 3 * sizeof(float)) == 0 && memcmp(o.jt, joints, sizeof joints) == 0,
           "every kind off: the gather and the labels are exact copies");
        int flags = 0;
        for (int i = 0; i < NS; i++) flags += o.aug[i].geom + o.aug[i].photo + o.aug[i].n_erase;
        ok(flags == 0, "every kind off: no sample resamples, recolours or erases");
        free(plain);
        batch_free(&o);
    }

    /* ---- each geometric kind alone ---- */
    augment_spec_t a = spec0();
    a.rotate_deg[0] = -180;
    a.rotate_deg[1] = 180;
    disc_case("rotate_deg [-180,180]", &a, 1, 0, 60);
    disc_case("rotate_deg [-180,180]", &a, 0, 1, 60);
    a = spec0();
    a.shift_deg = 12;
    disc_case("shift_deg 12", &a, 1, 0, 60);
    a = spec0();
    a.flip = 1;
    disc_case("flip 1", &a, 1, 0, 60);
    disc_case("flip 1", &a, 0, 0, 60);
    a = spec0();
    a.zoom[0] = 0.7;
    a.zoom[1] = 1.3;
    disc_case("zoom [0.7,1.3]", &a, 1, 0, 60);
    disc_case("zoom [0.7,1.3]", &a, 0, 2, 60);

    /* ---- random combinations, photometric and erasing included ---- */
    for (int t = 0; t < 8; t++) {
        a = spec0();
        double r0 = -180 + 360 * tu(), r1 = -180 + 360 * tu();
        a.rotate_deg[0] = r0 < r1 ? r0 : r1;
        a.rotate_deg[1] = r0 < r1 ? r1 : r0;
        a.shift_deg = 10 * tu();
        a.flip = tu();
        a.zoom[0] = 0.8 + 0.2 * tu();
        a.zoom[1] = 1.0 + 0.25 * tu();
        a.brightness = 0.2 * tu();
        a.contrast = 0.2 * tu();
        a.saturation = 0.2 * tu();
        a.hue = 0.03 * tu();
        a.erase_count = 1 + t % 3;
        a.erase_p = 0.5;
        a.erase_area[0] = 0.01;
        a.erase_area[1] = 0.05;
        a.erase_aspect[0] = 0.5;
        a.erase_aspect[1] = 2;
        char nm[200];
        snprintf(nm, sizeof nm, "combination %d: rotate [%.0f,%.0f] shift %.1f flip %.2f zoom [%.2f,%.2f] + colour, erase",
                 t, a.rotate_deg[0], a.rotate_deg[1], a.shift_deg, a.flip, a.zoom[0], a.zoom[1]);
        disc_case(nm, &a, 1, t, 40);
    }

    /* ---- flip: x -> -x, the joint order stays ---- */
    {
        a = spec0();
        a.flip = 0.5;
        batch_t o;
        run_batch(&a, 3, 1, &o);
        int nflip = 0, exact = 1;
        for (int b = 0; b < NS; b++) {
            nflip += o.drawn[b].flip;
            for (int j = 0; j < 21; j++)
                exact &= o.jt[b * 63 + 3 * j] == (o.drawn[b].flip ? -1 : 1) * joints[b * 63 + 3 * j] &&
                         o.jt[b * 63 + 3 * j + 1] == joints[b * 63 + 3 * j + 1] &&
                         o.jt[b * 63 + 3 * j + 2] == joints[b * 63 + 3 * j + 2];
        }
        ok(exact && nflip > 5 && nflip < NS - 5,
           "flip 0.5: %d of %d mirrored; joint j becomes (-x, y, z) of joint j, the others unchanged", nflip, NS);
        /* the mirror is about the principal point: pixel column x -> W-1-x */
        int mirrored = 1;
        for (int b = 0; b < NS && mirrored; b++) {
            if (!o.drawn[b].flip) continue;
            for (int y = 0; y < S && mirrored; y += 7)
                for (int x = 0; x < S; x += 5) {
                    float got = o.rgb[((size_t)b * 3 * S + y) * S + x];
                    float want = bf16_to_f32(images[((size_t)b * 3 * S + y) * S + (S - 1 - x)]) * sd[0] + mean[0];
                    if (fabsf(got - want) > 1e-5f) { mirrored = 0; break; }
                }
        }
        ok(mirrored, "a mirrored image is column x -> W-1-x of the original (principal point at the centre)");
        batch_free(&o);
    }

    /* ---- the assumed camera is f = W, principal point at the centre ---- */
    {
        a = spec0();
        a.rotate_deg[0] = -40;
        a.rotate_deg[1] = 40;
        a.shift_deg = 8;
        float *Kdef = malloc(NS * 9 * sizeof(float));
        for (int i = 0; i < NS; i++) aug_camera(NULL, S, S, Kdef + i * 9);
        ok(Kdef[0] == S && Kdef[4] == S && Kdef[2] == S / 2.0f && Kdef[5] == S / 2.0f && Kdef[8] == 1,
           "assumed camera: fx = fy = W = %d, principal point (%g, %g)", S, Kdef[2], Kdef[5]);
        batch_t o1, o2;
        run_batch(&a, 0, 0, &o1);
        memcpy(K, Kdef, sizeof K);   /* the dataset's intrinsics replaced by the assumed ones */
        run_batch(&a, 0, 1, &o2);
        ok(memcmp(o1.cols, o2.cols, (size_t)NS * S * S * 3 * sizeof(float)) == 0,
           "no intrinsics = intrinsics f = W at the centre, bit for bit");
        batch_free(&o1);
        batch_free(&o2);
        synth_samples(3, S, 0, NS, NULL, NULL, NULL, NULL, K);   /* restore the renderer's */
        free(Kdef);
    }

    /* ---- the colour map ---- */
    {
        a = spec0();
        a.brightness = 0.4;
        a.contrast = 0.3;
        a.saturation = 0.5;
        a.hue = 0.1;
        batch_t o;
        run_batch(&a, 0, 1, &o);
        double worst = 0;
        int inrange = 1;
        for (int b = 0; b < NS; b++)
            for (int y = 0; y < S; y += 3)
                for (int x = 0; x < S; x += 3) {
                    float in[3], want[3];
                    for (int c = 0; c < 3; c++)
                        in[c] = bf16_to_f32(images[(((size_t)b * 3 + c) * S + y) * S + x]) * sd[c] + mean[c];
                    const float *Cm = o.aug[b].color;
                    for (int c = 0; c < 3; c++) {
                        float q = Cm[c * 3] * in[0] + Cm[c * 3 + 1] * in[1] + Cm[c * 3 + 2] * in[2] + Cm[9 + c];
                        want[c] = q < 0 ? 0 : q > 1 ? 1 : q;
                        float got = o.rgb[(((size_t)b * 3 + c) * S + y) * S + x];
                        if (fabs(got - want[c]) > worst) worst = fabs(got - want[c]);
                        inrange &= got >= -1e-5f && got <= 1 + 1e-5f;
                    }
                }
        ok(worst < 1e-5 && inrange, "colour: every pixel is clamp(C rgb + d) (max diff %.2g), within [0,1]", worst);
        batch_free(&o);
        /* what C and d are, kind by kind */
        augment_spec_t b1 = spec0();
        b1.brightness = 0.5;
        aug_sample_t s;
        augment_draw_t d;
        augment_draw(&b1, 1, 0, 7, S, S, mean, &s, &d);
        ok(fabsf(s.color[0] - (float)d.brightness) < 1e-6f && s.color[1] == 0 && fabsf(s.color[4] - (float)d.brightness) < 1e-6f &&
           s.color[9] == 0, "brightness alone: C = b I (b = %.3f), d = 0", d.brightness);
        augment_spec_t h1 = spec0();
        h1.hue = 0.5;
        h1.saturation = 1;
        int gray_ok = 1;
        for (int i = 0; i < 50; i++) {
            augment_draw(&h1, 1, 0, i, S, S, mean, &s, &d);
            for (int c = 0; c < 3; c++)
                gray_ok &= fabsf(s.color[c * 3] + s.color[c * 3 + 1] + s.color[c * 3 + 2] + s.color[9 + c] - 1) < 1e-5f;
        }
        ok(gray_ok, "hue and saturation keep gray gray (C (1,1,1) + d = (1,1,1))");
        /* ranges over many draws */
        augment_spec_t r = spec0();
        r.rotate_deg[0] = -10;
        r.rotate_deg[1] = 25;
        r.shift_deg = 4;
        r.flip = 0.25;
        r.zoom[0] = 0.8;
        r.zoom[1] = 1.25;
        r.brightness = 0.2;
        r.contrast = 0.3;
        r.saturation = 0.4;
        r.hue = 0.05;
        double lo[9], hi[9];
        for (int k = 0; k < 9; k++) { lo[k] = INFINITY; hi[k] = -INFINITY; }
        int flips = 0, n = 4000;
        for (int i = 0; i < n; i++) {
            augment_draw(&r, 5, i / 1000, i, S, S, mean, &s, &d);
            double v[9] = {d.rotate_deg, d.tilt_deg, d.pan_deg, d.zoom, d.brightness, d.contrast, d.saturation,
                           d.hue, 0};
            for (int k = 0; k < 8; k++) {
                if (v[k] < lo[k]) lo[k] = v[k];
                if (v[k] > hi[k]) hi[k] = v[k];
            }
            flips += d.flip;
        }
        double want_lo[8] = {-10, -4, -4, 0.8, 0.8, 0.7, 0.6, -0.05}, want_hi[8] = {25, 4, 4, 1.25, 1.2, 1.3, 1.4, 0.05};
        const char *names[8] = {"rotate_deg", "tilt", "pan", "zoom", "brightness", "contrast", "saturation", "hue"};
        int all = 1;
        for (int k = 0; k < 8; k++) {
            double span = want_hi[k] - want_lo[k];
            int in = lo[k] >= want_lo[k] && hi[k] <= want_hi[k] && lo[k] < want_lo[k] + 0.01 * span &&
                     hi[k] > want_hi[k] - 0.01 * span;
            if (!in) diag("  %s drawn in [%g, %g], range [%g, %g]", names[k], lo[k], hi[k], want_lo[k], want_hi[k]);
            all &= in;
        }
        ok(all, "4000 draws stay in their ranges and reach both ends (rotate, tilt, pan, zoom, brightness, "
                "contrast, saturation, hue)");
        ok(flips > 0.2 * n && flips < 0.3 * n, "flip 0.25: %d of %d mirrored", flips, n);
    }

    /* ---- erasing ---- */
    {
        a = spec0();
        a.erase_count = 4;
        a.erase_p = 1;
        a.erase_area[0] = 0.02;
        a.erase_area[1] = 0.1;
        a.erase_aspect[0] = 0.5;
        a.erase_aspect[1] = 2;
        batch_t o;
        run_batch(&a, 0, 1, &o);
        float *plain = malloc((size_t)NS * S * S * 3 * sizeof(float));
        be->im2col(be, plain, DT_F32, images, DT_BF16, idx, NS, S, S, PT, NULL);
        int exact = 1, shapes = 1;
        const int G = S / PT, P = G * G, C = 3 * PT * PT;
        for (int b = 0; b < NS; b++) {
            shapes &= o.aug[b].n_erase == 4;
            for (int e = 0; e < o.aug[b].n_erase; e++) {
                const int32_t *R = o.aug[b].erase[e];
                double w = R[2] - R[0], h = R[3] - R[1], area = w * h / (S * S);
                shapes &= R[0] >= 0 && R[1] >= 0 && R[2] <= S && R[3] <= S && area > 0.015 && area < 0.11 &&
                          w / h > 0.4 && w / h < 2.5;
            }
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    int in = aug_erased(&o.aug[b], x, y);
                    for (int c = 0; c < 3; c++) {
                        size_t q = ((size_t)b * P + (y / PT) * G + x / PT) * C + c * PT * PT + (y % PT) * PT + x % PT;
                        exact &= in ? o.cols[q] == 0.0f : o.cols[q] == plain[q];
                    }
                }
        }
        ok(shapes, "erase: 4 rectangles a sample, inside the image, area and aspect in range");
        ok(exact, "erase: the rectangles' pixels are the mean colour (0), every other pixel untouched");
        free(plain);
        batch_free(&o);
    }

    /* ---- draws are a function of (seed, epoch, sample) ---- */
    {
        a = spec0();
        a.rotate_deg[0] = -30;
        a.rotate_deg[1] = 30;
        a.brightness = 0.2;
        aug_sample_t s1, s2, s3, s4;
        augment_draw(&a, 1, 4, 17, S, S, mean, &s1, NULL);
        augment_draw(&a, 1, 4, 17, S, S, mean, &s2, NULL);
        augment_draw(&a, 1, 5, 17, S, S, mean, &s3, NULL);
        augment_draw(&a, 1, 4, 18, S, S, mean, &s4, NULL);
        ok(memcmp(&s1, &s2, sizeof s1) == 0 && memcmp(&s1, &s3, sizeof s1) != 0 && memcmp(&s1, &s4, sizeof s1) != 0,
           "the same (seed, epoch, sample) draws the same bytes; another epoch or sample draws others");
        augment_spec_t a2 = a;
        a2.flip = 0.5;   /* another kind switched on does not move the others' draws */
        augment_draw_t d1, d2;
        augment_draw(&a, 1, 4, 17, S, S, mean, &s1, &d1);
        augment_draw(&a2, 1, 4, 17, S, S, mean, &s2, &d2);
        ok(d1.rotate_deg == d2.rotate_deg && d1.brightness == d2.brightness,
           "switching a kind on leaves the other kinds' draws as they were");
        float I[9];
        aug_mul3(s1.m, s1.minv, I);
        double dev = 0;
        for (int i = 0; i < 9; i++) dev = fmax(dev, fabs(I[i] - (i % 4 == 0)));
        ok(dev < 1e-6, "m · minv = I (max deviation %.1g)", dev);
    }

    /* ---- the stage's labels: a joint carried out of the image stays valid ---- */
    {
        dataset_t ds = {.n = NS, .held = NS, .h = S, .w = S, .image_dtype = DT_BF16, .images = images, .joints = joints,
                        .joints_valid = valid, .has_hand = has, .intrinsics = K};
        memcpy(ds.mean, mean, sizeof mean);
        memcpy(ds.std, sd, sizeof sd);
        jobspec_t js;
        memset(&js, 0, sizeof js);
        js.type = JOB_TRAIN;
        js.seed = 4;
        js.augment = spec0();
        js.augment.zoom[0] = js.augment.zoom[1] = 2.0;   /* magnified twice: many joints leave the image */
        stage_batch_t b;
        ok(stage_batch_init(&b, be, NS, err, sizeof err) == 0, "batch buffers (%s)", err);
        stage_batch_set_idx(&b, &ds, idx, NS);
        im2col_aug_t ia;
        stage_batch_augment(&b, &ds, &js, 0, idx, NS, &ia);
        stage_batch_aug_labels(&b, &ds, NS);
        int outside = 0;
        for (int i = 0; i < NS * 21; i++) {
            double u, v;
            project(K + (i / 21) * 9, b.d_joints + 3 * i, &u, &v);
            outside += u < 0 || v < 0 || u >= S || v >= S;
        }
        ok(outside > 50 && memcmp(b.d_valid, valid, sizeof valid) == 0 && memcmp(b.d_has, has, sizeof has) == 0,
           "zoom 2: %d joints projected outside the image keep their validity (masks gathered unchanged)", outside);
        int same = 1;
        for (int i = 0; i < NS * 63; i++) same &= b.d_joints[i] == (i % 3 == 2 ? joints[i] / 2.0f : joints[i]);
        ok(same, "zoom 2: joints (x, y, z) -> (x, y, z/2)");
        stage_batch_free(&b);
    }

    /* ---- intrinsics that are no pinhole camera are refused by name ---- */
    {
        dataset_t ds = {.n = NS, .held = NS, .h = S, .w = S, .intrinsics = K};
        ok(augment_check_intrinsics(be, &ds, 0, NS, err, sizeof err) == 0, "the renderer's intrinsics pass");
        float save = K[5 * 9 + 4];
        K[5 * 9 + 4] = 0;
        ok(augment_check_intrinsics(be, &ds, 0, NS, err, sizeof err) == -1 && strstr(err, "sample 5"),
           "fy = 0 refused: %s", err);
        ok(augment_check_intrinsics(be, &ds, 6, NS, err, sizeof err) == 0, "outside the checked range it is not read");
        K[5 * 9 + 4] = save;
        K[7 * 9 + 6] = NAN;
        ok(augment_check_intrinsics(be, &ds, 0, NS, err, sizeof err) == -1 && strstr(err, "sample 7"),
           "a NaN refused: %s", err);
        K[7 * 9 + 6] = 0;
    }

    free(images);
    be->destroy(be);
    return tap_done();
}
