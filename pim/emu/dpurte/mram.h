/* MRAM DMA (SDK mram.h) for the updlrm emulator.
 * Both functions check the SDK rules and fault the DPU (DPU_ERR_DPU_FAULT at the host, with
 * tasklet and address in the DPU log) when one is broken: 8 <= nb_of_bytes <= 2048,
 * nb_of_bytes % 8 == 0, MRAM and WRAM addresses 8-byte aligned, access inside the 64 MiB MRAM.
 * The calling tasklet yields to the next one after every DMA. */
#ifndef _DPUSYS_MRAM_H_
#define _DPUSYS_MRAM_H_

#include "attributes.h"
#include "dpu_emu_rt.h"

static inline void mram_read(const __mram_ptr void *from, void *to, unsigned int nb_of_bytes)
{
    __dpu_emu_mram_read((const void *)from, to, nb_of_bytes);
}

static inline void mram_write(const void *from, __mram_ptr void *to, unsigned int nb_of_bytes)
{
    __dpu_emu_mram_write(from, (void *)to, nb_of_bytes);
}

#endif /* _DPUSYS_MRAM_H_ */
