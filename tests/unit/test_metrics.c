/* tests/unit/test_metrics.c — eval metrics against hand-computed values:
 * units (metres in, mm out), MPJPE/PCK/AUC of known offsets, PA-MPJPE of a
 * known similarity transform (0) and of a mirrored hand (not 0: no reflection
 * allowed, and optimal among proper rotations), masking of samples without a
 * hand and of invalid joints, the mean-pose floor, and the 3x3 SVD. */
#include <stdlib.h>
#include <string.h>
#include "gpu/metrics.h"
#include "tests/tap.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) {   /* splitmix64 -> [0,1) */
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

static void rot_axis_angle(const double ax[3], double ang, double R[3][3]) {
    double n = sqrt(ax[0] * ax[0] + ax[1] * ax[1] + ax[2] * ax[2]);
    double x = ax[0] / n, y = ax[1] / n, z = ax[2] / n, c = cos(ang), s = sin(ang), C = 1 - c;
    double M[3][3] = {{c + x * x * C, x * y * C - z * s, x * z * C + y * s},
                      {y * x * C + z * s, c + y * y * C, y * z * C - x * s},
                      {z * x * C - y * s, z * y * C + x * s, c + z * z * C}};
    memcpy(R, M, sizeof M);
}

/* A plausible non-planar hand: 21 joints, metres, around z = 0.5. Values are
 * multiples of 2^-10 so float arithmetic on them below is exact. */
static void make_hand(float *j, double jitter) {
    for (int k = 0; k < 21; k++) {
        double x = (k % 5) * 0.02 - 0.04 + jitter * (urand() - 0.5);
        double y = (k / 5) * 0.025 - 0.05 + jitter * (urand() - 0.5);
        double z = 0.5 + 0.01 * ((k * 7) % 5) + jitter * (urand() - 0.5);
        j[3 * k] = (float)(round(x * 1024) / 1024);
        j[3 * k + 1] = (float)(round(y * 1024) / 1024);
        j[3 * k + 2] = (float)(round(z * 1024) / 1024);
    }
}

/* Squared alignment error for a fixed rotation R with the optimal scale and translation. */
static double sq_err_for_R(const double (*p)[3], const double (*g)[3], int n, double R[3][3]) {
    double mp[3] = {0}, mg[3] = {0};
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) { mp[k] += p[i][k] / n; mg[k] += g[i][k] / n; }
    double num = 0, den = 0, gg = 0;
    for (int i = 0; i < n; i++) {
        double P[3], G[3], RP[3];
        for (int k = 0; k < 3; k++) { P[k] = p[i][k] - mp[k]; G[k] = g[i][k] - mg[k]; }
        for (int a = 0; a < 3; a++) RP[a] = R[a][0] * P[0] + R[a][1] * P[1] + R[a][2] * P[2];
        for (int k = 0; k < 3; k++) { num += G[k] * RP[k]; den += P[k] * P[k]; gg += G[k] * G[k]; }
    }
    double s = num / den;
    if (s < 0) s = 0;
    return gg - 2 * s * num + s * s * den;
}

static void check_svd(const double M[3][3], const char *name) {
    double U[3][3], S[3], V[3][3];
    metrics_svd3(M, U, S, V);
    double rec = 0, orth = 0, scale = 1e-300;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            double r = 0, uu = 0, vv = 0;
            for (int k = 0; k < 3; k++) {
                r += U[a][k] * S[k] * V[b][k];
                uu += U[k][a] * U[k][b];
                vv += V[k][a] * V[k][b];
            }
            rec = fmax(rec, fabs(r - M[a][b]));
            scale = fmax(scale, fabs(M[a][b]));
            orth = fmax(orth, fmax(fabs(uu - (a == b)), fabs(vv - (a == b))));
        }
    ok(rec <= 1e-12 * fmax(scale, 1) && orth <= 1e-12 && S[0] >= S[1] && S[1] >= S[2] && S[2] >= 0,
       "svd3 %s: reconstructs (%.1e), orthogonal (%.1e), sorted", name, rec, orth);
}

