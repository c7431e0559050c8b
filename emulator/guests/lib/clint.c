/* The CLINT (SiFive core-local interruptor) as QEMU's virt board maps it. */
#include "runtime.h"

uint64_t clint_mtime(void) {
  /* mtime is 64 bits read as two words; re-read if the high word moved in between. */
  uint32_t hi, lo;
  do {
    hi = mmio_read32(CLINT_MTIME + 4);
    lo = mmio_read32(CLINT_MTIME);
  } while (hi != mmio_read32(CLINT_MTIME + 4));
  return ((uint64_t)hi << 32) | lo;
}

void clint_set_mtimecmp(uint64_t when) {
  /* Privileged spec 3.2.1: write the high word last-but-one so that no spurious interrupt
   * fires while the two halves disagree. */
  mmio_write32(CLINT_MTIMECMP + 4, 0xffffffffu);
  mmio_write32(CLINT_MTIMECMP, (uint32_t)when);
  mmio_write32(CLINT_MTIMECMP + 4, (uint32_t)(when >> 32));
}

void clint_set_msip(uint32_t v) { mmio_write32(CLINT_MSIP, v); }
