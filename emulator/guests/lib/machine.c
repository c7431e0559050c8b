/* Facts about the machine a guest runs on: usable memory, retired instructions. */
#include "runtime.h"

uint32_t heap_limit(void) {
  return boot_fdt > (uint32_t)(uintptr_t)__heap_start ? boot_fdt : 0;
}

uint64_t instret(void) {
  uint32_t hi, lo;
  do {
    hi = csr_read(minstreth);
    lo = csr_read(minstret);
  } while (hi != csr_read(minstreth));
  return ((uint64_t)hi << 32) | lo;
}
