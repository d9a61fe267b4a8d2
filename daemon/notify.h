/* daemon/notify.h — systemd notification (sd_notify of libsystemd):
 * READY=1 once the store and HTTP are up, STATUS= lines, WATCHDOG=1 pings at
 * half of WATCHDOG_USEC (only while the scheduler loop is alive), STOPPING=1,
 * EXTEND_TIMEOUT_USEC= while a stop checkpoints. Without $NOTIFY_SOCKET every
 * call is a cheap no-op. */
#ifndef TRAIND_NOTIFY_H
#define TRAIND_NOTIFY_H

void notify_ready(void);
void notify_stopping(void);
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_extend_timeout(double seconds);
/* Starts the watchdog thread when systemd asked for one. alive() returns 1
 * while the daemon is healthy; pings are skipped otherwise (systemd then
 * restarts it). */
void notify_watchdog_start(int (*alive)(void *ud), void *ud);
void notify_watchdog_stop(void);

#endif
