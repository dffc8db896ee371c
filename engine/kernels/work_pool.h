/* A small persistent pool of helper threads that never makes its caller wait for a thread
 * that is not running.
 *
 * work_pool_run() runs items 0 .. n_items-1 of a job: the calling thread and up to
 * (threads - 1) helpers claim items one at a time from a shared counter. The caller returns
 * once every item is done; it waits only for items a helper has already claimed (and is
 * running), never for a helper to wake up, so a helper descheduled by another process on a
 * shared machine costs nothing: the caller simply runs the items itself.
 *
 * A helper can still be descheduled in the middle of an item it claimed; when the caller had
 * to wait long for one, the next few calls run on the caller alone (back-off, see
 * work_pool.c), as the other process is likely to keep that core.
 *
 * Helpers are created on first use (again after fork(), whose child has none) and park on a
 * condition variable after a short spin. Calls from several threads at once are safe: a call
 * that finds the pool busy runs its items on its own thread.
 */
#ifndef UPDLRM_WORK_POOL_H
#define UPDLRM_WORK_POOL_H

#include <stdint.h>

typedef void (*work_pool_fn)(void *ctx, int64_t item);

/* Run fn(ctx, i) for every i in [0, n_items) on the caller and up to threads - 1 helpers.
 * Returns how many items the calling thread ran itself. */
int64_t work_pool_run(int threads, int64_t n_items, work_pool_fn fn, void *ctx);

/* How long a helper polls for the next job after finishing one before it parks (ns). */
void work_pool_set_helper_spin(int64_t ns);

/* Test hook: while held (hold != 0), helpers that wake for a job stop before claiming any
 * item, as if descheduled; releasing lets them go on (they find the job gone or finished). */
void work_pool_hold_helpers(int hold);

/* Since the process started: calls shared with helpers, how many of them waited long for a
 * descheduled helper, and calls run on the caller alone because of such a stall (back-off). */
void work_pool_stats(int64_t *parallel, int64_t *stalled, int64_t *backed_off);

/* Helper threads currently alive in this process. */
int work_pool_helpers(void);

#endif
