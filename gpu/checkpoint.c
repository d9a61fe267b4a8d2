/* gpu/checkpoint.c — a model into a checkpoint directory and back (the format
 * is store/checkpoint.h's).
 *
 * Owns: writing model.safetensors / config.json / optimizer.safetensors /
 * state.json into a temporary directory that is renamed into place
 * (store/fsutil.h), and loading them back with every file validated. The
 * model tensors go through model_load_hf_dir, so a traind checkpoint and a HF
 * directory are loaded by the same code. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gpu/checkpoint.h"
#include "store/hand.h"
#include "store/errbuf.h"
#include "store/fsutil.h"
#include "store/par.h"
#include "store/safetensors.h"

#define CKPT_JSON_MAX (16u << 20)

static const float ckpt_imagenet_mean[3] = HAND_IMAGENET_MEAN;
static const float ckpt_imagenet_std[3] = HAND_IMAGENET_STD;

/* A float as the shortest decimal that reads back as the same float (1e-06, not 9.99999997e-07). */
static json_t *json_float(float f) {
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return json_real(strtod(buf, NULL));
}

static json_t *json_float3(const float v[3]) {
    json_t *a = json_array();
    for (int i = 0; i < 3; i++) json_array_append_new(a, json_float(v[i]));
    return a;
}

static json_t *ckpt_config_json(const model_t *m, const ckpt_meta_t *meta) {
    const model_config_t *c = &m->cfg;
    json_t *j = json_object();
    const int reg = c->registers > 0;
    json_object_set_new(j, "architectures", json_pack("[s]", reg ? "Dinov2WithRegistersModel" : "Dinov2Model"));
    json_object_set_new(j, "model_type", json_string(reg ? "dinov2_with_registers" : "dinov2"));
    json_object_set_new(j, "hidden_size", json_integer(c->hidden));
    json_object_set_new(j, "num_hidden_layers", json_integer(c->layers));
    json_object_set_new(j, "num_attention_heads", json_integer(c->heads));
    json_object_set_new(j, "mlp_ratio", json_integer(c->mlp_ratio));
    json_object_set_new(j, "patch_size", json_integer(c->patch));
    json_object_set_new(j, "image_size", json_integer((json_int_t)m->gh * c->patch));
    json_object_set_new(j, "num_channels", json_integer(3));
    json_object_set_new(j, "layer_norm_eps", json_float(c->layer_norm_eps));
    json_object_set_new(j, "layerscale_value", json_float(c->layerscale_value));
    json_object_set_new(j, "hidden_act", json_string("gelu"));
    json_object_set_new(j, "qkv_bias", json_true());
    json_object_set_new(j, "use_swiglu_ffn", json_false());
    json_object_set_new(j, "use_mask_token", json_true());
    json_object_set_new(j, "drop_path_rate", json_real(0.0));
    json_object_set_new(j, "hidden_dropout_prob", json_real(0.0));
    json_object_set_new(j, "attention_probs_dropout_prob", json_real(0.0));
    json_object_set_new(j, "initializer_range", json_float(c->initializer_range));
    if (reg) json_object_set_new(j, "num_register_tokens", json_integer(c->registers));
    json_object_set_new(j, "torch_dtype", json_string("float32"));

    json_t *t = json_object();
    json_object_set_new(t, "backbone", json_string(meta && meta->backbone[0] ? meta->backbone : ""));
    json_object_set_new(t, "registers", json_integer(c->registers));
    json_object_set_new(t, "freeze_layers", json_integer(meta ? meta->freeze_layers : m->opts.freeze_layers));
    json_t *heads = json_array();
    if (c->head_hand) json_array_append_new(heads, json_string("hand"));
    json_object_set_new(t, "heads", heads);
    json_object_set_new(t, "mean", json_float3(meta ? meta->mean : ckpt_imagenet_mean));
    json_object_set_new(t, "std", json_float3(meta ? meta->std : ckpt_imagenet_std));
    json_object_set_new(t, "image_size", json_pack("[ii]", m->gh * c->patch, m->gw * c->patch));
    json_object_set_new(t, "format", json_integer(1));
    json_object_set_new(j, "traind", t);
    return j;
}

