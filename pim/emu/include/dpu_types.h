/* Host-side DPU types of the UPMEM SDK 2025.1 API subset offered by the updlrm emulator.
 * Names, layouts and enum values follow SDK 2025.1 `dpu_types.h` so that host programs
 * written for the SDK compile unmodified. */
#ifndef DPU_TYPES_H
#define DPU_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint32_t dpu_mem_max_addr_t;
typedef uint32_t dpu_mem_max_size_t;
typedef uint32_t dpu_id_t;

struct dpu_rank_t;
struct dpu_t;
struct dpu_program_t;

/** Kind of a dpu_set_t: a list of ranks, or one DPU. */
typedef enum _dpu_set_kind_t {
    DPU_SET_RANKS,
    DPU_SET_DPU,
} dpu_set_kind_t;

/** A set of DPUs, passed by value everywhere. */
struct dpu_set_t {
    dpu_set_kind_t kind;
    union {
        struct {
            uint32_t nr_ranks;
            struct dpu_rank_t **ranks;
        } list;
        struct dpu_t *dpu;
    };
};

/** A symbol of a loaded program: address in the DPU memory map and size in bytes.
 * WRAM symbols have addresses below 64 KiB, MRAM symbols 0x08000000 + MRAM offset. */
struct dpu_symbol_t {
    dpu_mem_max_addr_t address;
    dpu_mem_max_size_t size;
};

/** A DPU binary embedded in the host program (DPU_INCBIN). */
struct dpu_incbin_t {
    uint8_t *buffer;
    size_t size;
    const char *path;
};

typedef enum _dpu_launch_policy_t {
    DPU_ASYNCHRONOUS,
    DPU_SYNCHRONOUS,
} dpu_launch_policy_t;

typedef enum _dpu_xfer_t {
    DPU_XFER_TO_DPU,
    DPU_XFER_FROM_DPU,
} dpu_xfer_t;

typedef enum _dpu_xfer_flags_t {
    DPU_XFER_DEFAULT = 0,
    DPU_XFER_NO_RESET = 1 << 0,
    DPU_XFER_ASYNC = 1 << 1,
    DPU_XFER_PARALLEL = 1 << 2,
} dpu_xfer_flags_t;

typedef enum _dpu_callback_flags_t {
    DPU_CALLBACK_DEFAULT = 0,
    DPU_CALLBACK_ASYNC = 1 << 0,
    DPU_CALLBACK_NONBLOCKING = 1 << 1,
    DPU_CALLBACK_SINGLE_CALL = 1 << 2,
    DPU_CALLBACK_PARALLEL = 1 << 3,
} dpu_callback_flags_t;

typedef enum _dpu_sg_xfer_flags_t {
    DPU_SG_XFER_DEFAULT = 0,
    DPU_SG_XFER_ASYNC = 1 << 1,
    DPU_SG_XFER_DISABLE_LENGTH_CHECK = 1 << 2,
} dpu_sg_xfer_flags_t;

#define DPU_MAX_NR_CIS 8
#define DPU_MAX_NR_DPUS_PER_CI 8
#define DPU_BOOT_THREAD 0

#ifdef __cplusplus
}
#endif

#endif /* DPU_TYPES_H */
