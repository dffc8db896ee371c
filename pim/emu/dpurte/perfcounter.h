/* Performance counter (SDK perfcounter.h) for the updlrm emulator.
 * The value is a MODELLED cycle count, not a measurement: the DPU's counter advances by
 * alpha + size/2 cycles per MRAM DMA (alpha 77 read / 61 write; PrIM latency model) and
 * instructions are not counted. COUNT_INSTRUCTIONS counts the same model. */
#ifndef _DPUSYS_PERFCOUNTER_H_
#define _DPUSYS_PERFCOUNTER_H_

#include <stdbool.h>
#include <stdint.h>
#include "dpu_emu_rt.h"

typedef uint64_t perfcounter_t;

typedef enum _perfcounter_config_t {
    COUNT_SAME = 0,
    COUNT_CYCLES = 1,
    COUNT_INSTRUCTIONS = 2,
    COUNT_NOTHING = 3,
    COUNT_DISABLE_BOTH = 6,
    COUNT_ENABLE_BOTH = 7,
} perfcounter_config_t;

typedef struct {
    perfcounter_t cycles;
    perfcounter_t instr;
} perfcounter_pair_t;

/** Sets what is counted and optionally resets; returns the value before the call. */
static inline perfcounter_t perfcounter_config(perfcounter_config_t config, bool reset_value)
{
    return __dpu_emu_perfcounter_config((uint32_t)config, reset_value);
}

static inline perfcounter_t perfcounter_get(void) { return __dpu_emu_perfcounter_get(); }

static inline perfcounter_pair_t perfcounter_get_both(bool should_reset)
{
    perfcounter_pair_t pair;
    pair.cycles = should_reset ? __dpu_emu_perfcounter_config(COUNT_SAME, 1) : __dpu_emu_perfcounter_get();
    pair.instr = pair.cycles;
    return pair;
}

/* The DPU's clock (350 MHz), replacing the host <time.h> macro of the same name. */
#undef CLOCKS_PER_SEC
#define CLOCKS_PER_SEC (__dpu_emu_clocks_per_sec)

#endif /* _DPUSYS_PERFCOUNTER_H_ */
