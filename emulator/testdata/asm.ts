/**
 * A tiny RV32 encoder for tests: enough to write instruction sequences by hand, each function
 * returns one instruction word (or a 16-bit compressed halfword from `c`). Test-only.
 *
 * @module
 */

import { Machine } from "../machine.ts";
import { RAM_BASE } from "../memory_map.ts";

const r = (f7: number, rs2: number, rs1: number, f3: number, rd: number, op: number) =>
  ((f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
const i = (imm: number, rs1: number, f3: number, rd: number, op: number) =>
  (((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
const s = (imm: number, rs2: number, rs1: number, f3: number, op: number) =>
  ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) |
    op) >>> 0;
const b = (imm: number, rs2: number, rs1: number, f3: number) =>
  ((((imm >> 12) & 1) << 31) | (((imm >> 5) & 0x3f) << 25) | (rs2 << 20) | (rs1 << 15) |
    (f3 << 12) | (((imm >> 1) & 0xf) << 8) | (((imm >> 11) & 1) << 7) | 0x63) >>> 0;

/** Instruction encoders; register arguments are numbers 0..31. */
export const A = {
  lui: (rd: number, imm20: number) => ((imm20 << 12) | (rd << 7) | 0x37) >>> 0,
  auipc: (rd: number, imm20: number) => ((imm20 << 12) | (rd << 7) | 0x17) >>> 0,
  jal: (rd: number, off: number) =>
    ((((off >> 20) & 1) << 31) | (((off >> 1) & 0x3ff) << 21) | (((off >> 11) & 1) << 20) |
      (((off >> 12) & 0xff) << 12) | (rd << 7) | 0x6f) >>> 0,
  jalr: (rd: number, rs1: number, imm: number) => i(imm, rs1, 0, rd, 0x67),
  beq: (rs1: number, rs2: number, off: number) => b(off, rs2, rs1, 0),
  bne: (rs1: number, rs2: number, off: number) => b(off, rs2, rs1, 1),
  blt: (rs1: number, rs2: number, off: number) => b(off, rs2, rs1, 4),
  bge: (rs1: number, rs2: number, off: number) => b(off, rs2, rs1, 5),
  bltu: (rs1: number, rs2: number, off: number) => b(off, rs2, rs1, 6),
  bgeu: (rs1: number, rs2: number, off: number) => b(off, rs2, rs1, 7),
  lb: (rd: number, rs1: number, imm: number) => i(imm, rs1, 0, rd, 0x03),
  lh: (rd: number, rs1: number, imm: number) => i(imm, rs1, 1, rd, 0x03),
  lw: (rd: number, rs1: number, imm: number) => i(imm, rs1, 2, rd, 0x03),
  lbu: (rd: number, rs1: number, imm: number) => i(imm, rs1, 4, rd, 0x03),
  lhu: (rd: number, rs1: number, imm: number) => i(imm, rs1, 5, rd, 0x03),
  sb: (rs2: number, rs1: number, imm: number) => s(imm, rs2, rs1, 0, 0x23),
  sh: (rs2: number, rs1: number, imm: number) => s(imm, rs2, rs1, 1, 0x23),
  sw: (rs2: number, rs1: number, imm: number) => s(imm, rs2, rs1, 2, 0x23),
  addi: (rd: number, rs1: number, imm: number) => i(imm, rs1, 0, rd, 0x13),
  slti: (rd: number, rs1: number, imm: number) => i(imm, rs1, 2, rd, 0x13),
  sltiu: (rd: number, rs1: number, imm: number) => i(imm, rs1, 3, rd, 0x13),
  xori: (rd: number, rs1: number, imm: number) => i(imm, rs1, 4, rd, 0x13),
  ori: (rd: number, rs1: number, imm: number) => i(imm, rs1, 6, rd, 0x13),
  andi: (rd: number, rs1: number, imm: number) => i(imm, rs1, 7, rd, 0x13),
  slli: (rd: number, rs1: number, sh: number) => i(sh, rs1, 1, rd, 0x13),
  srli: (rd: number, rs1: number, sh: number) => i(sh, rs1, 5, rd, 0x13),
  srai: (rd: number, rs1: number, sh: number) => i(0x400 | sh, rs1, 5, rd, 0x13),
  add: (rd: number, a: number, c: number) => r(0, c, a, 0, rd, 0x33),
  sub: (rd: number, a: number, c: number) => r(0x20, c, a, 0, rd, 0x33),
  sll: (rd: number, a: number, c: number) => r(0, c, a, 1, rd, 0x33),
  slt: (rd: number, a: number, c: number) => r(0, c, a, 2, rd, 0x33),
  sltu: (rd: number, a: number, c: number) => r(0, c, a, 3, rd, 0x33),
  xor: (rd: number, a: number, c: number) => r(0, c, a, 4, rd, 0x33),
  srl: (rd: number, a: number, c: number) => r(0, c, a, 5, rd, 0x33),
  sra: (rd: number, a: number, c: number) => r(0x20, c, a, 5, rd, 0x33),
  or: (rd: number, a: number, c: number) => r(0, c, a, 6, rd, 0x33),
  and: (rd: number, a: number, c: number) => r(0, c, a, 7, rd, 0x33),
  mul: (rd: number, a: number, c: number) => r(1, c, a, 0, rd, 0x33),
  mulh: (rd: number, a: number, c: number) => r(1, c, a, 1, rd, 0x33),
  mulhsu: (rd: number, a: number, c: number) => r(1, c, a, 2, rd, 0x33),
  mulhu: (rd: number, a: number, c: number) => r(1, c, a, 3, rd, 0x33),
  div: (rd: number, a: number, c: number) => r(1, c, a, 4, rd, 0x33),
  divu: (rd: number, a: number, c: number) => r(1, c, a, 5, rd, 0x33),
  rem: (rd: number, a: number, c: number) => r(1, c, a, 6, rd, 0x33),
  remu: (rd: number, a: number, c: number) => r(1, c, a, 7, rd, 0x33),
  lr: (rd: number, rs1: number) => r(0x02 << 2, 0, rs1, 2, rd, 0x2f),
  sc: (rd: number, rs2: number, rs1: number) => r(0x03 << 2, rs2, rs1, 2, rd, 0x2f),
  amo: (f5: number, rd: number, rs2: number, rs1: number) => r(f5 << 2, rs2, rs1, 2, rd, 0x2f),
  csrrw: (rd: number, csr: number, rs1: number) => i(csr, rs1, 1, rd, 0x73),
  csrrs: (rd: number, csr: number, rs1: number) => i(csr, rs1, 2, rd, 0x73),
  csrrc: (rd: number, csr: number, rs1: number) => i(csr, rs1, 3, rd, 0x73),
  csrrwi: (rd: number, csr: number, z: number) => i(csr, z, 5, rd, 0x73),
  csrrsi: (rd: number, csr: number, z: number) => i(csr, z, 6, rd, 0x73),
  csrrci: (rd: number, csr: number, z: number) => i(csr, z, 7, rd, 0x73),
  fence: () => 0x0ff0_000f,
  fenceI: () => 0x0000_100f,
  ecall: () => 0x0000_0073,
  ebreak: () => 0x0010_0073,
  mret: () => 0x3020_0073,
  wfi: () => 0x1050_0073,
};

/** AMO funct5 values (unprivileged spec 8.4). */
export const AMO = {
  swap: 0x01,
  add: 0x00,
  xor: 0x04,
  and: 0x0c,
  or: 0x08,
  min: 0x10,
  max: 0x14,
  minu: 0x18,
  maxu: 0x1c,
} as const;

/** A compressed halfword, written as `{ c: 0x4501 }` in a program. */
export interface Half {
  c: number;
}

/** Assemble a program: 32-bit words and `{ c }` halfwords, little-endian. */
export function assemble(program: (number | Half)[]): Uint8Array {
  const out: number[] = [];
  for (const item of program) {
    if (typeof item === "number") {
      out.push(item & 0xff, (item >>> 8) & 0xff, (item >>> 16) & 0xff, (item >>> 24) & 0xff);
    } else {
      out.push(item.c & 0xff, (item.c >>> 8) & 0xff);
    }
  }
  return Uint8Array.from(out);
}

/** Where {@linkcode machineWith} puts a `j .` loop, for tests to point mtvec at. */
export const PARK = RAM_BASE + 0x400;

/**
 * A small machine (1 MiB RAM) with `program` at RAM_BASE and pc there, and an endless loop
 * (`jal x0, 0`) at PARK.
 */
export function machineWith(program: (number | Half)[], ramSize = 1 << 20): Machine {
  const m = new Machine({ ramSize, uartSink: () => {} });
  m.ram.write(PARK, assemble([0x0000_006f]));
  m.ram.write(RAM_BASE, assemble(program));
  m.hart.reset(RAM_BASE);
  return m;
}

/** Load a 32-bit constant into rd (lui + addi). */
export function li(rd: number, value: number): number[] {
  const v = value | 0;
  const lo = (v << 20) >> 20;
  const hi = ((v - lo) >>> 12) & 0xfffff;
  return [A.lui(rd, hi), A.addi(rd, rd, lo)];
}
