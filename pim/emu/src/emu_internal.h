/* Internal structures of the updlrm DPU emulator (not installed for users). */
#ifndef DPU_EMU_INTERNAL_H
#define DPU_EMU_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "dpu.h"
#include "dpu_emu.h"
#include "../dpurte/dpu_emu_rt.h"

#define EMU_MRAM_SIZE (64u << 20)
#define EMU_MRAM_WINDOW (2u * EMU_MRAM_SIZE) /* [0x08000000, 0x10000000): 32-bit MRAM addresses */
#define EMU_WRAM_SIZE 65536u
#define EMU_MAX_TASKLETS 24u
#define EMU_MAX_WORKERS 64u
#define EMU_LOG_CAPACITY (1u << 20) /* the SDK's default DPU stdout buffer */
#define EMU_DEFAULT_NR_RANKS 40u    /* 2,560 DPUs, the size of the PrIM server */
#define EMU_DPUS_PER_RANK 64u
#define EMU_SYMBOL_HEAP "__sys_used_mram_end"

/* DMA cost model (reference/upmem.md §4.2): cycles = alpha + size / 2. */
#define EMU_DMA_ALPHA_READ 77u
#define EMU_DMA_ALPHA_WRITE 61u
#define EMU_CLOCK_HZ 350000000u

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif

/* ---- programs ---- */

/** A writable range of the kernel's WRAM state (.data, .bss, dpu_host) and its place in a DPU image. */
struct emu_range {
    uint64_t addr; /* link-time address (relative to the kernel's load base) */
    uint64_t size;
    uint64_t image_offset;
};

struct emu_symbol {
    char *name;
    struct dpu_symbol_t symbol;
};

/** One worker thread's private instance of a kernel. */
struct emu_kernel_copy {
    void *handle;
    int memfd; /* the memory file holding this copy, or -1 */
    uintptr_t base;
    uint8_t *pristine; /* image right after dlopen: the load-time values of the globals */
    const struct dpu_emu_kernel_info *info;
};

#define EMU_NR_RANGES 3

struct dpu_program_t {
    uint32_t refcount; /* DPUs using it; guarded by g_emu.lock */
    uint8_t *elf;      /* private copy of the kernel file */
    size_t elf_size;
    uint32_t nr_tasklets;
    uint32_t stack_size;
    struct emu_range ranges[EMU_NR_RANGES]; /* .data, .bss, dpu_host */
    uint64_t image_size;
    uint64_t host_addr; /* link-time address of dpu_host (WRAM symbol addresses are image offsets) */
    uint64_t mram_addr, mram_size, mram_file_offset; /* dpu_mram section (initialised MRAM data) */
    uint64_t noinit_addr, noinit_size;               /* dpu_mram_noinit section */
    uint32_t mram_offset;                            /* MRAM offset of dpu_mram (dpu_mram_noinit is at 0) */
    uint32_t heap_offset;                            /* MRAM offset of DPU_MRAM_HEAP_POINTER */
    uint32_t wram_heap_size;                         /* bytes left for mem_alloc */
    struct emu_symbol *symbols;
    uint32_t nr_symbols;
    pthread_mutex_t copies_lock;
    struct emu_kernel_copy copies[EMU_MAX_WORKERS];
};

/* ---- DPUs, ranks, allocations ---- */

struct emu_alloc;

struct dpu_t {
    struct emu_alloc *alloc;
    struct dpu_rank_t *rank;
    uint32_t index;  /* in its allocation */
    uint32_t worker; /* host worker thread that always runs it */
    uint8_t *mram;   /* 64 MiB, MAP_NORESERVE */
    struct dpu_program_t *program;
    uint8_t *image;  /* saved WRAM globals; NULL = the load-time values */
    uint8_t *heap;   /* WRAM heap (64 KiB of the allocation's lazily committed heap area) */
    uint32_t heap_used;
    bool running; /* guarded by g_emu.lock */
    bool awaited; /* a host thread waits for this DPU to stop (g_emu.lock) */
    bool fault;
    void *xfer_buffer;
    char *log;
    uint32_t log_len, log_cap;
    bool log_truncated;
    uint64_t perf_cycles, perf_base;
    struct dpu_emu_dpu_counters counters;
    struct dpu_emu_dma_counters last_total;
    struct dpu_emu_dma_counters *last_tasklets; /* EMU_MAX_TASKLETS entries, allocated at first launch */
    uint32_t last_nr_tasklets;
    struct dpu_t *queue_next;
};

