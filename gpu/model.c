/* gpu/model.c — DINOv2 backbone + hand head against backend_t (see gpu/model.h).
 *
 * Owns: named and HF configs, the parameter table and flat buffers, seeded
 * initialization, HF checkpoint loading with position-embedding interpolation
 * (transformers 5.17: Dinov2 = bicubic A=-0.75 with size=, clamped borders;
 * Dinov2WithRegisters = anti-aliased bicubic A=-0.5 with size=), forward,
 * backward and the AdamW segment table. Everything numerical runs through
 * the backend; only loading and initialization touch host memory.
 */
#define _GNU_SOURCE   /* sincos */
#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "gpu/model.h"
#include "store/fsutil.h"
#include "store/rng.h"
#include "store/safetensors.h"

#define PARAM_ALIGN 16   /* element alignment of each parameter group in the flat buffers */

/* ------------------------------------------------------------------------ */
/* configuration                                                              */

static void cfg_defaults(model_config_t *c) {
    memset(c, 0, sizeof *c);
    c->mlp_ratio = 4;
    c->patch = 14;
    c->layer_norm_eps = 1e-6f;
    c->image_size = 518;
    c->layerscale_value = 1.0f;
    c->head_hand = 1;
    c->joints_hidden = MODEL_JOINTS_HIDDEN;
    c->conf_hidden = MODEL_CONF_HIDDEN;
    c->initializer_range = 0.02f;
}

int model_config_by_name(const char *name, int registers, model_config_t *cfg,
                         char *err, size_t errlen) {
    /* init std: HF's 0.02 for the HF sizes; the 64-wide tiny (not an HF model) trains from
     * scratch much faster with 0.05 (synthetic hand data, 3000 steps: val MPJPE 90 mm vs
     * 147 mm with 0.02, whose near-uniform initial attention leaves a long plateau) */
    static const struct { const char *name; int d, l, h; float init; } tab[] = {
        {"dinov2-tiny", 64, 2, 2, 0.05f},
        {"dinov2-small", 384, 12, 6, 0.02f},
        {"dinov2-base", 768, 12, 12, 0.02f},
        {"dinov2-large", 1024, 24, 16, 0.02f},
    };
    if (registers != 0 && registers != 4) {
        snprintf(err, errlen, "model.registers must be 0 or 4 (got %d)", registers);
        return -1;
    }
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        if (name && strcmp(name, tab[i].name) == 0) {
            cfg_defaults(cfg);
            cfg->hidden = tab[i].d;
            cfg->layers = tab[i].l;
            cfg->heads = tab[i].h;
            cfg->registers = registers;
            cfg->initializer_range = tab[i].init;
            return 0;
        }
    }
    snprintf(err, errlen, "unknown backbone \"%s\" (expected dinov2-tiny, dinov2-small, dinov2-base or dinov2-large)",
             name ? name : "");
    return -1;
}

/* Integer field: must be a JSON integer (or an integral real) in [lo, hi]. */
static int json_get_int(const json_t *j, const char *key, int required, int dflt, int lo, int hi,
                        int *out, char *err, size_t errlen) {
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v)) {
        if (required) { snprintf(err, errlen, "config.json: missing \"%s\"", key); return -1; }
        *out = dflt;
        return 0;
    }
    double d;
    if (json_is_integer(v)) d = (double)json_integer_value(v);
    else if (json_is_real(v)) d = json_real_value(v);
    else { snprintf(err, errlen, "config.json: \"%s\" must be a number", key); return -1; }
    if (d != floor(d) || d < lo || d > hi) {
        snprintf(err, errlen, "config.json: \"%s\" = %g is out of range [%d, %d]", key, d, lo, hi);
        return -1;
    }
    *out = (int)d;
    return 0;
}

static int json_get_num(const json_t *j, const char *key, double dflt, double *out,
                        char *err, size_t errlen) {
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v)) { *out = dflt; return 0; }
    if (!json_is_number(v)) { snprintf(err, errlen, "config.json: \"%s\" must be a number", key); return -1; }
    *out = json_number_value(v);
    if (!isfinite(*out)) { snprintf(err, errlen, "config.json: \"%s\" is not finite", key); return -1; }
    return 0;
}

int model_config_from_hf_json(const json_t *j, model_config_t *cfg, char *err, size_t errlen) {
    if (!json_is_object(j)) { snprintf(err, errlen, "config.json: not a JSON object"); return -1; }
    cfg_defaults(cfg);
    const char *mt = json_string_value(json_object_get(j, "model_type"));
    if (!mt) { snprintf(err, errlen, "config.json: missing \"model_type\" (expected \"dinov2\" or \"dinov2_with_registers\")"); return -1; }
    int with_reg;
    if (strcmp(mt, "dinov2") == 0) with_reg = 0;
    else if (strcmp(mt, "dinov2_with_registers") == 0) with_reg = 1;
    else {
        snprintf(err, errlen, "config.json: model_type \"%s\" is not supported (expected \"dinov2\" or \"dinov2_with_registers\")", mt);
        return -1;
    }
    if (json_get_int(j, "hidden_size", 1, 0, 1, 65536, &cfg->hidden, err, errlen) < 0) return -1;
    if (json_get_int(j, "num_hidden_layers", 1, 0, 1, 1024, &cfg->layers, err, errlen) < 0) return -1;
    if (json_get_int(j, "num_attention_heads", 1, 0, 1, 1024, &cfg->heads, err, errlen) < 0) return -1;
    if (json_get_int(j, "mlp_ratio", 0, 4, 1, 64, &cfg->mlp_ratio, err, errlen) < 0) return -1;
    if (json_get_int(j, "patch_size", 0, 14, 1, 1024, &cfg->patch, err, errlen) < 0) return -1;
    if (json_get_int(j, "image_size", 0, 518, 1, 1 << 16, &cfg->image_size, err, errlen) < 0) return -1;
    int nch;
    if (json_get_int(j, "num_channels", 0, 3, 1, 1 << 16, &nch, err, errlen) < 0) return -1;
    if (nch != 3) { snprintf(err, errlen, "config.json: num_channels = %d is not supported (expected 3)", nch); return -1; }
    if (with_reg) {
        if (json_get_int(j, "num_register_tokens", 0, 4, 0, 64, &cfg->registers, err, errlen) < 0) return -1;
    } else if (json_object_get(j, "num_register_tokens")) {
        int r;
        if (json_get_int(j, "num_register_tokens", 0, 0, 0, 0, &r, err, errlen) < 0) {
            snprintf(err, errlen, "config.json: num_register_tokens needs model_type \"dinov2_with_registers\"");
            return -1;
        }
    }
    double eps, ls;
    if (json_get_num(j, "layer_norm_eps", 1e-6, &eps, err, errlen) < 0) return -1;
    if (json_get_num(j, "layerscale_value", 1.0, &ls, err, errlen) < 0) return -1;
    if (eps <= 0 || eps > 1) { snprintf(err, errlen, "config.json: layer_norm_eps = %g is out of range (0, 1]", eps); return -1; }
    cfg->layer_norm_eps = (float)eps;
    cfg->layerscale_value = (float)ls;
    double ir;
    if (json_get_num(j, "initializer_range", 0.02, &ir, err, errlen) < 0) return -1;
    if (ir <= 0 || ir > 1) { snprintf(err, errlen, "config.json: initializer_range = %g is out of range (0, 1]", ir); return -1; }
    cfg->initializer_range = (float)ir;

    json_t *act = json_object_get(j, "hidden_act");
    if (act && !json_is_null(act)) {
        const char *a = json_string_value(act);
        if (!a || strcmp(a, "gelu") != 0) {
            snprintf(err, errlen, "config.json: hidden_act \"%s\" is not supported (traind implements exact-erf \"gelu\")",
                     a ? a : "(not a string)");
            return -1;
        }
    }
    json_t *sw = json_object_get(j, "use_swiglu_ffn");
    if (sw && !json_is_null(sw) && (!json_is_boolean(sw) || json_is_true(sw))) {
        snprintf(err, errlen, "config.json: use_swiglu_ffn must be false (SwiGLU FFN is not supported)");
        return -1;
    }
    json_t *qb = json_object_get(j, "qkv_bias");
    if (qb && !json_is_null(qb) && (!json_is_boolean(qb) || json_is_false(qb))) {
        snprintf(err, errlen, "config.json: qkv_bias must be true");
        return -1;
    }
    double dpr;
    if (json_get_num(j, "drop_path_rate", 0.0, &dpr, err, errlen) < 0) return -1;
    if (cfg->hidden % cfg->heads != 0) {
        snprintf(err, errlen, "config.json: hidden_size %d is not a multiple of num_attention_heads %d",
                 cfg->hidden, cfg->heads);
        return -1;
    }
    if (cfg->image_size < cfg->patch) {
        snprintf(err, errlen, "config.json: image_size %d is smaller than patch_size %d", cfg->image_size, cfg->patch);
        return -1;
    }
    return 0;
}

