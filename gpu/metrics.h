/* gpu/metrics.h — hand-pose evaluation metrics (SPEC §4 eval), host side, fp64.
 *
 * Inputs are joints in METRES (camera frame) as the model and the dataset hold
 * them; every reported value is in MILLIMETRES (BACKGROUND.md: the old system
 * printed metres as mm — never again). Only samples with a hand and, within
 * them, valid joints with finite ground truth count (a NaN label is treated
 * as an invalid joint; a NaN prediction counts and makes the result NaN).
 *
 *   metrics_acc_t acc; metrics_acc_init(&acc, mean_pose_or_NULL);
 *   for each batch: metrics_acc_add(&acc, pred, gt, valid, has_hand, n);
 *   metrics_t m; metrics_acc_result(&acc, &m); json_t *j = metrics_to_json(&m);
 *
 * Definitions:
 * - MPJPE: mean Euclidean distance over all valid joints of samples with a hand.
 * - PA-MPJPE: the same after aligning each predicted hand to its ground truth
 *   with a similarity transform (scale, proper rotation, translation) fitted
 *   by least squares on the sample's valid joints (Umeyama / similarity
 *   Procrustes through a 3×3 Jacobi SVD with the determinant sign fix, so a
 *   mirrored hand is not "aligned" by a reflection). Samples with fewer than 3
 *   valid joints are left out of PA-MPJPE only.
 * - PCK@t: fraction of valid joints with error <= t mm, t = 5,10,15,20,30,40,50.
 * - AUC: area under the PCK curve sampled every 0.1 mm over [0, 50] mm
 *   (trapezoids), divided by 50 → in [0, 1].
 * - per-joint MPJPE [21]: MPJPE per joint index (NaN when a joint never valid).
 * - mean predictor: the error of predicting the given mean pose (the train
 *   split's, from metrics_mean_pose) for every sample — the floor to beat.
 */
#ifndef TRAIND_METRICS_H
#define TRAIND_METRICS_H

#include <jansson.h>
#include <stdint.h>
#include "store/hand.h"

#define METRICS_NPCK 7
#define METRICS_AUC_STEPS 500           /* 0.1 mm steps over 0..50 mm */

extern const double metrics_pck_mm[METRICS_NPCK];   /* 5,10,15,20,30,40,50 */

typedef struct {
    double mpjpe, pa_mpjpe;                   /* mm (NaN when nothing counted) */
    double pck[METRICS_NPCK];                 /* fractions */
    double auc;                               /* [0,1] */
    double per_joint[HAND_JOINTS];         /* mm */
    double mean_pred_mpjpe;                   /* mm; NaN without a mean pose */
    long samples, samples_with_hand, valid_joints, pa_samples;
} metrics_t;

typedef struct {
    int has_mean;
    double mean_pose[HAND_JOINTS * 3];     /* metres */
    long samples, samples_with_hand, valid_joints, pa_samples, pa_joints;
    double err_sum, pa_sum, mean_err_sum;     /* mm */
    double joint_sum[HAND_JOINTS];
    long joint_n[HAND_JOINTS];
    long hist[METRICS_AUC_STEPS + 1];         /* hist[k]: errors in ((k-1)/10, k/10] mm */
} metrics_acc_t;

void metrics_acc_init(metrics_acc_t *a, const float *mean_pose /* [21*3] m, or NULL */);
/* pred, gt [n,21,3] metres; valid [n,21] (NULL: all valid); has_hand [n] (NULL: all). */
void metrics_acc_add(metrics_acc_t *a, const float *pred, const float *gt, const uint8_t *valid,
                     const uint8_t *has_hand, int n);
void metrics_acc_result(const metrics_acc_t *a, metrics_t *out);
/* The accumulator's sums as doubles (counts are exact below 2^53), so that the
 * accumulators of several ranks add up element by element (gpu/collective.h);
 * unpack keeps has_mean and mean_pose. */
#define METRICS_ACC_DOUBLES (8 + 2 * HAND_JOINTS + METRICS_AUC_STEPS + 1)
void metrics_acc_pack(const metrics_acc_t *a, double out[METRICS_ACC_DOUBLES]);
void metrics_acc_unpack(metrics_acc_t *a, const double in[METRICS_ACC_DOUBLES]);
json_t *metrics_to_json(const metrics_t *m);   /* NaN → null */

/* Mean of joints[idx[i]] over samples with a hand and valid joints, per joint
 * coordinate (0 for a joint that is never valid). joints [*,21,3], valid and
 * has_hand may be NULL; idx NULL means samples 0..n-1. out [63] metres.
 * Returns the number of samples with a hand that entered the mean. */
long metrics_mean_pose(const float *joints, const uint8_t *valid, const uint8_t *has_hand,
                       const int32_t *idx, long n, float *out);

/* M = U diag(S) V^T with U, V orthogonal and S sorted descending, S >= 0. */
void metrics_svd3(const double M[3][3], double U[3][3], double S[3], double V[3][3]);

/* Similarity Procrustes of pred[n][3] onto gt[n][3]: writes aligned[n][3] =
 * s R pred + t (R a proper rotation) and returns the mean distance of aligned
 * to gt in the units of the inputs. n >= 1. */
double metrics_procrustes(const double (*pred)[3], const double (*gt)[3], int n, double (*aligned)[3]);

#endif
