/* store/db.c — the SQLite store (see store/db.h for the contract).
 *
 * Owns: the schema and its migrations, the writer connection and its mutex,
 * the pool of read-only connections, and every query of traind. Nothing else
 * in traind speaks SQL.
 */
#include "store/db.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define STORE_READERS 8
#define STORE_BUSY_MS 5000

struct store {
    char *path;
    sqlite3 *w;                       /* the writer */
    pthread_mutex_t wmu;
    sqlite3 *rd[STORE_READERS];       /* read-only pool, opened lazily */
    int rd_free[STORE_READERS];       /* 1 = idle */
    int n_rd;
    pthread_mutex_t rmu;
    pthread_cond_t rcv;
    int version;
    void (*hook)(void *ud);
    void *hook_ud;
    int durable;                      /* current write transaction is durable */
    int events_in_txn;                /* current write transaction appended events */
    atomic_ullong job_records_read;   /* whole job records (spec included) built */
};

/* ---- migrations ---------------------------------------------------------------- */
/* migrations[i] brings user_version i to i+1. Append only; never edit a shipped one. */
static const char *const migrations[] = {
    /* 0 -> 1: the core tables */
    "CREATE TABLE datasets("
    "  name TEXT PRIMARY KEY,"
    "  source TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK(state IN ('loading','ready','failed')),"
    "  samples INTEGER, image_h INTEGER, image_w INTEGER,"
    "  fields TEXT,"
    "  bytes INTEGER NOT NULL DEFAULT 0,"
    "  progress REAL NOT NULL DEFAULT 0,"
    "  gb_per_s REAL,"
    "  error TEXT,"
    "  created REAL NOT NULL,"
    "  loaded REAL);"
    "CREATE TABLE jobs("
    "  seq INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  submission_id TEXT UNIQUE,"
    "  type TEXT NOT NULL,"
    "  dataset TEXT NOT NULL,"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  spec TEXT NOT NULL,"
    "  plan TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  progress TEXT,"
    "  result TEXT,"
    "  error TEXT,"
    "  resumed_from TEXT,"
    "  resume_checkpoint TEXT,"
    "  device INTEGER,"
    "  worker_pid INTEGER,"
    "  created REAL NOT NULL,"
    "  started REAL,"
    "  finished REAL);"
    "CREATE INDEX jobs_queue ON jobs(state, priority DESC, seq);"
    "CREATE INDEX jobs_dataset ON jobs(dataset, state);"
    "CREATE TABLE job_events("
    "  job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  id INTEGER NOT NULL,"
    "  type TEXT NOT NULL,"
    "  data TEXT,"
    "  time REAL NOT NULL,"
    "  PRIMARY KEY(job, id)) WITHOUT ROWID;"
    "CREATE TABLE metrics("
    "  job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  step INTEGER NOT NULL,"
    "  value REAL,"
    "  time REAL NOT NULL);"
    "CREATE INDEX metrics_job ON metrics(job, name, step);"
    "CREATE TABLE checkpoints("
    "  seq INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  step INTEGER NOT NULL,"
    "  path TEXT NOT NULL,"
    "  bytes INTEGER NOT NULL,"
    "  sha256 TEXT,"
    "  metrics TEXT,"
    "  created REAL NOT NULL);"
    "CREATE INDEX checkpoints_job ON checkpoints(job, step);",

    /* 1 -> 2: latest value per (job, metric) so status and job records stay cheap
     * (backfilled from the time series), and per-file checksums of checkpoints. */
    "CREATE TABLE metrics_latest("
    "  job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  step INTEGER NOT NULL,"
    "  value REAL,"
    "  time REAL NOT NULL,"
    "  PRIMARY KEY(job, name)) WITHOUT ROWID;"
    "INSERT INTO metrics_latest(job, name, step, value, time)"
    "  SELECT job, name, step, value, time FROM metrics m"
    "  WHERE m.rowid = (SELECT m2.rowid FROM metrics m2 WHERE m2.job = m.job AND m2.name = m.name"
    "                   ORDER BY m2.step DESC, m2.rowid DESC LIMIT 1);"
    "ALTER TABLE checkpoints ADD COLUMN files TEXT;",

    /* 2 -> 3: labelled joints a load found with NaN/Inf coordinates (masked out). */
    "ALTER TABLE datasets ADD COLUMN masked_joints INTEGER;",

    /* 3 -> 4: what an import made (JSON: cache key, frames, imported, skipped and why). */
    "ALTER TABLE datasets ADD COLUMN import TEXT;",

    /* 4 -> 5: multi-device jobs — the spec's "devices" (a count or a list, JSON; NULL = one),
     * copied at insert so the queue never reads specs, and the devices a job ran on (JSON list). */
    "ALTER TABLE jobs ADD COLUMN want_devices TEXT;"
    "ALTER TABLE jobs ADD COLUMN devices TEXT;",
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))
_Static_assert(N_MIGRATIONS == STORE_SCHEMA_VERSION, "STORE_SCHEMA_VERSION must match the migrations");

/* ---- small helpers ---------------------------------------------------------------- */
__attribute__((format(printf, 3, 4)))
static int seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return STORE_ERR;
}

/* A store message without its "store: " (for one that goes inside another store message). */
static const char *unprefixed(const char *m) {
    return strncmp(m, "store: ", 7) == 0 ? m + 7 : m;
}

static int dberr(sqlite3 *db, char *err, size_t errlen, const char *what) {
    return seterr(err, errlen, "store: %s: %s", what, sqlite3_errmsg(db));
}

double store_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)(tv.tv_usec / 1000) / 1000.0;
}

void store_format_time(double t, char out[32]) {
    time_t sec = (time_t)floor(t);
    int ms = (int)llround((t - (double)sec) * 1000.0);
    if (ms >= 1000) { sec += 1; ms -= 1000; }
    struct tm tm;
    char base[24];
    gmtime_r(&sec, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%.19s.%03dZ", base, ms % 1000);
}

static json_t *time_json(sqlite3_stmt *st, int col) {
    if (sqlite3_column_type(st, col) == SQLITE_NULL) return json_null();
    char buf[32];
    store_format_time(sqlite3_column_double(st, col), buf);
    return json_string(buf);
}

static json_t *text_json(sqlite3_stmt *st, int col) {
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? json_string((const char *)t) : json_null();
}

static json_t *int_json(sqlite3_stmt *st, int col) {
    if (sqlite3_column_type(st, col) == SQLITE_NULL) return json_null();
    return json_integer(sqlite3_column_int64(st, col));
}

static json_t *real_json(sqlite3_stmt *st, int col) {
    if (sqlite3_column_type(st, col) == SQLITE_NULL) return json_null();
    double v = sqlite3_column_double(st, col);
    return isfinite(v) ? json_real(v) : json_null();
}

/* A JSON text column parsed back; null when NULL or unparsable. */
static json_t *doc_json(sqlite3_stmt *st, int col) {
    const char *t = (const char *)sqlite3_column_text(st, col);
    if (!t) return json_null();
    json_t *j = json_loads(t, JSON_DECODE_ANY, NULL);
    return j ? j : json_null();
}

/* Canonical text of a document (sorted keys, compact): malloc'd or NULL. */
static char *doc_text(const json_t *j) {
    if (!j) return NULL;
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static void bind_text(sqlite3_stmt *st, int i, const char *s) {
    if (s && *s) sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, i);
}

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        seterr(err, errlen, "store: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return STORE_ERR;
    }
    return STORE_OK;
}

static int prep(sqlite3 *db, const char *sql, sqlite3_stmt **st, char *err, size_t errlen) {
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) {
        *st = NULL;
        return dberr(db, err, errlen, "prepare");
    }
    return STORE_OK;
}

/* ---- connections ------------------------------------------------------------------ */
static int conn_setup(sqlite3 *db, int readonly, char *err, size_t errlen) {
    sqlite3_busy_timeout(db, STORE_BUSY_MS);
    sqlite3_extended_result_codes(db, 1);
    if (exec_sql(db, "PRAGMA foreign_keys=ON;", err, errlen)) return STORE_ERR;
    if (readonly) return exec_sql(db, "PRAGMA query_only=ON;", err, errlen);
    return STORE_OK;
}

