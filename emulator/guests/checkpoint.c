/*
 * checkpoint: runs forever, printing one checkpoint line per round of work:
 *
 *   cp 000042 work 5d1c9a03 mix 7e80f1c2
 *
 * Every printed value depends only on computation, never on time, so a guest saved at any
 * instant on one machine (QEMU or livesnap's emulator) and resumed on the other must go on
 * printing exactly what an uninterrupted run prints. The cross-emulator tests rely on it.
 *
 * It keeps every piece of machine state busy that such a move must carry:
 *
 *   - the work of each round runs in user mode (mret to U, ecall back) and rewrites 8 pages;
 *   - the output goes through a ring in RAM drained by the UART's THR-empty interrupt, taken
 *     through the PLIC (claim, complete), with the FIFO on: bytes in the ring, a claimed source
 *     or a pending interrupt can all be in flight at a snapshot;
 *   - the machine timer paces the rounds (at least one tick per round) and a software interrupt
 *     is raised by the guest itself every round while interrupts are masked;
 *   - the mix is accumulated with LR/SC and the work counters with AMOs;
 *   - `tx_count` counts the bytes handed to THR, so a test can tell from a snapshot's RAM how much
 *     output the guest had produced when it was taken.
 *
 * Two QEMU 7.2 quirks shape it. Its dirty log can miss guest writes after the first pass of a
 * live migration unless the TLB is refilled, so every round toggles mstatus.MPP (QEMU flushes
 * its TLB when MPP changes). And QEMU 7.2 does not re-arm the ACLINT timer when it loads a
 * migration stream, so the guest never sleeps on the timer alone: it waits for a tick by
 * spinning, and rewrites mtimecmp if the tick is long overdue.
 */
#include "runtime.h"

#define UART ((volatile uint8_t *)(uintptr_t)UART0_BASE)
#define THR 0
#define IER 1
#define IIR 2
#define FCR 2
#define IER_THRI 0x02

#define WORK_WORDS (8u * 1024u) /* 32 KiB: 8 pages rewritten every round */
#define TICK 10000u              /* mtime units per timer interrupt: 1 ms at QEMU's 10 MHz */
#define RING 512u

static uint32_t work[WORK_WORDS];
static uint8_t user_stack[4096] __attribute__((aligned(16)));

static volatile uint8_t ring[RING];
static volatile uint32_t ring_head; /* written by main (the producer) */
static volatile uint32_t ring_tail; /* written by the interrupt handler (the consumer) */
volatile uint32_t tx_count;         /* bytes handed to THR so far */

static volatile uint32_t ticks;
static volatile uint64_t deadline;
static volatile uint32_t soft_interrupts;
static uint32_t mix; /* updated with lr.w / sc.w */
static uint32_t words_done, rounds_done; /* updated with AMOs */

/* --- interrupts --- */

void on_timer_interrupt(struct trap_frame *f) {
  (void)f;
  ticks++;
  deadline = clint_mtime() + TICK;
  clint_set_mtimecmp(deadline);
}

void on_software_interrupt(struct trap_frame *f) {
  (void)f;
  clint_set_msip(0);
  soft_interrupts++;
}

void on_external_interrupt(struct trap_frame *f) {
  (void)f;
  uint32_t irq = mmio_read32(PLIC_CLAIM(0));
  if (irq == UART0_IRQ) {
    (void)UART[IIR]; /* acknowledges THR empty */
    /* The FIFO takes 16 bytes; QEMU sends them at once and raises THR empty again. */
    for (uint32_t n = 0; n < 16 && ring_tail != ring_head; n++) {
      UART[THR] = ring[ring_tail % RING];
      ring_tail++;
      tx_count++;
    }
    if (ring_tail == ring_head) UART[IER] = 0;
  }
  if (irq != 0) mmio_write32(PLIC_CLAIM(0), irq);
}

/* --- output through the ring --- */

static void put(char c) {
  /* Wait for room with interrupts masked, so that the handler's wake-up is not lost (wfi wakes
   * on a pending interrupt whatever mstatus.MIE says). */
  csr_clear(mstatus, MSTATUS_MIE);
  while (ring_head - ring_tail == RING) {
    __asm__ volatile("wfi");
    csr_set(mstatus, MSTATUS_MIE);
    csr_clear(mstatus, MSTATUS_MIE);
  }
  ring[ring_head % RING] = (uint8_t)c;
  ring_head++;
  csr_set(mstatus, MSTATUS_MIE);
  UART[IER] = IER_THRI; /* raises THR empty if it was off */
}

