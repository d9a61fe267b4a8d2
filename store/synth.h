/* store/synth.h — the synthetic hand dataset (`traind synth`).
 *
 * Each sample is a random right hand: a 21-joint skeleton in MANO/DexYCB
 * order (0 wrist; thumb 1-4, index 5-8, middle 9-12, ring 13-16, little
 * 17-20; tips 4,8,12,16,20) with a random rotation (in-plane ±0.8 rad,
 * pitch/roll ±0.5 rad), size (±10%) and finger articulation, its centre at
 * z in [0.35,0.8] m with x/y spread, projected by pinhole intrinsics
 * fx = fy = 1.1*S, cx = cy = S/2. Each joint is drawn as a filled disc of its
 * own colour (synth_joint_color), of radius synth_joint_radius(S, z) =
 * 0.02*S/z pixels so that depth is learnable, far joints first (near ones
 * cover them), over a smooth random background with mild noise. About 5% of the samples have no hand
 * (has_hand = 0: no discs; joints written but masked) and about 3% of the
 * joints of the others are marked invalid (still drawn).
 *
 * Sample i depends only on (seed, i, S): generation is deterministic and any
 * range of samples can be produced independently. Own PRNG (splitmix64 +
 * xoshiro256**), never rand().
 */
#ifndef TRAIND_SYNTH_H
#define TRAIND_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#define SYNTH_MIN_SIZE 14
#define SYNTH_MAX_SIZE 4096

/* Colour of joint j (0..20): distinct, saturated, far from the background. */
void synth_joint_color(int j, uint8_t rgb[3]);
/* Disc radius in pixels for a joint at depth z metres in an S×S image. */
float synth_joint_radius(int image_size, float z);

/* Generate samples [first, first+count) into host arrays (each may be NULL
 * when not wanted): img u8 [count,S,S,3], joints f32
 * [count,21,3], valid u8 [count,21], has_hand u8 [count], K f32 [count,3,3]. */
void synth_samples(uint64_t seed, int image_size, int64_t first, int64_t count,
                   uint8_t *img, float *joints, uint8_t *valid, uint8_t *has_hand, float *K);

/* A different camera view of the same samples (for domain-shift tests): each
 * sample's hand is turned by a camera roll about the optical axis, uniform in
 * roll_deg [lo, hi] degrees, and mirrored (x -> -x: a left hand) with
 * probability mirror, before it is drawn; the labels are the turned joints.
 * The view is drawn from a stream of its own, so sample i is otherwise the
 * hand synth_samples makes (same pose, background, masks). view NULL: as
 * synth_samples. */
typedef struct {
    float roll_deg[2];
    float mirror;
} synth_view_t;
void synth_samples_view(uint64_t seed, int image_size, int64_t first, int64_t count, const synth_view_t *view,
                        uint8_t *img, float *joints, uint8_t *valid, uint8_t *has_hand, float *K);

/* Write a dataset directory (created when missing; existing shard files of the
 * same names are replaced): shards "shard-00000.safetensors", ... of
 * shard_samples samples each (<= 0: a default bounded to ~64 MB per shard),
 * fields image U8, hand_joints, hand_joints_valid, has_hand,
 * camera_intrinsics, mean/std metadata (ImageNet's). *cancel (may be NULL)
 * is polled before each shard: SYNTH_CANCELLED. 0, or -1 with err (every
 * message begins with "synth: "). */
#define SYNTH_CANCELLED (-2)
int synth_generate(const char *outdir, int64_t samples, int image_size, uint64_t seed,
                   int shard_samples, const volatile int *cancel, char *err, size_t errlen);

/* `traind synth --out DIR --samples N --image-size S --seed K [--shard-samples M]`
 * argv[0] is "synth". Exit code: 0 ok, 2 usage error, 1 failure. */
int synth_main(int argc, char **argv);

#endif
