/*
 * sleeper: spends its life asleep in wfi. It prints a line, arms the machine timer half a
 * second ahead (5,000,000 mtime units at QEMU's 10 MHz) and sleeps until it fires, eight times,
 * then powers off. On QEMU a snapshot of it almost always catches the hart halted in wfi, which
 * is what the cross-emulator tests need; in livesnap's emulator wfi moves mtime straight to the
 * deadline, so it runs in a blink.
 *
 * Exit status: 0.
 */
#include "runtime.h"

#define NAP 5000000u /* mtime units */
#define NAPS 8

static volatile uint32_t woken;

void on_timer_interrupt(struct trap_frame *f) {
  (void)f;
  woken++;
  clint_set_mtimecmp(~0ull); /* off until the next nap */
}

int main(void) {
  csr_set(mie, MIE_MTIE);
  for (uint32_t nap = 1; nap <= NAPS; nap++) {
    printf("sleeper: nap %u of %u\n", nap, NAPS);
    uint32_t before = woken;
    clint_set_mtimecmp(clint_mtime() + NAP);
    /* Sleep with interrupts masked so that the wake-up is not lost between the check and the
     * wfi; the pending interrupt is taken once they are unmasked. */
    csr_clear(mstatus, MSTATUS_MIE);
    while (woken == before) {
      __asm__ volatile("wfi");
      csr_set(mstatus, MSTATUS_MIE);
      csr_clear(mstatus, MSTATUS_MIE);
    }
    csr_set(mstatus, MSTATUS_MIE);
  }
  printf("sleeper: woke %u times\n", woken);
  return 0;
}
