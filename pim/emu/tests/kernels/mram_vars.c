/* __mram and __mram_noinit variables as DMA targets and host symbols, seqread, printf. */
#include <alloc.h>
#include <defs.h>
#include <mram.h>
#include <seqread.h>
#include <stdint.h>
#include <stdio.h>

__mram uint64_t initialised[4] = {11, 22, 33, 44};
__mram_noinit uint64_t table[1 << 20]; /* 8 MiB, no file space */
__mram_noinit uint64_t doubled[4];
__host uint64_t sum_initialised;
__host uint64_t seq_sum;
__host uint32_t seq_count;

int main(void)
{
    if (me() != 0)
        return 0;
    mem_reset();
    __dma_aligned uint64_t buf[4];
    mram_read(initialised, buf, sizeof(buf));
    sum_initialised = buf[0] + buf[1] + buf[2] + buf[3];
    for (int i = 0; i < 4; i++)
        buf[i] *= 2;
    mram_write(buf, doubled, sizeof(buf));
    /* past the end of an MRAM array is the following MRAM, here the heap */
    buf[0] = 0x5eed;
    mram_write(buf, &initialised[4], 8);
    /* table[0..seq_count) written by the host; sum it with a sequential reader from an odd start */
    seqreader_t reader;
    uint64_t *p = seqread_init(seqread_alloc(), &table[0], &reader);
    uint64_t s = 0;
    for (uint32_t i = 0; i < seq_count; i++) {
        s += *p;
        p = seqread_get(p, sizeof(uint64_t), &reader);
    }
    seq_sum = s;
    printf("sum=%llu seq=%llu\n", (unsigned long long)sum_initialised, (unsigned long long)seq_sum);
    return 0;
}
