/* tests/gpu/test_memory_gpu.c — the memory estimate a job is admitted with
 * (stage_memory_estimate, daemon/admit.c) against the device memory a stage
 * really takes on the GPU.
 *
 * For each configuration (the benchmark shapes of SPEC §8 at 224 px): a fresh
 * CUDA backend, a synthetic dataset loaded on it, the stage run through
 * stage_run while the device's free memory is sampled at every metric and
 * progress callback (activations and scratch are allocated at model creation
 * and in the first step, then kept). Checks: the peak the stage took beyond
 * the dataset is within the estimate, and the estimate is not wildly above it
 * (at most 2x + 512 MB); the CUDA runtime's own share (context, cuBLAS,
 * cuDNN: what the device uses once the backend is open, before any job
 * memory) is printed and must stay within STAGE_CUDA_RUNTIME_BYTES, which
 * admission adds on cuda. TAP; skips without a device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/backend.h"
#include "gpu/dataset.h"
#include "gpu/model.h"
#include "gpu/stages.h"
#include "store/dataset.h"
#include "store/synth.h"
#include "tests/tap.h"

#define GB 1e9

typedef struct {
    backend_t *be;
    size_t free0, min_free;
} probe_t;

static void sample(probe_t *p) {
    size_t fr = 0, tot = 0;
    if (p->be->mem_info(p->be, &fr, &tot) == 0 && fr < p->min_free) p->min_free = fr;
}
static void on_metric(void *ud, long step, const char *name, double v) { sample(ud); }
static void on_progress(void *ud, const stage_progress_t *pr) { sample(ud); }

#ifdef TRAIND_CUDA
static void run_one(const char *dsdir, const char *root, const char *what, const char *spec_text) {
    char err[1024];
    backend_t *be = backend_cuda_create(0, err, sizeof err);
    if (!be) { ok(0, "%s: cuda backend: %s", what, err); return; }
    size_t fr = 0, tot = 0;
    be->mem_info(be, &fr, &tot);
    size_t runtime = tot - fr;   /* nothing else runs on the lent device */
    ds_info_t info;
    ds_layout_t lay;
    dataset_t ds;
    void *base = NULL;
    jobspec_t js;
    int parsed = 0;
    if (ds_scan(dsdir, &info, err, sizeof err)) { ok(0, "%s: scan %s", what, err); be->destroy(be); return; }
    ds_layout_for(&lay, &info);
    base = be->alloc(be, lay.total);
    if (!base || dataset_load(be, dsdir, &info, base, &lay, NULL, NULL, NULL, NULL, err, sizeof err)) {
        ok(0, "%s: dataset: %s", what, base ? err : be->err);
        goto out;
    }
    dataset_view(&ds, base, &lay);
    json_t *sj = json_loads(spec_text, 0, NULL);
    char field[128];
    parsed = sj && jobspec_parse(sj, &js, field, sizeof field, err, sizeof err) == 0;
    json_decref(sj);
    if (!parsed) { ok(0, "%s: spec %s", what, err); goto out; }
    js.batch_size = stage_effective_batch(&js, ds.n);
    model_config_t cfg;
    model_config_by_name(js.model.backbone, js.model.registers, &cfg, err, sizeof err);
    stage_mem_t m;
    if (stage_memory_estimate(&js, &cfg, ds.h, ds.w, &m, err, sizeof err)) { ok(0, "%s: estimate %s", what, err); goto out; }
    probe_t p = {.be = be};
    be->mem_info(be, &p.free0, &tot);
    p.min_free = p.free0;
    char croot[600], rdir[600];
    snprintf(croot, sizeof croot, "%s/ckpt", root);
    snprintf(rdir, sizeof rdir, "%s/res", root);
    volatile sig_atomic_t stop = 0;
    stage_ctx_t ctx = {.be = be, .ds = &ds, .spec = &js, .job_id = "j-gpumem", .checkpoint_root = croot,
                       .result_dir = rdir, .stop = &stop, .ud = &p, .on_metric = on_metric, .on_progress = on_progress};
    json_t *res = NULL;
    int r = stage_run(&ctx, &res, err, sizeof err);
    sample(&p);
    json_decref(res);
    size_t used = p.free0 - p.min_free;
    ok(r == 0, "%s runs (%s)", what, r ? err : "ok");
    diag("%s: estimate %.3f GB (params %.3f, grads %.3f, adamw %.3f, activations %.3f, buffers+workspace %.3f); "
         "took %.3f GB at its peak (%.0f%% of the estimate); CUDA runtime %.3f GB", what, m.backend / GB,
         m.params / GB, m.grads / GB, m.optimizer / GB, m.activations / GB, (m.batch + m.workspace) / GB, used / GB,
         100.0 * used / (double)m.backend, runtime / GB);
    ok(used <= m.backend, "%s: the stage took %.3f GB, within the estimate %.3f GB", what, used / GB, m.backend / GB);
    ok(m.backend <= 2.0 * used + 512e6, "%s: the estimate is at most 2x + 512 MB of it (no false refusals)", what);
    ok(runtime <= STAGE_CUDA_RUNTIME_BYTES, "%s: the CUDA runtime's %.3f GB fit the %.3f GB admission adds", what,
       runtime / GB, STAGE_CUDA_RUNTIME_BYTES / GB);
