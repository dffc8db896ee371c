/* Tasklets: NR_TASKLETS coroutines per DPU on one host worker thread, scheduled round-robin
 * and deterministically. A tasklet gives way at every MRAM DMA and synchronisation call, so
 * tasklets really interleave (a kernel that is only correct when tasklets run one after
 * another fails). The runtime functions called by kernels (__dpu_emu_*) live here. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "emu_internal.h"
#include "../dpurte/barrier.h"

#ifdef EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define EMU_VALGRIND 1
#endif
#endif

#define EMU_TASKLET_STACK (256u << 10) /* host stack of a tasklet (gcc code needs more than the DPU's) */
#define EMU_GUARD_PAGE 4096u

/* ---- context switch ---- */

#if defined(__x86_64__) && !defined(DPU_EMU_UCONTEXT)
/* Saves the callee-saved registers on the current stack, stores the stack pointer in *save and
 * continues on `load`. No signal mask (no system call) and no MXCSR / x87 control word: all
 * tasklets of a worker share the host's floating-point environment (DPU code has no FPU state
 * to change; ldmxcsr/fldcw would cost more than the rest of the switch). */
void dpu_emu_ctx_switch(void **save, void *load);
void dpu_emu_ctx_trampoline(void);
__asm__(".text\n"
        ".globl dpu_emu_ctx_switch\n"
        ".hidden dpu_emu_ctx_switch\n"
        ".type dpu_emu_ctx_switch,@function\n"
        "dpu_emu_ctx_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size dpu_emu_ctx_switch, .-dpu_emu_ctx_switch\n"
        ".globl dpu_emu_ctx_trampoline\n"
        ".hidden dpu_emu_ctx_trampoline\n"
        ".type dpu_emu_ctx_trampoline,@function\n"
        "dpu_emu_ctx_trampoline:\n"
        "    movq %r12, %rdi\n"
        "    callq *%r13\n"
        "    ud2\n"
        ".size dpu_emu_ctx_trampoline, .-dpu_emu_ctx_trampoline\n");
#define EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

enum tasklet_state { T_RUNNABLE, T_BARRIER, T_MUTEX, T_SEM, T_FLAG, T_DONE };

struct tasklet {
    void *sp;
#ifndef EMU_ASM_SWITCH
    ucontext_t uc;
#endif
    uint8_t *stack; /* usable stack (above the guard page) */
    uint32_t id;
    enum tasklet_state state;
    const void *wait_object;
    uint32_t wait_generation;
    bool woken;
    struct dpu_emu_dma_counters counters;
};

/** Per worker thread: the DPU being run and its tasklets. */
struct emu_ctx {
    struct dpu_t *dpu;
    const struct dpu_program_t *program;
    uint8_t *mram;
    uintptr_t noinit_lo, mram_lo; /* live addresses of the kernel's MRAM sections in this instance */
    uint32_t nr_tasklets;
    uint32_t current;
    bool faulted;
    struct tasklet tasklets[EMU_MAX_TASKLETS];
    uint8_t *stacks[EMU_MAX_TASKLETS];
    void *sched_sp;
#ifndef EMU_ASM_SWITCH
    ucontext_t sched_uc;
#endif
#ifdef EMU_ASAN
    const void *sched_bottom;
    size_t sched_size;
#endif
    int8_t handshake_waiter[EMU_MAX_TASKLETS]; /* tasklet waiting for notifier i, or -1 */
    bool handshake_notifying[EMU_MAX_TASKLETS];
    volatile sig_atomic_t in_tasklet; /* a tasklet (not the scheduler) runs on this thread */
    char signal_message[256];         /* set by the fault signal handler, logged by the scheduler */
};

/* initial-exec: no __tls_get_addr call on every runtime call (one pointer of static TLS) */
static __thread struct emu_ctx *tls_ctx __attribute__((tls_model("initial-exec")));

static struct emu_ctx *ctx(void)
{
    struct emu_ctx *c = tls_ctx;
    if (c == NULL || c->dpu == NULL) {
        fprintf(stderr, "dpu emulator: a DPU runtime function was called outside a DPU kernel\n");
        abort();
    }
    return c;
}

static void tasklet_main(struct tasklet *t);