static int read_version(sqlite3 *db, int *v, char *err, size_t errlen) {
    sqlite3_stmt *st;
    if (prep(db, "PRAGMA user_version;", &st, err, errlen)) return STORE_ERR;
    int rc = sqlite3_step(st);
    *v = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? STORE_OK : dberr(db, err, errlen, "user_version");
}

static int migrate(store_t *s, char *err, size_t errlen) {
    int v;
    if (read_version(s->w, &v, err, errlen)) return STORE_ERR;
    if (v > N_MIGRATIONS)
        return seterr(err, errlen, "store: %s has schema version %d, newer than this traind (%d)",
                      s->path, v, N_MIGRATIONS);
    for (; v < N_MIGRATIONS; v++) {
        char sql[64];
        if (exec_sql(s->w, "BEGIN IMMEDIATE;", err, errlen)) return STORE_ERR;
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d;", v + 1);
        if (exec_sql(s->w, migrations[v], err, errlen) || exec_sql(s->w, sql, err, errlen)) {
            char e2[256];
            snprintf(e2, sizeof e2, "%s", err ? unprefixed(err) : "");
            exec_sql(s->w, "ROLLBACK;", NULL, 0);
            return seterr(err, errlen, "store: migration %d -> %d failed: %s", v, v + 1, e2);
        }
        if (exec_sql(s->w, "COMMIT;", err, errlen)) return STORE_ERR;
    }
    s->version = v;
    return STORE_OK;
}

store_t *store_open(const char *path, char *err, size_t errlen) {
    store_t *s = calloc(1, sizeof *s);
    if (!s) { seterr(err, errlen, "store: out of memory"); return NULL; }
    s->path = strdup(path);
    pthread_mutex_init(&s->wmu, NULL);
    pthread_mutex_init(&s->rmu, NULL);
    pthread_cond_init(&s->rcv, NULL);
    if (!s->path) { seterr(err, errlen, "store: out of memory"); goto fail; }
    if (sqlite3_open_v2(path, &s->w, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        seterr(err, errlen, "store: cannot open %s: %s", path,
               s->w ? sqlite3_errmsg(s->w) : "out of memory");
        goto fail;
    }
    if (conn_setup(s->w, 0, err, errlen)) goto fail;
    /* WAL: readers never block the writer and vice versa. NORMAL: see db.h. */
    sqlite3_stmt *st;
    if (prep(s->w, "PRAGMA journal_mode=WAL;", &st, err, errlen)) goto fail;
    int rc = sqlite3_step(st);
    const char *mode = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    int is_wal = mode && strcmp(mode, "wal") == 0;
    sqlite3_finalize(st);
    if (!is_wal) {
        seterr(err, errlen, "store: cannot put %s in WAL mode (%s)", path, sqlite3_errmsg(s->w));
        goto fail;
    }
    if (exec_sql(s->w, "PRAGMA synchronous=NORMAL;", err, errlen)) goto fail;
    if (migrate(s, err, errlen)) goto fail;
    return s;
fail:
    /* every failure names the file; a file SQLite cannot read is left as it is */
    if (err && errlen && !strstr(err, path)) {
        char e2[512];
        snprintf(e2, sizeof e2, "%s", unprefixed(err));
        seterr(err, errlen, "store %s: %s%s", path, e2,
               strstr(e2, "not a database") ? " (damaged or not a traind database; it was not modified)" : "");
    }
    store_close(s);
    return NULL;
}

void store_close(store_t *s) {
    if (!s) return;
    for (int i = 0; i < s->n_rd; i++) sqlite3_close(s->rd[i]);
    if (s->w) sqlite3_close(s->w);
    pthread_mutex_destroy(&s->wmu);
    pthread_mutex_destroy(&s->rmu);
    pthread_cond_destroy(&s->rcv);
    free(s->path);
    free(s);
}

int store_user_version(store_t *s) {
    int v = -1;
    sqlite3 *db = s->w;
    pthread_mutex_lock(&s->wmu);
    if (read_version(db, &v, NULL, 0)) v = -1;
    pthread_mutex_unlock(&s->wmu);
    return v;
}

void store_set_event_hook(store_t *s, void (*fn)(void *ud), void *ud) {
    pthread_mutex_lock(&s->wmu);
    s->hook = fn;
    s->hook_ud = ud;
    pthread_mutex_unlock(&s->wmu);
}

/* A read connection from the pool (waits while all are busy). */
static sqlite3 *rd_get(store_t *s, char *err, size_t errlen) {
    pthread_mutex_lock(&s->rmu);
    for (;;) {
        for (int i = 0; i < s->n_rd; i++)
            if (s->rd_free[i]) {
                s->rd_free[i] = 0;
                pthread_mutex_unlock(&s->rmu);
                return s->rd[i];
            }
        if (s->n_rd < STORE_READERS) break;
        pthread_cond_wait(&s->rcv, &s->rmu);
    }
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(s->path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK ||
        conn_setup(db, 1, err, errlen)) {
        if (db) { seterr(err, errlen, "store: read connection: %s", sqlite3_errmsg(db)); sqlite3_close(db); }
        else seterr(err, errlen, "store: read connection: out of memory");
        pthread_mutex_unlock(&s->rmu);
        return NULL;
    }
    s->rd[s->n_rd] = db;
    s->rd_free[s->n_rd] = 0;
    s->n_rd++;
    pthread_mutex_unlock(&s->rmu);
    return db;
}

static void rd_put(store_t *s, sqlite3 *db) {
    pthread_mutex_lock(&s->rmu);
    for (int i = 0; i < s->n_rd; i++)
        if (s->rd[i] == db) s->rd_free[i] = 1;
    pthread_cond_signal(&s->rcv);
    pthread_mutex_unlock(&s->rmu);
}

/* Write transactions: lock, (durable: synchronous=FULL), BEGIN IMMEDIATE. */
static int wbegin(store_t *s, int durable, char *err, size_t errlen) {
    pthread_mutex_lock(&s->wmu);
    s->durable = durable;
    s->events_in_txn = 0;
    if (durable && exec_sql(s->w, "PRAGMA synchronous=FULL;", err, errlen)) goto fail;
    if (exec_sql(s->w, "BEGIN IMMEDIATE;", err, errlen)) goto fail;
    return STORE_OK;
fail:
    if (durable) exec_sql(s->w, "PRAGMA synchronous=NORMAL;", NULL, 0);
    pthread_mutex_unlock(&s->wmu);
    return STORE_ERR;
}

/* Commits when rc == STORE_OK (a failing COMMIT turns rc into STORE_ERR),
 * rolls back otherwise; unlocks; runs the event hook. Returns rc. */
static int wend(store_t *s, int rc, char *err, size_t errlen) {
    if (rc == STORE_OK) {
        if (exec_sql(s->w, "COMMIT;", err, errlen)) {
            exec_sql(s->w, "ROLLBACK;", NULL, 0);
            rc = STORE_ERR;
        }
    } else {
        exec_sql(s->w, "ROLLBACK;", NULL, 0);
    }
    if (s->durable) exec_sql(s->w, "PRAGMA synchronous=NORMAL;", NULL, 0);
    int notify = rc == STORE_OK && s->events_in_txn;
    void (*hook)(void *) = s->hook;
    void *ud = s->hook_ud;
    pthread_mutex_unlock(&s->wmu);
    if (notify && hook) hook(ud);
    return rc;
}

/* ---- events (inside a write transaction) --------------------------------------------- */
static int event_append_locked(store_t *s, const char *job, const char *type, const json_t *data,
                               long long *id, char *err, size_t errlen) {
    sqlite3_stmt *st;
    long long next = 1;
    if (prep(s->w, "SELECT COALESCE(MAX(id), 0) + 1 FROM job_events WHERE job = ?1;", &st, err, errlen))
        return STORE_ERR;
    sqlite3_bind_text(st, 1, job, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) next = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (prep(s->w, "INSERT INTO job_events(job, id, type, data, time) VALUES(?1, ?2, ?3, ?4, ?5);",
             &st, err, errlen))
        return STORE_ERR;
    char *text = doc_text(data);
    sqlite3_bind_text(st, 1, job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, next);
    sqlite3_bind_text(st, 3, type, -1, SQLITE_TRANSIENT);
    bind_text(st, 4, text ? text : "{}");
    sqlite3_bind_double(st, 5, store_now());
    int rc = sqlite3_step(st);
    free(text);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
            return seterr(err, errlen, "store: no job %s", job), STORE_NOTFOUND;
        return dberr(s->w, err, errlen, "event insert");
    }
    s->events_in_txn = 1;
    if (id) *id = next;
    return STORE_OK;
}