/* Reads and validates <dir>/config.json; *out (may be NULL) gets the parsed document. */
static int model_read_hf_config(const char *dir, model_config_t *cfg, json_t **out, char *err, size_t errlen) {
    char path[4096];
    if (fs_join(path, sizeof path, dir, "config.json") < 0) {
        snprintf(err, errlen, "%s: path too long", dir);
        return -1;
    }
    char ferr[512];
    char *text = fs_read_file_under(dir, "config.json", 1 << 20, NULL, ferr, sizeof ferr);
    if (!text) { snprintf(err, errlen, "%s", ferr); return -1; }
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    free(text);
    if (!j) {   /* jansson's text quotes the file's bytes: not shown */
        snprintf(err, errlen, "%s: bad JSON (line %d, column %d)", path, je.line, je.column);
        return -1;
    }
    char cerr[512];
    if (model_config_from_hf_json(j, cfg, cerr, sizeof cerr) < 0) {
        snprintf(err, errlen, "%s: %s", path, cerr + (strncmp(cerr, "config.json: ", 13) == 0 ? 13 : 0));
        json_decref(j);
        return -1;
    }
    if (out) *out = j;
    else json_decref(j);
    return 0;
}

int model_config_from_hf_dir(const char *dir, model_config_t *cfg, char *err, size_t errlen) {
    return model_read_hf_config(dir, cfg, NULL, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* parameter table                                                            */

enum { INIT_TRUNC = 0, INIT_ZERO, INIT_ONE, INIT_LS, INIT_MEANPOSE, INIT_SINCOS };

typedef struct {
    int init;              /* INIT_* */
    int64_t hf_shape[4];   /* shape in the file (position table: the source table) */
    int hf_ndim;
} param_extra_t;

/* Indices of the tensors the forward pass uses, per block. */
typedef struct {
    int norm1_w, norm1_b, q_w, q_b, o_w, o_b, ls1, norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b, ls2;
} block_idx_t;

/* Activations of one block (see model_forward for the data flow). */
typedef struct {
    float *x_in, *x_mid;      /* [B,T,D] residual stream in, after attention */
    void *ln1;                /* [B,T,D] cdt */
    float *mean1, *rstd1;     /* [B*T] */
    void *qkv;                /* [B,T,3D] cdt */
    void *att;                /* [B,T,D] cdt */
    float *lse;               /* [B,NH,T] (NULL when no backward) */
    void *proj;               /* [B,T,D] cdt */
    void *ln2;                /* [B,T,D] cdt */
    float *mean2, *rstd2;     /* [B*T] */
    void *fc1;                /* [B,T,4D] cdt (pre-GELU) */
    void *gelu;               /* [B,T,4D] cdt: one buffer shared by all blocks (recomputed in the backward) */
    void *fc2;                /* [B,T,D] cdt */
} block_acts_t;

typedef struct {
    param_extra_t *extra;     /* [n_tensors] */
    int i_cls, i_mask, i_pos, i_reg, i_pw, i_pb, i_lnw, i_lnb;
    int i_j1w, i_j1b, i_j2w, i_j2b, i_c1w, i_c1b, i_c2w, i_c2b;
    block_idx_t *blk;         /* [L] */

    /* activation memory: a few big allocations, carved */
    void *act_mem;
    block_acts_t *acts;       /* [L]: stored per trainable block (grads), shared scratch otherwise */
    float *x_final;           /* [B,T,D] residual after the last block */
    void *cols;               /* [B*P,3pp] cdt */
    float *patches;           /* [B*P,D] */
    float *cls_res;           /* [B,D] residual stream at CLS after the last block */
    float *mean_f, *rstd_f;   /* [B] */
    void *pool_c;             /* [B,D] cdt (== pooler when fp32) */
    float *hj, *hc;           /* [B,512], [B,256] head fc1 pre-GELU */
    void *gj, *gc;            /* post-GELU cdt */
    /* backward scratch */
    float *d_res;             /* [B,T,D] */
    float *d_a;               /* [B*T*max(4D,3D)] cdt, or [B*P,D] f32 */
    float *d_b;               /* [B*T*max(4D,3D)] f32 */
    float *d_pool, *d_pool2;  /* [B,D] */
    float *d_cls;             /* [B,D] */
    float *d_hj, *d_gj;       /* [B,512] */
    float *d_hc, *d_gc;       /* [B,256] */
    float *ones;              /* [D] for adding gradients via layerscale_fwd */
} model_priv_t;

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

typedef struct {
    model_t *m;
    int cap;
    size_t off;
    int frozen;
} table_builder_t;

static int tb_add(table_builder_t *tb, const char *name, int ndim, const int64_t *shape,
                  int is_matrix, model_group_t group, int init, int align) {
    model_t *m = tb->m;
    model_priv_t *pv = m->priv;
    if (m->n_tensors == tb->cap) {
        int ncap = tb->cap ? tb->cap * 2 : 64;
        model_param_t *nt = realloc(m->table, (size_t)ncap * sizeof *nt);
        if (!nt) return -1;
        m->table = nt;
        param_extra_t *ne = realloc(pv->extra, (size_t)ncap * sizeof *ne);
        if (!ne) return -1;
        pv->extra = ne;
        tb->cap = ncap;
    }
    if (align) tb->off = align_up(tb->off, PARAM_ALIGN);
    model_param_t *p = &m->table[m->n_tensors];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) { p->shape[i] = shape[i]; n *= (size_t)shape[i]; }
    p->n = n;
    p->off = tb->off;
    p->is_matrix = is_matrix;
    p->group = group;
    p->frozen = tb->frozen;
    param_extra_t *e = &pv->extra[m->n_tensors];
    memset(e, 0, sizeof *e);
    e->init = init;
    e->hf_ndim = ndim;
    memcpy(e->hf_shape, p->shape, sizeof e->hf_shape);
    tb->off += n;
    return m->n_tensors++;
}

#define S1(a) ((const int64_t[]){(a)})
#define S2(a, b) ((const int64_t[]){(a), (b)})
#define S3(a, b, c) ((const int64_t[]){(a), (b), (c)})
#define S4(a, b, c, d) ((const int64_t[]){(a), (b), (c), (d)})

static int model_build_table(model_t *m) {
    model_priv_t *pv = m->priv;
    const model_config_t *c = &m->cfg;
    const int64_t D = c->hidden, F = (int64_t)c->hidden * c->mlp_ratio, p = c->patch;
    table_builder_t tb = {m, 0, 0, m->opts.freeze_layers > 0};
    char nm[MODEL_NAME_MAX];
    int r = 0;
#define ADD(name, nd, shp, mat, grp, ini, al) \
    do { r = tb_add(&tb, (name), (nd), (shp), (mat), (grp), (ini), (al)); if (r < 0) return -1; } while (0)
    ADD("embeddings.cls_token", 3, S3(1, 1, D), 0, MODEL_GROUP_BACKBONE, INIT_TRUNC, 1); pv->i_cls = r;
    ADD("embeddings.mask_token", 2, S2(1, D), 0, MODEL_GROUP_BACKBONE, INIT_ZERO, 1); pv->i_mask = r;
    ADD("embeddings.position_embeddings", 3, S3(1, 1 + m->P, D), 0, MODEL_GROUP_BACKBONE, INIT_SINCOS, 1); pv->i_pos = r;
    pv->i_reg = -1;
    if (c->registers > 0) {
        ADD("embeddings.register_tokens", 3, S3(1, c->registers, D), 0, MODEL_GROUP_BACKBONE, INIT_TRUNC, 1);
        pv->i_reg = r;
    }
    ADD("embeddings.patch_embeddings.projection.weight", 4, S4(D, 3, p, p), 1, MODEL_GROUP_BACKBONE, INIT_TRUNC, 1); pv->i_pw = r;
    ADD("embeddings.patch_embeddings.projection.bias", 1, S1(D), 0, MODEL_GROUP_BACKBONE, INIT_ZERO, 1); pv->i_pb = r;
    for (int l = 0; l < c->layers; l++) {
        block_idx_t *b = &pv->blk[l];
        if (l == m->opts.freeze_layers) tb.frozen = 0;
#define BN(suffix) (snprintf(nm, sizeof nm, "encoder.layer.%d.%s", l, suffix), nm)
        /* the block's first tensor starts aligned: the trainable suffix begins at a block boundary */
        tb.off = align_up(tb.off, PARAM_ALIGN);
        if (l == m->opts.freeze_layers && l > 0) m->train_off = tb.off;
        ADD(BN("norm1.weight"), 1, S1(D), 0, MODEL_GROUP_BACKBONE, INIT_ONE, 1); b->norm1_w = r;
        ADD(BN("norm1.bias"), 1, S1(D), 0, MODEL_GROUP_BACKBONE, INIT_ZERO, 1); b->norm1_b = r;
        /* q, k, v weights adjacent: one [3D, D] matrix; then their biases: one [3D] vector */
        ADD(BN("attention.attention.query.weight"), 2, S2(D, D), 1, MODEL_GROUP_BACKBONE, INIT_TRUNC, 1); b->q_w = r;
        ADD(BN("attention.attention.key.weight"), 2, S2(D, D), 1, MODEL_GROUP_BACKBONE, INIT_TRUNC, 0);
        ADD(BN("attention.attention.value.weight"), 2, S2(D, D), 1, MODEL_GROUP_BACKBONE, INIT_TRUNC, 0);
        ADD(BN("attention.attention.query.bias"), 1, S1(D), 0, MODEL_GROUP_BACKBONE, INIT_ZERO, 1); b->q_b = r;
        ADD(BN("attention.attention.key.bias"), 1, S1(D), 0, MODEL_GROUP_BACKBONE, INIT_ZERO, 0);
        ADD(BN("attention.attention.value.bias"), 1, S1(D), 0, MODEL_GROUP_BACKBONE, INIT_ZERO, 0);
        ADD(BN("attention.output.dense.weight"), 2, S2(D, D), 1, MODEL_GROUP_BACKBONE, INIT_TRUNC, 1); b->o_w = r;
        ADD(BN("attention.output.dense.bias"), 1, S1(D), 0, MODEL_GROUP_BACKBONE, INIT_ZERO, 1); b->o_b = r;
        ADD(BN("layer_scale1.lambda1"), 1, S1(D), 0, MODEL_GROUP_BACKBONE, INIT_LS, 1); b->ls1 = r;
        ADD(BN("norm2.weight"), 1, S1(D), 0, MODEL_GROUP_BACKBONE, INIT_ONE, 1); b->norm2_w = r;
        ADD(BN("norm2.bias"), 1, S1(D), 0, MODEL_GROUP_BACKBONE, INIT_ZERO, 1); b->norm2_b = r;
        ADD(BN("mlp.fc1.weight"), 2, S2(F, D), 1, MODEL_GROUP_BACKBONE, INIT_TRUNC, 1); b->fc1_w = r;
        ADD(BN("mlp.fc1.bias"), 1, S1(F), 0, MODEL_GROUP_BACKBONE, INIT_ZERO, 1); b->fc1_b = r;
        ADD(BN("mlp.fc2.weight"), 2, S2(D, F), 1, MODEL_GROUP_BACKBONE, INIT_TRUNC, 1); b->fc2_w = r;
        ADD(BN("mlp.fc2.bias"), 1, S1(D), 0, MODEL_GROUP_BACKBONE, INIT_ZERO, 1); b->fc2_b = r;
        ADD(BN("layer_scale2.lambda1"), 1, S1(D), 0, MODEL_GROUP_BACKBONE, INIT_LS, 1); b->ls2 = r;
#undef BN
    }
    if (m->opts.freeze_layers >= c->layers) {
        tb.frozen = 0;
        tb.off = align_up(tb.off, PARAM_ALIGN);
        m->train_off = tb.off;
    }
    ADD("layernorm.weight", 1, S1(D), 0, MODEL_GROUP_BACKBONE, INIT_ONE, 1); pv->i_lnw = r;
    ADD("layernorm.bias", 1, S1(D), 0, MODEL_GROUP_BACKBONE, INIT_ZERO, 1); pv->i_lnb = r;
    pv->i_j1w = pv->i_j1b = pv->i_j2w = pv->i_j2b = -1;
    pv->i_c1w = pv->i_c1b = pv->i_c2w = pv->i_c2b = -1;
    if (c->head_hand) {
        const int64_t HJ = c->joints_hidden, HC = c->conf_hidden;
        ADD("heads.hand.joints.fc1.weight", 2, S2(HJ, D), 1, MODEL_GROUP_HEADS, INIT_TRUNC, 1); pv->i_j1w = r;
        ADD("heads.hand.joints.fc1.bias", 1, S1(HJ), 0, MODEL_GROUP_HEADS, INIT_ZERO, 1); pv->i_j1b = r;
        ADD("heads.hand.joints.fc2.weight", 2, S2(HAND_COORDS, HJ), 1, MODEL_GROUP_HEADS, INIT_TRUNC, 1); pv->i_j2w = r;
        ADD("heads.hand.joints.fc2.bias", 1, S1(HAND_COORDS), 0, MODEL_GROUP_HEADS, INIT_MEANPOSE, 1); pv->i_j2b = r;
        ADD("heads.hand.conf.fc1.weight", 2, S2(HC, D), 1, MODEL_GROUP_HEADS, INIT_TRUNC, 1); pv->i_c1w = r;
        ADD("heads.hand.conf.fc1.bias", 1, S1(HC), 0, MODEL_GROUP_HEADS, INIT_ZERO, 1); pv->i_c1b = r;
        ADD("heads.hand.conf.fc2.weight", 2, S2(MODEL_CONF_OUT, HC), 1, MODEL_GROUP_HEADS, INIT_TRUNC, 1); pv->i_c2w = r;
        ADD("heads.hand.conf.fc2.bias", 1, S1(MODEL_CONF_OUT), 0, MODEL_GROUP_HEADS, INIT_ZERO, 1); pv->i_c2b = r;
    }
#undef ADD
    m->n_params = align_up(tb.off, PARAM_ALIGN);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* create / free                                                              */

static size_t dsz(dtype_t dt) { return dtype_size(dt); }

/* Carves sub-buffers out of one allocation, 256-byte aligned. */
typedef struct { char *base; size_t off; } carver_t;
static void *carve(carver_t *c, size_t bytes) {
    c->off = align_up(c->off, 256);
    void *p = c->base ? c->base + c->off : NULL;
    c->off += bytes;
    return p;
}

/* Lays out (or, with base NULL, measures) every activation buffer. */
static size_t model_layout_acts(model_t *m, char *base) {
    model_priv_t *pv = m->priv;
    const model_config_t *c = &m->cfg;
    const size_t B = (size_t)m->opts.max_batch, T = (size_t)m->T, D = (size_t)c->hidden;
    const size_t F = D * (size_t)c->mlp_ratio, P = (size_t)m->P, p = (size_t)c->patch;
    const size_t BT = B * T, W = F > 3 * D ? F : 3 * D;   /* the widest product output */
    const dtype_t cdt = m->opts.cdt;
    const size_t cs = dsz(cdt);
    const int L = c->layers, K = m->opts.freeze_layers, g = m->opts.grads;
    carver_t cv = {base, 0};

    pv->cols = carve(&cv, B * P * 3 * p * p * cs);
    pv->patches = carve(&cv, B * P * D * 4);
    /* shared scratch for blocks without stored activations (inference, frozen blocks) */
    block_acts_t sh;
    memset(&sh, 0, sizeof sh);
    float *ping = NULL, *pong = NULL;
    if (!g || K > 0) {
        ping = carve(&cv, BT * D * 4);
        pong = carve(&cv, BT * D * 4);
        sh.x_mid = carve(&cv, BT * D * 4);
        sh.mean1 = carve(&cv, BT * 4);
        sh.rstd1 = carve(&cv, BT * 4);
        sh.mean2 = carve(&cv, BT * 4);
        sh.rstd2 = carve(&cv, BT * 4);
        /* A forward-only block's products live until their one reader has run, so
         * they take turns in three slots (A, B: [BT,D]; Q: [BT,max(3D,F)]) and the
         * GELU output's own, in an order where no op writes a buffer it reads:
         *   ln1 B -> qkv Q -> att A -> proj B -> ln2 A -> fc1 Q -> gelu G -> fc2 A
         * and the fused residual + LayerNorm that ends the block reads fc2 (A) and
         * writes the next block's ln1 (B, or a trainable block's own). */
        void *sa = carve(&cv, BT * D * cs), *sb = carve(&cv, BT * D * cs);
        void *sq = carve(&cv, BT * W * cs);
        sh.ln1 = sb;
        sh.qkv = sq;
        sh.att = sa;
        sh.proj = sb;
        sh.ln2 = sa;
        sh.fc1 = sq;
        sh.gelu = carve(&cv, BT * F * cs);
        sh.fc2 = sa;
        assert(!base || (sh.att != sh.qkv && sh.proj != sh.att && sh.ln2 != sh.proj && sh.fc1 != sh.ln2 &&
               sh.fc2 != sh.gelu && sh.fc2 != sh.ln1));
    }
    /* The GELU output is read once in the forward (by fc2) and once in the backward
     * (fc2's dW), where it is recomputed from fc1: one buffer for all blocks
     * instead of [B,T,4D] per trainable block. */
    void *gelu_shared = sh.gelu ? sh.gelu : (g && K < L ? carve(&cv, BT * F * cs) : NULL);
    /* Likewise the residual sum after attention (x_mid = x_in + ls1 * proj, f32):
     * the MLP half reads it in the forward; the backward's LayerNorm reads it as
     * its two terms, which are kept (layernorm_bwd's residual form). */
    float *xmid_shared = sh.x_mid ? sh.x_mid : (g && K < L ? carve(&cv, BT * D * 4) : NULL);
    for (int l = 0; l < L; l++) {
        block_acts_t *a = &pv->acts[l];
        if (g && l >= K) {
            a->x_in = carve(&cv, BT * D * 4);
            a->x_mid = xmid_shared;
            a->ln1 = carve(&cv, BT * D * cs);
            a->mean1 = carve(&cv, BT * 4);
            a->rstd1 = carve(&cv, BT * 4);
            a->qkv = carve(&cv, BT * 3 * D * cs);
            a->att = carve(&cv, BT * D * cs);
            a->lse = carve(&cv, B * (size_t)c->heads * T * 4);
            a->proj = carve(&cv, BT * D * cs);
            a->ln2 = carve(&cv, BT * D * cs);
            a->mean2 = carve(&cv, BT * 4);
            a->rstd2 = carve(&cv, BT * 4);
            a->fc1 = carve(&cv, BT * F * cs);
            a->gelu = gelu_shared;
            a->fc2 = carve(&cv, BT * D * cs);
        } else {
            *a = sh;
            a->x_in = (l % 2 == 0) ? ping : pong;
        }
    }
    pv->x_final = carve(&cv, BT * D * 4);
    pv->cls_res = carve(&cv, B * D * 4);
    pv->mean_f = carve(&cv, B * 4);
    pv->rstd_f = carve(&cv, B * 4);
    m->pooler = carve(&cv, B * D * 4);
    pv->pool_c = (cdt == DT_F32) ? (void *)m->pooler : carve(&cv, B * D * cs);
    m->hidden = m->opts.want_hidden ? carve(&cv, BT * D * 4) : NULL;
    if (c->head_hand) {
        const size_t HJ = (size_t)c->joints_hidden, HC = (size_t)c->conf_hidden;
        pv->hj = carve(&cv, B * HJ * 4);
        pv->hc = carve(&cv, B * HC * 4);
        pv->gj = carve(&cv, B * HJ * cs);
        pv->gc = carve(&cv, B * HC * cs);
        m->pred = carve(&cv, B * HAND_COORDS * 4);
        m->conf_logit = carve(&cv, B * MODEL_CONF_OUT * 4);
    }
    if (g) {
        pv->d_res = carve(&cv, BT * D * 4);
        /* da: the gradients into the products, made in cdt by the op before each
         * product (and, when the embeddings train, the patches' f32 [B*P,D]);
         * db: the products' f32 gradients out */
        pv->d_a = carve(&cv, BT * W * cs > BT * D * 4 ? BT * W * cs : BT * D * 4);
        pv->d_b = carve(&cv, BT * W * 4);
        pv->d_pool = carve(&cv, B * D * 4);
        pv->d_pool2 = carve(&cv, B * D * 4);
        pv->d_cls = carve(&cv, B * D * 4);
        if (c->head_hand) {
            pv->d_hj = carve(&cv, B * (size_t)c->joints_hidden * 4);
            pv->d_gj = carve(&cv, B * (size_t)c->joints_hidden * 4);
            pv->d_hc = carve(&cv, B * (size_t)c->conf_hidden * 4);
            pv->d_gc = carve(&cv, B * (size_t)c->conf_hidden * 4);
        }
        pv->ones = carve(&cv, D * 4);
    }
    return cv.off + 256;
}

/* The model without backend memory: checked options, the parameter table and
 * the shapes (what model_create allocates for is then fixed). NULL with err. */
static model_t *model_skeleton(const model_config_t *cfg, const model_opts_t *opts, char *err, size_t errlen) {
    const model_config_t *c = cfg;
    if (c->hidden <= 0 || c->layers <= 0 || c->heads <= 0 || c->hidden % c->heads != 0 ||
        c->mlp_ratio <= 0 || c->patch <= 0 || c->registers < 0 || c->registers > 64) {
        snprintf(err, errlen, "model: invalid configuration (hidden %d, layers %d, heads %d, patch %d, registers %d)",
                 c->hidden, c->layers, c->heads, c->patch, c->registers);
        return NULL;
    }
    if (opts->image_h <= 0 || opts->image_w <= 0 || opts->image_h % c->patch || opts->image_w % c->patch) {
        snprintf(err, errlen, "model: image size %dx%d is not a positive multiple of the patch size %d",
                 opts->image_h, opts->image_w, c->patch);
        return NULL;
    }
    if (opts->max_batch <= 0) { snprintf(err, errlen, "model: max_batch must be positive"); return NULL; }
    if (opts->cdt != DT_F32 && opts->cdt != DT_BF16) {
        snprintf(err, errlen, "model: compute dtype must be fp32 or bf16 (got %s)", dtype_name(opts->cdt));
        return NULL;
    }
    if (opts->freeze_layers < 0 || opts->freeze_layers > c->layers) {
        snprintf(err, errlen, "model: freeze_layers %d is out of range [0, %d]", opts->freeze_layers, c->layers);
        return NULL;
    }
    if (opts->optimizer && !opts->grads) {
        snprintf(err, errlen, "model: an optimizer needs gradients");
        return NULL;
    }
    if (opts->grads && !c->head_hand) {
        snprintf(err, errlen, "model: gradients need the hand head");
        return NULL;
    }
    model_t *m = calloc(1, sizeof *m);
    model_priv_t *pv = calloc(1, sizeof *pv);
    if (!m || !pv) { free(m); free(pv); snprintf(err, errlen, "model: out of memory"); return NULL; }
    m->cfg = *cfg;
    m->opts = *opts;
    m->priv = pv;
    m->gh = opts->image_h / c->patch;
    m->gw = opts->image_w / c->patch;
    m->P = m->gh * m->gw;
    m->T = 1 + c->registers + m->P;
    m->first_trainable_block = opts->freeze_layers;
    pv->blk = calloc((size_t)c->layers, sizeof *pv->blk);
    pv->acts = calloc((size_t)c->layers, sizeof *pv->acts);
    if (!pv->blk || !pv->acts || model_build_table(m) < 0) {
        snprintf(err, errlen, "model: out of memory");
        model_free(m);
        return NULL;
    }
    return m;
}

/* Bytes of each backend allocation model_create makes for m's shapes. */
static void model_sizes(model_t *m, model_mem_t *z) {
    const size_t np = m->n_params, nt = m->n_params - m->train_off;
    memset(z, 0, sizeof *z);
    z->params = np * 4 + (m->opts.cdt == DT_F32 ? 0 : np * dsz(m->opts.cdt));
    z->grads = m->opts.grads ? nt * 4 + 4 : 0;
    z->optimizer = m->opts.optimizer ? 2 * (nt * 4 + 4) : 0;
    z->activations = model_layout_acts(m, NULL);
    z->total = z->params + z->grads + z->optimizer + z->activations;
}

size_t model_working_bytes(const model_config_t *cfg, const model_opts_t *opts, model_mem_t *parts,
                           char *err, size_t errlen) {
    model_t *m = model_skeleton(cfg, opts, err, errlen);
    if (!m) return 0;
    model_mem_t z;
    model_sizes(m, &z);
    model_free(m);
    if (parts) *parts = z;
    return z.total;
}

model_t *model_create(backend_t *be, const model_config_t *cfg, const model_opts_t *opts,
                      char *err, size_t errlen) {
    const model_config_t *c = cfg;
    model_t *m = model_skeleton(cfg, opts, err, errlen);
    if (!m) return NULL;
    model_priv_t *pv = m->priv;
    m->be = be;
    /* exactly the sizes model_working_bytes reports */
    model_mem_t z;
    model_sizes(m, &z);
    const size_t np = m->n_params;
    m->params = be->alloc(be, np * 4);
    if (!m->params) goto oom;
    be->zero(be, m->params, np * 4);
    if (opts->cdt == DT_F32) {
        m->params_c = m->params;
    } else {
        m->params_c = be->alloc(be, z.params - np * 4);
        if (!m->params_c) goto oom;
        be->zero(be, m->params_c, z.params - np * 4);
    }
    if (z.grads) {
        m->grads = be->alloc(be, z.grads);
        if (!m->grads) goto oom;
        be->zero(be, m->grads, z.grads);
    }
    if (z.optimizer) {
        m->adam_m = be->alloc(be, z.optimizer / 2);
        m->adam_v = be->alloc(be, z.optimizer / 2);
        if (!m->adam_m || !m->adam_v) goto oom;
        be->zero(be, m->adam_m, z.optimizer / 2);
        be->zero(be, m->adam_v, z.optimizer / 2);
    }
    pv->act_mem = be->alloc(be, z.activations);
    if (!pv->act_mem) goto oom;
    model_layout_acts(m, pv->act_mem);
    if (pv->ones) {
        float *h = malloc((size_t)c->hidden * 4);
        if (!h) goto oom;
        for (int i = 0; i < c->hidden; i++) h[i] = 1.0f;
        be->upload(be, pv->ones, h, (size_t)c->hidden * 4);
        be->sync(be);
        free(h);
    }
    return m;
oom:
    snprintf(err, errlen, "model: cannot allocate %s memory for %zu parameters (%s): %s",
             be->name, m->n_params, dtype_name(opts->cdt), be->err);
    model_free(m);
    return NULL;
}

void model_free(model_t *m) {
    if (!m) return;
    backend_t *be = m->be;
    model_priv_t *pv = m->priv;
    if (pv) {
        if (pv->act_mem) be->free(be, pv->act_mem);
        free(pv->extra);
        free(pv->blk);
        free(pv->acts);
        free(pv);
    }
    if (m->params_c && m->params_c != m->params) be->free(be, m->params_c);
    if (m->params) be->free(be, m->params);
    if (m->grads) be->free(be, m->grads);
    if (m->adam_m) be->free(be, m->adam_m);
    if (m->adam_v) be->free(be, m->adam_v);
    free(m->table);
    free(m);
}

size_t model_num_params(const model_t *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) n += m->table[i].n;
    return n;
}

size_t model_num_trainable(const model_t *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (!m->table[i].frozen) n += m->table[i].n;
    return n;
}

int model_find_param(const model_t *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->table[i].name, name) == 0) return i;
    return -1;
}

