/* daemon/log.h — one line per event to stderr (journald adds its own time,
 * but we print ours too for plain terminals):
 *   2026-11-26T11:18:51.123Z INFO  [j-000042] message
 * Thread-safe (one write(2) per line). */
#ifndef TRAIND_LOG_H
#define TRAIND_LOG_H

enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

void log_set_level(int level);
int log_level_parse(const char *s);     /* -1 when unknown */
/* job may be NULL. */
void log_msg(int level, const char *job, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_debug(job, ...) log_msg(LOG_DEBUG, job, __VA_ARGS__)
#define log_info(job, ...)  log_msg(LOG_INFO, job, __VA_ARGS__)
#define log_warn(job, ...)  log_msg(LOG_WARN, job, __VA_ARGS__)
#define log_error(job, ...) log_msg(LOG_ERROR, job, __VA_ARGS__)

#endif