#ifdef EMU_ASM_SWITCH
static void prepare_context(struct emu_ctx *c, struct tasklet *t)
{
    (void)c;
    uint64_t *top = (uint64_t *)((uintptr_t)(t->stack + EMU_TASKLET_STACK) & ~(uintptr_t)15);
    uint64_t *sp = top - 7; /* after the final `ret` the stack is 16-byte aligned again */
    sp[0] = 0;                                  /* r15 */
    sp[1] = 0;                                  /* r14 */
    sp[2] = (uint64_t)(uintptr_t)tasklet_main;  /* r13: entry */
    sp[3] = (uint64_t)(uintptr_t)t;             /* r12: its argument */
    sp[4] = 0;                                  /* rbx */
    sp[5] = 0;                                  /* rbp */
    sp[6] = (uint64_t)(uintptr_t)dpu_emu_ctx_trampoline;
    t->sp = sp;
}
#define SWITCH_TO_TASKLET(c, t) dpu_emu_ctx_switch(&(c)->sched_sp, (t)->sp)
#define SWITCH_TO_SCHED(c, t) dpu_emu_ctx_switch(&(t)->sp, (c)->sched_sp)
#define SWITCH_BETWEEN(from, to) dpu_emu_ctx_switch(&(from)->sp, (to)->sp)
#else
static void ucontext_entry(unsigned int hi, unsigned int lo)
{
    tasklet_main((struct tasklet *)(((uintptr_t)hi << 32) | lo));
}

static void prepare_context(struct emu_ctx *c, struct tasklet *t)
{
    getcontext(&t->uc);
    t->uc.uc_stack.ss_sp = t->stack;
    t->uc.uc_stack.ss_size = EMU_TASKLET_STACK;
    t->uc.uc_link = &c->sched_uc;
    uintptr_t p = (uintptr_t)t;
    makecontext(&t->uc, (void (*)(void))ucontext_entry, 2, (unsigned int)(p >> 32), (unsigned int)p);
}
#define SWITCH_TO_TASKLET(c, t) swapcontext(&(c)->sched_uc, &(t)->uc)
#define SWITCH_TO_SCHED(c, t) swapcontext(&(t)->uc, &(c)->sched_uc)
#define SWITCH_BETWEEN(from, to) swapcontext(&(from)->uc, &(to)->uc)
#endif