void model_param_upload(model_t *m, int i, const float *host) {
    assert(i >= 0 && i < m->n_tensors);
    m->be->upload(m->be, m->params + m->table[i].off, host, m->table[i].n * 4);
}

void model_param_download(model_t *m, int i, float *host) {
    assert(i >= 0 && i < m->n_tensors);
    m->be->download(m->be, host, m->params + m->table[i].off, m->table[i].n * 4);
}

void model_sync_working_copy(model_t *m) {
    if (m->params_c != m->params)
        m->be->cast(m->be, m->params_c, m->opts.cdt, m->params, DT_F32, m->n_params);
    m->be->sync(m->be);
}

float *model_param_grad(model_t *m, int i) {
    if (!m->grads || i < 0 || i >= m->n_tensors || m->table[i].frozen) return NULL;
    return m->grads + (m->table[i].off - m->train_off);
}

void model_set_grad_hook(model_t *m, model_grad_fn fn, void *ud) {
    m->grad_fn = fn;
    m->grad_ud = ud;
}

void model_set_stats_hook(model_t *m, model_stats_fn fn, void *ud) {
    m->stats_fn = fn;
    m->stats_ud = ud;
}

/* ------------------------------------------------------------------------ */
/* initialization                                                             */

/* h[0..n) = Normal(0, std) truncated to [-2, 2] (absolute bounds, as torch's
 * trunc_normal_ defaults): Box-Muller, both values of each pair used; a value
 * outside the bounds is dropped and the next one drawn takes its place. */
