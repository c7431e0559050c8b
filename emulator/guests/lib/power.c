/* Power-off through QEMU's SiFive test device ("sifive,test0") at 0x0010_0000. */
#include "runtime.h"

#define FINISHER_PASS 0x5555
#define FINISHER_FAIL 0x3333

void poweroff(uint32_t status) {
#ifdef REPORT_INSTRET
  /* Measurement builds only (build.sh with EXTRA_CFLAGS=-DREPORT_INSTRET): the expected
   * outputs must not contain this line. */
  printf("[instret 0x%llx]\n", instret());
#endif
  /* A failure with code 0 would read as success, so code 0 always means PASS here. */
  uint32_t v = status == 0 ? FINISHER_PASS : ((status & 0xffff) << 16) | FINISHER_FAIL;
  mmio_write32(TEST_BASE, v);
  for (;;) __asm__ volatile("wfi");
}
