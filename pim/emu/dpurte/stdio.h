/* DPU stdio for the updlrm emulator: printf, puts and putchar write into the DPU's log buffer
 * (read on the host with dpu_log_read); everything else is the host's <stdio.h>. */
#include_next <stdio.h>

#ifndef _DPU_EMU_STDIO_H_
#define _DPU_EMU_STDIO_H_
#include "dpu_emu_rt.h"
#define printf __dpu_emu_printf
#define puts __dpu_emu_puts
#define putchar __dpu_emu_putchar
#endif
