/* SDK sysdef.h: the system types, here provided by defs.h. */
#include "defs.h"
