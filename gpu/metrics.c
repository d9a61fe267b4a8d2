/* gpu/metrics.c — MPJPE, PA-MPJPE (similarity Procrustes, LAPACK SVD), PCK,
 * AUC, per-joint MPJPE and the mean-predictor floor. See gpu/metrics.h for the
 * definitions. Everything is fp64 on the host; inputs in metres, outputs mm. */
#include "gpu/metrics.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

const double metrics_pck_mm[METRICS_NPCK] = {5, 10, 15, 20, 30, 40, 50};

static double det3(const double A[3][3]) {
    return A[0][0] * (A[1][1] * A[2][2] - A[1][2] * A[2][1]) -
           A[0][1] * (A[1][0] * A[2][2] - A[1][2] * A[2][0]) +
           A[0][2] * (A[1][0] * A[2][1] - A[1][1] * A[2][0]);
}

/* ---- 3×3 SVD: LAPACK's dgesvd (in OpenBLAS, already linked for the products) -- */

/* The Fortran routine; column-major arrays, trailing lengths of the two
 * character arguments (gfortran's convention). */
extern void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
                    const int *lda, double *s, double *u, const int *ldu, double *vt, const int *ldvt,
                    double *work, const int *lwork, int *info, size_t jobu_len, size_t jobvt_len);

void metrics_svd3(const double M[3][3], double U[3][3], double S[3], double V[3][3]) {
    double a[9], u[9], vt[9], work[64];
    const int three = 3, lwork = 64;
    int info = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) a[i + 3 * j] = M[i][j];
    dgesvd_("A", "A", &three, &three, a, &three, S, u, &three, vt, &three, work, &lwork, &info, 1, 1);
    if (info != 0) {   /* no convergence (cannot happen for finite 3x3 input): NaN, not a wrong answer */
        for (int i = 0; i < 3; i++) {
            S[i] = NAN;
            for (int j = 0; j < 3; j++) U[i][j] = V[i][j] = NAN;
        }
        return;
    }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            U[i][j] = u[i + 3 * j];
            V[i][j] = vt[j + 3 * i];   /* V = (V^T)^T */
        }
}

double metrics_procrustes(const double (*pred)[3], const double (*gt)[3], int n, double (*aligned)[3]) {
    assert(n >= 1);
    double mp[3] = {0, 0, 0}, mg[3] = {0, 0, 0};
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) { mp[k] += pred[i][k]; mg[k] += gt[i][k]; }
    for (int k = 0; k < 3; k++) { mp[k] /= n; mg[k] /= n; }
    /* M = sum_i G_i P_i^T over centred points; we want R with R P ≈ G. */
    double M[3][3] = {{0}}, var = 0;
    for (int i = 0; i < n; i++) {
        double P[3], G[3];
        for (int k = 0; k < 3; k++) { P[k] = pred[i][k] - mp[k]; G[k] = gt[i][k] - mg[k]; }
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) M[a][b] += G[a] * P[b];
        var += P[0] * P[0] + P[1] * P[1] + P[2] * P[2];
    }
    double U[3][3], S[3], V[3][3];
    metrics_svd3((const double (*)[3])M, U, S, V);
    /* Proper rotation: flip the smallest singular direction when det(U V^T) < 0. */
    double d = det3((const double (*)[3])U) * det3((const double (*)[3])V) < 0 ? -1.0 : 1.0;
    double R[3][3];
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            R[a][b] = U[a][0] * V[b][0] + U[a][1] * V[b][1] + d * U[a][2] * V[b][2];
    double s = var > 0 ? (S[0] + S[1] + d * S[2]) / var : 0;
    double err = 0;
    for (int i = 0; i < n; i++) {
        double P[3] = {pred[i][0] - mp[0], pred[i][1] - mp[1], pred[i][2] - mp[2]};
        double e2 = 0;
        for (int a = 0; a < 3; a++) {
            double x = mg[a] + s * (R[a][0] * P[0] + R[a][1] * P[1] + R[a][2] * P[2]);
            if (aligned) aligned[i][a] = x;
            e2 += (x - gt[i][a]) * (x - gt[i][a]);
        }
        err += sqrt(e2);
    }
    return err / n;
}

/* ---- accumulation ------------------------------------------------------------------ */

