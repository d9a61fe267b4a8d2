/* tests/unit/test_db.c — the SQLite store: migrations (from an empty file and
 * from a version-1 file), idempotent job insert and conflicts, state
 * transition rules (store/job.h: names, parsing, the table against the
 * diagram arrow by arrow), events since an id, metrics latest, checkpoint prune
 * queries, datasets, and reopening after close; the bounded reads (job state
 * alone, listing summaries, the job-record counter) and retention (inline
 * images dropped from ended specs with idempotency kept, pruning beyond a
 * count with events and metrics, jobs with checkpoints kept). */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/db.h"
#include "tests/tap.h"

static char dir[256];

static void path_in(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

/* A database exactly as schema version 1 (traind 0.1) left it, with data. */
static const char *v1_schema =
    "CREATE TABLE datasets(name TEXT PRIMARY KEY, source TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK(state IN ('loading','ready','failed')),"
    "  samples INTEGER, image_h INTEGER, image_w INTEGER, fields TEXT,"
    "  bytes INTEGER NOT NULL DEFAULT 0, progress REAL NOT NULL DEFAULT 0, gb_per_s REAL,"
    "  error TEXT, created REAL NOT NULL, loaded REAL);"
    "CREATE TABLE jobs(seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, submission_id TEXT UNIQUE,"
    "  type TEXT NOT NULL, dataset TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0,"
    "  spec TEXT NOT NULL, plan TEXT NOT NULL, state TEXT NOT NULL, progress TEXT, result TEXT,"
    "  error TEXT, resumed_from TEXT, resume_checkpoint TEXT, device INTEGER, worker_pid INTEGER,"
    "  created REAL NOT NULL, started REAL, finished REAL);"
    "CREATE INDEX jobs_queue ON jobs(state, priority DESC, seq);"
    "CREATE INDEX jobs_dataset ON jobs(dataset, state);"
    "CREATE TABLE job_events(job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  id INTEGER NOT NULL, type TEXT NOT NULL, data TEXT, time REAL NOT NULL,"
    "  PRIMARY KEY(job, id)) WITHOUT ROWID;"
    "CREATE TABLE metrics(job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL, step INTEGER NOT NULL, value REAL, time REAL NOT NULL);"
    "CREATE INDEX metrics_job ON metrics(job, name, step);"
    "CREATE TABLE checkpoints(seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
    "  job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, step INTEGER NOT NULL,"
    "  path TEXT NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT, metrics TEXT, created REAL NOT NULL);"
    "CREATE INDEX checkpoints_job ON checkpoints(job, step);"
    "INSERT INTO datasets VALUES('old', '{\"synthetic\":{}}', 'ready', 16, 28, 28, '[]', 100, 1, 2.0, NULL,"
    "  1700000000, 1700000001);"
    "INSERT INTO jobs(seq, id, type, dataset, priority, spec, plan, state, created)"
    "  VALUES(1, 'j-000001', 'train', 'ds', 0, '{}', '{}', 'succeeded', 1700000000);"
    "INSERT INTO metrics VALUES('j-000001', 'loss', 1, 2.0, 1700000001);"
    "INSERT INTO metrics VALUES('j-000001', 'loss', 3, 0.5, 1700000003);"
    "INSERT INTO metrics VALUES('j-000001', 'loss', 2, 1.0, 1700000002);"
    "INSERT INTO metrics VALUES('j-000001', 'val_mpjpe', 2, 40.0, 1700000002);"
    "INSERT INTO checkpoints(seq, id, job, step, path, bytes, created)"
    "  VALUES(1, 'c-000001', 'j-000001', 3, '/x', 10, 1700000003);"
    "PRAGMA user_version=1;";

static json_t *spec_of(int lr_scale) {
    return json_pack("{s:s, s:s, s:i, s:{s:f}}", "type", "train", "dataset", "ds", "priority", 0,
                     "optim", "lr", 1e-3 * lr_scale);
}

static void test_migrations(void) {
    char p[512], err[256];
    path_in(p, sizeof p, "empty.db");
    store_t *s = store_open(p, err, sizeof err);
    ok(s != NULL, "open creates an empty database (%s)", s ? "ok" : err);
    if (!s) return;
    ok(store_user_version(s) == STORE_SCHEMA_VERSION, "empty file migrated to version %d", STORE_SCHEMA_VERSION);
    store_close(s);
    s = store_open(p, err, sizeof err);
    ok(s && store_user_version(s) == STORE_SCHEMA_VERSION, "reopening a current file is a no-op");
    store_close(s);

    /* from version 1 */
    path_in(p, sizeof p, "v1.db");
    sqlite3 *db;
    ok(sqlite3_open(p, &db) == SQLITE_OK && sqlite3_exec(db, v1_schema, NULL, NULL, NULL) == SQLITE_OK,
       "version-1 fixture written");
    sqlite3_close(db);
    s = store_open(p, err, sizeof err);
    ok(s != NULL, "version-1 file opens (%s)", s ? "ok" : err);
    if (!s) return;
    ok(store_user_version(s) == STORE_SCHEMA_VERSION, "version 1 migrated to %d", STORE_SCHEMA_VERSION);
    json_t *latest = NULL;
    store_metrics_latest(s, "j-000001", &latest, err, sizeof err);
    json_t *loss = json_object_get(latest, "loss");
    ok(json_integer_value(json_object_get(loss, "step")) == 3 &&
       json_real_value(json_object_get(loss, "value")) == 0.5, "metrics_latest backfilled with the last step");
    ok(json_integer_value(json_object_get(json_object_get(latest, "val_mpjpe"), "step")) == 2,
       "every metric name backfilled");
    json_decref(latest);
    json_t *ck = NULL;
    ok(store_checkpoint_get(s, "c-000001", &ck, err, sizeof err) == STORE_OK &&
       json_is_array(json_object_get(ck, "files")), "old checkpoint readable with the new files column");
    json_decref(ck);
    json_t *ods = NULL;
    ok(store_dataset_get(s, "old", &ods, err, sizeof err) == STORE_OK &&
       json_integer_value(json_object_get(ods, "samples")) == 16 && json_is_null(json_object_get(ods, "masked_joints")),
       "old dataset readable, masked_joints null (version 3 column)");
    json_decref(ods);
    json_t *job = NULL;
    ok(store_job_get(s, "j-000001", &job, err, sizeof err) == STORE_OK &&
       strcmp(json_string_value(json_object_get(job, "state")), "succeeded") == 0, "old job kept");
    json_decref(job);
    /* a new job continues the sequence */
    json_t *spec = spec_of(1), *plan = json_object();
    int created;
    ok(store_job_insert(s, JOB_TRAIN, "ds", 0, NULL, spec, plan, &job, &created, err, sizeof err) == STORE_OK &&
       strcmp(json_string_value(json_object_get(job, "id")), "j-000002") == 0, "ids continue after migration");
    json_decref(job);
    json_decref(spec);
    json_decref(plan);
    store_close(s);

    /* a file from the future is refused */
    path_in(p, sizeof p, "future.db");
    sqlite3_open(p, &db);
    sqlite3_exec(db, "PRAGMA user_version=99;", NULL, NULL, NULL);
    sqlite3_close(db);
    s = store_open(p, err, sizeof err);
    ok(s == NULL && strstr(err, "newer"), "a newer schema is refused: %s", err);
    store_close(s);
}

/* store/job.h: names round-trip, the message lists match the tables, and the
 * transition table is exactly the diagram's arrows. */
static void test_job_vocabulary(void) {
    int names_ok = 1;
    char list[256] = "";
    for (int i = 0; i < JOB_STATE_COUNT; i++) {
        job_state_t st = JOB_STATE_ANY;
        names_ok &= job_state_parse(job_state_name((job_state_t)i), &st) == 0 && st == (job_state_t)i;
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", job_state_name((job_state_t)i));
    }
    ok(names_ok, "every job state's name parses back to it");
    ok(strcmp(list, job_state_list()) == 0, "job_state_list names every state in order (%s)", job_state_list());
    names_ok = 1;
    list[0] = 0;
    for (int i = 0; i < JOB_TYPE_COUNT; i++) {
        job_type_t t = JOB_TYPE_ANY;
        names_ok &= job_type_parse(job_type_name((job_type_t)i), &t) == 0 && t == (job_type_t)i;
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", job_type_name((job_type_t)i));
    }
    ok(names_ok, "every job type's name parses back to it");
    ok(strcmp(list, job_type_list()) == 0, "job_type_list names every type in order (%s)", job_type_list());
    job_state_t st = JOB_QUEUED;
    job_type_t t = JOB_EVAL;
    ok(job_state_parse("sleeping", &st) < 0 && job_state_parse("Queued", &st) < 0 && job_state_parse("", &st) < 0 &&
       job_state_parse(NULL, &st) < 0 && st == JOB_QUEUED, "unknown, miscased, empty and NULL states refused");
    ok(job_type_parse("dance", &t) < 0 && job_type_parse("train ", &t) < 0 && job_type_parse(NULL, &t) < 0 &&
       t == JOB_EVAL, "unknown types refused");
    ok(strcmp(job_state_name(JOB_STATE_ANY), "?") == 0 && strcmp(job_type_name((job_type_t)JOB_TYPE_COUNT), "?") == 0,
       "names of out-of-range values are '?'");

    static const char *const arrows[] = {
        "queued>running", "queued>failed", "queued>cancelled",
        "running>succeeded", "running>failed", "running>interrupted", "running>cancelling", "running>cancelled",
        "cancelling>cancelled", "cancelling>failed", "cancelling>succeeded", "cancelling>interrupted",
        "interrupted>queued",
    };
    int table_ok = 1, n_allowed = 0;
    for (int f = 0; f < JOB_STATE_COUNT; f++)
        for (int to = 0; to < JOB_STATE_COUNT; to++) {
            char arrow[64];
            snprintf(arrow, sizeof arrow, "%s>%s", job_state_name((job_state_t)f), job_state_name((job_state_t)to));
            int want = 0;
            for (size_t k = 0; k < sizeof arrows / sizeof arrows[0]; k++) want |= strcmp(arrow, arrows[k]) == 0;
            int got = job_transition_ok((job_state_t)f, (job_state_t)to);
            n_allowed += got;
            if (got != want) { table_ok = 0; diag("transition %s: %d, want %d", arrow, got, want); }
        }
    ok(table_ok && n_allowed == (int)(sizeof arrows / sizeof arrows[0]), "the transition table is the diagram (%d arrows)",
       n_allowed);
    ok(!job_transition_ok(JOB_STATE_ANY, JOB_QUEUED) && !job_transition_ok(JOB_QUEUED, JOB_STATE_ANY),
       "no transition from or to the wildcard");
    int fin_ok = 1;
    for (int i = 0; i < JOB_STATE_COUNT; i++) {
        int out = 0;
        for (int to = 0; to < JOB_STATE_COUNT; to++) out |= job_transition_ok((job_state_t)i, (job_state_t)to);
        fin_ok &= job_state_final((job_state_t)i) == !out;
        fin_ok &= job_state_terminal((job_state_t)i) == (job_state_final((job_state_t)i) || i == JOB_INTERRUPTED);
    }
    ok(fin_ok, "final = no way out (succeeded, failed, cancelled); terminal = final or interrupted");
}

static void test_jobs(store_t *s) {
    char err[256];
    json_t *spec = spec_of(1), *spec2 = spec_of(2), *plan = json_pack("{s:s}", "encoder_input", "bf16");
    json_t *a = NULL, *b = NULL, *c = NULL;
    int created = -1;
    ok(store_job_insert(s, JOB_TRAIN, "ds", 0, "sub-1", spec, plan, &a, &created, err, sizeof err) == STORE_OK &&
       created == 1, "insert with submission_id creates");
    ok(json_is_string(json_object_get(a, "id")) && strcmp(json_string_value(json_object_get(a, "state")), "queued") == 0,
       "new job is queued");
    ok(json_equal(json_object_get(a, "spec"), spec) && json_equal(json_object_get(a, "plan"), plan),
       "spec and plan stored as documents");
    /* same spec with keys in another order is the same spec */
    json_t *spec_reordered = json_pack("{s:{s:f}, s:i, s:s, s:s}", "optim", "lr", 1e-3, "priority", 0,
                                       "dataset", "ds", "type", "train");
    ok(store_job_insert(s, JOB_TRAIN, "ds", 0, "sub-1", spec_reordered, plan, &b, &created, err, sizeof err) == STORE_OK &&
       created == 0 && json_equal(json_object_get(a, "id"), json_object_get(b, "id")),
       "same submission_id and spec returns the existing job");
    ok(store_job_insert(s, JOB_TRAIN, "ds", 0, "sub-1", spec2, plan, &c, &created, err, sizeof err) == STORE_CONFLICT &&
       c == NULL, "same submission_id, other spec: conflict (%s)", err);
    json_decref(spec_reordered);
    json_decref(b);

    const char *id = json_string_value(json_object_get(a, "id"));
    /* transitions */
    ok(job_transition_ok(JOB_QUEUED, JOB_RUNNING) && job_transition_ok(JOB_RUNNING, JOB_CANCELLING) &&
       job_transition_ok(JOB_CANCELLING, JOB_CANCELLED) && job_transition_ok(JOB_QUEUED, JOB_CANCELLED) &&
       job_transition_ok(JOB_INTERRUPTED, JOB_QUEUED), "allowed transitions");
    ok(!job_transition_ok(JOB_SUCCEEDED, JOB_RUNNING) && !job_transition_ok(JOB_QUEUED, JOB_SUCCEEDED) &&
       !job_transition_ok(JOB_CANCELLED, JOB_QUEUED) && !job_transition_ok(JOB_FAILED, JOB_RUNNING) &&
       !job_transition_ok(JOB_QUEUED, JOB_CANCELLING), "forbidden transitions");
    ok(store_job_set_state(s, id, JOB_STATE_ANY, JOB_SUCCEEDED, NULL, err, sizeof err) == STORE_BADSTATE,
       "queued -> succeeded refused: %s", err);
    ok(store_job_set_state(s, id, JOB_RUNNING, JOB_SUCCEEDED, NULL, err, sizeof err) == STORE_BADSTATE,
       "compare-and-set on the wrong current state refused");
    json_t *extra = json_pack("{s:i, s:i}", "device", 0, "worker_pid", 4242);
    ok(store_job_set_state(s, id, JOB_QUEUED, JOB_RUNNING, extra, err, sizeof err) == STORE_OK, "queued -> running");
    json_decref(extra);
    json_t *job = NULL;
    store_job_get(s, id, &job, err, sizeof err);
    ok(json_integer_value(json_object_get(job, "worker_pid")) == 4242 && json_is_string(json_object_get(job, "started_at")) &&
       json_is_null(json_object_get(job, "finished_at")), "running job has pid and started_at");
    json_decref(job);
    json_t *prog = json_pack("{s:i, s:i, s:i, s:f, s:f}", "step", 5, "total_steps", 10, "epoch", 0,
                             "images_per_s", 100.0, "eta_s", 1.0);
    ok(store_job_set_progress(s, id, prog, 1, err, sizeof err) == STORE_OK, "progress recorded");
    json_decref(prog);
    extra = json_pack("{s:{s:f}}", "result", "loss", 0.25);
    ok(store_job_set_state(s, id, JOB_RUNNING, JOB_SUCCEEDED, extra, err, sizeof err) == STORE_OK, "running -> succeeded");
    json_decref(extra);
    store_job_get(s, id, &job, err, sizeof err);
    ok(json_real_value(json_object_get(json_object_get(job, "result"), "loss")) == 0.25 &&
       json_is_string(json_object_get(job, "finished_at")) && json_is_null(json_object_get(job, "worker_pid")) &&
       json_integer_value(json_object_get(json_object_get(job, "progress"), "step")) == 5,
       "final job has result, finished_at, progress; no pid");
    json_decref(job);
    ok(store_job_set_state(s, id, JOB_STATE_ANY, JOB_CANCELLED, NULL, err, sizeof err) == STORE_BADSTATE,
       "a final job cannot be cancelled");
    ok(store_job_set_state(s, "j-999999", JOB_STATE_ANY, JOB_RUNNING, NULL, err, sizeof err) == STORE_NOTFOUND, "unknown job");

    /* events: queued, running, progress, succeeded */
    json_t *ev = NULL;
    ok(store_events_since(s, id, 0, 0, &ev, err, sizeof err) == STORE_OK && json_array_size(ev) == 4,
       "four events recorded (%zu)", json_array_size(ev));
    int seq_ok = 1;
    for (size_t i = 0; i < json_array_size(ev); i++)
        seq_ok &= json_integer_value(json_object_get(json_array_get(ev, i), "id")) == (json_int_t)i + 1;
    ok(seq_ok, "event ids are 1..n");
    ok(strcmp(json_string_value(json_object_get(json_array_get(ev, 2), "type")), "progress") == 0 &&
       strcmp(json_string_value(json_object_get(json_object_get(json_array_get(ev, 3), "data"), "state")), "succeeded") == 0,
       "event types and data in order");
    json_decref(ev);
    ok(store_events_since(s, id, 2, 0, &ev, err, sizeof err) == STORE_OK && json_array_size(ev) == 2 &&
       json_integer_value(json_object_get(json_array_get(ev, 0), "id")) == 3, "events since id 2");
    json_decref(ev);
    ok(store_events_since(s, id, 2, 1, &ev, err, sizeof err) == STORE_OK && json_array_size(ev) == 1, "limit honoured");
    json_decref(ev);
    long long eid = 0;
    ok(store_event_append(s, "j-424242", "log", NULL, &eid, err, sizeof err) == STORE_NOTFOUND,
       "event for an unknown job refused");

    /* queue order: priority desc, FIFO within priority */
    const int prio[] = {0, 5, 0, 5, 1};
    char ids[5][32];
    for (int i = 0; i < 5; i++) {
        json_t *sp = spec_of(10 + i), *j = NULL;
        store_job_insert(s, JOB_EVAL, i == 4 ? "other" : "ds", prio[i], NULL, sp, plan, &j, &created, err, sizeof err);
        snprintf(ids[i], sizeof ids[i], "%s", json_string_value(json_object_get(j, "id")));
        json_decref(j);
        json_decref(sp);
    }
    json_t *q = NULL;
    store_jobs_queued(s, &q, err, sizeof err);
    const int want[] = {1, 3, 4, 0, 2};
    int order_ok = json_array_size(q) == 5;
    for (int i = 0; order_ok && i < 5; i++)
        order_ok = strcmp(json_string_value(json_object_get(json_array_get(q, i), "id")), ids[want[i]]) == 0;
    ok(order_ok, "queue order: priority desc, then submission order");
    json_decref(q);
    int n = -1;
    ok(store_dataset_in_use(s, "ds", &n, err, sizeof err) == STORE_OK && n == 4, "dataset in use by 4 queued jobs (%d)", n);
    store_dataset_in_use(s, "nope", &n, err, sizeof err);
    ok(n == 0, "unused dataset");

    json_t *list = NULL;
    ok(store_job_list(s, JOB_QUEUED, JOB_EVAL, 2, 1, &list, err, sizeof err) == STORE_OK &&
       json_integer_value(json_object_get(list, "total")) == 5 && json_array_size(json_object_get(list, "jobs")) == 2,
       "list with filters, limit and offset");
    ok(strcmp(json_string_value(json_object_get(json_array_get(json_object_get(list, "jobs"), 0), "id")), ids[3]) == 0,
       "list is newest first");
    json_decref(list);
    json_t *counts = NULL;
    store_job_counts(s, &counts, err, sizeof err);
    ok(json_integer_value(json_object_get(counts, "queued")) == 5 && json_integer_value(json_object_get(counts, "succeeded")) == 1 &&
       json_integer_value(json_object_get(counts, "failed")) == 0, "counts per state");
    json_decref(counts);

    /* interrupted -> queued requeue clears finished/started */
    store_job_set_state(s, ids[0], JOB_STATE_ANY, JOB_RUNNING, NULL, err, sizeof err);
    store_job_set_state(s, ids[0], JOB_STATE_ANY, JOB_INTERRUPTED, NULL, err, sizeof err);
    extra = json_pack("{s:s, s:s}", "resume_checkpoint", "c-000001", "resumed_from", "c-000001");
    ok(store_job_set_state(s, ids[0], JOB_INTERRUPTED, JOB_QUEUED, extra, err, sizeof err) == STORE_OK, "interrupted -> queued");
    json_decref(extra);
    store_job_get(s, ids[0], &job, err, sizeof err);
    ok(json_is_null(json_object_get(job, "finished_at")) &&
       strcmp(json_string_value(json_object_get(job, "resumed_from")), "c-000001") == 0, "requeued job says resumed_from");
    json_decref(job);

    json_decref(a);
    json_decref(spec);
    json_decref(spec2);
    json_decref(plan);
}

static void test_metrics_checkpoints(store_t *s) {
    char err[256];
    json_t *spec = spec_of(77), *plan = json_object(), *job;
    int created;
    store_job_insert(s, JOB_TRAIN, "ds", 0, NULL, spec, plan, &job, &created, err, sizeof err);
    char id[32];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(job, "id")));
    json_decref(job);
    json_decref(spec);
    json_decref(plan);

    for (int step = 1; step <= 10; step++)
        store_metric_append(s, id, "loss", step, 1.0 / step, step % 2, err, sizeof err);
    store_metric_append(s, id, "val_mpjpe", 5, 50.0, 1, err, sizeof err);
    store_metric_append(s, id, "loss", 4, 99.0, 0, err, sizeof err);   /* a late, older step */
    json_t *latest = NULL;
    store_metrics_latest(s, id, &latest, err, sizeof err);
    ok(json_integer_value(json_object_get(json_object_get(latest, "loss"), "step")) == 10, "latest loss is step 10");
    is_close(json_real_value(json_object_get(json_object_get(latest, "loss"), "value")), 0.1, 1e-12, "latest loss value");
    json_decref(latest);
    json_t *series = NULL;
    ok(store_metrics_query(s, id, "loss", 7, &series, err, sizeof err) == STORE_OK && json_array_size(series) == 3,
       "loss since step 7: 3 points");
    ok(json_object_get(json_array_get(series, 0), "name") == NULL &&
       json_integer_value(json_object_get(json_array_get(series, 0), "step")) == 8, "points ordered by step, no name when filtered");
    json_decref(series);
    store_metrics_query(s, id, NULL, -1, &series, err, sizeof err);
    ok(json_array_size(series) == 12 && json_is_string(json_object_get(json_array_get(series, 0), "name")),
       "all metrics with names");
    json_decref(series);
    json_t *ev = NULL;
    store_events_since(s, id, 0, 0, &ev, err, sizeof err);
    ok(json_array_size(ev) == 1 + 5 + 1, "metric events only when asked (%zu)", json_array_size(ev));
    json_decref(ev);
    store_job_get(s, id, &job, err, sizeof err);
    ok(json_is_object(json_object_get(json_object_get(job, "metrics"), "val_mpjpe")), "job record has latest metrics");
    json_decref(job);

    /* checkpoints at steps 10..60; val_mpjpe best at step 20 */
    const double mp[] = {80, 30, 60, 50, 45, 40};
    char cid[6][32];
    for (int i = 0; i < 6; i++) {
        json_t *m = json_pack("{s:f}", "val_mpjpe", mp[i]);
        json_t *files = json_pack("[{s:s, s:i, s:s}]", "name", "model.safetensors", "bytes", 100, "sha256", "ab");
        json_t *c = NULL;
        char path[64];
        snprintf(path, sizeof path, "/ck/%d", (i + 1) * 10);
        ok(store_checkpoint_insert(s, id, (i + 1) * 10, path, 100, "ab", files, m, &c, err, sizeof err) == STORE_OK &&
           json_integer_value(json_object_get(c, "step")) == (i + 1) * 10, "checkpoint %d recorded", i);
        snprintf(cid[i], sizeof cid[i], "%s", json_string_value(json_object_get(c, "id")));
        json_decref(c);
        json_decref(m);
        json_decref(files);
    }
    /* the same directory reported again (a resumed run): one record, sums refreshed, no new id */
    {
        json_t *files = json_pack("[{s:s, s:i, s:s}]", "name", "model.safetensors", "bytes", 101, "sha256", "cd");
        json_t *c = NULL, *all = NULL;
        ok(store_checkpoint_insert(s, id, 30, "/ck/30", 101, "cd", files, NULL, &c, err, sizeof err) == STORE_OK &&
           strcmp(json_string_value(json_object_get(c, "id")), cid[2]) == 0 &&
           json_integer_value(json_object_get(c, "bytes")) == 101 &&
           strcmp(json_string_value(json_object_get(c, "sha256")), "cd") == 0 &&
           json_is_object(json_object_get(c, "metrics")),
           "same job and path again: the one record, sums refreshed, metrics kept");
        store_checkpoint_list(s, id, &all, err, sizeof err);
        ok(json_array_size(all) == 6, "still six records");
        json_decref(all);
        json_decref(c);
        json_decref(files);
    }
    json_t *pr = NULL;
    ok(store_checkpoint_prune_list(s, id, 2, "val_mpjpe", &pr, err, sizeof err) == STORE_OK && json_array_size(pr) == 3,
       "keep 2 + best: prune 3 (%zu)", json_array_size(pr));
    int keeps_best = 1;
    for (size_t i = 0; i < json_array_size(pr); i++) {
        long st = (long)json_integer_value(json_object_get(json_array_get(pr, i), "step"));
        keeps_best &= st != 20 && st != 50 && st != 60;
    }
    ok(keeps_best, "the best (step 20) and the newest two are kept");
    json_decref(pr);
    store_checkpoint_prune_list(s, id, 0, "val_mpjpe", &pr, err, sizeof err);
    ok(json_array_size(pr) == 0, "keep 0 prunes nothing");
    json_decref(pr);
    store_checkpoint_prune_list(s, id, 3, NULL, &pr, err, sizeof err);
    ok(json_array_size(pr) == 3, "without a metric: only the newest are kept");
    json_decref(pr);
    json_t *c = NULL;
    ok(store_checkpoint_latest(s, id, &c, err, sizeof err) == STORE_OK &&
       json_integer_value(json_object_get(c, "step")) == 60, "latest checkpoint by step");
    json_decref(c);
    json_t *lst = NULL;
    store_checkpoint_list(s, id, &lst, err, sizeof err);
    ok(json_array_size(lst) == 6, "list by job");
    json_decref(lst);
    ok(store_checkpoint_delete(s, cid[0], err, sizeof err) == STORE_OK &&
       store_checkpoint_get(s, cid[0], &c, err, sizeof err) == STORE_NOTFOUND, "delete");
    ok(store_checkpoint_delete(s, cid[0], err, sizeof err) == STORE_NOTFOUND, "delete twice: not found");

    /* in use by a queued job's spec */
    json_t *espec = json_pack("{s:s, s:s}", "type", "eval", "checkpoint", cid[1]);
    plan = json_object();
    store_job_insert(s, JOB_EVAL, "ds", 0, NULL, espec, plan, &job, &created, err, sizeof err);
    int n = -1;
    ok(store_checkpoint_in_use(s, cid[1], &n, err, sizeof err) == STORE_OK && n == 1, "checkpoint in use by a queued eval");
    store_checkpoint_in_use(s, cid[2], &n, err, sizeof err);
    ok(n == 0, "other checkpoint not in use");
    store_job_set_state(s, json_string_value(json_object_get(job, "id")), JOB_STATE_ANY, JOB_CANCELLED, NULL, err, sizeof err);
    store_checkpoint_in_use(s, cid[1], &n, err, sizeof err);
    ok(n == 0, "not in use once the job is final");
    json_decref(job);
    json_decref(espec);
    json_decref(plan);
}

