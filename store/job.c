/* store/job.c — job types and states: names, parsing and the transition
 * table (see store/job.h for the diagram). */
#include "store/job.h"

#include <string.h>

_Static_assert(JOB_INFER + 1 == JOB_TYPE_COUNT, "JOB_TYPE_COUNT must count the job types");
_Static_assert(JOB_INTERRUPTED + 1 == JOB_STATE_COUNT, "JOB_STATE_COUNT must count the job states");

static const char *const type_names[JOB_TYPE_COUNT] = {
    [JOB_TRAIN] = "train", [JOB_EVAL] = "eval", [JOB_DEBUG] = "debug", [JOB_INFER] = "infer",
};

static const char *const state_names[JOB_STATE_COUNT] = {
    [JOB_QUEUED] = "queued",       [JOB_RUNNING] = "running", [JOB_CANCELLING] = "cancelling",
    [JOB_SUCCEEDED] = "succeeded", [JOB_FAILED] = "failed",   [JOB_CANCELLED] = "cancelled",
    [JOB_INTERRUPTED] = "interrupted",
};

/* The lists in messages, in table order (tests/unit/test_db.c checks them against the tables). */
#define TYPE_LIST "train, eval, debug, infer"
#define STATE_LIST "queued, running, cancelling, succeeded, failed, cancelled, interrupted"

/* allowed[from][to]: the arrows of the diagram in store/job.h. */
static const unsigned char allowed[JOB_STATE_COUNT][JOB_STATE_COUNT] = {
    [JOB_QUEUED] = { [JOB_RUNNING] = 1, [JOB_CANCELLED] = 1, [JOB_FAILED] = 1 },
    [JOB_RUNNING] = { [JOB_SUCCEEDED] = 1, [JOB_FAILED] = 1, [JOB_CANCELLING] = 1, [JOB_CANCELLED] = 1,
                      [JOB_INTERRUPTED] = 1 },
    [JOB_CANCELLING] = { [JOB_CANCELLED] = 1, [JOB_FAILED] = 1, [JOB_SUCCEEDED] = 1, [JOB_INTERRUPTED] = 1 },
    [JOB_INTERRUPTED] = { [JOB_QUEUED] = 1 },
    /* succeeded, failed, cancelled: no way out */
};

const char *job_type_name(job_type_t t) {
    return (int)t >= 0 && (int)t < JOB_TYPE_COUNT ? type_names[t] : "?";
}

const char *job_state_name(job_state_t s) {
    return (int)s >= 0 && (int)s < JOB_STATE_COUNT ? state_names[s] : "?";
}

int job_type_parse(const char *s, job_type_t *out) {
    for (int i = 0; s && i < JOB_TYPE_COUNT; i++)
        if (strcmp(s, type_names[i]) == 0) { *out = (job_type_t)i; return 0; }
    return -1;
}

int job_state_parse(const char *s, job_state_t *out) {
    for (int i = 0; s && i < JOB_STATE_COUNT; i++)
        if (strcmp(s, state_names[i]) == 0) { *out = (job_state_t)i; return 0; }
    return -1;
}

const char *job_type_list(void) { return TYPE_LIST; }
const char *job_state_list(void) { return STATE_LIST; }

int job_transition_ok(job_state_t from, job_state_t to) {
    if ((int)from < 0 || (int)from >= JOB_STATE_COUNT || (int)to < 0 || (int)to >= JOB_STATE_COUNT) return 0;
    return allowed[from][to];
}

int job_state_final(job_state_t s) {
    return s == JOB_SUCCEEDED || s == JOB_FAILED || s == JOB_CANCELLED;
}

int job_state_terminal(job_state_t s) {
    return job_state_final(s) || s == JOB_INTERRUPTED;
}
