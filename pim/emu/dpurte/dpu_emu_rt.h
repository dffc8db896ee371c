/* Interface between a DPU kernel compiled by gcc and the updlrm DPU emulator library.
 * Kernels use the SDK-named wrappers in the other headers of this folder, not these. */
#ifndef DPU_EMU_RT_H
#define DPU_EMU_RT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** MRAM starts at this address in the DPU memory map (as in the SDK linker script). An MRAM
 * address is a 32-bit integer: 0x08000000 + offset, so `(uint32_t)DPU_MRAM_HEAP_POINTER + off`
 * works; __mram variables are translated to their MRAM offset by the emulator. */
#define DPU_EMU_MRAM_BASE 0x08000000u

/** Kernel descriptor defined by crt0.c in every kernel. */
struct dpu_emu_kernel_info {
    uint32_t magic;          /**< DPU_EMU_KERNEL_MAGIC */
    uint32_t abi_version;    /**< DPU_EMU_KERNEL_ABI */
    uint32_t nr_tasklets;    /**< NR_TASKLETS at link time */
    uint32_t stack_size;     /**< STACK_SIZE_DEFAULT (bytes of WRAM per tasklet, for WRAM accounting) */
    int (*main)(void);
};
#define DPU_EMU_KERNEL_MAGIC 0x44505545u /* "EUPD" */
#define DPU_EMU_KERNEL_ABI 1u
#define DPU_EMU_KERNEL_INFO_SYMBOL "__dpu_emu_kernel_info"

uint32_t __dpu_emu_me(void);
void __dpu_emu_halt(void) __attribute__((noreturn));
void __dpu_emu_mram_read(const void *from, void *to, unsigned int nb_of_bytes);
void __dpu_emu_mram_write(const void *from, void *to, unsigned int nb_of_bytes);
uint32_t __dpu_emu_mram_heap_pointer(void);
void *__dpu_emu_mem_alloc(uint32_t size);
void *__dpu_emu_mem_reset(void);
void __dpu_emu_barrier_wait(void *barrier);
void __dpu_emu_mutex_lock(uint8_t *mutex);
int __dpu_emu_mutex_trylock(uint8_t *mutex);
void __dpu_emu_mutex_unlock(uint8_t *mutex);
void __dpu_emu_sem_take(int32_t *count);
void __dpu_emu_sem_give(int32_t *count);
void __dpu_emu_handshake_notify(void);
int __dpu_emu_handshake_wait_for(uint32_t notifier);
uint64_t __dpu_emu_perfcounter_config(uint32_t config, int reset_value);
uint64_t __dpu_emu_perfcounter_get(void);
int __dpu_emu_check_stack(void);
int __dpu_emu_printf(const char *format, ...) __attribute__((format(printf, 1, 2)));
int __dpu_emu_puts(const char *s);
int __dpu_emu_putchar(int c);
extern const volatile uint32_t __dpu_emu_clocks_per_sec;

#ifdef __cplusplus
}
#endif

#endif /* DPU_EMU_RT_H */
