/* gpu/imgdec.c — JPEG (TurboJPEG) and PNG (libpng) decoding for the importer;
 * see gpu/imgdec.h for what comes out and the geometry.
 *
 * Owns: the per-thread TurboJPEG handle and buffers, the choice of the DCT
 * scaling factor, CMYK -> RGB, the EXIF orientation (the JPEG header
 * segments are walked here: TurboJPEG 2.1 exposes neither APP1 nor APP14,
 * and the one 16-bit tag needed does not warrant a second library), and
 * PNG through libpng's simplified read API.
 */
#define _GNU_SOURCE   /* memmem */
#include "gpu/imgdec.h"
#include "store/errbuf.h"

#include <assert.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

struct imgdec {
    tjhandle tj;
    uint8_t *buf, *buf2;        /* decode target; orientation target */
    size_t cap, cap2;
    long long max_pixels;
};

imgdec_t *imgdec_new(void) {
    imgdec_t *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->tj = tjInitDecompress();
    if (!d->tj) {
        free(d);
        return NULL;
    }
    d->max_pixels = IMGDEC_MAX_PIXELS;
    return d;
}

void imgdec_free(imgdec_t *d) {
    if (!d) return;
    tjDestroy(d->tj);
    free(d->buf);
    free(d->buf2);
    free(d);
}

void imgdec_set_max_pixels(imgdec_t *d, long long max_pixels) {
    d->max_pixels = max_pixels > 0 ? max_pixels : IMGDEC_MAX_PIXELS;
}

