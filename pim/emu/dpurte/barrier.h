/* Barriers (SDK barrier.h) for the updlrm emulator. */
#ifndef _DPUSYS_BARRIER_H_
#define _DPUSYS_BARRIER_H_

#include <stdint.h>
#include "dpu_emu_rt.h"

typedef struct barrier_t {
    uint32_t count;          /**< tasklets still expected in this round */
    uint32_t initial_count;
    uint32_t generation;     /**< rounds completed */
} barrier_t;

/** Defines a barrier for `counter` tasklets (file scope; counter in 1..127). */
#define BARRIER_INIT(_name, _counter)                                                   \
    _Static_assert((_counter) > 0 && (_counter) < 128, "barrier counter must be in 1..127"); \
    barrier_t _name = {(_counter), (_counter), 0}

/** Blocks until `counter` tasklets have called it; the last one re-arms the barrier. */
static inline void barrier_wait(barrier_t *barrier) { __dpu_emu_barrier_wait(barrier); }

#endif /* _DPUSYS_BARRIER_H_ */
