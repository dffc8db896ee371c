/* PrIM-style vector addition: C = A + B over uint32, inputs at DPU_MRAM_HEAP_POINTER,
 * tasklet-strided blocks, a barrier after the heap reset, cycle count per tasklet. */
#include <alloc.h>
#include <barrier.h>
#include <defs.h>
#include <mram.h>
#include <perfcounter.h>
#include <stdint.h>
#include <stdio.h>

#include "../common.h"

__host dpu_arguments_t DPU_INPUT_ARGUMENTS;
__host dpu_results_t DPU_RESULTS[NR_TASKLETS];

BARRIER_INIT(my_barrier, NR_TASKLETS);

static void vector_add(uint32_t *bufferB, uint32_t *bufferA, unsigned int l_size)
{
    for (unsigned int i = 0; i < l_size; i++)
        bufferB[i] += bufferA[i];
}

int main(void)
{
    unsigned int tasklet_id = me();
    if (tasklet_id == 0) {
        mem_reset();
        perfcounter_config(COUNT_CYCLES, true);
    }
    barrier_wait(&my_barrier);

    uint32_t input_size_dpu_bytes = DPU_INPUT_ARGUMENTS.size;
    uint32_t input_size_dpu_bytes_transfer = DPU_INPUT_ARGUMENTS.transfer_size;
    uint32_t base_tasklet = tasklet_id << 8; /* tasklet_id * BLOCK_SIZE */
    uint32_t mram_base_addr_A = (uint32_t)DPU_MRAM_HEAP_POINTER;
    uint32_t mram_base_addr_B = (uint32_t)(DPU_MRAM_HEAP_POINTER + input_size_dpu_bytes_transfer);

    uint32_t *cache_A = (uint32_t *)mem_alloc(BLOCK_SIZE);
    uint32_t *cache_B = (uint32_t *)mem_alloc(BLOCK_SIZE);
    uint64_t sum = 0;

    for (unsigned int byte_index = base_tasklet; byte_index < input_size_dpu_bytes; byte_index += BLOCK_SIZE * NR_TASKLETS) {
        uint32_t l_size_bytes = (byte_index + BLOCK_SIZE >= input_size_dpu_bytes) ? (input_size_dpu_bytes - byte_index) : BLOCK_SIZE;
        mram_read((__mram_ptr void const *)(mram_base_addr_A + byte_index), cache_A, (l_size_bytes + 7) & ~7u);
        mram_read((__mram_ptr void const *)(mram_base_addr_B + byte_index), cache_B, (l_size_bytes + 7) & ~7u);
        vector_add(cache_B, cache_A, l_size_bytes >> 2);
        for (unsigned int i = 0; i < l_size_bytes >> 2; i++)
            sum += cache_B[i];
        mram_write(cache_B, (__mram_ptr void *)(mram_base_addr_B + byte_index), (l_size_bytes + 7) & ~7u);
    }
    DPU_RESULTS[tasklet_id].cycles = perfcounter_get();
    DPU_RESULTS[tasklet_id].sum = sum;
    if (tasklet_id == 0)
        printf("vecadd done, %u bytes\n", input_size_dpu_bytes);
    return 0;
}
