/* Persistent helper threads with a caller that never waits for a sleeping helper (work_pool.h).
 *
 * Why not an OpenMP team: on the shared 2-vCPU VMs the implicit barrier at the end of a parallel
 * region waits for every team thread, including one another process has descheduled; measured,
 * a 33k-lookup batch then took 4-15 ms instead of 0.2 ms. Here a job is a range of items and
 * a 64-bit claim word, (generation << 32) | next item; claiming is a compare-and-swap that fails
 * once the generation moved on, so a helper that wakes late can neither take an item of the
 * next job nor make the caller wait for it. The caller waits only for items already claimed.
 */
#define _GNU_SOURCE
#include "work_pool.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#include <sched.h>
#endif

#define MAX_HELPERS 63
/* How long a helper polls for the next job before parking (work_pool_set_helper_spin), and how
 * long the caller polls for claimed items to finish before sleeping. A parked helper is slow to
 * come back on these VMs (its vCPU halts): with calls some tens of us apart, a 30 us spin gave
 * 100 M lookups/s at B=1024, pooling 20-80, 200 us gave 118 and 2 ms 127 (OpenMP, which spins
 * for milliseconds: 130). Still short: a spinning thread takes a core from everyone else. */
#define CALLER_SPIN_NS 50000
/* A claimed item still running this long after the caller ran out of items (beyond a few of
 * the caller's own item times) means its helper lost its core to another process; the next
 * calls then run on the caller alone (STALL_BACKOFF_MIN calls, doubling while stalls repeat),
 * since waiting out a scheduler time slice (~4 ms) costs more than the second core saves. */
#define STALL_NS 500000
#define STALL_BACKOFF_MIN 4
#define STALL_BACKOFF_MAX 256

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;   /* guards the job and helper state */
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;     /* new job, hold released, shutdown */
static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static _Atomic int64_t helper_spin_ns = 200000;

static pthread_t helpers[MAX_HELPERS];
static int n_helpers;
static int shutting_down;
static int hold;

/* The current job, written under `lock`; job_gen is also polled without it. */
static _Atomic uint32_t job_gen;
static work_pool_fn job_fn;
static void *job_ctx;
static uint32_t job_items;
static int job_helpers;

static _Atomic uint64_t claim;          /* (generation << 32) | next unclaimed item */
static _Atomic uint32_t done;           /* items of the current job finished (futex word) */
static _Atomic int caller_sleeping;

/* Stall back-off, guarded by run_lock. */
static int serial_calls_left;
static int backoff_calls;
static _Atomic int64_t stat_parallel, stat_stalled, stat_backed_off;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Next item of job `gen`, or -1 when it has none left or is no longer the current job. */
static inline int64_t claim_item(uint32_t gen, uint32_t n)
{
    uint64_t c = atomic_load(&claim);
    for (;;) {
        if ((uint32_t)(c >> 32) != gen || (uint32_t)c >= n) return -1;
        if (atomic_compare_exchange_weak(&claim, &c, c + 1)) return (int64_t)(uint32_t)c;
    }
}

/* Count one finished item; the last one wakes a caller that went to sleep. An item is only
 * finished before its job's caller returns, so `done` still belongs to this job here. */
