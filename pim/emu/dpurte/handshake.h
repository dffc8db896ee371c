/* Handshakes (SDK handshake.h) for the updlrm emulator. */
#ifndef _DPUSYS_HANDSHAKE_H_
#define _DPUSYS_HANDSHAKE_H_

#include <errno.h>
#include "defs.h"
#include "dpu_emu_rt.h"

/** Blocks until another tasklet waits for this one (handshake_wait_for(me())). */
static inline void handshake_notify(void) { __dpu_emu_handshake_notify(); }

/** Blocks until `notifier` calls handshake_notify(). Returns 0, EALREADY if another tasklet
 * already waits for `notifier`, EINVAL if `notifier` is not a tasklet id (or is the caller). */
static inline int handshake_wait_for(sysname_t notifier) { return __dpu_emu_handshake_wait_for(notifier); }

#endif /* _DPUSYS_HANDSHAKE_H_ */
