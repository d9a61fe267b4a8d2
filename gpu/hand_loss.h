/* gpu/hand_loss.h — the SPEC §4 hand loss of one sample and its gradient, in
 * double: the one definition the CPU reference (gpu/backend_cpu.c) and the
 * CUDA kernel (gpu/cuda/kernels_optim.cu) both run, so the two can differ only
 * in the order the batch's per-sample terms are added. Compiles as C and as
 * CUDA (HAND_FN is host+device there). The constants are store/hand.h's.
 *
 * Per sample, over its valid joints j (weight w_j, 10 for fingertips):
 *   e_j   = sqrt(|pred_j - gt_j|^2 + eps)
 *   joint = sum_j w_j e_j                         (the batch divides by sum w)
 *   pair  = sum_{i<j} | |pred_i - pred_j| - |gt_i - gt_j| |   (÷ pairs)
 *   conf  = sum_j BCE-with-logits(x_j, y_j), y_j = exp(-e_j / 20 mm), detached (÷ joints)
 * The batch's normalizers (sw, nj, np) are inputs, so a data-parallel rank
 * can divide by the global batch's. */
#ifndef TRAIND_HAND_LOSS_H
#define TRAIND_HAND_LOSS_H

#include <math.h>
#include <stdint.h>

#include "store/hand.h"

/* the unnormalized terms of one sample, added to by hand_loss_sample */
typedef struct {
    double joint, pair, conf;
} hand_terms_t;

/* Counts the valid joints of one sample (vs NULL: all valid), adds their
 * weights to *sw and returns the count. */
HAND_FN int hand_sample_count(const uint8_t *vs, double *sw) {
    int nv = 0;
    for (int j = 0; j < HAND_JOINTS; j++) {
        if (vs && !vs[j]) continue;
        nv++;
        *sw += hand_joint_weight(j);
    }
    return nv;
}

/* One sample: pr [63] predicted joints, gt [63] its labels, vs [21] or NULL,
 * x [21] confidence logits. Adds the terms to *t and dL/dpred to g [63] (the
 * caller zeroes it); writes dL/dlogit to dconf [21] for valid joints when
 * dconf is not NULL (the caller zeroes the rest). sw, nj, np > 0 are the
 * batch's normalizers; np == 0 skips the pair term. */
HAND_FN void hand_loss_sample(hand_terms_t *t, double *g, float *dconf, const float *pr,
                              const float *gt, const uint8_t *vs, const float *x,
                              double sw, double nj, double np) {
    for (int j = 0; j < HAND_JOINTS; j++) {
        if (vs && !vs[j]) continue;
        double d[3], e2 = 0;
        for (int k = 0; k < 3; k++) {
            d[k] = (double)pr[j * 3 + k] - gt[j * 3 + k];
            e2 += d[k] * d[k];
        }
        double e = sqrt(e2 + HAND_EPS), w = hand_joint_weight(j);
        t->joint += w * e;
        for (int k = 0; k < 3; k++) g[j * 3 + k] += w / sw * d[k] / e;
        double xj = x[j], y = exp(-e / HAND_CONF_SCALE);
        t->conf += (xj > 0 ? xj : 0) - xj * y + log1p(exp(-fabs(xj)));
        if (dconf) {
            double sig = xj >= 0 ? 1.0 / (1.0 + exp(-xj)) : exp(xj) / (1.0 + exp(xj));
            dconf[j] = (float)(HAND_W_CONF * (sig - y) / nj);
        }
    }
    if (np == 0) return;
    for (int i = 0; i < HAND_JOINTS; i++) {
        if (vs && !vs[i]) continue;
        for (int j = i + 1; j < HAND_JOINTS; j++) {
            if (vs && !vs[j]) continue;
            double dp[3], p2 = 0, q2 = 0;
            for (int k = 0; k < 3; k++) {
                dp[k] = (double)pr[i * 3 + k] - pr[j * 3 + k];
                double dq = (double)gt[i * 3 + k] - gt[j * 3 + k];
                p2 += dp[k] * dp[k];
                q2 += dq * dq;
            }
            double dpn = sqrt(p2 + HAND_EPS), dgn = sqrt(q2), r = dpn - dgn;
            t->pair += fabs(r);
            double sg = r > 0 ? 1.0 : (r < 0 ? -1.0 : 0.0);
            double c = HAND_W_PAIR * sg / np / dpn;
            for (int k = 0; k < 3; k++) {
                g[i * 3 + k] += c * dp[k];
                g[j * 3 + k] -= c * dp[k];
            }
        }
    }
}

#endif
