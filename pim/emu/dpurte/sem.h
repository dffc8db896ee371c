/* Counting semaphores (SDK sem.h) for the updlrm emulator. */
#ifndef _DPUSYS_SEM_H_
#define _DPUSYS_SEM_H_

#include <stdint.h>
#include "dpu_emu_rt.h"

typedef struct sem_t {
    int32_t count;
} sem_t;

/** Defines a semaphore with an initial count (file scope). */
#define SEMAPHORE_INIT(_name, _counter) sem_t _name = {(_counter)}

/** Waits until the count is positive, then decrements it. */
static inline void sem_take(sem_t *sem) { __dpu_emu_sem_take(&sem->count); }
/** Increments the count, releasing one waiter. */
static inline void sem_give(sem_t *sem) { __dpu_emu_sem_give(&sem->count); }

#endif /* _DPUSYS_SEM_H_ */