out:
    if (parsed) jobspec_free(&js);
    if (base) be->free(be, base);
    ds_info_free(&info);
    be->destroy(be);
}
#endif

int main(void) {
#ifndef TRAIND_CUDA
    printf("1..0 # SKIP built without CUDA\n");
    return 0;
#else
    char err[1024];
    backend_t *probe = backend_cuda_create(0, err, sizeof err);
    if (!probe) { printf("1..0 # SKIP no CUDA device: %s\n", err); return 0; }
    probe->destroy(probe);
    char root[] = "/tmp/traind-test-memory-gpu-XXXXXX";
    if (!mkdtemp(root)) { printf("Bail out! mkdtemp\n"); return 1; }
    char dsdir[256];
    snprintf(dsdir, sizeof dsdir, "%s/ds", root);
    if (!ok(synth_generate(dsdir, 256, 224, 11, 0, NULL, err, sizeof err) == 0, "synthetic dataset: 256 samples 224x224"))
        return tap_done();
    run_one(dsdir, root, "train dinov2-small b64",
            "{\"type\":\"train\",\"dataset\":\"s\",\"model\":{\"backbone\":\"dinov2-small\"},\"batch_size\":64,"
            "\"steps\":3,\"eval_every\":0,\"checkpoint_every\":0}");
    run_one(dsdir, root, "train dinov2-large b32, 12 frozen",
            "{\"type\":\"train\",\"dataset\":\"s\",\"model\":{\"backbone\":\"dinov2-large\",\"freeze_layers\":12},"
            "\"batch_size\":32,\"steps\":3,\"eval_every\":0,\"checkpoint_every\":0}");
    run_one(dsdir, root, "train dinov2-base b128",
            "{\"type\":\"train\",\"dataset\":\"s\",\"model\":{\"backbone\":\"dinov2-base\"},\"batch_size\":128,"
            "\"steps\":2,\"eval_every\":0,\"checkpoint_every\":0}");
    run_one(dsdir, root, "eval dinov2-large b256",
            "{\"type\":\"eval\",\"dataset\":\"s\",\"model\":{\"backbone\":\"dinov2-large\"},\"indices\":[[0,256]],"
            "\"batch_size\":256}");
    run_one(dsdir, root, "infer dinov2-base b64 with patch tokens",
            "{\"type\":\"infer\",\"dataset\":\"s\",\"model\":{\"backbone\":\"dinov2-base\"},\"indices\":[[0,128]],"
            "\"batch_size\":64,\"outputs\":[\"cls\",\"patch_tokens\"]}");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) diag("could not remove %s", root);
    return tap_done();
#endif
}