int main(void) {
    const int N = 6;
    float gt[6 * 63], pred[6 * 63];
    for (int s = 0; s < N; s++) make_hand(gt + 63 * s, 0.01);

    /* ---- perfect prediction ---- */
    metrics_acc_t acc;
    metrics_t m;
    metrics_acc_init(&acc, NULL);
    metrics_acc_add(&acc, gt, gt, NULL, NULL, N);
    metrics_acc_result(&acc, &m);
    ok(m.mpjpe == 0 && m.pa_mpjpe < 1e-9 && m.pck[0] == 1 && m.pck[6] == 1 && fabs(m.auc - 1) < 1e-12,
       "perfect: MPJPE 0, PA 0, PCK 1, AUC 1");
    ok(m.samples == N && m.valid_joints == N * 21 && isnan(m.mean_pred_mpjpe), "counts; no mean pose -> NaN");

    /* ---- constant offset of 2^-7 m = 7.8125 mm along x ---- */
    for (int i = 0; i < N * 63; i++) pred[i] = gt[i] + (i % 3 == 0 ? 0.0078125f : 0.0f);
    metrics_acc_init(&acc, NULL);
    metrics_acc_add(&acc, pred, gt, NULL, NULL, N);
    metrics_acc_result(&acc, &m);
    is_close(m.mpjpe, 7.8125, 1e-9, "offset: MPJPE 7.8125 mm (metres in, mm out)");
    ok(m.pa_mpjpe < 1e-6, "offset: PA-MPJPE 0 (translation removed): %.3g", m.pa_mpjpe);
    ok(m.pck[0] == 0 && m.pck[1] == 1 && m.pck[6] == 1, "offset: PCK@5 0, PCK@10 1");
    /* PCK curve sampled every 0.1 mm: 0 up to 7.8, 1 from 7.9 on; trapezoids. */
    is_close(m.auc, (0.05 + (500 - 79) * 0.1) / 50.0, 1e-12, "offset: AUC of the step curve");
    is_close(m.per_joint[4], 7.8125, 1e-9, "offset: per-joint MPJPE");

    /* ---- 1 m error reads 1000 mm ---- */
    float a1[63] = {0}, b1[63] = {0};
    for (int j = 0; j < 21; j++) b1[3 * j + 2] = 1.0f;
    metrics_acc_init(&acc, NULL);
    metrics_acc_add(&acc, a1, b1, NULL, NULL, 1);
    metrics_acc_result(&acc, &m);
    is_close(m.mpjpe, 1000.0, 1e-12, "1 m error is 1000 mm");
    ok(m.pck[6] == 0 && m.auc == 0, "large errors: PCK 0, AUC 0");

    /* ---- known similarity transform: PA-MPJPE 0, MPJPE large ---- */
    double R[3][3], ax[3] = {0.3, -0.5, 0.8};
    rot_axis_angle(ax, 1.1, R);
    for (int s = 0; s < N; s++)
        for (int j = 0; j < 21; j++) {
            const float *g = gt + 63 * s + 3 * j;
            for (int a = 0; a < 3; a++)
                pred[63 * s + 3 * j + a] =
                    (float)(1.3 * (R[a][0] * g[0] + R[a][1] * g[1] + R[a][2] * g[2]) + 0.05 * (a + 1));
        }
    metrics_acc_init(&acc, NULL);
    metrics_acc_add(&acc, pred, gt, NULL, NULL, N);
    metrics_acc_result(&acc, &m);
    ok(m.mpjpe > 100 && m.pa_mpjpe < 1e-3, "rotation+scale+translation: MPJPE %.1f mm, PA-MPJPE %.2g mm",
       m.mpjpe, m.pa_mpjpe);

    /* ---- mirrored hand: a reflection may not be used ---- */
    double P[21][3], G[21][3], A[21][3];
    for (int j = 0; j < 21; j++)
        for (int k = 0; k < 3; k++) {
            G[j][k] = gt[3 * j + k];
            P[j][k] = k == 0 ? -gt[3 * j] : gt[3 * j + k];   /* mirror x */
        }
    double e = metrics_procrustes((const double (*)[3])P, (const double (*)[3])G, 21, A);
    /* the map pred -> aligned is s R with det R = +1: det(sum A_c P_c^T) has the sign of det(sum P_c P_c^T) > 0 */
    double mp[3] = {0}, ma[3] = {0}, C[3][3] = {{0}};
    for (int j = 0; j < 21; j++)
        for (int k = 0; k < 3; k++) { mp[k] += P[j][k] / 21; ma[k] += A[j][k] / 21; }
    for (int j = 0; j < 21; j++)
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) C[a][b] += (A[j][a] - ma[a]) * (P[j][b] - mp[b]);
    double detC = C[0][0] * (C[1][1] * C[2][2] - C[1][2] * C[2][1]) - C[0][1] * (C[1][0] * C[2][2] - C[1][2] * C[2][0]) +
                  C[0][2] * (C[1][0] * C[2][1] - C[1][1] * C[2][0]);
    ok(e * 1000 > 1.0 && detC > 0, "mirror: PA error %.2f mm > 0 and the alignment is a proper rotation", e * 1000);
    /* optimal among proper rotations: no random rotation does better */
    double best_err2 = 0;
    for (int j = 0; j < 21; j++)
        for (int k = 0; k < 3; k++) best_err2 += (A[j][k] - G[j][k]) * (A[j][k] - G[j][k]);
    int beaten = 0;
    for (int t = 0; t < 3000; t++) {
        double axr[3] = {urand() - 0.5, urand() - 0.5, urand() - 0.5}, Rr[3][3];
        rot_axis_angle(axr, urand() * 2 * M_PI, Rr);
        if (sq_err_for_R((const double (*)[3])P, (const double (*)[3])G, 21, Rr) < best_err2 - 1e-12) beaten++;
    }
    ok(beaten == 0, "mirror: Procrustes is optimal among 3000 random proper rotations");
    /* and for a generic noisy pair too */
    float noisy[63];
    make_hand(noisy, 0.03);
    for (int j = 0; j < 21; j++)
        for (int k = 0; k < 3; k++) P[j][k] = noisy[3 * j + k];
    metrics_procrustes((const double (*)[3])P, (const double (*)[3])G, 21, A);
    best_err2 = 0;
    for (int j = 0; j < 21; j++)
        for (int k = 0; k < 3; k++) best_err2 += (A[j][k] - G[j][k]) * (A[j][k] - G[j][k]);
    beaten = 0;
    for (int t = 0; t < 3000; t++) {
        double axr[3] = {urand() - 0.5, urand() - 0.5, urand() - 0.5}, Rr[3][3];
        rot_axis_angle(axr, urand() * 2 * M_PI, Rr);
        if (sq_err_for_R((const double (*)[3])P, (const double (*)[3])G, 21, Rr) < best_err2 - 1e-12) beaten++;
    }
    ok(beaten == 0, "noisy: Procrustes is optimal among 3000 random proper rotations");

    /* ---- masking: no-hand samples and invalid joints do not count ---- */
    float g2[2 * 63] = {0}, p2[2 * 63] = {0};
    uint8_t valid[2 * 21], has[2] = {1, 0};
    memset(valid, 1, sizeof valid);
    for (int j = 0; j < 21; j++) p2[3 * j] = 0.010f;                 /* sample 0: 10 mm everywhere */
    p2[3 * 5] = 5.0f;                                                /* joint 5 wildly off ... */
    valid[5] = 0;                                                    /* ... but invalid */
    for (int j = 0; j < 21; j++) p2[63 + 3 * j] = 3.0f;              /* sample 1: no hand, huge error */
    metrics_acc_init(&acc, NULL);
    metrics_acc_add(&acc, p2, g2, valid, has, 2);
    metrics_acc_result(&acc, &m);
    is_close(m.mpjpe, 10.0, 1e-6, "masked: MPJPE over valid joints of hands only");
    ok(m.samples == 2 && m.samples_with_hand == 1 && m.valid_joints == 20 && isnan(m.per_joint[5]),
       "masked: counts, per-joint NaN for a never-valid joint");
    json_t *mj = metrics_to_json(&m);
    ok(json_is_null(json_array_get(json_object_get(mj, "per_joint_mpjpe_mm"), 5)) &&
       json_is_real(json_object_get(mj, "mpjpe_mm")) && json_object_get(json_object_get(mj, "pck"), "50"),
       "JSON: NaN as null, numbers, PCK thresholds");
    json_decref(mj);

    /* a NaN label is an invalid joint, not a NaN result */
    g2[3 * 7] = NAN;
    metrics_acc_init(&acc, NULL);
    metrics_acc_add(&acc, p2, g2, valid, has, 2);
    metrics_acc_result(&acc, &m);
    ok(m.valid_joints == 19 && fabs(m.mpjpe - 10.0) < 1e-6 && isnan(m.per_joint[7]), "NaN ground truth is skipped");
    float mp_nan[63];
    metrics_mean_pose(g2, valid, has, NULL, 2, mp_nan);
    ok(isfinite(mp_nan[3 * 7]) && mp_nan[3 * 7] == 0.0f, "and left out of the mean pose");
    g2[3 * 7] = 0.0f;

    /* nothing counted at all */
    metrics_acc_init(&acc, NULL);
    metrics_acc_add(&acc, p2 + 63, g2 + 63, NULL, has + 1, 1);
    metrics_acc_result(&acc, &m);
    ok(isnan(m.mpjpe) && isnan(m.pa_mpjpe) && isnan(m.auc), "no hand at all: NaN, not 0");
    mj = metrics_to_json(&m);
    ok(json_is_null(json_object_get(mj, "mpjpe_mm")), "JSON null for NaN MPJPE");
    json_decref(mj);

    /* ---- the mean predictor floor ---- */
    float tj[3 * 63] = {0};
    uint8_t tv[3 * 21], th[3] = {1, 1, 0};
    memset(tv, 1, sizeof tv);
    for (int j = 0; j < 21; j++) { tj[3 * j] = 0.0f; tj[63 + 3 * j] = 0.020f; tj[126 + 3 * j] = 9.0f; }
    tv[21 + 7] = 0;                                                  /* joint 7 of sample 1 invalid */
    float mean[63];
    long used = metrics_mean_pose(tj, tv, th, NULL, 3, mean);
    ok(used == 2 && fabsf(mean[0] - 0.010f) < 1e-7f && fabsf(mean[3 * 7] - 0.0f) < 1e-7f,
       "mean pose over hands and valid joints only");
    int32_t idx[1] = {1};
    metrics_mean_pose(tj, tv, th, idx, 1, mean);
    ok(fabsf(mean[0] - 0.020f) < 1e-7f && mean[3 * 7] == 0.0f, "mean pose of an index subset");
    metrics_mean_pose(tj, tv, th, NULL, 2, mean);
    metrics_acc_init(&acc, mean);
    metrics_acc_add(&acc, tj, tj, tv, th, 3);
    metrics_acc_result(&acc, &m);
    /* 20 joints of each hand are 10 mm from the mean; joint 7 (valid in sample 0 only) has mean 0: 0 mm */
    is_close(m.mean_pred_mpjpe, 400.0 / 41.0, 1e-5, "mean predictor: hand-computed 400/41 mm");
    ok(m.mpjpe == 0, "the prediction itself is exact");

    /* ---- SVD ---- */
    for (int t = 0; t < 5; t++) {
        double M[3][3];
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) M[a][b] = urand() * 2 - 1;
        check_svd((const double (*)[3])M, "random");
    }
    double r1[3][3], zero[3][3] = {{0}}, diag3[3][3] = {{0, 0, 0}, {0, -2, 0}, {0, 0, 3}};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) r1[a][b] = (a + 1.0) * (b - 0.5);
    check_svd((const double (*)[3])r1, "rank 1");
    check_svd((const double (*)[3])zero, "zero");
    check_svd((const double (*)[3])diag3, "diagonal with a zero and a negative");

    /* Procrustes of collinear and identical points does not blow up */
    double L[4][3] = {{0, 0, 0}, {1, 0, 0}, {2, 0, 0}, {3, 0, 0}}, L2[4][3], Z[4][3] = {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}};
    for (int i = 0; i < 4; i++) { L2[i][0] = 0; L2[i][1] = 2.0 * i; L2[i][2] = 1; }
    e = metrics_procrustes((const double (*)[3])L, (const double (*)[3])L2, 4, NULL);
    ok(isfinite(e) && e < 1e-9, "collinear points align exactly (%.2g)", e);
    e = metrics_procrustes((const double (*)[3])Z, (const double (*)[3])L2, 4, NULL);
    ok(isfinite(e) && e > 0, "a collapsed prediction gives a finite error (%.3g)", e);
    /* two "ranks" each accumulating half of the samples: packed, summed, unpacked = one accumulator */
    {
        float mpose[63];
        for (int k = 0; k < 63; k++) mpose[k] = gt[k] + 0.01f;
        metrics_acc_t all, h1, h2;
        metrics_acc_init(&all, mpose);
        metrics_acc_init(&h1, mpose);
        metrics_acc_init(&h2, mpose);
        for (int s = 0; s < N * 63; s++) pred[s] = gt[s] + 0.004f * (float)((s * 7) % 11 - 5);
        metrics_acc_add(&all, pred, gt, NULL, NULL, N);
        metrics_acc_add(&h1, pred, gt, NULL, NULL, 2);
        metrics_acc_add(&h2, pred + 2 * 63, gt + 2 * 63, NULL, NULL, N - 2);
        double a[METRICS_ACC_DOUBLES], b[METRICS_ACC_DOUBLES];
        metrics_acc_pack(&h1, a);
        metrics_acc_pack(&h2, b);
        for (int k = 0; k < METRICS_ACC_DOUBLES; k++) a[k] += b[k];
        metrics_acc_unpack(&h1, a);
        metrics_t x, y;
        metrics_acc_result(&all, &x);
        metrics_acc_result(&h1, &y);
        ok(fabs(x.mpjpe - y.mpjpe) < 1e-9 && fabs(x.pa_mpjpe - y.pa_mpjpe) < 1e-9 && x.auc == y.auc &&
           fabs(x.mean_pred_mpjpe - y.mean_pred_mpjpe) < 1e-9 && x.samples == y.samples &&
           x.valid_joints == y.valid_joints && x.pck[2] == y.pck[2],
           "accumulators of two halves, packed and summed, give the whole's metrics (MPJPE %.3f mm)", y.mpjpe);
    }
    return tap_done();
}