static void rng_trunc_normal_fill(uint64_t *s, double std, float *h, size_t n) {
    size_t k = 0;
    while (k < n) {
        double u1 = rng_splitmix_uniform(s), u2 = rng_splitmix_uniform(s);
        double r = sqrt(-2.0 * log(u1)) * std, sn, cs;
        sincos(2.0 * M_PI * u2, &sn, &cs);
        double z0 = r * cs, z1 = r * sn;   /* u1 = 0: r = inf, both dropped */
        if (z0 >= -2.0 && z0 <= 2.0) h[k++] = (float)z0;
        if (k < n && z1 >= -2.0 && z1 <= 2.0) h[k++] = (float)z1;
    }
}

/* Position table [1, 1+P, D] for a model trained from scratch: the fixed 2-D
 * sine-cosine embedding of the working patch grid (as MAE initializes ViTs),
 * CLS row zero. With a tiny random table (trunc-normal 0.02) a small ViT has
 * almost no spatial signal and learns where things are only very slowly; here
 * every patch starts with a distinct, smooth code of its row and column.
 * Quarter q of the D channels: sin(row*w), cos(row*w), sin(col*w), cos(col*w),
 * w = 10000^(-i/(D/4)). Pretrained tables are loaded, never replaced. */
static void model_init_sincos(const model_t *m, float *h) {
    const int D = m->cfg.hidden, Q = D / 4;
    memset(h, 0, (size_t)(1 + m->P) * D * sizeof *h);
    for (int gy = 0; gy < m->gh; gy++)
        for (int gx = 0; gx < m->gw; gx++) {
            float *row = h + (size_t)(1 + gy * m->gw + gx) * D;
            for (int i = 0; i < Q; i++) {
                double w = pow(10000.0, -(double)i / Q);
                row[i] = (float)sin(gy * w);
                row[Q + i] = (float)cos(gy * w);
                row[2 * Q + i] = (float)sin(gx * w);
                row[3 * Q + i] = (float)cos(gx * w);
            }
        }
}

