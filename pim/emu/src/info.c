/* DPU logs, error strings, emulator counters and version. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu_internal.h"

#define EMU_VERSION_STRING "updlrm DPU emulator 1 (UPMEM SDK 2025.1 host API subset)"

const char *dpu_emu_version(void) { return EMU_VERSION_STRING; }

/* ---- logs ---- */

void emu_log_append(struct dpu_t *dpu, const char *text, size_t len, bool force)
{
    if (!force && dpu->log_len + len > EMU_LOG_CAPACITY) {
        dpu->log_truncated = true; /* the DPU's stdout buffer is full */
        return;
    }
    if (dpu->log_len + len + 1 > dpu->log_cap) {
        size_t cap = dpu->log_cap ? dpu->log_cap : 256;
        while (cap < dpu->log_len + len + 1)
            cap *= 2;
        char *grown = realloc(dpu->log, cap);
        if (grown == NULL)
            return;
        dpu->log = grown;
        dpu->log_cap = (uint32_t)cap;
    }
    memcpy(dpu->log + dpu->log_len, text, len);
    dpu->log_len += (uint32_t)len;
    dpu->log[dpu->log_len] = '\0';
}

void emu_log_printf(struct dpu_t *dpu, bool force, const char *format, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(text, sizeof(text), format, ap);
    va_end(ap);
    if (n < 0)
        return;
    emu_log_append(dpu, text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1, force);
}