/** Switches from the running tasklet to the scheduler; returns when scheduled again. */
static void to_scheduler(struct emu_ctx *c, struct tasklet *t, bool exiting)
{
#ifdef EMU_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(exiting ? NULL : &fake, c->sched_bottom, c->sched_size);
#else
    (void)exiting;
#endif
    SWITCH_TO_SCHED(c, t);
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

static void to_tasklet(struct emu_ctx *c, struct tasklet *t)
{
#ifdef EMU_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, t->stack, EMU_TASKLET_STACK);
#endif
    SWITCH_TO_TASKLET(c, t);
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

/** Switches straight from tasklet `from` to tasklet `to` (no scheduler round trip). */
static void between_tasklets(struct tasklet *from, struct tasklet *to, bool exiting)
{
#ifdef EMU_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(exiting ? NULL : &fake, to->stack, EMU_TASKLET_STACK);
#else
    (void)exiting;
#endif
    SWITCH_BETWEEN(from, to);
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

static void switch_away(struct emu_ctx *c, struct tasklet *t, bool exiting);

static void tasklet_main(struct tasklet *t)
{
    struct emu_ctx *c = tls_ctx;
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    c->program->copies[c->dpu->worker].info->main();
    t->state = T_DONE;
    switch_away(c, t, true);
    abort(); /* a finished tasklet is never resumed */
}

/* ---- faults and scheduling ---- */

static __attribute__((noreturn)) void fault(struct emu_ctx *c, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void fault(struct emu_ctx *c, const char *format, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(text, sizeof(text), format, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(text))
        n = sizeof(text) - 1;
    emu_log_printf(c->dpu, true, "[DPU fault] tasklet %u: %.*s\n", c->current, n, text);
    c->faulted = true;
    struct tasklet *t = &c->tasklets[c->current];
    for (;;)
        to_scheduler(c, t, false); /* the DPU stops: the scheduler never resumes a faulted DPU */
}

static bool ready(const struct tasklet *t);

/** Leaves tasklet `t` (its state already set) for the next ready tasklet in round-robin order;
 * returns when `t` runs again. With no tasklet ready (all done, or a deadlock) control goes
 * back to the scheduler, which sorts it out. */
static void switch_away(struct emu_ctx *c, struct tasklet *t, bool exiting)
{
    uint32_t n = c->nr_tasklets;
    for (uint32_t k = 1; k <= n; k++) {
        uint32_t i = t->id + k < n ? t->id + k : t->id + k - n;
        struct tasklet *next = &c->tasklets[i];
        if (!ready(next))
            continue;
        next->state = T_RUNNABLE;
        if (next == t)
            return; /* the only one ready: keep going */
        c->current = i;
        between_tasklets(t, next, exiting);
        c->current = t->id;
        return;
    }
    to_scheduler(c, t, exiting);
}

/** Gives way to the next tasklet (round-robin). */
static void yield(struct emu_ctx *c)
{
    struct tasklet *t = &c->tasklets[c->current];
    t->state = T_RUNNABLE;
    switch_away(c, t, false);
}

static void block(struct emu_ctx *c, enum tasklet_state state, const void *object, uint32_t generation)
{
    struct tasklet *t = &c->tasklets[c->current];
    t->state = state;
    t->wait_object = object;
    t->wait_generation = generation;
    switch_away(c, t, false);
}

static bool ready(const struct tasklet *t)
{
    switch (t->state) {
    case T_RUNNABLE:
        return true;
    case T_BARRIER:
        return ((const barrier_t *)t->wait_object)->generation != t->wait_generation;
    case T_MUTEX:
        return *(const uint8_t *)t->wait_object == 0;
    case T_SEM:
        return *(const int32_t *)t->wait_object > 0;
    case T_FLAG:
        return t->woken;
    case T_DONE:
        return false;
    }
    return false;
}

static uint8_t *stack_for(struct emu_ctx *c, uint32_t i)
{
    if (c->stacks[i] == NULL) {
        uint8_t *m = mmap(NULL, EMU_TASKLET_STACK + EMU_GUARD_PAGE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        mprotect(m, EMU_GUARD_PAGE, PROT_NONE); /* a stack overflow faults instead of corrupting */
        c->stacks[i] = m + EMU_GUARD_PAGE;
#ifdef EMU_VALGRIND
        VALGRIND_STACK_REGISTER(c->stacks[i], c->stacks[i] + EMU_TASKLET_STACK);
#endif
    }
    return c->stacks[i];
}

static struct emu_ctx *worker_ctx(void)
{
    if (tls_ctx == NULL) {
        tls_ctx = calloc(1, sizeof(*tls_ctx)); /* one per worker thread, kept for its lifetime */
        if (tls_ctx == NULL)
            abort();
    }
    return tls_ctx;
}

static void run_tasklets(struct emu_ctx *c)
{
    uint32_t n = c->nr_tasklets;
    for (uint32_t i = 0; i < n; i++) {
        struct tasklet *t = &c->tasklets[i];
        memset(t, 0, sizeof(*t));
        t->id = i;
        t->stack = stack_for(c, i);
        if (t->stack == NULL) {
            emu_log_printf(c->dpu, true, "[DPU fault] emulator: cannot allocate tasklet stacks\n");
            c->faulted = true;
            return;
        }
#ifdef EMU_ASAN
        ASAN_UNPOISON_MEMORY_REGION(t->stack, EMU_TASKLET_STACK); /* left-overs of a faulted run */
#endif
        prepare_context(c, t);
        c->handshake_waiter[i] = -1;
        c->handshake_notifying[i] = false;
    }
#ifdef EMU_ASAN
    if (c->sched_bottom == NULL) {
        pthread_attr_t attr;
        void *addr;
        size_t size;
        if (pthread_getattr_np(pthread_self(), &attr) == 0) {
            if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
                c->sched_bottom = addr;
                c->sched_size = size;
            }
            pthread_attr_destroy(&attr);
        }
    }
#endif
    c->current = n - 1;
    for (;;) {
        uint32_t alive = 0, next = UINT32_MAX;
        for (uint32_t k = 1; k <= n; k++) {
            uint32_t i = (c->current + k) % n;
            struct tasklet *t = &c->tasklets[i];
            if (t->state == T_DONE)
                continue;
            alive++;
            if (next == UINT32_MAX && ready(t))
                next = i;
        }
        if (alive == 0)
            return;
        if (next == UINT32_MAX) {
            emu_log_printf(c->dpu, true, "[DPU fault] deadlock: %u tasklet(s) blocked for ever\n", alive);
            c->faulted = true;
            return;
        }
        c->current = next;
        c->tasklets[next].state = T_RUNNABLE;
        c->in_tasklet = 1;
        to_tasklet(c, &c->tasklets[next]);
        c->in_tasklet = 0;
        if (c->signal_message[0] != '\0') {
            emu_log_append(c->dpu, c->signal_message, strlen(c->signal_message), true);
            c->signal_message[0] = '\0';
        }
        if (c->faulted)
            return;
    }
}

void emu_run_dpu(struct dpu_t *dpu, uint32_t worker)
{
    struct emu_ctx *c = worker_ctx();
    struct dpu_program_t *p = dpu->program;
    char err[512];
    const struct emu_kernel_copy *copy = emu_program_copy(p, worker, err, sizeof(err));
    dpu->log_len = 0; /* the boot clears the DPU's stdout state */
    dpu->log_truncated = false;
    dpu->perf_cycles = 0;
    dpu->perf_base = 0;
    if (copy == NULL) {
        emu_log_printf(dpu, true, "[DPU fault] emulator: %s\n", err);
        dpu->fault = true;
        return;
    }
    if (dpu->last_tasklets == NULL)
        dpu->last_tasklets = calloc(EMU_MAX_TASKLETS, sizeof(*dpu->last_tasklets));

    emu_image_transfer(p, copy, dpu->image != NULL ? dpu->image : copy->pristine, true);
    c->dpu = dpu;
    c->program = p;
    c->mram = dpu->mram;
    c->noinit_lo = copy->base + p->noinit_addr;
    c->mram_lo = copy->base + p->mram_addr;
    c->nr_tasklets = p->nr_tasklets;
    c->faulted = false;
    run_tasklets(c);

    if (dpu->image == NULL)
        dpu->image = malloc(p->image_size + 1);
    if (dpu->image != NULL)
        emu_image_transfer(p, copy, dpu->image, false);
    dpu->fault = c->faulted;
    memset(&dpu->last_total, 0, sizeof(dpu->last_total));
    for (uint32_t i = 0; i < c->nr_tasklets; i++) {
        const struct dpu_emu_dma_counters *tc = &c->tasklets[i].counters;
        if (dpu->last_tasklets != NULL)
            dpu->last_tasklets[i] = *tc;
        dpu->last_total.read_calls += tc->read_calls;
        dpu->last_total.read_bytes += tc->read_bytes;
        dpu->last_total.write_calls += tc->write_calls;
        dpu->last_total.write_bytes += tc->write_bytes;
        dpu->last_total.modelled_cycles += tc->modelled_cycles;
    }
    dpu->last_nr_tasklets = c->nr_tasklets;
    dpu->counters.launches++;
    dpu->counters.dma.read_calls += dpu->last_total.read_calls;
    dpu->counters.dma.read_bytes += dpu->last_total.read_bytes;
    dpu->counters.dma.write_calls += dpu->last_total.write_calls;
    dpu->counters.dma.write_bytes += dpu->last_total.write_bytes;
    dpu->counters.dma.modelled_cycles += dpu->last_total.modelled_cycles;
    c->dpu = NULL;
}

/* ---- memory faults in kernel code ---- */

/* A SIGSEGV/SIGBUS raised by a tasklet (a stray pointer, a direct MRAM dereference, a stack
 * overflow into the guard page) stops that DPU with a fault instead of the host process. Other
 * faults go to the handler that was installed before (Python's faulthandler, ASan, default). */
static struct sigaction g_previous_segv, g_previous_bus;

static void chain_fault_signal(int sig, siginfo_t *info, void *uc)
{
    const struct sigaction *previous = sig == SIGSEGV ? &g_previous_segv : &g_previous_bus;
    if ((previous->sa_flags & SA_SIGINFO) && previous->sa_sigaction != NULL) {
        previous->sa_sigaction(sig, info, uc);
        return;
    }
    if (!(previous->sa_flags & SA_SIGINFO) && previous->sa_handler != SIG_DFL && previous->sa_handler != SIG_IGN) {
        previous->sa_handler(sig);
        return;
    }
    signal(sig, SIG_DFL); /* the faulting instruction runs again and ends the process */
}

static void on_fault_signal(int sig, siginfo_t *info, void *uc)
{
    struct emu_ctx *c = tls_ctx;
    if (c == NULL || c->dpu == NULL || !c->in_tasklet || c->faulted) {
        chain_fault_signal(sig, info, uc);
        return;
    }
    struct tasklet *t = &c->tasklets[c->current];
    uintptr_t address = (uintptr_t)info->si_addr;
    const char *why = "invalid host memory access";
    if (address + EMU_GUARD_PAGE >= (uintptr_t)t->stack && address < (uintptr_t)t->stack)
        why = "tasklet stack overflow";
    else if (address - DPU_EMU_MRAM_BASE < EMU_MRAM_WINDOW)
        why = "direct access to an MRAM address (the emulator only moves MRAM data with mram_read/mram_write)";
    /* no allocation here: the fault may have hit inside malloc */
    snprintf(c->signal_message, sizeof(c->signal_message), "[DPU fault] tasklet %u: %s (signal %d at address %p)\n",
             c->current, why, sig, info->si_addr);
    c->faulted = true;
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, sig);
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL); /* the handler is left by a context switch */
    to_scheduler(c, t, true);
}

void emu_install_fault_handlers(void)
{
    const char *env = getenv("DPU_EMU_CATCH_FAULTS");
    if (env != NULL && strcmp(env, "0") == 0)
        return;
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = on_fault_signal;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &g_previous_segv);
    sigaction(SIGBUS, &action, &g_previous_bus);
}

void emu_worker_signal_stack(void)
{
    /* a tasklet that overflows its stack needs another one to run the handler on */
    size_t size = 64u << 10;
    void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stack == MAP_FAILED)
        return;
    stack_t ss;
    memset(&ss, 0, sizeof(ss));
    ss.ss_sp = stack;
    ss.ss_size = size;
    if (sigaltstack(&ss, NULL) != 0)
        munmap(stack, size);
}

