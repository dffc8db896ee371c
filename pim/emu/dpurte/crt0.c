/* Start-up descriptor linked into every emulator kernel by `updlrm.pim.toolchain cc`
 * (the counterpart of the SDK's crt0 + linker script: NR_TASKLETS and STACK_SIZE_DEFAULT are
 * taken at link time, as the SDK's compiler driver does). */
#include "dpu_emu_rt.h"

#ifndef NR_TASKLETS
#define NR_TASKLETS 1
#endif
#ifndef STACK_SIZE_DEFAULT
#define STACK_SIZE_DEFAULT 1024
#endif

_Static_assert(NR_TASKLETS >= 1 && NR_TASKLETS <= 24, "NR_TASKLETS must be in 1..24");
_Static_assert(STACK_SIZE_DEFAULT > 0 && STACK_SIZE_DEFAULT % 8 == 0, "STACK_SIZE_DEFAULT must be a positive multiple of 8");

int main(void);

__attribute__((visibility("default"), used)) const struct dpu_emu_kernel_info __dpu_emu_kernel_info = {
    DPU_EMU_KERNEL_MAGIC, DPU_EMU_KERNEL_ABI, NR_TASKLETS, STACK_SIZE_DEFAULT, main,
};
