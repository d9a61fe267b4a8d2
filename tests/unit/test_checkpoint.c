/* tests/unit/test_checkpoint.c — traind checkpoint directories: save -> load
 * gives bit-identical parameters, optimizer moments, state and outputs; a
 * checkpoint is accepted as HF weights (model_load_hf_dir, traind forward,
 * another working size); saving replaces atomically and leaves no temporary
 * directory; bad checkpoints (missing file or tensor, wrong shape, truncated
 * safetensors, bad config.json, wrong hidden_act, mismatched config, bad
 * state.json, missing heads or optimizer) give clear errors, never a crash;
 * the lifecycle of store/checkpoint.h: records with sums only under the root,
 * pruning (newest K, best, in use), deletion (record first), the sweeps. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "gpu/backend.h"
#include "gpu/forward.h"
#include "gpu/model.h"
#include "gpu/checkpoint.h"
#include "store/fsutil.h"
#include "store/safetensors.h"
#include "store/sha256.h"
#include "tests/tap.h"

#define B 2
#define IMG 28

static char root[256];
static backend_t *be;

static model_t *make_model(const model_config_t *cfg, int img, int freeze, int optimizer) {
    char err[512];
    model_opts_t mo = {.image_h = img, .image_w = img, .max_batch = B, .cdt = DT_F32,
                       .grads = optimizer, .optimizer = optimizer, .freeze_layers = freeze, .want_hidden = 1};
    model_t *m = model_create(be, cfg, &mo, err, sizeof err);
    if (!m) diag("model_create: %s", err);
    return m;
}

static float *dev_images(int img) {
    size_t n = (size_t)B * 3 * img * img;
    float *h = malloc(n * sizeof *h);
    for (size_t k = 0; k < n; k++) h[k] = (float)((k * 2654435761u) % 1000) / 500.0f - 1.0f;
    float *d = be->alloc(be, n * 4);
    be->upload(be, d, h, n * 4);
    free(h);
    return d;
}

/* Forward and copy out pred, conf, pooler. */
static void outputs(model_t *m, const float *imgs, float *out, size_t *n) {
    char err[256];
    if (model_forward(m, imgs, DT_F32, NULL, B, 1, err, sizeof err) < 0) { diag("%s", err); *n = 0; return; }
    size_t k = 0, D = (size_t)m->cfg.hidden;
    if (m->cfg.head_hand) {
        be->download(be, out + k, m->pred, B * 63 * 4); k += B * 63;
        be->download(be, out + k, m->conf_logit, B * 21 * 4); k += B * 21;
    }
    be->download(be, out + k, m->pooler, B * D * 4); k += B * D;
    *n = k;
}

static int run(const char *cmd) { return system(cmd); }

static int count_tmp_dirs(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) n++;
    closedir(d);
    return n;
}

/* Rewrites src/model.safetensors into dst without tensor `drop` and with
 * tensor `reshape` given shape [n] (reading n values of zeros). */
static int rewrite_model(const char *src, const char *dst, const char *drop, const char *reshape, int64_t n) {
    char err[512], p[800];
    snprintf(p, sizeof p, "%s/model.safetensors", src);
    st_file_t *f = st_open(p, err, sizeof err);
    if (!f) { diag("%s", err); return -1; }
    st_writer_t *w = st_writer_new();
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor_t *t = st_get(f, i);
        if (drop && strcmp(t->name, drop) == 0) continue;
        if (reshape && strcmp(t->name, reshape) == 0) {
            float *z = calloc((size_t)n, sizeof *z);
            st_writer_add(w, t->name, ST_F32, 1, &n, z);
            free(z);
            continue;
        }
        void *buf = malloc(t->nbytes + 1);
        st_read(f, t, buf, err, sizeof err);
        st_writer_add(w, t->name, t->dtype, t->rank, t->shape, buf);
        free(buf);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dst);
    int rc = st_writer_write(w, p, err, sizeof err);
    st_writer_free(w);
    st_close(f);
    return rc;
}

/* Rewrites src/model.safetensors into dst with every tensor stored as BF16 (as HF bf16 checkpoints). */
static int rewrite_model_bf16(const char *src, const char *dst) {
    char err[512], p[800];
    snprintf(p, sizeof p, "%s/model.safetensors", src);
    st_file_t *f = st_open(p, err, sizeof err);
    if (!f) { diag("%s", err); return -1; }
    st_writer_t *w = st_writer_new();
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor_t *t = st_get(f, i);
        float *buf = malloc(t->nbytes + 4);
        bf16 *hb = malloc((size_t)t->numel * 2 + 2);
        st_read_f32(f, t, buf, err, sizeof err);
        for (int64_t k = 0; k < t->numel; k++) hb[k] = f32_to_bf16(buf[k]);
        st_writer_add(w, t->name, ST_BF16, t->rank, t->shape, hb);
        free(buf);
        free(hb);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dst);
    int rc = st_writer_write(w, p, err, sizeof err);
    st_writer_free(w);
    st_close(f);
    return rc;
}

