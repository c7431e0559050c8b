/**
 * Guests for the tests: `memstress` with a patched config; `storm`, a guest assembled here that
 * stores on almost every instruction (the worst case for a `cow` snapshot with a zero-size
 * buffer); and `exit`, one that ends with a chosen exit code after a known number of
 * instructions.
 *
 * @module
 */

import { RAM_BASE, SIFIVE_TEST_BASE } from "../emulator/memory_map.ts";

export { memstressElf } from "../emulator/guests/memstress_config.ts";

// RV32I encodings (unprivileged spec chapter 2).
const lui = (rd: number, imm20: number) => ((imm20 & 0xfffff) << 12) | (rd << 7) | 0x37;
const addi = (rd: number, rs1: number, imm: number) =>
  ((imm & 0xfff) << 20) | (rs1 << 15) | (rd << 7) | 0x13;
const add = (rd: number, rs1: number, rs2: number) => (rs2 << 20) | (rs1 << 15) | (rd << 7) | 0x33;
const sw = (rs2: number, rs1: number, imm: number) =>
  (((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (2 << 12) | ((imm & 0x1f) << 7) |
  0x23;
const branch = (funct3: number, rs1: number, rs2: number, off: number) =>
  (((off >> 12) & 1) << 31) | (((off >> 5) & 0x3f) << 25) | (rs2 << 20) | (rs1 << 15) |
  (funct3 << 12) | (((off >> 1) & 0xf) << 8) | (((off >> 11) & 1) << 7) | 0x63;
const jal0 = (off: number) =>
  (((off >> 20) & 1) << 31) | (((off >> 1) & 0x3ff) << 21) | (((off >> 11) & 1) << 20) |
  (((off >> 12) & 0xff) << 12) | 0x6f;
const li = (rd: number, value: number): number[] => {
  const hi = ((value + 0x800) >>> 12) & 0xfffff;
  const lo = (value - (hi << 12)) << 20 >> 20;
  return [lui(rd, hi), addi(rd, rd, lo)];
};

/** Options of {@linkcode stormElf}. */
export interface StormOptions {
  /** Bytes of RAM the stores sweep over, from 1 MiB into RAM (a multiple of 27 pages is best). */
  spanBytes: number;
  /** Blocks of 1728 stores before the guest powers off with code 0. */
  blocks: number;
}

/**
 * A guest whose instructions are 98% stores: 27 base registers each point into their own page;
 * a block is 64 rounds of one `sw` through each register (1728 stores in a row), then every
 * register moves on by 27 pages (wrapping within the span). After `blocks` blocks it writes
 * 0x5555 to the SiFive test device (exit 0).
 */
export function stormElf(o: StormOptions): Uint8Array {
  const bases = [
    4,
    5,
    6,
    7,
    8,
    9,
    11,
    12,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    26,
    27,
    28,
    29,
    30,
    31,
  ];
  const start = RAM_BASE + 0x10_0000;
  const step = bases.length * 4096;
  const code: number[] = [];
  code.push(...li(10, 0)); // x10: block counter, also the value stored
  code.push(...li(1, step)); // x1: how far each register moves per block
  code.push(...li(2, start + o.spanBytes)); // x2: end of the span
  code.push(...li(3, o.blocks)); // x3: blocks to run
  const init = code.length;
  bases.forEach((r, i) => code.push(...li(r, start + i * 4096 + 2048)));
  const block = code.length;
  for (let k = 0; k < 64; k++) for (const r of bases) code.push(sw(10, r, -2048 + k * 64));
  code.push(addi(10, 10, 1));
  for (const r of bases) code.push(add(r, r, 1));
  const last = bases[bases.length - 1];
  // Branches reach ±4 KiB, a block is longer: branch over the jumps back.
  code.push(branch(0, 10, 3, 4 * 4)); // beq x10, x3, exit
  code.push(branch(5, last, 2, 2 * 4)); // bge last, x2, wrap
  code.push(jal0((block - code.length) * 4)); // next block
  code.push(jal0((init - code.length) * 4)); // wrap: back to the first pages
  code.push(...li(4, SIFIVE_TEST_BASE), ...li(5, 0x5555), sw(5, 4, 0));
  code.push(jal0(0));
  return elfOf(RAM_BASE, new Uint8Array(new Uint32Array(code).buffer));
}

/**
 * A guest that counts down `loops` iterations (3 instructions each) and then exits with `code`
 * through the SiFive test device (FAIL with a code, `code << 16 | 0x3333`, or PASS 0x5555 for
 * code 0): a guest that ends by itself, after a known number of instructions.
 */
export function exitElf(code: number, loops: number): Uint8Array {
  const word = code === 0 ? 0x5555 : ((code << 16) | 0x3333) >>> 0;
  const body: number[] = [];
  body.push(...li(10, loops)); // x10: loops left
  const loop = body.length;
  body.push(addi(10, 10, -1));
  body.push(addi(0, 0, 0)); // nop: 3 instructions per round
  body.push(branch(1, 10, 0, (loop - body.length) * 4)); // bne x10, x0, loop
  body.push(...li(4, SIFIVE_TEST_BASE), ...li(5, word), sw(5, 4, 0));
  body.push(jal0(0));
  return elfOf(RAM_BASE, new Uint8Array(new Uint32Array(body).buffer));
}

/** A minimal ELF32 RISC-V executable: one PT_LOAD segment at `base`, entry at `base`. */
function elfOf(base: number, text: Uint8Array): Uint8Array {
  const out = new Uint8Array(52 + 32 + text.length);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1], 0);
  dv.setUint16(16, 2, true); // ET_EXEC
  dv.setUint16(18, 243, true); // EM_RISCV
  dv.setUint32(20, 1, true);
  dv.setUint32(24, base, true);
  dv.setUint32(28, 52, true); // e_phoff
  dv.setUint16(40, 52, true);
  dv.setUint16(42, 32, true);
  dv.setUint16(44, 1, true);
  dv.setUint16(46, 40, true);
  dv.setUint32(52, 1, true); // PT_LOAD
  dv.setUint32(56, 84, true); // p_offset
  dv.setUint32(60, base, true);
  dv.setUint32(64, base, true);
  dv.setUint32(68, text.length, true);
  dv.setUint32(72, text.length, true);
  dv.setUint32(76, 5, true);
  dv.setUint32(80, 4, true);
  out.set(text, 84);
  return out;
}
