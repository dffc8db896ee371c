/* WRAM heap (SDK alloc.h) for the updlrm emulator: an 8-byte-aligned bump allocator over the
 * DPU's WRAM left after globals and stacks; it is not reset by a launch (call mem_reset()).
 * Exhausting the heap faults the DPU. */
#ifndef _DPUSYS_ALLOC_H_
#define _DPUSYS_ALLOC_H_

#include <stddef.h>
#include "dpu_emu_rt.h"

static inline void *mem_alloc(size_t size) { return __dpu_emu_mem_alloc((uint32_t)size); }
static inline void *mem_reset(void) { return __dpu_emu_mem_reset(); }

#endif /* _DPUSYS_ALLOC_H_ */
