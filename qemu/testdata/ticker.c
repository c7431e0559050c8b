/*
 * ticker: a tiny bare-metal guest for QEMU's riscv32 `virt` board, used to make real migration
 * streams. It keeps rewriting a 64 KiB buffer (so a live migration has dirty pages to resend)
 * and prints one line per round on the 16550 UART at 0x1000_0000. Its output depends only on its
 * own state, never on time, so two machines resumed from the same snapshot print the same lines.
 *
 * Build: see build_ticker.sh beside this file.
 */
#define UART_BASE 0x10000000u
#define UART_THR 0u
#define UART_LSR 5u
#define UART_LSR_THRE 0x20u
#define WORK_WORDS (16u * 1024u) /* 64 KiB */

static volatile unsigned char *const uart = (volatile unsigned char *)UART_BASE;
static unsigned work[WORK_WORDS];
static const char banner[] = "ticker: start\n";

void start(void) __attribute__((naked, noreturn, section(".text.start")));
void main_loop(void) __attribute__((noreturn, used));

static void put_char(char c) {
  while ((uart[UART_LSR] & UART_LSR_THRE) == 0) {
  }
  uart[UART_THR] = (unsigned char)c;
}

static void put_str(const char *s) {
  while (*s != 0) put_char(*s++);
}

static void put_hex(unsigned v) {
  for (int shift = 28; shift >= 0; shift -= 4) put_char("0123456789abcdef"[(v >> shift) & 15u]);
}

static void put_dec(unsigned v) {
  char digits[10];
  int n = 0;
  do {
    digits[n++] = (char)('0' + v % 10u);
    v /= 10u;
  } while (v != 0);
  while (n > 0) put_char(digits[--n]);
}

void main_loop(void) {
  put_str(banner);
  for (unsigned round = 0;; round++) {
    unsigned sum = 0;
    /* Touch every page of the buffer with a stride that changes each round. */
    for (unsigned i = 0; i < WORK_WORDS; i += 97u) {
      unsigned j = (i + round * 13u) % WORK_WORDS;
      work[j] = work[j] * 1103515245u + round + i;
      sum += work[j];
    }
    /*
     * Flush the TLB once a round. QEMU before 9.0 (TCG) loses guest writes from its dirty log
     * after the first pass of a live migration unless the TLB is refilled ("physmem: Fix
     * migration dirty bitmap coherency with TCG memory access", QEMU 9.0); without this flush a
     * multi-pass stream of QEMU 7.2 holds stale pages that QEMU itself never resends.
     */
    __asm__ volatile("sfence.vma" ::: "memory");
    put_str("round ");
    put_dec(round);
    put_str(" sum ");
    put_hex(sum);
    put_char('\n');
    /* Slow the rounds down so a few hundred lines take a few seconds. */
    for (volatile unsigned d = 0; d < 1000000u; d++) {
    }
  }
}

/* The entry point: no C may run before the stack pointer is set, hence a naked function. */
void start(void) {
  __asm__ volatile("la sp, stack_top\n j main_loop");
}

static unsigned char stack[16384] __attribute__((aligned(16), used));
__asm__(".globl stack_top\n.set stack_top, stack + 16384\n");
