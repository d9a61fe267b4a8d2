/* tests/tools/fuzzseeds.c — writes the seed corpus of the import fuzzer
 * (tests/fuzz/fuzz_import.h: first byte = target) into a directory:
 * manifests (good, defaults line, bad lines), small JPEGs (RGB, gray, CMYK,
 * EXIF-rotated, progressive) and PNGs (RGB, 16-bit, RGBA, gray, gray+alpha),
 * and FreiHAND xyz/K pairs. The committed tests/fuzz/corpus/ was made by
 *   build/test/tools/fuzzseeds tests/fuzz/corpus
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/frames.h"

static const char *dir;
static int count;

static void seed(const char *name, int target, const void *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *b = malloc(n + 1);
    b[0] = (uint8_t)target;
    memcpy(b + 1, p, n);
    if (frames_write_file(path, b, n + 1)) {
        fprintf(stderr, "fuzzseeds: cannot write %s\n", path);
        exit(1);
    }
    free(b);
    count++;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzzseeds DIR\n");
        return 2;
    }
    dir = argv[1];
    frame_t f;
    if (frame_render(3, 0, 40, 30, &f)) return 1;
    char line[8192], text[20000];
    frames_manifest_line(line, sizeof line, "a.jpg", &f, f.K);
    seed("manifest-one", 0, line, strlen(line));
    snprintf(text, sizeof text, "{\"units\":\"mm\",\"K\":[[500,0,20],[0,500,15],[0,0,1]]}\n%s\n\n%s\r\n", line, line);
    seed("manifest-defaults", 0, text, strlen(text));
    snprintf(text, sizeof text, "%s\n{\"image\":\"b.png\",\"has_hand\":false,\"hand_side\":\"left\","
             "\"joints_valid\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\"K\":[[1,0,0],[0,1,0],[0,0,1]]}\n"
             "{\"image\":\"c.jpg\",\"joints_3d\":[[NaN,0,0]]}\n[1,2]\n{\"image\":1}\n", line);
    seed("manifest-mixed", 0, text, strlen(text));
    /* FreiHAND: one sample */
    size_t o = (size_t)snprintf(text, sizeof text, "[[");
    for (int j = 0; j < 21; j++)
        o += (size_t)snprintf(text + o, sizeof text - o, "%s[%.6g,%.6g,%.6g]", j ? "," : "", (double)f.joints[j][0],
                              (double)f.joints[j][1], (double)f.joints[j][2]);
    o += (size_t)snprintf(text + o, sizeof text - o, "]]");
    text[o++] = 0;
    o += (size_t)snprintf(text + o, sizeof text - o, "[[[500,0,20],[0,500,15],[0,0,1]]]");
    seed("freihand-one", 2, text, o);

    uint8_t *buf;
    size_t len;
    int W = f.w, H = f.h;
    frames_jpeg(f.rgb, W, H, TJPF_RGB, 75, &buf, &len);
    seed("jpeg-rgb", 1, buf, len);
    size_t el = 0;
    uint8_t *ex = frames_jpeg_exif(buf, len, 6, &el);
    seed("jpeg-exif6", 4, ex, el);
    free(ex);
    tjFree(buf);
    uint8_t gray[40 * 30], cmyk[40 * 30 * 4], rgba[40 * 30 * 4], ga[40 * 30 * 2], p16[40 * 30 * 6];
    for (int i = 0; i < W * H; i++) {
        gray[i] = f.rgb[i * 3 + 1];
        for (int c = 0; c < 3; c++) cmyk[i * 4 + c] = f.rgb[i * 3 + c], rgba[i * 4 + c] = f.rgb[i * 3 + c];
        cmyk[i * 4 + 3] = 200;
        rgba[i * 4 + 3] = (uint8_t)(i * 5);
        ga[i * 2] = gray[i];
        ga[i * 2 + 1] = (uint8_t)i;
        for (int c = 0; c < 3; c++) p16[i * 6 + 2 * c] = p16[i * 6 + 2 * c + 1] = f.rgb[i * 3 + c];
    }
    frames_jpeg(gray, W, H, TJPF_GRAY, 75, &buf, &len);
    seed("jpeg-gray", 7, buf, len);
    tjFree(buf);
    frames_jpeg(cmyk, W, H, TJPF_CMYK, 75, &buf, &len);
    seed("jpeg-cmyk", 10, buf, len);
    tjFree(buf);
    tjhandle tj = tjInitCompress();
    unsigned char *pb = NULL;
    unsigned long pn = 0;
    if (tjCompress2(tj, f.rgb, W, 0, H, TJPF_RGB, &pb, &pn, TJSAMP_444, 80, TJFLAG_PROGRESSIVE) == 0)
        seed("jpeg-progressive", 13, pb, pn);
    tjFree(pb);
    tjDestroy(tj);
    frames_png(f.rgb, W, H, PNG_COLOR_TYPE_RGB, 8, &buf, &len);
    seed("png-rgb", 1, buf, len);
    free(buf);
    frames_png(p16, W, H, PNG_COLOR_TYPE_RGB, 16, &buf, &len);
    seed("png-rgb16", 4, buf, len);
    free(buf);
    frames_png(rgba, W, H, PNG_COLOR_TYPE_RGB_ALPHA, 8, &buf, &len);
    seed("png-rgba", 7, buf, len);
    free(buf);
    frames_png(gray, W, H, PNG_COLOR_TYPE_GRAY, 8, &buf, &len);
    seed("png-gray", 10, buf, len);
    free(buf);
    frames_png(ga, W, H, PNG_COLOR_TYPE_GRAY_ALPHA, 8, &buf, &len);
    seed("png-grayalpha", 13, buf, len);
    free(buf);
    frame_free(&f);
    printf("fuzzseeds: %d seeds in %s\n", count, dir);
    return 0;
}
