/* gpu/augment.h — train-time augmentation that keeps the 3D joints true to
 * the image (the train spec's "augment", parsed by gpu/jobspec.c).
 *
 * The labels are absolute camera-frame 3D joints, so a geometric augmentation
 * must move them exactly as it moves the image. Every geometric kind is a 3x3
 * matrix M on the camera frame: the joints become M·J and the image is
 * resampled through the homography K·M·K⁻¹ (gpu/augment_math.h), which is
 * exactly what the camera K would see of the transformed scene:
 *   rotate_deg  a camera roll about the optical axis by θ ∈ [lo, hi] degrees
 *               (the content turns clockwise on the screen for θ > 0; x right,
 *               y down): M = Rz(θ). Exact.
 *   shift_deg   camera tilt and pan, each uniform in [-x, x] degrees, about the
 *               camera's x and y axes: M = Rx·Ry. The content moves by about
 *               f·tan(angle) pixels and is foreshortened exactly as a real
 *               camera turn would do (not a 2D translation). Exact.
 *   flip        with this probability a mirror image about the principal
 *               point: pixel column u -> 2·cx - u, joints x -> -x, M = diag(-1,1,1).
 *               Exact. The dataset format has no hand_side (store/dataset.h),
 *               and the model has one head: the joint ORDER stays, so a
 *               mirrored right hand is labelled as the left hand it now is.
 *   zoom        magnification z (log-uniform in [lo, hi]) about the principal
 *               point with K unchanged: M = diag(1, 1, 1/z), i.e. every point
 *               keeps its x, y and comes z times closer. The magnified image is
 *               exactly the image of that scene under the same K, and a joint's
 *               apparent size (disc radius, finger width) matches its new depth,
 *               so the depth cue the model learns from stays true. What it
 *               approximates: the hand's extent along the optical axis is also
 *               scaled by 1/z (a 10 cm deep hand becomes 10/z cm deep), not a
 *               rigid move — a small distortion for z near 1 (keep the range
 *               within about [0.8, 1.25]). The exact alternative, a focal-length
 *               change K' = diag(z,z,1)·K with the joints unchanged, is NOT used:
 *               the model sees the image but not K, so it would learn that a
 *               hand looking z times larger is at the same depth — noise on the
 *               depth cue.
 * Order: M = Zoom · Flip · Rz · Rx · Ry. A joint carried outside the image
 * keeps its validity: it is still a true 3D point.
 *
 * Photometric kinds act on [0,1] RGB (the normalization undone and redone in
 * the gather), as one affine colour map per sample, clamped to [0,1] once:
 *   brightness  rgb·b, b ∈ [1-x, 1+x]
 *   contrast    g + c·(rgb - g), c ∈ [1-x, 1+x], g = the luminance of the
 *               dataset's mean colour (a fixed pivot: no per-image statistics)
 *   saturation  gray + s·(rgb - gray), s ∈ [1-x, 1+x], gray = Rec.601 luma
 *   hue         a rotation of the colour by 2π·h about the gray axis,
 *               h ∈ [-x, x] turns (gray stays gray)
 * applied in this order. erase: up to `count` rectangles, each with
 * probability p, of area ∈ `area` × the image and aspect (w/h) log-uniform in
 * `aspect`, set to the dataset's mean colour (0 in the normalized space),
 * after the colour map. Pixels sampled from outside the source image are the
 * mean colour too (before the colour map).
 *
 * Determinism: a sample's parameters are drawn from its own stream
 * rng_seed_stream(seed ^ salt, epoch << 32 ^ sample index) (store/rng.h), in
 * a fixed order whatever kinds are enabled, so a resumed run draws exactly
 * what the uninterrupted one did. The resident dataset is never written;
 * eval, debug, infer and the train stage's validation never augment.
 *
 * Camera: the dataset's camera_intrinsics per sample (checked to be a
 * pinhole matrix before training: augment_check_intrinsics); without them
 * the focal length is taken to be the image width and the principal point the
 * image centre, and the job record says so (augment_plan_to_json). */
#ifndef TRAIND_AUGMENT_H
#define TRAIND_AUGMENT_H

#include <stddef.h>
#include <stdint.h>
#include "gpu/augment_math.h"
#include "gpu/backend.h"
#include "gpu/dataset.h"
#include "gpu/jobspec.h"

/* The drawn values of one sample (for tests and logs; the record holds the matrices). */
typedef struct {
    double rotate_deg, tilt_deg, pan_deg, zoom;
    int flip;
    double brightness, contrast, saturation, hue;   /* factors b, c, s; hue in turns */
} augment_draw_t;

/* 1 when the spec has a kind that moves pixels (rotate, shift, flip, zoom). */
int augment_is_geometric(const augment_spec_t *a);

/* Draws sample `sample`'s augmentation for `epoch` into *out (H×W images,
 * normalized with mean, used for the contrast pivot); *drawn (may be NULL)
 * gets the values. Deterministic in (a, seed, epoch, sample, H, W, mean). */
void augment_draw(const augment_spec_t *a, uint64_t seed, long epoch, int64_t sample, int H, int W,
                  const float mean[3], aug_sample_t *out, augment_draw_t *drawn);

/* Checks that the camera_intrinsics of samples [begin, end) (when the dataset
 * has them) are pinhole matrices [[fx,s,cx],[0,fy,cy],[0,0,w]] with fx, fy,
 * w > 0 and finite, downloading them in bounded chunks. 0, or -1 with err
 * naming the first bad sample. */
int augment_check_intrinsics(backend_t *be, const dataset_t *ds, int64_t begin, int64_t end, char *err,
                             size_t errlen);

#endif
