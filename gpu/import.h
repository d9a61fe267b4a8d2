/* gpu/import.h — importing JPEG/PNG frames with their 3D hand labels into a
 * dataset directory of shards (store/dataset.h), once (SPEC §6).
 *
 * Pipeline: read the manifest (gpu/manifest.h) -> open and fstat every image
 * beneath the dataset roots (import_open) -> cache key -> on all cores:
 * read the file, decode (gpu/imgdec.h: DCT-domain scaling for JPEG),
 * `stretch` (the whole image) or `crop` (its centre square), resize to S x S
 * with the anti-aliased filter of inline infer images (gpu/image.h), adjust
 * K -> shards of U8 [N,S,S,3] images, hand_joints, hand_joints_valid,
 * has_hand, camera_intrinsics (fp32) written into a temporary directory that
 * is fsynced and renamed into place, with import.json describing the result.
 * A sink (import_opts_t) may take each shard's frames as soon as it is
 * written: the daemon puts them on the devices then (fail mode, replicated).
 * A GPU decoder (opts.gpu, gpu/jpeg_gpu.h) adds gpu->threads pool threads
 * that take batches of consecutive frames within a shard and hand the plain
 * JPEGs among them (imgdec_jpeg_plain) to it, decoding the rest — and any
 * frame it refuses — on the CPU as the other threads do: same slots, same
 * shards, same errors; a frame it decoded was resized from its full size
 * (K' below with s = 1).
 * Nothing half-written survives a failure, a cancel or a crash (a crash
 * leaves only a ".<key>.tmp.*" directory, which the daemon sweeps at start).
 *
 * Intrinsics: K maps camera-frame points to continuous pixel coordinates in
 * which pixel (x, y) covers [x, x+1) x [y, y+1) (centres at +0.5, as the
 * synthetic renderer draws). Decoding at DCT factor s, taking the region
 * (x0, y0, rw, rh) of the decoded image and resizing it to S x S maps
 * u -> (s*u - x0) * S/rw and v -> (s*v - y0) * S/rh, so the stored
 * K' = A K with A = [[s*S/rw, 0, -x0*S/rw], [0, s*S/rh, -y0*S/rh], [0, 0, 1]]:
 * the stored joints projected with the stored K land on the stored image.
 * The manifest's K and joints describe the image as displayed (EXIF
 * orientation applied, as browsers and cv2.imread show it).
 *
 * Cache key: SHA-256 of the format version, S, the resize and on_error
 * modes, the manifest's content hash, and every frame's image path, size
 * and mtime (nanoseconds): an edited manifest, a replaced image or another
 * size is a new import; the same manifest under another name, or after a
 * restart, is a cache hit. A file that changes between the key and its
 * decoding is an error ("changed during the import").
 */
#ifndef TRAIND_IMPORT_H
#define TRAIND_IMPORT_H

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>

#include "gpu/jpeg_gpu.h"

#define IMPORT_FORMAT_VERSION 1
#define IMPORT_MIN_SIDE 14                       /* a frame smaller than one patch is refused */
#define IMPORT_MAX_SIZE 4096                     /* image_size bounds: 14..4096 */
#define IMPORT_MAX_FILE_BYTES ((int64_t)256 << 20)
#define IMPORT_MAX_REASONS 5                     /* skipped frames' reasons kept (the first by frame order) */
#define IMPORT_CANCELLED (-2)
#define IMPORT_FORBIDDEN (-3)                    /* a path outside the dataset roots */
#define IMPORT_GPU_MIN_SLOTS 6                   /* shard slots at least, with a GPU decoder (~64 MB each) */

typedef struct {
    const char *phase;       /* "checking" (manifest, files, key) | "decoding" */
    int64_t frames;          /* frames in the manifest */
    int64_t done;            /* decoded or refused so far */
    int64_t skipped;
    double images_per_s;     /* decoding rate so far */
} import_progress_t;

typedef void (*import_progress_fn)(void *ud, const import_progress_t *p);
/* Called once the frame count is known and nothing was decoded yet (e.g. to
 * check that the dataset will fit): 0 to go on, or -1 with msg. */
typedef int (*import_admit_fn)(void *ud, int64_t frames, int image_size, char *msg, size_t msglen);

/* One written shard's frames, in frame order (the shard's arrays; valid is
 * writable). */
typedef struct {
    int64_t n;
    int image_size;
    const uint8_t *images;           /* [n][S][S][3] */
    float *joints;                   /* [n][21][3] */
    uint8_t *valid;                  /* [n][21] */
    const uint8_t *has_hand;         /* [n] */
    const float *intrinsics;         /* [n][3][3], adjusted to the image */
} import_rows_t;
/* Called once a shard of a decoding import is written, with its frames, first
 * = the index of its first frame among all (fail mode: frame k*M + j is row
 * k*M + j; not called with `skip`, where rows move by the frames skipped
 * before). From a pool thread, for different shards at once and in no fixed
 * order: the callee serializes. 0 to go on, -1 with msg to fail the import. */
typedef int (*import_sink_fn)(void *ud, int64_t first, const import_rows_t *rows, char *msg, size_t msglen);

