/**
 * The interpreter loop: fetch through the decoded-instruction cache, one `switch` over the
 * operation, registers in the hart's Int32Array, fast paths for aligned RAM accesses, and slow
 * paths (MMIO, misaligned and faulting accesses, CSRs, traps) out of line in the machine.
 *
 * The decoded-instruction cache is direct-mapped by pc and tagged with it, so a hit needs no
 * access to RAM at all. Every page an instruction was decoded from gets the machine's GATE_CODE
 * bit in the page gate; a store into such a page takes the gate's slow path, which drops the
 * cache slots of the halfwords the store can have changed (machine.invalidateCode). `fence.i`
 * therefore has nothing left to do. Instruction fetch is never misaligned: with the C
 * extension every jump target is 2-byte aligned (jalr clears bit 0). Misaligned loads and stores
 * leave the fast path and are performed by the machine (as QEMU performs them); misaligned
 * LR/SC and AMOs trap.
 *
 * Operation numbers appear as literals (with the name in a comment) because V8 does not
 * constant-fold imported bindings, and a `switch` over loaded values is a chain of compares
 * instead of a jump table. decode_test.ts checks the literals against decode.ts.
 *
 * Retirement (what `minstret`, mtime and `--stop-at` count): an instruction retires when it
 * completes without raising an exception. Instructions that trap (including ecall and ebreak)
 * and interrupts taken between instructions do not retire.
 *
 * @module
 */

import { decodeInto } from "./decode.ts";
import { CAUSE, type Hart, MSTATUS_TW, PRIV_M, PRIV_U } from "./hart.ts";
import { GATE_ABSENT, GATE_CODE, type Ram } from "./ram.ts";

/**
 * Number of decoded-instruction cache slots (2-byte granules of pc; a power of two). Each slot
 * is four integers: the pc it holds (0: empty; pc 0 is never in RAM), packed fields, immediate,
 * raw instruction bits.
 */
export const DECODE_CACHE_SIZE = 1 << 16;
const CACHE_MASK = DECODE_CACHE_SIZE - 1;

/** 16-bit halves of a 32-bit high product: mulhu(a, b) = ((a >>> 0) * (b >>> 0)) >> 32. */
export function mulhu(a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const ll = al * bl, hl = ah * bl, lh = al * bh, hh = ah * bh;
  const mid = (ll >>> 16) + (hl & 0xffff) + (lh & 0xffff);
  return (hh + (hl >>> 16) + (lh >>> 16) + (mid >>> 16)) | 0;
}

/** Signed x signed high product (unprivileged spec 7.1). */
export function mulh(a: number, b: number): number {
  return (mulhu(a, b) - (a < 0 ? b : 0) - (b < 0 ? a : 0)) | 0;
}

/** Signed x unsigned high product. */
export function mulhsu(a: number, b: number): number {
  return (mulhu(a, b) - (a < 0 ? b : 0)) | 0;
}

/**
 * What the interpreter loop needs of the machine it runs in: the hart, RAM, the decode cache and
 * the slow paths it leaves the fast path for. `Machine` (machine.ts) implements it; it is declared
 * here so that the loop does not import the machine, which imports the loop.
 */
export interface ExecutionHost {
  readonly hart: Hart;
  readonly ram: Ram;
  /** Per slot: pc tag, packed fields, immediate, raw bits (DECODE_CACHE_SIZE slots). */
  readonly decodeCache: Int32Array;
  /** Set by a slow path that took a trap; the loop then asks `resumeAfterTrap()` for the pc. */
  readonly trapped: boolean;
  /** Set when the current run must end. */
  readonly stopped: boolean;
  /** Add `n` retired instructions to the hart and the clock. */
  commit(n: number): void;
  /** Take a trap at `pc` after `n` retired instructions; returns the handler's pc. */
  trap(pc: number, cause: number, tval: number, n: number): number;
  resumeAfterTrap(): number;
  loadSlow(addr: number, size: number): number;
  storeSlow(addr: number, size: number, value: number): void;
  csrInstruction(op: number, rd: number, rs1: number, csr: number): void;
  /** `wfi`: false when nothing can ever wake the hart. */
  waitForInterrupt(): boolean;
  /** The instruction at `pc` outside RAM (the mask ROM's), or -1: an instruction access fault. */
  fetchOutsideRam(pc: number): number;
}

