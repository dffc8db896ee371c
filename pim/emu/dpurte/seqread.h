/* Sequential MRAM reader (SDK seqread.h) for the updlrm emulator: a window of
 * 2 * SEQREAD_CACHE_SIZE bytes of WRAM slides over MRAM in steps of SEQREAD_CACHE_SIZE. */
#ifndef _DPUSYS_SEQREAD_H_
#define _DPUSYS_SEQREAD_H_

#include <stdint.h>
#include "alloc.h"
#include "attributes.h"
#include "mram.h"

#ifndef SEQREAD_CACHE_SIZE
#define SEQREAD_CACHE_SIZE 256
#endif
#if SEQREAD_CACHE_SIZE != 32 && SEQREAD_CACHE_SIZE != 64 && SEQREAD_CACHE_SIZE != 128 && \
    SEQREAD_CACHE_SIZE != 256 && SEQREAD_CACHE_SIZE != 512 && SEQREAD_CACHE_SIZE != 1024
#error "SEQREAD_CACHE_SIZE must be 32, 64, 128, 256, 512 or 1024"
#endif

typedef uintptr_t seqreader_buffer_t;

typedef struct {
    seqreader_buffer_t wram_cache;
    uintptr_t mram_addr; /**< MRAM address of wram_cache[0] */
} seqreader_t;

/** Allocates the reader's WRAM window (call once per reader, e.g. after mem_reset). */
static inline seqreader_buffer_t seqread_alloc(void)
{
    return (seqreader_buffer_t)mem_alloc(2 * SEQREAD_CACHE_SIZE);
}

static inline void __seqread_fill(seqreader_t *reader)
{
    mram_read((__mram_ptr void *)reader->mram_addr, (void *)reader->wram_cache, 2 * SEQREAD_CACHE_SIZE);
}

/** Points the reader at `mram_addr` (any alignment); returns the WRAM address of that byte. */
static inline void *seqread_init(seqreader_buffer_t cache, __mram_ptr void *mram_addr, seqreader_t *reader)
{
    uintptr_t addr = (uintptr_t)mram_addr;
    reader->wram_cache = cache;
    reader->mram_addr = addr & ~(uintptr_t)7;
    __seqread_fill(reader);
    return (void *)(cache + (addr - reader->mram_addr));
}

/** Advances `ptr` by `inc` bytes (inc < SEQREAD_CACHE_SIZE); returns the new WRAM address. */
static inline void *seqread_get(void *ptr, uint32_t inc, seqreader_t *reader)
{
    uintptr_t p = (uintptr_t)ptr + inc;
    if (p >= reader->wram_cache + SEQREAD_CACHE_SIZE) {
        reader->mram_addr += SEQREAD_CACHE_SIZE;
        __seqread_fill(reader);
        p -= SEQREAD_CACHE_SIZE;
    }
    return (void *)p;
}

/** Moves the reader to `mram_addr`; returns the WRAM address of that byte. */
static inline void *seqread_seek(__mram_ptr void *mram_addr, seqreader_t *reader)
{
    return seqread_init(reader->wram_cache, mram_addr, reader);
}

/** MRAM address of the byte that `ptr` (from this reader) points at. */
static inline __mram_ptr void *seqread_tell(void *ptr, seqreader_t *reader)
{
    return (__mram_ptr void *)(reader->mram_addr + ((uintptr_t)ptr - reader->wram_cache));
}

#endif /* _DPUSYS_SEQREAD_H_ */
