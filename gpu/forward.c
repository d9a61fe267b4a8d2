/* gpu/forward.c — the `traind forward` subcommand (see gpu/forward.h).
 *
 * Owns: flag parsing, reading pixel_values, running the backbone through
 * gpu/model.c in chunks of max_batch images, and writing last_hidden_state and
 * pooler_output with HF's names. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gpu/backend.h"
#include "gpu/forward.h"
#include "gpu/model.h"
#include "store/safetensors.h"

int forward_run(const forward_opts_t *o, char *err, size_t errlen) {
    if (!o->weights || !o->weights[0]) { snprintf(err, errlen, "--weights DIR is required"); return -1; }
    if (!o->input || !o->input[0]) { snprintf(err, errlen, "--input FILE is required"); return -1; }
    if (!o->out || !o->out[0]) { snprintf(err, errlen, "--out FILE is required"); return -1; }
    dtype_t cdt;
    const char *prec = o->precision && o->precision[0] ? o->precision : "fp32";
    if (strcmp(prec, "fp32") == 0) cdt = DT_F32;
    else if (strcmp(prec, "bf16") == 0) cdt = DT_BF16;
    else { snprintf(err, errlen, "--precision must be fp32 or bf16 (got \"%s\")", prec); return -1; }
    const char *bname = o->backend && o->backend[0] ? o->backend : "auto";
    if (strcmp(bname, "cpu") && strcmp(bname, "cuda") && strcmp(bname, "auto")) {
        snprintf(err, errlen, "--backend must be cpu, cuda or auto (got \"%s\")", bname);
        return -1;
    }

    model_config_t cfg;
    if (model_config_from_hf_dir(o->weights, &cfg, err, errlen) < 0) return -1;
    cfg.head_hand = 0;

    char serr[512];
    st_file_t *in = st_open(o->input, serr, sizeof serr);
    if (!in) { snprintf(err, errlen, "%s", serr); return -1; }
    const st_tensor_t *px = st_find(in, "pixel_values");
    if (!px) {
        snprintf(err, errlen, "%s: no tensor \"pixel_values\"", o->input);
        st_close(in);
        return -1;
    }
    if (px->dtype != ST_F32 || px->rank != 4 || px->shape[1] != 3 || px->shape[0] < 1 ||
        px->shape[2] < 1 || px->shape[3] < 1) {
        snprintf(err, errlen, "%s: pixel_values must be F32 [B,3,H,W] (got %s of rank %d)", o->input,
                 st_dtype_name(px->dtype), px->rank);
        st_close(in);
        return -1;
    }
    const int64_t B = px->shape[0], H = px->shape[2], W = px->shape[3];
    if (H % cfg.patch || W % cfg.patch || H > 16384 || W > 16384) {
        snprintf(err, errlen, "%s: pixel_values is %lldx%lld, not a multiple of the patch size %d", o->input,
                 (long long)H, (long long)W, cfg.patch);
        st_close(in);
        return -1;
    }

    backend_t *be = backend_open(bname, o->device, serr, sizeof serr);
    if (!be) { snprintf(err, errlen, "%s", serr); st_close(in); return -1; }
    int mb = o->max_batch > 0 ? o->max_batch : 16;
    if (mb > B) mb = (int)B;
    model_opts_t mo = {.image_h = (int)H, .image_w = (int)W, .max_batch = mb, .cdt = cdt,
                       .grads = 0, .optimizer = 0, .freeze_layers = 0, .want_hidden = 1};
    model_t *m = model_create(be, &cfg, &mo, err, errlen);
    float *hpx = NULL, *hid = NULL, *pool = NULL;
    void *dpx = NULL;
    st_writer_t *w = NULL;
    int rc = -1;
    if (!m) goto out;
    if (model_load_hf_dir(m, o->weights, err, errlen) < 0) goto out;

    const size_t img = (size_t)3 * H * W, T = (size_t)m->T, D = (size_t)cfg.hidden;
    hpx = malloc(img * mb * sizeof *hpx);
    hid = malloc((size_t)B * T * D * sizeof *hid);
    pool = malloc((size_t)B * D * sizeof *pool);
    dpx = be->alloc(be, img * mb * sizeof(float));
    if (!hpx || !hid || !pool || !dpx) {
        snprintf(err, errlen, "out of memory for %lld images of %lldx%lld", (long long)B,
                 (long long)H, (long long)W);
        goto out;
    }
    for (int64_t b0 = 0; b0 < B; b0 += mb) {
        int n = (int)(B - b0 < mb ? B - b0 : mb);
        if (st_read_range(in, px, (uint64_t)b0 * img * 4, (size_t)n * img * 4, hpx, serr, sizeof serr) < 0) {
            snprintf(err, errlen, "%s", serr);
            goto out;
        }
        be->upload(be, dpx, hpx, (size_t)n * img * 4);
        if (model_forward(m, dpx, DT_F32, NULL, n, 1, err, errlen) < 0) goto out;
        be->download(be, hid + (size_t)b0 * T * D, m->hidden, (size_t)n * T * D * 4);
        be->download(be, pool + (size_t)b0 * D, m->pooler, (size_t)n * D * 4);
    }
    w = st_writer_new();
    if (!w) { snprintf(err, errlen, "out of memory"); goto out; }
    int64_t sh[3] = {B, (int64_t)T, (int64_t)D}, sp[2] = {B, (int64_t)D};
    st_writer_add_ref(w, "last_hidden_state", ST_F32, 3, sh, hid);
    st_writer_add_ref(w, "pooler_output", ST_F32, 2, sp, pool);
    st_writer_meta(w, "precision", prec);
    st_writer_meta(w, "backend", be->name);
    if (st_writer_write(w, o->out, serr, sizeof serr) < 0) {
        snprintf(err, errlen, "%s", serr);
        goto out;
    }
    rc = 0;
out:
    st_writer_free(w);
    if (dpx) be->free(be, dpx);
    free(hpx);
    free(hid);
    free(pool);
    model_free(m);
    be->destroy(be);
    st_close(in);
    return rc;
}

static void forward_usage(FILE *f) {
    fprintf(f, "usage: traind forward --weights DIR --input IN.safetensors --out OUT.safetensors\n"
               "                      [--precision fp32|bf16] [--backend cpu|cuda|auto] [--device N] [--batch N]\n"
               "Runs the DINOv2 backbone of a HF checkpoint directory (or a traind checkpoint) on\n"
               "pixel_values F32 [B,3,H,W] and writes last_hidden_state [B,T,D] and pooler_output [B,D]\n"
               "(--batch: images per forward call, default 16).\n");
}

int forward_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"weights", required_argument, NULL, 'w'},
        {"input", required_argument, NULL, 'i'},
        {"out", required_argument, NULL, 'o'},
        {"precision", required_argument, NULL, 'p'},
        {"backend", required_argument, NULL, 'b'},
        {"device", required_argument, NULL, 'd'},
        {"batch", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    forward_opts_t o = {0};
    o.backend = "auto";
    o.precision = "fp32";
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        char *end = NULL;
        switch (ch) {
        case 'w': o.weights = optarg; break;
        case 'i': o.input = optarg; break;
        case 'o': o.out = optarg; break;
        case 'p': o.precision = optarg; break;
        case 'b': o.backend = optarg; break;
        case 'd':
            o.device = (int)strtol(optarg, &end, 10);
            if (!*optarg || *end || o.device < 0) {
                fprintf(stderr, "traind forward: --device must be a non-negative integer (got \"%s\")\n", optarg);
                return 2;
            }
            break;
        case 'B':
            o.max_batch = (int)strtol(optarg, &end, 10);
            if (!*optarg || *end || o.max_batch <= 0 || o.max_batch > 4096) {
                fprintf(stderr, "traind forward: --batch must be in [1, 4096] (got \"%s\")\n", optarg);
                return 2;
            }
            break;
        case 'h': forward_usage(stdout); return 0;
        case ':':
            fprintf(stderr, "traind forward: %s needs a value\n", argv[optind - 1]);
            forward_usage(stderr);
            return 2;
        default:
            fprintf(stderr, "traind forward: unknown option \"%s\"\n", argv[optind - 1]);
            forward_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "traind forward: unexpected argument \"%s\"\n", argv[optind]);
        forward_usage(stderr);
        return 2;
    }
    if (!o.weights || !o.input || !o.out) {
        fprintf(stderr, "traind forward: --weights, --input and --out are required\n");
        forward_usage(stderr);
        return 2;
    }
    char err[1024];
    if (forward_run(&o, err, sizeof err) < 0) {
        fprintf(stderr, "traind forward: %s\n", err);
        return 1;
    }
    return 0;
}