/* ---- runtime functions called by kernels ---- */

uint32_t __dpu_emu_me(void) { return ctx()->current; }

void __dpu_emu_halt(void) { fault(ctx(), "halt()"); }

int __dpu_emu_check_stack(void)
{
    /* Not modelled: gcc frames differ from the DPU's. Reports the tasklet's full budget. */
    return (int)(ctx()->program->stack_size / 4);
}

uint32_t __dpu_emu_mram_heap_pointer(void) { return DPU_EMU_MRAM_BASE + ctx()->program->heap_offset; }

/** MRAM offset of a kernel MRAM address, or -1. MRAM addresses are __mram variables (and
 * pointers past their end: dpu_mram_noinit sits at MRAM offset 0 and dpu_mram after it, so
 * `&array[i]` beyond the array reaches the following MRAM as on the DPU) or 32-bit MRAM
 * addresses; up to 64 MiB past the MRAM's end they count as MRAM addresses, to be reported as
 * out of bounds. machine.c keeps that window free of host mappings where the system allows. */
static int64_t mram_offset(const struct emu_ctx *c, const void *address)
{
    uintptr_t a = (uintptr_t)address;
    const struct dpu_program_t *p = c->program;
    if (a - c->noinit_lo < p->noinit_size)
        return (int64_t)(a - c->noinit_lo);
    if (a - c->mram_lo < p->mram_size)
        return (int64_t)(p->mram_offset + (a - c->mram_lo));
    if (a - DPU_EMU_MRAM_BASE < EMU_MRAM_WINDOW)
        return (int64_t)(a - DPU_EMU_MRAM_BASE);
    /* past the end of a section: relative to the nearest section start below the address */
    bool after_mram = p->mram_size > 0 && a >= c->mram_lo && a - c->mram_lo < EMU_MRAM_SIZE - p->mram_offset;
    bool after_noinit = p->noinit_size > 0 && a >= c->noinit_lo && a - c->noinit_lo < EMU_MRAM_SIZE;
    if (after_mram && (!after_noinit || c->mram_lo > c->noinit_lo))
        return (int64_t)(p->mram_offset + (a - c->mram_lo));
    if (after_noinit)
        return (int64_t)(a - c->noinit_lo);
    return -1;
}

