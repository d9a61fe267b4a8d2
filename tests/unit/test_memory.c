/* tests/unit/test_memory.c — the memory estimate a job is admitted with.
 *
 * model_working_bytes(cfg, opts) against what model_create really allocates
 * (a counting wrapper around the CPU backend's alloc/free) for several
 * configurations — backbones, image sizes, batches, dtypes, with and without
 * gradients, AdamW, frozen blocks, registers, last_hidden_state; the
 * effective batch (stage_effective_batch) of every job type; and
 * stage_memory_estimate against the peak of backend memory a real stage run
 * holds (train with batch_size 4096 on a 64-sample dataset runs with batch 58,
 * and its estimate is that of batch 58, not 4096). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpu/backend.h"
#include "gpu/dataset.h"
#include "gpu/model.h"
#include "gpu/stages.h"
#include "store/dataset.h"
#include "store/fsutil.h"
#include "store/synth.h"
#include "tests/tap.h"

/* ---- a backend that counts its allocations ---- */
#define MAX_LIVE 4096
static backend_t *cpu;          /* the real one */
static backend_t counting;      /* a copy whose alloc/free count */
static struct { void *p; size_t n; } live[MAX_LIVE];
static size_t outstanding, peak, allocated;

static void *count_alloc(backend_t *b, size_t n) {
    void *p = cpu->alloc(cpu, n);
    if (!p) return NULL;
    for (int i = 0; i < MAX_LIVE; i++)
        if (!live[i].p) { live[i].p = p; live[i].n = n; break; }
    outstanding += n;
    allocated += n;
    if (outstanding > peak) peak = outstanding;
    return p;
}

static void count_free(backend_t *b, void *p) {
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i].p == p) { outstanding -= live[i].n; live[i].p = NULL; break; }
    cpu->free(cpu, p);
}

static void count_reset(void) { peak = outstanding; allocated = 0; }

/* model_create's allocations == model_working_bytes, part by part where visible */
static void check_model(const char *name, int registers, int h, int w, int B, dtype_t cdt, int grads, int opt,
                        int freeze, int hidden) {
    model_config_t cfg;
    char err[256];
    if (model_config_by_name(name, registers, &cfg, err, sizeof err)) { ok(0, "%s: %s", name, err); return; }
    model_opts_t o = {.image_h = h, .image_w = w, .max_batch = B, .cdt = cdt, .grads = grads, .optimizer = opt,
                      .freeze_layers = freeze, .want_hidden = hidden};
    model_mem_t parts;
    size_t est = model_working_bytes(&cfg, &o, &parts, err, sizeof err);
    size_t before = outstanding;
    count_reset();
    model_t *m = model_create(&counting, &cfg, &o, err, sizeof err);
    size_t got = allocated;
    ok(m && est > 0 && got == est,
       "%s r%d %dx%d batch %d %s%s%s%s%s: estimate %zu bytes, model_create allocated %zu", name, registers, h, w, B,
       dtype_name(cdt), grads ? " grads" : "", opt ? " adamw" : "", freeze ? " frozen" : "", hidden ? " hidden" : "",
       est, got);
    ok(parts.total == parts.params + parts.grads + parts.optimizer + parts.activations &&
       (grads ? parts.grads > 0 : parts.grads == 0) && (opt ? parts.optimizer == 2 * parts.grads : parts.optimizer == 0),
       "  parts add up: params %zu, grads %zu, adamw %zu, activations %zu", parts.params, parts.grads,
       parts.optimizer, parts.activations);
    if (m) {
        size_t np = model_num_params(m), nt = model_num_trainable(m);
        ok(parts.params >= np * (4 + (cdt == DT_F32 ? 0 : 2)) && (!grads || parts.grads >= nt * 4),
           "  params cover %zu parameters (%zu trainable)", np, nt);
    }
    model_free(m);
    ok(outstanding == before, "  model_free returned it all");
}

/* ---- a synthetic dataset for a real stage run ---- */
static dataset_t ds;
static void *ds_base;
static char root[256];

static int parse(const char *text, jobspec_t *js) {
    json_t *j = json_loads(text, 0, NULL);
    char field[128], msg[256];
    int r = j ? jobspec_parse(j, js, field, sizeof field, msg, sizeof msg) : -1;
    if (r) diag("spec %s: %s %s", text, field, msg);
    json_decref(j);
    return r;
}