void metrics_acc_init(metrics_acc_t *a, const float *mean_pose) {
    memset(a, 0, sizeof *a);
    if (mean_pose) {
        a->has_mean = 1;
        for (int i = 0; i < HAND_JOINTS * 3; i++) a->mean_pose[i] = mean_pose[i];
    }
}

static void hist_add(metrics_acc_t *a, double e_mm) {
    /* smallest k with k/10 >= e, i.e. the first sampled threshold this error meets */
    if (!(e_mm <= METRICS_AUC_STEPS / 10.0)) return;   /* beyond 50 mm (or NaN) */
    long k = (long)ceil(e_mm * 10.0);
    if (k < 0) k = 0;
    while (k > 0 && (k - 1) / 10.0 >= e_mm) k--;
    while (k <= METRICS_AUC_STEPS && k / 10.0 < e_mm) k++;
    if (k <= METRICS_AUC_STEPS) a->hist[k]++;
}

static double dist_mm(const float *p, const float *g) {
    double dx = (double)p[0] - g[0], dy = (double)p[1] - g[1], dz = (double)p[2] - g[2];
    return 1000.0 * sqrt(dx * dx + dy * dy + dz * dz);
}

void metrics_acc_add(metrics_acc_t *a, const float *pred, const float *gt, const uint8_t *valid,
                     const uint8_t *has_hand, int n) {
    for (int s = 0; s < n; s++) {
        a->samples++;
        if (has_hand && !has_hand[s]) continue;
        a->samples_with_hand++;
        const float *P = pred + (size_t)s * HAND_COORDS, *G = gt + (size_t)s * HAND_COORDS;
        double pp[HAND_JOINTS][3], gg[HAND_JOINTS][3];
        int nv = 0;
        for (int j = 0; j < HAND_JOINTS; j++) {
            if (valid && !valid[(size_t)s * HAND_JOINTS + j]) continue;
            if (!isfinite(G[3 * j]) || !isfinite(G[3 * j + 1]) || !isfinite(G[3 * j + 2])) continue;
            double e = dist_mm(P + 3 * j, G + 3 * j);
            a->err_sum += e;
            a->joint_sum[j] += e;
            a->joint_n[j]++;
            a->valid_joints++;
            hist_add(a, e);
            if (a->has_mean) {
                float mp[3] = {(float)a->mean_pose[3 * j], (float)a->mean_pose[3 * j + 1],
                               (float)a->mean_pose[3 * j + 2]};
                a->mean_err_sum += dist_mm(mp, G + 3 * j);
            }
            for (int k = 0; k < 3; k++) { pp[nv][k] = P[3 * j + k]; gg[nv][k] = G[3 * j + k]; }
            nv++;
        }
        if (nv >= 3) {
            double e = metrics_procrustes((const double (*)[3])pp, (const double (*)[3])gg, nv, NULL);
            a->pa_sum += 1000.0 * e * nv;
            a->pa_joints += nv;
            a->pa_samples++;
        }
    }
}

void metrics_acc_result(const metrics_acc_t *a, metrics_t *m) {
    memset(m, 0, sizeof *m);
    m->samples = a->samples;
    m->samples_with_hand = a->samples_with_hand;
    m->valid_joints = a->valid_joints;
    m->pa_samples = a->pa_samples;
    double nv = (double)a->valid_joints;
    m->mpjpe = nv > 0 ? a->err_sum / nv : NAN;
    m->pa_mpjpe = a->pa_joints > 0 ? a->pa_sum / (double)a->pa_joints : NAN;
    m->mean_pred_mpjpe = a->has_mean && nv > 0 ? a->mean_err_sum / nv : NAN;
    for (int j = 0; j < HAND_JOINTS; j++)
        m->per_joint[j] = a->joint_n[j] ? a->joint_sum[j] / (double)a->joint_n[j] : NAN;
    /* cumulative PCK curve at k/10 mm */
    double auc = 0, prev = 0;
    long cum = 0;
    for (int k = 0; k <= METRICS_AUC_STEPS; k++) {
        cum += a->hist[k];
        double pck = nv > 0 ? cum / nv : NAN;
        if (k > 0) auc += 0.5 * (prev + pck) * 0.1;
        prev = pck;
        for (int t = 0; t < METRICS_NPCK; t++)
            if (k == (int)lround(metrics_pck_mm[t] * 10)) m->pck[t] = pck;
    }
    m->auc = nv > 0 ? auc / (METRICS_AUC_STEPS / 10.0) : NAN;
}

