/* What updlrm's libdpu binding (pim/_dpu.pyx) needs beyond the SDK's dpu.h.
 *
 * 1. The error codes by name.  Their numbering changes between SDK versions, so the binding never
 *    hard-codes a number: this table pairs each enumerator with its spelling, and the values come
 *    from whichever dpu.h is on the include path.
 * 2. Which libdpu the extension is linked against, and the emulator-only counters.  This is the
 *    one place that differs between the two builds (the emulator's dpu.h defines
 *    UPDLRM_DPU_EMULATOR); with the real SDK the counter entry points are stubs that the binding
 *    never reaches, because it checks updlrm_counters_available first.
 */
#ifndef UPDLRM_DPU_EXTRAS_H
#define UPDLRM_DPU_EXTRAS_H

#include <stddef.h>
#include <dpu.h>

struct updlrm_dpu_error_name {
    dpu_error_t code;
    const char *name;
};

#define UPDLRM_DPU_ERROR_NAME(code) { code, #code }

/* SDK 2025.1 dpu_error.h, in its order. */
static const struct updlrm_dpu_error_name updlrm_dpu_error_names[] = {
    UPDLRM_DPU_ERROR_NAME(DPU_OK),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_INTERNAL),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_SYSTEM),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_DRIVER),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_ALLOCATION),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_INVALID_DPU_SET),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_INVALID_THREAD_ID),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_INVALID_NOTIFY_ID),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_INVALID_WRAM_ACCESS),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_INVALID_IRAM_ACCESS),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_INVALID_MRAM_ACCESS),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_INVALID_SYMBOL_ACCESS),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_MRAM_BUSY),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_TRANSFER_ALREADY_SET),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_INVALID_PARALLEL_MEMORY_TRANSFER),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_WRAM_FIFO_FULL),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_NO_PROGRAM_LOADED),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_DIFFERENT_DPU_PROGRAMS),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_CORRUPTED_MEMORY),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_DPU_DISABLED),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_DPU_ALREADY_RUNNING),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_INVALID_MEMORY_TRANSFER),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_INVALID_LAUNCH_POLICY),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_DPU_FAULT),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_ELF_INVALID_FILE),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_ELF_NO_SUCH_FILE),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_ELF_NO_SUCH_SECTION),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_TIMEOUT),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_INVALID_PROFILE),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_UNKNOWN_SYMBOL),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_LOG_FORMAT),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_LOG_CONTEXT_MISSING),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_LOG_BUFFER_TOO_SMALL),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_VPD_INVALID_FILE),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_VPD_NO_REPAIR),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_NO_THREAD_PER_RANK),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_INVALID_BUFFER_SIZE),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_NONBLOCKING_SYNC_CALLBACK),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_TOO_MANY_TASKLETS),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_SG_TOO_MANY_BLOCKS),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_SG_LENGTH_MISMATCH),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_SG_NOT_ACTIVATED),
    UPDLRM_DPU_ERROR_NAME(DPU_ERR_SG_NOT_MRAM_SYMBOL),
};

static const size_t updlrm_dpu_nr_error_names =
    sizeof(updlrm_dpu_error_names) / sizeof(updlrm_dpu_error_names[0]);

/* Counters take raw buffers laid out as the emulator's structs (dpu_emu.h); the binding views
 * them as NumPy structured arrays and checks the sizes below against its dtypes. */
#ifdef UPDLRM_DPU_EMULATOR /* defined by the emulator's dpu.h */
#include <dpu_emu.h>

static const char updlrm_libdpu_kind[] = "emulator";
static const int updlrm_counters_available = 1;
static const size_t updlrm_sizeof_dpu_counters = sizeof(struct dpu_emu_dpu_counters);
static const size_t updlrm_sizeof_dma_counters = sizeof(struct dpu_emu_dma_counters);
static const size_t updlrm_sizeof_xfer_record = sizeof(struct dpu_emu_xfer_record);
static const size_t updlrm_sizeof_xfer_totals = sizeof(struct dpu_emu_xfer_totals);

static inline const char *updlrm_libdpu_version(void) { return dpu_emu_version(); }

static inline dpu_error_t updlrm_get_dpu_counters(struct dpu_set_t dpu, void *out) {
    return dpu_emu_get_dpu_counters(dpu, (struct dpu_emu_dpu_counters *)out);
}
static inline dpu_error_t updlrm_get_last_launch(struct dpu_set_t dpu, void *per_tasklet,
                                                 uint32_t capacity, uint32_t *nr_tasklets) {
    return dpu_emu_get_last_launch(dpu, NULL, (struct dpu_emu_dma_counters *)per_tasklet,
                                   capacity, nr_tasklets);
}
static inline dpu_error_t updlrm_get_xfer_log(struct dpu_set_t set, void *out, uint32_t capacity,
                                              uint32_t *count) {
    return dpu_emu_get_xfer_log(set, (struct dpu_emu_xfer_record *)out, capacity, count);
}
static inline dpu_error_t updlrm_get_xfer_totals(struct dpu_set_t set, void *out) {
    return dpu_emu_get_xfer_totals(set, (struct dpu_emu_xfer_totals *)out);
}
static inline dpu_error_t updlrm_reset_counters(struct dpu_set_t set) {
    return dpu_emu_reset_counters(set);
}

#else /* the UPMEM SDK: hardware has no such counters; the binding checks the flag first */

static const char updlrm_libdpu_kind[] = "upmem-sdk";
static const int updlrm_counters_available = 0;
static const size_t updlrm_sizeof_dpu_counters = 0;
static const size_t updlrm_sizeof_dma_counters = 0;
static const size_t updlrm_sizeof_xfer_record = 0;
static const size_t updlrm_sizeof_xfer_totals = 0;

/* UPDLRM_SDK_VERSION comes from `dpu-pkg-config --modversion dpu` (setup.py). */
static inline const char *updlrm_libdpu_version(void) { return UPDLRM_SDK_VERSION; }

static inline dpu_error_t updlrm_get_dpu_counters(struct dpu_set_t dpu, void *out) {
    (void)dpu; (void)out;
    return DPU_ERR_INTERNAL;
}
static inline dpu_error_t updlrm_get_last_launch(struct dpu_set_t dpu, void *per_tasklet,
                                                 uint32_t capacity, uint32_t *nr_tasklets) {
    (void)dpu; (void)per_tasklet; (void)capacity; (void)nr_tasklets;
    return DPU_ERR_INTERNAL;
}
static inline dpu_error_t updlrm_get_xfer_log(struct dpu_set_t set, void *out, uint32_t capacity,
                                              uint32_t *count) {
    (void)set; (void)out; (void)capacity; (void)count;
    return DPU_ERR_INTERNAL;
}
static inline dpu_error_t updlrm_get_xfer_totals(struct dpu_set_t set, void *out) {
    (void)set; (void)out;
    return DPU_ERR_INTERNAL;
}
static inline dpu_error_t updlrm_reset_counters(struct dpu_set_t set) {
    (void)set;
    return DPU_ERR_INTERNAL;
}
#endif

#endif
