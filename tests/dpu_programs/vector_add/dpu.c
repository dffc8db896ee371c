/* C = A + B on int32 vectors in MRAM: A at the heap pointer, B and C one stride further each.
 * Tasklet t handles blocks t, t + NR_TASKLETS, ...; the last block is trimmed. */
#include <alloc.h>
#include <barrier.h>
#include <defs.h>
#include <mram.h>
#include <stdint.h>

#include "common.h"

__host dpu_arguments_t DPU_INPUT_ARGUMENTS;

BARRIER_INIT(start_barrier, NR_TASKLETS);

int main(void) {
    unsigned int tasklet_id = me();
    if (tasklet_id == 0) {
        mem_reset();
    }
    barrier_wait(&start_barrier);

    uint32_t size = DPU_INPUT_ARGUMENTS.size_bytes;
    uint32_t mram_a = (uint32_t)DPU_MRAM_HEAP_POINTER;
    uint32_t mram_b = mram_a + DPU_INPUT_ARGUMENTS.stride_bytes;
    uint32_t mram_c = mram_b + DPU_INPUT_ARGUMENTS.stride_bytes;
    int32_t *cache_a = (int32_t *)mem_alloc(BLOCK_BYTES);
    int32_t *cache_b = (int32_t *)mem_alloc(BLOCK_BYTES);

    for (uint32_t offset = tasklet_id * BLOCK_BYTES; offset < size;
         offset += NR_TASKLETS * BLOCK_BYTES) {
        uint32_t length = size - offset < BLOCK_BYTES ? size - offset : BLOCK_BYTES;
        mram_read((__mram_ptr void const *)(mram_a + offset), cache_a, length);
        mram_read((__mram_ptr void const *)(mram_b + offset), cache_b, length);
        for (uint32_t i = 0; i < length / sizeof(int32_t); i++) {
            cache_a[i] += cache_b[i];
        }
        mram_write(cache_a, (__mram_ptr void *)(mram_c + offset), length);
    }
    return 0;
}