struct dpu_rank_t {
    struct emu_alloc *alloc;
    uint32_t index;
    uint32_t nr_dpus;
    struct dpu_t **dpus;
};

struct emu_alloc {
    struct emu_alloc *next; /* list of live allocations, guarded by g_emu.lock */
    uint32_t nr_ranks;
    uint32_t nr_dpus;
    struct dpu_rank_t **ranks;
    struct dpu_rank_t *rank_storage;
    struct dpu_t *dpu_storage;
    struct dpu_t **dpu_pointers;
    uint8_t *wram_heaps; /* nr_dpus * 64 KiB, MAP_NORESERVE */
    pthread_mutex_t stats_lock;
    struct dpu_emu_xfer_record *xfer_log; /* ring of DPU_EMU_XFER_LOG_MAX */
    uint64_t xfer_log_count;              /* records ever written since reset */
    struct dpu_emu_xfer_totals totals;
};

/* ---- global state ---- */

struct emu_worker {
    pthread_t thread;
    pthread_cond_t wake;
    struct dpu_t *head, *tail;
    uint32_t id;
};

struct emu_global {
    pthread_mutex_t lock;
    pthread_cond_t done; /* a DPU stopped running */
    struct emu_alloc *allocs;
    uint32_t nr_workers;
    bool workers_started;
    struct emu_worker workers[EMU_MAX_WORKERS];
};

extern struct emu_global g_emu;

/* ---- internal functions ---- */

/* machine.c */
void emu_init(void);
/** Walks the DPUs of a set: `*pos` starts at 0; returns NULL at the end. */
struct dpu_t *emu_set_next(const struct dpu_set_t *set, uint64_t *pos);
uint32_t emu_set_count(const struct dpu_set_t *set);
/** The allocation a set belongs to, or NULL for an invalid set. */
struct emu_alloc *emu_set_alloc(const struct dpu_set_t *set);
/** Waits (g_emu.lock held) until no DPU of the set runs. */
void emu_wait_idle_locked(const struct dpu_set_t *set);
void emu_wait_idle(const struct dpu_set_t *set);

/* program.c */
void emu_program_release(struct dpu_program_t *program); /* g_emu.lock held */
const struct emu_kernel_copy *emu_program_copy(struct dpu_program_t *program, uint32_t worker, char *err, size_t errlen);
/** Copies the WRAM globals of a kernel instance into `image` (or back with to_kernel). */
void emu_image_transfer(const struct dpu_program_t *program, const struct emu_kernel_copy *copy, uint8_t *image,
                        bool to_kernel);
/** Makes sure dpu->image holds the DPU's globals (materialised from the load-time values). */
dpu_error_t emu_dpu_image(struct dpu_t *dpu);
void emu_raw_copy(void *dst, const void *src, size_t n);

/* tasklet.c */
/** Turns SIGSEGV/SIGBUS raised by kernel code into DPU faults (once per process). */
void emu_install_fault_handlers(void);
/** Gives the calling worker thread an alternate signal stack (for tasklet stack overflows). */
void emu_worker_signal_stack(void);
/** Runs all tasklets of one DPU to completion on the calling worker thread. */
void emu_run_dpu(struct dpu_t *dpu, uint32_t worker);

/* log.c */
void emu_log_append(struct dpu_t *dpu, const char *text, size_t len, bool force);
void emu_log_printf(struct dpu_t *dpu, bool force, const char *format, ...) __attribute__((format(printf, 3, 4)));

#endif /* DPU_EMU_INTERNAL_H */
