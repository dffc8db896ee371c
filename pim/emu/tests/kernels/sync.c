/* Semaphores and handshakes. A semaphore of 1 protects a read-modify-write around a DMA; a
 * handshake chain makes tasklet i wait for tasklet i+1, so the order is last-to-first. */
#include <defs.h>
#include <handshake.h>
#include <mram.h>
#include <sem.h>
#include <stdint.h>

__host uint64_t counter;
__host uint32_t order[NR_TASKLETS];
__host uint32_t order_len;
__host int32_t handshake_status[3];
SEMAPHORE_INIT(lock, 1);

int main(void)
{
    uint32_t id = me();
    __dma_aligned uint64_t word = 0;
    for (int round = 0; round < 3; round++) {
        sem_take(&lock);
        uint64_t seen = counter;
        mram_write(&word, DPU_MRAM_HEAP_POINTER, 8);
        counter = seen + 1;
        sem_give(&lock);
    }
    if (id + 1 < NR_TASKLETS)
        handshake_wait_for(id + 1);
    order[order_len++] = id;
    if (id > 0)
        handshake_notify();
    if (id == 0) {
        handshake_status[0] = handshake_wait_for(0);           /* itself: EINVAL */
        handshake_status[1] = handshake_wait_for(NR_TASKLETS); /* no such tasklet: EINVAL */
        handshake_status[2] = 0;
    }
    return 0;
}
