/* WRONG ON PURPOSE: all tasklets share one WRAM buffer between a DMA and its use. Correct only
 * if tasklets run one after another; with real interleaving tasklets read each other's data. */
#include <defs.h>
#include <mram.h>
#include <stdint.h>

__host uint64_t out[NR_TASKLETS];
__dma_aligned uint64_t shared_buffer[1];

int main(void)
{
    uint32_t id = me();
    mram_read((__mram_ptr uint64_t *)DPU_MRAM_HEAP_POINTER + id, shared_buffer, 8);
    out[id] = shared_buffer[0];
    return 0;
}
