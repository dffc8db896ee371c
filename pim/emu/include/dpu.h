/* Host API of the UPMEM SDK 2025.1 — the subset implemented by the updlrm DPU emulator.
 *
 * Same names, types, signatures, enum values and macros as the SDK's <dpu.h>, so that an
 * ordinary host program compiles unmodified with
 *     cc host.c $(python -m updlrm.pim.toolchain cflags libs)
 * Emulator-only extras (counters, version) are in <dpu_emu.h>.
 *
 * Emulator behaviour worth knowing (see pim/emu/README.md):
 *  - DPU_XFER_ASYNC transfers and calls on a set that is still running wait for the running
 *    launch and then execute at once (same results as the SDK's per-rank job queue).
 *  - The profile string accepts backend, nrDpusPerRank, nrDpusPerCI, disabledMask,
 *    nrDisabledDpus, nrRanks, nrThreadsPerRank, sgXferEnable; other keys give
 *    DPU_ERR_INVALID_PROFILE. UPMEM_PROFILE_BASE is prepended as in the SDK.
 */
#ifndef DPU_H
#define DPU_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "dpu_error.h"
#include "dpu_macro_utils.h"
#include "dpu_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Marks the emulator's dpu.h (absent from the SDK's). */
#define UPDLRM_DPU_EMULATOR 1

#define DPU_ALLOCATE_ALL (UINT_MAX)
#define DPU_MRAM_HEAP_POINTER_NAME "__sys_used_mram_end"

/* ---- allocation ---- */
dpu_error_t dpu_alloc(uint32_t nr_dpus, const char *profile, struct dpu_set_t *dpu_set);
dpu_error_t dpu_alloc_ranks(uint32_t nr_ranks, const char *profile, struct dpu_set_t *dpu_set);
/** Only accepts a set returned by dpu_alloc / dpu_alloc_ranks. */
dpu_error_t dpu_free(struct dpu_set_t dpu_set);
dpu_error_t dpu_get_nr_ranks(struct dpu_set_t dpu_set, uint32_t *nr_ranks);
dpu_error_t dpu_get_nr_dpus(struct dpu_set_t dpu_set, uint32_t *nr_dpus);

/* ---- programs ---- */
/** Loads a kernel built by `python -m updlrm.pim.toolchain cc` into every DPU of the set:
 * WRAM globals take their initial values, __mram initialisers are written to MRAM,
 * the WRAM heap and log are reset. */
dpu_error_t dpu_load(struct dpu_set_t dpu_set, const char *binary_path, struct dpu_program_t **program);
dpu_error_t dpu_load_from_memory(struct dpu_set_t dpu_set, uint8_t *buffer, size_t buffer_size,
                                 struct dpu_program_t **program);
dpu_error_t dpu_load_from_incbin(struct dpu_set_t dpu_set, struct dpu_incbin_t *incbin,
                                 struct dpu_program_t **program);
dpu_error_t dpu_get_symbol(struct dpu_program_t *program, const char *symbol_name, struct dpu_symbol_t *symbol);

/* ---- execution ---- */
dpu_error_t dpu_launch(struct dpu_set_t dpu_set, dpu_launch_policy_t policy);
dpu_error_t dpu_status(struct dpu_set_t dpu_set, bool *done, bool *fault);
dpu_error_t dpu_sync(struct dpu_set_t dpu_set);

/* ---- transfers ---- */
/** Writes the same buffer to every DPU of the set. */
dpu_error_t dpu_copy_to(struct dpu_set_t dpu_set, const char *symbol_name, uint32_t symbol_offset,
                        const void *src, size_t length);
/** Reads from one DPU; a set of several DPUs gives DPU_ERR_INVALID_DPU_SET. */
dpu_error_t dpu_copy_from(struct dpu_set_t dpu_set, const char *symbol_name, uint32_t symbol_offset,
                          void *dst, size_t length);
dpu_error_t dpu_copy_to_symbol(struct dpu_set_t dpu_set, struct dpu_symbol_t symbol, uint32_t symbol_offset,
                               const void *src, size_t length);
dpu_error_t dpu_copy_from_symbol(struct dpu_set_t dpu_set, struct dpu_symbol_t symbol, uint32_t symbol_offset,
                                 void *dst, size_t length);
/** Sets the host buffer of every DPU of the set for the next dpu_push_xfer. A DPU that already
 * had a buffer gets the new one and DPU_ERR_TRANSFER_ALREADY_SET is returned (as in SDK 2025.1). */
dpu_error_t dpu_prepare_xfer(struct dpu_set_t dpu_set, void *buffer);
/** One transfer of `length` bytes at `symbol_offset` for every DPU with a prepared buffer (DPUs
 * without one are skipped); the prepared buffers are cleared afterwards unless DPU_XFER_NO_RESET. */
dpu_error_t dpu_push_xfer(struct dpu_set_t dpu_set, dpu_xfer_t xfer, const char *symbol_name,
                          uint32_t symbol_offset, size_t length, dpu_xfer_flags_t flags);
dpu_error_t dpu_push_xfer_symbol(struct dpu_set_t dpu_set, dpu_xfer_t xfer, struct dpu_symbol_t symbol,
                                 uint32_t symbol_offset, size_t length, dpu_xfer_flags_t flags);
dpu_error_t dpu_broadcast_to(struct dpu_set_t dpu_set, const char *symbol_name, uint32_t symbol_offset,
                             const void *src, size_t length, dpu_xfer_flags_t flags);