/* Sets a top-level boolean in dir/config.json. */
static void config_set_bool(const char *dir, const char *key, int v) {
    char p[800];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *j = json_load_file(p, 0, NULL);
    if (!j) return;
    json_object_set_new(j, key, json_boolean(v));
    json_dump_file(j, p, JSON_INDENT(2));
    json_decref(j);
}

/* Copies checkpoint dir src to dst (fresh). */
static void copy_ckpt(const char *src, const char *dst) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dst, src, dst);
    if (run(cmd) != 0) diag("copy failed: %s", cmd);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char p[800];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) { fputs(text, f); fclose(f); }
}

/* Loads dir into a fresh model like `good` expecting failure with `want` in the message. */
static void expect_fail(const model_config_t *cfg, const char *dir, int load_opt, const char *want, const char *what) {
    char err[1024] = "";
    model_t *m = make_model(cfg, IMG, 1, 1);
    json_t *st = NULL;
    int rc = m ? ckpt_load(dir, m, load_opt, &st, err, sizeof err) : 0;
    ok(rc < 0 && strstr(err, want) != NULL, "bad checkpoint (%s) rejected: %s", what, err);
    json_decref(st);
    model_free(m);
}

/* ckpt_sweep_tmp: only never-renamed temporary directories go. */
static void test_sweep(const char *dir) {
    char base[300], cmd[4096], err[256];
    snprintf(base, sizeof base, "%s/sweep", dir);
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/j-1/.2.tmp.abc' '%s/j-1/4' '%s/j-2/.6.tmp.x/sub' '%s/.hidden/.1.tmp.y' && "
             "touch '%s/j-1/.2.tmp.abc/model.safetensors' '%s/j-1/4/model.safetensors' '%s/j-2/.6.tmp.x/sub/f' "
             "'%s/loose-file' '%s/j-1/.keep'",
             base, base, base, base, base, base, base, base, base);
    ok(run(cmd) == 0, "sweep fixture");
    char p[800];
    ok(ckpt_sweep_tmp(base, "j-2", err, sizeof err) == 1, "one job's sweep removes its temporary directory");
    snprintf(p, sizeof p, "%s/j-1/.2.tmp.abc", base);
    ok(access(p, F_OK) == 0, "... and leaves the other jobs' alone");
    ok(ckpt_sweep_tmp(base, "../x", err, sizeof err) == -1 && ckpt_sweep_tmp(base, ".", err, sizeof err) == -1,
       "a job id that is a path is refused (%s)", err);
    ok(ckpt_sweep_tmp(base, "j-none", err, sizeof err) == 0, "a job without checkpoints: nothing to sweep");
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/j-2/.6.tmp.x/sub'", base);
    ok(run(cmd) == 0, "sweep fixture again");
    int n = ckpt_sweep_tmp(base, NULL, err, sizeof err);
    ok(n == 2, "two temporary directories removed (%d%s%s)", n, n < 0 ? ": " : "", n < 0 ? err : "");
    snprintf(p, sizeof p, "%s/j-1/4/model.safetensors", base);
    ok(access(p, F_OK) == 0, "a finished checkpoint is kept");
    snprintf(p, sizeof p, "%s/j-1/.keep", base);
    ok(access(p, F_OK) == 0, "a dot file that is not a temporary directory is kept");
    snprintf(p, sizeof p, "%s/.hidden/.1.tmp.y", base);
    ok(access(p, F_OK) == 0, "nothing outside <root>/<job>/ is touched");
    snprintf(p, sizeof p, "%s/j-2/.6.tmp.x", base);
    ok(access(p, F_OK) != 0, "a nested temporary directory is gone with its contents");
    ok(ckpt_sweep_tmp(base, NULL, err, sizeof err) == 0, "a second sweep finds nothing");
    snprintf(p, sizeof p, "%s/no-such-root", base);
    ok(ckpt_sweep_tmp(p, NULL, err, sizeof err) == 0, "a missing root is nothing to sweep");
}

/* ---- the lifecycle (store/checkpoint.h) ------------------------------------------------- */
static void put_file(const char *dir, const char *name, const char *text) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    fs_mkdir_p(dir, 0755, NULL, 0);
    fs_write_file_atomic(p, text, strlen(text), NULL, 0);
}

static int exists(const char *fmt, const char *a, const char *b) {
    char p[1024];
    snprintf(p, sizeof p, fmt, a, b);
    return access(p, F_OK) == 0;
}

static int has_record(store_t *s, const char *id) {
    json_t *c = NULL;
    char err[256];
    int rc = store_checkpoint_get(s, id, &c, err, sizeof err);
    json_decref(c);
    return rc == STORE_OK;
}

/* Record with sums and only under the root; prune keeps the newest K and the
 * best and never one another job needs; delete refuses one in use and removes
 * the record, then the files (only under the root); the start-up sweep removes
 * only unrecorded directories older than the newest record. */