/* Runs spec on the counting backend: the peak of backend bytes the stage held
 * (besides the dataset) and its estimate, for the effective batch. */
static void check_stage(const char *text, const char *what) {
    jobspec_t js;
    if (parse(text, &js)) { ok(0, "%s parses", what); return; }
    js.batch_size = stage_effective_batch(&js, ds.n);   /* as the daemon resolves it */
    model_config_t cfg;
    char err[512];
    model_config_by_name(js.model.backbone, js.model.registers, &cfg, err, sizeof err);
    stage_mem_t m;
    int er = stage_memory_estimate(&js, &cfg, ds.h, ds.w, &m, err, sizeof err);
    size_t base = outstanding;
    count_reset();
    char croot[512], rdir[512];
    snprintf(croot, sizeof croot, "%s/ckpt", root);
    snprintf(rdir, sizeof rdir, "%s/res", root);
    volatile sig_atomic_t stop = 0;
    stage_ctx_t ctx = {.be = &counting, .ds = &ds, .spec = &js, .job_id = "j-mem", .checkpoint_root = croot,
                       .result_dir = rdir, .stop = &stop};
    json_t *res = NULL;
    int r = stage_run(&ctx, &res, err, sizeof err);
    size_t used = peak - base;
    ok(r == 0 && er == 0, "%s runs (%s)", what, r ? err : "ok");
    ok(used <= m.backend && used >= m.params + m.activations,
       "%s: the estimate %zu covers the %zu backend bytes the stage held at its peak (model %zu)", what, m.backend,
       used, m.params + m.grads + m.optimizer + m.activations);
    json_decref(res);
    jobspec_free(&js);
}

