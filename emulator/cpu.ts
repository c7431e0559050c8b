/**
 * The interpreter loop: fetch through the decoded-instruction cache, one `switch` over the
 * operation, registers in the hart's Int32Array, fast paths for aligned RAM accesses, and slow
 * paths (MMIO, misaligned and faulting accesses, CSRs, traps) out of line in the machine.
 *
 * The decoded-instruction cache is direct-mapped by pc and validated by the raw instruction bits
 * fetched from RAM on every step, so a store into code needs no invalidation (and `fence.i` is
 * free): a changed instruction simply misses. Instruction fetch is never misaligned: with the C
 * extension every jump target is 2-byte aligned (jalr clears bit 0).
 *
 * Retirement (what `minstret`, mtime and `--stop-at` count): an instruction retires when it
 * completes without raising an exception. Instructions that trap (including ecall and ebreak)
 * and interrupts taken between instructions do not retire.
 *
 * @module
 */

import * as D from "./decode.ts";
import { CAUSE, MSTATUS_TW, PRIV_M, PRIV_U } from "./hart.ts";
import type { Machine } from "./machine.ts";

/** Number of decoded-instruction cache slots (2-byte granules of pc; a power of two). */
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
 * Run up to `limit` retired instructions (fewer when an instruction asks the machine to look at
 * something: a CSR access, mret, wfi, an MMIO store, a store into a watched page, a trap that
 * stops the machine). Commits the retired count and pc to the hart before returning.
 */
