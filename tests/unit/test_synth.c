/* tests/unit/test_synth.c — the synthetic dataset: determinism, that the
 * discs are drawn where the joints project, label statistics, the
 * `traind synth` command line, and loading the result. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpu/backend.h"
#include "gpu/dataset.h"
#include "store/dataset.h"
#include "store/fsutil.h"
#include "store/safetensors.h"
#include "store/synth.h"
#include "tests/tap.h"

static char root[256];

static int files_equal(const char *a, const char *b) {
    size_t la, lb;
    char err[256];
    char *x = fs_read_file(a, 1u << 30, &la, err, sizeof err), *y = fs_read_file(b, 1u << 30, &lb, err, sizeof err);
    int eq = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return eq;
}

static void test_determinism(void) {
    char d1[512], d2[512], d3[512], err[512];
    snprintf(d1, sizeof d1, "%s/s1", root);
    snprintf(d2, sizeof d2, "%s/s2", root);
    snprintf(d3, sizeof d3, "%s/s3", root);
    ok(synth_generate(d1, 50, 32, 42, 20, NULL, err, sizeof err) == 0, "generate seed 42: %s", err);
    ok(synth_generate(d2, 50, 32, 42, 20, NULL, err, sizeof err) == 0, "generate seed 42 again");
    ok(synth_generate(d3, 50, 32, 43, 20, NULL, err, sizeof err) == 0, "generate seed 43");
    int same = 1, diff = 1;
    for (int s = 0; s < 3; s++) {
        char a[600], b[600], c[600];
        snprintf(a, sizeof a, "%s/shard-%05d.safetensors", d1, s);
        snprintf(b, sizeof b, "%s/shard-%05d.safetensors", d2, s);
        snprintf(c, sizeof c, "%s/shard-%05d.safetensors", d3, s);
        same &= files_equal(a, b);
        diff &= !files_equal(a, c);
    }
    ok(same, "same seed gives byte-identical shards");
    ok(diff, "another seed gives different shards");

    /* any range of samples can be generated on its own */
    int S = 24;
    uint8_t *all = malloc(10 * S * S * 3), *part = malloc(4 * S * S * 3);
    float ja[10 * 63], jp[4 * 63];
    synth_samples(9, S, 0, 10, all, ja, NULL, NULL, NULL);
    synth_samples(9, S, 5, 4, part, jp, NULL, NULL, NULL);
    ok(memcmp(all + 5 * S * S * 3, part, 4 * S * S * 3) == 0 && memcmp(ja + 5 * 63, jp, sizeof jp) == 0,
       "samples 5..8 equal whether generated alone or in a run");
    free(all);
    free(part);

    /* a smaller run into the same directory removes the extra shards */
    ok(synth_generate(d1, 15, 32, 42, 10, NULL, err, sizeof err) == 0, "regenerate smaller into the same dir");
    ds_info_t info;
    ok(ds_scan(d1, &info, err, sizeof err) == 0 && info.n == 15 && info.nshards == 2, "only the new shards remain");
    ds_info_free(&info);
}

/* Pixels at projected joint centres have the joint's colour, unless a
 * nearer joint's disc covers them. */