int store_event_append(store_t *s, const char *job, const char *type, const json_t *data,
                       long long *id, char *err, size_t errlen) {
    if (wbegin(s, 0, err, errlen)) return STORE_ERR;
    int rc = event_append_locked(s, job, type, data, id, err, errlen);
    return wend(s, rc, err, errlen);
}

int store_events_since(store_t *s, const char *job, long long after, int limit,
                       json_t **out, char *err, size_t errlen) {
    *out = NULL;
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) return STORE_ERR;
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT id, type, data, time FROM job_events WHERE job = ?1 AND id > ?2 "
                      "ORDER BY id LIMIT ?3;", &st, err, errlen);
    if (rc == STORE_OK) {
        sqlite3_bind_text(st, 1, job, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, after);
        sqlite3_bind_int(st, 3, limit > 0 ? limit : 1000);
        json_t *arr = json_array();
        int r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW)
            json_array_append_new(arr, json_pack("{s:o, s:o, s:o, s:o}", "id", int_json(st, 0),
                                                 "type", text_json(st, 1), "data", doc_json(st, 2),
                                                 "time", time_json(st, 3)));
        if (r != SQLITE_DONE) { rc = dberr(db, err, errlen, "events"); json_decref(arr); }
        else *out = arr;
        sqlite3_finalize(st);
    }
    rd_put(s, db);
    return rc;
}

/* ---- jobs ----------------------------------------------------------------------------- */
#define JOB_COLS "id, type, dataset, priority, submission_id, state, spec, plan, progress, " \
                 "result, error, resumed_from, resume_checkpoint, device, worker_pid, "       \
                 "created, started, finished, seq, devices"

static json_t *latest_metrics(sqlite3 *db, const char *job) {
    json_t *m = json_object();
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT name, value, step FROM metrics_latest WHERE job = ?1 ORDER BY name;",
                           -1, &st, NULL) != SQLITE_OK)
        return m;
    sqlite3_bind_text(st, 1, job, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW)
        json_object_set_new(m, (const char *)sqlite3_column_text(st, 0),
                            json_pack("{s:o, s:o}", "value", real_json(st, 1), "step", int_json(st, 2)));
    sqlite3_finalize(st);
    return m;
}

/* What the record and the summary of a job both begin with: columns 0..5 are
 * id, type, dataset, priority, submission_id, state. */
static json_t *job_head_from_row(sqlite3_stmt *st) {
    json_t *j = json_object();
    json_object_set_new(j, "id", text_json(st, 0));
    json_object_set_new(j, "type", text_json(st, 1));
    json_object_set_new(j, "dataset", text_json(st, 2));
    json_object_set_new(j, "priority", int_json(st, 3));
    json_object_set_new(j, "submission_id", text_json(st, 4));
    json_object_set_new(j, "state", text_json(st, 5));
    return j;
}

/* The progress document in column col, or the one of a job not started yet. */
static json_t *job_progress_json(sqlite3_stmt *st, int col) {
    json_t *prog = doc_json(st, col);
    if (!json_is_null(prog)) return prog;
    json_decref(prog);
    return json_pack("{s:i, s:n, s:n, s:n, s:n}", "step", 0, "total_steps", "epoch", "images_per_s", "eta_s");
}

static json_t *job_from_row(sqlite3 *db, sqlite3_stmt *st) {
    json_t *j = job_head_from_row(st);
    json_object_set_new(j, "spec", doc_json(st, 6));
    json_object_set_new(j, "plan", doc_json(st, 7));
    json_object_set_new(j, "progress", job_progress_json(st, 8));
    json_object_set_new(j, "metrics", latest_metrics(db, (const char *)sqlite3_column_text(st, 0)));
    json_object_set_new(j, "result", doc_json(st, 9));
    json_object_set_new(j, "error", text_json(st, 10));
    json_object_set_new(j, "resumed_from", text_json(st, 11));
    json_object_set_new(j, "resume_checkpoint", text_json(st, 12));
    json_object_set_new(j, "device", int_json(st, 13));
    json_object_set_new(j, "devices", doc_json(st, 19));
    json_object_set_new(j, "worker_pid", int_json(st, 14));
    json_object_set_new(j, "created_at", time_json(st, 15));
    json_object_set_new(j, "started_at", time_json(st, 16));
    json_object_set_new(j, "finished_at", time_json(st, 17));
    return j;
}

static int job_get_db(sqlite3 *db, const char *id, json_t **job, char *err, size_t errlen) {
    sqlite3_stmt *st;
    *job = NULL;
    if (prep(db, "SELECT " JOB_COLS " FROM jobs WHERE id = ?1;", &st, err, errlen)) return STORE_ERR;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step(st), rc = STORE_OK;
    if (r == SQLITE_ROW) *job = job_from_row(db, st);
    else if (r == SQLITE_DONE) { seterr(err, errlen, "no job %s", id); rc = STORE_NOTFOUND; }
    else rc = dberr(db, err, errlen, "job get");
    sqlite3_finalize(st);
    return rc;
}

int store_job_get(store_t *s, const char *id, json_t **job, char *err, size_t errlen) {
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) { *job = NULL; return STORE_ERR; }
    int rc = job_get_db(db, id, job, err, errlen);
    rd_put(s, db);
    if (rc == STORE_OK) atomic_fetch_add(&s->job_records_read, 1);
    return rc;
}

unsigned long long store_job_records_read(store_t *s) { return atomic_load(&s->job_records_read); }

int store_job_state(store_t *s, const char *id, job_state_t *state, char *err, size_t errlen) {
    *state = JOB_STATE_ANY;
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) return STORE_ERR;
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT state FROM jobs WHERE id = ?1;", &st, err, errlen);
    if (rc == STORE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
            if (job_state_parse((const char *)sqlite3_column_text(st, 0), state) != 0) {
                rc = STORE_ERR;
                seterr(err, errlen, "job %s: unknown state '%s' in the store", id,
                       (const char *)sqlite3_column_text(st, 0));
            }
        } else if (r == SQLITE_DONE) { rc = STORE_NOTFOUND; seterr(err, errlen, "no job %s", id); }
        else rc = dberr(db, err, errlen, "job state");
        sqlite3_finalize(st);
    }
    rd_put(s, db);
    return rc;
}

/* Retention (store_job_strip_images): an ended job's stored spec keeps no
 * inline image payload (spec.images[i].u8_hwc_b64); height, width and the
 * pixels' sha256 stay. 1 when something was dropped. */
static int spec_strip_images(json_t *spec) {
    json_t *imgs = json_object_get(spec, "images");
    size_t i;
    json_t *e;
    int changed = 0;
    json_array_foreach(imgs, i, e)
        if (json_object_get(e, "u8_hwc_b64")) changed |= json_object_del(e, "u8_hwc_b64") == 0;
    return changed;
}

/* Idempotency against an ended job whose images were stripped: the new spec,
 * stripped the same way, has the stored text (the sha256 of every image's
 * pixels is part of both). */
static int spec_same_stripped(const char *stored, const json_t *spec) {
    if (strstr(stored, "\"u8_hwc_b64\"")) return 0;
    json_t *copy = json_deep_copy(spec);
    int same = 0;
    if (copy && spec_strip_images(copy)) {
        char *t = doc_text(copy);
        same = t && strcmp(t, stored) == 0;
        free(t);
    }
    json_decref(copy);
    return same;
}

