/* store/par.h — n jobs side by side: job 0 on the calling thread, jobs 1..n-1
 * on threads of their own, and any whose thread cannot be started run in turn
 * on the calling thread. Returns when all are done; each job's results are in
 * its own struct, so they read the same however the jobs were spread. */
#ifndef TRAIND_PAR_H
#define TRAIND_PAR_H

#include <stddef.h>

#define PAR_MAX 64

/* fn(jobs + i * size) for i < n, 1 <= n <= PAR_MAX. */
void par_run(void *(*fn)(void *), void *jobs, size_t size, int n);

#endif