static void put_str(const char *s) {
  while (*s) put(*s++);
}

static void put_hex(uint32_t v) {
  for (int shift = 28; shift >= 0; shift -= 4) put("0123456789abcdef"[(v >> shift) & 15u]);
}

static void put_dec6(uint32_t v) {
  char d[6];
  for (int i = 5; i >= 0; i--) {
    d[i] = (char)('0' + v % 10u);
    v /= 10u;
  }
  for (int i = 0; i < 6; i++) put(d[i]);
}

/* --- the work, in user mode --- */

static uint32_t user_work(uint32_t round) {
  uint32_t x = 0x9e3779b9u ^ (round * 0x85ebca6bu);
  uint32_t sum = 0;
  for (uint32_t page = 0; page < WORK_WORDS / 1024u; page++) {
    for (uint32_t k = 0; k < 24; k++) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      uint32_t i = page * 1024u + (x & 1023u);
      work[i] = work[i] * 0x01000193u + x + round;
      sum = ((sum << 7) | (sum >> 25)) ^ work[i];
    }
  }
  __atomic_fetch_add(&words_done, 24u * (WORK_WORDS / 1024u), __ATOMIC_RELAXED);
  return sum;
}

/* mix = mix * 31 + v, with an LR/SC retry loop. */
static void mix_in(uint32_t v) {
  uint32_t old, tmp;
  __asm__ volatile(
      "1: lr.w %0, (%2)\n"
      "   slli %1, %0, 5\n"
      "   sub %1, %1, %0\n"
      "   add %1, %1, %3\n"
      "   sc.w %1, %1, (%2)\n"
      "   bnez %1, 1b\n"
      : "=&r"(old), "=&r"(tmp)
      : "r"(&mix), "r"(v)
      : "memory");
}

/* Wait until the timer has ticked since `seen`; see the header for why there is no wfi here. */
static void wait_for_tick(uint32_t seen) {
  while (ticks == seen) {
    csr_clear(mstatus, MSTATUS_MIE);
    uint64_t due = deadline;
    if (ticks == seen && clint_mtime() > due + 4u * TICK) clint_set_mtimecmp(due);
    csr_set(mstatus, MSTATUS_MIE);
  }
}

int main(void) {
  UART[FCR] = 0x07; /* FIFO on, both FIFOs cleared */
  mmio_write32(PLIC_PRIORITY(UART0_IRQ), 1);
  mmio_write32(PLIC_THRESHOLD(0), 0);
  mmio_write32(PLIC_ENABLE(0, 0), 1u << UART0_IRQ);
  deadline = clint_mtime() + TICK;
  clint_set_mtimecmp(deadline);
  csr_set(mie, MIE_MTIE | MIE_MSIE | MIE_MEIE);
  csr_set(mstatus, MSTATUS_MIE);

  put_str("checkpoint: one line per round of work; every value depends only on computation\n");
  for (uint32_t round = 0;; round++) {
    uint32_t seen = ticks;
    /* run_user must not be interrupted in machine mode (it points mscratch at the machine
     * stack before its mret); in user mode interrupts are taken whatever mstatus.MIE says. */
    csr_clear(mstatus, MSTATUS_MIE);
    uint32_t result = run_user(user_work, round, user_stack + sizeof user_stack);
    csr_set(mstatus, MSTATUS_MIE);
    mix_in(result);

    /* A software interrupt raised with interrupts masked: pending until they are unmasked. */
    csr_clear(mstatus, MSTATUS_MIE);
    clint_set_msip(1);
    mix_in(soft_interrupts);
    csr_set(mstatus, MSTATUS_MIE);

    /* Refill QEMU's TLB (see the header): MPP changes, QEMU flushes. */
    csr_set(mstatus, MSTATUS_MPP);
    csr_clear(mstatus, MSTATUS_MPP);

    __atomic_fetch_add(&rounds_done, 1u, __ATOMIC_RELAXED);
    put_str("cp ");
    put_dec6(round);
    put_str(" work ");
    put_hex(result);
    put_str(" mix ");
    put_hex(__atomic_load_n(&mix, __ATOMIC_RELAXED) ^ words_done ^ rounds_done);
    put('\n');
    wait_for_tick(seen);
  }
}
