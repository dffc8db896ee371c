/* Launches: a pool of host worker threads; DPU i always runs on worker i % nr_workers
 * (its saved globals may hold pointers into that worker's kernel instance). */
#include <stdio.h>
#include <stdlib.h>

#include "emu_internal.h"

static void *worker_loop(void *arg)
{
    struct emu_worker *w = arg;
    emu_worker_signal_stack();
    pthread_mutex_lock(&g_emu.lock);
    for (;;) {
        while (w->head == NULL)
            pthread_cond_wait(&w->wake, &g_emu.lock);
        struct dpu_t *d = w->head;
        w->head = d->queue_next;
        if (w->head == NULL)
            w->tail = NULL;
        pthread_mutex_unlock(&g_emu.lock);
        emu_run_dpu(d, w->id);
        pthread_mutex_lock(&g_emu.lock);
        d->running = false;
        if (d->awaited) { /* only a DPU someone waits for wakes the waiters */
            d->awaited = false;
            pthread_cond_broadcast(&g_emu.done);
        }
    }
    return NULL;
}

/** Starts the worker threads once (g_emu.lock held). */
static dpu_error_t start_workers_locked(void)
{
    if (g_emu.workers_started)
        return DPU_OK;
    emu_install_fault_handlers();
    for (uint32_t i = 0; i < g_emu.nr_workers; i++) {
        struct emu_worker *w = &g_emu.workers[i];
        w->id = i;
        pthread_cond_init(&w->wake, NULL);
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&w->thread, &attr, worker_loop, w);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            g_emu.nr_workers = i; /* keep the ones that started */
            if (i == 0)
                return DPU_ERR_SYSTEM;
            break;
        }
    }
    g_emu.workers_started = true;
    return DPU_OK;
}

static bool any_fault_locked(const struct dpu_set_t *set)
{
    uint64_t pos = 0;
    struct dpu_t *d;
    while ((d = emu_set_next(set, &pos)) != NULL) {
        if (d->fault)
            return true;
    }
    return false;
}

dpu_error_t dpu_launch(struct dpu_set_t dpu_set, dpu_launch_policy_t policy)
{
    struct emu_alloc *a = emu_set_alloc(&dpu_set);
    if (a == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    if (policy != DPU_SYNCHRONOUS && policy != DPU_ASYNCHRONOUS)
        return DPU_ERR_INVALID_LAUNCH_POLICY;
    pthread_mutex_lock(&g_emu.lock);
    dpu_error_t status = start_workers_locked();
    uint64_t pos = 0;
    struct dpu_t *d;
    while (status == DPU_OK && (d = emu_set_next(&dpu_set, &pos)) != NULL) {
        if (d->running)
            status = DPU_ERR_DPU_ALREADY_RUNNING;
        else if (d->program == NULL)
            status = DPU_ERR_NO_PROGRAM_LOADED;
    }
    if (status != DPU_OK) {
        pthread_mutex_unlock(&g_emu.lock);
        return status;
    }
    /* Workers are woken once all DPUs are queued. */
    pos = 0;
    while ((d = emu_set_next(&dpu_set, &pos)) != NULL) {
        if (d->worker >= g_emu.nr_workers)
            d->worker %= g_emu.nr_workers;
        struct emu_worker *w = &g_emu.workers[d->worker];
        d->running = true;
        d->fault = false;
        d->queue_next = NULL;
        if (w->tail != NULL)
            w->tail->queue_next = d;
        else
            w->head = d;
        w->tail = d;
    }
    for (uint32_t i = 0; i < g_emu.nr_workers; i++) {
        if (g_emu.workers[i].head != NULL)
            pthread_cond_signal(&g_emu.workers[i].wake);
    }
    if (policy == DPU_SYNCHRONOUS) {
        emu_wait_idle_locked(&dpu_set);
        status = any_fault_locked(&dpu_set) ? DPU_ERR_DPU_FAULT : DPU_OK;
    }
    pthread_mutex_unlock(&g_emu.lock);
    pthread_mutex_lock(&a->stats_lock);
    a->totals.launches++;
    pthread_mutex_unlock(&a->stats_lock);
    return status;
}

dpu_error_t dpu_status(struct dpu_set_t dpu_set, bool *done, bool *fault)
{
    if (emu_set_alloc(&dpu_set) == NULL || done == NULL || fault == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    bool all_done = true, any_fault = false;
    pthread_mutex_lock(&g_emu.lock);
    uint64_t pos = 0;
    struct dpu_t *d;
    while ((d = emu_set_next(&dpu_set, &pos)) != NULL) {
        if (d->running)
            all_done = false;
        else if (d->fault)
            any_fault = true;
    }
    pthread_mutex_unlock(&g_emu.lock);
    *done = all_done;
    *fault = any_fault;
    return DPU_OK;
}

dpu_error_t dpu_sync(struct dpu_set_t dpu_set)
{
    if (emu_set_alloc(&dpu_set) == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    pthread_mutex_lock(&g_emu.lock);
    emu_wait_idle_locked(&dpu_set);
    dpu_error_t status = any_fault_locked(&dpu_set) ? DPU_ERR_DPU_FAULT : DPU_OK;
    pthread_mutex_unlock(&g_emu.lock);
    return status;
}
