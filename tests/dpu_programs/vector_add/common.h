/* Host/DPU ABI of the vector-add test program: fixed-width fields only, 8-byte multiple. */
#ifndef VECTOR_ADD_COMMON_H
#define VECTOR_ADD_COMMON_H

#include <stdint.h>

/* Bytes each tasklet moves per DMA (8..2048, multiple of 8). */
#define BLOCK_BYTES 256

typedef struct {
    uint32_t size_bytes;   /* bytes of A (and B, C) this DPU adds; a multiple of 8 */
    uint32_t stride_bytes; /* distance between A, B and C in MRAM: the common per-DPU size */
} dpu_arguments_t;

#endif