static uint8_t *dma_check(struct emu_ctx *c, const char *what, const void *mram, const void *wram, unsigned int n)
{
    int64_t off = mram_offset(c, mram);
    if (off < 0)
        fault(c, "%s of %u bytes: %p is not an MRAM address", what, n, mram);
    uint32_t address = DPU_EMU_MRAM_BASE + (uint32_t)off;
    if (n < 8 || n > 2048 || n % 8 != 0)
        fault(c, "%s at MRAM address 0x%08x: size %u bytes (must be 8..2048, a multiple of 8)", what, address, n);
    if (off % 8 != 0)
        fault(c, "%s of %u bytes: MRAM address 0x%08x not 8-byte aligned", what, n, address);
    if ((uintptr_t)wram % 8 != 0)
        fault(c, "%s of %u bytes at MRAM address 0x%08x: WRAM address %p not 8-byte aligned", what, n, address, wram);
    if ((uint64_t)off + n > EMU_MRAM_SIZE)
        fault(c, "%s of %u bytes: MRAM address 0x%08x beyond the 64 MiB MRAM", what, n, address);
    return c->mram + off;
}

static void prefetch(const uint8_t *p, unsigned int n, int for_write)
{
    for (unsigned int i = 0; i < n; i += 64) {
        if (for_write)
            __builtin_prefetch(p + i, 1);
        else
            __builtin_prefetch(p + i, 0);
    }
}

