/* The C half of trap handling: crt0.S saves the registers into a trap_frame and calls here. */
#include "runtime.h"

_Static_assert(__builtin_offsetof(struct trap_frame, mepc) == TF_MEPC, "TF_MEPC");
_Static_assert(__builtin_offsetof(struct trap_frame, mcause) == TF_MCAUSE, "TF_MCAUSE");
_Static_assert(__builtin_offsetof(struct trap_frame, mtval) == TF_MTVAL, "TF_MTVAL");
_Static_assert(__builtin_offsetof(struct trap_frame, mstatus) == TF_MSTATUS, "TF_MSTATUS");
_Static_assert(sizeof(struct trap_frame) == TF_SIZE, "TF_SIZE");

const char *trap_cause_name(uint32_t mcause) {
  if (mcause & MCAUSE_INTERRUPT) {
    switch (mcause & ~MCAUSE_INTERRUPT) {
      case IRQ_M_SOFT: return "machine software interrupt";
      case IRQ_M_TIMER: return "machine timer interrupt";
      case IRQ_M_EXT: return "machine external interrupt";
      default: return "interrupt";
    }
  }
  switch (mcause) {
    case EXC_INSN_MISALIGNED: return "instruction address misaligned";
    case EXC_INSN_ACCESS: return "instruction access fault";
    case EXC_ILLEGAL_INSN: return "illegal instruction";
    case EXC_BREAKPOINT: return "breakpoint";
    case EXC_LOAD_MISALIGNED: return "load address misaligned";
    case EXC_LOAD_ACCESS: return "load access fault";
    case EXC_STORE_MISALIGNED: return "store/AMO address misaligned";
    case EXC_STORE_ACCESS: return "store/AMO access fault";
    case EXC_ECALL_U: return "environment call from U-mode";
    case EXC_ECALL_M: return "environment call from M-mode";
    default: return "exception";
  }
}

static void report_and_fail(struct trap_frame *f) {
  printf("unexpected trap: mcause=0x%08x (%s) mepc=0x%08x mtval=0x%08x\n", f->mcause,
         trap_cause_name(f->mcause), f->mepc, f->mtval);
  poweroff(0x7f);
}

__attribute__((weak)) void on_timer_interrupt(struct trap_frame *f) { report_and_fail(f); }
__attribute__((weak)) void on_software_interrupt(struct trap_frame *f) { report_and_fail(f); }
__attribute__((weak)) void on_external_interrupt(struct trap_frame *f) { report_and_fail(f); }
__attribute__((weak)) uint32_t on_exception(struct trap_frame *f) {
  report_and_fail(f);
  return 0;
}

static uint32_t handle_syscall(struct trap_frame *f) {
  uint32_t *a = &f->regs[10];
  f->mepc += 4; /* ecall is always 4 bytes */
  switch (f->regs[17]) {
    case SYS_PUTC:
      uart_putc((char)a[0]);
      a[0] = 0;
      return 0;
    case SYS_WRITE: {
      /* No MMU: the task's pointers are machine addresses. */
      const char *s = (const char *)(uintptr_t)a[0];
      for (uint32_t i = 0; i < a[1]; i++) uart_putc(s[i]);
      a[0] = a[1];
      return 0;
    }
    case SYS_EXIT:
      return 1;
    default:
      a[0] = (uint32_t)-1;
      return 0;
  }
}

uint32_t trap_handler(struct trap_frame *f) {
  if (f->mcause & MCAUSE_INTERRUPT) {
    switch (f->mcause & ~MCAUSE_INTERRUPT) {
      case IRQ_M_TIMER: on_timer_interrupt(f); return 0;
      case IRQ_M_SOFT: on_software_interrupt(f); return 0;
      case IRQ_M_EXT: on_external_interrupt(f); return 0;
      default: report_and_fail(f); return 0;
    }
  }
  if (f->mcause == EXC_ECALL_U) return handle_syscall(f);
  return on_exception(f);
}
