/* daemon/notify.c — systemd notify protocol through libsystemd (see notify.h). */
#include "daemon/notify.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "daemon/log.h"
#include "store/mono.h"

static pthread_t wd_thread;
static int wd_running;
static pthread_mutex_t wd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cv;              /* CLOCK_MONOTONIC waits: mono_cond_init at start */
static int wd_stop;
static unsigned long long wd_usec;
static int (*wd_alive)(void *);
static void *wd_ud;

void notify_ready(void) { sd_notify(0, "READY=1\nSTATUS=ready"); }

void notify_stopping(void) { sd_notify(0, "STOPPING=1\nSTATUS=stopping"); }

void notify_status(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (char *p = buf; *p; p++)
        if (*p == '\n') *p = ' ';
    sd_notifyf(0, "STATUS=%s", buf);
}

void notify_extend_timeout(double seconds) {
    if (seconds <= 0) return;
    sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)(seconds * 1e6));
}

static void *wd_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&wd_mu);
    int skipped = 0;
    while (!wd_stop) {
        pthread_mutex_unlock(&wd_mu);
        if (!wd_alive || wd_alive(wd_ud)) {
            sd_notify(0, "WATCHDOG=1");
            skipped = 0;
        } else if (!skipped++) {
            log_error(NULL, "watchdog: the scheduler loop is stuck; not pinging systemd");
        }
        pthread_mutex_lock(&wd_mu);
        struct timespec ts;
        mono_deadline(&ts, (long)(wd_usec / 2 / 1000));
        while (!wd_stop && pthread_cond_timedwait(&wd_cv, &wd_mu, &ts) == 0) {}
    }
    pthread_mutex_unlock(&wd_mu);
    return NULL;
}

void notify_watchdog_start(int (*alive)(void *ud), void *ud) {
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
    wd_usec = usec;
    wd_alive = alive;
    wd_ud = ud;
    wd_stop = 0;
    if (mono_cond_init(&wd_cv) != 0) {
        log_error(NULL, "systemd watchdog: cannot set up its timer; not pinging");
        return;
    }
    if (pthread_create(&wd_thread, NULL, wd_main, NULL) == 0) {
        wd_running = 1;
        log_info(NULL, "systemd watchdog: pinging every %.1f s", usec / 2e6);
    }
}

void notify_watchdog_stop(void) {
    if (!wd_running) return;
    pthread_mutex_lock(&wd_mu);
    wd_stop = 1;
    pthread_cond_broadcast(&wd_cv);
    pthread_mutex_unlock(&wd_mu);
    pthread_join(wd_thread, NULL);
    pthread_cond_destroy(&wd_cv);
    wd_running = 0;
}