/* Fills tensor i's initial values into h[0..n). Each tensor draws from its own
 * stream (seed and name), so the result does not depend on table order or on
 * how tensors are spread over threads. */
static void model_init_tensor(const model_t *m, int i, uint64_t seed, const float *mean_joints, float *h) {
    const model_priv_t *pv = m->priv;
    const model_param_t *p = &m->table[i];
    uint64_t s = seed ^ 0x5bd1e9955bd1e995ull;
    for (const char *c = p->name; *c; c++) s = (s ^ (uint8_t)*c) * 0x100000001b3ull;
    switch (pv->extra[i].init) {
    case INIT_TRUNC:
        rng_trunc_normal_fill(&s, m->cfg.initializer_range, h, p->n);
        break;
    case INIT_ZERO: memset(h, 0, p->n * sizeof *h); break;
    case INIT_ONE: for (size_t k = 0; k < p->n; k++) h[k] = 1.0f; break;
    case INIT_LS: for (size_t k = 0; k < p->n; k++) h[k] = m->cfg.layerscale_value; break;
    case INIT_MEANPOSE:
        for (size_t k = 0; k < p->n; k++) h[k] = mean_joints ? mean_joints[k] : 0.0f;
        break;
    case INIT_SINCOS:
        model_init_sincos(m, h);
        break;
    }
}

/* Host-side generation runs on several threads (dinov2-large has 300M values:
 * ~12 s on one core), each taking whole tensors from a shared counter and
 * writing into its slice of one host image of the parameter buffer. */
typedef struct {
    const model_t *m;
    uint64_t seed;
    const float *mean_joints;
    int heads_only;
    float *host;                /* [n_params] */
    int next;                   /* next tensor to take (atomic) */
} init_job_t;

static void *model_init_thread(void *arg) {
    init_job_t *j = arg;
    for (;;) {
        int i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (i >= j->m->n_tensors) return NULL;
        if (j->heads_only && j->m->table[i].group != MODEL_GROUP_HEADS) continue;
        model_init_tensor(j->m, i, j->seed, j->mean_joints, j->host + j->m->table[i].off);
    }
}

static void model_init_range(model_t *m, uint64_t seed, const float *mean_joints, int heads_only) {
    init_job_t job = { .m = m, .seed = seed, .mean_joints = mean_joints, .heads_only = heads_only };
    job.host = malloc(m->n_params * sizeof(float));
    if (!job.host) { fprintf(stderr, "model_init: out of memory\n"); exit(1); }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nthreads = ncpu < 1 ? 1 : ncpu > 16 ? 16 : (int)ncpu;
    pthread_t th[16];
    int started = 0;
    for (; started < nthreads - 1; started++)
        if (pthread_create(&th[started], NULL, model_init_thread, &job) != 0) break;
    model_init_thread(&job);                 /* the caller works too (and alone if no thread started) */
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    for (int i = 0; i < m->n_tensors; i++) {
        if (heads_only && m->table[i].group != MODEL_GROUP_HEADS) continue;
        model_param_upload(m, i, job.host + m->table[i].off);
    }
    m->be->sync(m->be);
    free(job.host);
    model_sync_working_copy(m);
}

void model_init(model_t *m, uint64_t seed, const float *mean_joints) {
    model_init_range(m, seed, mean_joints, 0);
    m->heads_loaded = 0;
}

void model_init_heads(model_t *m, uint64_t seed, const float *mean_joints) {
    model_init_range(m, seed, mean_joints, 1);
    m->heads_loaded = 0;
}

/* ------------------------------------------------------------------------ */
/* position-embedding interpolation (host, fp32), as transformers 5.17 + torch */

static float cubic1(float x, float A) { return ((A + 2) * x - (A + 3)) * x * x + 1; }
static float cubic2(float x, float A) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; }

/* torch upsample_bicubic2d (antialias=False, align_corners=False, size=):
 * per output index: 4 clamped source indices and weights (A = -0.75). */
static void bicubic_weights(int in, int out, int *idx, float *w) {
    const float scale = (float)in / (float)out;
    for (int i = 0; i < out; i++) {
        float real = scale * ((float)i + 0.5f) - 0.5f;
        int64_t ii = (int64_t)floorf(real);
        if (ii > in - 1) ii = in - 1;
        float t = real - (float)ii;
        if (t < 0) t = 0;
        if (t > 1) t = 1;
        const float A = -0.75f;
        w[i * 4 + 0] = cubic2(t + 1.0f, A);
        w[i * 4 + 1] = cubic1(t, A);
        w[i * 4 + 2] = cubic1(1.0f - t, A);
        w[i * 4 + 3] = cubic2(2.0f - t, A);
        for (int j = 0; j < 4; j++) {
            int64_t s = ii - 1 + j;
            if (s > in - 1) s = in - 1;
            if (s < 0) s = 0;
            idx[i * 4 + j] = (int)s;
        }
    }
}

static float aa_filter(float x) {
    const float a = -0.5f;
    x = fabsf(x);
    if (x < 1.0f) return cubic1(x, a);
    if (x < 2.0f) return cubic2(x, a);
    return 0.0f;
}

/* torch _upsample_bicubic2d_aa (antialias=True, align_corners=False, size=):
 * per output index a window [xmin, xmin+xsize) with normalized weights;
 * w has room for `cap` weights per output. */
static void aa_weights(int in, int out, int *xmin, int *xsize, float *w, int cap) {
    const float scale = (float)in / (float)out;
    const float support = (scale >= 1.0f) ? 2.0f * scale : 2.0f;
    const float invscale = (scale >= 1.0f) ? 1.0f / scale : 1.0f;
    for (int i = 0; i < out; i++) {
        float center = scale * ((float)i + 0.5f);
        int64_t lo = (int64_t)(center - support + 0.5f);
        if (lo < 0) lo = 0;
        int64_t hi = (int64_t)(center + support + 0.5f);
        if (hi > in) hi = in;
        int64_t sz = hi - lo;
        if (sz < 0) sz = 0;
        if (sz > cap) sz = cap;
        float total = 0;
        for (int64_t j = 0; j < sz; j++) {
            float v = aa_filter(((float)(j + lo) - center + 0.5f) * invscale);
            w[i * cap + j] = v;
            total += v;
        }
        if (total != 0.0f)
            for (int64_t j = 0; j < sz; j++) w[i * cap + j] /= total;
        xmin[i] = (int)lo;
        xsize[i] = (int)sz;
    }
}

