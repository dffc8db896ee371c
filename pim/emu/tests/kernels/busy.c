/* Issues `iterations` DMAs per tasklet: a kernel that runs long enough to be seen running. */
#include <defs.h>
#include <mram.h>
#include <stdint.h>

__host uint32_t iterations;
__host uint64_t checksum[NR_TASKLETS];

int main(void)
{
    __dma_aligned uint64_t word;
    uint64_t s = 0;
    for (uint32_t i = 0; i < iterations; i++) {
        mram_read((__mram_ptr uint64_t *)DPU_MRAM_HEAP_POINTER + (i & 1023), &word, 8);
        s += word + i;
    }
    checksum[me()] = s;
    return 0;
}