static int ckpt_write_json(const char *dir, const char *name, const json_t *j, size_t flags,
                           char *err, size_t errlen) {
    char path[4096];
    if (fs_join(path, sizeof path, dir, name) < 0) { snprintf(err, errlen, "%s: path too long", dir); return -1; }
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | flags);
    if (!text) { snprintf(err, errlen, "%s: cannot serialize JSON", path); return -1; }
    size_t n = strlen(text);
    int rc = fs_write_file_atomic(path, text, n, err, errlen);
    free(text);
    return rc;
}

/* What a checkpoint holds, in host memory: the tensors (fp32, one buffer:
 * parameters, then the moments m and v of the trainable ones), the two
 * safetensors writers referencing them, config.json and state.json. The
 * buffer is the backend's staging memory (pinned on cuda: the downloads run
 * at the bus's speed) and is kept from one take to the next, so a run's
 * later checkpoints touch no new pages. */
struct ckpt_snap {
    backend_t *be;
    float *buf;                   /* [cap]; from be->host_alloc, or malloc when staging memory ran out */
    size_t cap;                   /* floats */
    int staged;                   /* buf is be->host_alloc's */
    st_writer_t *model, *optim;   /* optim NULL without moments */
    json_t *config, *state;
    size_t bytes;                 /* tensor bytes of the last take */
};

/* Drops what a take built; keeps the buffer. */
static void ckpt_snap_clear(ckpt_snap_t *s) {
    st_writer_free(s->model);
    st_writer_free(s->optim);
    json_decref(s->config);
    json_decref(s->state);
    s->model = s->optim = NULL;
    s->config = s->state = NULL;
    s->bytes = 0;
}

static void ckpt_snap_release(ckpt_snap_t *s) {
    if (s->staged) s->be->host_free(s->be, s->buf);
    else free(s->buf);
    s->buf = NULL;
    s->cap = 0;
    s->staged = 0;
}

ckpt_snap_t *ckpt_snap_new(backend_t *be) {
    ckpt_snap_t *s = calloc(1, sizeof *s);
    if (s) s->be = be;
    return s;
}

void ckpt_snap_free(ckpt_snap_t *s) {
    if (!s) return;
    ckpt_snap_clear(s);
    ckpt_snap_release(s);
    free(s);
}

size_t ckpt_snap_bytes(const ckpt_snap_t *s) { return s->bytes; }

int ckpt_snap_take(ckpt_snap_t *s, model_t *m, const ckpt_meta_t *meta, const json_t *state, char *err,
                   size_t errlen) {
    if (errlen) err[0] = '\0';
    assert(s->be == m->be);
    ckpt_snap_clear(s);
    if (m->gh != m->gw)
        return errbuf_set(err, errlen,
                          "the working image size %dx%d is not square; a HF position table needs a square grid",
                          m->gh * m->cfg.patch, m->gw * m->cfg.patch);
    if (state && !json_is_object(state)) return errbuf_set(err, errlen, "state must be a JSON object");
    backend_t *be = m->be;
    const int moments = m->adam_m && m->adam_v;
    const size_t nt = m->n_params - m->train_off;
    const size_t need = m->n_params + (moments ? 2 * nt : 0);
    if (need > s->cap) {
        ckpt_snap_release(s);
        s->buf = be->host_alloc(be, need * sizeof *s->buf);
        s->staged = s->buf != NULL;
        if (!s->buf) s->buf = malloc(need * sizeof *s->buf);
        if (!s->buf) goto oom;
        s->cap = need;
    }
    /* a copy of its own: the snapshot may be written on another thread */
    s->state = state ? json_deep_copy(state) : json_object();
    s->config = ckpt_config_json(m, meta);
    s->model = st_writer_new();
    if (!s->state || !s->config || !s->model) goto oom;

    /* model.safetensors: every tensor under its HF / heads.* name, fp32 */
    float *hp = s->buf;
    be->download(be, hp, m->params, m->n_params * 4);
    s->bytes = m->n_params * 4;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_param_t *p = &m->table[i];
        st_writer_add_ref(s->model, p->name, ST_F32, p->ndim, p->shape, hp + p->off);
    }
    st_writer_meta(s->model, "format", "pt");

    /* optimizer.safetensors: AdamW moments of the trainable tensors */
    if (moments) {
        float *hm = s->buf + m->n_params, *hv = hm + nt;
        s->optim = st_writer_new();
        if (!s->optim) goto oom;
        be->download(be, hm, m->adam_m, nt * 4);
        be->download(be, hv, m->adam_v, nt * 4);
        s->bytes += 2 * nt * 4;
        char nm[MODEL_NAME_MAX + 4];
        for (int i = 0; i < m->n_tensors; i++) {
            const model_param_t *p = &m->table[i];
            if (p->frozen) continue;
            snprintf(nm, sizeof nm, "m.%s", p->name);
            st_writer_add_ref(s->optim, nm, ST_F32, p->ndim, p->shape, hm + (p->off - m->train_off));
            snprintf(nm, sizeof nm, "v.%s", p->name);
            st_writer_add_ref(s->optim, nm, ST_F32, p->ndim, p->shape, hv + (p->off - m->train_off));
        }
        char step[32];
        snprintf(step, sizeof step, "%ld", m->adam_step);
        st_writer_meta(s->optim, "step", step);
    }
    return 0;
