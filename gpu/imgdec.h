/* gpu/imgdec.h — decoding one JPEG or PNG file (in memory) to u8 RGB for the
 * importer (gpu/import.c).
 *
 * JPEG: libjpeg-turbo's TurboJPEG API, decoded at the smallest DCT scaling
 * factor num/8 (num = 1..8) whose output is still at least `need` pixels on
 * both sides (640x480 for 224 -> 1/2, 320x240), so most of the downscale
 * costs nothing; grayscale is expanded to RGB; CMYK/YCCK is decoded as CMYK
 * and converted naively (R = (255-C)(255-K)/255, with Adobe's inverted
 * storage when the file has an APP14 "Adobe" marker, as PIL does); the EXIF
 * orientation tag (APP1) is applied to the pixels. Any libjpeg warning
 * (truncated data, corrupt entropy data) is an error: a frame is either
 * decoded completely or refused.
 * PNG: libpng's simplified API, any bit depth and colour type (palette,
 * grayscale, 16-bit: sRGB-encoded unless the file says otherwise, as PIL
 * reads it); the alpha channel is dropped (the stored colours are kept, as
 * PIL's convert("RGB") does); no scaling.
 *
 * Geometry: the result is the image AS DISPLAYED (orientation applied)
 * scaled by exactly scale_num/scale_den: output pixel (x, y) covers the
 * displayed source's [x, x+1)*den/num x [y, y+1)*den/num. Its size is
 * ceil(W*num/den) x ceil(H*num/den), so the last row/column may reach past
 * the source's edge (libjpeg pads the last block); callers map coordinates
 * by the exact factor, never by out_w/W.
 */
#ifndef TRAIND_IMGDEC_H
#define TRAIND_IMGDEC_H

#include <stddef.h>
#include <stdint.h>

#define IMGDEC_MAX_PIXELS (100LL * 1000 * 1000)   /* default bound on W*H of a source image */

typedef struct imgdec imgdec_t;   /* per-thread decoder state and buffers */

typedef struct {
    const uint8_t *rgb;      /* [h][w][3], owned by the decoder: valid until its next decode */
    int w, h;                /* decoded size (scaled, oriented) */
    int src_w, src_h;        /* displayed size at full resolution (orientation applied) */
    int scale_num, scale_den;
    int orientation;         /* EXIF 1..8 that was applied (1: none) */
    const char *format;      /* "jpeg" | "png" */
} imgdec_out_t;

imgdec_t *imgdec_new(void);
void imgdec_free(imgdec_t *d);
/* Bound on source pixels (W*H); 0 restores IMGDEC_MAX_PIXELS. */
void imgdec_set_max_pixels(imgdec_t *d, long long max_pixels);

/* Decodes buf (a whole file). need: the smallest side the caller will
 * resize from (scaling never goes below it; <= 0: no scaling). min_side:
 * the smallest acceptable displayed width/height (refused before decoding).
 * 0 with *out filled, or -1 with a message (without the file name). */
int imgdec_decode(imgdec_t *d, const uint8_t *buf, size_t len, int need, int min_side, imgdec_out_t *out,
                  char *err, size_t errlen);

/* The EXIF orientation and Adobe marker of a JPEG's header segments (for
 * tests and the fuzzer): walks the markers up to SOS. 0 or -1 when buf is
 * not a JPEG; *orientation is 1 when absent or invalid. */
int imgdec_jpeg_markers(const uint8_t *buf, size_t len, int *orientation, int *adobe);

/* A file the GPU decoder (gpu/jpeg_gpu.h) takes as it is: a baseline JPEG
 * (SOF0, 8-bit) of 3 YCbCr components sampled 4:4:4, 4:2:2, 4:2:0 or
 * 4:4:0, in one interleaved scan, EOI its last two bytes, without an EXIF
 * orientation other than 1 or an Adobe marker. 1 with its size in *w, *h;
 * 0 when not (the CPU decodes it, and names what is wrong with it). */
int imgdec_jpeg_plain(const uint8_t *buf, size_t len, int *w, int *h);

#endif