static void test_datasets(store_t *s) {
    char err[256];
    json_t *src = json_pack("{s:{s:i, s:i, s:i}}", "synthetic", "samples", 64, "image_size", 28, "seed", 1);
    json_t *ds = NULL;
    ok(store_dataset_insert(s, "syn", src, &ds, err, sizeof err) == STORE_OK &&
       strcmp(json_string_value(json_object_get(ds, "state")), "loading") == 0, "dataset inserted as loading");
    json_decref(ds);
    ok(store_dataset_insert(s, "syn", src, NULL, err, sizeof err) == STORE_CONFLICT, "same name: conflict");
    json_t *upd = json_pack("{s:s, s:i, s:[i,i], s:[s,s], s:I, s:f, s:f, s:b, s:i}", "state", "ready", "samples", 64,
                            "image_size", 28, 28, "fields", "image", "hand_joints", "bytes", (json_int_t)123456,
                            "progress", 1.0, "gb_per_s", 2.5, "loaded_at", 1, "masked_joints", 7);
    ok(store_dataset_update(s, "syn", upd, err, sizeof err) == STORE_OK, "dataset updated");
    json_decref(upd);
    store_dataset_get(s, "syn", &ds, err, sizeof err);
    ok(strcmp(json_string_value(json_object_get(ds, "state")), "ready") == 0 &&
       json_integer_value(json_object_get(ds, "bytes")) == 123456 &&
       json_integer_value(json_array_get(json_object_get(ds, "image_size"), 1)) == 28 &&
       json_is_string(json_object_get(ds, "loaded_at")) && json_equal(json_object_get(ds, "source"), src) &&
       json_integer_value(json_object_get(ds, "masked_joints")) == 7,
       "dataset record fields");
    ok(json_is_null(json_object_get(ds, "import")), "no import record for a synthetic dataset");
    json_decref(ds);
    upd = json_pack("{s:{s:s, s:i, s:i}}", "import", "key", "abc", "imported", 60, "skipped", 4);
    ok(store_dataset_update(s, "syn", upd, err, sizeof err) == STORE_OK, "import record stored (%s)", err);
    json_decref(upd);
    store_dataset_get(s, "syn", &ds, err, sizeof err);
    ok(json_integer_value(json_object_get(json_object_get(ds, "import"), "skipped")) == 4 &&
       strcmp(json_string_value(json_object_get(ds, "state")), "ready") == 0, "import record read back, state kept");
    json_decref(ds);
    upd = json_pack("{s:s}", "state", "bogus");
    ok(store_dataset_update(s, "syn", upd, err, sizeof err) != STORE_OK, "bad state refused");
    ok(store_dataset_update(s, "syn", NULL, err, sizeof err) != STORE_OK && strstr(err, "no update"),
       "a missing update (json_pack failed) is an error, not a silent no-op: %s", err);
    json_decref(upd);
    json_t *lst = NULL;
    store_dataset_list(s, &lst, err, sizeof err);
    ok(json_array_size(lst) == 1, "list");
    json_decref(lst);
    ok(store_dataset_delete(s, "syn", err, sizeof err) == STORE_OK && store_dataset_get(s, "syn", &ds, err, sizeof err) == STORE_NOTFOUND,
       "delete");
    json_decref(src);
}