oom:
    ckpt_snap_clear(s);
    return errbuf_set(err, errlen, "out of memory (a checkpoint of %zu parameters)", m->n_params);
}

/* One safetensors file of a snapshot, written on a thread of its own. */
typedef struct {
    st_writer_t *w;
    char path[4096];
    int rc;
    char err[512];
} ckpt_file_job_t;

static void *ckpt_file_job_run(void *arg) {
    ckpt_file_job_t *j = arg;
    j->err[0] = 0;
    j->rc = st_writer_write(j->w, j->path, j->err, sizeof j->err);
    return NULL;
}

int ckpt_snap_write(ckpt_snap_t *s, const char *dir, char *err, size_t errlen) {
    if (errlen) err[0] = '\0';
    assert(s->model && s->config && s->state);   /* taken */
    char tmp[4096];
    if (fs_make_tmpdir_for(dir, tmp, sizeof tmp, err, errlen) < 0) return -1;
    int rc = -1;
    /* the two tensor files side by side (each fsync'd by its writer) */
    ckpt_file_job_t jobs[2];
    int nj = 0;
    st_writer_t *ws[2] = {s->model, s->optim};
    const char *names[2] = {"model.safetensors", "optimizer.safetensors"};
    for (int i = 0; i < 2; i++) {
        if (!ws[i]) continue;
        jobs[nj].w = ws[i];
        if (fs_join(jobs[nj].path, sizeof jobs[nj].path, tmp, names[i]) < 0) {
            snprintf(err, errlen, "%s: path too long", tmp);
            goto out;
        }
        nj++;
    }
    par_run(ckpt_file_job_run, jobs, sizeof jobs[0], nj);
    for (int i = 0; i < nj; i++)
        if (jobs[i].rc < 0) {
            /* named by its place in the checkpoint, not in the temporary directory */
            const char *e = jobs[i].err[0] ? jobs[i].err : "write failed";
            size_t tl = strlen(tmp);
            if (strncmp(e, tmp, tl) == 0 && e[tl] == '/') snprintf(err, errlen, "%s%s", dir, e + tl);
            else snprintf(err, errlen, "%s", e);
            goto out;
        }
    if (ckpt_write_json(tmp, "config.json", s->config, JSON_REAL_PRECISION(10), err, errlen) < 0) goto out;
    if (ckpt_write_json(tmp, "state.json", s->state, 0, err, errlen) < 0) goto out;
    if (fs_rename_dir_atomic(tmp, dir, err, errlen) < 0) goto out;
    rc = 0;
out:
    if (rc < 0) {
        char e2[256];
        fs_rm_rf(tmp, e2, sizeof e2);
    }
    return rc;
}

int ckpt_save(const char *dir, model_t *m, const ckpt_meta_t *meta, const json_t *state,
              char *err, size_t errlen) {
    ckpt_snap_t *s = ckpt_snap_new(m->be);
    if (!s) return errbuf_set(err, errlen, "out of memory");
    int rc = ckpt_snap_take(s, m, meta, state, err, errlen);
    if (rc == 0) rc = ckpt_snap_write(s, dir, err, errlen);
    ckpt_snap_free(s);
    return rc;
}

