/* tests/fuzz/fuzz_import.h — one fuzz input through the importer's parsers
 * (shared by the libFuzzer target tests/fuzz/fuzz_import.c and the unit test
 * tests/unit/test_import.c, which replays the committed corpus and crashes).
 *
 * The first byte picks the target; the rest is its input:
 *   0 mod 3: manifest_parse (JSON Lines)
 *   1 mod 3: imgdec_decode (JPEG/PNG; need from the byte, at most 4 M source
 *            pixels) and, when it decodes, a crop + resize to 28 x 28 as the
 *            importer does; then imgdec_jpeg_markers and imgdec_jpeg_plain
 *            (a file it takes reads as the CPU decoder reads it: the same
 *            size, no rotation)
 *   2 mod 3: manifest_parse_freihand (xyz and K split at the first NUL), element
 *            by element on two threads and whole (threads 0): the same result
 * Invariants that must hold are asserted (abort = a finding).
 */
#ifndef TRAIND_FUZZ_IMPORT_H
#define TRAIND_FUZZ_IMPORT_H

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "gpu/image.h"
#include "gpu/imgdec.h"
#include "gpu/manifest.h"

static void fuzz_check_manifest(const manifest_t *m) {
    for (size_t i = 0; i < m->n; i++) {
        const mf_frame_t *f = &m->frames[i];
        if (f->error) continue;
        assert(f->image && f->image[0]);
        for (int q = 0; q < 9; q++) assert(isfinite(f->K[q]));
        for (int j = 0; j < HAND_JOINTS; j++)
            for (int c = 0; c < 3; c++) assert(isfinite(f->joints[j][c]));
    }
}

/* FreiHAND's image probe: the first *versions blocks exist. */
static int fuzz_versions(void *ud, long index) {
    int *left = ud;
    if (index < 0 || *left <= 1) return 0;
    --*left;
    return 1;
}

/* FreiHAND parsed element by element on two threads and whole (threads 0): 1
 * when both give the same frames (which hold the invariants) or the same error. */
static int fuzz_freihand_same(const char *x, size_t xl, const char *k, size_t kl, int versions) {
    manifest_t m, w;
    char err[1024], werr[1024];
    memset(&m, 0, sizeof m);
    memset(&w, 0, sizeof w);
    err[0] = werr[0] = 0;
    int v1 = versions, v2 = versions, same;
    int r = manifest_parse_freihand(x, xl, k, kl, "fuzz_xyz.json", "/fuzz/rgb/%08ld.jpg", fuzz_versions, &v1, 2, &m,
                                    err, sizeof err);
    int rw = manifest_parse_freihand(x, xl, k, kl, "fuzz_xyz.json", "/fuzz/rgb/%08ld.jpg", fuzz_versions, &v2, 0, &w,
                                     werr, sizeof werr);
    if (r != rw) {
        same = 0;
    } else if (r) {
        same = err[0] && strcmp(err, werr) == 0;
    } else {
        assert(m.n >= 1);
        fuzz_check_manifest(&m);
        same = m.n == w.n && m.n_errors == w.n_errors;
        for (size_t i = 0; same && i < m.n; i++) {
            const mf_frame_t *a = &m.frames[i], *b = &w.frames[i];
            same = a->line == b->line && a->has_hand == b->has_hand && a->side == b->side &&
                   !memcmp(a->joints, b->joints, sizeof a->joints) && !memcmp(a->K, b->K, sizeof a->K) &&
                   !memcmp(a->valid, b->valid, sizeof a->valid) && strcmp(a->image, b->image) == 0 &&
                   (a->error == NULL) == (b->error == NULL) && (!a->error || strcmp(a->error, b->error) == 0);
        }
    }
    manifest_free(&m);
    manifest_free(&w);
    return same;
}

__attribute__((unused)) static int fuzz_import_one(imgdec_t *dec, const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    char err[512];
    if (data[0] % 3 == 1) {
        imgdec_set_max_pixels(dec, 1 << 22);
        imgdec_out_t out;
        int need = 14 + data[0] % 100;
        if (imgdec_decode(dec, p, n, need, 14, &out, err, sizeof err) == 0) {
            assert(out.rgb && out.w >= 1 && out.h >= 1 && out.src_w >= 14 && out.src_h >= 14);
            assert(out.scale_num >= 1 && out.scale_num <= out.scale_den);
            /* the decoded size is the exact scale of the displayed size, rounded up */
            assert(out.w == (out.src_w * out.scale_num + out.scale_den - 1) / out.scale_den);
            assert(out.h == (out.src_h * out.scale_num + out.scale_den - 1) / out.scale_den);
            int side = out.w < out.h ? out.w : out.h, x0 = (out.w - side) / 2, y0 = (out.h - side) / 2;
            uint8_t dst[28 * 28 * 3];
            image_resizer_t *rz = image_resizer_new();
            assert(rz);
            int r = image_resizer_run(rz, out.rgb + ((size_t)y0 * out.w + x0) * 3, side, side, (size_t)out.w * 3, dst,
                                      28, 28, err, sizeof err);
            assert(r == 0);
            image_resizer_free(rz);
        } else {
            assert(err[0]);
        }
        int o, a;
        imgdec_jpeg_markers(p, n, &o, &a);
        assert(o >= 1 && o <= 8);
        int pw, ph;
        if (imgdec_jpeg_plain(p, n, &pw, &ph)) {   /* its header agrees with the decoder's reading */
            assert(pw >= 1 && ph >= 1 && o == 1 && !a);
            imgdec_out_t full;
            if (imgdec_decode(dec, p, n, 0, 1, &full, err, sizeof err) == 0)
                assert(full.w == pw && full.h == ph && full.orientation == 1);
        }
    } else if (data[0] % 3 == 0) {
        manifest_t m;
        memset(&m, 0, sizeof m);
        if (manifest_parse((const char *)p, n, "fuzz.jsonl", "/fuzz", 1 + data[0] % 4, &m, err, sizeof err) == 0) {
            assert(m.n >= 1);
            fuzz_check_manifest(&m);
        } else {
            assert(err[0] && m.n == 0);
        }
        manifest_free(&m);
    } else {
        const uint8_t *z = memchr(p, 0, n);
        size_t xl = z ? (size_t)(z - p) : n, kl = z ? n - xl - 1 : 0;
        int same = fuzz_freihand_same((const char *)p, xl, z ? (const char *)z + 1 : "", kl, 1 + data[0] % 4);
        assert(same);
        (void)same;
    }
    return 0;
}

#endif