static void test_lifecycle(const char *dir) {
    char base[300], cr[400], dbp[400], jd[500], d[600], err[512], warn[512];
    snprintf(base, sizeof base, "%s/life", dir);
    snprintf(cr, sizeof cr, "%s/checkpoints", base);
    snprintf(dbp, sizeof dbp, "%s/traind.db", base);
    fs_mkdir_p(cr, 0755, NULL, 0);
    store_t *s = store_open(dbp, err, sizeof err);
    if (!ok(s != NULL, "lifecycle: store (%s)", s ? "" : err)) return;
    json_t *spec = json_pack("{s:s}", "type", "train"), *plan = json_object(), *job = NULL;
    int created = 0;
    store_job_insert(s, JOB_TRAIN, "ds", 0, NULL, spec, plan, &job, &created, err, sizeof err);
    char jid[32];
    snprintf(jid, sizeof jid, "%s", json_string_value(json_object_get(job, "id")));
    json_decref(job);
    json_decref(spec);
    snprintf(jd, sizeof jd, "%s/%s", cr, jid);

    /* five checkpoints, steps 10..50; step 20 has the best val_mpjpe */
    const double val[5] = {40, 10, 30, 35, 25};
    char ids[5][32];
    int sums_ok = 1;
    for (int k = 0; k < 5; k++) {
        char w[32];
        snprintf(d, sizeof d, "%s/%d", jd, (k + 1) * 10);
        snprintf(w, sizeof w, "weights-%d", k);
        put_file(d, "model.safetensors", w);
        put_file(d, "config.json", "{}");
        json_t *m = json_pack("{s:f}", "val_mpjpe", val[k]), *rec = NULL;
        int rc = ckpt_record(s, cr, jid, d, (k + 1) * 10, m, &rec, warn, sizeof warn, err, sizeof err);
        char hex[65];
        sha256_buf(w, strlen(w), hex, NULL, 0);
        sums_ok &= rc == STORE_OK && !warn[0] && strcmp(json_string_value(json_object_get(rec, "sha256")), hex) == 0 &&
                   json_array_size(json_object_get(rec, "files")) == 2 &&
                   json_integer_value(json_object_get(rec, "bytes")) == (json_int_t)(strlen(w) + 2) &&
                   strcmp(json_string_value(json_object_get(json_array_get(json_object_get(rec, "files"), 0), "name")),
                          "config.json") == 0;
        snprintf(ids[k], sizeof ids[k], "%s", rc == STORE_OK ? json_string_value(json_object_get(rec, "id")) : "");
        json_decref(rec);
        json_decref(m);
    }
    ok(sums_ok, "five checkpoints recorded with the SHA-256 of every file, sorted by name");
    {   /* more files than are summed at a time (8; then the other 2): every sum, in name order */
        static const char *fn[10] = {"z.bin", "state.json", "optimizer.safetensors", "model.safetensors",
                                     "config.json", "a.txt", "b.txt", "c.txt", "d.txt", "e.txt"};
        static const char *sorted[10] = {"a.txt", "b.txt", "c.txt", "config.json", "d.txt", "e.txt",
                                         "model.safetensors", "optimizer.safetensors", "state.json", "z.bin"};
        snprintf(d, sizeof d, "%s/%d", jd, 55);
        for (int i = 0; i < 10; i++) put_file(d, fn[i], fn[i]);   /* each file holds its own name */
        json_t *rec6 = NULL;
        int good = ckpt_record(s, cr, jid, d, 55, NULL, &rec6, warn, sizeof warn, err, sizeof err) == STORE_OK &&
                   !warn[0];
        const json_t *files = json_object_get(rec6, "files");
        good = good && json_array_size(files) == 10;
        for (int i = 0; good && i < 10; i++) {
            char hex[65];
            sha256_buf(sorted[i], strlen(sorted[i]), hex, NULL, 0);
            const json_t *f = json_array_get(files, i);
            good = strcmp(json_string_value(json_object_get(f, "name")), sorted[i]) == 0 &&
                   strcmp(json_string_value(json_object_get(f, "sha256")), hex) == 0 &&
                   json_integer_value(json_object_get(f, "bytes")) == (json_int_t)strlen(sorted[i]);
        }
        char mh[65];
        sha256_buf("model.safetensors", strlen("model.safetensors"), mh, NULL, 0);
        ok(good && strcmp(json_string_value(json_object_get(rec6, "sha256")), mh) == 0,
           "a checkpoint of ten files: each file's SHA-256 and size, in name order, the model's as the record's");
        const char *id6 = json_string_value(json_object_get(rec6, "id"));
        if (id6) store_checkpoint_delete(s, id6, err, sizeof err);
        json_decref(rec6);
        char e2[256];
        fs_rm_rf(d, e2, sizeof e2);
    }
    json_t *rec = NULL;
    snprintf(d, sizeof d, "%s/%d", jd, 50);
    ok(ckpt_record(s, cr, jid, d, 50, NULL, &rec, warn, sizeof warn, err, sizeof err) == STORE_OK &&
       strcmp(json_string_value(json_object_get(rec, "id")), ids[4]) == 0, "the same directory again keeps its one record");
    json_decref(rec);
    snprintf(d, sizeof d, "%s/outside/60", base);
    put_file(d, "model.safetensors", "x");
    ok(ckpt_record(s, cr, jid, d, 60, NULL, &rec, warn, sizeof warn, err, sizeof err) != STORE_OK && rec == NULL &&
       strstr(err, "not under"), "a directory outside the root is not recorded: %s", err);
    char link[700];
    snprintf(link, sizeof link, "%s/70", jd);
    ok(symlink(d, link) == 0 && ckpt_record(s, cr, jid, link, 70, NULL, &rec, warn, sizeof warn, err, sizeof err) != STORE_OK,
       "nor a symlink under the root that leads outside it");
    unlink(link);
    ok(ckpt_record(s, cr, jid, NULL, 1, NULL, &rec, warn, sizeof warn, err, sizeof err) != STORE_OK, "nor no directory");

    /* the job runs resumed from step 10's checkpoint; a queued eval needs step 30's */
    json_t *x = json_pack("{s:s}", "resume_checkpoint", ids[0]);
    store_job_set_state(s, jid, JOB_QUEUED, JOB_RUNNING, x, err, sizeof err);
    json_decref(x);
    json_t *espec = json_pack("{s:s, s:s}", "type", "eval", "checkpoint", ids[2]);
    store_job_insert(s, JOB_EVAL, "ds", 0, NULL, espec, plan, &job, &created, err, sizeof err);
    char eid[32];
    snprintf(eid, sizeof eid, "%s", json_string_value(json_object_get(job, "id")));
    json_decref(job);
    json_decref(espec);
    json_t *pruned = NULL;
    json_t *newest = json_pack("{s:f}", "val_mpjpe", 25.0);
    ok(ckpt_prune(s, cr, jid, 2, newest, &pruned, err, sizeof err) == STORE_OK && json_array_size(pruned) == 1 &&
       strcmp(json_string_value(json_array_get(pruned, 0)), ids[0]) == 0,
       "keep 2: only step 10 pruned (its own resume checkpoint; 30 is needed, 20 is the best, 40 and 50 the newest)");
    json_decref(pruned);
    json_decref(newest);
    ok(!has_record(s, ids[0]) && !exists("%s/%s", jd, "10"), "the pruned checkpoint's record and files are gone");
    ok(has_record(s, ids[1]) && has_record(s, ids[2]) && has_record(s, ids[3]) && has_record(s, ids[4]) &&
       exists("%s/%s", jd, "20") && exists("%s/%s", jd, "30"), "the kept ones are whole");
    ok(ckpt_prune(s, cr, jid, 0, NULL, &pruned, err, sizeof err) == STORE_OK && json_array_size(pruned) == 0,
       "keep 0 prunes nothing");
    json_decref(pruned);

    /* delete */
    ok(ckpt_delete(s, cr, ids[2], &rec, warn, sizeof warn, err, sizeof err) == STORE_CONFLICT &&
       strstr(err, "needed by 1") && has_record(s, ids[2]) && exists("%s/%s", jd, "30"),
       "deleting one a queued job needs: conflict, nothing removed (%s)", err);
    ok(ckpt_delete(s, cr, "c-999999", &rec, warn, sizeof warn, err, sizeof err) == STORE_NOTFOUND &&
       strstr(err, "c-999999"), "deleting an unknown one: not found (%s)", err);
    store_job_set_state(s, eid, JOB_QUEUED, JOB_CANCELLED, NULL, err, sizeof err);
    ok(ckpt_delete(s, cr, ids[2], &rec, warn, sizeof warn, err, sizeof err) == STORE_OK && !warn[0] &&
       strcmp(json_string_value(json_object_get(rec, "job")), jid) == 0 && !has_record(s, ids[2]) &&
       !exists("%s/%s", jd, "30"), "once no job needs it: record and files deleted");
    json_decref(rec);
    json_t *stray = NULL;
    ok(store_checkpoint_insert(s, jid, 99, d, 1, NULL, NULL, NULL, &stray, err, sizeof err) == STORE_OK &&
       ckpt_delete(s, cr, json_string_value(json_object_get(stray, "id")), NULL, warn, sizeof warn, err, sizeof err) ==
           STORE_OK && exists("%s/%s", d, "model.safetensors"),
       "a record naming a directory outside the root: the record goes, the files outside stay");
    json_decref(stray);

    /* the start-up sweep: unrecorded and older than the newest record (50) — as a
     * crash between a removal's two halves leaves step 20 */
    ok(store_checkpoint_delete(s, ids[1], err, sizeof err) == STORE_OK && exists("%s/%s", jd, "20"),
       "step 20's record deleted, its files left (a crash in the middle of a removal)");
    snprintf(d, sizeof d, "%s/5", jd);
    put_file(d, "model.safetensors", "old");
    snprintf(d, sizeof d, "%s/60", jd);
    put_file(d, "model.safetensors", "pending");
    snprintf(d, sizeof d, "%s/notastep", jd);
    put_file(d, "f", "?");
    snprintf(d, sizeof d, "%s/j-none/3", cr);
    put_file(d, "model.safetensors", "?");
    int n = ckpt_sweep_pruned(s, cr, warn, sizeof warn);
    ok(n == 2 && !warn[0], "the sweep removes two unrecorded directories older than the newest record (%d)", n);
    ok(!exists("%s/%s", jd, "5") && !exists("%s/%s", jd, "20"), "... steps 5 and 20");
    ok(exists("%s/%s", jd, "60") && exists("%s/%s", jd, "notastep") && exists("%s/%s", cr, "j-none/3"),
       "a newer unrecorded one, a non-step entry and a job without records are kept");
    ok(exists("%s/%s", jd, "40") && exists("%s/%s", jd, "50"), "recorded ones are kept");
    ok(ckpt_sweep_pruned(s, cr, warn, sizeof warn) == 0, "a second sweep finds nothing");
    json_decref(plan);
    store_close(s);
}

