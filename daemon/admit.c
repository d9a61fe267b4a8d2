/* daemon/admit.c — a job's effective batch and memory estimate against the
 * devices' room, at submission and at start (see admit.h). The arithmetic of
 * the estimate is the stages' and the model's own (stage_memory_estimate ->
 * model_working_bytes); here only the room is measured. */
#include "daemon/admit.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/sched.h"
#include "gpu/checkpoint.h"
#include "gpu/model.h"
#include "gpu/stages.h"
#include "store/errbuf.h"

#define GB 1e9

/* Anonymous resident memory of a process (the CPU worker's own memory; the
 * shared dataset mapping is not anonymous). -1 when unknown. */
static long long proc_anon_bytes(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %lld kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

long long admit_job_bytes(daemon_t *d, int slot, int pid, size_t free_b, size_t total_b) {
    if (!strcmp(d->backend_name, "cpu")) return pid > 0 ? proc_anon_bytes(pid) : -1;
    size_t idle = atomic_load(&d->idle_used[slot]), used = total_b - free_b;
    if (!idle) return -1;
    return (long long)(used > idle ? used - idle : 0);
}

/* The directory of a checkpoint id, or "" when the id is not one. */
static void ckpt_dir_of(daemon_t *d, const char *id, char *out, size_t len) {
    json_t *c = NULL;
    char err[256];
    out[0] = 0;
    if (store_checkpoint_get(d->store, id, &c, err, sizeof err) == STORE_OK)
        snprintf(out, len, "%s", json_string_value(json_object_get(c, "path")) ?: "");
    json_decref(c);
}

/* The model the job will run, from the same sources in the same order as
 * stage_model_open: its checkpoint, else model.weights, else the backbone.
 * 0, or -1 when it cannot be known before the worker reads the files (the
 * worker then reports any problem itself). */
static int job_model_config(daemon_t *d, const jobspec_t *js, model_config_t *cfg) {
    char dir[PATH_MAX] = "", err[512];
    const char *ck = js->type == JOB_TRAIN ? js->resume_from : js->checkpoint;
    if (ck[0]) ckpt_dir_of(d, ck, dir, sizeof dir);
    else if (js->model.weights[0]) {
        ckpt_dir_of(d, js->model.weights, dir, sizeof dir);
        if (!dir[0]) snprintf(dir, sizeof dir, "%s", js->model.weights);
    }
    if (dir[0]) {
        int has_meta = 0;
        if (ckpt_read_config(dir, cfg, NULL, &has_meta, err, sizeof err) == 0) return 0;
        log_debug(NULL, "memory estimate: %s", err);
        return -1;
    }
    if (!js->model.backbone[0]) return -1;
    return model_config_by_name(js->model.backbone, js->model.registers, cfg, err, sizeof err) ? -1 : 0;
}

/* "1.234 GB (parameters 0.100, gradients 0.050, AdamW moments 0.100,
 * activations 0.900 for batch 64 at 224x224, buffers and workspace 0.080)" */
static void describe(const stage_mem_t *m, size_t need, int batch, int h, int w, char *out, size_t len) {
    char host[64] = "";
    if (need > m->backend + m->host) snprintf(host, sizeof host, ", CUDA runtime %.3f", (need - m->backend) / GB);
    else if (m->host) snprintf(host, sizeof host, ", outputs on the host %.3f", m->host / GB);
    snprintf(out, len, "%.3f GB (parameters %.3f, gradients %.3f, AdamW moments %.3f, activations %.3f for batch "
             "%d at %dx%d, buffers and workspace %.3f%s)", need / GB, m->params / GB, m->grads / GB,
             m->optimizer / GB, m->activations / GB, batch, h, w, (m->batch + m->workspace) / GB, host);
}

/* Room of device slot for a job: free memory, plus what the running job
 * holds when running_counts (it ends first), capped by --job-memory-gb.
 * -1 with msg when the memory cannot be read. */
static int slot_room(daemon_t *d, int slot, const json_t *running, int running_counts, size_t *room,
                     char *why, size_t whylen, char *msg, size_t msglen) {
    size_t fr = 0, tot = 0;
    daemon_bind_device(d, slot);
    if (d->be[slot]->mem_info(d->be[slot], &fr, &tot)) {
        snprintf(msg, msglen, "device %d: cannot read its memory: %s", d->dev_index[slot], d->be[slot]->err);
        return -1;
    }
    size_t held = 0;
    const char *holder = NULL;
    size_t i;
    json_t *r;
    json_array_foreach(running, i, r) {
        int pid = 0;
        if (!running_counts || !sched_running_on(r, d->dev_index[slot], &pid)) continue;
        long long b = admit_job_bytes(d, slot, pid, fr, tot);
        if (b > 0) { held = (size_t)b; holder = json_string_value(json_object_get(r, "id")); }
    }
    *room = fr + held;
    int n = snprintf(why, whylen, "%s %.3f GB", strcmp(d->backend_name, "cpu") ? "free" : "available", fr / GB);
    if (holder && n > 0 && (size_t)n < whylen)
        n += snprintf(why + n, whylen - (size_t)n, " + %.3f GB held by the running job %s", held / GB, holder);
    size_t cap = (size_t)(d->cfg.job_memory_gb * GB);
    if (cap && cap < *room) {
        *room = cap;
        if (n > 0 && (size_t)n < whylen) snprintf(why + n, whylen - (size_t)n, "; capped by --job-memory-gb %g",
                                                  d->cfg.job_memory_gb);
    }
    return 0;
}

/* Checks need against the room of the devices a job of `ranks` ranks would
 * take: slots[0..ranks) when given, else the `ranks` roomiest devices. On the
 * cpu backend the virtual devices are one host: the ranks' needs add up
 * against its room. 0 fits, 1 does not (msg), -1 cannot tell (msg). */
static int check_room(daemon_t *d, const stage_mem_t *m, int batch, int h, int w, const int *slots, int ranks,
                      int running_counts, char *msg, size_t msglen) {
    int cpu = !strcmp(d->backend_name, "cpu");
    /* cpu: the host is the device; cuda: the worker's own runtime comes on top */
    size_t need = m->backend + (cpu ? m->host : STAGE_CUDA_RUNTIME_BYTES);
    json_t *running = running_counts ? sched_running(d->sched) : json_array();
    size_t room[CFG_MAX_DEVICES];
    char why[CFG_MAX_DEVICES][256];
    int order[CFG_MAX_DEVICES], n = 0;
    if (slots) {
        for (int k = 0; k < ranks; k++) order[n++] = slots[k];
    } else {
        for (int s = 0; s < d->n_dev; s++) order[n++] = s;
    }
    for (int k = 0; k < n; k++)
        if (slot_room(d, order[k], running, running_counts, &room[order[k]], why[order[k]], sizeof why[0], msg,
                      msglen)) {
            json_decref(running);
            return -1;
        }
    json_decref(running);
    if (!slots) {   /* roomiest first */
        for (int a = 1; a < n; a++)
            for (int b = a; b > 0 && room[order[b]] > room[order[b - 1]]; b--) {
                int t = order[b]; order[b] = order[b - 1]; order[b - 1] = t;
            }
        if (ranks > n) ranks = n;
    }
    char est[512];
    describe(m, need, batch, h, w, est, sizeof est);
    if (cpu) {   /* one host: the ranks' needs together against its room */
        size_t total = need * (size_t)ranks, best = room[order[0]];
        if (total > best) {
            if (ranks > 1)
                snprintf(msg, msglen, "the job needs about %s on each of its %d devices, %.3f GB in all, but the host "
                         "(cpu backend) has room for %.3f GB (%s)", est, ranks, total / GB, best / GB, why[order[0]]);
            else
                snprintf(msg, msglen, "the job needs about %s but the host (cpu backend) has room for %.3f GB (%s)",
                         est, best / GB, why[order[0]]);
            return 1;
        }
        return 0;
    }
    for (int k = 0; k < ranks; k++) {
        int s = order[k];
        if (need > room[s]) {
            snprintf(msg, msglen, "the job needs about %s%s but device %d has room for %.3f GB (%s)", est,
                     ranks > 1 ? " on each of its devices" : "", d->dev_index[s], room[s] / GB, why[s]);
            return 1;
        }
    }
    if (m->host) {
        size_t avail = 0, total = 0;
        char e2[200];
        if (backend_host_mem_info(&avail, &total, e2, sizeof e2) == 0 && m->host > avail) {
            snprintf(msg, msglen, "the job keeps about %.3f GB of outputs in host memory but the host has %.3f GB "
                     "available", m->host / GB, avail / GB);
            return 1;
        }
    }
    return 0;
}

int admit_devices(daemon_t *d, jobspec_t *js, int shards, int *expanded, daemon_err_t *e) {
    *expanded = 0;
    for (int i = 0; i < js->n_device_list; i++) {
        int found = 0;
        for (int s = 0; s < d->n_dev; s++) found |= d->dev_index[s] == js->device_list[i];
        if (!found) {
            char f[32], list[160] = "";
            snprintf(f, sizeof f, "devices[%d]", i);
            for (int s = 0, o = 0; s < d->n_dev && o < (int)sizeof list - 8; s++)
                o += snprintf(list + o, sizeof list - (size_t)o, "%s%d", s ? "," : "", d->dev_index[s]);
            daemon_err_set(e, 422, "unprocessable", f, "%s = %d is not one of this daemon's devices (%s)", f,
                           js->device_list[i], list);
            return -1;
        }
    }
    if (js->devices > d->n_dev) {
        daemon_err_set(e, 422, "unprocessable", "devices", "the job asks for %d devices; this daemon has %d (--devices)",
                       js->devices, d->n_dev);
        return -1;
    }
    if (shards > 1 && (js->devices != shards || js->type == JOB_DEBUG)) {
        if (!js->devices_given && js->type != JOB_DEBUG) {
            js->devices = shards;   /* a job on a sharded dataset runs where the shards are */
            *expanded = 1;
            return 0;
        }
        char msg[512];
        admit_sharded_why(msg, sizeof msg, js->dataset, shards, js->type == JOB_DEBUG);
        daemon_err_set(e, 422, "unprocessable", js->type == JOB_DEBUG ? "dataset" : "devices", "%s", msg);
        return -1;
    }
    return 0;
}

int admit_sharded_why(char *msg, size_t msglen, const char *dataset, int shards, int debug) {
    return errbuf_set(msg, msglen, "dataset '%s' is sharded across %d devices (each holds 1/%d of the samples), so %s",
                      dataset, shards, shards,
                      debug ? "a debug job, which runs on one device, cannot use it"
                            : shards == 2 ? "a job on it needs both (\"devices\": 2, or leave \"devices\" out)"
                                          : "a job on it needs all of them (\"devices\": N, or leave \"devices\" out)");
}

void admit_note(daemon_t *d, const char *id, json_t *extra, const char *fmt, ...) {
    char note[512], err[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(note, sizeof note, fmt, ap);
    va_end(ap);
    json_t *ev = extra ? extra : json_object();
    json_object_set_new(ev, "message", errbuf_json_string(note));
    json_object_set_new(ev, "level", json_string("info"));
    if (store_event_append(d->store, id, "log", ev, NULL, err, sizeof err)) log_warn(id, "%s", err);
    json_decref(ev);
    log_info(id, "%s", note);
}

/* The memory estimate of one rank of a job of js->devices ranks: its share of the batch. */
static int rank_estimate(const jobspec_t *js, const model_config_t *cfg, int h, int w, stage_mem_t *m, int *batch,
                         char *err, size_t errlen) {
    jobspec_t one = *js;
    one.batch_size = (js->batch_size + js->devices - 1) / js->devices;
    *batch = one.batch_size;
    return stage_memory_estimate(&one, cfg, h, w, m, err, errlen);
}

int admit_submission(daemon_t *d, jobspec_t *js, const json_t *ds, int *requested, daemon_err_t *e) {
    *requested = 0;
    const json_t *jn = json_object_get(ds, "samples"), *sz = json_object_get(ds, "image_size");
    if (!json_is_integer(jn) || json_array_size(sz) != 2) return 0;   /* still loading: checked at start */
    int64_t n = json_integer_value(jn);
    int h = (int)json_integer_value(json_array_get(sz, 0)), w = (int)json_integer_value(json_array_get(sz, 1));
    char field[64], msg[1024];
    if (js->n_ranges && jobspec_indices_check(js, n, field, sizeof field, msg, sizeof msg)) {
        daemon_err_set(e, 422, "unprocessable", field, "%s", msg);
        return -1;
    }
    int B = stage_effective_batch(js, n);
    if (B < js->batch_size) {
        *requested = js->batch_size;
        js->batch_size = B;
    }
    model_config_t cfg;
    if (job_model_config(d, js, &cfg)) return 0;
    stage_mem_t m;
    char err[512];
    int rb = js->batch_size;
    if (rank_estimate(js, &cfg, h, w, &m, &rb, err, sizeof err)) {
        log_debug(NULL, "memory estimate: %s", err);   /* the worker reports it precisely */
        return 0;
    }
    int slots[JS_MAX_DEVICES], have_list = js->n_device_list > 0;
    for (int i = 0; i < js->n_device_list; i++)
        for (int s = 0; s < d->n_dev; s++)
            if (d->dev_index[s] == js->device_list[i]) slots[i] = s;
    int r = check_room(d, &m, rb, h, w, have_list ? slots : NULL, js->devices, 1, msg, sizeof msg);
    if (r < 0) log_warn(NULL, "memory check skipped: %s", msg);
    if (r > 0) {
        daemon_err_set(e, 507, "insufficient_storage", "", "%s", msg);
        return -1;
    }
    return 0;
}

int admit_start(daemon_t *d, const json_t *spec_json, const int *slots, int n, const json_t *ds, char *msg,
                size_t msglen) {
    const json_t *jn = json_object_get(ds, "samples"), *sz = json_object_get(ds, "image_size");
    if (!json_is_integer(jn) || json_array_size(sz) != 2) return 0;
    int image_h = (int)json_integer_value(json_array_get(sz, 0)), image_w = (int)json_integer_value(json_array_get(sz, 1));
    jobspec_t js;
    char field[128], err[512];
    if (jobspec_parse(spec_json, &js, field, sizeof field, err, sizeof err)) return 0;   /* the worker says why */
    js.batch_size = stage_effective_batch(&js, json_integer_value(jn));   /* as the stage will */
    js.devices = n;
    model_config_t cfg;
    stage_mem_t m;
    int r = 0, rb = js.batch_size;
    if (job_model_config(d, &js, &cfg) == 0 &&
        rank_estimate(&js, &cfg, image_h, image_w, &m, &rb, err, sizeof err) == 0) {
        /* the devices are idle now: what they use is the baseline a running job is measured against */
        for (int k = 0; k < n; k++) {
            size_t fr = 0, tot = 0;
            daemon_bind_device(d, slots[k]);
            if (strcmp(d->backend_name, "cpu") && d->be[slots[k]]->mem_info(d->be[slots[k]], &fr, &tot) == 0)
                atomic_store(&d->idle_used[slots[k]], tot - fr);
        }
        r = check_room(d, &m, rb, image_h, image_w, slots, n, 0, msg, msglen);
        if (r < 0) log_warn(NULL, "memory check skipped: %s", msg);
    }
    jobspec_free(&js);
    return r > 0 ? -1 : 0;
}

void admit_note_sharded(daemon_t *d, const char *id, const char *dataset, int shards) {
    admit_note(d, id, json_pack("{s:i}", "devices", shards),
               "no \"devices\" given: dataset '%s' is sharded across %d devices, so the job runs on all %d", dataset,
               shards, shards);
}
