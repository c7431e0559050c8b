/*
 * counter: runs forever, printing one checksum line per ITERATIONS_PER_LINE iterations:
 *
 *   line 000001 sum 0x1c3e5f2a ring 0x0b7d9e11
 *
 * `sum` folds every value the loop produced, `ring` is a checksum of a 64 KiB buffer the loop
 * keeps rewriting, so RAM changes all the time (a small, steady dirty set for snapshot tests).
 *
 * The CLINT timer interrupt paces the output: after each batch of work the guest waits (wfi)
 * until at least one timer interrupt has arrived since the previous line. How many arrived
 * depends on the clock (10 MHz wall clock on QEMU, retired instructions in livesnap's emulator),
 * so it is never printed; every printed value is the same on any machine.
 */
#include "runtime.h"

#define ITERATIONS_PER_LINE 4096
#define RING_WORDS 16384 /* 64 KiB */
#define TIMER_INTERVAL 10000 /* mtime units: 1 ms at QEMU's 10 MHz */

static uint32_t ring[RING_WORDS];
static volatile uint32_t timer_ticks;
static uint32_t iterations; /* updated with amoadd.w, to exercise the A extension */

void on_timer_interrupt(struct trap_frame *f) {
  (void)f;
  timer_ticks++;
  clint_set_mtimecmp(clint_mtime() + TIMER_INTERVAL);
}

static void wait_for_tick(uint32_t since) {
  for (;;) {
    /* Check and sleep with interrupts masked so that a tick between the two is not lost:
     * wfi still wakes on a pending interrupt (privileged spec 3.3.3). */
    csr_clear(mstatus, MSTATUS_MIE);
    if (timer_ticks != since) break;
    __asm__ volatile("wfi");
    csr_set(mstatus, MSTATUS_MIE);
  }
  csr_set(mstatus, MSTATUS_MIE);
}

static uint32_t ring_checksum(void) {
  uint32_t h = 0x811c9dc5u;
  for (uint32_t i = 0; i < RING_WORDS; i++) h = (h ^ ring[i]) * 0x01000193u;
  return h;
}

int main(void) {
  printf("counter: %u iterations per line, timer interrupt every %u mtime units\n",
         ITERATIONS_PER_LINE, TIMER_INTERVAL);

  clint_set_mtimecmp(clint_mtime() + TIMER_INTERVAL);
  csr_set(mie, MIE_MTIE);
  csr_set(mstatus, MSTATUS_MIE);

  uint32_t x = 0x2545f491u; /* xorshift32 state */
  uint32_t sum = 0;
  uint32_t cursor = 0;
  for (uint32_t line = 1;; line++) {
    uint32_t seen = timer_ticks;
    for (uint32_t i = 0; i < ITERATIONS_PER_LINE; i++) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      cursor = (cursor + (x & 63) + 1) % RING_WORDS;
      ring[cursor] += x;
      sum = ((sum << 5) | (sum >> 27)) ^ (x + ring[cursor]);
      __atomic_fetch_add(&iterations, 1, __ATOMIC_RELAXED);
    }
    wait_for_tick(seen);
    printf("line %06u sum 0x%08x ring 0x%08x iterations %u\n", line, sum, ring_checksum(),
           __atomic_load_n(&iterations, __ATOMIC_RELAXED));
  }
}