typedef struct {
    int image_size;                  /* S: 14..4096 */
    int crop;                        /* 0: stretch, 1: centre square then resize */
    int skip;                        /* on_error: 0 fail with the first bad frame, 1 skip bad frames */
    const char *const *roots;        /* every file must resolve beneath one of these; NULL/0: unconfined */
    int n_roots;
    int threads;                     /* 0: the CPUs this process may run on */
    long long max_pixels;            /* per source image; 0: IMGDEC_MAX_PIXELS */
    const volatile int *cancel;      /* polled per frame: IMPORT_CANCELLED */
    import_progress_fn progress;     /* may be NULL; called from the calling thread, ~5 times a second */
    import_admit_fn admit;           /* may be NULL */
    import_sink_fn sink;             /* may be NULL; ignored with skip */
    int64_t shard_frames;            /* frames per shard; 0: as many as fill 64 MB */
    jpeg_gpu_t *gpu;                 /* may be NULL; else gpu->threads more pool threads hand it batches of
                                      * plain JPEGs (imgdec_jpeg_plain), the other frames decoded on the CPU */
    int pinned_slots;                /* with gpu: the shard slots from gpu->host_alloc (pinned), its frames
                                      * copied back straight into them; 0: malloc'd slots (the daemon pins
                                      * them at its start unless TRAIND_IMPORT_PINNED=0; `traind import`
                                      * only with TRAIND_IMPORT_PINNED=1) */
    void *ud;
} import_opts_t;

typedef struct {
    char key[65];
    char dir[PATH_MAX];              /* the shard directory */
    int cache_hit;
    int listed;                      /* a hit found from the entry's frames.list, the manifest not parsed */
    int64_t frames, imported, skipped;
    int n_reasons;
    char reasons[IMPORT_MAX_REASONS][512];
    int64_t left, right;             /* hand_side counts of the imported frames */
    double seconds, images_per_s;    /* of the decoding (the original import's on a cache hit) */
    double prepare_s;                /* before the decoding: manifest, stat pass, key, cache lookup */
    double prepare_parts[3];         /* of it: the manifest (read, parsed, hashed), the stat pass, the rest
                                      * (key, cache lookup, shard slots, the temporary directory); for the log */
    double manifest_parts[3];        /* of the manifest's: reading it, parsing it, and hashing it (threads of
                                      * their own beside the parse, so not added); 0 for a hit found from the
                                      * frames' list */
    char decoder[64];                /* "cpu", or the GPU decoder's name (gpu_frames of the frames) */
    int64_t gpu_frames;
    double feed_s[3];                /* the GPU feeding threads' seconds, summed: reading the files, in the
                                      * decoder's calls, the rest (relabelling, CPU fallbacks, shard writes);
                                      * for the log, not recorded */
    double decoder_s[3];             /* of "in the decoder": jpeg_gpu_t.spent's three, this import's */
} import_result_t;

/* Is the resolved path rp one of the roots or beneath one? */
int import_path_under(const char *rp, const char *const *roots, int n_roots);

/* Resolves path (realpath) and checks it lies beneath a root (when roots are
 * given): 0 with resolved and *st (stat of the result); IMPORT_FORBIDDEN
 * with the same message whether or not it exists; -1 (e.g. a missing file
 * under a root) with err. */
int import_resolve(const char *path, const char *const *roots, int n_roots, char *resolved, size_t len,
                   struct stat *st, char *err, size_t errlen);

/* Every file an import reads is opened here: import_resolve, then
 * open(O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC) of the resolved path and an
 * fstat check that it is a regular file. An fd (>= 0) with *st, or
 * IMPORT_FORBIDDEN / -1 with err. (To become store/fsutil's RESOLVE_BENEATH
 * opener once it exists.) */
int import_open(const char *path, const char *const *roots, int n_roots, struct stat *st, char *err, size_t errlen);

/* The daemon's import: into cache_root/<key>/, or reusing it when present.
 * 0 with *res, IMPORT_CANCELLED, IMPORT_FORBIDDEN or -1 with err. */
int import_cached(const char *manifest, const char *cache_root, const import_opts_t *o, import_result_t *res,
                  char *err, size_t errlen);
/* `traind import`: into outdir (replaced atomically when it exists). */
int import_to_dir(const char *manifest, const char *outdir, const import_opts_t *o, import_result_t *res,
                  char *err, size_t errlen);

/* Has gpu's host_alloc pin the shard slots an import will ask for
 * (IMPORT_GPU_MIN_SLOTS of at most 64 MB) and keep them in its pool, so that
 * the first import does not pay the pinning (not yet timed on a card): called once
 * the decoder is open. How many it holds now (0: none, or no pool). */
int import_gpu_reserve(jpeg_gpu_t *gpu);

/* The result as JSON (import.json, the dataset record's "import"). */
json_t *import_result_json(const import_result_t *r);
/* Reads import.json of a shard directory back into *res. 0 or -1 with err. */
int import_read_result(const char *dir, import_result_t *res, char *err, size_t errlen);
/* Removes ".*.tmp.*" directories a crash left in cache_root; returns how many. */
int import_sweep_tmp(const char *cache_root);

/* `traind import --manifest FILE --out DIR --image-size S [--resize stretch|crop]
 *  [--on-error fail|skip] [--threads N] [--dataset-root DIR]...`; argv[0] is "import". */
int import_main(int argc, char **argv);

#endif
