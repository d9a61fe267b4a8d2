/* daemon/main.c — the `traind` entry: the daemon, and its subcommands
 *   traind worker …    one job (daemon/worker.c; started by the daemon)
 *   traind synth …     write a synthetic dataset (store/synth.c)
 *   traind import …    JPEG/PNG frames + labels -> a dataset directory (gpu/import.c)
 *   traind forward …   run a DINOv2 backbone on given pixels (gpu/forward.c)
 *   traind --version | --help
 *
 * The daemon: reads flags and the config file, opens the daemon context
 * (store, backends, residency, scheduler), starts the HTTP API, tells systemd
 * it is ready, and waits for SIGTERM/SIGINT. On a stop it stops accepting
 * requests, lets running workers checkpoint (SIGTERM; SIGKILL after the grace
 * period, extending systemd's stop timeout meanwhile), records their states
 * and exits 0.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/log.h"
#include "daemon/notify.h"
#include "daemon/sched.h"
#include "daemon/worker.h"
#include "gpu/forward.h"
#include "gpu/import.h"
#include "store/synth.h"

static int run_daemon(int argc, char **argv) {
    daemon_cfg_t cfg;
    char err[1024];
    int help = 0, version = 0;
    config_defaults(&cfg);
    if (config_parse_args(&cfg, argc, argv, &help, &version, err, sizeof err)) {
        fprintf(stderr, "traind: %s\n", err);
        return 2;
    }
    if (help) { config_usage(stdout); return 0; }
    if (version) { printf("traind %s\n", TRAIND_VERSION); return 0; }
    if (config_finish(&cfg, err, sizeof err)) {
        fprintf(stderr, "traind: %s\n", err);
        return 2;
    }

    /* workers log at the daemon's level (set before any thread exists) */
    static const char *const lvl[] = {"debug", "info", "warn", "error"};
    setenv("TRAIND_LOG_LEVEL", lvl[cfg.log_level < 0 ? 0 : cfg.log_level > 3 ? 3 : cfg.log_level], 1);

    /* Signals are handled by this thread alone (sigwait); every thread created
     * from here on inherits the blocked mask. Workers reset it before exec. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    notify_status("starting");
    daemon_t *d = daemon_create(&cfg, err, sizeof err);
    if (!d) {
        log_error(NULL, "cannot start: %s", err);
        return 1;
    }
    api_server_t *api = api_start(d, cfg.listen, err, sizeof err);
    if (!api) {
        log_error(NULL, "cannot start the HTTP API: %s", err);
        daemon_shutdown(d);
        daemon_destroy(d);
        return 1;
    }
    notify_ready();
    notify_watchdog_start(sched_alive, d->sched);
    log_info(NULL, "ready on %s", cfg.listen);

    int sig = 0;
    for (;;) {
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGHUP) {
            log_info(NULL, "SIGHUP ignored (restart the service to change its configuration)");
            continue;
        }
        break;
    }
    log_info(NULL, "received %s: stopping", strsignal(sig));
    notify_stopping();
    api_stop(api);                 /* stop accepting; SSE streams end */
    daemon_shutdown(d);            /* workers checkpoint and stop; states recorded */
    notify_watchdog_stop();
    daemon_destroy(d);
    log_info(NULL, "stopped");
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2) {
        if (!strcmp(argv[1], "worker")) return worker_main(argc - 1, argv + 1);
        if (!strcmp(argv[1], "synth")) return synth_main(argc - 1, argv + 1);
        if (!strcmp(argv[1], "import")) return import_main(argc - 1, argv + 1);
        if (!strcmp(argv[1], "forward")) return forward_main(argc - 1, argv + 1);
    }
    return run_daemon(argc - 1, argv + 1);
}
