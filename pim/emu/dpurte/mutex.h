/* Mutexes (SDK mutex.h) for the updlrm emulator. */
#ifndef _DPUSYS_MUTEX_H_
#define _DPUSYS_MUTEX_H_

#include <stdbool.h>
#include <stdint.h>
#include "dpu_emu_rt.h"

typedef uint8_t *mutex_id_t;

/** Defines a mutex `_name` (file scope). */
#define MUTEX_INIT(_name)                                                               \
    uint8_t __dpu_emu_mutex_##_name;                                                    \
    const mutex_id_t _name = &__dpu_emu_mutex_##_name
#define MUTEX_GET(_name) _name

static inline void mutex_lock(mutex_id_t mutex) { __dpu_emu_mutex_lock(mutex); }
static inline bool mutex_trylock(mutex_id_t mutex) { return __dpu_emu_mutex_trylock(mutex) != 0; }
static inline void mutex_unlock(mutex_id_t mutex) { __dpu_emu_mutex_unlock(mutex); }

#endif /* _DPUSYS_MUTEX_H_ */