static json_t *num_or_null(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

json_t *metrics_to_json(const metrics_t *m) {
    json_t *o = json_object();
    json_object_set_new(o, "mpjpe_mm", num_or_null(m->mpjpe));
    json_object_set_new(o, "pa_mpjpe_mm", num_or_null(m->pa_mpjpe));
    json_t *pck = json_object();
    for (int t = 0; t < METRICS_NPCK; t++) {
        char k[16];
        snprintf(k, sizeof k, "%d", (int)metrics_pck_mm[t]);
        json_object_set_new(pck, k, num_or_null(m->pck[t]));
    }
    json_object_set_new(o, "pck", pck);
    json_object_set_new(o, "pck_thresholds_mm", json_pack("[iiiiiii]", 5, 10, 15, 20, 30, 40, 50));
    json_object_set_new(o, "auc_0_50mm", num_or_null(m->auc));
    json_t *pj = json_array();
    for (int j = 0; j < HAND_JOINTS; j++) json_array_append_new(pj, num_or_null(m->per_joint[j]));
    json_object_set_new(o, "per_joint_mpjpe_mm", pj);
    json_object_set_new(o, "mean_predictor_mpjpe_mm", num_or_null(m->mean_pred_mpjpe));
    json_object_set_new(o, "samples", json_integer(m->samples));
    json_object_set_new(o, "samples_with_hand", json_integer(m->samples_with_hand));
    json_object_set_new(o, "valid_joints", json_integer(m->valid_joints));
    json_object_set_new(o, "units", json_string("mm"));
    return o;
}

long metrics_mean_pose(const float *joints, const uint8_t *valid, const uint8_t *has_hand,
                       const int32_t *idx, long n, float *out) {
    double sum[HAND_JOINTS * 3] = {0};
    long cnt[HAND_JOINTS] = {0}, used = 0;
    for (long i = 0; i < n; i++) {
        long s = idx ? idx[i] : i;
        if (has_hand && !has_hand[s]) continue;
        used++;
        for (int j = 0; j < HAND_JOINTS; j++) {
            if (valid && !valid[s * HAND_JOINTS + j]) continue;
            const float *g = joints + s * HAND_COORDS + 3 * j;
            if (!isfinite(g[0]) || !isfinite(g[1]) || !isfinite(g[2])) continue;
            for (int k = 0; k < 3; k++) sum[3 * j + k] += g[k];
            cnt[j]++;
        }
    }
    for (int j = 0; j < HAND_JOINTS; j++)
        for (int k = 0; k < 3; k++) out[3 * j + k] = cnt[j] ? (float)(sum[3 * j + k] / cnt[j]) : 0.0f;
    return used;
}

void metrics_acc_pack(const metrics_acc_t *a, double o[METRICS_ACC_DOUBLES]) {
    int k = 0;
    o[k++] = (double)a->samples;
    o[k++] = (double)a->samples_with_hand;
    o[k++] = (double)a->valid_joints;
    o[k++] = (double)a->pa_samples;
    o[k++] = (double)a->pa_joints;
    o[k++] = a->err_sum;
    o[k++] = a->pa_sum;
    o[k++] = a->mean_err_sum;
    for (int j = 0; j < HAND_JOINTS; j++) o[k++] = a->joint_sum[j];
    for (int j = 0; j < HAND_JOINTS; j++) o[k++] = (double)a->joint_n[j];
    for (int i = 0; i <= METRICS_AUC_STEPS; i++) o[k++] = (double)a->hist[i];
    assert(k == METRICS_ACC_DOUBLES);
}

void metrics_acc_unpack(metrics_acc_t *a, const double in[METRICS_ACC_DOUBLES]) {
    int k = 0;
    a->samples = (long)in[k++];
    a->samples_with_hand = (long)in[k++];
    a->valid_joints = (long)in[k++];
    a->pa_samples = (long)in[k++];
    a->pa_joints = (long)in[k++];
    a->err_sum = in[k++];
    a->pa_sum = in[k++];
    a->mean_err_sum = in[k++];
    for (int j = 0; j < HAND_JOINTS; j++) a->joint_sum[j] = in[k++];
    for (int j = 0; j < HAND_JOINTS; j++) a->joint_n[j] = (long)in[k++];
    for (int i = 0; i <= METRICS_AUC_STEPS; i++) a->hist[i] = (long)in[k++];
    assert(k == METRICS_ACC_DOUBLES);
}
