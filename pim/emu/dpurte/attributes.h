/* DPU attributes (SDK attributes.h) for kernels compiled by gcc for the updlrm emulator.
 * MRAM pointers are ordinary pointers (__mram_ptr is empty); MRAM variables live in their own
 * sections and are translated to MRAM offsets by mram_read / mram_write. Dereferencing an
 * MRAM pointer directly is not supported by the emulator: use mram_read / mram_write. */
#ifndef _DPUSYS_ATTRIBUTES_H_
#define _DPUSYS_ATTRIBUTES_H_

#include <stdint.h>
#include "dpu_emu_rt.h"

#ifndef __section
#define __section(s) __attribute__((section(s)))
#endif
#ifndef __aligned
#define __aligned(a) __attribute__((aligned(a)))
#endif
#ifndef __used
#define __used __attribute__((used))
#endif
#ifndef __noinline
#define __noinline __attribute__((noinline))
#endif

/* __mram_noinit data must not take file space (tables up to 64 MiB): emit a NOBITS section.
 * The trailing comment character swallows the section flags gcc appends (clang quotes section
 * names, so it gets an ordinary section: correct, but the zeros take file space). */
#if defined(__clang__)
#define __DPU_EMU_NOINIT_SECTION __attribute__((section("dpu_mram_noinit")))
#elif defined(__x86_64__) || defined(__i386__)
#define __DPU_EMU_NOINIT_SECTION __attribute__((section("dpu_mram_noinit,\"aw\",@nobits#")))
#elif defined(__aarch64__)
#define __DPU_EMU_NOINIT_SECTION __attribute__((section("dpu_mram_noinit,\"aw\",%nobits//")))
#else
#define __DPU_EMU_NOINIT_SECTION __attribute__((section("dpu_mram_noinit")))
#endif

#define __dma_aligned __aligned(8)
#define __mram_ptr
#define __mram __attribute__((section("dpu_mram"))) __dma_aligned __used
#define __mram_noinit __DPU_EMU_NOINIT_SECTION __dma_aligned __used
#define __mram_keep __mram
#define __mram_noinit_keep __mram_noinit
#define __host __aligned(8) __used __attribute__((section("dpu_host")))
#define __keep __used
#define __atomic_bit

/** First free MRAM address after the program's MRAM variables (a 32-bit MRAM address). */
#define DPU_MRAM_HEAP_POINTER ((__mram_ptr void *)(uintptr_t)__dpu_emu_mram_heap_pointer())

#endif /* _DPUSYS_ATTRIBUTES_H_ */