int store_job_insert(store_t *s, job_type_t type, const char *dataset, int priority,
                     const char *submission_id, const json_t *spec, const json_t *plan,
                     json_t **job, int *created, char *err, size_t errlen) {
    *job = NULL;
    *created = 0;
    if ((int)type < 0 || (int)type >= JOB_TYPE_COUNT) return seterr(err, errlen, "store: bad job type %d", (int)type);
    char *spec_text = doc_text(spec), *plan_text = doc_text(plan);
    if (!spec_text || !plan_text) {
        free(spec_text); free(plan_text);
        return seterr(err, errlen, "store: job spec and plan must be JSON documents");
    }
    if (wbegin(s, 1, err, errlen)) { free(spec_text); free(plan_text); return STORE_ERR; }
    int rc = STORE_OK;
    sqlite3_stmt *st = NULL;
    char id[32] = "";
    if (submission_id && *submission_id) {
        rc = prep(s->w, "SELECT id, spec FROM jobs WHERE submission_id = ?1;", &st, err, errlen);
        if (rc) goto out;
        sqlite3_bind_text(st, 1, submission_id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW) {
            snprintf(id, sizeof id, "%s", (const char *)sqlite3_column_text(st, 0));
            const char *old = (const char *)sqlite3_column_text(st, 1);
            if (!old || (strcmp(old, spec_text) != 0 && !spec_same_stripped(old, spec))) {
                rc = STORE_CONFLICT;
                seterr(err, errlen, "submission_id '%s' was already used for job %s with another spec",
                       submission_id, id);
            }
            sqlite3_finalize(st);
            st = NULL;
            if (rc == STORE_OK) rc = job_get_db(s->w, id, job, err, errlen);
            goto out;
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    long long seq = 1;
    rc = prep(s->w, "SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs;", &st, err, errlen);
    if (rc) goto out;
    if (sqlite3_step(st) == SQLITE_ROW) seq = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    snprintf(id, sizeof id, "j-%06lld", seq);
    rc = prep(s->w, "INSERT INTO jobs(seq, id, submission_id, type, dataset, priority, spec, plan, "
                    "state, created, want_devices) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?10);",
              &st, err, errlen);
    if (rc) goto out;
    char *want = doc_text(json_object_get(spec, "devices"));   /* NULL when absent: one device */
    bind_text(st, 10, want);
    free(want);   /* bound SQLITE_TRANSIENT by bind_text */
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_TRANSIENT);
    bind_text(st, 3, submission_id);
    sqlite3_bind_text(st, 4, job_type_name(type), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, dataset, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 6, priority);
    sqlite3_bind_text(st, 7, spec_text, -1, SQLITE_STATIC);   /* freed after the statement */
    sqlite3_bind_text(st, 8, plan_text, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 9, store_now());
    if (sqlite3_step(st) != SQLITE_DONE) { rc = dberr(s->w, err, errlen, "job insert"); goto out; }
    sqlite3_finalize(st);
    st = NULL;
    json_t *ev = json_pack("{s:s}", "state", job_state_name(JOB_QUEUED));
    rc = event_append_locked(s, id, "state", ev, NULL, err, errlen);
    json_decref(ev);
    if (rc) goto out;
    rc = job_get_db(s->w, id, job, err, errlen);
    if (rc == STORE_OK) *created = 1;
    if (rc == STORE_OK) atomic_fetch_add(&s->job_records_read, 1);
out:
    if (st) sqlite3_finalize(st);
    free(spec_text);
    free(plan_text);
    rc = wend(s, rc, err, errlen);
    if (rc != STORE_OK && *job) { json_decref(*job); *job = NULL; *created = 0; }
    return rc;
}

/* The list form of a job: what identifies it and where it stands, never the
 * spec, plan, result or metrics (a listing's cost does not grow with them). */
#define JOB_SUMMARY_COLS "id, type, dataset, priority, submission_id, state, progress, error, resumed_from, " \
                         "device, created, started, finished, devices"

static json_t *job_summary_from_row(sqlite3_stmt *st) {
    json_t *j = job_head_from_row(st);
    json_object_set_new(j, "progress", job_progress_json(st, 6));
    json_object_set_new(j, "error", text_json(st, 7));
    json_object_set_new(j, "resumed_from", text_json(st, 8));
    json_object_set_new(j, "device", int_json(st, 9));
    json_object_set_new(j, "devices", doc_json(st, 13));
    json_object_set_new(j, "created_at", time_json(st, 10));
    json_object_set_new(j, "started_at", time_json(st, 11));
    json_object_set_new(j, "finished_at", time_json(st, 12));
    return j;
}

int store_job_list(store_t *s, job_state_t state, job_type_t type, int limit, int offset,
                   json_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (limit <= 0) limit = 100;
    if (offset < 0) offset = 0;
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) return STORE_ERR;
    sqlite3_stmt *st = NULL;
    json_t *arr = json_array();
    long long total = 0;
    int rc = prep(db, "SELECT " JOB_SUMMARY_COLS " FROM jobs WHERE (?1 IS NULL OR state = ?1) AND "
                      "(?2 IS NULL OR type = ?2) ORDER BY seq DESC LIMIT ?3 OFFSET ?4;", &st, err, errlen);
    if (rc) goto out;
    bind_text(st, 1, state == JOB_STATE_ANY ? NULL : job_state_name(state));
    bind_text(st, 2, type == JOB_TYPE_ANY ? NULL : job_type_name(type));
    sqlite3_bind_int(st, 3, limit);
    sqlite3_bind_int(st, 4, offset);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) json_array_append_new(arr, job_summary_from_row(st));
    if (r != SQLITE_DONE) { rc = dberr(db, err, errlen, "job list"); goto out; }
    sqlite3_finalize(st);
    st = NULL;
    rc = prep(db, "SELECT COUNT(*) FROM jobs WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR type = ?2);",
              &st, err, errlen);
    if (rc) goto out;
    bind_text(st, 1, state == JOB_STATE_ANY ? NULL : job_state_name(state));
    bind_text(st, 2, type == JOB_TYPE_ANY ? NULL : job_type_name(type));
    if (sqlite3_step(st) == SQLITE_ROW) total = sqlite3_column_int64(st, 0);
    *out = json_pack("{s:O, s:I, s:i, s:i}", "jobs", arr, "total", (json_int_t)total, "limit", limit,
                     "offset", offset);
out:
    if (st) sqlite3_finalize(st);
    json_decref(arr);
    rd_put(s, db);
    return rc;
}

