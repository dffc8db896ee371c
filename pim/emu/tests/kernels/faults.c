/* Breaks one DPU rule chosen by the host in `mode`, from tasklet `culprit`. */
#include <alloc.h>
#include <barrier.h>
#include <defs.h>
#include <mram.h>
#include <stdint.h>

#include "../common.h"

__host uint32_t mode;
__host uint32_t culprit;
__host uint32_t reached;
BARRIER_INIT(too_many, NR_TASKLETS + 1);

/* each frame is passed to the next call, so no frame can be dropped or merged */
static __attribute__((noinline)) uint32_t deep(volatile uint8_t *parent, uint32_t n)
{
    volatile uint8_t frame[4096];
    frame[0] = (uint8_t)(parent[0] + 1);
    uint32_t below = n == 0 ? 0 : deep(frame, n - 1);
    return below + frame[0];
}

int main(void)
{
    __dma_aligned uint64_t buffer[512 + 2];
    uint32_t base = (uint32_t)DPU_MRAM_HEAP_POINTER;
    if (me() == 0)
        mem_reset();
    if (me() != culprit) {
        mram_read((__mram_ptr void *)base, buffer, 8);
        if (mode == FAULT_DEADLOCK)
            barrier_wait(&too_many);
        return 0;
    }
    switch (mode) {
    case FAULT_MRAM_UNALIGNED: mram_read((__mram_ptr void *)(base + 4), buffer, 8); break;
    case FAULT_SIZE_SMALL: mram_read((__mram_ptr void *)base, buffer, 4); break;
    case FAULT_SIZE_LARGE: mram_read((__mram_ptr void *)base, buffer, 4096); break;
    case FAULT_SIZE_ODD: mram_write(buffer, (__mram_ptr void *)base, 12); break;
    case FAULT_WRAM_UNALIGNED: mram_read((__mram_ptr void *)base, (uint8_t *)buffer + 4, 8); break;
    case FAULT_OUT_OF_BOUNDS: mram_read((__mram_ptr void *)(0x08000000u + (64u << 20) - 8), buffer, 16); break;
    case FAULT_NOT_MRAM: mram_read((__mram_ptr void *)buffer, buffer + 1, 8); break;
    case FAULT_HALT: halt(); break;
    case FAULT_HEAP:
        for (int i = 0; i < 100; i++)
            mem_alloc(1024);
        break;
    case FAULT_DEADLOCK: barrier_wait(&too_many); break;
    case FAULT_WRITE_OUT_OF_BOUNDS: mram_write(buffer, (__mram_ptr void *)(0x08000000u + (64u << 20)), 8); break;
    case FAULT_DIRECT_MRAM: reached = (uint32_t) * (volatile uint64_t *)DPU_MRAM_HEAP_POINTER; break;
    case FAULT_STACK_OVERFLOW: reached = deep((volatile uint8_t *)buffer, 1u << 20); break;
    default: break;
    }
    reached = 1; /* not reached when the fault stops the DPU */
    return 0;
}