/* src[g0*g0, D] (row-major grid, channel last) -> dst[gh*gw, D]. */
static int pos_interpolate(const float *src, int g0, float *dst, int gh, int gw, int D, int antialias) {
    if (!antialias) {
        int *iy = malloc((size_t)gh * 4 * sizeof *iy), *ix = malloc((size_t)gw * 4 * sizeof *ix);
        float *wy = malloc((size_t)gh * 4 * sizeof *wy), *wx = malloc((size_t)gw * 4 * sizeof *wx);
        if (!iy || !ix || !wy || !wx) { free(iy); free(ix); free(wy); free(wx); return -1; }
        bicubic_weights(g0, gh, iy, wy);
        bicubic_weights(g0, gw, ix, wx);
        for (int oy = 0; oy < gh; oy++)
            for (int ox = 0; ox < gw; ox++)
                for (int d = 0; d < D; d++) {
                    /* sum over rows of (sum over columns), in this order, in fp32 */
                    float outv = 0;
                    for (int a = 0; a < 4; a++) {
                        const float *row = src + (size_t)iy[oy * 4 + a] * g0 * D;
                        float t = 0;
                        for (int b = 0; b < 4; b++) {
                            float v = row[(size_t)ix[ox * 4 + b] * D + d] * wx[ox * 4 + b];
                            t = b == 0 ? v : t + v;
                        }
                        float v = t * wy[oy * 4 + a];
                        outv = a == 0 ? v : outv + v;
                    }
                    dst[((size_t)oy * gw + ox) * D + d] = outv;
                }
        free(iy); free(ix); free(wy); free(wx);
        return 0;
    }
    /* separable: width first (into tmp[g0, gw, D]), then height */
    const int cap_w = (int)ceilf((g0 >= gw ? 2.0f * g0 / gw : 2.0f)) * 2 + 1;
    const int cap_h = (int)ceilf((g0 >= gh ? 2.0f * g0 / gh : 2.0f)) * 2 + 1;
    int *xmin = malloc((size_t)gw * sizeof *xmin), *xsz = malloc((size_t)gw * sizeof *xsz);
    int *ymin = malloc((size_t)gh * sizeof *ymin), *ysz = malloc((size_t)gh * sizeof *ysz);
    float *wx = calloc((size_t)gw * cap_w, sizeof *wx), *wy = calloc((size_t)gh * cap_h, sizeof *wy);
    float *tmp = malloc((size_t)g0 * gw * D * sizeof *tmp);
    int rc = -1;
    if (!xmin || !xsz || !ymin || !ysz || !wx || !wy || !tmp) goto out;
    aa_weights(g0, gw, xmin, xsz, wx, cap_w);
    aa_weights(g0, gh, ymin, ysz, wy, cap_h);
    const int skip_w = (g0 == gw), skip_h = (g0 == gh);   /* torch skips a dimension of equal size */
    for (int y = 0; y < g0; y++)
        for (int ox = 0; ox < gw; ox++)
            for (int d = 0; d < D; d++) {
                float o;
                if (skip_w) {
                    o = src[((size_t)y * g0 + ox) * D + d];
                } else {
                    o = 0;
                    for (int j = 0; j < xsz[ox]; j++) {
                        float v = src[((size_t)y * g0 + xmin[ox] + j) * D + d] * wx[ox * cap_w + j];
                        o = j == 0 ? v : o + v;
                    }
                }
                tmp[((size_t)y * gw + ox) * D + d] = o;
            }
    for (int oy = 0; oy < gh; oy++)
        for (int ox = 0; ox < gw; ox++)
            for (int d = 0; d < D; d++) {
                float o;
                if (skip_h) {
                    o = tmp[((size_t)oy * gw + ox) * D + d];
                } else {
                    o = 0;
                    for (int j = 0; j < ysz[oy]; j++) {
                        float v = tmp[((size_t)(ymin[oy] + j) * gw + ox) * D + d] * wy[oy * cap_h + j];
                        o = j == 0 ? v : o + v;
                    }
                }
                dst[((size_t)oy * gw + ox) * D + d] = o;
            }
    rc = 0;
out:
    free(xmin); free(xsz); free(ymin); free(ysz); free(wx); free(wy); free(tmp);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* HF loading                                                                 */

static int shape_eq(const st_tensor_t *t, int ndim, const int64_t *s) {
    if (t->rank != ndim) return 0;
    for (int i = 0; i < ndim; i++) if (t->shape[i] != s[i]) return 0;
    return 1;
}

int model_load_hf_dir(model_t *m, const char *dir, char *err, size_t errlen) {
    model_priv_t *pv = m->priv;
    const model_config_t *c = &m->cfg;
    model_config_t fc;
    json_t *cj = NULL;
    if (model_read_hf_config(dir, &fc, &cj, err, errlen) < 0) return -1;
    /* the interpolation variant follows the model class transformers would use; a
     * config with use_mask_token false has no mask token in its file */
    const char *mtype = json_string_value(json_object_get(cj, "model_type"));
    const int antialias = mtype && strcmp(mtype, "dinov2_with_registers") == 0;
    const int mask_optional = json_is_false(json_object_get(cj, "use_mask_token"));
    json_decref(cj);
    if (fc.hidden != c->hidden || fc.layers != c->layers || fc.heads != c->heads ||
        fc.mlp_ratio != c->mlp_ratio || fc.patch != c->patch || fc.registers != c->registers) {
        snprintf(err, errlen,
                 "%s/config.json: the checkpoint is hidden %d, layers %d, heads %d, mlp_ratio %d, patch %d, registers %d "
                 "but the model is hidden %d, layers %d, heads %d, mlp_ratio %d, patch %d, registers %d",
                 dir, fc.hidden, fc.layers, fc.heads, fc.mlp_ratio, fc.patch, fc.registers,
                 c->hidden, c->layers, c->heads, c->mlp_ratio, c->patch, c->registers);
        return -1;
    }
    if (fc.layer_norm_eps != c->layer_norm_eps) m->cfg.layer_norm_eps = fc.layer_norm_eps;
    m->cfg.image_size = fc.image_size;

    st_file_t *f = st_open_in(dir, "model.safetensors", err, errlen);
    if (!f) return -1;
    const char *path = st_path(f);
    char serr[512];

    /* the table of the file: how big is its position table? */
    const int D = c->hidden;
    const st_tensor_t *tpos = st_find(f, "embeddings.position_embeddings");
    if (!tpos) {
        snprintf(err, errlen, "%s: missing tensor \"embeddings.position_embeddings\"", path);
        st_close(f);
        return -1;
    }
    if (tpos->rank != 3 || tpos->shape[0] != 1 || tpos->shape[2] != D || tpos->shape[1] < 2) {
        char s[96];
        st_shape_str(s, sizeof s, tpos->rank, tpos->shape);
        snprintf(err, errlen, "%s: tensor \"embeddings.position_embeddings\" has shape %s, expected [1,1+N,%d]",
                 path, s, D);
        st_close(f);
        return -1;
    }
    const int64_t P0 = tpos->shape[1] - 1;
    int g0 = (int)llround(sqrt((double)P0));
    if ((int64_t)g0 * g0 != P0) {
        snprintf(err, errlen, "%s: position table of %lld patches is not a square grid", path, (long long)P0);
        st_close(f);
        return -1;
    }
    if (P0 > 1000000) { snprintf(err, errlen, "%s: position table too large", path); st_close(f); return -1; }

    size_t maxn = (size_t)(P0 + 1) * D;
    for (int i = 0; i < m->n_tensors; i++) if (m->table[i].n > maxn) maxn = m->table[i].n;
    float *h = malloc(maxn * sizeof *h);
    float *h2 = malloc((size_t)(m->P + 1) * D * sizeof *h2);
    int rc = -1, heads_present = 0, heads_loaded = 0;
    if (!h || !h2) { snprintf(err, errlen, "model: out of memory loading %s", path); goto out; }

    /* heads: all or none */
    for (int i = 0; i < m->n_tensors; i++)
        if (m->table[i].group == MODEL_GROUP_HEADS && st_find(f, m->table[i].name)) heads_present++;

    /* pass 1: validate every tensor (presence, shape, dtype) before touching the model */
    for (int i = 0; i < m->n_tensors; i++) {
        const model_param_t *p = &m->table[i];
        if (p->group == MODEL_GROUP_HEADS && !heads_present) continue;
        const st_tensor_t *t = st_find(f, p->name);
        if (!t) {
            if (i == pv->i_mask && mask_optional) continue;   /* stays zero, as HF would not have it */
            snprintf(err, errlen, "%s: missing tensor \"%s\"", path, p->name);
            goto out;
        }
        if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16) {
            snprintf(err, errlen, "%s: tensor \"%s\" has dtype %s (expected F32 or BF16)", path, p->name,
                     st_dtype_name(t->dtype));
            goto out;
        }
        if (i == pv->i_pos) continue;        /* checked above, interpolated below */
        if (!shape_eq(t, p->ndim, p->shape)) {
            char a[96], b[96];
            st_shape_str(a, sizeof a, t->rank, t->shape);
            st_shape_str(b, sizeof b, p->ndim, p->shape);
            snprintf(err, errlen, "%s: tensor \"%s\" has shape %s, expected %s", path, p->name, a, b);
            goto out;
        }
    }
    /* pass 2: read and upload (an I/O error here leaves the parameters partly loaded) */
    for (int i = 0; i < m->n_tensors; i++) {
        const model_param_t *p = &m->table[i];
        const int is_head = p->group == MODEL_GROUP_HEADS;
        if ((is_head && !heads_present) || i == pv->i_pos) continue;
        const st_tensor_t *t = st_find(f, p->name);
        if (!t) continue;                    /* the optional mask token */
        if (st_read_f32(f, t, h, serr, sizeof serr) < 0) { snprintf(err, errlen, "%s", serr); goto out; }
        model_param_upload(m, i, h);
        m->be->sync(m->be);
        if (is_head) heads_loaded++;
    }
    if (st_read_f32(f, tpos, h, serr, sizeof serr) < 0) { snprintf(err, errlen, "%s", serr); goto out; }
    /* transformers: no interpolation when the patch count matches and the input is square */
    if (P0 == m->P && m->gh == m->gw) {
        memcpy(h2, h, (size_t)(P0 + 1) * D * sizeof *h);
    } else {
        memcpy(h2, h, (size_t)D * sizeof *h);   /* CLS position untouched */
        if (pos_interpolate(h + D, g0, h2 + D, m->gh, m->gw, D, antialias) < 0) {
            snprintf(err, errlen, "model: out of memory interpolating the position table");
            goto out;
        }
    }
    model_param_upload(m, pv->i_pos, h2);
    m->be->sync(m->be);
    m->heads_loaded = heads_present > 0 && heads_loaded == heads_present;
    model_sync_working_copy(m);
    rc = 0;
out:
    free(h);
    free(h2);
    st_close(f);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* forward / backward                                                         */

static inline void *wc(model_t *m, int i) {     /* working-copy pointer of table entry i */
    return (char *)m->params_c + m->table[i].off * dsz(m->opts.cdt);
}
static inline float *pm(model_t *m, int i) { return m->params + m->table[i].off; }
static inline float *gr(model_t *m, int i) {    /* gradient pointer (trainable only) */
    assert(m->grads && !m->table[i].frozen);
    return m->grads + (m->table[i].off - m->train_off);
}

static void stats(model_t *m, const char *name, const void *x, dtype_t dt, size_t n) {
    if (m->stats_fn) m->stats_fn(m->stats_ud, name, x, dt, n);
}

int model_forward(model_t *m, const void *images, dtype_t idt, const int32_t *idx, int Bn,
                  int want_hidden, char *err, size_t errlen) {
    return model_forward_aug(m, images, idt, idx, Bn, NULL, want_hidden, err, errlen);
}

int model_forward_aug(model_t *m, const void *images, dtype_t idt, const int32_t *idx, int Bn,
                      const im2col_aug_t *aug, int want_hidden, char *err, size_t errlen) {
    backend_t *be = m->be;
    model_priv_t *pv = m->priv;
    const model_config_t *c = &m->cfg;
    if (Bn <= 0 || Bn > m->opts.max_batch) {
        snprintf(err, errlen, "model_forward: batch %d out of range [1, %d]", Bn, m->opts.max_batch);
        return -1;
    }
    if (want_hidden && !m->hidden) {
        snprintf(err, errlen, "model_forward: last_hidden_state requested but the model was created without it");
        return -1;
    }
    if (idt != DT_F32 && idt != DT_BF16) {
        snprintf(err, errlen, "model_forward: images must be fp32 or bf16 (got %s)", dtype_name(idt));
        return -1;
    }
    const dtype_t cdt = m->opts.cdt;
    const int D = c->hidden, P = m->P, T = m->T, R = c->registers, NH = c->heads, HS = D / NH;
    const int F = D * c->mlp_ratio, p = c->patch, L = c->layers, BT = Bn * T;
    const int H = m->gh * p, W = m->gw * p;
    const int grads = m->opts.grads, K = m->opts.freeze_layers;

    /* patch embedding: images -> cols (gather + conversion fused) -> patches f32 */
    be->im2col(be, pv->cols, cdt, images, idt, idx, Bn, H, W, p, aug);
    be->matmul_fwd(be, pv->patches, DT_F32, pv->cols, wc(m, pv->i_pw), pm(m, pv->i_pb), cdt,
                   Bn * P, D, 3 * p * p);
    float *x = pv->acts[0].x_in;
    be->embed_fwd(be, x, pv->patches, pm(m, pv->i_cls), R ? pm(m, pv->i_reg) : NULL, pm(m, pv->i_pos),
                  Bn, P, R, D);
    stats(m, "embeddings", x, DT_F32, (size_t)BT * D);

    char nm[64];
    for (int l = 0; l < L; l++) {
        block_acts_t *a = &pv->acts[l];
        const block_idx_t *bi = &pv->blk[l];
        const int keep = grads && l >= K;
        float *x_out = (l + 1 < L) ? pv->acts[l + 1].x_in : pv->x_final;
        assert(a->x_in == x);
        /* attention half: x_mid = x + ls1 * proj(attn(LN1(x))). LN1 of blocks
         * after the first was computed by the previous block's fused
         * residual + LayerScale + LayerNorm (one pass over the stream, not two). */
        if (l == 0)
            be->layernorm_fwd(be, a->ln1, cdt, a->mean1, a->rstd1, x, pm(m, bi->norm1_w), pm(m, bi->norm1_b),
                              BT, D, c->layer_norm_eps);
        be->matmul_fwd(be, a->qkv, cdt, a->ln1, wc(m, bi->q_w), pm(m, bi->q_b), cdt, BT, 3 * D, D);
        be->attention_fwd(be, a->att, keep ? a->lse : NULL, a->qkv, cdt, Bn, T, NH, HS);
        be->matmul_fwd(be, a->proj, cdt, a->att, wc(m, bi->o_w), pm(m, bi->o_b), cdt, BT, D, D);
        /* x_mid = x + ls1 * proj, ln2 = LN2(x_mid) in one pass */
        be->layerscale_layernorm_fwd(be, a->x_mid, x, a->proj, cdt, pm(m, bi->ls1), a->ln2, cdt, a->mean2,
                                     a->rstd2, pm(m, bi->norm2_w), pm(m, bi->norm2_b), BT, D, c->layer_norm_eps);
        /* MLP half: x_out = x_mid + ls2 * fc2(gelu(fc1(LN2(x_mid)))) */
        if (keep) {   /* the backward reads the pre-activation: kept in fc1 */
            be->matmul_fwd(be, a->fc1, cdt, a->ln2, wc(m, bi->fc1_w), pm(m, bi->fc1_b), cdt, BT, F, D);
            be->gelu_fwd(be, a->gelu, cdt, a->fc1, cdt, (size_t)BT * F);
        } else {      /* only the GELU's output is read: one pass where the backend fuses it */
            be->matmul_gelu_fwd(be, a->gelu, cdt, a->fc1, a->ln2, wc(m, bi->fc1_w), pm(m, bi->fc1_b), cdt, BT, F, D);
        }
        be->matmul_fwd(be, a->fc2, cdt, a->gelu, wc(m, bi->fc2_w), pm(m, bi->fc2_b), cdt, BT, D, F);
        if (l + 1 < L) {
            /* x_out and the next block's LN1 (its ln1 buffer is free: a shared
             * one was last read by this block's qkv product) */
            block_acts_t *an = &pv->acts[l + 1];
            const block_idx_t *bn = &pv->blk[l + 1];
            be->layerscale_layernorm_fwd(be, x_out, a->x_mid, a->fc2, cdt, pm(m, bi->ls2), an->ln1, cdt, an->mean1,
                                         an->rstd1, pm(m, bn->norm1_w), pm(m, bn->norm1_b), BT, D,
                                         c->layer_norm_eps);
        } else {
            be->layerscale_fwd(be, x_out, a->x_mid, a->fc2, cdt, pm(m, bi->ls2), BT, D);
        }
        x = x_out;
        if (m->stats_fn) {
            snprintf(nm, sizeof nm, "encoder.layer.%d", l);
            stats(m, nm, x, DT_F32, (size_t)BT * D);
        }
    }

    /* final LayerNorm: the CLS row (pooler) always; every token when asked */
    be->token_slice(be, pv->cls_res, x, DT_F32, Bn, T, D, 0);
    be->layernorm_fwd(be, m->pooler, DT_F32, pv->mean_f, pv->rstd_f, pv->cls_res, pm(m, pv->i_lnw),
                      pm(m, pv->i_lnb), Bn, D, c->layer_norm_eps);
    stats(m, "layernorm", m->pooler, DT_F32, (size_t)Bn * D);
    if (want_hidden)
        be->layernorm_fwd(be, m->hidden, DT_F32, NULL, NULL, x, pm(m, pv->i_lnw), pm(m, pv->i_lnb),
                          BT, D, c->layer_norm_eps);

    if (c->head_hand) {
        const int HJ = c->joints_hidden, HC = c->conf_hidden;
        if (cdt != DT_F32) be->cast(be, pv->pool_c, cdt, m->pooler, DT_F32, (size_t)Bn * D);
        be->matmul_fwd(be, pv->hj, DT_F32, pv->pool_c, wc(m, pv->i_j1w), pm(m, pv->i_j1b), cdt, Bn, HJ, D);
        be->gelu_fwd(be, pv->gj, cdt, pv->hj, DT_F32, (size_t)Bn * HJ);
        stats(m, "heads.hand.joints.fc1", pv->gj, cdt, (size_t)Bn * HJ);
        be->matmul_fwd(be, m->pred, DT_F32, pv->gj, wc(m, pv->i_j2w), pm(m, pv->i_j2b), cdt,
                       Bn, HAND_COORDS, HJ);
        stats(m, "heads.hand.joints", m->pred, DT_F32, (size_t)Bn * HAND_COORDS);
        be->matmul_fwd(be, pv->hc, DT_F32, pv->pool_c, wc(m, pv->i_c1w), pm(m, pv->i_c1b), cdt, Bn, HC, D);
        be->gelu_fwd(be, pv->gc, cdt, pv->hc, DT_F32, (size_t)Bn * HC);
        stats(m, "heads.hand.conf.fc1", pv->gc, cdt, (size_t)Bn * HC);
        be->matmul_fwd(be, m->conf_logit, DT_F32, pv->gc, wc(m, pv->i_c2w), pm(m, pv->i_c2b), cdt,
                       Bn, MODEL_CONF_OUT, HC);
        stats(m, "heads.hand.conf", m->conf_logit, DT_F32, (size_t)Bn * MODEL_CONF_OUT);
    }
    m->last_B = Bn;
    return 0;
}

/* The gradients from table entry i on are final: tell the hook. */
static void grads_ready(model_t *m, int i) {
    if (!m->grad_fn) return;
    size_t off = i < 0 ? m->train_off : m->table[i].off;
    m->grad_fn(m->grad_ud, off > m->train_off ? off - m->train_off : 0);
}

void model_backward(model_t *m, const float *dpred, const float *dconf) {
    backend_t *be = m->be;
    model_priv_t *pv = m->priv;
    const model_config_t *c = &m->cfg;
    assert(m->opts.grads && c->head_hand && m->last_B > 0);
    const dtype_t cdt = m->opts.cdt;
    const int Bn = m->last_B, D = c->hidden, P = m->P, T = m->T, R = c->registers, NH = c->heads;
    const int HS = D / NH, F = D * c->mlp_ratio, p = c->patch, L = c->layers, BT = Bn * T;
    const int K = m->opts.freeze_layers, HJ = c->joints_hidden, HC = c->conf_hidden;

    /* heads -> d_pool [B,D] */
    be->matmul_bwd(be, pv->d_gj, gr(m, pv->i_j2w), gr(m, pv->i_j2b), dpred, DT_F32, pv->gj, wc(m, pv->i_j2w), cdt,
                   Bn, HAND_COORDS, HJ);
    be->gelu_bwd(be, pv->d_hj, DT_F32, NULL, pv->d_gj, pv->hj, DT_F32, Bn, HJ);
    be->matmul_bwd(be, pv->d_pool, gr(m, pv->i_j1w), gr(m, pv->i_j1b), pv->d_hj, DT_F32, pv->pool_c,
                   wc(m, pv->i_j1w), cdt, Bn, HJ, D);
    if (dconf) {
        be->matmul_bwd(be, pv->d_gc, gr(m, pv->i_c2w), gr(m, pv->i_c2b), dconf, DT_F32, pv->gc,
                       wc(m, pv->i_c2w), cdt, Bn, MODEL_CONF_OUT, HC);
        be->gelu_bwd(be, pv->d_hc, DT_F32, NULL, pv->d_gc, pv->hc, DT_F32, Bn, HC);
        be->matmul_bwd(be, pv->d_pool2, gr(m, pv->i_c1w), gr(m, pv->i_c1b), pv->d_hc, DT_F32, pv->pool_c,
                       wc(m, pv->i_c1w), cdt, Bn, HC, D);
        /* d_pool += d_pool2 */
        be->layerscale_fwd(be, pv->d_pool, pv->d_pool, pv->d_pool2, DT_F32, pv->ones, Bn, D);
    }
    /* final LayerNorm of the CLS row -> residual-stream gradient */
    be->zero(be, pv->d_cls, (size_t)Bn * D * 4);
    be->layernorm_bwd(be, pv->d_cls, gr(m, pv->i_lnw), gr(m, pv->i_lnb), pv->d_pool, pv->cls_res, NULL, DT_F32,
                      NULL, pm(m, pv->i_lnw), pv->mean_f, pv->rstd_f, Bn, D);
    grads_ready(m, pv->i_lnw);   /* the final LayerNorm and the heads */
    if (K >= L) { grads_ready(m, -1); return; }   /* every block frozen: the final LayerNorm and the heads only */
    float *dres = pv->d_res;
    be->zero(be, dres, (size_t)BT * D * 4);
    be->token_scatter_add(be, dres, pv->d_cls, Bn, T, D, 0);

    float *da = pv->d_a, *db = pv->d_b;
    for (int l = L - 1; l >= K; l--) {
        block_acts_t *a = &pv->acts[l];
        const block_idx_t *bi = &pv->blk[l];
        /* MLP half (dres = dL/dx_out). The gradients into the products (da) are
         * stored in cdt by the op that makes them, which also sums the
         * product's bias gradient in the same pass; their outputs (db) are f32. */
        be->layerscale_bwd(be, da, cdt, gr(m, bi->ls2), gr(m, bi->fc2_b), dres, a->fc2, cdt, pm(m, bi->ls2),
                           BT, D);                                                                        /* d fc2 */
        /* GELU output: recomputed from fc1 into the one shared buffer (not kept per block) */
        be->gelu_fwd(be, a->gelu, cdt, a->fc1, cdt, (size_t)BT * F);
        be->matmul_bwd(be, NULL, gr(m, bi->fc2_w), NULL, da, cdt, a->gelu, wc(m, bi->fc2_w), cdt,
                       BT, D, F);                                                                         /* d fc2_w */
        /* d fc1 = (d fc2 @ fc2_w) * gelu'(fc1), into the GELU output's buffer (read
         * for the last time just above); db may hold the f32 product on the way */
        void *dfc1 = a->gelu;
        be->matmul_dgelu(be, dfc1, cdt, gr(m, bi->fc1_b), db, da, wc(m, bi->fc2_w), a->fc1, cdt, BT, D, F);
        be->matmul_bwd(be, db, gr(m, bi->fc1_w), NULL, dfc1, cdt, a->ln2, wc(m, bi->fc1_w), cdt,
                       BT, F, D);                                                                         /* d ln2 */
        be->layernorm_bwd(be, dres, gr(m, bi->norm2_w), gr(m, bi->norm2_b), db, a->x_in, a->proj, cdt,
                          pm(m, bi->ls1), pm(m, bi->norm2_w), a->mean2, a->rstd2, BT, D);               /* dres = dL/dx_mid */
        /* attention half */
        be->layerscale_bwd(be, da, cdt, gr(m, bi->ls1), gr(m, bi->o_b), dres, a->proj, cdt, pm(m, bi->ls1),
                           BT, D);                                                                        /* d proj */
        be->matmul_bwd(be, db, gr(m, bi->o_w), NULL, da, cdt, a->att, wc(m, bi->o_w), cdt, BT, D, D);  /* d att */
        be->attention_bwd(be, da, cdt, gr(m, bi->q_b), db, a->qkv, a->att, a->lse, cdt, Bn, T, NH, HS);  /* d qkv */
        be->matmul_bwd(be, db, gr(m, bi->q_w), NULL, da, cdt, a->ln1, wc(m, bi->q_w), cdt,
                       BT, 3 * D, D);                                                                     /* d ln1 */
        be->layernorm_bwd(be, dres, gr(m, bi->norm1_w), gr(m, bi->norm1_b), db, a->x_in, NULL, DT_F32, NULL,
                          pm(m, bi->norm1_w), a->mean1, a->rstd1, BT, D);                               /* dres = dL/dx_in */
        grads_ready(m, bi->norm1_w);   /* block l is done */
    }
    if (K == 0) {
        /* embeddings: dres -> d patches, d cls/reg/pos; patch projection (no gradient into the images) */
        be->embed_bwd(be, da, gr(m, pv->i_cls), R ? gr(m, pv->i_reg) : NULL, gr(m, pv->i_pos), dres, Bn, P, R, D);
        be->matmul_bwd(be, NULL, gr(m, pv->i_pw), gr(m, pv->i_pb), da, DT_F32, pv->cols, wc(m, pv->i_pw), cdt,
                       Bn * P, D, 3 * p * p);
    }
    grads_ready(m, -1);
}

void model_zero_grad(model_t *m) {
    if (m->grads) m->be->zero(m->be, m->grads, (m->n_params - m->train_off) * 4);
}

double model_grad_sumsq(model_t *m) {
    if (!m->grads || m->n_params == m->train_off) return 0.0;
    return m->be->sumsq(m->be, m->grads, m->n_params - m->train_off);
}

/* ------------------------------------------------------------------------ */
/* AdamW                                                                      */

int model_adamw_max_segments(const model_t *m) { return m->n_tensors + 1; }

void model_adamw_segments(const model_t *m, float lr_backbone, float lr_heads, float wd,
                          adamw_seg_t *segs, int *n) {
    int k = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_param_t *p = &m->table[i];
        if (p->frozen) continue;
        float lr = p->group == MODEL_GROUP_HEADS ? lr_heads : lr_backbone;
        float w = p->is_matrix ? wd : 0.0f;
        size_t off = p->off - m->train_off;
        /* merge with the previous run when alike; padding between tensors is zero in
         * params, grads and moments, so it stays zero under any update */
        if (k > 0 && segs[k - 1].lr == lr && segs[k - 1].wd == w) {
            segs[k - 1].n = off + p->n - segs[k - 1].off;
        } else {
            segs[k].off = off;
            segs[k].n = p->n;
            segs[k].lr = lr;
            segs[k].wd = w;
            k++;
        }
    }
    *n = k;
}

void model_adamw_step(model_t *m, float lr_backbone, float lr_heads, float wd,
                      float beta1, float beta2, float eps, float gscale) {
    assert(m->adam_m && m->adam_v && m->grads);
    int cap = model_adamw_max_segments(m), n = 0;
    adamw_seg_t *segs = malloc((size_t)cap * sizeof *segs);
    if (!segs) { fprintf(stderr, "model_adamw_step: out of memory\n"); exit(1); }
    model_adamw_segments(m, lr_backbone, lr_heads, wd, segs, &n);
    m->adam_step++;
    void *pc = (m->params_c == m->params) ? NULL
             : (char *)m->params_c + m->train_off * dsz(m->opts.cdt);
    if (n > 0)
        m->be->adamw(m->be, m->params + m->train_off, pc, m->opts.cdt, m->grads, m->adam_m, m->adam_v,
                     segs, n, beta1, beta2, eps, (int)m->adam_step, gscale);
    free(segs);
}
