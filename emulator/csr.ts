/**
 * Control and status registers of the hart (Zicsr, privileged spec chapter 2 and 3.1), and the
 * semantics of the CSR instructions (unprivileged spec chapter 9).
 *
 * Implemented: mstatus, mstatush, misa, mvendorid, marchid, mimpid, mhartid, mconfigptr, mie,
 * mip, mtvec (direct and vectored), mscratch, mepc, mcause, mtval, mcounteren, mcountinhibit,
 * mcycle(h), minstret(h), the hardwired-zero mhpmcounter3-31(h) / mhpmevent3-31, the
 * hardwired-zero PMP registers (no PMP entries), and the user aliases cycle, time, instret (and
 * their high halves, hpmcounterN) gated by mcounteren. There is no S-mode, so medeleg, mideleg
 * and all S-mode CSRs are illegal.
 *
 * @module
 */

import {
  type Hart,
  MIP_MEIP,
  MIP_MSIP,
  MIP_MTIP,
  MSTATUS_MPP,
  MSTATUS_WRITABLE,
  PRIV_M,
} from "./hart.ts";

/** What the CSRs need from the rest of the machine. */
export interface CsrEnvironment {
  /** The current mtime (for the `time` CSR). */
  mtime(): bigint;
  /** The interrupt-pending bits driven by devices (MSIP, MTIP, MEIP). */
  pendingInterrupts(): number;
}

/** misa: MXL = 1 (32-bit), extensions A, C, I, M, U (privileged spec 3.1.1). */
export const MISA = (1 << 30) | (1 << 0) | (1 << 2) | (1 << 8) | (1 << 12) | (1 << 20);

export const CSR_MSTATUS = 0x300;
export const CSR_MISA = 0x301;
export const CSR_MIE = 0x304;
export const CSR_MTVEC = 0x305;
export const CSR_MCOUNTEREN = 0x306;
export const CSR_MSTATUSH = 0x310;
export const CSR_MCOUNTINHIBIT = 0x320;
export const CSR_MSCRATCH = 0x340;
export const CSR_MEPC = 0x341;
export const CSR_MCAUSE = 0x342;
export const CSR_MTVAL = 0x343;
export const CSR_MIP = 0x344;
export const CSR_MCYCLE = 0xb00;
export const CSR_MINSTRET = 0xb02;
export const CSR_MCYCLEH = 0xb80;
export const CSR_MINSTRETH = 0xb82;
export const CSR_CYCLE = 0xc00;
export const CSR_TIME = 0xc01;
export const CSR_INSTRET = 0xc02;
export const CSR_CYCLEH = 0xc80;
export const CSR_TIMEH = 0xc81;
export const CSR_INSTRETH = 0xc82;
export const CSR_MVENDORID = 0xf11;
export const CSR_MARCHID = 0xf12;
export const CSR_MIMPID = 0xf13;
export const CSR_MHARTID = 0xf14;
export const CSR_MCONFIGPTR = 0xf15;

const MIE_WRITABLE = MIP_MSIP | MIP_MTIP | MIP_MEIP;

/** Result of the last {@linkcode csrAccess}: true when it raised an illegal instruction. */
export let csrIllegal = false;

function lo(v: bigint): number {
  return Number(v & 0xffff_ffffn) | 0;
}
function hi(v: bigint): number {
  return Number((v >> 32n) & 0xffff_ffffn) | 0;
}

/**
 * Read (and, when `write` is true, then write `value` into) CSR `csr` with the hart's current
 * privilege. Returns the old value; sets {@linkcode csrIllegal} instead when the access raises
 * an illegal-instruction exception (unknown CSR, too little privilege, write to a read-only CSR).
 * The caller has already made `h.retired` current.
 */