static inline void finish_item(uint32_t n)
{
    if (atomic_fetch_add(&done, 1) + 1 == n && atomic_load(&caller_sleeping)) {
#ifdef __linux__
        syscall(SYS_futex, &done, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
#endif
    }
}

static void wait_all_done(uint32_t n)
{
    const int64_t spin_until = now_ns() + CALLER_SPIN_NS;
    uint32_t d;
    while ((d = atomic_load(&done)) != n) {
        if (now_ns() < spin_until) {
            cpu_relax();
            continue;
        }
        /* Set the flag before re-reading `done` (both seq_cst): either finish_item sees the
         * flag and wakes us, or we see its increment and do not sleep. */
        atomic_store(&caller_sleeping, 1);
        d = atomic_load(&done);
        if (d == n) break;
#ifdef __linux__
        syscall(SYS_futex, &done, FUTEX_WAIT_PRIVATE, d, NULL, NULL, 0);
#else
        sched_yield();
#endif
    }
}

static void *helper_main(void *arg)
{
    const int me = (int)(intptr_t)arg;
    /* Generation 0 is never a job: a new helper looks at whatever job is current (claiming
     * from a finished one simply fails). */
    uint32_t seen = 0;
    for (;;) {
        const int64_t spin_until = now_ns() + atomic_load_explicit(&helper_spin_ns, memory_order_relaxed);
        while (atomic_load_explicit(&job_gen, memory_order_relaxed) == seen && now_ns() < spin_until)
            cpu_relax();
        pthread_mutex_lock(&lock);
        while (!shutting_down && (atomic_load(&job_gen) == seen || hold))
            pthread_cond_wait(&wake, &lock);
        if (shutting_down) {
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        seen = atomic_load(&job_gen);
        const work_pool_fn fn = job_fn;
        void *const ctx = job_ctx;
        const uint32_t n = job_items;
        const int mine = me < job_helpers;
        pthread_mutex_unlock(&lock);
        if (!mine) continue;
        for (int64_t i; (i = claim_item(seen, n)) >= 0;) {
            fn(ctx, i);
            finish_item(n);
        }
    }
}

/* In the child of fork() only the forking thread exists: forget the parent's helpers and
 * start from scratch (helpers are created again on the next job). */
static void prepare_fork(void) { pthread_mutex_lock(&lock); }
static void parent_after_fork(void) { pthread_mutex_unlock(&lock); }
static void child_after_fork(void)
{
    const pthread_mutex_t fresh_mutex = PTHREAD_MUTEX_INITIALIZER;
    const pthread_cond_t fresh_cond = PTHREAD_COND_INITIALIZER;
    lock = fresh_mutex;
    run_lock = fresh_mutex;
    wake = fresh_cond;
    n_helpers = 0;
    shutting_down = 0;
    hold = 0;
    serial_calls_left = 0;
    backoff_calls = 0;
    /* A job another parent thread was running is gone with that thread: close it. */
    job_items = 0;
    atomic_store(&claim, ((uint64_t)atomic_load(&job_gen) << 32) | UINT32_MAX);
}

static void register_fork_handlers(void)
{
    pthread_atfork(prepare_fork, parent_after_fork, child_after_fork);
}

/* Start helpers until there are `want` (fewer if the system refuses threads). Holds `lock`. */
static void ensure_helpers(int want)
{
    if (want > MAX_HELPERS) want = MAX_HELPERS;
    if (n_helpers >= want) return;
    /* Helpers run no Python: keep every signal for the interpreter's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (n_helpers < want
           && pthread_create(&helpers[n_helpers], NULL, helper_main, (void *)(intptr_t)n_helpers) == 0)
        ++n_helpers;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static int64_t run_serially(int64_t n_items, work_pool_fn fn, void *ctx)
{
    for (int64_t i = 0; i < n_items; ++i) fn(ctx, i);
    return n_items;
}

int64_t work_pool_run(int threads, int64_t n_items, work_pool_fn fn, void *ctx)
{
    if (threads <= 1 || n_items < 2 || n_items >= UINT32_MAX || pthread_mutex_trylock(&run_lock) != 0)
        /* Serial request, nothing to share, or another thread's job is running. */
        return run_serially(n_items, fn, ctx);
    if (serial_calls_left > 0) {
        --serial_calls_left;
        atomic_fetch_add(&stat_backed_off, 1);
        pthread_mutex_unlock(&run_lock);
        return run_serially(n_items, fn, ctx);
    }
    pthread_once(&once, register_fork_handlers);
    const uint32_t n = (uint32_t)n_items;
    pthread_mutex_lock(&lock);
    ensure_helpers(threads - 1);
    uint32_t gen = atomic_load(&job_gen) + 1;
    if (gen == 0) gen = 1;
    job_fn = fn;
    job_ctx = ctx;
    job_items = n;
    job_helpers = threads - 1;
    atomic_store(&done, 0);
    atomic_store(&caller_sleeping, 0);
    atomic_store(&claim, (uint64_t)gen << 32);
    atomic_store(&job_gen, gen);
    pthread_mutex_unlock(&lock);
    pthread_cond_broadcast(&wake);

    int64_t mine = 0;
    const int64_t start = now_ns();
    for (int64_t i; (i = claim_item(gen, n)) >= 0; ++mine) {
        fn(ctx, i);
        finish_item(n);
    }
    const int64_t ran_out = now_ns();
    wait_all_done(n);
    const int64_t item_ns = mine ? (ran_out - start) / mine : 0;
    atomic_fetch_add(&stat_parallel, 1);
    if (now_ns() - ran_out > STALL_NS + 4 * item_ns) {
        atomic_fetch_add(&stat_stalled, 1);
        backoff_calls = backoff_calls ? backoff_calls * 2 : STALL_BACKOFF_MIN;
        if (backoff_calls > STALL_BACKOFF_MAX) backoff_calls = STALL_BACKOFF_MAX;
        serial_calls_left = backoff_calls;
    } else {
        backoff_calls = 0;
    }
    pthread_mutex_unlock(&run_lock);
    return mine;
}

void work_pool_set_helper_spin(int64_t ns) { atomic_store(&helper_spin_ns, ns > 0 ? ns : 0); }

void work_pool_hold_helpers(int on)
{
    pthread_mutex_lock(&lock);
    hold = on;
    pthread_mutex_unlock(&lock);
    pthread_cond_broadcast(&wake);
}

void work_pool_stats(int64_t *parallel, int64_t *stalled, int64_t *backed_off)
{
    *parallel = atomic_load(&stat_parallel);
    *stalled = atomic_load(&stat_stalled);
    *backed_off = atomic_load(&stat_backed_off);
}

int work_pool_helpers(void)
{
    pthread_mutex_lock(&lock);
    const int n = n_helpers;
    pthread_mutex_unlock(&lock);
    return n;
}

/* At exit, let parked helpers return and join them, so that nothing runs during unloading. */
__attribute__((destructor)) static void stop_helpers(void)
{
    pthread_mutex_lock(&lock);
    shutting_down = 1;
    const int n = n_helpers;
    n_helpers = 0;
    pthread_mutex_unlock(&lock);
    pthread_cond_broadcast(&wake);
    for (int k = 0; k < n; ++k) pthread_join(helpers[k], NULL);
}
