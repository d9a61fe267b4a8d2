/* store/hand.h — the facts of the hand-pose task that every layer shares, in
 * one place: the dataset format (store/), the CPU reference and the CUDA
 * kernels (gpu/), the metrics and the stages all read them from here, so no
 * copy can drift. Compiles as C and as CUDA (HAND_FN is host+device there).
 *
 * Joint order is the 21-joint hand of FreiHAND/DexYCB/MANO: 0 wrist, then
 * four joints per finger from base to tip (thumb 1-4, index 5-8, middle 9-12,
 * ring 13-16, little 17-20); the tips are 4, 8, 12, 16, 20. */
#ifndef TRAIND_HAND_H
#define TRAIND_HAND_H

#ifdef __CUDACC__
#define HAND_FN static inline __host__ __device__
#else
#define HAND_FN static inline
#endif

#define HAND_JOINTS 21                       /* joints per hand */
#define HAND_COORDS (HAND_JOINTS * 3)        /* 63: x, y, z per joint, metres */
#define HAND_PAIRS (HAND_JOINTS * (HAND_JOINTS - 1) / 2)   /* 210 pairwise distances */
#define HAND_MAX_OBJECTS 10                  /* object slots per sample */

/* ---- the SPEC §4 loss --------------------------------------------------------- */
#define HAND_TIP_WEIGHT 10.0      /* fingertips weigh 10x in the joint term */
#define HAND_W_PAIR 0.3           /* weight of the L1 on pairwise distances */
#define HAND_W_CONF 0.1           /* weight of the confidence BCE */
#define HAND_CONF_SCALE 0.02      /* m: confidence target exp(-err / 20 mm) */
#define HAND_EPS 1e-12            /* m^2, inside every sqrt so gradients stay finite at 0 */

HAND_FN int hand_is_tip(int j) { return j == 4 || j == 8 || j == 12 || j == 16 || j == 20; }
HAND_FN double hand_joint_weight(int j) { return hand_is_tip(j) ? HAND_TIP_WEIGHT : 1.0; }

/* ---- image normalization ---------------------------------------------------- */
/* ImageNet's mean/std: the default of datasets without their own and of HF
 * configs without traind's fields. */
#define HAND_IMAGENET_MEAN { 0.485f, 0.456f, 0.406f }
#define HAND_IMAGENET_STD  { 0.229f, 0.224f, 0.225f }

#endif
