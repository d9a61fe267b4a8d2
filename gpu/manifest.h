/* gpu/manifest.h — what an import reads: the frames of a manifest (SPEC §6).
 *
 * JSON Lines, one frame a line:
 *   {"image":"rgb/000001.jpg", "joints_3d":[[x,y,z],…21], "K":[[fx,0,cx],[0,fy,cy],[0,0,1]],
 *    "joints_valid":[1,…21], "has_hand":true, "hand_side":"right"}
 * image: a path relative to the manifest's directory, or absolute; joints_3d:
 * 21 [x,y,z] in the camera frame (OpenCV axes; metres unless the defaults
 * say "mm"), required unless has_hand is false; K: the 3x3 intrinsics of that
 * image (may be shared); joints_valid: 21 of 0/1 or booleans (default all
 * valid); has_hand: boolean or 0/1 (default true); hand_side: "left" or
 * "right" (counted, not stored: the dataset format has no field for it).
 * A first line without "image" holds defaults: {"units":"m"|"mm", "K":[[…]]}.
 * Blank lines are ignored; unknown fields are errors (a misspelt field must
 * not silently drop a label).
 *
 * K convention (kept by the importer and the synthetic renderer): projecting
 * a point gives continuous pixel coordinates in which pixel (x, y) covers
 * [x, x+1) x [y, y+1) — pixel centres at integer + 0.5.
 *
 * Also accepted as a manifest: the FreiHAND layout — a directory holding
 * training_xyz.json and training_K.json (or the path of training_xyz.json;
 * evaluation_xyz.json likewise), images <set>/rgb/%08d.jpg or rgb/%08d.jpg;
 * when the image folder holds k*N images (FreiHAND's 4 versions of each of
 * its N labelled samples), frame i*... uses the labels of i mod N.
 *
 * Errors: a problem of one frame (malformed line, wrong joint count,
 * non-finite or out-of-range number, singular K, unknown field) is recorded
 * on that frame (mf_frame_t.error, naming the manifest and the line) so the
 * importer can fail or skip it; a problem of the whole manifest (unreadable,
 * bad defaults line, no frames, FreiHAND files that disagree) fails the load.
 */
#ifndef TRAIND_MANIFEST_H
#define TRAIND_MANIFEST_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include "store/hand.h"

#define MF_MAX_BYTES ((size_t)1 << 30)   /* a manifest file (and each FreiHAND JSON file) */
#define MF_MAX_FRAMES 100000000L

enum { MF_SIDE_UNKNOWN = 0, MF_SIDE_LEFT = 1, MF_SIDE_RIGHT = 2 };

typedef struct {
    char *image;                      /* manifest dir joined with a relative path, or the absolute path */
    long line;                        /* manifest line, 1-based (FreiHAND: the image index) */
    float joints[HAND_JOINTS][3];     /* metres */
    float K[9];                       /* row-major, of the image as given */
    uint8_t valid[HAND_JOINTS];
    uint8_t has_hand;
    uint8_t side;                     /* MF_SIDE_* */
    char *error;                      /* not NULL: this frame cannot be imported, and why */
} mf_frame_t;

typedef struct {
    char path[PATH_MAX];              /* the manifest file (FreiHAND: its *_xyz.json) */
    char dir[PATH_MAX];               /* base of relative image paths */
    int freihand;
    char sha256[65];                  /* of the content that defines the frames */
    size_t n;
    mf_frame_t *frames;
    size_t n_errors;                  /* frames with an error */
} manifest_t;

/* Files are read by the caller (gpu/import.c opens them beneath the dataset
 * roots); these parse buffers. Both return 0, or -1 with err for a problem of
 * the whole manifest; manifest_free after either. m->path, m->dir and
 * m->sha256 are the caller's to fill. */

/* JSON Lines: name is used in messages, dir for relative image paths; the
 * frame lines of a large manifest are parsed by up to `threads` threads. */
int manifest_parse(const char *text, size_t len, const char *name, const char *dir, int threads, manifest_t *m,
                   char *err, size_t errlen);
/* FreiHAND: xyz = <set>_xyz.json (N x 21 x 3, metres), K = <set>_K.json
 * (N x 3 x 3); image_fmt: a printf format with one %08ld for the image index
 * (e.g. "/data/FreiHAND/training/rgb/%08ld.jpg"). exists(ud, index) (may be
 * NULL) says whether an image index exists: while image v*N does (v <
 * MF_MAX_VERSIONS), frames v*N+i are added with the labels of sample i. The
 * samples are parsed element by element by up to `threads` threads; threads <= 1
 * parses each file whole on this thread (the reference: the same frames and
 * messages). */
#define MF_MAX_VERSIONS 16
int manifest_parse_freihand(const char *xyz, size_t xyz_len, const char *K, size_t K_len, const char *name,
                            const char *image_fmt, int (*exists)(void *ud, long index), void *ud, int threads,
                            manifest_t *m, char *err, size_t errlen);
void manifest_free(manifest_t *m);

/* Checks a 3x3 K (finite, not singular): 0, or -1 with why. */
int manifest_check_K(const double K[9], char *why, size_t len);

#endif