int store_job_set_state(store_t *s, const char *id, job_state_t from, job_state_t to,
                        const json_t *extra, char *err, size_t errlen) {
    if ((int)to < 0 || (int)to >= JOB_STATE_COUNT) return seterr(err, errlen, "store: bad job state %d", (int)to);
    if (wbegin(s, 1, err, errlen)) return STORE_ERR;
    sqlite3_stmt *st = NULL;
    char cur[32] = "";
    int rc = prep(s->w, "SELECT state FROM jobs WHERE id = ?1;", &st, err, errlen);
    if (rc) goto out;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_ROW) { rc = STORE_NOTFOUND; seterr(err, errlen, "no job %s", id); goto out; }
    snprintf(cur, sizeof cur, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    st = NULL;
    job_state_t now = JOB_STATE_ANY;   /* stays so for a state this traind does not know: no way out */
    job_state_parse(cur, &now);
    if (from != JOB_STATE_ANY && from != now) {
        rc = STORE_BADSTATE;
        seterr(err, errlen, "job %s is %s, not %s", id, cur, job_state_name(from));
        goto out;
    }
    if (!job_transition_ok(now, to)) {
        rc = STORE_BADSTATE;
        seterr(err, errlen, "job %s is %s: cannot become %s", id, cur, job_state_name(to));
        goto out;
    }
    const json_t *jerr = extra ? json_object_get(extra, "error") : NULL;
    const json_t *jres = extra ? json_object_get(extra, "result") : NULL;
    const json_t *jdev = extra ? json_object_get(extra, "device") : NULL;
    const json_t *jpid = extra ? json_object_get(extra, "worker_pid") : NULL;
    const json_t *jdevs = extra ? json_object_get(extra, "devices") : NULL;
    const json_t *jrc = extra ? json_object_get(extra, "resume_checkpoint") : NULL;
    const json_t *jrf = extra ? json_object_get(extra, "resumed_from") : NULL;
    char *res_text = jres && !json_is_null(jres) ? doc_text(jres) : NULL;
    char *devs_text = json_is_array(jdevs) ? doc_text(jdevs) : NULL;
    int final = job_state_terminal(to);
    rc = prep(s->w,
              "UPDATE jobs SET state = ?2,"
              " error = CASE WHEN ?3 IS NOT NULL THEN ?3 WHEN ?2 = 'queued' THEN NULL ELSE error END,"
              " result = COALESCE(?4, result),"
              " device = CASE WHEN ?5 IS NOT NULL THEN ?5 WHEN ?2 = 'queued' THEN NULL ELSE device END,"
              " worker_pid = CASE WHEN ?6 IS NOT NULL THEN ?6 WHEN ?9 THEN NULL ELSE worker_pid END,"
              " resume_checkpoint = COALESCE(?7, resume_checkpoint),"
              " resumed_from = COALESCE(?8, resumed_from),"
              " started = CASE WHEN ?2 = 'running' THEN ?10 WHEN ?2 = 'queued' THEN NULL ELSE started END,"
              " finished = CASE WHEN ?9 THEN ?10 WHEN ?2 = 'queued' THEN NULL ELSE finished END,"
              " devices = CASE WHEN ?11 IS NOT NULL THEN ?11 WHEN ?2 = 'queued' THEN NULL ELSE devices END"
              " WHERE id = ?1;", &st, err, errlen);
    if (rc) { free(res_text); free(devs_text); goto out; }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, job_state_name(to), -1, SQLITE_STATIC);
    bind_text(st, 3, json_is_string(jerr) ? json_string_value(jerr) : NULL);
    bind_text(st, 4, res_text);
    if (json_is_integer(jdev)) sqlite3_bind_int64(st, 5, json_integer_value(jdev)); else sqlite3_bind_null(st, 5);
    if (json_is_integer(jpid)) sqlite3_bind_int64(st, 6, json_integer_value(jpid)); else sqlite3_bind_null(st, 6);
    bind_text(st, 7, json_is_string(jrc) ? json_string_value(jrc) : NULL);
    bind_text(st, 8, json_is_string(jrf) ? json_string_value(jrf) : NULL);
    sqlite3_bind_int(st, 9, final);
    sqlite3_bind_double(st, 10, store_now());
    bind_text(st, 11, devs_text);
    int r = sqlite3_step(st);
    free(res_text);
    free(devs_text);
    if (r != SQLITE_DONE) { rc = dberr(s->w, err, errlen, "job state"); goto out; }
    sqlite3_finalize(st);
    st = NULL;
    json_t *ev = json_pack("{s:s, s:s}", "state", job_state_name(to), "from", cur);
    if (json_is_string(jerr)) json_object_set_new(ev, "error", json_deep_copy(jerr));
    if (json_is_string(jrf)) json_object_set_new(ev, "resumed_from", json_deep_copy(jrf));
    const json_t *reason = extra ? json_object_get(extra, "reason") : NULL;
    if (json_is_string(reason)) json_object_set_new(ev, "reason", json_deep_copy(reason));
    rc = event_append_locked(s, id, "state", ev, NULL, err, errlen);
    json_decref(ev);
out:
    if (st) sqlite3_finalize(st);
    return wend(s, rc, err, errlen);
}

int store_job_set_worker(store_t *s, const char *id, int pid, char *err, size_t errlen) {
    if (wbegin(s, 0, err, errlen)) return STORE_ERR;
    sqlite3_stmt *st;
    int rc = prep(s->w, "UPDATE jobs SET worker_pid = ?2 WHERE id = ?1;", &st, err, errlen);
    if (rc == STORE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        if (pid > 0) sqlite3_bind_int(st, 2, pid); else sqlite3_bind_null(st, 2);
        if (sqlite3_step(st) != SQLITE_DONE) rc = dberr(s->w, err, errlen, "worker pid");
        else if (sqlite3_changes(s->w) == 0) { rc = STORE_NOTFOUND; seterr(err, errlen, "no job %s", id); }
        sqlite3_finalize(st);
    }
    return wend(s, rc, err, errlen);
}

int store_job_set_progress(store_t *s, const char *id, const json_t *progress, int with_event,
                           char *err, size_t errlen) {
    char *text = doc_text(progress);
    if (!text) return seterr(err, errlen, "store: progress must be a JSON object");
    if (wbegin(s, 0, err, errlen)) { free(text); return STORE_ERR; }
    sqlite3_stmt *st;
    int rc = prep(s->w, "UPDATE jobs SET progress = ?2 WHERE id = ?1;", &st, err, errlen);
    if (rc == STORE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, text, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE) rc = dberr(s->w, err, errlen, "progress");
        else if (sqlite3_changes(s->w) == 0) { rc = STORE_NOTFOUND; seterr(err, errlen, "no job %s", id); }
        sqlite3_finalize(st);
    }
    if (rc == STORE_OK && with_event) rc = event_append_locked(s, id, "progress", progress, NULL, err, errlen);
    free(text);
    return wend(s, rc, err, errlen);
}

int store_jobs_queued(store_t *s, json_t **out, char *err, size_t errlen) {
    *out = NULL;
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) return STORE_ERR;
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT id, priority, seq, dataset, type, want_devices FROM jobs WHERE state = 'queued' "
                      "ORDER BY priority DESC, seq ASC;", &st, err, errlen);
    if (rc == STORE_OK) {
        json_t *arr = json_array();
        int r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW)
            json_array_append_new(arr, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "id", text_json(st, 0),
                                                 "priority", int_json(st, 1), "seq", int_json(st, 2),
                                                 "dataset", text_json(st, 3), "type", text_json(st, 4),
                                                 "devices", doc_json(st, 5)));
        if (r != SQLITE_DONE) { rc = dberr(db, err, errlen, "queue"); json_decref(arr); }
        else *out = arr;
        sqlite3_finalize(st);
    }
    rd_put(s, db);
    return rc;
}

int store_job_ids_in_state(store_t *s, job_state_t state, json_t **out, char *err, size_t errlen) {
    *out = NULL;
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) return STORE_ERR;
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT id FROM jobs WHERE state = ?1 ORDER BY seq;", &st, err, errlen);
    if (rc == STORE_OK) {
        sqlite3_bind_text(st, 1, job_state_name(state), -1, SQLITE_STATIC);
        json_t *arr = json_array();
        while (sqlite3_step(st) == SQLITE_ROW) json_array_append_new(arr, text_json(st, 0));
        *out = arr;
        sqlite3_finalize(st);
    }
    rd_put(s, db);
    return rc;
}

int store_job_counts(store_t *s, json_t **out, char *err, size_t errlen) {
    *out = NULL;
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) return STORE_ERR;
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT state, COUNT(*) FROM jobs GROUP BY state;", &st, err, errlen);
    if (rc == STORE_OK) {
        json_t *o = json_object();
        for (int i = 0; i < JOB_STATE_COUNT; i++) json_object_set_new(o, job_state_name((job_state_t)i), json_integer(0));
        while (sqlite3_step(st) == SQLITE_ROW)
            json_object_set_new(o, (const char *)sqlite3_column_text(st, 0), int_json(st, 1));
        *out = o;
        sqlite3_finalize(st);
    }
    rd_put(s, db);
    return rc;
}

static int count_query(store_t *s, const char *sql, const char *arg, int *n, char *err, size_t errlen) {
    *n = 0;
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) return STORE_ERR;
    sqlite3_stmt *st;
    int rc = prep(db, sql, &st, err, errlen);
    if (rc == STORE_OK) {
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW) *n = sqlite3_column_int(st, 0);
        else rc = dberr(db, err, errlen, "count");
        sqlite3_finalize(st);
    }
    rd_put(s, db);
    return rc;
}

int store_dataset_in_use(store_t *s, const char *name, int *n, char *err, size_t errlen) {
    return count_query(s, "SELECT COUNT(*) FROM jobs WHERE dataset = ?1 AND "
                          "state IN ('queued', 'running', 'cancelling');", name, n, err, errlen);
}

/* ---- retention ---------------------------------------------------------------------------- */
#define TERMINAL_STATES "('succeeded', 'failed', 'cancelled', 'interrupted')"
#define PRUNE_BATCH 500