dpu_error_t dpu_broadcast_to_symbol(struct dpu_set_t dpu_set, struct dpu_symbol_t symbol, uint32_t symbol_offset,
                                    const void *src, size_t length, dpu_xfer_flags_t flags);

/* ---- callbacks and logs ---- */
/** Calls `callback(set_of_rank, rank_index, args)` for every rank, on the calling thread. */
dpu_error_t dpu_callback(struct dpu_set_t dpu_set, dpu_error_t (*callback)(struct dpu_set_t, uint32_t, void *),
                         void *args, dpu_callback_flags_t flags);
/** Writes the DPU's printf output of its last launch to `stream` (single-DPU set). */
dpu_error_t dpu_log_read(struct dpu_set_t set, FILE *stream);

/* ---- iterators (used by the FOREACH macros) ---- */
struct dpu_set_rank_iterator_t {
    struct dpu_set_t *set;
    uint32_t count;
    uint32_t next_idx;
    bool has_next;
    struct dpu_set_t next;
};

struct dpu_set_dpu_iterator_t {
    struct dpu_set_rank_iterator_t rank_iterator;
    uint32_t count;
    uint32_t next_idx;
    bool has_next;
    struct dpu_set_t next;
};

struct dpu_set_rank_iterator_t dpu_set_rank_iterator_from(struct dpu_set_t *set);
void dpu_set_rank_iterator_next(struct dpu_set_rank_iterator_t *iterator);
struct dpu_set_dpu_iterator_t dpu_set_dpu_iterator_from(struct dpu_set_t *set);
void dpu_set_dpu_iterator_next(struct dpu_set_dpu_iterator_t *iterator);

/** DPU_FOREACH(set, dpu) or DPU_FOREACH(set, dpu, i): every DPU of `set` (i = 0, 1, ...). */
#define DPU_FOREACH(...) _DPU_CONCAT(_DPU_FOREACH_, _DPU_FOREACH_VARIANT(__VA_ARGS__))(__VA_ARGS__)
#define _DPU_FOREACH_X(set, dpu)                                                                  \
    for (struct dpu_set_dpu_iterator_t __dpu_it = dpu_set_dpu_iterator_from(&(set));              \
         __dpu_it.has_next && (((dpu) = __dpu_it.next), 1); dpu_set_dpu_iterator_next(&__dpu_it))
#define _DPU_FOREACH_I(set, dpu, i)                                                               \
    for (struct dpu_set_dpu_iterator_t __dpu_it = dpu_set_dpu_iterator_from(&(set));              \
         __dpu_it.has_next && (((dpu) = __dpu_it.next), ((i) = __dpu_it.count), 1);               \
         dpu_set_dpu_iterator_next(&__dpu_it))

/** DPU_RANK_FOREACH(set, rank) or DPU_RANK_FOREACH(set, rank, i): every rank of `set`. */
#define DPU_RANK_FOREACH(...) _DPU_CONCAT(_DPU_RANK_FOREACH_, _DPU_FOREACH_VARIANT(__VA_ARGS__))(__VA_ARGS__)
#define _DPU_RANK_FOREACH_X(set, rank)                                                            \
    for (struct dpu_set_rank_iterator_t __rank_it = dpu_set_rank_iterator_from(&(set));           \
         __rank_it.has_next && (((rank) = __rank_it.next), 1); dpu_set_rank_iterator_next(&__rank_it))
#define _DPU_RANK_FOREACH_I(set, rank, i)                                                         \
    for (struct dpu_set_rank_iterator_t __rank_it = dpu_set_rank_iterator_from(&(set));           \
         __rank_it.has_next && (((rank) = __rank_it.next), ((i) = __rank_it.count), 1);           \
         dpu_set_rank_iterator_next(&__rank_it))

/** Runs `statement`; on error prints `file:line(function): DPU Error (<message>)` and runs `todo`. */
#define DPU_CHECK(statement, todo)                                                                \
    do {                                                                                          \
        dpu_error_t __error = (statement);                                                        \
        if (__error != DPU_OK) {                                                                  \
            char *__error_string = dpu_error_to_string(__error);                                  \
            fprintf(stderr, "%s:%d(%s): DPU Error (%s)\n", __FILE__, __LINE__, __func__,          \
                    __error_string);                                                              \
            free(__error_string);                                                                 \
            todo;                                                                                 \
        }                                                                                         \
    } while (0)

/** Exits the program on error. */
#define DPU_ASSERT(statement) DPU_CHECK(statement, exit(EXIT_FAILURE))

/** Embeds a DPU binary into the host program, for dpu_load_from_incbin. */
#define DPU_INCBIN(name, file)                                                                    \
    __asm__(".pushsection .rodata\n"                                                              \
            ".balign 8\n"                                                                         \
            #name "_start:\n"                                                                     \
            ".incbin \"" file "\"\n"                                                              \
            #name "_end:\n"                                                                       \
            ".popsection\n");                                                                     \
    extern uint8_t name##_start[];                                                                \
    extern uint8_t name##_end[];                                                                  \
    static struct dpu_incbin_t name = {name##_start, 0, file};                                    \
    __attribute__((constructor)) static void name##_init(void) { name.size = (size_t)(name##_end - name##_start); }

#ifdef __cplusplus
}
#endif

#endif /* DPU_H */