int main(void) {
    char err[512];
    cpu = backend_cpu_create(err, sizeof err);
    if (!cpu) { printf("Bail out! backend: %s\n", err); return 1; }
    counting = *cpu;
    counting.alloc = count_alloc;
    counting.free = count_free;

    /* ---- model_working_bytes is what model_create allocates ---- */
    check_model("dinov2-tiny", 0, 28, 28, 8, DT_BF16, 1, 1, 0, 0);     /* train */
    check_model("dinov2-tiny", 0, 42, 56, 3, DT_F32, 0, 0, 0, 0);      /* eval, fp32, not square */
    check_model("dinov2-tiny", 4, 28, 28, 5, DT_F32, 1, 0, 0, 0);      /* debug: grads, no optimizer */
    check_model("dinov2-tiny", 0, 28, 28, 2, DT_BF16, 0, 0, 0, 1);     /* infer with patch tokens */
    check_model("dinov2-small", 4, 56, 56, 4, DT_BF16, 1, 1, 6, 0);    /* half frozen, registers */
    check_model("dinov2-small", 0, 28, 28, 1, DT_BF16, 1, 1, 12, 0);   /* everything frozen but the heads */
    model_config_t cfg;
    model_config_by_name("dinov2-large", 0, &cfg, err, sizeof err);
    model_opts_t o = {.image_h = 224, .image_w = 224, .max_batch = 32, .cdt = DT_BF16, .grads = 1, .optimizer = 1,
                      .freeze_layers = 12};
    model_mem_t parts;
    size_t large = model_working_bytes(&cfg, &o, &parts, err, sizeof err);
    /* 304M parameters: fp32 + bf16 = 6 bytes each; 12 of 24 blocks + head trainable: grads 4 and moments 8 */
    ok(large > 5e9 && large < 20e9 && parts.params > 1.8e9 && parts.params < 1.9e9 && parts.optimizer == 2 * parts.grads,
       "dinov2-large b32 at 224, 12 frozen: %.2f GB (parameters %.2f, grads %.2f, adamw %.2f, activations %.2f)",
       large / 1e9, parts.params / 1e9, parts.grads / 1e9, parts.optimizer / 1e9, parts.activations / 1e9);
    o.max_batch = 64;
    model_mem_t p64;
    model_working_bytes(&cfg, &o, &p64, err, sizeof err);
    ok(p64.params == parts.params && p64.activations > 1.9 * parts.activations && p64.activations < 2.1 * parts.activations,
       "twice the batch: same parameters, about twice the activations");
    o.image_h = 30;
    ok(model_working_bytes(&cfg, &o, NULL, err, sizeof err) == 0 && strstr(err, "multiple of the patch"),
       "an image size model_create refuses gives 0: %s", err);

    /* ---- the effective batch ---- */
    jobspec_t js;
    parse("{\"type\":\"train\",\"dataset\":\"d\",\"batch_size\":4096}", &js);
    ok(stage_effective_batch(&js, 64) == 58 && stage_effective_batch(&js, 100000) == 4096,
       "train: min(batch_size, training split): 58 of 64 samples (0.9 split), 4096 of 100000");
    jobspec_free(&js);
    parse("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[[0,10],3],\"batch_size\":64}", &js);
    ok(stage_effective_batch(&js, 1000) == 11, "eval: at most the 11 samples the indices select");
    jobspec_free(&js);
    parse("{\"type\":\"eval\",\"dataset\":\"d\",\"batch_size\":64}", &js);
    ok(stage_effective_batch(&js, 20) == 20 && stage_effective_batch(&js, 200) == 64,
       "eval of a split: at most the dataset's samples");
    jobspec_free(&js);
    parse("{\"type\":\"debug\",\"dataset\":\"d\",\"batch_size\":64}", &js);
    ok(stage_effective_batch(&js, 10) == 9, "debug: at most the training split");
    jobspec_free(&js);
    parse("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"u8_hwc_b64\":\"AQID\",\"height\":1,\"width\":1}]}", &js);
    ok(stage_effective_batch(&js, 1000) == 1, "infer: at most its inputs");
    jobspec_free(&js);

    /* ---- the estimate of a job against what its stage really holds ---- */
    snprintf(root, sizeof root, "/tmp/traind-test-memory-XXXXXX");
    if (!mkdtemp(root)) { printf("Bail out! mkdtemp\n"); return 1; }
    char dsdir[512];
    snprintf(dsdir, sizeof dsdir, "%s/ds", root);
    ds_info_t info;
    ds_layout_t lay;
    err[0] = 0;
    ok(synth_generate(dsdir, 64, 28, 5, 50, NULL, err, sizeof err) == 0 && ds_scan(dsdir, &info, err, sizeof err) == 0,
       "a 64-sample dataset (%s)", err);
    ds_layout_for(&lay, &info);
    ds_base = cpu->alloc(cpu, lay.total);
    ok(ds_base && dataset_load(cpu, dsdir, &info, ds_base, &lay, NULL, NULL, NULL, NULL, err, sizeof err) == 0,
       "loaded (%s)", err);
    dataset_view(&ds, ds_base, &lay);

    parse("{\"type\":\"train\",\"dataset\":\"d\",\"model\":{\"backbone\":\"dinov2-tiny\"},\"batch_size\":4096}", &js);
    model_config_by_name("dinov2-tiny", 0, &cfg, err, sizeof err);
    stage_mem_t asked, eff;
    stage_memory_estimate(&js, &cfg, 28, 28, &asked, err, sizeof err);
    js.batch_size = stage_effective_batch(&js, 64);
    stage_memory_estimate(&js, &cfg, 28, 28, &eff, err, sizeof err);
    ok(eff.activations * 60 < asked.activations && eff.params == asked.params,
       "batch 4096 would need %.1f MB of activations; the effective 58 needs %.2f MB", asked.activations / 1e6,
       eff.activations / 1e6);
    jobspec_free(&js);
    check_stage("{\"type\":\"train\",\"dataset\":\"d\",\"model\":{\"backbone\":\"dinov2-tiny\"},\"batch_size\":4096,"
                "\"steps\":2,\"eval_every\":0,\"checkpoint_every\":0}", "train, batch_size 4096 on 64 samples");
    check_stage("{\"type\":\"eval\",\"dataset\":\"d\",\"model\":{\"backbone\":\"dinov2-tiny\"},\"batch_size\":16}",
                "eval");
    check_stage("{\"type\":\"debug\",\"dataset\":\"d\",\"model\":{\"backbone\":\"dinov2-tiny\"},\"batch_size\":8}",
                "debug");
    check_stage("{\"type\":\"infer\",\"dataset\":\"d\",\"model\":{\"backbone\":\"dinov2-tiny\"},\"indices\":[[0,20]],"
                "\"outputs\":[\"patch_tokens\"],\"batch_size\":8}", "infer with patch tokens");

    cpu->free(cpu, ds_base);
    ds_info_free(&info);
    fs_rm_rf(root, NULL, 0);
    cpu->destroy(cpu);
    return tap_done();
}