static void test_blobs(void) {
    char d[512], p[600], err[512];
    int S = 64, N = 60;
    snprintf(d, sizeof d, "%s/blobs", root);
    ok(synth_generate(d, N, S, 7, 0, NULL, err, sizeof err) == 0, "generate for blob check: %s", err);
    snprintf(p, sizeof p, "%s/shard-00000.safetensors", d);
    st_file_t *f = st_open(p, err, sizeof err);
    if (!ok(f != NULL, "open shard: %s", f ? "" : err)) return;
    const st_tensor_t *ti = st_find(f, "image"), *tj = st_find(f, "hand_joints"), *tk = st_find(f, "camera_intrinsics"),
                      *th = st_find(f, "has_hand"), *tv = st_find(f, "hand_joints_valid");
    ok(ti && ti->dtype == ST_U8 && ti->shape[0] == N && ti->shape[1] == S && ti->shape[2] == S && ti->shape[3] == 3,
       "image U8 [N,S,S,3]");
    ok(tj && tk && th && tv && tk->dtype == ST_F32 && tj->dtype == ST_F32, "labels present, fp32");
    ok(st_meta(f, "mean") && st_meta(f, "std"), "mean/std metadata");
    uint8_t *img = malloc(ti->nbytes), hh[64], valid[64 * 21];
    float *J = malloc(tj->nbytes), *K = malloc(tk->nbytes);
    st_read(f, ti, img, err, sizeof err);
    st_read(f, tj, J, err, sizeof err);
    st_read(f, tk, K, err, sizeof err);
    st_read(f, th, hh, err, sizeof err);
    st_read(f, tv, valid, err, sizeof err);
    st_close(f);
    ok(K[0] == 1.1f * S && K[4] == 1.1f * S && K[2] == S / 2.0f && K[5] == S / 2.0f && K[8] == 1 && K[1] == 0,
       "intrinsics fx=fy=1.1S, c=S/2");
    uint8_t col[21][3];
    for (int j = 0; j < 21; j++) synth_joint_color(j, col[j]);
    int distinct = 1;
    for (int a = 0; a < 21; a++)
        for (int b = 0; b < a; b++) distinct &= memcmp(col[a], col[b], 3) != 0;
    ok(distinct, "21 distinct joint colours");
    ok(synth_joint_radius(S, 0.35f) > synth_joint_radius(S, 0.8f), "radius shrinks with depth");

    int checked = 0, own = 0, wrong = 0, nohand = 0, nohand_clean = 1;
    for (int i = 0; i < N; i++) {
        const uint8_t *im = img + (size_t)i * S * S * 3;
        const float *Ji = J + i * 63, *Ki = K + i * 9;
        if (!hh[i]) {
            nohand++;
            for (int q = 0; q < S * S; q++)
                for (int j = 0; j < 21; j++) nohand_clean &= memcmp(im + q * 3, col[j], 3) != 0;
            continue;
        }
        for (int j = 0; j < 21; j++) {
            float z = Ji[j * 3 + 2];
            float u = Ki[0] * Ji[j * 3] / z + Ki[2], v = Ki[4] * Ji[j * 3 + 1] / z + Ki[5];
            int px = (int)floorf(u), py = (int)floorf(v);
            if (px < 0 || py < 0 || px >= S || py >= S) continue;
            const uint8_t *c = im + ((size_t)py * S + px) * 3;
            checked++;
            if (memcmp(c, col[j], 3) == 0) {
                own++;
                continue;
            }
            /* otherwise it must be a nearer joint whose disc reaches this pixel */
            int explained = 0;
            for (int k = 0; k < 21 && !explained; k++) {
                if (k == j || memcmp(c, col[k], 3) != 0 || Ji[k * 3 + 2] > z) continue;
                float zk = Ji[k * 3 + 2];
                float uk = Ki[0] * Ji[k * 3] / zk + Ki[2], vk = Ki[4] * Ji[k * 3 + 1] / zk + Ki[5];
                float dx = px + 0.5f - uk, dy = py + 0.5f - vk, rk = synth_joint_radius(S, zk);
                explained = dx * dx + dy * dy <= rk * rk + 1e-3f;
            }
            if (!explained) {
                wrong++;
                if (wrong <= 3)
                    diag("  sample %d joint %d at (%d,%d): colour %d,%d,%d", i, j, px, py, c[0], c[1], c[2]);
            }
        }
    }
    ok(checked > N * 15, "checked %d projected joints", checked);
    ok(wrong == 0, "every projected joint shows its colour or a nearer covering joint (%d wrong)", wrong);
    ok(own > checked / 2, "most joints visible in their own colour (%d of %d)", own, checked);
    ok(nohand_clean, "samples without a hand contain no joint colour (%d such)", nohand);
    free(img);
    free(J);
    free(K);
}

static void test_statistics(void) {
    int N = 4000;
    float *J = malloc((size_t)N * 63 * 4);
    uint8_t *valid = malloc((size_t)N * 21), *hh = malloc((size_t)N);
    synth_samples(123, 64, 0, N, NULL, J, valid, hh, NULL);
    int nh = 0, inv = 0, hands = 0;
    double mean[63] = {0};
    for (int i = 0; i < N; i++) {
        if (!hh[i]) { nh++; continue; }
        hands++;
        for (int j = 0; j < 21; j++) inv += !valid[i * 21 + j];
        for (int k = 0; k < 63; k++) mean[k] += J[i * 63 + k];
    }
    for (int k = 0; k < 63; k++) mean[k] /= hands;
    double e = 0, zmin = 1e9, zmax = -1e9, bone_err = 0;
    int cnt = 0;
    for (int i = 0; i < N; i++) {
        if (!hh[i]) continue;
        for (int j = 0; j < 21; j++) {
            double d2 = 0;
            for (int a = 0; a < 3; a++) d2 += pow(J[i * 63 + j * 3 + a] - mean[j * 3 + a], 2);
            e += sqrt(d2);
            cnt++;
            double z = J[i * 63 + j * 3 + 2];
            if (z < zmin) zmin = z;
            if (z > zmax) zmax = z;
        }
        /* wrist to middle-finger base: a rigid palm bone of 9.3 cm ± 10% */
        double b = 0;
        for (int a = 0; a < 3; a++) b += pow(J[i * 63 + 9 * 3 + a] - J[i * 63 + a], 2);
        b = sqrt(b);
        if (b < 0.093 * 0.89 || b > 0.093 * 1.11) bone_err++;
    }
    double mpjpe = 1000 * e / cnt;
    ok(nh > N * 3 / 100 && nh < N * 7 / 100, "about 5%% samples without a hand (%d of %d)", nh, N);
    ok(inv > hands * 21 * 2 / 100 && inv < hands * 21 * 4 / 100, "about 3%% invalid joints (%d)", inv);
    ok(mpjpe >= 60, "mean predictor MPJPE %.1f mm >= 60 mm", mpjpe);
    ok(zmin > 0.2 && zmax < 1.0, "depths in front of the camera (%.3f..%.3f m)", zmin, zmax);
    ok(bone_err == 0, "skeleton is a plausible hand (palm length)");
    free(J);
    free(valid);
    free(hh);
}

