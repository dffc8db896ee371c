/* Emulator-only extras of the updlrm DPU emulator (not in the UPMEM SDK).
 *
 * Counters feed the cost model; nothing here changes what a kernel computes.
 * All functions take sets of the emulator's <dpu.h> and return dpu_error_t.
 *
 * Build/link: the same flags as <dpu.h>:  $(python -m updlrm.pim.toolchain cflags libs)
 */
#ifndef DPU_EMU_H
#define DPU_EMU_H

#include "dpu.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DPU_EMU_ABI_VERSION 1

/** Human-readable identification, e.g. "updlrm DPU emulator 1 (UPMEM SDK 2025.1 API subset)". */
const char *dpu_emu_version(void);

/** Number of host worker threads that run DPUs (env DPU_EMU_NR_THREADS, default: online CPUs). */
uint32_t dpu_emu_nr_threads(void);

/** MRAM DMA activity (mram_read / mram_write issued by a kernel).
 * modelled_cycles is a MODEL, not a measurement: each DMA costs alpha + size/2 cycles with
 * alpha = 77 (read) or 61 (write) (PrIM latency model, reference/upmem.md §4); instructions
 * are not modelled. The same figure is what perfcounter_get() returns on the DPU. */
struct dpu_emu_dma_counters {
    uint64_t read_calls;
    uint64_t read_bytes;
    uint64_t write_calls;
    uint64_t write_bytes;
    uint64_t modelled_cycles;
};

/** Cumulative counters of one DPU since allocation or dpu_emu_reset_counters. */
struct dpu_emu_dpu_counters {
    uint64_t launches;                 /**< launches that ran this DPU */
    struct dpu_emu_dma_counters dma;   /**< all tasklets, all launches */
    uint64_t to_dpu_calls;             /**< host API calls that wrote to this DPU */
    uint64_t to_dpu_bytes;
    uint64_t from_dpu_calls;           /**< host API calls that read from this DPU */
    uint64_t from_dpu_bytes;
};

/** Cumulative counters of a single DPU (`dpu` must hold exactly one DPU). */
dpu_error_t dpu_emu_get_dpu_counters(struct dpu_set_t dpu, struct dpu_emu_dpu_counters *out);

/** Counters of the most recent launch of a single DPU: DPU total in `*total` (may be NULL) and,
 * when `per_tasklet` is not NULL, one entry per tasklet for the first `capacity` tasklets.
 * `*nr_tasklets` (may be NULL) receives the kernel's NR_TASKLETS (0 if never launched). */
dpu_error_t dpu_emu_get_last_launch(struct dpu_set_t dpu, struct dpu_emu_dma_counters *total,
                                    struct dpu_emu_dma_counters *per_tasklet, uint32_t capacity,
                                    uint32_t *nr_tasklets);

/** How a host transfer was issued. */
typedef enum _dpu_emu_xfer_kind_t {
    DPU_EMU_XFER_COPY,      /**< dpu_copy_to / dpu_copy_from (+ _symbol) */
    DPU_EMU_XFER_PUSH,      /**< dpu_push_xfer (+ _symbol) */
    DPU_EMU_XFER_BROADCAST, /**< dpu_broadcast_to (+ _symbol) */
} dpu_emu_xfer_kind_t;

/** One successful host transfer call. */
struct dpu_emu_xfer_record {
    uint32_t kind;          /**< dpu_emu_xfer_kind_t */
    uint32_t direction;     /**< dpu_xfer_t */
    uint32_t is_mram;       /**< 1: MRAM symbol, 0: WRAM symbol */
    uint32_t nr_dpus;       /**< DPUs actually transferred (NULL-prepared DPUs excluded) */
    uint64_t bytes_per_dpu; /**< the call's length */
    uint64_t total_bytes;   /**< nr_dpus * bytes_per_dpu */
};

/** Longest transfer history kept per allocation (older records are dropped). */
#define DPU_EMU_XFER_LOG_MAX 65536u

/** Copies the transfer history of the allocation that `set` belongs to (oldest first) into
 * `out[0..capacity)`; `*count` receives the number of records available (may exceed capacity).
 * Totals over all records ever made are in dpu_emu_get_xfer_totals. */
dpu_error_t dpu_emu_get_xfer_log(struct dpu_set_t set, struct dpu_emu_xfer_record *out, uint32_t capacity,
                                 uint32_t *count);

/** Totals since allocation / reset for the allocation that `set` belongs to. */
struct dpu_emu_xfer_totals {
    uint64_t to_dpu_calls;
    uint64_t to_dpu_bytes;
    uint64_t from_dpu_calls;
    uint64_t from_dpu_bytes;
    uint64_t launches;      /**< dpu_launch calls on (parts of) the allocation */
};
dpu_error_t dpu_emu_get_xfer_totals(struct dpu_set_t set, struct dpu_emu_xfer_totals *out);

/** Resets all counters of the DPUs of `set` and, for every allocation it touches, the transfer
 * history and totals. */
dpu_error_t dpu_emu_reset_counters(struct dpu_set_t set);

#ifdef __cplusplus
}
#endif

#endif /* DPU_EMU_H */
