/* Emulator speed probe: each tasklet gathers random 64-float rows (256-byte DMAs) and sums
 * them, reading its indices in 256-byte blocks: the access pattern of an embedding bag. */
#include <defs.h>
#include <mram.h>
#include <stdint.h>

#define DIM 64
#define INDEX_BLOCK 64

__host uint32_t nr_rows;
__host uint32_t lookups_per_tasklet;
__host float result[NR_TASKLETS][DIM];

int main(void)
{
    uint32_t id = me();
    __dma_aligned float row[DIM];
    __dma_aligned float acc[DIM];
    __dma_aligned uint32_t index[INDEX_BLOCK];
    uint32_t table = (uint32_t)DPU_MRAM_HEAP_POINTER;
    uint32_t indices = table + nr_rows * DIM * sizeof(float) + id * lookups_per_tasklet * sizeof(uint32_t);
    for (int d = 0; d < DIM; d++)
        acc[d] = 0.0f;
    for (uint32_t j = 0; j < lookups_per_tasklet; j += INDEX_BLOCK) {
        mram_read((__mram_ptr void *)(indices + j * sizeof(uint32_t)), index, sizeof(index));
        for (uint32_t k = 0; k < INDEX_BLOCK && j + k < lookups_per_tasklet; k++) {
            mram_read((__mram_ptr void *)(table + index[k] * DIM * sizeof(float)), row, sizeof(row));
            for (int d = 0; d < DIM; d++)
                acc[d] += row[d];
        }
    }
    for (int d = 0; d < DIM; d++)
        result[id][d] = acc[d];
    return 0;
}
