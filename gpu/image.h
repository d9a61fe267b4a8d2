/* gpu/image.h — resizing one u8 HWC RGB image on the host (inline infer
 * images of any size are brought to the dataset's h x w; SPEC §4 infer).
 *
 * The filter is a separable triangle: bilinear when upscaling, and when
 * downscaling a triangle whose support widens by the scale factor (an
 * anti-aliasing box-ish average), weights normalized per output pixel — the
 * filter family of PIL's BILINEAR and torchvision's antialias=True. Output
 * pixel i samples around source coordinate (i+0.5)*scale-0.5, scale = in/out,
 * where source pixel j has its centre at j. Rounded to nearest, clamped to
 * 0..255. See gpu/image.c.
 */
#ifndef TRAIND_IMAGE_H
#define TRAIND_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define IMAGE_MAX_SIDE 65536   /* a sanity bound on any side (jobspec allows 4096) */

/* src: u8 [sh][sw][3], dst: u8 [dh][dw][3] (must not overlap src).
 * Returns 0, or -1 with a message in err on bad sizes or allocation failure.
 * Equal sizes give an exact copy. */
int image_resize_u8(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh, int dw, char *err, size_t errlen);

/* The same resize for many images (the importer, gpu/import.c): a resizer
 * keeps its weight tables and row buffer while the geometry stays the same,
 * and reads the source with a row stride in bytes (>= sw*3), so a crop of a
 * larger image is resized in place. One resizer per thread. Output is
 * bit-identical to image_resize_u8 of the same pixels. */
typedef struct image_resizer image_resizer_t;
image_resizer_t *image_resizer_new(void);
void image_resizer_free(image_resizer_t *rz);
int image_resizer_run(image_resizer_t *rz, const uint8_t *src, int sh, int sw, size_t src_stride, uint8_t *dst,
                      int dh, int dw, char *err, size_t errlen);

#endif
