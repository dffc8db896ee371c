/* Kernel for the Python binding tests: symbols of known sizes in WRAM and MRAM, a checksum of
 * what the host wrote, optional busy work (to keep an asynchronous launch running), printf, and
 * a DMA fault on request. */
#include <defs.h>
#include <mram.h>
#include <stdint.h>
#include <stdio.h>

#define MRAM_WORDS 64

__host uint32_t wram_words[8];                 /* 32 bytes of WRAM */
__mram_noinit uint64_t mram_words[MRAM_WORDS]; /* 512 bytes of MRAM */
__host uint32_t spin_rounds;                   /* busy-work iterations of tasklet 0 */
__host uint32_t fault_mode;                    /* 1: a DMA of 12 bytes, which must fault */
__host uint64_t checksum;                      /* sum of wram_words and mram_words */

static __dma_aligned uint64_t words[MRAM_WORDS]; /* tasklet 0's WRAM copy of mram_words */

int main(void) {
    if (me() == 0) {
        mram_read(mram_words, words, fault_mode == 1 ? 12 : sizeof(words));
        uint64_t sum = 0;
        for (uint32_t i = 0; i < MRAM_WORDS; i++) {
            sum += words[i];
        }
        for (uint32_t i = 0; i < 8; i++) {
            sum += wram_words[i];
        }
        volatile uint32_t sink = 0;
        for (uint32_t i = 0; i < spin_rounds; i++) {
            sink += i;
        }
        checksum = sum;
        printf("tasklet %u of %u: checksum %u\n", me(), NR_TASKLETS, (uint32_t)sum);
    }
    return 0;
}
