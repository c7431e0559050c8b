/*
 * Differential check of RV32IMA arithmetic against QEMU: runs every register-register and
 * register-immediate operation, the M extension, sub-word loads and stores, AMOs and LR/SC on
 * operands from a PRNG mixed with edge values (0, 1, -1, INT_MIN, INT_MAX, 31, 32, ...), and
 * prints one FNV-1a hash per operation. The expected output (isa_check.expected.txt) was
 * recorded by running this ELF on qemu-system-riscv32 7.2 (`virt`); built by build.sh with
 * clang -O2 -march=rv32imac, so the code itself is mostly compressed instructions.
 */
#include <stdint.h>

#define UART ((volatile uint8_t *)0x10000000)
#define FINISHER ((volatile uint32_t *)0x100000)

static void putc_(char c) { *UART = (uint8_t)c; }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void hex(uint32_t v) {
  for (int i = 28; i >= 0; i -= 4) putc_("0123456789abcdef"[(v >> i) & 15]);
}

static uint32_t rng = 0x12345678;
static uint32_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}
static const uint32_t EDGE[] = {0, 1, 2, 0xffffffffu, 0x80000000u, 0x7fffffffu, 31, 32, 33,
                                0xfffffffeu, 0x80000001u, 0xffff, 0x10000, 0xff, 0x100, 7};
#define NEDGE (sizeof(EDGE) / sizeof(EDGE[0]))

static uint32_t operand(uint32_t i) {
  uint32_t r = next();
  return (i & 3) == 0 ? EDGE[r % NEDGE] : (i & 3) == 1 ? (r >> (r & 31)) : r;
}

static uint32_t h;
static void mix(uint32_t v) {
  for (int i = 0; i < 4; i++) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= 16777619u;
  }
}

#define RR(name)                                                            \
  static uint32_t op_##name(uint32_t a, uint32_t b) {                       \
    uint32_t r;                                                             \
    __asm__ volatile(#name " %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));       \
    return r;                                                               \
  }
RR(add) RR(sub) RR(sll) RR(srl) RR(sra) RR(slt) RR(sltu) RR(xor) RR(or) RR(and)
RR(mul) RR(mulh) RR(mulhsu) RR(mulhu) RR(div) RR(divu) RR(rem) RR(remu)

typedef uint32_t (*rr_fn)(uint32_t, uint32_t);
static const struct { const char *name; rr_fn fn; } RR_OPS[] = {
    {"add", op_add}, {"sub", op_sub}, {"sll", op_sll}, {"srl", op_srl}, {"sra", op_sra},
    {"slt", op_slt}, {"sltu", op_sltu}, {"xor", op_xor}, {"or", op_or}, {"and", op_and},
    {"mul", op_mul}, {"mulh", op_mulh}, {"mulhsu", op_mulhsu}, {"mulhu", op_mulhu},
    {"div", op_div}, {"divu", op_divu}, {"rem", op_rem}, {"remu", op_remu},
};

#define IMM_BLOCK(insn, imm)                                                 \
  __asm__ volatile(insn " %0, %1, " #imm : "=r"(r) : "r"(a));               \
  mix(r);

static void report(const char *name) {
  puts_(name);
  puts_(" ");
  hex(h);
  puts_("\n");
}

static volatile uint32_t mem[4];

int main(void) {
  for (unsigned k = 0; k < sizeof(RR_OPS) / sizeof(RR_OPS[0]); k++) {
    h = 2166136261u;
    for (uint32_t i = 0; i < 4000; i++) mix(RR_OPS[k].fn(operand(i), operand(i + 1)));
    report(RR_OPS[k].name);
  }

  h = 2166136261u;
  for (uint32_t i = 0; i < 2000; i++) {
    uint32_t a = operand(i), r;
    IMM_BLOCK("addi", -2048) IMM_BLOCK("addi", 2047) IMM_BLOCK("slti", -1)
    IMM_BLOCK("sltiu", -1) IMM_BLOCK("sltiu", 5) IMM_BLOCK("xori", -1) IMM_BLOCK("ori", 0x555)
    IMM_BLOCK("andi", -16) IMM_BLOCK("slli", 31) IMM_BLOCK("srli", 31) IMM_BLOCK("srai", 31)
    IMM_BLOCK("srai", 0) IMM_BLOCK("slli", 1)
  }
  report("imm");

  h = 2166136261u;
  for (uint32_t i = 0; i < 2000; i++) {
    mem[0] = operand(i);
    mem[1] = operand(i + 1);
    volatile uint8_t *b = (volatile uint8_t *)mem;
    volatile uint16_t *s = (volatile uint16_t *)mem;
    for (int j = 0; j < 8; j++) mix((uint32_t)(int32_t)(int8_t)b[j]);
    for (int j = 0; j < 8; j++) mix(b[j]);
    for (int j = 0; j < 4; j++) mix((uint32_t)(int32_t)(int16_t)s[j]);
    for (int j = 0; j < 4; j++) mix(s[j]);
    b[i & 7] = (uint8_t)operand(i);
    s[i & 3] = (uint16_t)operand(i + 2);
    mix(mem[0]);
    mix(mem[1]);
  }
  report("loadstore");

  h = 2166136261u;
  for (uint32_t i = 0; i < 2000; i++) {
    uint32_t r, v = operand(i);
    mem[2] = operand(i + 1);
#define AMO(insn)                                                                    \
  __asm__ volatile(insn " %0, %2, (%1)" : "=r"(r) : "r"(&mem[2]), "r"(v) : "memory"); \
  mix(r);                                                                            \
  mix(mem[2]);
    AMO("amoswap.w") AMO("amoadd.w") AMO("amoxor.w") AMO("amoand.w") AMO("amoor.w")
    AMO("amomin.w") AMO("amomax.w") AMO("amominu.w") AMO("amomaxu.w")
    uint32_t ok1, ok2, old;
    __asm__ volatile("lr.w %0, (%3)\n\tsc.w %1, %4, (%3)\n\tsc.w %2, %4, (%3)"
                     : "=&r"(old), "=&r"(ok1), "=&r"(ok2)
                     : "r"(&mem[3]), "r"(v)
                     : "memory");
    mix(old);
    mix(ok1);
    mix(ok2);
    mix(mem[3]);
  }
  report("amo");

  puts_("done\n");
  *FINISHER = 0x5555;
  for (;;) {
  }
}

__attribute__((naked, section(".text.init"))) void _start(void) {
  __asm__ volatile(
      "la sp, __stack_top\n\t"
      "call main\n\t"
      "1: j 1b\n\t");
}
