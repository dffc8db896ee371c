/* Reduction with a mutex: every tasklet sums its strided 8-byte words of the input at
 * DPU_MRAM_HEAP_POINTER and adds its partial sum to a shared total under a mutex. The
 * read-modify-write spans a DMA, so without the mutex updates would be lost. */
#include <alloc.h>
#include <barrier.h>
#include <defs.h>
#include <mram.h>
#include <mutex.h>
#include <stdint.h>

__host uint32_t nr_words;
__host uint64_t total;
__host uint64_t partial[NR_TASKLETS];
__mram_noinit uint64_t scratch[8];

MUTEX_INIT(total_mutex);
BARRIER_INIT(start, NR_TASKLETS);

int main(void)
{
    uint32_t id = me();
    if (id == 0) {
        total = 0;
        mem_reset();
    }
    barrier_wait(&start);
    __dma_aligned uint64_t word[4];
    uint64_t sum = 0;
    for (uint32_t i = id; i < nr_words; i += NR_TASKLETS) {
        mram_read((__mram_ptr uint64_t *)DPU_MRAM_HEAP_POINTER + i, word, 8);
        sum += word[0];
    }
    partial[id] = sum;
    mutex_lock(total_mutex);
    uint64_t seen = total;
    word[1] = seen;
    mram_write(&word[1], &scratch[id % 8], 8); /* a DMA inside the critical section */
    total = seen + sum;
    mutex_unlock(total_mutex);
    return 0;
}