export function csrAccess(
  h: Hart,
  env: CsrEnvironment,
  csr: number,
  write: boolean,
  value: number,
): number {
  csrIllegal = false;
  // Privileged spec 2.1: bits 9:8 give the lowest privilege, bits 11:10 = 0b11 mean read-only.
  if (((csr >>> 8) & 3) > h.priv || (write && (csr >>> 10) === 3)) {
    csrIllegal = true;
    return 0;
  }
  // User counters (privileged spec 3.1.11, Zicntr): U-mode needs the mcounteren bit.
  if (csr >= 0xc00 && csr <= 0xc9f) {
    const idx = csr & 0x1f;
    if ((csr & 0x60) !== 0) {
      csrIllegal = true;
      return 0;
    }
    if (h.priv !== PRIV_M && ((h.mcounteren >>> idx) & 1) === 0) {
      csrIllegal = true;
      return 0;
    }
    const high = csr >= 0xc80;
    if (idx === 0) return high ? hi(h.cycle()) : lo(h.cycle());
    if (idx === 1) return high ? hi(env.mtime()) : lo(env.mtime());
    if (idx === 2) return high ? hi(h.instret()) : lo(h.instret());
    return 0; // hpmcounter3..31: hardwired zero
  }
  // mhpmcounter3..31(h), mhpmevent3..31: hardwired zero.
  if (
    (csr >= 0xb03 && csr <= 0xb1f) || (csr >= 0xb83 && csr <= 0xb9f) ||
    (csr >= 0x323 && csr <= 0x33f)
  ) {
    return 0;
  }
  // PMP (privileged spec 3.7): zero entries implemented, so every register reads as zero.
  if ((csr >= 0x3a0 && csr <= 0x3af) || (csr >= 0x3b0 && csr <= 0x3ef)) return 0;
  let old: number;
  switch (csr) {
    case CSR_MSTATUS:
      old = h.mstatus;
      if (write) {
        let v = value & MSTATUS_WRITABLE;
        // MPP is WARL: only M (3) and U (0) exist; map anything else to U.
        if (((v & MSTATUS_MPP) >>> 11) !== PRIV_M) v &= ~MSTATUS_MPP;
        h.mstatus = v;
      }
      return old;
    case CSR_MSTATUSH:
      return 0; // MBE = 0: little-endian machine mode
    case CSR_MISA:
      return MISA; // writes ignored (WARL, extensions cannot be switched off)
    case CSR_MIE:
      old = h.mie;
      if (write) h.mie = value & MIE_WRITABLE;
      return old;
    case CSR_MIP:
      // MSIP, MTIP and MEIP are read-only here: driven by the CLINT and the (absent) PLIC.
      return env.pendingInterrupts();
    case CSR_MTVEC:
      old = h.mtvec;
      if (write) {
        // WARL: modes 0 (direct) and 1 (vectored); reserved modes keep the old mode.
        const mode = (value & 3) <= 1 ? value & 3 : h.mtvec & 3;
        h.mtvec = (value & ~3) | mode;
      }
      return old;
    case CSR_MCOUNTEREN:
      old = h.mcounteren;
      if (write) h.mcounteren = value & 7;
      return old;
    case CSR_MCOUNTINHIBIT:
      return 0; // counters always run (WARL zero)
    case CSR_MSCRATCH:
      old = h.mscratch;
      if (write) h.mscratch = value | 0;
      return old;
    case CSR_MEPC:
      old = h.mepc;
      if (write) h.mepc = value & ~1; // IALIGN = 16 with C
      return old;
    case CSR_MCAUSE:
      old = h.mcause;
      if (write) h.mcause = value | 0;
      return old;
    case CSR_MTVAL:
      old = h.mtval;
      if (write) h.mtval = value | 0;
      return old;
    case CSR_MCYCLE:
    case CSR_MCYCLEH: {
      const c = h.cycle();
      const high = csr === CSR_MCYCLEH;
      old = high ? hi(c) : lo(c);
      if (write) {
        const v = BigInt(value >>> 0);
        const next = high ? (v << 32n) | (c & 0xffff_ffffn) : (c & ~0xffff_ffffn) | v;
        // Unprivileged spec 9.1: the write replaces this instruction's own increment, so the
        // counter must read `next` once this instruction has retired (retired + 1).
        h.setCycle(next - 1n);
      }
      return old;
    }
    case CSR_MINSTRET:
    case CSR_MINSTRETH: {
      const c = h.instret();
      const high = csr === CSR_MINSTRETH;
      old = high ? hi(c) : lo(c);
      if (write) {
        const v = BigInt(value >>> 0);
        const next = high ? (v << 32n) | (c & 0xffff_ffffn) : (c & ~0xffff_ffffn) | v;
        h.setInstret(next - 1n);
      }
      return old;
    }
    case CSR_MVENDORID:
    case CSR_MARCHID:
    case CSR_MIMPID:
    case CSR_MHARTID:
    case CSR_MCONFIGPTR:
      return 0;
    default:
      csrIllegal = true;
      return 0;
  }
}