/* One pass: job id, or (id NULL) the first ended job still holding pixels. */
static int strip_pass(store_t *s, const char *id, int *stripped, char *err, size_t errlen) {
    /* read and rewrite outside the writer's lock (a spec may be tens of MB);
     * an ended job's spec changes nowhere else, so the rewrite cannot race */
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) return STORE_ERR;
    sqlite3_stmt *st;
    char job[64] = "", *text = NULL;
    int rc = prep(db, "SELECT id, spec FROM jobs WHERE (?1 IS NULL OR id = ?1) AND type = 'infer' AND "
                      "state IN " TERMINAL_STATES " AND instr(spec, '\"u8_hwc_b64\"') > 0;", &st, err, errlen);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        int r = SQLITE_DONE;
        while (!text && (r = sqlite3_step(st)) == SQLITE_ROW) {
            json_t *spec = doc_json(st, 1);
            if (json_is_object(spec) && spec_strip_images(spec)) {   /* one job per pass: one spec in memory */
                text = doc_text(spec);
                snprintf(job, sizeof job, "%s", (const char *)sqlite3_column_text(st, 0));
            }
            json_decref(spec);
        }
        if (!text && r != SQLITE_DONE) rc = dberr(db, err, errlen, "strip images");
        sqlite3_finalize(st);
    }
    rd_put(s, db);
    if (rc != STORE_OK || !text) { free(text); return rc; }
    if (wbegin(s, 0, err, errlen)) { free(text); return STORE_ERR; }
    rc = prep(s->w, "UPDATE jobs SET spec = ?2 WHERE id = ?1 AND state IN " TERMINAL_STATES ";", &st, err, errlen);
    if (rc == STORE_OK) {
        sqlite3_bind_text(st, 1, job, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) rc = dberr(s->w, err, errlen, "strip images");
        else *stripped += sqlite3_changes(s->w);
        sqlite3_finalize(st);
    }
    rc = wend(s, rc, err, errlen);
    free(text);
    return rc;
}

int store_job_strip_images(store_t *s, const char *id, int *stripped, char *err, size_t errlen) {
    *stripped = 0;
    for (;;) {
        int n = 0;
        int rc = strip_pass(s, id, &n, err, errlen);
        *stripped += n;
        if (rc != STORE_OK || id || n == 0) return rc;
    }
}

int store_jobs_prune(store_t *s, int keep, json_t **deleted, char *err, size_t errlen) {
    *deleted = json_array();
    if (keep <= 0) return STORE_OK;
    for (;;) {
        if (wbegin(s, 0, err, errlen)) return STORE_ERR;
        sqlite3_stmt *st;
        json_t *batch = json_array();
        /* ended jobs older than the `keep` most recently ended, except those a
         * checkpoint record still belongs to */
        int rc = prep(s->w,
                      "SELECT id FROM jobs WHERE state IN " TERMINAL_STATES " AND seq NOT IN ("
                      "  SELECT seq FROM jobs WHERE state IN " TERMINAL_STATES
                      "  ORDER BY finished DESC, seq DESC LIMIT ?1)"
                      " AND NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.job = jobs.id)"
                      " ORDER BY seq LIMIT ?2;", &st, err, errlen);
        if (rc == STORE_OK) {
            sqlite3_bind_int(st, 1, keep);
            sqlite3_bind_int(st, 2, PRUNE_BATCH);
            int r;
            while ((r = sqlite3_step(st)) == SQLITE_ROW) json_array_append_new(batch, text_json(st, 0));
            if (r != SQLITE_DONE) rc = dberr(s->w, err, errlen, "prune");
            sqlite3_finalize(st);
        }
        size_t i;
        json_t *v;
        /* events, metrics and latest metrics go with the job (ON DELETE CASCADE) */
        if (rc == STORE_OK) rc = prep(s->w, "DELETE FROM jobs WHERE id = ?1;", &st, err, errlen);
        if (rc == STORE_OK) {
            json_array_foreach(batch, i, v) {
                sqlite3_bind_text(st, 1, json_string_value(v), -1, SQLITE_STATIC);
                if (sqlite3_step(st) != SQLITE_DONE) { rc = dberr(s->w, err, errlen, "prune"); break; }
                sqlite3_reset(st);
            }
            sqlite3_finalize(st);
        }
        rc = wend(s, rc, err, errlen);
        size_t n = json_array_size(batch);
        if (rc == STORE_OK) json_array_extend(*deleted, batch);
        json_decref(batch);
        if (rc != STORE_OK) return rc;
        if (n < PRUNE_BATCH) return STORE_OK;
    }
}

/* ---- metrics --------------------------------------------------------------------------- */
int store_metric_append(store_t *s, const char *job, const char *name, long step, double value,
                        int with_event, char *err, size_t errlen) {
    if (wbegin(s, 0, err, errlen)) return STORE_ERR;
    double now = store_now();
    sqlite3_stmt *st;
    int rc = prep(s->w, "INSERT INTO metrics(job, name, step, value, time) VALUES(?1, ?2, ?3, ?4, ?5);",
                  &st, err, errlen);
    for (int pass = 0; pass < 2 && rc == STORE_OK; pass++) {
        sqlite3_bind_text(st, 1, job, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, step);
        if (isfinite(value)) sqlite3_bind_double(st, 4, value); else sqlite3_bind_null(st, 4);
        sqlite3_bind_double(st, 5, now);
        int r = sqlite3_step(st);
        sqlite3_finalize(st);
        st = NULL;
        if (r != SQLITE_DONE) {
            if (r == SQLITE_CONSTRAINT_FOREIGNKEY) { rc = STORE_NOTFOUND; seterr(err, errlen, "no job %s", job); }
            else rc = dberr(s->w, err, errlen, "metric insert");
            break;
        }
        if (pass == 0)
            rc = prep(s->w, "INSERT INTO metrics_latest(job, name, step, value, time) "
                            "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(job, name) DO UPDATE SET "
                            "step = excluded.step, value = excluded.value, time = excluded.time "
                            "WHERE excluded.step >= metrics_latest.step;", &st, err, errlen);
    }
    if (rc == STORE_OK && with_event) {
        json_t *ev = json_pack("{s:s, s:I, s:o}", "name", name, "step", (json_int_t)step, "value",
                               isfinite(value) ? json_real(value) : json_null());
        rc = event_append_locked(s, job, "metric", ev, NULL, err, errlen);
        json_decref(ev);
    }
    return wend(s, rc, err, errlen);
}

int store_metrics_query(store_t *s, const char *job, const char *name, long since_step,
                        json_t **out, char *err, size_t errlen) {
    *out = NULL;
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) return STORE_ERR;
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT name, step, value, time FROM metrics WHERE job = ?1 AND "
                      "(?2 IS NULL OR name = ?2) AND step > ?3 ORDER BY step, name, rowid;", &st, err, errlen);
    if (rc == STORE_OK) {
        sqlite3_bind_text(st, 1, job, -1, SQLITE_TRANSIENT);
        bind_text(st, 2, name);
        sqlite3_bind_int64(st, 3, since_step < 0 ? -1 : since_step);
        json_t *arr = json_array();
        int r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
            json_t *row = json_pack("{s:o, s:o, s:o}", "step", int_json(st, 1), "value", real_json(st, 2),
                                    "time", time_json(st, 3));
            if (!name || !*name) json_object_set_new(row, "name", text_json(st, 0));
            json_array_append_new(arr, row);
        }
        if (r != SQLITE_DONE) { rc = dberr(db, err, errlen, "metrics"); json_decref(arr); }
        else *out = arr;
        sqlite3_finalize(st);
    }
    rd_put(s, db);
    return rc;
}

int store_metrics_latest(store_t *s, const char *job, json_t **out, char *err, size_t errlen) {
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) { *out = NULL; return STORE_ERR; }
    *out = latest_metrics(db, job);
    rd_put(s, db);
    return STORE_OK;
}

/* ---- checkpoints ------------------------------------------------------------------------ */
#define CKPT_COLS "id, job, step, path, bytes, sha256, files, metrics, created"

static json_t *ckpt_from_row(sqlite3_stmt *st) {
    json_t *files = doc_json(st, 6);
    if (json_is_null(files)) { json_decref(files); files = json_array(); }
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id", text_json(st, 0),
                     "job", text_json(st, 1), "step", int_json(st, 2), "path", text_json(st, 3),
                     "bytes", int_json(st, 4), "sha256", text_json(st, 5), "files", files,
                     "metrics", doc_json(st, 7), "created_at", time_json(st, 8));
}

