/* Sum of this DPU's int32 values (at the MRAM heap pointer) into the __host dpu_sum.
 * Every tasklet sums a strided share, then adds it to a shared total under a mutex. */
#include <alloc.h>
#include <barrier.h>
#include <defs.h>
#include <mram.h>
#include <mutex.h>
#include <stdint.h>

#define BLOCK_BYTES 512

__host uint32_t nr_elements; /* even, so the byte size is a multiple of 8 */
__host int64_t dpu_sum;

BARRIER_INIT(sum_barrier, NR_TASKLETS);
MUTEX_INIT(sum_mutex);

static int64_t shared_sum;

int main(void) {
    unsigned int tasklet_id = me();
    if (tasklet_id == 0) {
        mem_reset();
        shared_sum = 0;
    }
    barrier_wait(&sum_barrier);

    int32_t *block = (int32_t *)mem_alloc(BLOCK_BYTES);
    uint32_t mram_base = (uint32_t)DPU_MRAM_HEAP_POINTER;
    uint32_t size = nr_elements * sizeof(int32_t);
    int64_t local = 0;
    for (uint32_t offset = tasklet_id * BLOCK_BYTES; offset < size;
         offset += NR_TASKLETS * BLOCK_BYTES) {
        uint32_t length = size - offset < BLOCK_BYTES ? size - offset : BLOCK_BYTES;
        mram_read((__mram_ptr void const *)(mram_base + offset), block, length);
        for (uint32_t i = 0; i < length / sizeof(int32_t); i++) {
            local += block[i];
        }
    }

    /* A read-modify-write of shared state: only correct under the mutex. */
    mutex_lock(sum_mutex);
    int64_t total = shared_sum;
    total += local;
    shared_sum = total;
    mutex_unlock(sum_mutex);

    barrier_wait(&sum_barrier);
    if (tasklet_id == 0) {
        dpu_sum = shared_sum;
    }
    return 0;
}
