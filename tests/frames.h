/* tests/frames.h — camera frames for the import tests and benchmarks: the
 * synthetic renderer's hands (store/synth.h) at any W x H with a known K,
 * written as JPEG (TurboJPEG: RGB, grayscale, CMYK, with an EXIF
 * orientation) or PNG (libpng: RGB, gray, RGBA, 16-bit), and a manifest
 * line for each. Header-only (static functions), like tests/tap.h; used by
 * tests/unit/test_import.c and tests/tools/mkframes.c.
 *
 * A W x H frame is the centre W x H of the renderer's S x S image,
 * S = max(W, H): K = [[1.1 S, 0, S/2 - x0], [0, 1.1 S, S/2 - y0], [0, 0, 1]]
 * with x0 = (S - W) / 2, y0 = (S - H) / 2 — the renderer's own K, shifted.
 */
#ifndef TRAIND_TESTS_FRAMES_H
#define TRAIND_TESTS_FRAMES_H

#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "store/hand.h"
#include "store/synth.h"

typedef struct {
    int w, h;
    uint8_t *rgb;                    /* [h][w][3] */
    float joints[HAND_JOINTS][3];
    uint8_t valid[HAND_JOINTS];
    uint8_t has_hand;
    float K[9];
} frame_t;

/* Renders sample i of seed into f (f->rgb malloc'd; frame_free). 0 or -1. */
__attribute__((unused)) static int frame_render(uint64_t seed, int64_t i, int w, int h, frame_t *f) {
    int S = w > h ? w : h, x0 = (S - w) / 2, y0 = (S - h) / 2;
    uint8_t *full = malloc((size_t)S * S * 3);
    f->rgb = malloc((size_t)w * h * 3);
    if (!full || !f->rgb) {
        free(full);
        free(f->rgb);
        return -1;
    }
    f->w = w;
    f->h = h;
    synth_samples(seed, S, i, 1, full, &f->joints[0][0], f->valid, &f->has_hand, f->K);
    for (int y = 0; y < h; y++) memcpy(f->rgb + (size_t)y * w * 3, full + ((size_t)(y + y0) * S + x0) * 3, (size_t)w * 3);
    f->K[2] -= (float)x0;
    f->K[5] -= (float)y0;
    free(full);
    return 0;
}

__attribute__((unused)) static void frame_free(frame_t *f) {
    free(f->rgb);
    f->rgb = NULL;
}

/* ---- JPEG (TurboJPEG) ------------------------------------------------------------ */
/* pf: TJPF_RGB, TJPF_GRAY (pixels [h][w]) or TJPF_CMYK ([h][w][4]); *out is
 * tjAlloc'd (tjFree). 0 or -1. */