static int ckpt_get_db(sqlite3 *db, const char *id, json_t **ckpt, char *err, size_t errlen) {
    sqlite3_stmt *st;
    *ckpt = NULL;
    if (prep(db, "SELECT " CKPT_COLS " FROM checkpoints WHERE id = ?1;", &st, err, errlen)) return STORE_ERR;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step(st), rc = STORE_OK;
    if (r == SQLITE_ROW) *ckpt = ckpt_from_row(st);
    else if (r == SQLITE_DONE) { rc = STORE_NOTFOUND; seterr(err, errlen, "no checkpoint %s", id); }
    else rc = dberr(db, err, errlen, "checkpoint get");
    sqlite3_finalize(st);
    return rc;
}

int store_checkpoint_insert(store_t *s, const char *job, long step, const char *path,
                            long long bytes, const char *sha256, const json_t *files,
                            const json_t *metrics, json_t **ckpt, char *err, size_t errlen) {
    if (ckpt) *ckpt = NULL;
    char *files_text = files ? doc_text(files) : NULL;
    char *metrics_text = metrics && !json_is_null(metrics) ? doc_text(metrics) : NULL;
    if (wbegin(s, 1, err, errlen)) { free(files_text); free(metrics_text); return STORE_ERR; }
    sqlite3_stmt *st = NULL;
    long long seq = 1;
    char id[32];
    /* The same directory recorded again (a resumed run that reached a step whose
     * checkpoint an earlier run had written): one record, its sums refreshed. */
    int rc = prep(s->w, "SELECT id FROM checkpoints WHERE job = ?1 AND path = ?2;", &st, err, errlen);
    if (rc) goto out;
    sqlite3_bind_text(st, 1, job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(id, sizeof id, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        st = NULL;
        rc = prep(s->w, "UPDATE checkpoints SET bytes = ?2, sha256 = ?3, files = ?4, metrics = COALESCE(?5, metrics) "
                        "WHERE id = ?1;", &st, err, errlen);
        if (rc) goto out;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, bytes);
        bind_text(st, 3, sha256);
        bind_text(st, 4, files_text);
        bind_text(st, 5, metrics_text);
        if (sqlite3_step(st) != SQLITE_DONE) { rc = dberr(s->w, err, errlen, "checkpoint update"); goto out; }
        sqlite3_finalize(st);
        st = NULL;
        if (ckpt) rc = ckpt_get_db(s->w, id, ckpt, err, errlen);
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    rc = prep(s->w, "SELECT COALESCE(MAX(seq), 0) + 1 FROM checkpoints;", &st, err, errlen);
    if (rc) goto out;
    if (sqlite3_step(st) == SQLITE_ROW) seq = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    snprintf(id, sizeof id, "c-%06lld", seq);
    rc = prep(s->w, "INSERT INTO checkpoints(seq, id, job, step, path, bytes, sha256, files, metrics, created) "
                    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10);", &st, err, errlen);
    if (rc) goto out;
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, step);
    sqlite3_bind_text(st, 5, path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, bytes);
    bind_text(st, 7, sha256);
    bind_text(st, 8, files_text);
    bind_text(st, 9, metrics_text);
    sqlite3_bind_double(st, 10, store_now());
    int r = sqlite3_step(st);
    if (r != SQLITE_DONE) {
        if (r == SQLITE_CONSTRAINT_FOREIGNKEY) { rc = STORE_NOTFOUND; seterr(err, errlen, "no job %s", job); }
        else rc = dberr(s->w, err, errlen, "checkpoint insert");
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    json_t *ev = json_pack("{s:s, s:I, s:s}", "id", id, "step", (json_int_t)step, "path", path);
    if (metrics_text) json_object_set_new(ev, "metrics", json_deep_copy(metrics));
    rc = event_append_locked(s, job, "checkpoint", ev, NULL, err, errlen);
    json_decref(ev);
    if (rc == STORE_OK && ckpt) rc = ckpt_get_db(s->w, id, ckpt, err, errlen);
out:
    if (st) sqlite3_finalize(st);
    free(files_text);
    free(metrics_text);
    rc = wend(s, rc, err, errlen);
    if (rc != STORE_OK && ckpt && *ckpt) { json_decref(*ckpt); *ckpt = NULL; }
    return rc;
}

int store_checkpoint_get(store_t *s, const char *id, json_t **ckpt, char *err, size_t errlen) {
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) { *ckpt = NULL; return STORE_ERR; }
    int rc = ckpt_get_db(db, id, ckpt, err, errlen);
    rd_put(s, db);
    return rc;
}

static int ckpt_query(store_t *s, const char *sql, const char *arg, json_t **out, char *err, size_t errlen) {
    *out = NULL;
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) return STORE_ERR;
    sqlite3_stmt *st;
    int rc = prep(db, sql, &st, err, errlen);
    if (rc == STORE_OK) {
        bind_text(st, 1, arg);
        json_t *arr = json_array();
        int r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW) json_array_append_new(arr, ckpt_from_row(st));
        if (r != SQLITE_DONE) { rc = dberr(db, err, errlen, "checkpoints"); json_decref(arr); }
        else *out = arr;
        sqlite3_finalize(st);
    }
    rd_put(s, db);
    return rc;
}

int store_checkpoint_list(store_t *s, const char *job, json_t **out, char *err, size_t errlen) {
    return ckpt_query(s, "SELECT " CKPT_COLS " FROM checkpoints WHERE (?1 IS NULL OR job = ?1) ORDER BY seq;",
                      job, out, err, errlen);
}

int store_checkpoint_latest(store_t *s, const char *job, json_t **ckpt, char *err, size_t errlen) {
    json_t *arr;
    *ckpt = NULL;
    int rc = ckpt_query(s, "SELECT " CKPT_COLS " FROM checkpoints WHERE job = ?1 ORDER BY step DESC, seq DESC "
                           "LIMIT 1;", job, &arr, err, errlen);
    if (rc) return rc;
    if (json_array_size(arr) == 0) {
        json_decref(arr);
        seterr(err, errlen, "job %s has no checkpoint", job);
        return STORE_NOTFOUND;
    }
    *ckpt = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    return STORE_OK;
}

int store_checkpoint_delete(store_t *s, const char *id, char *err, size_t errlen) {
    if (wbegin(s, 1, err, errlen)) return STORE_ERR;
    sqlite3_stmt *st;
    int rc = prep(s->w, "DELETE FROM checkpoints WHERE id = ?1;", &st, err, errlen);
    if (rc == STORE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE) rc = dberr(s->w, err, errlen, "checkpoint delete");
        else if (sqlite3_changes(s->w) == 0) { rc = STORE_NOTFOUND; seterr(err, errlen, "no checkpoint %s", id); }
        sqlite3_finalize(st);
    }
    return wend(s, rc, err, errlen);
}

int store_checkpoint_prune_list(store_t *s, const char *job, int keep, const char *best_metric,
                                json_t **out, char *err, size_t errlen) {
    json_t *all;
    *out = NULL;
    int rc = ckpt_query(s, "SELECT " CKPT_COLS " FROM checkpoints WHERE job = ?1 ORDER BY step DESC, seq DESC;",
                        job, &all, err, errlen);
    if (rc) return rc;
    json_t *prune = json_array();
    if (keep > 0) {
        /* the best by best_metric (lowest value; ties: the newest) */
        int best = -1;
        double bestv = INFINITY;
        size_t i;
        json_t *c;
        json_array_foreach(all, i, c) {
            json_t *v = best_metric ? json_object_get(json_object_get(c, "metrics"), best_metric) : NULL;
            if (json_is_number(v) && json_number_value(v) < bestv) {
                bestv = json_number_value(v);
                best = (int)i;
            }
        }
        json_array_foreach(all, i, c)
            if ((int)i >= keep && (int)i != best) json_array_append(prune, c);
    }
    json_decref(all);
    *out = prune;
    return STORE_OK;
}

int store_checkpoint_in_use(store_t *s, const char *id, int *n, char *err, size_t errlen) {
    return count_query(s, "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running', 'cancelling') AND ("
                          " json_extract(spec, '$.checkpoint') = ?1 OR json_extract(spec, '$.resume_from') = ?1 OR"
                          " json_extract(spec, '$.model.weights') = ?1 OR resume_checkpoint = ?1);",
                       id, n, err, errlen);
}

/* ---- datasets ----------------------------------------------------------------------------- */
#define DS_COLS "name, source, state, samples, image_h, image_w, fields, bytes, progress, gb_per_s, " \
                "error, created, loaded, masked_joints, import"

