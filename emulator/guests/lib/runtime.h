/*
 * The guests' freestanding runtime: UART output, a small printf, memory functions, power-off,
 * CSR access, the CLINT timer and user-mode tasks. No libc; clang may still emit calls to
 * memset/memcpy, so those are here too.
 */
#ifndef LIVESNAP_GUEST_RUNTIME_H
#define LIVESNAP_GUEST_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "trap_frame.h"

/* The QEMU virt memory map (hw/riscv/virt.c), which livesnap's emulator follows. */
#define RAM_BASE 0x80000000u
#define UART0_BASE 0x10000000u
#define CLINT_BASE 0x02000000u
#define CLINT_MSIP (CLINT_BASE + 0x0)
#define CLINT_MTIMECMP (CLINT_BASE + 0x4000)
#define CLINT_MTIME (CLINT_BASE + 0xBFF8)
#define TEST_BASE 0x00100000u
/* The PLIC (hw/intc/sifive_plic.c as virt.c configures it): context 0 is hart 0's M-mode. */
#define PLIC_BASE 0x0c000000u
#define PLIC_PRIORITY(irq) (PLIC_BASE + 4u * (irq))
#define PLIC_PENDING(word) (PLIC_BASE + 0x1000u + 4u * (word))
#define PLIC_ENABLE(ctx, word) (PLIC_BASE + 0x2000u + 0x80u * (ctx) + 4u * (word))
#define PLIC_THRESHOLD(ctx) (PLIC_BASE + 0x200000u + 0x1000u * (ctx))
#define PLIC_CLAIM(ctx) (PLIC_BASE + 0x200004u + 0x1000u * (ctx))
#define UART0_IRQ 10

/* mcause values (privileged spec 3.1.15). */
#define MCAUSE_INTERRUPT 0x80000000u
#define IRQ_M_SOFT 3
#define IRQ_M_TIMER 7
#define IRQ_M_EXT 11
#define EXC_INSN_MISALIGNED 0
#define EXC_INSN_ACCESS 1
#define EXC_ILLEGAL_INSN 2
#define EXC_BREAKPOINT 3
#define EXC_LOAD_MISALIGNED 4
#define EXC_LOAD_ACCESS 5
#define EXC_STORE_MISALIGNED 6
#define EXC_STORE_ACCESS 7
#define EXC_ECALL_U 8
#define EXC_ECALL_M 11

#define MIE_MSIE 0x8
#define MIE_MTIE 0x80
#define MIE_MEIE 0x800

#define csr_read(csr)                                     \
  ({                                                      \
    uint32_t v_;                                          \
    __asm__ volatile("csrr %0, " #csr : "=r"(v_));        \
    v_;                                                   \
  })
#define csr_write(csr, val) __asm__ volatile("csrw " #csr ", %0" ::"rK"(val))
#define csr_set(csr, bits) __asm__ volatile("csrs " #csr ", %0" ::"rK"(bits))
#define csr_clear(csr, bits) __asm__ volatile("csrc " #csr ", %0" ::"rK"(bits))

static inline void mmio_write32(uint32_t addr, uint32_t v) {
  *(volatile uint32_t *)(uintptr_t)addr = v;
}
static inline uint32_t mmio_read32(uint32_t addr) {
  return *(volatile uint32_t *)(uintptr_t)addr;
}

/* uart.c */
void uart_putc(char c);
void print(const char *s);
void print_hex32(uint32_t v); /* 0x%08x */
void print_u32(uint32_t v);
/* printf subset: %s %c %d %u %x %X %p %%, a width with flag "0" (numbers) or "-" (%s only),
 * and "ll" with x/X. */
void printf(const char *fmt, ...);

/* power.c: the SiFive test device. Exit status 0 powers off with success, anything else with
 * failure code (status & 0xffff); QEMU turns the code into its own exit status. */
__attribute__((noreturn)) void poweroff(uint32_t status);

/* mem.c */
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/* clint.c: the timer counts at 10 MHz on QEMU; in livesnap's emulator it advances with retired
 * instructions. Never let printed output depend on how many ticks happened. */
uint64_t clint_mtime(void);
void clint_set_mtimecmp(uint64_t when);
void clint_set_msip(uint32_t v);

/* trap.c: trap_entry (crt0.S) calls trap_handler, which dispatches to these hooks. Each has a
 * weak default; a guest overrides the ones it needs. */
void on_timer_interrupt(struct trap_frame *f);
void on_software_interrupt(struct trap_frame *f);
void on_external_interrupt(struct trap_frame *f);
/* Return 0 to resume at f->mepc (adjust it first), or 1 to end the current user task with
 * result f->regs[10]. The default prints the trap and powers off with failure code 0x7f. */
uint32_t on_exception(struct trap_frame *f);
const char *trap_cause_name(uint32_t mcause);

/* user.c / crt0.S: run fn(arg) in user mode on its own stack; returns fn's result, or the code
 * on_exception put into a0 when it killed the task. */
uint32_t run_user(uint32_t (*fn)(uint32_t), uint32_t arg, void *user_stack_top);
/* System calls for user code. */
void sys_putc(char c);
void sys_write(const char *s, uint32_t len);
void sys_print(const char *s);

/* The first free page after the stack (link.ld). */
extern char __heap_start[];
/* a1 at boot: the device tree's address on QEMU (placed in the top 2 MiB of RAM), or 0. */
extern uint32_t boot_fdt;
/* The end of the memory a guest may use from __heap_start on: boot_fdt if it lies in RAM,
 * otherwise 0 (unknown: the caller must trust its configuration). */
uint32_t heap_limit(void);
/* The retired-instruction counter (minstret/minstreth). */
uint64_t instret(void);

#endif