/* Concurrent writers and readers: 8 threads submit 25 jobs each, every
 * submission_id used by two threads; none lost, none duplicated. */
typedef struct { store_t *s; int t; int created; int errors; } thr_arg_t;

static void *submit_thread(void *p) {
    thr_arg_t *a = p;
    char err[256];
    for (int i = 0; i < 25; i++) {
        char sid[32];
        snprintf(sid, sizeof sid, "c-%d-%d", a->t / 2, i);   /* threads 2k and 2k+1 share ids */
        json_t *spec = json_pack("{s:s, s:s, s:i}", "type", "eval", "sid", sid, "n", i), *plan = json_object(), *job = NULL;
        int created = 0;
        if (store_job_insert(a->s, JOB_EVAL, "ds", i % 3, sid, spec, plan, &job, &created, err, sizeof err) != STORE_OK)
            a->errors++;
        a->created += created;
        json_t *list = NULL;   /* a reader in between */
        if (store_job_list(a->s, JOB_STATE_ANY, JOB_TYPE_ANY, 5, 0, &list, err, sizeof err) != STORE_OK) a->errors++;
        json_decref(list);
        json_decref(job);
        json_decref(spec);
        json_decref(plan);
    }
    return NULL;
}

static void test_concurrency(void) {
    char p[512], err[256];
    path_in(p, sizeof p, "conc.db");
    store_t *s = store_open(p, err, sizeof err);
    if (!ok(s != NULL, "open for concurrency")) return;
    pthread_t th[8];
    thr_arg_t a[8];
    for (int i = 0; i < 8; i++) {
        a[i] = (thr_arg_t){s, i, 0, 0};
        pthread_create(&th[i], NULL, submit_thread, &a[i]);
    }
    int created = 0, errors = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        created += a[i].created;
        errors += a[i].errors;
    }
    ok(errors == 0, "no errors under 8 concurrent writers and readers (%d)", errors);
    ok(created == 100, "100 distinct submissions created once each (%d)", created);
    json_t *list = NULL;
    store_job_list(s, JOB_QUEUED, JOB_TYPE_ANY, 1000, 0, &list, err, sizeof err);
    ok(json_integer_value(json_object_get(list, "total")) == 100, "100 jobs stored");
    json_decref(list);
    store_close(s);
}