/**
 * Run up to `limit` retired instructions (fewer when an instruction asks the machine to look at
 * something: a CSR access, mret, wfi, an MMIO store, a store into a watched page, a trap that
 * stops the machine). Commits the retired count and pc to the hart before returning.
 */
export function execute(m: ExecutionHost, limit: number): void {
  const h = m.hart;
  const x = h.x;
  const ram = m.ram;
  const u8 = ram.bytes;
  const u16 = ram.u16;
  const i32 = ram.i32;
  const gate = ram.pageGate;
  // An entry equal to `open` needs no look before a store (ram.ts); it changes only between runs.
  const open = ram.gateOpen;
  // While pages may be absent (lazy restore, post-copy), loads and fetches test GATE_ABSENT
  // (ram.ts); stores meet it through the store gate. Read once per run, like `open`.
  const lazy = ram.lazy;
  // A page is absent when its bit differs from this (0, or GATE_ABSENT for RAM whose pages
  // start absent; ram.ts `absentFlip`).
  const flip = ram.absentFlip;
  const ramSize = ram.size;
  const fetchFast = ramSize - 2;
  const cache = m.decodeCache;
  let pc = h.pc;
  let n = 0;
  outer: while (n < limit) {
    // ---- fetch (through the decoded-instruction cache) ----
    const ci = ((pc >>> 1) & CACHE_MASK) << 2;
    if (cache[ci] !== pc) {
      const po = (pc ^ 0x8000_0000) >>> 0;
      let raw: number;
      if (lazy && po < ramSize && ((gate[po >>> 12] ^ flip) & GATE_ABSENT) !== 0) {
        ram.faultIn(po >>> 12);
      }
      if (po < fetchFast) {
        const lo = u16[po >>> 1];
        // The upper half of a 32-bit instruction may start the next page.
        if (lazy && (lo & 3) === 3 && ((gate[(po + 2) >>> 12] ^ flip) & GATE_ABSENT) !== 0) {
          ram.faultIn((po + 2) >>> 12);
        }
        raw = (lo & 3) === 3 ? lo | (u16[(po >>> 1) + 1] << 16) : lo;
      } else if (po < ramSize && (u16[po >>> 1] & 3) !== 3) {
        raw = u16[po >>> 1];
      } else if (po >= ramSize && (raw = m.fetchOutsideRam(pc)) >= 0) {
        // The mask ROM: read-only, so its decoded instructions never need invalidating.
      } else {
        // Outside RAM and ROM, or a 32-bit instruction in RAM's last halfword: instruction
        // access fault (privileged spec 3.1.15; mtval is the faulting address).
        h.pc = pc;
        pc = m.trap(pc, CAUSE.INSTRUCTION_ACCESS_FAULT, po < ramSize ? (pc + 2) | 0 : pc, n);
        if (m.stopped) break outer;
        continue;
      }
      if (po < ramSize) {
        // Mark the page(s) holding the instruction so stores into them invalidate the cache.
        const p0 = po >>> 12;
        if ((gate[p0] & GATE_CODE) === 0) Atomics.or(gate, p0, GATE_CODE);
        const p1 = (po + 2) >>> 12;
        if (p1 !== p0 && (raw & 3) === 3 && (gate[p1] & GATE_CODE) === 0) {
          Atomics.or(gate, p1, GATE_CODE);
        }
      }
      cache[ci] = pc;
      cache[ci + 3] = raw;
      decodeInto(raw, cache, ci + 1);
    }
    const meta = cache[ci + 1];
    const imm = cache[ci + 2];
    const rd = (meta >>> 8) & 63;
    const rs1 = (meta >>> 14) & 63;
    const rs2 = (meta >>> 20) & 63;

    // ---- execute ----
    switch (meta & 0xff) {
      case 19 /* ADDI */:
        x[rd] = (x[rs1] + imm) | 0;
        break;
      case 28 /* ADD */:
        x[rd] = (x[rs1] + x[rs2]) | 0;
        break;
      case 13 /* LW */: {
        const a = (x[rs1] + imm) | 0;
        const o = (a ^ 0x8000_0000) >>> 0;
        if (o < ramSize && (o & 3) === 0) {
          if (lazy && ((gate[o >>> 12] ^ flip) & GATE_ABSENT) !== 0) ram.faultIn(o >>> 12);
          x[rd] = i32[o >>> 2];
        } else {
          h.pc = pc;
          m.commit(n);
          limit -= n;
          n = 0;
          const v = m.loadSlow(a, 4);
          if (m.trapped) {
            pc = m.resumeAfterTrap();
            if (m.stopped) break outer;
            continue;
          }
          x[rd] = v;
        }
        break;
      }
      case 18 /* SW */: {
        const a = (x[rs1] + imm) | 0;
        const o = (a ^ 0x8000_0000) >>> 0;
        if (o < ramSize && (o & 3) === 0) {
          const p = o >>> 12;
          if (gate[p] !== open && ram.gatedStore(p, o)) limit = n + 1;
          i32[o >>> 2] = x[rs2];
        } else {
          h.pc = pc;
          m.commit(n);
          limit -= n;
          n = 0;
          m.storeSlow(a, 4, x[rs2]);
          if (m.trapped) {
            pc = m.resumeAfterTrap();
            if (m.stopped) break outer;
            continue;
          }
          limit = n + 1;
        }
        break;
      }
      case 5 /* BEQ */:
        n++;
        pc = x[rs1] === x[rs2] ? (pc + imm) | 0 : (pc + (meta >>> 26)) | 0;
        continue;
      case 6 /* BNE */:
        n++;
        pc = x[rs1] !== x[rs2] ? (pc + imm) | 0 : (pc + (meta >>> 26)) | 0;
        continue;
      case 7 /* BLT */:
        n++;
        pc = x[rs1] < x[rs2] ? (pc + imm) | 0 : (pc + (meta >>> 26)) | 0;
        continue;
      case 8 /* BGE */:
        n++;
        pc = x[rs1] >= x[rs2] ? (pc + imm) | 0 : (pc + (meta >>> 26)) | 0;
        continue;
      case 9 /* BLTU */:
        n++;
        pc = (x[rs1] >>> 0) < (x[rs2] >>> 0) ? (pc + imm) | 0 : (pc + (meta >>> 26)) | 0;
        continue;
      case 10 /* BGEU */:
        n++;
        pc = (x[rs1] >>> 0) >= (x[rs2] >>> 0) ? (pc + imm) | 0 : (pc + (meta >>> 26)) | 0;
        continue;
      case 3 /* JAL */:
        x[rd] = (pc + (meta >>> 26)) | 0;
        n++;
        pc = (pc + imm) | 0;
        continue;
      case 4 /* JALR */: {
        const t = (x[rs1] + imm) & ~1;
        x[rd] = (pc + (meta >>> 26)) | 0;
        n++;
        pc = t;
        continue;
      }
      case 1 /* LUI */:
        x[rd] = imm;
        break;
      case 2 /* AUIPC */:
        x[rd] = (pc + imm) | 0;
        break;
      case 11 /* LB */:
      case 14 /* LBU */: {
        const a = (x[rs1] + imm) | 0;
        const o = (a ^ 0x8000_0000) >>> 0;
        let v: number;
        if (o < ramSize) {
          if (lazy && ((gate[o >>> 12] ^ flip) & GATE_ABSENT) !== 0) ram.faultIn(o >>> 12);
          v = u8[o];
        } else {
          h.pc = pc;
          m.commit(n);
          limit -= n;
          n = 0;
          v = m.loadSlow(a, 1);
          if (m.trapped) {
            pc = m.resumeAfterTrap();
            if (m.stopped) break outer;
            continue;
          }
        }
        x[rd] = (meta & 0xff) === 11 /* LB */ ? (v << 24) >> 24 : v & 0xff;
        break;
      }
      case 12 /* LH */:
      case 15 /* LHU */: {
        const a = (x[rs1] + imm) | 0;
        const o = (a ^ 0x8000_0000) >>> 0;
        let v: number;
        if (o < ramSize && (o & 1) === 0) {
          if (lazy && ((gate[o >>> 12] ^ flip) & GATE_ABSENT) !== 0) ram.faultIn(o >>> 12);
          v = u16[o >>> 1];
        } else {
          h.pc = pc;
          m.commit(n);
          limit -= n;
          n = 0;
          v = m.loadSlow(a, 2);
          if (m.trapped) {
            pc = m.resumeAfterTrap();
            if (m.stopped) break outer;
            continue;
          }
        }
        x[rd] = (meta & 0xff) === 12 /* LH */ ? (v << 16) >> 16 : v & 0xffff;
        break;
      }
      case 16 /* SB */: {
        const a = (x[rs1] + imm) | 0;
        const o = (a ^ 0x8000_0000) >>> 0;
        if (o < ramSize) {
          const p = o >>> 12;
          if (gate[p] !== open && ram.gatedStore(p, o)) limit = n + 1;
          u8[o] = x[rs2];
        } else {
          h.pc = pc;
          m.commit(n);
          limit -= n;
          n = 0;
          m.storeSlow(a, 1, x[rs2]);
          if (m.trapped) {
            pc = m.resumeAfterTrap();
            if (m.stopped) break outer;
            continue;
          }
          limit = n + 1;
        }
        break;
      }
      case 17 /* SH */: {
        const a = (x[rs1] + imm) | 0;
        const o = (a ^ 0x8000_0000) >>> 0;
        if (o < ramSize && (o & 1) === 0) {
          const p = o >>> 12;
          if (gate[p] !== open && ram.gatedStore(p, o)) limit = n + 1;
          u16[o >>> 1] = x[rs2];
        } else {
          h.pc = pc;
          m.commit(n);
          limit -= n;
          n = 0;
          m.storeSlow(a, 2, x[rs2]);
          if (m.trapped) {
            pc = m.resumeAfterTrap();
            if (m.stopped) break outer;
            continue;
          }
          limit = n + 1;
        }
        break;
      }
      case 20 /* SLTI */:
        x[rd] = x[rs1] < imm ? 1 : 0;
        break;
      case 21 /* SLTIU */:
        x[rd] = (x[rs1] >>> 0) < (imm >>> 0) ? 1 : 0;
        break;
      case 22 /* XORI */:
        x[rd] = x[rs1] ^ imm;
        break;
      case 23 /* ORI */:
        x[rd] = x[rs1] | imm;
        break;
      case 24 /* ANDI */:
        x[rd] = x[rs1] & imm;
        break;
      case 25 /* SLLI */:
        x[rd] = x[rs1] << imm;
        break;
      case 26 /* SRLI */:
        x[rd] = x[rs1] >>> imm;
        break;
      case 27 /* SRAI */:
        x[rd] = x[rs1] >> imm;
        break;
      case 29 /* SUB */:
        x[rd] = (x[rs1] - x[rs2]) | 0;
        break;
      case 30 /* SLL */:
        x[rd] = x[rs1] << (x[rs2] & 31);
        break;
      case 31 /* SLT */:
        x[rd] = x[rs1] < x[rs2] ? 1 : 0;
        break;
      case 32 /* SLTU */:
        x[rd] = (x[rs1] >>> 0) < (x[rs2] >>> 0) ? 1 : 0;
        break;
      case 33 /* XOR */:
        x[rd] = x[rs1] ^ x[rs2];
        break;
      case 34 /* SRL */:
        x[rd] = x[rs1] >>> (x[rs2] & 31);
        break;
      case 35 /* SRA */:
        x[rd] = x[rs1] >> (x[rs2] & 31);
        break;
      case 36 /* OR */:
        x[rd] = x[rs1] | x[rs2];
        break;
      case 37 /* AND */:
        x[rd] = x[rs1] & x[rs2];
        break;
      case 50 /* MUL */:
        x[rd] = Math.imul(x[rs1], x[rs2]);
        break;
      case 51 /* MULH */:
        x[rd] = mulh(x[rs1], x[rs2]);
        break;
      case 52 /* MULHSU */:
        x[rd] = mulhsu(x[rs1], x[rs2]);
        break;
      case 53 /* MULHU */:
        x[rd] = mulhu(x[rs1], x[rs2]);
        break;
      // Division (unprivileged spec 7.2, table 7.1): no traps; x/0 = -1, x%0 = x,
      // MIN/-1 = MIN, MIN%-1 = 0.
      case 54 /* DIV */: {
        const a = x[rs1], b = x[rs2];
        x[rd] = b === 0 ? -1 : (a === -0x8000_0000 && b === -1) ? a : (a / b) | 0;
        break;
      }
      case 55 /* DIVU */: {
        const b = x[rs2] >>> 0;
        x[rd] = b === 0 ? -1 : ((x[rs1] >>> 0) / b) | 0;
        break;
      }
      case 56 /* REM */: {
        const a = x[rs1], b = x[rs2];
        x[rd] = b === 0 ? a : b === -1 ? 0 : (a % b) | 0;
        break;
      }
      case 57 /* REMU */: {
        const b = x[rs2] >>> 0;
        x[rd] = b === 0 ? x[rs1] : ((x[rs1] >>> 0) % b) | 0;
        break;
      }
      case 38 /* FENCE */:
      case 39 /* FENCE_I */:
        break; // one hart, and the decode cache checks the instruction bits on every fetch
      case 58 /* LR_W */: {
        // Unprivileged spec 8.2. Only RAM supports LR/SC and AMOs on this machine.
        const a = x[rs1];
        const o = (a ^ 0x8000_0000) >>> 0;
        if ((o & 3) !== 0 || o >= ramSize) {
          h.pc = pc;
          pc = m.trap(
            pc,
            (o & 3) !== 0 ? CAUSE.LOAD_MISALIGNED : CAUSE.LOAD_ACCESS_FAULT,
            a,
            n,
          );
          if (m.stopped) break outer;
          continue;
        }
        if (lazy && ((gate[o >>> 12] ^ flip) & GATE_ABSENT) !== 0) ram.faultIn(o >>> 12);
        x[rd] = i32[o >>> 2];
        h.reservation = a;
        break;
      }
      case 59 /* SC_W */: {
        const a = x[rs1];
        const o = (a ^ 0x8000_0000) >>> 0;
        if ((o & 3) !== 0 || o >= ramSize) {
          h.pc = pc;
          pc = m.trap(
            pc,
            (o & 3) !== 0 ? CAUSE.STORE_MISALIGNED : CAUSE.STORE_ACCESS_FAULT,
            a,
            n,
          );
          if (m.stopped) break outer;
          continue;
        }
        // Succeeds only on the reserved word; any SC clears the reservation.
        if (h.reservation === a) {
          const p = o >>> 12;
          if (gate[p] !== open && ram.gatedStore(p, o)) limit = n + 1;
          i32[o >>> 2] = x[rs2];
          x[rd] = 0;
        } else {
          x[rd] = 1;
        }
        h.reservation = -1;
        break;
      }
      case 60 /* AMOSWAP_W */:
      case 61 /* AMOADD_W */:
      case 62 /* AMOXOR_W */:
      case 63 /* AMOAND_W */:
      case 64 /* AMOOR_W */:
      case 65 /* AMOMIN_W */:
      case 66 /* AMOMAX_W */:
      case 67 /* AMOMINU_W */:
      case 68 /* AMOMAXU_W */: {
        // Unprivileged spec 8.4: misaligned AMOs raise store/AMO address misaligned; AMOs
        // outside RAM raise store/AMO access fault.
        const a = x[rs1];
        const o = (a ^ 0x8000_0000) >>> 0;
        if ((o & 3) !== 0 || o >= ramSize) {
          h.pc = pc;
          pc = m.trap(
            pc,
            (o & 3) !== 0 ? CAUSE.STORE_MISALIGNED : CAUSE.STORE_ACCESS_FAULT,
            a,
            n,
          );
          if (m.stopped) break outer;
          continue;
        }
        const p = o >>> 12;
        if (gate[p] !== open && ram.gatedStore(p, o)) limit = n + 1;
        const w = o >>> 2;
        const old = i32[w];
        const b = x[rs2];
        let v: number;
        switch (meta & 0xff) {
          case 60 /* AMOSWAP_W */:
            v = b;
            break;
          case 61 /* AMOADD_W */:
            v = (old + b) | 0;
            break;
          case 62 /* AMOXOR_W */:
            v = old ^ b;
            break;
          case 63 /* AMOAND_W */:
            v = old & b;
            break;
          case 64 /* AMOOR_W */:
            v = old | b;
            break;
          case 65 /* AMOMIN_W */:
            v = old < b ? old : b;
            break;
          case 66 /* AMOMAX_W */:
            v = old > b ? old : b;
            break;
          case 67 /* AMOMINU_W */:
            v = (old >>> 0) < (b >>> 0) ? old : b;
            break;
          default:
            v = (old >>> 0) > (b >>> 0) ? old : b;
            break;
        }
        i32[w] = v;
        x[rd] = old;
        break;
      }
      case 44 /* CSRRW */:
      case 45 /* CSRRS */:
      case 46 /* CSRRC */:
      case 47 /* CSRRWI */:
      case 48 /* CSRRSI */:
      case 49 /* CSRRCI */: {
        h.pc = pc;
        m.commit(n);
        limit -= n;
        n = 0;
        m.csrInstruction(meta & 0xff, rd, rs1, imm);
        if (m.trapped) {
          pc = m.resumeAfterTrap();
          if (m.stopped) break outer;
          continue;
        }
        limit = 1; // end the chunk: interrupt enables may have changed
        break;
      }
      case 40 /* ECALL */:
        h.pc = pc;
        pc = m.trap(pc, h.priv === PRIV_M ? CAUSE.ECALL_FROM_M : CAUSE.ECALL_FROM_U, 0, n);
        if (m.stopped) break outer;
        continue;
      case 41 /* EBREAK */:
        h.pc = pc;
        // mtval = 0, as QEMU does (privileged spec 3.1.16 allows zero or the pc)
        pc = m.trap(pc, CAUSE.BREAKPOINT, 0, n);
        if (m.stopped) break outer;
        continue;
      case 42 /* MRET */:
        if (h.priv !== PRIV_M) {
          h.pc = pc;
          pc = m.trap(pc, CAUSE.ILLEGAL_INSTRUCTION, cache[ci + 3], n);
          if (m.stopped) break outer;
          continue;
        }
        pc = h.mret();
        n++;
        limit = n; // interrupts may now be enabled
        continue;
      case 43 /* WFI */: {
        // Privileged spec 3.3.3 and 3.1.6.5 (TW).
        if (h.priv === PRIV_U && (h.mstatus & MSTATUS_TW) !== 0) {
          h.pc = pc;
          pc = m.trap(pc, CAUSE.ILLEGAL_INSTRUCTION, cache[ci + 3], n);
          if (m.stopped) break outer;
          continue;
        }
        h.pc = pc;
        m.commit(n);
        limit -= n;
        n = 0;
        if (!m.waitForInterrupt()) break outer; // nothing can ever wake the hart: stop before it
        limit = 1;
        break;
      }
      default: // OP_ILLEGAL: mtval holds the instruction bits (privileged spec 3.1.16)
        h.pc = pc;
        pc = m.trap(pc, CAUSE.ILLEGAL_INSTRUCTION, cache[ci + 3], n);
        if (m.stopped) break outer;
        continue;
    }
    pc = (pc + (meta >>> 26)) | 0;
    n++;
  }
  h.pc = pc;
  m.commit(n);
}