static json_t *ds_from_row(sqlite3_stmt *st) {
    json_t *size = sqlite3_column_type(st, 4) == SQLITE_NULL ? json_null()
                   : json_pack("[o, o]", int_json(st, 4), int_json(st, 5));
    json_t *fields = doc_json(st, 6);
    if (json_is_null(fields)) { json_decref(fields); fields = json_array(); }
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                     "name", text_json(st, 0), "source", doc_json(st, 1), "state", text_json(st, 2),
                     "samples", int_json(st, 3), "image_size", size, "fields", fields,
                     "bytes", int_json(st, 7), "progress", real_json(st, 8), "gb_per_s", real_json(st, 9),
                     "error", text_json(st, 10), "created_at", time_json(st, 11), "loaded_at", time_json(st, 12),
                     "masked_joints", int_json(st, 13), "import", doc_json(st, 14));
}

static int ds_get_db(sqlite3 *db, const char *name, json_t **ds, char *err, size_t errlen) {
    sqlite3_stmt *st;
    *ds = NULL;
    if (prep(db, "SELECT " DS_COLS " FROM datasets WHERE name = ?1;", &st, err, errlen)) return STORE_ERR;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step(st), rc = STORE_OK;
    if (r == SQLITE_ROW) *ds = ds_from_row(st);
    else if (r == SQLITE_DONE) { rc = STORE_NOTFOUND; seterr(err, errlen, "no dataset %s", name); }
    else rc = dberr(db, err, errlen, "dataset get");
    sqlite3_finalize(st);
    return rc;
}

int store_dataset_insert(store_t *s, const char *name, const json_t *source, json_t **ds,
                         char *err, size_t errlen) {
    if (ds) *ds = NULL;
    char *src = doc_text(source);
    if (!src) return seterr(err, errlen, "store: dataset source must be a JSON object");
    if (wbegin(s, 1, err, errlen)) { free(src); return STORE_ERR; }
    sqlite3_stmt *st;
    int rc = prep(s->w, "INSERT INTO datasets(name, source, state, created) VALUES(?1, ?2, 'loading', ?3);",
                  &st, err, errlen);
    if (rc == STORE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, src, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(st, 3, store_now());
        int r = sqlite3_step(st);
        if (r == SQLITE_CONSTRAINT_PRIMARYKEY || r == SQLITE_CONSTRAINT_UNIQUE) {
            rc = STORE_CONFLICT;
            seterr(err, errlen, "dataset '%s' exists", name);
        } else if (r != SQLITE_DONE) rc = dberr(s->w, err, errlen, "dataset insert");
        sqlite3_finalize(st);
    }
    if (rc == STORE_OK && ds) rc = ds_get_db(s->w, name, ds, err, errlen);
    free(src);
    rc = wend(s, rc, err, errlen);
    if (rc != STORE_OK && ds && *ds) { json_decref(*ds); *ds = NULL; }
    return rc;
}

int store_dataset_get(store_t *s, const char *name, json_t **ds, char *err, size_t errlen) {
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) { *ds = NULL; return STORE_ERR; }
    int rc = ds_get_db(db, name, ds, err, errlen);
    rd_put(s, db);
    return rc;
}

int store_dataset_list(store_t *s, json_t **out, char *err, size_t errlen) {
    *out = NULL;
    sqlite3 *db = rd_get(s, err, errlen);
    if (!db) return STORE_ERR;
    sqlite3_stmt *st;
    int rc = prep(db, "SELECT " DS_COLS " FROM datasets ORDER BY name;", &st, err, errlen);
    if (rc == STORE_OK) {
        json_t *arr = json_array();
        int r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW) json_array_append_new(arr, ds_from_row(st));
        if (r != SQLITE_DONE) { rc = dberr(db, err, errlen, "datasets"); json_decref(arr); }
        else *out = arr;
        sqlite3_finalize(st);
    }
    rd_put(s, db);
    return rc;
}

int store_dataset_update(store_t *s, const char *name, const json_t *upd, char *err, size_t errlen) {
    if (!json_is_object(upd)) return seterr(err, errlen, "store: dataset %s: no update (it could not be built)", name);
    const json_t *state = json_object_get(upd, "state");
    if (state && !(json_is_string(state) && (strcmp(json_string_value(state), "loading") == 0 ||
                                             strcmp(json_string_value(state), "ready") == 0 ||
                                             strcmp(json_string_value(state), "failed") == 0)))
        return seterr(err, errlen, "store: bad dataset state");
    const json_t *size = json_object_get(upd, "image_size");
    const json_t *fields = json_object_get(upd, "fields");
    const json_t *jerr = json_object_get(upd, "error");
    const json_t *imp = json_object_get(upd, "import");
    char *fields_text = fields ? doc_text(fields) : NULL;
    char *import_text = json_is_object(imp) ? doc_text(imp) : NULL;
    int durable = state != NULL;   /* state changes are acted upon: durable */
    if (wbegin(s, durable, err, errlen)) { free(fields_text); return STORE_ERR; }
    sqlite3_stmt *st;
    int rc = prep(s->w,
                  "UPDATE datasets SET"
                  " state = COALESCE(?2, state),"
                  " samples = COALESCE(?3, samples),"
                  " image_h = COALESCE(?4, image_h), image_w = COALESCE(?5, image_w),"
                  " fields = COALESCE(?6, fields),"
                  " bytes = COALESCE(?7, bytes),"
                  " progress = COALESCE(?8, progress),"
                  " gb_per_s = COALESCE(?9, gb_per_s),"
                  " error = CASE WHEN ?10 THEN ?11 ELSE error END,"
                  " loaded = CASE WHEN ?12 THEN ?13 ELSE loaded END,"
                  " masked_joints = COALESCE(?14, masked_joints),"
                  " import = COALESCE(?15, import)"
                  " WHERE name = ?1;", &st, err, errlen);
    if (rc == STORE_OK) {
        const json_t *v;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        bind_text(st, 2, json_string_value(state));
        if (json_is_integer(v = json_object_get(upd, "samples"))) sqlite3_bind_int64(st, 3, json_integer_value(v));
        if (json_is_array(size) && json_array_size(size) == 2) {
            sqlite3_bind_int64(st, 4, json_integer_value(json_array_get(size, 0)));
            sqlite3_bind_int64(st, 5, json_integer_value(json_array_get(size, 1)));
        }
        bind_text(st, 6, fields_text);
        if (json_is_integer(v = json_object_get(upd, "bytes"))) sqlite3_bind_int64(st, 7, json_integer_value(v));
        if (json_is_number(v = json_object_get(upd, "progress"))) sqlite3_bind_double(st, 8, json_number_value(v));
        if (json_is_number(v = json_object_get(upd, "gb_per_s"))) sqlite3_bind_double(st, 9, json_number_value(v));
        sqlite3_bind_int(st, 10, jerr != NULL);
        bind_text(st, 11, json_string_value(jerr));
        sqlite3_bind_int(st, 12, json_is_true(json_object_get(upd, "loaded_at")));
        sqlite3_bind_double(st, 13, store_now());
        if (json_is_integer(v = json_object_get(upd, "masked_joints")))
            sqlite3_bind_int64(st, 14, json_integer_value(v));
        bind_text(st, 15, import_text);
        if (sqlite3_step(st) != SQLITE_DONE) rc = dberr(s->w, err, errlen, "dataset update");
        else if (sqlite3_changes(s->w) == 0) { rc = STORE_NOTFOUND; seterr(err, errlen, "no dataset %s", name); }
        sqlite3_finalize(st);
    }
    free(fields_text);
    free(import_text);
    return wend(s, rc, err, errlen);
}

int store_dataset_delete(store_t *s, const char *name, char *err, size_t errlen) {
    if (wbegin(s, 1, err, errlen)) return STORE_ERR;
    sqlite3_stmt *st;
    int rc = prep(s->w, "DELETE FROM datasets WHERE name = ?1;", &st, err, errlen);
    if (rc == STORE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE) rc = dberr(s->w, err, errlen, "dataset delete");
        else if (sqlite3_changes(s->w) == 0) { rc = STORE_NOTFOUND; seterr(err, errlen, "no dataset %s", name); }
        sqlite3_finalize(st);
    }
    return wend(s, rc, err, errlen);
}