dpu_error_t dpu_log_read(struct dpu_set_t set, FILE *stream)
{
    if (emu_set_alloc(&set) == NULL || emu_set_count(&set) != 1 || stream == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    emu_wait_idle(&set);
    uint64_t pos = 0;
    struct dpu_t *d = emu_set_next(&set, &pos);
    if (d->program == NULL)
        return DPU_ERR_NO_PROGRAM_LOADED;
    if (d->log_len > 0 && fwrite(d->log, 1, d->log_len, stream) != d->log_len)
        return DPU_ERR_SYSTEM;
    if (d->log_truncated && fputs("[DPU log truncated: stdout buffer full]\n", stream) < 0)
        return DPU_ERR_SYSTEM;
    return DPU_OK;
}

/* ---- errors ---- */

static const char *const g_error_text[] = {
    [DPU_OK] = "success",
    [DPU_ERR_INTERNAL] = "internal error",
    [DPU_ERR_SYSTEM] = "system error (host out of memory or system call failure)",
    [DPU_ERR_DRIVER] = "driver error",
    [DPU_ERR_ALLOCATION] = "cannot allocate the requested DPUs",
    [DPU_ERR_INVALID_DPU_SET] = "invalid DPU set for this operation",
    [DPU_ERR_INVALID_THREAD_ID] = "invalid thread id",
    [DPU_ERR_INVALID_NOTIFY_ID] = "invalid notify id",
    [DPU_ERR_INVALID_WRAM_ACCESS] = "invalid WRAM access (address and length must be multiples of 4)",
    [DPU_ERR_INVALID_IRAM_ACCESS] = "invalid IRAM access",
    [DPU_ERR_INVALID_MRAM_ACCESS] = "invalid MRAM access (address and length must be multiples of 8)",
    [DPU_ERR_INVALID_SYMBOL_ACCESS] = "invalid symbol access (offset + length beyond the symbol)",
    [DPU_ERR_MRAM_BUSY] = "MRAM busy",
    [DPU_ERR_TRANSFER_ALREADY_SET] = "transfer buffer already set for this DPU",
    [DPU_ERR_INVALID_PARALLEL_MEMORY_TRANSFER] = "invalid parallel memory transfer (WRAM only)",
    [DPU_ERR_WRAM_FIFO_FULL] = "WRAM FIFO full",
    [DPU_ERR_NO_PROGRAM_LOADED] = "no program loaded",
    [DPU_ERR_DIFFERENT_DPU_PROGRAMS] = "DPUs of the set run different programs",
    [DPU_ERR_CORRUPTED_MEMORY] = "corrupted memory",
    [DPU_ERR_DPU_DISABLED] = "DPU disabled",
    [DPU_ERR_DPU_ALREADY_RUNNING] = "DPU already running",
    [DPU_ERR_INVALID_MEMORY_TRANSFER] = "invalid memory transfer",
    [DPU_ERR_INVALID_LAUNCH_POLICY] = "invalid launch policy",
    [DPU_ERR_DPU_FAULT] = "DPU fault (see the DPU log)",
    [DPU_ERR_ELF_INVALID_FILE] = "invalid DPU binary (build it with `python -m updlrm.pim.toolchain cc`)",
    [DPU_ERR_ELF_NO_SUCH_FILE] = "DPU binary not found",
    [DPU_ERR_ELF_NO_SUCH_SECTION] = "missing section in the DPU binary",
    [DPU_ERR_TIMEOUT] = "timeout",
    [DPU_ERR_INVALID_PROFILE] = "invalid profile",
    [DPU_ERR_UNKNOWN_SYMBOL] = "unknown symbol",
    [DPU_ERR_LOG_FORMAT] = "log format error",
    [DPU_ERR_LOG_CONTEXT_MISSING] = "log context missing",
    [DPU_ERR_LOG_BUFFER_TOO_SMALL] = "log buffer too small",
    [DPU_ERR_VPD_INVALID_FILE] = "invalid VPD file",
    [DPU_ERR_VPD_NO_REPAIR] = "no VPD repair",
    [DPU_ERR_NO_THREAD_PER_RANK] = "no thread per rank",
    [DPU_ERR_INVALID_BUFFER_SIZE] = "invalid buffer size",
    [DPU_ERR_NONBLOCKING_SYNC_CALLBACK] = "non-blocking synchronous callback",
    [DPU_ERR_TOO_MANY_TASKLETS] = "too many tasklets",
    [DPU_ERR_SG_TOO_MANY_BLOCKS] = "too many scatter-gather blocks",
    [DPU_ERR_SG_LENGTH_MISMATCH] = "scatter-gather length mismatch",
    [DPU_ERR_SG_NOT_ACTIVATED] = "scatter-gather transfers not activated",
    [DPU_ERR_SG_NOT_MRAM_SYMBOL] = "scatter-gather transfer on a non-MRAM symbol",
};

char *dpu_error_to_string(dpu_error_t status)
{
    unsigned int code = (unsigned int)status;
    bool async = (code & (unsigned int)DPU_ERR_ASYNC_JOBS) != 0;
    code &= ~(unsigned int)DPU_ERR_ASYNC_JOBS;
    code &= (1u << DPU_ERROR_ASYNC_JOB_TYPE_SHIFT) - 1;
    const char *text = code < sizeof(g_error_text) / sizeof(g_error_text[0]) && g_error_text[code] != NULL
                           ? g_error_text[code]
                           : "unknown error";
    char buf[256];
    snprintf(buf, sizeof(buf), "%s%s", async ? "asynchronous job failed: " : "", text);
    return strdup(buf);
}

/* ---- counters ---- */

static struct dpu_t *single_dpu(struct dpu_set_t *set)
{
    if (emu_set_alloc(set) == NULL || emu_set_count(set) != 1)
        return NULL;
    emu_wait_idle(set);
    uint64_t pos = 0;
    return emu_set_next(set, &pos);
}

dpu_error_t dpu_emu_get_dpu_counters(struct dpu_set_t dpu, struct dpu_emu_dpu_counters *out)
{
    struct dpu_t *d = single_dpu(&dpu);
    if (d == NULL || out == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    *out = d->counters;
    return DPU_OK;
}

dpu_error_t dpu_emu_get_last_launch(struct dpu_set_t dpu, struct dpu_emu_dma_counters *total,
                                    struct dpu_emu_dma_counters *per_tasklet, uint32_t capacity, uint32_t *nr_tasklets)
{
    struct dpu_t *d = single_dpu(&dpu);
    if (d == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    if (total != NULL)
        *total = d->last_total;
    if (per_tasklet != NULL) {
        for (uint32_t i = 0; i < capacity; i++) {
            if (i < d->last_nr_tasklets && d->last_tasklets != NULL)
                per_tasklet[i] = d->last_tasklets[i];
            else
                memset(&per_tasklet[i], 0, sizeof(per_tasklet[i]));
        }
    }
    if (nr_tasklets != NULL)
        *nr_tasklets = d->last_nr_tasklets;
    return DPU_OK;
}

dpu_error_t dpu_emu_get_xfer_log(struct dpu_set_t set, struct dpu_emu_xfer_record *out, uint32_t capacity,
                                 uint32_t *count)
{
    struct emu_alloc *a = emu_set_alloc(&set);
    if (a == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    pthread_mutex_lock(&a->stats_lock);
    uint64_t kept = a->xfer_log_count < DPU_EMU_XFER_LOG_MAX ? a->xfer_log_count : DPU_EMU_XFER_LOG_MAX;
    uint64_t first = a->xfer_log_count - kept;
    for (uint64_t i = 0; out != NULL && i < kept && i < capacity; i++)
        out[i] = a->xfer_log[(first + i) % DPU_EMU_XFER_LOG_MAX];
    pthread_mutex_unlock(&a->stats_lock);
    if (count != NULL)
        *count = (uint32_t)kept;
    return DPU_OK;
}

dpu_error_t dpu_emu_get_xfer_totals(struct dpu_set_t set, struct dpu_emu_xfer_totals *out)
{
    struct emu_alloc *a = emu_set_alloc(&set);
    if (a == NULL || out == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    pthread_mutex_lock(&a->stats_lock);
    *out = a->totals;
    pthread_mutex_unlock(&a->stats_lock);
    return DPU_OK;
}

dpu_error_t dpu_emu_reset_counters(struct dpu_set_t set)
{
    struct emu_alloc *a = emu_set_alloc(&set);
    if (a == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    emu_wait_idle(&set);
    uint64_t pos = 0;
    struct dpu_t *d;
    while ((d = emu_set_next(&set, &pos)) != NULL)
        memset(&d->counters, 0, sizeof(d->counters));
    pthread_mutex_lock(&a->stats_lock);
    a->xfer_log_count = 0;
    memset(&a->totals, 0, sizeof(a->totals));
    pthread_mutex_unlock(&a->stats_lock);
    return DPU_OK;
}
