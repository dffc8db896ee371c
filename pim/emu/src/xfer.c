/* Host <-> DPU transfers with the SDK's checks: symbol bounds, MRAM 8-byte and WRAM 4-byte
 * alignment of offset and length, one length per push, NULL-prepared DPUs skipped. */
#include <stdlib.h>
#include <string.h>

#include "emu_internal.h"

/** The program shared by all DPUs of the set (transfers by name need one). */
static dpu_error_t set_program(const struct dpu_set_t *set, struct dpu_program_t **out)
{
    uint64_t pos = 0;
    struct dpu_t *d;
    struct dpu_program_t *p = NULL;
    bool first = true;
    while ((d = emu_set_next(set, &pos)) != NULL) {
        if (d->program == NULL)
            return DPU_ERR_NO_PROGRAM_LOADED;
        if (!first && d->program != p)
            return DPU_ERR_DIFFERENT_DPU_PROGRAMS;
        p = d->program;
        first = false;
    }
    if (p == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    *out = p;
    return DPU_OK;
}

static dpu_error_t check_access(struct dpu_symbol_t symbol, uint32_t offset, size_t length)
{
    if ((uint64_t)offset + length > symbol.size)
        return DPU_ERR_INVALID_SYMBOL_ACCESS;
    uint64_t address = (uint64_t)symbol.address + offset;
    if (symbol.address >= DPU_EMU_MRAM_BASE) {
        if (address % 8 != 0 || length % 8 != 0)
            return DPU_ERR_INVALID_MRAM_ACCESS;
        if (address - DPU_EMU_MRAM_BASE + length > EMU_MRAM_SIZE)
            return DPU_ERR_INVALID_MRAM_ACCESS;
    } else if (address % 4 != 0 || length % 4 != 0) {
        return DPU_ERR_INVALID_WRAM_ACCESS;
    }
    return DPU_OK;
}

/** Moves `length` bytes between the host buffer and one DPU (checks already done). */
static dpu_error_t move(struct dpu_t *d, dpu_xfer_t dir, uint64_t address, void *buffer, size_t length)
{
    uint8_t *target;
    if (address >= DPU_EMU_MRAM_BASE) {
        target = d->mram + (address - DPU_EMU_MRAM_BASE);
    } else {
        if (d->program == NULL)
            return DPU_ERR_NO_PROGRAM_LOADED;
        if (address + length > d->program->image_size)
            return DPU_ERR_INVALID_WRAM_ACCESS;
        dpu_error_t status = emu_dpu_image(d);
        if (status != DPU_OK)
            return status;
        target = d->image + address;
    }
    if (dir == DPU_XFER_TO_DPU) {
        memcpy(target, buffer, length);
        d->counters.to_dpu_calls++;
        d->counters.to_dpu_bytes += length;
    } else {
        memcpy(buffer, target, length);
        d->counters.from_dpu_calls++;
        d->counters.from_dpu_bytes += length;
    }
    return DPU_OK;
}

static void record(struct emu_alloc *a, dpu_emu_xfer_kind_t kind, dpu_xfer_t dir, struct dpu_symbol_t symbol,
                   uint32_t nr_dpus, size_t length)
{
    pthread_mutex_lock(&a->stats_lock);
    if (a->xfer_log == NULL)
        a->xfer_log = malloc(DPU_EMU_XFER_LOG_MAX * sizeof(*a->xfer_log));
    if (a->xfer_log != NULL) {
        struct dpu_emu_xfer_record *r = &a->xfer_log[a->xfer_log_count % DPU_EMU_XFER_LOG_MAX];
        r->kind = kind;
        r->direction = dir;
        r->is_mram = symbol.address >= DPU_EMU_MRAM_BASE;
        r->nr_dpus = nr_dpus;
        r->bytes_per_dpu = length;
        r->total_bytes = (uint64_t)nr_dpus * length;
        a->xfer_log_count++;
    }
    if (dir == DPU_XFER_TO_DPU) {
        a->totals.to_dpu_calls++;
        a->totals.to_dpu_bytes += (uint64_t)nr_dpus * length;
    } else {
        a->totals.from_dpu_calls++;
        a->totals.from_dpu_bytes += (uint64_t)nr_dpus * length;
    }
    pthread_mutex_unlock(&a->stats_lock);
}

/** One transfer on a set. `buffer` NULL: use each DPU's prepared buffer (push). */
static dpu_error_t transfer(struct dpu_set_t set, dpu_emu_xfer_kind_t kind, dpu_xfer_t dir, const char *name,
                            const struct dpu_symbol_t *given, uint32_t offset, void *buffer, size_t length)
{
    struct emu_alloc *a = emu_set_alloc(&set);
    if (a == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    if (dir != DPU_XFER_TO_DPU && dir != DPU_XFER_FROM_DPU)
        return DPU_ERR_INVALID_MEMORY_TRANSFER;
    if (kind == DPU_EMU_XFER_COPY && dir == DPU_XFER_FROM_DPU && emu_set_count(&set) != 1)
        return DPU_ERR_INVALID_DPU_SET;
    emu_wait_idle(&set); /* calls on a running set are queued behind the launch */
    struct dpu_symbol_t symbol;
    if (given != NULL) {
        symbol = *given;
    } else {
        struct dpu_program_t *p;
        dpu_error_t status = set_program(&set, &p);
        if (status != DPU_OK)
            return status;
        status = dpu_get_symbol(p, name, &symbol);
        if (status != DPU_OK)
            return status;
    }
    dpu_error_t status = check_access(symbol, offset, length);
    if (status != DPU_OK)
        return status;
    uint64_t address = (uint64_t)symbol.address + offset;
    uint64_t pos = 0;
    struct dpu_t *d;
    uint32_t moved = 0;
    while ((d = emu_set_next(&set, &pos)) != NULL) {
        void *host = buffer != NULL ? buffer : d->xfer_buffer;
        if (host == NULL)
            continue; /* not prepared: skipped, as in the SDK */
        if (length > 0) {
            status = move(d, dir, address, host, length);
            if (status != DPU_OK)
                return status;
        }
        moved++;
    }
    record(a, kind, dir, symbol, moved, length);
    return DPU_OK;
}

dpu_error_t dpu_copy_to(struct dpu_set_t dpu_set, const char *symbol_name, uint32_t symbol_offset, const void *src,
                        size_t length)
{
    if (src == NULL)
        return DPU_ERR_INVALID_MEMORY_TRANSFER;
    return transfer(dpu_set, DPU_EMU_XFER_COPY, DPU_XFER_TO_DPU, symbol_name, NULL, symbol_offset, (void *)src, length);
}

dpu_error_t dpu_copy_from(struct dpu_set_t dpu_set, const char *symbol_name, uint32_t symbol_offset, void *dst,
                          size_t length)
{
    if (dst == NULL)
        return DPU_ERR_INVALID_MEMORY_TRANSFER;
    return transfer(dpu_set, DPU_EMU_XFER_COPY, DPU_XFER_FROM_DPU, symbol_name, NULL, symbol_offset, dst, length);
}

dpu_error_t dpu_copy_to_symbol(struct dpu_set_t dpu_set, struct dpu_symbol_t symbol, uint32_t symbol_offset,
                               const void *src, size_t length)
{
    if (src == NULL)
        return DPU_ERR_INVALID_MEMORY_TRANSFER;
    return transfer(dpu_set, DPU_EMU_XFER_COPY, DPU_XFER_TO_DPU, NULL, &symbol, symbol_offset, (void *)src, length);
}

dpu_error_t dpu_copy_from_symbol(struct dpu_set_t dpu_set, struct dpu_symbol_t symbol, uint32_t symbol_offset,
                                 void *dst, size_t length)
{
    if (dst == NULL)
        return DPU_ERR_INVALID_MEMORY_TRANSFER;
    return transfer(dpu_set, DPU_EMU_XFER_COPY, DPU_XFER_FROM_DPU, NULL, &symbol, symbol_offset, dst, length);
}

dpu_error_t dpu_prepare_xfer(struct dpu_set_t dpu_set, void *buffer)
{
    if (emu_set_alloc(&dpu_set) == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    dpu_error_t status = DPU_OK;
    uint64_t pos = 0;
    struct dpu_t *d;
    while ((d = emu_set_next(&dpu_set, &pos)) != NULL) {
        if (buffer != NULL && d->xfer_buffer != NULL)
            status = DPU_ERR_TRANSFER_ALREADY_SET; /* reported, but the new buffer is taken */
        d->xfer_buffer = buffer;
    }
    return status;
}

static dpu_error_t push(struct dpu_set_t set, dpu_xfer_t xfer, const char *name, const struct dpu_symbol_t *symbol,
                        uint32_t offset, size_t length, dpu_xfer_flags_t flags)
{
    if ((flags & DPU_XFER_PARALLEL) && symbol != NULL && symbol->address >= DPU_EMU_MRAM_BASE)
        return DPU_ERR_INVALID_PARALLEL_MEMORY_TRANSFER;
    dpu_error_t status = transfer(set, DPU_EMU_XFER_PUSH, xfer, name, symbol, offset, NULL, length);
    if (status == DPU_OK && !(flags & DPU_XFER_NO_RESET)) {
        uint64_t pos = 0;
        struct dpu_t *d;
        while ((d = emu_set_next(&set, &pos)) != NULL)
            d->xfer_buffer = NULL;
    }
    return status;
}

dpu_error_t dpu_push_xfer(struct dpu_set_t dpu_set, dpu_xfer_t xfer, const char *symbol_name, uint32_t symbol_offset,
                          size_t length, dpu_xfer_flags_t flags)
{
    return push(dpu_set, xfer, symbol_name, NULL, symbol_offset, length, flags);
}

dpu_error_t dpu_push_xfer_symbol(struct dpu_set_t dpu_set, dpu_xfer_t xfer, struct dpu_symbol_t symbol,
                                 uint32_t symbol_offset, size_t length, dpu_xfer_flags_t flags)
{
    return push(dpu_set, xfer, NULL, &symbol, symbol_offset, length, flags);
}

dpu_error_t dpu_broadcast_to(struct dpu_set_t dpu_set, const char *symbol_name, uint32_t symbol_offset, const void *src,
                             size_t length, dpu_xfer_flags_t flags)
{
    (void)flags; /* ASYNC: executed at once after any running launch; NO_RESET: nothing prepared */
    if (src == NULL)
        return DPU_ERR_INVALID_MEMORY_TRANSFER;
    return transfer(dpu_set, DPU_EMU_XFER_BROADCAST, DPU_XFER_TO_DPU, symbol_name, NULL, symbol_offset, (void *)src,
                    length);
}

dpu_error_t dpu_broadcast_to_symbol(struct dpu_set_t dpu_set, struct dpu_symbol_t symbol, uint32_t symbol_offset,
                                    const void *src, size_t length, dpu_xfer_flags_t flags)
{
    (void)flags;
    if (src == NULL)
        return DPU_ERR_INVALID_MEMORY_TRANSFER;
    return transfer(dpu_set, DPU_EMU_XFER_BROADCAST, DPU_XFER_TO_DPU, NULL, &symbol, symbol_offset, (void *)src,
                    length);
}
