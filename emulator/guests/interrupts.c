/*
 * interrupts: probes the ns16550a UART's interrupt logic and the PLIC it is wired to (source 10,
 * context 0 = hart 0's machine mode) and prints every value it read. Its output recorded from
 * QEMU 7.2 is what livesnap's UART and PLIC models are checked against.
 *
 * Nothing printed depends on time: where QEMU's UART waits (the receive FIFO's character
 * timeout, 4 character times of virtual time), the guest waits 10 ms of mtime before looking.
 * Values are collected first and printed at the end, because printing itself touches THR.
 *
 * Exit status: 0.
 */
#include "runtime.h"

#define UART ((volatile uint8_t *)(uintptr_t)UART0_BASE)
#define RBR 0
#define THR 0
#define IER 1
#define IIR 2
#define FCR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7

#define MAX_RECORDS 96
static const char *names[MAX_RECORDS];
static uint32_t values[MAX_RECORDS];
static uint32_t records;

static void rec(const char *name, uint32_t value) {
  if (records < MAX_RECORDS) {
    names[records] = name;
    values[records] = value;
    records++;
  }
}

static uint32_t pending0(void) { return mmio_read32(PLIC_PENDING(0)); }
static uint32_t meip(void) { return (csr_read(mip) & MIE_MEIE) ? 1 : 0; }

/* Spin until mtime has moved on by `ticks` (10 MHz on QEMU, retired instructions / 10 here). */
static void wait_ticks(uint32_t ticks) {
  uint64_t until = clint_mtime() + ticks;
  while (clint_mtime() < until) {
  }
}

/* A faulting access records its mcause and skips the instruction. */
static volatile uint32_t fault_cause;
uint32_t on_exception(struct trap_frame *f) {
  fault_cause = f->mcause;
  f->mepc += 4; /* the probed loads and stores are 4-byte instructions */
  return 0;
}

static volatile uint32_t ext_count, ext_claim, ext_iir;
void on_external_interrupt(struct trap_frame *f) {
  (void)f;
  uint32_t irq = mmio_read32(PLIC_CLAIM(0));
  ext_claim = irq;
  ext_iir = UART[IIR];
  UART[IER] = 0;
  ext_count++;
  mmio_write32(PLIC_CLAIM(0), irq);
}