/* count of rows of table whose job is `job` (raw SQLite on the file) */
static int rows_of(const char *path, const char *table, const char *job) {
    sqlite3 *db;
    int n = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE job = ?1;", table);
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, job, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
            sqlite3_finalize(st);
        }
    }
    sqlite3_close(db);
    return n;
}

static void test_retention(void) {
    char p[512], err[256];
    path_in(p, sizeof p, "retain.db");
    store_t *s = store_open(p, err, sizeof err);
    ok(s != NULL, "retention: open");
    if (!s) return;
    json_t *plan = json_object();
    char ids[10][32];
    /* j1: a train job with a checkpoint; j2..j8 end in every final way; j9 runs; j10 queued */
    const job_state_t ends[10] = {JOB_SUCCEEDED, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED, JOB_INTERRUPTED,
                                  JOB_SUCCEEDED, JOB_FAILED, JOB_SUCCEEDED, JOB_RUNNING, JOB_QUEUED};
    for (int i = 0; i < 10; i++) {
        json_t *spec = json_pack("{s:s, s:i}", "type", i == 0 ? "train" : "eval", "n", i), *job = NULL;
        int created;
        store_job_insert(s, i == 0 ? JOB_TRAIN : JOB_EVAL, "ds", 0, NULL, spec, plan, &job, &created, err, sizeof err);
        snprintf(ids[i], sizeof ids[i], "%s", json_string_value(json_object_get(job, "id")));
        json_decref(job);
        json_decref(spec);
        if (ends[i] != JOB_QUEUED && ends[i] != JOB_CANCELLED)
            store_job_set_state(s, ids[i], JOB_QUEUED, JOB_RUNNING, NULL, err, sizeof err);
        store_metric_append(s, ids[i], "loss", 1, 0.5, 1, err, sizeof err);
        if (i == 0) store_checkpoint_insert(s, ids[0], 1, "/ck/1", 10, NULL, NULL, NULL, NULL, err, sizeof err);
        if (ends[i] != JOB_QUEUED && ends[i] != JOB_RUNNING)
            store_job_set_state(s, ids[i], JOB_STATE_ANY, ends[i], NULL, err, sizeof err);
    }
    /* cheap reads */
    job_state_t st;
    unsigned long long r0 = store_job_records_read(s);
    ok(store_job_state(s, ids[2], &st, err, sizeof err) == STORE_OK && st == JOB_FAILED &&
       store_job_state(s, "j-999999", &st, err, sizeof err) == STORE_NOTFOUND && st == JOB_STATE_ANY,
       "store_job_state: the state, or NOTFOUND");
    json_t *list = NULL;
    ok(store_job_list(s, JOB_STATE_ANY, JOB_TYPE_ANY, 100, 0, &list, err, sizeof err) == STORE_OK &&
       json_array_size(json_object_get(list, "jobs")) == 10, "list of 10");
    int summaries = 1;
    size_t i;
    json_t *j;
    json_array_foreach(json_object_get(list, "jobs"), i, j)
        summaries &= !json_object_get(j, "spec") && !json_object_get(j, "plan") && !json_object_get(j, "result") &&
                     !json_object_get(j, "metrics") && json_is_string(json_object_get(j, "state")) &&
                     json_is_object(json_object_get(j, "progress")) && json_object_get(j, "finished_at");
    ok(summaries, "listed jobs are summaries (no spec, plan, result, metrics)");
    json_decref(list);
    ok(store_job_records_read(s) == r0, "state reads and listings build no job record");
    json_t *job = NULL;
    store_job_get(s, ids[2], &job, err, sizeof err);
    json_decref(job);
    ok(store_job_records_read(s) == r0 + 1, "a job get counts one record");

    /* prune: keep the 3 most recently ended; j1 stays for its checkpoint; running and queued untouched */
    json_t *gone = NULL;
    ok(store_jobs_prune(s, 0, &gone, err, sizeof err) == STORE_OK && json_array_size(gone) == 0, "keep 0 deletes nothing");
    json_decref(gone);
    ok(store_jobs_prune(s, 3, &gone, err, sizeof err) == STORE_OK, "prune to 3");
    char *g = json_dumps(gone, JSON_COMPACT);
    char want[256];
    snprintf(want, sizeof want, "[\"%s\",\"%s\",\"%s\",\"%s\"]", ids[1], ids[2], ids[3], ids[4]);
    ok(g && !strcmp(g, want), "deleted the 4 oldest ended jobs without checkpoints: %s", g);
    free(g);
    json_decref(gone);
    int left = 1;
    for (int k = 0; k < 10; k++) {
        int want_left = k == 0 || k >= 5;
        left &= (store_job_state(s, ids[k], &st, err, sizeof err) == STORE_OK) == want_left;
    }
    ok(left, "left: the train job with a checkpoint, the 3 newest ended, the running and the queued one");
    ok(rows_of(p, "job_events", ids[1]) == 0 && rows_of(p, "metrics", ids[1]) == 0 &&
       rows_of(p, "metrics_latest", ids[1]) == 0, "a deleted job's events, metrics and latest metrics are gone");
    ok(rows_of(p, "job_events", ids[5]) > 0 && rows_of(p, "metrics", ids[5]) == 1 && rows_of(p, "checkpoints", ids[0]) == 1,
       "a kept job keeps them; the checkpoint record stays");
    ok(store_jobs_prune(s, 3, &gone, err, sizeof err) == STORE_OK && json_array_size(gone) == 0, "pruning again: nothing");
    json_decref(gone);
    json_t *cks = NULL;
    store_checkpoint_list(s, ids[0], &cks, err, sizeof err);
    store_checkpoint_delete(s, json_string_value(json_object_get(json_array_get(cks, 0), "id")), err, sizeof err);
    json_decref(cks);
    ok(store_jobs_prune(s, 3, &gone, err, sizeof err) == STORE_OK && json_array_size(gone) == 1 &&
       !strcmp(json_string_value(json_array_get(gone, 0)), ids[0]), "its checkpoint deleted, the train job goes too");
    json_decref(gone);

    /* an ended infer job's spec loses its pixels, keeps sha256, and still matches its resubmission */
    json_t *img = json_pack("{s:s, s:i, s:i, s:s}", "u8_hwc_b64", "AQID", "height", 1, "width", 1, "sha256", "abc");
    json_t *ispec = json_pack("{s:s, s:s, s:[O, O]}", "type", "infer", "submission_id", "im-1", "images", img, img);
    int created;
    ok(store_job_insert(s, JOB_INFER, "ds", 0, "im-1", ispec, plan, &job, &created, err, sizeof err) == STORE_OK,
       "infer job with 2 inline images");
    char iid[32];
    snprintf(iid, sizeof iid, "%s", json_string_value(json_object_get(job, "id")));
    json_decref(job);
    int n = -1;
    ok(store_job_strip_images(s, iid, &n, err, sizeof err) == STORE_OK && n == 0, "a queued job keeps its pixels");
    store_job_set_state(s, iid, JOB_QUEUED, JOB_CANCELLED, NULL, err, sizeof err);
    ok(store_job_strip_images(s, iid, &n, err, sizeof err) == STORE_OK && n == 1, "an ended one loses them");
    store_job_get(s, iid, &job, err, sizeof err);
    json_t *im0 = json_array_get(json_object_get(json_object_get(job, "spec"), "images"), 0);
    ok(im0 && !json_object_get(im0, "u8_hwc_b64") && !strcmp(json_string_value(json_object_get(im0, "sha256")), "abc") &&
       json_integer_value(json_object_get(im0, "height")) == 1, "height, width and sha256 stay");
    json_decref(job);
    ok(store_job_insert(s, JOB_INFER, "ds", 0, "im-1", ispec, plan, &job, &created, err, sizeof err) == STORE_OK &&
       created == 0 && !strcmp(json_string_value(json_object_get(job, "id")), iid),
       "the same submission again is the same job");
    json_decref(job);
    json_object_set_new(json_array_get(json_object_get(ispec, "images"), 1), "sha256", json_string("abd"));
    ok(store_job_insert(s, JOB_INFER, "ds", 0, "im-1", ispec, plan, &job, &created, err, sizeof err) == STORE_CONFLICT,
       "other images under that submission_id: conflict");
    ok(store_job_strip_images(s, NULL, &n, err, sizeof err) == STORE_OK && n == 0, "the start-up sweep finds nothing left");
    json_decref(ispec);
    json_decref(img);
    json_decref(plan);
    store_close(s);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/traind-test-db-XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    test_migrations();
    test_job_vocabulary();

    char p[512], err[256];
    path_in(p, sizeof p, "main.db");
    store_t *s = store_open(p, err, sizeof err);
    ok(s != NULL, "open main db");
    if (!s) return tap_done();
    test_jobs(s);
    test_metrics_checkpoints(s);
    test_datasets(s);
    test_concurrency();
    test_retention();
    json_t *counts = NULL;
    store_job_counts(s, &counts, err, sizeof err);
    json_int_t total_before = 0;
    const char *k;
    json_t *v;
    json_object_foreach(counts, k, v) total_before += json_integer_value(v);
    json_decref(counts);
    store_close(s);

    /* reopen after close: everything is still there */
    s = store_open(p, err, sizeof err);
    ok(s != NULL, "reopen after close");
    store_job_counts(s, &counts, err, sizeof err);
    json_int_t total_after = 0;
    json_object_foreach(counts, k, v) total_after += json_integer_value(v);
    json_decref(counts);
    ok(total_after == total_before && total_after > 0, "jobs survive reopen (%lld)", (long long)total_after);
    json_t *job = NULL;
    ok(store_job_get(s, "j-000001", &job, err, sizeof err) == STORE_OK &&
       strcmp(json_string_value(json_object_get(job, "state")), "succeeded") == 0, "job state survives reopen");
    json_decref(job);
    store_close(s);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) diag("could not remove %s", dir);
    return tap_done();
}
