/* System-call wrappers for code running in user mode (see handle_syscall in trap.c). */
#include "runtime.h"

static uint32_t syscall2(uint32_t n, uint32_t a0, uint32_t a1) {
  register uint32_t r_a0 __asm__("a0") = a0;
  register uint32_t r_a1 __asm__("a1") = a1;
  register uint32_t r_a7 __asm__("a7") = n;
  __asm__ volatile("ecall" : "+r"(r_a0) : "r"(r_a1), "r"(r_a7) : "memory");
  return r_a0;
}

void sys_putc(char c) { syscall2(SYS_PUTC, (uint8_t)c, 0); }

void sys_write(const char *s, uint32_t len) { syscall2(SYS_WRITE, (uint32_t)(uintptr_t)s, len); }

void sys_print(const char *s) {
  uint32_t n = 0;
  while (s[n]) n++;
  sys_write(s, n);
}