static int imgdec_reserve(uint8_t **p, size_t *cap, size_t n) {
    if (n <= *cap) return 0;
    uint8_t *q = realloc(*p, n);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* ---- JPEG header segments: EXIF orientation, Adobe marker ---------------------- */
static unsigned rd16(const uint8_t *p, int le) { return le ? p[0] | (unsigned)p[1] << 8 : (unsigned)p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p, int le) {
    return le ? p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Orientation (tag 0x0112, SHORT) in IFD0 of a TIFF structure; 1 when absent or invalid. */
static int exif_orientation(const uint8_t *t, size_t n) {
    if (n < 8) return 1;
    int le;
    if (t[0] == 'I' && t[1] == 'I') le = 1;
    else if (t[0] == 'M' && t[1] == 'M') le = 0;
    else return 1;
    if (rd16(t + 2, le) != 42) return 1;
    uint32_t off = rd32(t + 4, le);
    if (off > n || n - off < 2) return 1;
    unsigned count = rd16(t + off, le);
    for (unsigned i = 0; i < count; i++) {
        size_t e = (size_t)off + 2 + (size_t)i * 12;
        if (e > n || n - e < 12) return 1;
        if (rd16(t + e, le) != 0x0112) continue;
        if (rd16(t + e + 2, le) != 3 || rd32(t + e + 4, le) != 1) return 1;   /* SHORT, count 1 */
        unsigned v = rd16(t + e + 8, le);
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

/* The header segments up to the first SOS: EXIF orientation, Adobe marker,
 * the frame header (SOF) and the first scan's component count. */
typedef struct {
    int orientation, adobe;
    int sof;                  /* the first SOF marker (0xC0: baseline), -1 none */
    int precision, w, h, ncomp;
    uint8_t id[4], hv[4];     /* component ids and sampling factors (H << 4 | V) */
    int scan_ncomp;           /* components of the first scan, 0 when none was reached */
    int dri;                  /* restart interval in MCUs (DRI before the scan), 0 none */
    size_t scan_data;         /* offset of the first scan's entropy-coded data */
} jpeg_hdr_t;

static int jpeg_walk(const uint8_t *buf, size_t len, jpeg_hdr_t *j) {
    memset(j, 0, sizeof *j);
    j->orientation = 1;
    j->sof = -1;
    if (len < 4 || buf[0] != 0xFF || buf[1] != 0xD8) return -1;
    int have_exif = 0;
    size_t p = 2;
    while (p + 4 <= len) {
        if (buf[p] != 0xFF) break;                     /* not a marker: stop looking */
        uint8_t m = buf[p + 1];
        if (m == 0xFF) { p++; continue; }              /* fill byte */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) { p += 2; continue; }   /* standalone markers */
        if (m == 0xD9) break;                          /* end of image */
        size_t seg = rd16(buf + p + 2, 0);
        if (seg < 2 || seg > len - p - 2) break;
        const uint8_t *pl = buf + p + 4;
        size_t pn = seg - 2;
        if (m == 0xDA) {                               /* start of scan: the header ends here */
            if (pn >= 1) j->scan_ncomp = pl[0];
            j->scan_data = p + 2 + seg;
            break;
        }
        if (m == 0xE1 && !have_exif && pn >= 6 && memcmp(pl, "Exif\0\0", 6) == 0) {
            j->orientation = exif_orientation(pl + 6, pn - 6);
            have_exif = 1;
        } else if (m == 0xEE && pn >= 5 && memcmp(pl, "Adobe", 5) == 0) {
            j->adobe = 1;
        } else if (m == 0xDD && pn >= 2) {
            j->dri = (int)rd16(pl, 0);
        } else if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC && j->sof < 0 && pn >= 6) {
            j->sof = m;
            j->precision = pl[0];
            j->h = (int)rd16(pl + 1, 0);
            j->w = (int)rd16(pl + 3, 0);
            j->ncomp = pl[5];
            for (int c = 0; c < j->ncomp && c < 4 && (size_t)(8 + 3 * c) < pn; c++) {
                j->id[c] = pl[6 + 3 * c];
                j->hv[c] = pl[7 + 3 * c];
            }
        }
        p += 2 + seg;
    }
    return 0;
}

int imgdec_jpeg_markers(const uint8_t *buf, size_t len, int *orientation, int *adobe) {
    jpeg_hdr_t j;
    int r = jpeg_walk(buf, len, &j);
    *orientation = j.orientation;
    *adobe = j.adobe;
    return r;
}

int imgdec_jpeg_plain(const uint8_t *buf, size_t len, int *w, int *h) {
    jpeg_hdr_t j;
    if (jpeg_walk(buf, len, &j) || j.sof != 0xC0 || j.precision != 8 || j.ncomp != 3 || j.scan_ncomp != 3 ||
        j.orientation != 1 || j.adobe || j.w < 1 || j.h < 1)
        return 0;
    if (j.id[0] == 'R' && j.id[1] == 'G' && j.id[2] == 'B') return 0;   /* libjpeg reads these as RGB */
    if (j.hv[1] != 0x11 || j.hv[2] != 0x11) return 0;
    if (j.hv[0] != 0x11 && j.hv[0] != 0x21 && j.hv[0] != 0x22 && j.hv[0] != 0x12) return 0;
    if (len < j.scan_data + 2 || buf[len - 2] != 0xFF || buf[len - 1] != 0xD9) return 0;   /* EOI last */
    /* The entropy-coded data up to the EOI holds stuffed bytes (FF 00) and, with a restart interval,
     * RST0..RST7 in turn, as many as the MCUs need — nothing else: another marker (a second scan, a
     * DNL, bytes overwritten) is not plain, and the CPU path, stricter than nvJPEG (which decodes
     * past corrupt data), names it. What no marker shows (wrong Huffman codes) nvJPEG may decode. */
    const int hmax = j.hv[0] >> 4, vmax = j.hv[0] & 15;
    const long long mcus = (long long)((j.w + 8 * hmax - 1) / (8 * hmax)) * ((j.h + 8 * vmax - 1) / (8 * vmax));
    long long rst = 0;
    const uint8_t *p = buf + j.scan_data, *end = buf + len - 2;
    while (p < end && (p = memchr(p, 0xFF, (size_t)(end - p))) != NULL) {
        if (++p >= end) return 0;
        uint8_t b = *p++;
        if (b == 0x00) continue;
        if (j.dri > 0 && b == 0xD0 + (rst & 7)) {
            rst++;
            continue;
        }
        return 0;
    }
    if (rst != (j.dri > 0 ? (mcus + j.dri - 1) / j.dri - 1 : 0)) return 0;
    *w = j.w;
    *h = j.h;
    return 1;
}

/* ---- orientation --------------------------------------------------------------- */
/* dst [dh][dw][3] = src [sh][sw][3] shown with EXIF orientation o (2..8). */
static void imgdec_orient(const uint8_t *src, int sw, int sh, uint8_t *dst, int o) {
    int swap = o >= 5, dw = swap ? sh : sw, dh = swap ? sw : sh;
    for (int y = 0; y < dh; y++) {
        uint8_t *d = dst + (size_t)y * dw * 3;
        for (int x = 0; x < dw; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = sw - 1 - x; sy = y; break;
            case 3: sx = sw - 1 - x; sy = sh - 1 - y; break;
            case 4: sx = x; sy = sh - 1 - y; break;
            case 5: sx = y; sy = x; break;                       /* transpose */
            case 6: sx = y; sy = sh - 1 - x; break;              /* rotate 90 clockwise */
            case 7: sx = sw - 1 - y; sy = sh - 1 - x; break;     /* transverse */
            default: sx = sw - 1 - y; sy = x; break;             /* 8: rotate 90 counter-clockwise */
            }
            const uint8_t *s = src + ((size_t)sy * sw + sx) * 3;
            d[x * 3] = s[0];
            d[x * 3 + 1] = s[1];
            d[x * 3 + 2] = s[2];
        }
    }
}

/* ---- JPEG ------------------------------------------------------------------------ */
static int imgdec_jpeg(imgdec_t *d, const uint8_t *buf, size_t len, int need, int min_side, imgdec_out_t *out,
                       char *err, size_t errlen) {
    int w, h, subsamp, cs;
    if (len > (size_t)0xffffffffu) return errbuf_set(err, errlen, "JPEG file too large");
    if (tjDecompressHeader3(d->tj, buf, (unsigned long)len, &w, &h, &subsamp, &cs) != 0)
        return errbuf_set(err, errlen, "corrupt JPEG header: %s", tjGetErrorStr2(d->tj));
    int orient, adobe;
    imgdec_jpeg_markers(buf, len, &orient, &adobe);
    int dw = orient >= 5 ? h : w, dh = orient >= 5 ? w : h;   /* displayed size */
    if (w < 1 || h < 1 || (long long)w * h > d->max_pixels)
        return errbuf_set(err, errlen, "JPEG is %dx%d: more than %lld pixels", w, h, d->max_pixels);
    if (dw < min_side || dh < min_side)
        return errbuf_set(err, errlen, "image is %dx%d (width x height), smaller than %d px", dw, dh, min_side);
    /* smallest factor <= 1 whose output keeps both sides >= need */
    int n = 0;
    tjscalingfactor *sf = tjGetScalingFactors(&n), best = {1, 1};
    for (int i = 0; sf && need > 0 && i < n; i++) {
        if (sf[i].num > sf[i].denom) continue;
        if (TJSCALED(w, sf[i]) < need || TJSCALED(h, sf[i]) < need) continue;
        if ((long long)sf[i].num * best.denom < (long long)best.num * sf[i].denom) best = sf[i];
    }
    int ow = TJSCALED(w, best), oh = TJSCALED(h, best);
    int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    int pf = cmyk ? TJPF_CMYK : TJPF_RGB, ps = cmyk ? 4 : 3;
    if (imgdec_reserve(&d->buf, &d->cap, (size_t)ow * oh * ps))
        return errbuf_set(err, errlen, "out of memory for a %dx%d image", ow, oh);
    if (tjDecompress2(d->tj, buf, (unsigned long)len, d->buf, ow, ow * ps, oh, pf,
                      TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0)
        return errbuf_set(err, errlen, "corrupt or truncated JPEG: %s", tjGetErrorStr2(d->tj));
    if (cmyk) {   /* in place: [C,M,Y,K] -> [R,G,B]; Adobe files store the values inverted */
        uint8_t *p = d->buf;
        for (size_t i = 0; i < (size_t)ow * oh; i++) {
            unsigned k = adobe ? p[i * 4 + 3] : 255u - p[i * 4 + 3];
            for (int c = 0; c < 3; c++) {
                unsigned v = adobe ? p[i * 4 + c] : 255u - p[i * 4 + c];
                p[i * 3 + c] = (uint8_t)((v * k + 127) / 255);
            }
        }
    }
    const uint8_t *rgb = d->buf;
    if (orient != 1) {
        if (imgdec_reserve(&d->buf2, &d->cap2, (size_t)ow * oh * 3))
            return errbuf_set(err, errlen, "out of memory for a %dx%d image", ow, oh);
        imgdec_orient(d->buf, ow, oh, d->buf2, orient);
        rgb = d->buf2;
    }
    out->rgb = rgb;
    out->w = orient >= 5 ? oh : ow;
    out->h = orient >= 5 ? ow : oh;
    out->src_w = dw;
    out->src_h = dh;
    out->scale_num = best.num;
    out->scale_den = best.denom;
    out->orientation = orient;
    out->format = "jpeg";
    return 0;
}

/* ---- PNG ------------------------------------------------------------------------- */
static int imgdec_png(imgdec_t *d, const uint8_t *buf, size_t len, int min_side, imgdec_out_t *out, char *err,
                      size_t errlen) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&im, buf, len)) {
        errbuf_set(err, errlen, "corrupt PNG: %s", im.message);
        png_image_free(&im);
        return -1;
    }
    int w = (int)im.width, h = (int)im.height;
    if (im.width < 1 || im.height < 1 || (long long)im.width * im.height > d->max_pixels) {
        errbuf_set(err, errlen, "PNG is %ux%u: more than %lld pixels", im.width, im.height, d->max_pixels);
        png_image_free(&im);
        return -1;
    }
    if (w < min_side || h < min_side) {
        errbuf_set(err, errlen, "image is %dx%d (width x height), smaller than %d px", w, h, min_side);
        png_image_free(&im);
        return -1;
    }
    int alpha = (im.format & PNG_FORMAT_FLAG_ALPHA) != 0, ps = alpha ? 4 : 3;
    im.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;   /* 16-bit without gAMA/sRGB: sRGB-encoded, as PIL reads it */
    im.format = alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
    if (imgdec_reserve(&d->buf, &d->cap, (size_t)w * h * ps)) {
        png_image_free(&im);
        return errbuf_set(err, errlen, "out of memory for a %dx%d image", w, h);
    }
    if (!png_image_finish_read(&im, NULL, d->buf, w * ps, NULL)) {
        errbuf_set(err, errlen, "corrupt or truncated PNG: %s", im.message);
        png_image_free(&im);
        return -1;
    }
    png_image_free(&im);
    if (alpha)   /* drop alpha in place */
        for (size_t i = 0; i < (size_t)w * h; i++) memmove(d->buf + i * 3, d->buf + i * 4, 3);
    out->rgb = d->buf;
    out->w = out->src_w = w;
    out->h = out->src_h = h;
    out->scale_num = out->scale_den = 1;
    out->orientation = 1;
    out->format = "png";
    return 0;
}

int imgdec_decode(imgdec_t *d, const uint8_t *buf, size_t len, int need, int min_side, imgdec_out_t *out,
                  char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF)
        return imgdec_jpeg(d, buf, len, need, min_side, out, err, errlen);
    if (len >= 8 && memcmp(buf, png_sig, 8) == 0) return imgdec_png(d, buf, len, min_side, out, err, errlen);
    if (len == 0) return errbuf_set(err, errlen, "empty file");
    char hex[3 * 8 + 1] = "";
    size_t o = 0;
    for (size_t i = 0; i < len && i < 8; i++) o += (size_t)snprintf(hex + o, sizeof hex - o, "%s%02x", i ? " " : "", buf[i]);
    return errbuf_set(err, errlen, "not a JPEG or PNG file (starts with %s)", hex);
}
