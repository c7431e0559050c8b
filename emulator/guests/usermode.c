/*
 * usermode: runs part of its work in user mode (privileged spec 3.1.6.1: mstatus.MPP = U, then
 * mret). Each task gets its own stack, talks to machine mode through ecall (SYS_WRITE, SYS_EXIT,
 * see lib/trap_frame.h) and returns its result when it finishes.
 *
 *   task 1  a prime sieve in user mode, printing through system calls
 *   task 2  reads mstatus, which user mode may not: illegal instruction, the task is killed
 *   task 3  spins until the machine timer interrupt (taken from user mode) sets a flag
 *   task 4  an unknown system call returns -1
 *
 * Exit status: 0 when every task behaved as expected, 1 otherwise.
 */
#include "runtime.h"

#define SIEVE_LIMIT 50000
#define KILLED 0xdead0000u

static uint8_t composite[SIEVE_LIMIT];
static uint8_t user_stack[4096] __attribute__((aligned(16)));
static volatile uint32_t timer_fired;
static volatile uint32_t timer_from_mode = 0xff;

static void user_print_u32(uint32_t v) {
  char buf[11];
  int n = 10;
  buf[n] = 0;
  do {
    buf[--n] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  sys_print(&buf[n]);
}

/* --- code that runs in user mode --- */

static uint32_t task_sieve(uint32_t limit) {
  sys_print("  [user] sieving primes below ");
  user_print_u32(limit);
  sys_print("\n");
  uint32_t count = 0;
  for (uint32_t i = 2; i < limit; i++) {
    if (composite[i]) continue;
    count++;
    for (uint32_t j = i * i; j < limit; j += i) composite[j] = 1;
  }
  sys_print("  [user] found ");
  user_print_u32(count);
  sys_print(" primes\n");
  return count;
}

static uint32_t task_read_mstatus(uint32_t arg) {
  sys_print("  [user] about to read mstatus\n");
  return csr_read(mstatus) + arg; /* traps: the handler kills the task */
}

static uint32_t task_wait_for_timer(uint32_t arg) {
  sys_print("  [user] spinning until the timer interrupt sets a flag\n");
  uint32_t spins = 0;
  while (!timer_fired) spins++;
  (void)spins; /* how long it took depends on the clock: not printed */
  sys_print("  [user] flag set\n");
  return arg;
}

static uint32_t task_bad_syscall(uint32_t n) {
  register uint32_t a0 __asm__("a0") = 0;
  register uint32_t a7 __asm__("a7") = n;
  __asm__ volatile("ecall" : "+r"(a0) : "r"(a7) : "memory");
  return a0;
}

/* --- machine mode --- */

void on_timer_interrupt(struct trap_frame *f) {
  /* No printing here: when the interrupt arrives depends on the clock, the output must not. */
  timer_fired = 1;
  timer_from_mode = (f->mstatus & MSTATUS_MPP) >> 11;
  csr_clear(mie, MIE_MTIE);
}

uint32_t on_exception(struct trap_frame *f) {
  if ((f->mstatus & MSTATUS_MPP) != 0) {
    printf("unexpected trap in machine mode: mcause=0x%08x (%s) mepc=0x%08x\n", f->mcause,
           trap_cause_name(f->mcause), f->mepc);
    poweroff(0x7f);
  }
  printf("  [machine] killing the user task: %s (mcause %u)\n", trap_cause_name(f->mcause),
         f->mcause);
  f->regs[10] = KILLED | f->mcause;
  return 1;
}

static uint32_t run(const char *what, uint32_t (*fn)(uint32_t), uint32_t arg) {
  printf("%s\n", what);
  uint32_t r = run_user(fn, arg, user_stack + sizeof user_stack);
  /* Only machine mode may read mstatus: getting here without a trap proves we are back. */
  uint32_t mpp = (csr_read(mstatus) & MSTATUS_MPP) >> 11;
  printf("  back in machine mode (MPP=%u), result 0x%08x\n", mpp, r);
  return r;
}

int main(void) {
  int ok = 1;
  ok &= run("task 1: prime sieve in user mode", task_sieve, SIEVE_LIMIT) == 5133;
  ok &= run("task 2: user mode reads mstatus", task_read_mstatus, 0) ==
        (KILLED | EXC_ILLEGAL_INSN);

  timer_fired = 0;
  clint_set_mtimecmp(clint_mtime() + 1000);
  csr_set(mie, MIE_MTIE);
  /* mstatus.MIE stays 0: in user mode, machine interrupts are enabled regardless (3.1.6.1). */
  ok &= run("task 3: timer interrupt while in user mode", task_wait_for_timer, 3) == 3;
  printf("  the timer interrupt was taken from mode %u (0 = user)\n", timer_from_mode);
  ok &= timer_from_mode == 0;
  ok &= run("task 4: unknown system call", task_bad_syscall, 12345) == 0xffffffffu;

  printf("usermode: %s\n", ok ? "all tasks behaved as expected" : "FAILED");
  return ok ? 0 : 1;
}