static json_t *ckpt_read_json(const char *dir, const char *name, char *err, size_t errlen) {
    char path[4096];
    if (fs_join(path, sizeof path, dir, name) < 0) { snprintf(err, errlen, "%s: path too long", dir); return NULL; }
    char ferr[512];
    char *text = fs_read_file_under(dir, name, CKPT_JSON_MAX, NULL, ferr, sizeof ferr);
    if (!text) { snprintf(err, errlen, "%s", ferr); return NULL; }
    json_error_t je;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!j) {   /* jansson's text quotes the file's bytes: not shown */
        snprintf(err, errlen, "%s: bad JSON (line %d, column %d)", path, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        snprintf(err, errlen, "%s: not a JSON object", path);
        json_decref(j);
        return NULL;
    }
    return j;
}

static int ckpt_float3(const json_t *a, float out[3]) {
    if (!json_is_array(a) || json_array_size(a) != 3) return -1;
    for (int i = 0; i < 3; i++) {
        json_t *v = json_array_get(a, (size_t)i);
        if (!json_is_number(v)) return -1;
        out[i] = (float)json_number_value(v);
    }
    return 0;
}

int ckpt_read_config(const char *dir, model_config_t *cfg, ckpt_meta_t *meta, int *has_meta,
                     char *err, size_t errlen) {
    json_t *j = ckpt_read_json(dir, "config.json", err, errlen);
    if (!j) return -1;
    char cerr[512];
    if (model_config_from_hf_json(j, cfg, cerr, sizeof cerr) < 0) {
        snprintf(err, errlen, "%s/config.json: %s", dir, cerr + (strncmp(cerr, "config.json: ", 13) ? 0 : 13));
        json_decref(j);
        return -1;
    }
    ckpt_meta_t mt;
    memset(&mt, 0, sizeof mt);
    memcpy(mt.mean, ckpt_imagenet_mean, sizeof mt.mean);
    memcpy(mt.std, ckpt_imagenet_std, sizeof mt.std);
    mt.head_hand = 0;
    int have = 0;
    json_t *t = json_object_get(j, "traind");
    if (t) {
        if (!json_is_object(t)) {
            snprintf(err, errlen, "%s/config.json: \"traind\" must be an object", dir);
            json_decref(j);
            return -1;
        }
        have = 1;
        const char *bb = json_string_value(json_object_get(t, "backbone"));
        if (bb) snprintf(mt.backbone, sizeof mt.backbone, "%s", bb);
        json_t *fl = json_object_get(t, "freeze_layers");
        if (fl) {
            if (!json_is_integer(fl) || json_integer_value(fl) < 0 || json_integer_value(fl) > cfg->layers) {
                snprintf(err, errlen, "%s/config.json: traind.freeze_layers must be an integer in [0, %d]", dir, cfg->layers);
                json_decref(j);
                return -1;
            }
            mt.freeze_layers = (int)json_integer_value(fl);
        }
        json_t *hd = json_object_get(t, "heads");
        if (hd) {
            size_t i;
            json_t *v;
            if (!json_is_array(hd)) {
                snprintf(err, errlen, "%s/config.json: traind.heads must be an array", dir);
                json_decref(j);
                return -1;
            }
            json_array_foreach(hd, i, v) {
                const char *s = json_string_value(v);
                if (s && strcmp(s, "hand") == 0) mt.head_hand = 1;
                else {
                    snprintf(err, errlen, "%s/config.json: traind.heads: unknown head %s", dir, s ? s : "(not a string)");
                    json_decref(j);
                    return -1;
                }
            }
        }
        if ((json_object_get(t, "mean") && ckpt_float3(json_object_get(t, "mean"), mt.mean) < 0) ||
            (json_object_get(t, "std") && ckpt_float3(json_object_get(t, "std"), mt.std) < 0)) {
            snprintf(err, errlen, "%s/config.json: traind.mean and traind.std must be arrays of 3 numbers", dir);
            json_decref(j);
            return -1;
        }
        json_t *is = json_object_get(t, "image_size");
        if (is) {
            if (!json_is_array(is) || json_array_size(is) != 2 || !json_is_integer(json_array_get(is, 0)) ||
                !json_is_integer(json_array_get(is, 1)) || json_integer_value(json_array_get(is, 0)) <= 0 ||
                json_integer_value(json_array_get(is, 1)) <= 0 || json_integer_value(json_array_get(is, 0)) > 65536 ||
                json_integer_value(json_array_get(is, 1)) > 65536) {
                snprintf(err, errlen, "%s/config.json: traind.image_size must be [height, width]", dir);
                json_decref(j);
                return -1;
            }
            mt.image_h = (int)json_integer_value(json_array_get(is, 0));
            mt.image_w = (int)json_integer_value(json_array_get(is, 1));
        }
        cfg->head_hand = mt.head_hand;
    }
    if (!mt.image_h) mt.image_h = mt.image_w = cfg->image_size;
    if (meta) *meta = mt;
    if (has_meta) *has_meta = have;
    json_decref(j);
    return 0;
}

