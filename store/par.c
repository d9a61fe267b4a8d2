/* store/par.c — see store/par.h. */
#include "store/par.h"

#include <assert.h>
#include <pthread.h>

void par_run(void *(*fn)(void *), void *jobs, size_t size, int n) {
    pthread_t th[PAR_MAX];
    int running[PAR_MAX] = {0};
    assert(n >= 1 && n <= PAR_MAX);
    for (int i = 1; i < n; i++) running[i] = pthread_create(&th[i], NULL, fn, (char *)jobs + (size_t)i * size) == 0;
    fn(jobs);
    for (int i = 1; i < n; i++) {
        if (running[i]) pthread_join(th[i], NULL);
        else fn((char *)jobs + (size_t)i * size);   /* no thread: this one does it */
    }
}