__attribute__((unused)) static int frames_jpeg(const uint8_t *px, int w, int h, int pf, int quality, uint8_t **out,
                                               size_t *len) {
    tjhandle tj = tjInitCompress();
    if (!tj) return -1;
    unsigned char *buf = NULL;
    unsigned long n = 0;
    int samp = pf == TJPF_GRAY ? TJSAMP_GRAY : TJSAMP_420;
    int r = tjCompress2(tj, px, w, 0, h, pf, &buf, &n, samp, quality, 0);
    tjDestroy(tj);
    if (r) {
        tjFree(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* A copy of a JPEG with an APP1 Exif segment carrying orientation o right
 * after SOI (big-endian TIFF, IFD0 with the one tag). malloc'd. */
__attribute__((unused)) static uint8_t *frames_jpeg_exif(const uint8_t *jpg, size_t len, int o, size_t *outlen) {
    static const uint8_t tmpl[] = {
        0xFF, 0xE1, 0x00, 0x22,                          /* APP1, length 34 */
        'E', 'x', 'i', 'f', 0, 0,                        /* Exif header */
        'M', 'M', 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08,    /* TIFF: big-endian, IFD0 at 8 */
        0x00, 0x01,                                      /* 1 entry */
        0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01,  /* Orientation, SHORT, count 1 */
        0x00, 0x01, 0x00, 0x00,                          /* value (patched) */
        0x00, 0x00, 0x00, 0x00};                         /* next IFD: none */
    uint8_t *o2 = malloc(len + sizeof tmpl);
    if (!o2) return NULL;
    memcpy(o2, jpg, 2);
    memcpy(o2 + 2, tmpl, sizeof tmpl);
    o2[2 + 28] = 0;
    o2[2 + 29] = (uint8_t)o;
    memcpy(o2 + 2 + sizeof tmpl, jpg + 2, len - 2);
    *outlen = len + sizeof tmpl;
    return o2;
}

/* ---- PNG (libpng's write API) --------------------------------------------------------- */
typedef struct { uint8_t *p; size_t n, cap; } frames_membuf_t;
static void frames_png_write_fn(png_structp png, png_bytep data, size_t n) {
    frames_membuf_t *b = png_get_io_ptr(png);
    if (b->n + n > b->cap) {
        size_t nc = (b->n + n) * 2;
        uint8_t *q = realloc(b->p, nc);
        if (!q) png_error(png, "out of memory");
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}
static void frames_png_flush_fn(png_structp png) { (void)png; }

/* color_type: PNG_COLOR_TYPE_RGB / _GRAY / _RGB_ALPHA / _GRAY_ALPHA; depth 8
 * or 16 (16-bit samples big-endian in px, as PNG stores them). No gAMA/sRGB
 * chunk. *out malloc'd. 0 or -1. */
__attribute__((unused)) static int frames_png(const uint8_t *px, int w, int h, int color_type, int depth,
                                              uint8_t **out, size_t *len) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    frames_membuf_t b = {0};
    png_bytep *rows = NULL;
    if (!png || !info) goto fail;
    if (setjmp(png_jmpbuf(png))) goto fail;
    int ch = color_type == PNG_COLOR_TYPE_RGB ? 3 : color_type == PNG_COLOR_TYPE_RGB_ALPHA ? 4
             : color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    png_set_write_fn(png, &b, frames_png_write_fn, frames_png_flush_fn);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 1);
    rows = malloc((size_t)h * sizeof *rows);
    if (!rows) goto fail;
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)px + (size_t)y * w * ch * (depth / 8);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    *out = b.p;
    *len = b.n;
    return 0;
fail:
    png_destroy_write_struct(&png, &info);
    free(rows);
    free(b.p);
    return -1;
}

/* ---- files and manifest lines ----------------------------------------------------------- */
__attribute__((unused)) static int frames_write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* One manifest line (no newline) for f with the given image path into buf; K
 * may be NULL to leave it to a shared K. Numbers with 9 significant digits:
 * fp32 values survive the round trip exactly. Returns the length. */
__attribute__((unused)) static int frames_manifest_line(char *buf, size_t len, const char *image, const frame_t *f,
                                                        const float *K) {
    size_t o = (size_t)snprintf(buf, len, "{\"image\":\"%s\",\"has_hand\":%s,\"joints_3d\":[", image,
                                f->has_hand ? "true" : "false");
    for (int j = 0; j < HAND_JOINTS && o < len; j++)
        o += (size_t)snprintf(buf + o, len - o, "%s[%.9g,%.9g,%.9g]", j ? "," : "", (double)f->joints[j][0],
                              (double)f->joints[j][1], (double)f->joints[j][2]);
    if (o < len) o += (size_t)snprintf(buf + o, len - o, "],\"joints_valid\":[");
    for (int j = 0; j < HAND_JOINTS && o < len; j++) o += (size_t)snprintf(buf + o, len - o, "%s%d", j ? "," : "", f->valid[j]);
    if (o < len) o += (size_t)snprintf(buf + o, len - o, "]");
    if (K && o < len)
        o += (size_t)snprintf(buf + o, len - o, ",\"K\":[[%.9g,%.9g,%.9g],[%.9g,%.9g,%.9g],[%.9g,%.9g,%.9g]]",
                              (double)K[0], (double)K[1], (double)K[2], (double)K[3], (double)K[4], (double)K[5],
                              (double)K[6], (double)K[7], (double)K[8]);
    if (o < len) o += (size_t)snprintf(buf + o, len - o, "}");
    return (int)o;
}

#endif