static int ckpt_load_optimizer(const char *dir, model_t *m, char *err, size_t errlen) {
    st_file_t *f = st_open_in(dir, "optimizer.safetensors", err, errlen);
    if (!f) return -1;
    const char *path = st_path(f);
    char serr[512];
    int rc = -1;
    size_t maxn = 0;
    for (int i = 0; i < m->n_tensors; i++) if (m->table[i].n > maxn) maxn = m->table[i].n;
    float *h = malloc((maxn + 1) * sizeof *h);
    if (!h) { snprintf(err, errlen, "checkpoint: out of memory"); goto out; }
    const char *st = st_meta(f, "step");
    char *end = NULL;
    long step = st ? strtol(st, &end, 10) : -1;
    if (!st || !*st || *end || step < 0) {
        snprintf(err, errlen, "%s: __metadata__ \"step\" missing or not a non-negative integer", path);
        goto out;
    }
    for (int which = 0; which < 2; which++) {
        float *dst = which == 0 ? m->adam_m : m->adam_v;
        for (int i = 0; i < m->n_tensors; i++) {
            const model_param_t *p = &m->table[i];
            if (p->frozen) continue;
            char nm[MODEL_NAME_MAX + 4];
            snprintf(nm, sizeof nm, "%s.%s", which == 0 ? "m" : "v", p->name);
            const st_tensor_t *t = st_find(f, nm);
            if (!t) { snprintf(err, errlen, "%s: missing tensor \"%s\"", path, nm); goto out; }
            int same = t->dtype == ST_F32 && t->rank == p->ndim;
            for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
            if (!same) {
                snprintf(err, errlen, "%s: tensor \"%s\" is %s of rank %d, expected F32 of the parameter's shape",
                         path, nm, st_dtype_name(t->dtype), t->rank);
                goto out;
            }
            if (st_read(f, t, h, serr, sizeof serr) < 0) { snprintf(err, errlen, "%s", serr); goto out; }
            m->be->upload(m->be, dst + (p->off - m->train_off), h, p->n * 4);
            m->be->sync(m->be);
        }
    }
    m->adam_step = step;
    rc = 0;
out:
    free(h);
    st_close(f);
    return rc;
}

int ckpt_load(const char *dir, model_t *m, int load_optimizer, json_t **state, char *err, size_t errlen) {
    if (state) *state = NULL;
    json_t *st = NULL;
    /* validate the small files first: nothing is loaded from a checkpoint that is bad anywhere */
    if (state || load_optimizer) {
        st = ckpt_read_json(dir, "state.json", err, errlen);
        if (!st) return -1;
    }
    if (model_load_hf_dir(m, dir, err, errlen) < 0) { json_decref(st); return -1; }
    if (m->cfg.head_hand && !m->heads_loaded) {
        snprintf(err, errlen, "%s/model.safetensors: no heads.hand.* tensors (a HF backbone, not a traind checkpoint)", dir);
        json_decref(st);
        return -1;
    }
    if (load_optimizer && m->adam_m) {
        if (ckpt_load_optimizer(dir, m, err, errlen) < 0) { json_decref(st); return -1; }
    }
    if (state) *state = st;
    else json_decref(st);
    return 0;
}
