/* store/mono.h — the clock for intervals, deadlines, rates and timed waits,
 * of the daemon and of the stages: CLOCK_MONOTONIC. The wall clock (store_now(), log lines) is for
 * recorded timestamps only; NTP or an admin may step it, and a deadline or a
 * condition wait on it would then fire an hour early or an hour late (a
 * watchdog thread asleep for an hour gets the daemon killed by systemd). */
#ifndef TRAIND_MONO_H
#define TRAIND_MONO_H

#include <pthread.h>
#include <time.h>

/* Seconds since an arbitrary fixed point. */
double mono_now(void);
/* Initializes a condition variable whose timed waits use CLOCK_MONOTONIC. 0 or an errno. */
int mono_cond_init(pthread_cond_t *cv);
/* The absolute CLOCK_MONOTONIC time `ms` milliseconds from now, for
 * pthread_cond_timedwait on a condition variable from mono_cond_init. */
void mono_deadline(struct timespec *ts, long ms);

#endif