export function execute(m: Machine, limit: number): void {
  const h = m.hart;
  const x = h.x;
  const ram = m.ram;
  const u8 = ram.bytes;
  const u16 = ram.u16;
  const i32 = ram.i32;
  const gate = ram.pageGate;
  const ramSize = ram.size;
  const fetchFast = ramSize - 2;
  const cRaw = m.cacheRaw;
  const cMeta = m.cacheMeta;
  const cImm = m.cacheImm;
  let pc = h.pc;
  let n = 0;
  outer: while (n < limit) {
    // ---- fetch ----
    const po = (pc ^ 0x8000_0000) >>> 0;
    let raw: number;
    if (po < fetchFast) {
      const lo = u16[po >>> 1];
      raw = (lo & 3) === 3 ? lo | (u16[(po >>> 1) + 1] << 16) : lo;
    } else {
      // Last halfword of RAM, or outside RAM: instruction access fault (privileged spec 3.7.1
      // and table 3.6; mtval is the faulting address).
      if (po < ramSize && (u16[po >>> 1] & 3) !== 3) {
        raw = u16[po >>> 1];
      } else {
        h.pc = pc;
        pc = m.trap(pc, CAUSE.INSTRUCTION_ACCESS_FAULT, po < ramSize ? (pc + 2) | 0 : pc, n);
        if (m.stopped) break outer;
        continue;
      }
    }
    const ci = (po >>> 1) & CACHE_MASK;
    if (cRaw[ci] !== raw) {
      cRaw[ci] = raw;
      D.decodeInto(raw, cMeta, cImm, ci);
    }
    const meta = cMeta[ci];
    const imm = cImm[ci];
    const rd = (meta >>> 8) & 63;
    const rs1 = (meta >>> 14) & 63;
    const rs2 = (meta >>> 20) & 63;

    // ---- execute ----
    switch (meta & 0xff) {
      case D.OP_ADDI:
        x[rd] = (x[rs1] + imm) | 0;
        break;
      case D.OP_ADD:
        x[rd] = (x[rs1] + x[rs2]) | 0;
        break;
      case D.OP_LW: {
        const a = (x[rs1] + imm) | 0;
        const o = (a ^ 0x8000_0000) >>> 0;
        if (o < ramSize && (o & 3) === 0) {
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
      case D.OP_SW: {
        const a = (x[rs1] + imm) | 0;
        const o = (a ^ 0x8000_0000) >>> 0;
        if (o < ramSize && (o & 3) === 0) {
          const p = o >>> 12;
          if (gate[p] !== 0 && ram.gatedStore(p)) limit = n + 1;
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
      case D.OP_BEQ:
        n++;
        pc = x[rs1] === x[rs2] ? (pc + imm) | 0 : (pc + (meta >>> 26)) | 0;
        continue;
      case D.OP_BNE:
        n++;
        pc = x[rs1] !== x[rs2] ? (pc + imm) | 0 : (pc + (meta >>> 26)) | 0;
        continue;
      case D.OP_BLT:
        n++;
        pc = x[rs1] < x[rs2] ? (pc + imm) | 0 : (pc + (meta >>> 26)) | 0;
        continue;
      case D.OP_BGE:
        n++;
        pc = x[rs1] >= x[rs2] ? (pc + imm) | 0 : (pc + (meta >>> 26)) | 0;
        continue;
      case D.OP_BLTU:
        n++;
        pc = (x[rs1] >>> 0) < (x[rs2] >>> 0) ? (pc + imm) | 0 : (pc + (meta >>> 26)) | 0;
        continue;
      case D.OP_BGEU:
        n++;
        pc = (x[rs1] >>> 0) >= (x[rs2] >>> 0) ? (pc + imm) | 0 : (pc + (meta >>> 26)) | 0;
        continue;
      case D.OP_JAL:
        x[rd] = (pc + (meta >>> 26)) | 0;
        n++;
        pc = (pc + imm) | 0;
        continue;
      case D.OP_JALR: {
        const t = (x[rs1] + imm) & ~1;
        x[rd] = (pc + (meta >>> 26)) | 0;
        n++;
        pc = t;
        continue;
      }
      case D.OP_LUI:
        x[rd] = imm;
        break;
      case D.OP_AUIPC:
        x[rd] = (pc + imm) | 0;
        break;
      case D.OP_LB:
      case D.OP_LBU: {
        const a = (x[rs1] + imm) | 0;
        const o = (a ^ 0x8000_0000) >>> 0;
        let v: number;
        if (o < ramSize) {
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
        x[rd] = (meta & 0xff) === D.OP_LB ? (v << 24) >> 24 : v & 0xff;
        break;
      }
      case D.OP_LH:
      case D.OP_LHU: {
        const a = (x[rs1] + imm) | 0;
        const o = (a ^ 0x8000_0000) >>> 0;
        let v: number;
        if (o < ramSize && (o & 1) === 0) {
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
        x[rd] = (meta & 0xff) === D.OP_LH ? (v << 16) >> 16 : v & 0xffff;
        break;
      }
      case D.OP_SB: {
        const a = (x[rs1] + imm) | 0;
        const o = (a ^ 0x8000_0000) >>> 0;
        if (o < ramSize) {
          const p = o >>> 12;
          if (gate[p] !== 0 && ram.gatedStore(p)) limit = n + 1;
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
      case D.OP_SH: {
        const a = (x[rs1] + imm) | 0;
        const o = (a ^ 0x8000_0000) >>> 0;
        if (o < ramSize && (o & 1) === 0) {
          const p = o >>> 12;
          if (gate[p] !== 0 && ram.gatedStore(p)) limit = n + 1;
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
      case D.OP_SLTI:
        x[rd] = x[rs1] < imm ? 1 : 0;
        break;
      case D.OP_SLTIU:
        x[rd] = (x[rs1] >>> 0) < (imm >>> 0) ? 1 : 0;
        break;
      case D.OP_XORI:
        x[rd] = x[rs1] ^ imm;
        break;
      case D.OP_ORI:
        x[rd] = x[rs1] | imm;
        break;
      case D.OP_ANDI:
        x[rd] = x[rs1] & imm;
        break;
      case D.OP_SLLI:
        x[rd] = x[rs1] << imm;
        break;
      case D.OP_SRLI:
        x[rd] = x[rs1] >>> imm;
        break;
      case D.OP_SRAI:
        x[rd] = x[rs1] >> imm;
        break;
      case D.OP_SUB:
        x[rd] = (x[rs1] - x[rs2]) | 0;
        break;
      case D.OP_SLL:
        x[rd] = x[rs1] << (x[rs2] & 31);
        break;
      case D.OP_SLT:
        x[rd] = x[rs1] < x[rs2] ? 1 : 0;
        break;
      case D.OP_SLTU:
        x[rd] = (x[rs1] >>> 0) < (x[rs2] >>> 0) ? 1 : 0;
        break;
      case D.OP_XOR:
        x[rd] = x[rs1] ^ x[rs2];
        break;
      case D.OP_SRL:
        x[rd] = x[rs1] >>> (x[rs2] & 31);
        break;
      case D.OP_SRA:
        x[rd] = x[rs1] >> (x[rs2] & 31);
        break;
      case D.OP_OR:
        x[rd] = x[rs1] | x[rs2];
        break;
      case D.OP_AND:
        x[rd] = x[rs1] & x[rs2];
        break;
      case D.OP_MUL:
        x[rd] = Math.imul(x[rs1], x[rs2]);
        break;
      case D.OP_MULH:
        x[rd] = mulh(x[rs1], x[rs2]);
        break;
      case D.OP_MULHSU:
        x[rd] = mulhsu(x[rs1], x[rs2]);
        break;
      case D.OP_MULHU:
        x[rd] = mulhu(x[rs1], x[rs2]);
        break;
      // Division (unprivileged spec 7.2, table 7.1): no traps; x/0 = -1, x%0 = x,
      // MIN/-1 = MIN, MIN%-1 = 0.
      case D.OP_DIV: {
        const a = x[rs1], b = x[rs2];
        x[rd] = b === 0 ? -1 : (a === -0x8000_0000 && b === -1) ? a : (a / b) | 0;
        break;
      }
      case D.OP_DIVU: {
        const b = x[rs2] >>> 0;
        x[rd] = b === 0 ? -1 : ((x[rs1] >>> 0) / b) | 0;
        break;
      }
      case D.OP_REM: {
        const a = x[rs1], b = x[rs2];
        x[rd] = b === 0 ? a : b === -1 ? 0 : (a % b) | 0;
        break;
      }
      case D.OP_REMU: {
        const b = x[rs2] >>> 0;
        x[rd] = b === 0 ? x[rs1] : ((x[rs1] >>> 0) % b) | 0;
        break;
      }
      case D.OP_FENCE:
      case D.OP_FENCE_I:
        break; // one hart, and the decode cache checks the instruction bits on every fetch
      case D.OP_LR_W: {
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
        x[rd] = i32[o >>> 2];
        h.reservation = a;
        break;
      }
      case D.OP_SC_W: {
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
          if (gate[p] !== 0 && ram.gatedStore(p)) limit = n + 1;
          i32[o >>> 2] = x[rs2];
          x[rd] = 0;
        } else {
          x[rd] = 1;
        }
        h.reservation = -1;
        break;
      }
      case D.OP_AMOSWAP_W:
      case D.OP_AMOADD_W:
      case D.OP_AMOXOR_W:
      case D.OP_AMOAND_W:
      case D.OP_AMOOR_W:
      case D.OP_AMOMIN_W:
      case D.OP_AMOMAX_W:
      case D.OP_AMOMINU_W:
      case D.OP_AMOMAXU_W: {
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
        if (gate[p] !== 0 && ram.gatedStore(p)) limit = n + 1;
        const w = o >>> 2;
        const old = i32[w];
        const b = x[rs2];
        let v: number;
        switch (meta & 0xff) {
          case D.OP_AMOSWAP_W:
            v = b;
            break;
          case D.OP_AMOADD_W:
            v = (old + b) | 0;
            break;
          case D.OP_AMOXOR_W:
            v = old ^ b;
            break;
          case D.OP_AMOAND_W:
            v = old & b;
            break;
          case D.OP_AMOOR_W:
            v = old | b;
            break;
          case D.OP_AMOMIN_W:
            v = old < b ? old : b;
            break;
          case D.OP_AMOMAX_W:
            v = old > b ? old : b;
            break;
          case D.OP_AMOMINU_W:
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
      case D.OP_CSRRW:
      case D.OP_CSRRS:
      case D.OP_CSRRC:
      case D.OP_CSRRWI:
      case D.OP_CSRRSI:
      case D.OP_CSRRCI: {
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
      case D.OP_ECALL:
        h.pc = pc;
        pc = m.trap(pc, h.priv === PRIV_M ? CAUSE.ECALL_FROM_M : CAUSE.ECALL_FROM_U, 0, n);
        if (m.stopped) break outer;
        continue;
      case D.OP_EBREAK:
        h.pc = pc;
        pc = m.trap(pc, CAUSE.BREAKPOINT, pc, n);
        if (m.stopped) break outer;
        continue;
      case D.OP_MRET:
        if (h.priv !== PRIV_M) {
          h.pc = pc;
          pc = m.trap(pc, CAUSE.ILLEGAL_INSTRUCTION, raw, n);
          if (m.stopped) break outer;
          continue;
        }
        pc = h.mret();
        n++;
        limit = n; // interrupts may now be enabled
        continue;
      case D.OP_WFI: {
        // Privileged spec 3.3.3 and 3.1.6.5 (TW).
        if (h.priv === PRIV_U && (h.mstatus & MSTATUS_TW) !== 0) {
          h.pc = pc;
          pc = m.trap(pc, CAUSE.ILLEGAL_INSTRUCTION, raw, n);
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
        pc = m.trap(pc, CAUSE.ILLEGAL_INSTRUCTION, raw, n);
        if (m.stopped) break outer;
        continue;
    }
    pc = (pc + (meta >>> 26)) | 0;
    n++;
  }
  h.pc = pc;
  m.commit(n);
}
