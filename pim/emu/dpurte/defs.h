/* DPU system definitions (SDK defs.h) for the updlrm emulator. */
#ifndef _DPUSYS_DEFS_H_
#define _DPUSYS_DEFS_H_

#include <stdint.h>
#include "attributes.h"
#include "dpu_emu_rt.h"

typedef unsigned int sysname_t;
typedef unsigned int thread_id_t;

/** Id of the running tasklet, 0 .. NR_TASKLETS-1. */
static inline sysname_t me(void) { return __dpu_emu_me(); }

/** Stops the DPU with a fault (the host sees DPU_ERR_DPU_FAULT). */
static inline void halt(void) { __dpu_emu_halt(); }

/** Remaining 32-bit words of the tasklet's stack (emulator: of its STACK_SIZE_DEFAULT budget). */
static inline int check_stack(void) { return __dpu_emu_check_stack(); }

#endif /* _DPUSYS_DEFS_H_ */