static int run_main(int argc, const char **argv) {
    /* silence the command's output (usage text, summary line) */
    fflush(stderr);
    fflush(stdout);
    FILE *saved = stderr, *saved_out = stdout;
    FILE *null = fopen("/dev/null", "w");
    stderr = null;
    stdout = null;
    int r = synth_main(argc, (char **)argv);
    stderr = saved;
    stdout = saved_out;
    fclose(null);
    return r;
}

static void test_cli(void) {
    char d[512], err[512];
    snprintf(d, sizeof d, "%s/cli", root);
    const char *good[] = {"synth", "--out", d, "--samples", "30", "--image-size", "28", "--seed", "5",
                          "--shard-samples=12"};
    ok(run_main(10, good) == 0, "traind synth with all options exits 0");
    ds_info_t info;
    ok(ds_scan(d, &info, err, sizeof err) == 0 && info.n == 30 && info.h == 28 && info.w == 28 && info.nshards == 3 &&
       info.fields == (DS_F_JOINTS_VALID | DS_F_HAS_HAND | DS_F_INTRINSICS),
       "its output scans: 30 samples, 28x28, 3 shards, fields");

    /* load it through the CPU backend */
    backend_t *be = backend_cpu_create(err, sizeof err);
    if (be) {
        ds_layout_t l;
        ds_layout_for(&l, &info);
        void *base = be->alloc(be, l.total);
        ok(dataset_load(be, d, &info, base, &l, NULL, NULL, NULL, NULL, err, sizeof err) == 0, "synthetic dataset loads");
        dataset_t ds;
        dataset_view(&ds, base, &l);
        float J[63];
        uint8_t hh;
        synth_samples(5, 28, 29, 1, NULL, J, NULL, &hh, NULL);
        ok(memcmp(ds.joints + 29 * 63, J, sizeof J) == 0 && ds.has_hand[29] == hh && ds.intrinsics[29 * 9] == 1.1f * 28,
           "resident labels of the last sample match the generator");
        be->free(be, base);
        be->destroy(be);
    }
    ds_info_free(&info);

    const char *missing[] = {"synth", "--out", d, "--samples", "30", "--seed", "5"};
    ok(run_main(7, missing) == 2, "missing --image-size: exit 2");
    const char *badn[] = {"synth", "--out", d, "--samples", "-3", "--image-size", "28", "--seed", "5"};
    ok(run_main(9, badn) == 2, "negative --samples: exit 2");
    const char *bads[] = {"synth", "--out", d, "--samples", "3", "--image-size", "28x", "--seed", "5"};
    ok(run_main(9, bads) == 2, "non-numeric --image-size: exit 2");
    const char *small[] = {"synth", "--out", d, "--samples", "3", "--image-size", "4", "--seed", "5"};
    ok(run_main(9, small) == 2, "too small --image-size: exit 2");
    const char *unk[] = {"synth", "--out", d, "--bogus"};
    ok(run_main(4, unk) == 2, "unknown option: exit 2");
    const char *noval[] = {"synth", "--out"};
    ok(run_main(2, noval) == 2, "option without a value: exit 2");
    const char *seedneg[] = {"synth", "--out", d, "--samples", "3", "--image-size", "28", "--seed", "-1"};
    ok(run_main(9, seedneg) == 2, "negative --seed: exit 2");

    /* a directory holding other safetensors files is refused */
    char foreign[600];
    snprintf(foreign, sizeof foreign, "%s/model.safetensors", d);
    fs_write_file_atomic(foreign, "x", 1, err, sizeof err);
    ok(run_main(10, good) == 1, "directory with a foreign safetensors file: exit 1");
    ok(synth_generate(d, 30, 28, 5, 12, NULL, err, sizeof err) != 0 && strstr(err, "model.safetensors"),
       "synth_generate names the foreign file: %s", err);
    ok(synth_generate(d, 0, 28, 5, 12, NULL, err, sizeof err) != 0 && strstr(err, "samples"), "zero samples refused");
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/test_synth.XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    test_determinism();
    test_blobs();
    test_statistics();
    test_cli();
    char err[256];
    fs_rm_rf(root, err, sizeof err);
    return tap_done();
}