int main(void) {
    char err[1024];
    be = backend_cpu_create(err, sizeof err);
    if (!ok(be != NULL, "cpu backend")) return tap_done();
    snprintf(root, sizeof root, "/tmp/traind_test_ckpt_%d", (int)getpid());
    fs_rm_rf(root, NULL, 0);
    fs_mkdir_p(root, 0755, NULL, 0);
    char ck[512], parent[400];
    snprintf(parent, sizeof parent, "%s/checkpoints/job1", root);
    snprintf(ck, sizeof ck, "%s/100", parent);

    /* a trained-for-one-step model: registers, block 0 frozen, optimizer state */
    model_config_t cfg;
    model_config_by_name("dinov2-tiny", 4, &cfg, err, sizeof err);
    model_t *m = make_model(&cfg, IMG, 1, 1);
    if (!ok(m != NULL, "model")) return tap_done();
    float mean[63];
    for (int k = 0; k < 63; k++) mean[k] = (k % 3 == 2) ? 0.6f : 0.01f * (float)k;
    model_init(m, 42, mean);
    float *imgs = dev_images(IMG), *joints = be->alloc(be, B * 63 * 4);
    float *dpred = be->alloc(be, B * 63 * 4), *dconf = be->alloc(be, B * 21 * 4);
    float hj[B * 63];
    for (int k = 0; k < B * 63; k++) hj[k] = mean[k % 63] + 0.01f * (float)(k % 7);
    be->upload(be, joints, hj, sizeof hj);
    char e2[256];
    for (int s = 0; s < 2; s++) {
        model_zero_grad(m);
        model_forward(m, imgs, DT_F32, NULL, B, 0, e2, sizeof e2);
        hand_loss_t hl;
        be->hand_loss(be, &hl, dpred, dconf, m->pred, m->conf_logit, joints, NULL, NULL, NULL, B, NULL);
        model_backward(m, dpred, dconf);
        model_adamw_step(m, 1e-3f, 1e-3f, 0.01f, 0.9f, 0.999f, 1e-8f, 1.0f);
    }
    ckpt_meta_t meta = {.freeze_layers = 1, .head_hand = 1, .mean = {0.4f, 0.5f, 0.6f}, .std = {0.2f, 0.25f, 0.3f},
                        .image_h = IMG, .image_w = IMG};
    snprintf(meta.backbone, sizeof meta.backbone, "dinov2-tiny");
    json_t *state = json_pack("{s:i, s:i, s:i, s:s}", "step", 100, "epoch", 3, "position", 17, "rng", "abc123");

    ok(ckpt_save(ck, m, &meta, state, err, sizeof err) == 0, "checkpoint saved (%s)", err);
    const char *files[] = {"model.safetensors", "config.json", "optimizer.safetensors", "state.json"};
    for (int i = 0; i < 4; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", ck, files[i]);
        ok(access(p, R_OK) == 0, "checkpoint has %s", files[i]);
    }
    ok(count_tmp_dirs(parent) == 0, "no temporary directory left next to the checkpoint");

    /* config.json round trip */
    model_config_t c2;
    ckpt_meta_t m2;
    int has = 0;
    ok(ckpt_read_config(ck, &c2, &m2, &has, err, sizeof err) == 0 && has, "config.json read back (%s)", err);
    ok(c2.hidden == 64 && c2.layers == 2 && c2.heads == 2 && c2.registers == 4 && c2.patch == 14 &&
       c2.image_size == IMG && c2.layer_norm_eps == 1e-6f && c2.head_hand == 1 && c2.initializer_range == 0.05f,
       "config: hidden/layers/heads/registers/patch/image_size/eps/heads/initializer_range round-trip");
    ok(strcmp(m2.backbone, "dinov2-tiny") == 0 && m2.freeze_layers == 1 && m2.mean[1] == 0.5f &&
       m2.std[2] == 0.3f && m2.image_h == IMG && m2.image_w == IMG, "traind fields round-trip");
    {
        char p[600];
        snprintf(p, sizeof p, "%s/config.json", ck);
        char *t = fs_read_file(p, 1 << 20, NULL, NULL, 0);
        if (!ok(t && strstr(t, "\"model_type\": \"dinov2_with_registers\"") && (strstr(t, "\"layer_norm_eps\": 1e-6,") || strstr(t, "\"layer_norm_eps\": 1e-06,")) &&
           strstr(t, "\"hidden_act\": \"gelu\"") && strstr(t, "\"num_register_tokens\": 4"),
           "config.json is a HF Dinov2 config (model_type, eps, hidden_act, registers)"))
            diag("%s", t ? t : "(none)");
        free(t);
    }

    /* load into a fresh model: bit-identical parameters, moments, outputs */
    model_t *m3 = make_model(&c2, IMG, m2.freeze_layers, 1);
    model_init(m3, 999, NULL);   /* different weights before loading */
    json_t *st3 = NULL;
    ok(ckpt_load(ck, m3, 1, &st3, err, sizeof err) == 0, "checkpoint loaded (%s)", err);
    ok(st3 && json_equal(st3, state), "state.json round-trips");
    ok(m3->adam_step == 2, "optimizer step restored (%ld)", m3->adam_step);
    {
        size_t np = m->n_params, nt = np - m->train_off;
        float *a = malloc(np * 4), *b = malloc(np * 4);
        be->download(be, a, m->params, np * 4);
        be->download(be, b, m3->params, np * 4);
        ok(np == m3->n_params && memcmp(a, b, np * 4) == 0, "parameters bit-identical");
        be->download(be, a, m->adam_m, nt * 4);
        be->download(be, b, m3->adam_m, nt * 4);
        int same = memcmp(a, b, nt * 4) == 0;
        be->download(be, a, m->adam_v, nt * 4);
        be->download(be, b, m3->adam_v, nt * 4);
        same = same && memcmp(a, b, nt * 4) == 0;
        ok(same, "AdamW moments bit-identical");
        free(a);
        free(b);
    }
    float o1[4096], o2[4096];
    size_t n1 = 0, n2 = 0;
    outputs(m, imgs, o1, &n1);
    outputs(m3, imgs, o2, &n2);
    ok(n1 > 0 && n1 == n2 && memcmp(o1, o2, n1 * 4) == 0, "outputs bit-identical after save/load (%zu values)", n1);
    json_decref(st3);

    /* a traind checkpoint is HF weights too: backbone + heads through model_load_hf_dir */
    model_t *m4 = make_model(&c2, IMG, 0, 0);
    model_init(m4, 5, NULL);
    ok(model_load_hf_dir(m4, ck, err, sizeof err) == 0 && m4->heads_loaded, "checkpoint loads as weights with its heads (%s)", err);
    outputs(m4, imgs, o2, &n2);
    ok(n1 == n2 && memcmp(o1, o2, n1 * 4) == 0, "same outputs through model_load_hf_dir");
    model_free(m4);

    /* ... at another working size (position table interpolated) */
    model_t *m5 = make_model(&c2, 42, 0, 0);
    ok(m5 && model_load_hf_dir(m5, ck, err, sizeof err) == 0 && m5->T == 1 + 4 + 9,
       "checkpoint loads at 42 px (%s)", err);
    model_free(m5);

    /* ... and through traind forward (backbone only) */
    {
        char in[600], out[600];
        snprintf(in, sizeof in, "%s/in.safetensors", root);
        snprintf(out, sizeof out, "%s/out.safetensors", root);
        float *hx = malloc((size_t)B * 3 * IMG * IMG * 4);
        be->download(be, hx, imgs, (size_t)B * 3 * IMG * IMG * 4);
        st_writer_t *w = st_writer_new();
        int64_t sh[4] = {B, 3, IMG, IMG};
        st_writer_add(w, "pixel_values", ST_F32, 4, sh, hx);
        st_writer_write(w, in, err, sizeof err);
        st_writer_free(w);
        free(hx);
        forward_opts_t fo = {.weights = ck, .input = in, .out = out, .precision = "fp32", .backend = "cpu"};
        ok(forward_run(&fo, err, sizeof err) == 0, "traind forward on a traind checkpoint (%s)", err);
        st_file_t *f = st_open(out, err, sizeof err);
        const st_tensor_t *t = f ? st_find(f, "pooler_output") : NULL;
        float pool[B * 64];
        int same = t && t->numel == B * 64 && st_read(f, t, pool, err, sizeof err) == 0 &&
                   memcmp(pool, o1 + B * 84, sizeof pool) == 0;
        ok(same, "traind forward pooler_output equals the model's");
        st_close(f);
    }

    /* saving again over the same directory replaces it atomically */
    json_t *state2 = json_pack("{s:i}", "step", 200);
    ok(ckpt_save(ck, m, &meta, state2, err, sizeof err) == 0, "checkpoint replaced in place (%s)", err);
    json_t *st4 = NULL;
    model_t *m6 = make_model(&c2, IMG, 1, 1);
    ok(ckpt_load(ck, m6, 1, &st4, err, sizeof err) == 0 && json_equal(st4, state2), "the new state is read back");
    ok(count_tmp_dirs(parent) == 0, "no temporary directory left after replacing");
    json_decref(st4);
    json_decref(state2);
    model_free(m6);

    /* a non-square working size cannot be saved as a HF position table */
    {
        model_opts_t mo = {.image_h = 28, .image_w = 42, .max_batch = 1, .cdt = DT_F32};
        model_t *mr = model_create(be, &cfg, &mo, err, sizeof err);
        model_init(mr, 1, NULL);
        char d[600];
        snprintf(d, sizeof d, "%s/rect", root);
        ok(ckpt_save(d, mr, NULL, NULL, err, sizeof err) < 0 && strstr(err, "square") && access(d, F_OK) != 0,
           "non-square save refused (%s)", err);
        model_free(mr);
    }

    /* bad checkpoints */
    char bad[600], cmd[2400];
    snprintf(bad, sizeof bad, "%s/bad", root);

    copy_ckpt(ck, bad);
    snprintf(cmd, sizeof cmd, "rm '%s/model.safetensors'", bad);
    run(cmd);
    expect_fail(&c2, bad, 1, "model.safetensors", "missing model.safetensors");

    copy_ckpt(ck, bad);
    rewrite_model(ck, bad, "encoder.layer.1.mlp.fc2.weight", NULL, 0);
    expect_fail(&c2, bad, 1, "missing tensor \"encoder.layer.1.mlp.fc2.weight\"", "missing tensor");

    copy_ckpt(ck, bad);
    rewrite_model(ck, bad, NULL, "layernorm.weight", 63);
    expect_fail(&c2, bad, 1, "\"layernorm.weight\" has shape [63], expected [64]", "wrong shape");
    {
        /* a rejected file leaves the model as it was */
        model_t *mu = make_model(&c2, IMG, 0, 0);
        model_init(mu, 77, NULL);
        size_t np = mu->n_params;
        float *a = malloc(np * 4), *b = malloc(np * 4);
        be->download(be, a, mu->params, np * 4);
        ok(model_load_hf_dir(mu, bad, err, sizeof err) < 0, "model_load_hf_dir rejects it too");
        be->download(be, b, mu->params, np * 4);
        ok(memcmp(a, b, np * 4) == 0, "a rejected file changes no parameter");
        free(a);
        free(b);
        model_free(mu);
    }

    copy_ckpt(ck, bad);
    rewrite_model(ck, bad, NULL, "embeddings.position_embeddings", 10);
    expect_fail(&c2, bad, 1, "position_embeddings", "wrong position table shape");

    copy_ckpt(ck, bad);
    snprintf(cmd, sizeof cmd, "truncate -s 200000 '%s/model.safetensors'", bad);
    run(cmd);
    expect_fail(&c2, bad, 1, "model.safetensors", "truncated model.safetensors");

    copy_ckpt(ck, bad);
    snprintf(cmd, sizeof cmd, "truncate -s 100 '%s/optimizer.safetensors'", bad);
    run(cmd);
    expect_fail(&c2, bad, 1, "optimizer.safetensors", "truncated optimizer.safetensors");

    copy_ckpt(ck, bad);
    snprintf(cmd, sizeof cmd, "rm '%s/optimizer.safetensors'", bad);
    run(cmd);
    expect_fail(&c2, bad, 1, "optimizer.safetensors", "missing optimizer.safetensors");
    {
        model_t *mw = make_model(&c2, IMG, 1, 1);
        err[0] = '\0';
        ok(ckpt_load(bad, mw, 0, NULL, err, sizeof err) == 0, "without optimizer state it loads as weights (%s)", err);
        model_free(mw);
    }

    /* broken or foreign config.json: {file text, words the error must hold, case} */
    static const char *const bad_configs[][3] = {
        {"{\"model_type\": \"dinov2\", \"hidden_size\": 64,", "bad JSON", "truncated config.json"},
        {"{\"model_type\":\"dinov2_with_registers\",\"hidden_size\":64,\"num_hidden_layers\":2,"
         "\"num_attention_heads\":2,\"num_register_tokens\":4,\"image_size\":28,\"hidden_act\":\"relu\"}",
         "hidden_act \"relu\"", "hidden_act relu"},
        {"{\"model_type\":\"dinov2_with_registers\",\"hidden_size\":64,\"num_hidden_layers\":2,"
         "\"num_attention_heads\":2,\"num_register_tokens\":4,\"use_swiglu_ffn\":true}",
         "use_swiglu_ffn", "SwiGLU"},
        {"{\"model_type\":\"vit\",\"hidden_size\":64}", "model_type \"vit\"", "other model_type"},
        {"{\"model_type\":\"dinov2_with_registers\",\"hidden_size\":128,\"num_hidden_layers\":2,"
         "\"num_attention_heads\":2,\"num_register_tokens\":4}", "hidden 128", "config of another size"},
        {"{\"model_type\":\"dinov2_with_registers\",\"num_hidden_layers\":2}", "hidden_size",
         "config without hidden_size"},
    };
    for (size_t k = 0; k < sizeof bad_configs / sizeof bad_configs[0]; k++) {
        copy_ckpt(ck, bad);
        write_text(bad, "config.json", bad_configs[k][0]);
        expect_fail(&c2, bad, 1, bad_configs[k][1], bad_configs[k][2]);
    }

    copy_ckpt(ck, bad);
    write_text(bad, "state.json", "[1,2");
    expect_fail(&c2, bad, 1, "state.json", "bad state.json");

    copy_ckpt(ck, bad);
    snprintf(cmd, sizeof cmd, "rm '%s/state.json'", bad);
    run(cmd);
    expect_fail(&c2, bad, 1, "state.json", "missing state.json");


    /* HF checkpoints in bf16 load too: parameters are exactly the bf16 values */
    copy_ckpt(ck, bad);
    rewrite_model_bf16(ck, bad);
    {
        model_t *mb = make_model(&c2, IMG, 1, 1);
        err[0] = '\0';
        ok(ckpt_load(bad, mb, 0, NULL, err, sizeof err) == 0, "BF16 model.safetensors loads (%s)", err);
        size_t np = m->n_params;
        float *a = malloc(np * 4), *b = malloc(np * 4);
        be->download(be, a, m->params, np * 4);
        be->download(be, b, mb->params, np * 4);
        int exact = 1;
        for (size_t k = 0; k < np; k++)
            if (b[k] != bf16_round(a[k])) exact = 0;
        ok(exact, "BF16 tensors are widened exactly");
        free(a);
        free(b);
        model_free(mb);
    }

    /* the mask token may be absent only where the config says use_mask_token false */
    copy_ckpt(ck, bad);
    rewrite_model(ck, bad, "embeddings.mask_token", NULL, 0);
    expect_fail(&c2, bad, 1, "missing tensor \"embeddings.mask_token\"", "missing mask_token");
    config_set_bool(bad, "use_mask_token", 0);
    {
        model_t *mk = make_model(&c2, IMG, 1, 1);
        err[0] = '\0';
        ok(ckpt_load(bad, mk, 1, NULL, err, sizeof err) == 0, "no mask_token with use_mask_token false loads (%s)", err);
        model_free(mk);
    }

    /* a HF directory has no heads: not a traind checkpoint for a model with a hand head */
    {
        char hf[600];
        snprintf(hf, sizeof hf, "%s/hf", root);
        copy_ckpt(ck, hf);
        rewrite_model(ck, hf, NULL, NULL, 0);
        snprintf(bad, sizeof bad, "%s/hf_noheads", root);
        fs_mkdir_p(bad, 0755, NULL, 0);
        snprintf(cmd, sizeof cmd, "cp '%s/config.json' '%s/state.json' '%s/'", hf, hf, bad);
        run(cmd);
        /* drop every heads.* tensor */
        char p[700];
        snprintf(p, sizeof p, "%s/model.safetensors", hf);
        st_file_t *f = st_open(p, err, sizeof err);
        st_writer_t *w = st_writer_new();
        for (int i = 0; f && i < st_count(f); i++) {
            const st_tensor_t *t = st_get(f, i);
            if (strncmp(t->name, "heads.", 6) == 0) continue;
            void *buf = malloc(t->nbytes + 1);
            st_read(f, t, buf, err, sizeof err);
            st_writer_add(w, t->name, t->dtype, t->rank, t->shape, buf);
            free(buf);
        }
        st_close(f);
        snprintf(p, sizeof p, "%s/model.safetensors", bad);
        st_writer_write(w, p, err, sizeof err);
        st_writer_free(w);
        expect_fail(&c2, bad, 0, "heads", "HF backbone without heads");
        model_t *mh = make_model(&c2, IMG, 0, 0);
        model_init(mh, 3, NULL);
        err[0] = '\0';
        ok(model_load_hf_dir(mh, bad, err, sizeof err) == 0 && !mh->heads_loaded,
           "... but it loads as pretrained backbone weights, heads left as initialized (%s)", err);
        /* fresh heads on a pretrained backbone: model_init_heads never touches the backbone */
        size_t np = mh->n_params;
        float *a = malloc(np * 4), *b = malloc(np * 4);
        be->download(be, a, mh->params, np * 4);
        model_init_heads(mh, 1234, NULL);
        be->download(be, b, mh->params, np * 4);
        size_t head0 = mh->table[model_find_param(mh, "heads.hand.joints.fc1.weight")].off;
        ok(memcmp(a, b, head0 * 4) == 0 && memcmp(a + head0, b + head0, (np - head0) * 4) != 0,
           "model_init_heads re-initializes the heads only, the pretrained backbone stays");
        free(a);
        free(b);
        model_free(mh);
    }
    /* partial heads are an error naming the missing one */
    copy_ckpt(ck, bad);
    rewrite_model(ck, bad, "heads.hand.conf.fc2.bias", NULL, 0);
    expect_fail(&c2, bad, 1, "heads.hand.conf.fc2.bias", "one head tensor missing");

    json_decref(state);
    be->free(be, imgs); be->free(be, joints); be->free(be, dpred); be->free(be, dconf);
    model_free(m);
    model_free(m3);
    be->destroy(be);
    test_sweep(root);
    test_lifecycle(root);
    fs_rm_rf(root, NULL, 0);
    return tap_done();
}