static void count_dma(struct emu_ctx *c, unsigned int n, bool write)
{
    struct dpu_emu_dma_counters *tc = &c->tasklets[c->current].counters;
    uint64_t cycles = (write ? EMU_DMA_ALPHA_WRITE : EMU_DMA_ALPHA_READ) + n / 2;
    if (write) {
        tc->write_calls++;
        tc->write_bytes += n;
    } else {
        tc->read_calls++;
        tc->read_bytes += n;
    }
    tc->modelled_cycles += cycles;
    c->dpu->perf_cycles += cycles;
}

/* A DMA is checked when issued and its data moves when the tasklet resumes, after the other
 * tasklets had their turn (as on the DPU, where it completes while they run); the prefetch
 * lets the host overlap the memory accesses of all tasklets' DMAs. A read gives way once more
 * after its data landed: other tasklets' DMAs then land too before the data is used, which is
 * what breaks kernels that share a WRAM buffer between tasklets. */
void __dpu_emu_mram_read(const void *from, void *to, unsigned int nb_of_bytes)
{
    struct emu_ctx *c = ctx();
    const uint8_t *src = dma_check(c, "mram_read", from, to, nb_of_bytes);
    prefetch(src, nb_of_bytes, 0);
    count_dma(c, nb_of_bytes, false);
    yield(c);
    memcpy(to, src, nb_of_bytes);
    yield(c);
}

void __dpu_emu_mram_write(const void *from, void *to, unsigned int nb_of_bytes)
{
    struct emu_ctx *c = ctx();
    uint8_t *dst = dma_check(c, "mram_write", to, from, nb_of_bytes);
    prefetch(dst, nb_of_bytes, 1);
    count_dma(c, nb_of_bytes, true);
    yield(c);
    memcpy(dst, from, nb_of_bytes);
}

void *__dpu_emu_mem_alloc(uint32_t size)
{
    struct emu_ctx *c = ctx();
    struct dpu_t *d = c->dpu;
    uint32_t capacity = c->program->wram_heap_size;
    uint64_t start = ((uint64_t)d->heap_used + 7) & ~(uint64_t)7;
    if (start + size > capacity)
        fault(c, "mem_alloc(%u): WRAM heap exhausted (%u of %u bytes used)", size, d->heap_used, capacity);
    d->heap_used = (uint32_t)(start + size);
    return d->heap + start;
}

void *__dpu_emu_mem_reset(void)
{
    struct emu_ctx *c = ctx();
    c->dpu->heap_used = 0;
    return c->dpu->heap;
}

