/* perfcounter: tasklet 0 resets the DPU's counter, every tasklet issues `reads` 64-byte reads,
 * and after a barrier all tasklets see the same modelled count. */
#include <barrier.h>
#include <defs.h>
#include <mram.h>
#include <perfcounter.h>
#include <stdint.h>

__host uint32_t reads;
__host uint64_t seen[NR_TASKLETS];
__host uint64_t before_reset;
__host uint32_t clocks_per_sec;
BARRIER_INIT(reset_done, NR_TASKLETS);
BARRIER_INIT(reads_done, NR_TASKLETS);

int main(void)
{
    __dma_aligned uint64_t buffer[8];
    if (me() == 0) {
        mram_read(DPU_MRAM_HEAP_POINTER, buffer, 8); /* counted before the reset */
        before_reset = perfcounter_config(COUNT_CYCLES, true);
        clocks_per_sec = CLOCKS_PER_SEC;
    }
    barrier_wait(&reset_done);
    for (uint32_t i = 0; i < reads; i++)
        mram_read((__mram_ptr uint8_t *)DPU_MRAM_HEAP_POINTER + 64 * i, buffer, sizeof(buffer));
    barrier_wait(&reads_done);
    seen[me()] = perfcounter_get();
    return 0;
}