int main(void) {
  /* Registers as reset leaves them. */
  rec("reset ier", UART[IER]);
  rec("reset iir", UART[IIR]);
  rec("reset lcr", UART[LCR]);
  rec("reset mcr", UART[MCR]);
  rec("reset lsr", UART[LSR]);
  rec("reset msr", UART[MSR]);
  rec("reset scr", UART[SCR]);
  UART[LCR] = 0x80;
  rec("reset dll", UART[RBR]);
  rec("reset dlm", UART[IER]);
  UART[LCR] = 0x03;

  /* PLIC registers: priorities keep their low 3 bits. */
  mmio_write32(PLIC_PRIORITY(UART0_IRQ), 9);
  rec("priority 9 reads", mmio_read32(PLIC_PRIORITY(UART0_IRQ)));
  mmio_write32(PLIC_PRIORITY(UART0_IRQ), 3);
  mmio_write32(PLIC_THRESHOLD(0), 0);
  mmio_write32(PLIC_ENABLE(0, 0), 1u << UART0_IRQ);
  rec("enable reads", mmio_read32(PLIC_ENABLE(0, 0)));
  rec("idle pending", pending0());
  rec("idle claim", mmio_read32(PLIC_CLAIM(0)));
  fault_cause = 0;
  rec("plic byte load", *(volatile uint8_t *)(uintptr_t)PLIC_PRIORITY(UART0_IRQ));
  rec("plic byte load mcause", fault_cause);

  /* THR empty: turning IER.THRI on raises it; reading IIR acknowledges it. */
  UART[IER] = 0x02;
  rec("thri pending", pending0());
  rec("thri meip", meip());
  rec("thri iir", UART[IIR]);
  rec("thri pending after iir", pending0());
  rec("thri iir again", UART[IIR]);
  rec("thri meip after iir", meip());

  /* Claim and complete. */
  UART[IER] = 0;
  UART[IER] = 0x02;
  rec("claim", mmio_read32(PLIC_CLAIM(0)));
  rec("claimed pending", pending0());
  rec("claimed meip", meip());
  rec("claimed iir", UART[IIR]);
  mmio_write32(PLIC_CLAIM(0), UART0_IRQ);
  rec("completed meip", meip());

  /* A THR write re-arms THR empty; completing while the line stays high raises nothing new. */
  UART[THR] = 'Z';
  rec("thr pending", pending0());
  rec("thr meip", meip());
  rec("thr claim", mmio_read32(PLIC_CLAIM(0)));
  mmio_write32(PLIC_CLAIM(0), UART0_IRQ);
  rec("thr completed pending", pending0());
  rec("thr completed meip", meip());
  rec("thr iir", UART[IIR]);

  /* Threshold: a source interrupts only above it. */
  mmio_write32(PLIC_THRESHOLD(0), 3);
  UART[IER] = 0;
  UART[IER] = 0x02;
  rec("threshold 3 meip", meip());
  mmio_write32(PLIC_THRESHOLD(0), 2);
  rec("threshold 2 meip", meip());
  rec("threshold 2 iir", UART[IIR]);
  mmio_write32(PLIC_THRESHOLD(0), 0);

  /* FIFO: FCR with FE resets the transmitter: THR empty again. */
  UART[FCR] = 0x07;
  rec("fifo iir", UART[IIR]);
  UART[IER] = 0;

  /* Loopback: MSR mirrors MCR; what THR sends comes back through RBR. */
  UART[MCR] = 0x1b;
  rec("loop msr", UART[MSR]);
  UART[MCR] = 0x1f;
  rec("loop msr all", UART[MSR]);
  UART[FCR] = 0x01; /* FIFO on, trigger level 1 */
  UART[IER] = 0x01;
  UART[THR] = 'a';
  UART[THR] = 'b';
  UART[THR] = 'c';
  rec("loop lsr", UART[LSR]);
  rec("loop iir", UART[IIR]);
  rec("loop pending", pending0());
  rec("loop rbr 1", UART[RBR]);
  rec("loop rbr 2", UART[RBR]);
  rec("loop rbr 3", UART[RBR]);
  rec("loop lsr empty", UART[LSR]);
  rec("loop iir empty", UART[IIR]);
  rec("loop pending empty", pending0());
  rec("loop rbr empty", UART[RBR]);

  /* Below the trigger level: a character timeout once the FIFO has sat unread for a while. */
  UART[FCR] = 0x81; /* trigger level 8 */
  UART[THR] = 'd';
  UART[THR] = 'e';
  wait_ticks(100000);
  rec("timeout iir", UART[IIR]);
  rec("timeout pending", pending0());
  rec("timeout rbr 1", UART[RBR]);
  wait_ticks(100000);
  rec("timeout iir 1 left", UART[IIR]);
  rec("timeout rbr 2", UART[RBR]);
  rec("timeout iir empty", UART[IIR]);

  /* Without the FIFO: a second byte overruns the first; LSR.OE clears when read. */
  UART[IER] = 0x05; /* received data and line status */
  UART[FCR] = 0x00;
  UART[THR] = 'f';
  UART[THR] = 'g';
  rec("overrun iir", UART[IIR]);
  rec("overrun lsr", UART[LSR]);
  rec("overrun lsr again", UART[LSR]);
  rec("overrun iir after lsr", UART[IIR]);
  rec("overrun rbr", UART[RBR]);
  rec("overrun rbr empty", UART[RBR]);
  rec("overrun iir empty", UART[IIR]);
  UART[IER] = 0;
  UART[MCR] = 0x08;
  UART[FCR] = 0x07;

  /* An external interrupt taken through mtvec. */
  csr_set(mie, MIE_MEIE);
  csr_set(mstatus, MSTATUS_MIE);
  UART[IER] = 0x02;
  /* QEMU takes it at the end of a translation block, so give it a few branches. */
  for (volatile uint32_t spins = 0; ext_count == 0 && spins < 1000; spins++) {
  }
  csr_clear(mstatus, MSTATUS_MIE);
  csr_clear(mie, MIE_MEIE);
  rec("trap count", ext_count);
  rec("trap claim", ext_claim);
  rec("trap iir", ext_iir);
  rec("trap meip after", meip());

  for (uint32_t i = 0; i < records; i++) printf("%s 0x%08x\n", names[i], values[i]);
  return 0;
}