void __dpu_emu_barrier_wait(void *object)
{
    struct emu_ctx *c = ctx();
    barrier_t *b = object;
    if (b->count == 0 || b->count > b->initial_count)
        fault(c, "barrier_wait on a barrier that was not initialised with BARRIER_INIT");
    if (--b->count == 0) {
        b->count = b->initial_count;
        b->generation++;
        yield(c);
    } else {
        block(c, T_BARRIER, b, b->generation);
    }
}

void __dpu_emu_mutex_lock(uint8_t *mutex)
{
    struct emu_ctx *c = ctx();
    yield(c);
    while (*mutex != 0)
        block(c, T_MUTEX, mutex, 0);
    *mutex = 1;
}

int __dpu_emu_mutex_trylock(uint8_t *mutex)
{
    struct emu_ctx *c = ctx();
    if (*mutex != 0) {
        yield(c); /* lets the holder progress in `while (!mutex_trylock(m))` loops */
        return 0;
    }
    *mutex = 1;
    return 1;
}

void __dpu_emu_mutex_unlock(uint8_t *mutex)
{
    (void)ctx();
    *mutex = 0;
}

void __dpu_emu_sem_take(int32_t *count)
{
    struct emu_ctx *c = ctx();
    yield(c);
    while (*count <= 0)
        block(c, T_SEM, count, 0);
    (*count)--;
}

void __dpu_emu_sem_give(int32_t *count)
{
    (void)ctx();
    (*count)++;
}

void __dpu_emu_handshake_notify(void)
{
    struct emu_ctx *c = ctx();
    uint32_t self = c->current;
    int8_t waiter = c->handshake_waiter[self];
    if (waiter >= 0) {
        c->handshake_waiter[self] = -1;
        c->tasklets[waiter].woken = true;
        yield(c);
        return;
    }
    c->handshake_notifying[self] = true;
    c->tasklets[self].woken = false;
    block(c, T_FLAG, NULL, 0);
}

int __dpu_emu_handshake_wait_for(uint32_t notifier)
{
    struct emu_ctx *c = ctx();
    uint32_t self = c->current;
    if (notifier >= c->nr_tasklets || notifier == self)
        return EINVAL;
    if (c->handshake_waiter[notifier] >= 0)
        return EALREADY;
    if (c->handshake_notifying[notifier]) {
        c->handshake_notifying[notifier] = false;
        c->tasklets[notifier].woken = true;
        yield(c);
        return 0;
    }
    c->handshake_waiter[notifier] = (int8_t)self;
    c->tasklets[self].woken = false;
    block(c, T_FLAG, NULL, 0);
    return 0;
}

uint64_t __dpu_emu_perfcounter_config(uint32_t config, int reset_value)
{
    (void)config;
    struct dpu_t *d = ctx()->dpu;
    uint64_t value = d->perf_cycles - d->perf_base;
    if (reset_value)
        d->perf_base = d->perf_cycles;
    return value;
}

uint64_t __dpu_emu_perfcounter_get(void)
{
    struct dpu_t *d = ctx()->dpu;
    return d->perf_cycles - d->perf_base;
}

const volatile uint32_t __dpu_emu_clocks_per_sec = EMU_CLOCK_HZ;

int __dpu_emu_printf(const char *format, ...)
{
    struct emu_ctx *c = ctx();
    char small[512];
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(small, sizeof(small), format, ap);
    va_end(ap);
    if (n < 0)
        return n;
    if ((size_t)n < sizeof(small)) {
        emu_log_append(c->dpu, small, (size_t)n, false);
        return n;
    }
    char *big = malloc((size_t)n + 1);
    if (big == NULL)
        return -1;
    va_start(ap, format);
    vsnprintf(big, (size_t)n + 1, format, ap);
    va_end(ap);
    emu_log_append(c->dpu, big, (size_t)n, false);
    free(big);
    return n;
}

int __dpu_emu_puts(const char *s)
{
    struct emu_ctx *c = ctx();
    emu_log_append(c->dpu, s, strlen(s), false);
    emu_log_append(c->dpu, "\n", 1, false);
    return 1;
}

int __dpu_emu_putchar(int ch)
{
    char byte = (char)ch;
    emu_log_append(ctx()->dpu, &byte, 1, false);
    return (unsigned char)ch;
}
