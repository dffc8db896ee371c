/* Structures shared by the test hosts and test kernels (fixed-width fields only:
 * DPU pointers and size_t are 32-bit, the host's 64-bit). */
#ifndef EMU_TEST_COMMON_H
#define EMU_TEST_COMMON_H

#include <stdint.h>

#define BLOCK_SIZE 256 /* bytes per DMA in the vector add */

typedef struct {
    uint32_t size;          /* bytes of each input vector on this DPU */
    uint32_t transfer_size; /* bytes actually pushed (padded to 8) */
} dpu_arguments_t;

typedef struct {
    uint64_t cycles;
    uint64_t sum;
} dpu_results_t;

/* Fault kinds of the `faults` kernel. */
enum {
    FAULT_NONE,
    FAULT_MRAM_UNALIGNED,
    FAULT_SIZE_SMALL,
    FAULT_SIZE_LARGE,
    FAULT_SIZE_ODD,
    FAULT_WRAM_UNALIGNED,
    FAULT_OUT_OF_BOUNDS,
    FAULT_NOT_MRAM,
    FAULT_HALT,
    FAULT_HEAP,
    FAULT_DEADLOCK,
    FAULT_WRITE_OUT_OF_BOUNDS,
    FAULT_DIRECT_MRAM,
    FAULT_STACK_OVERFLOW,
    FAULT_KINDS
};

#endif
