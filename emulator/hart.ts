/**
 * The hart (RV32IMAC, machine and user modes): its whole architectural state in one flat record,
 * trap entry, and `save()` / `restore()`.
 *
 * @module
 */

/** Privilege levels (privileged spec 1.2). */
export const PRIV_U = 0;
/** Machine mode. */
export const PRIV_M = 3;

// mstatus fields (privileged spec 3.1.6).
export const MSTATUS_MIE = 1 << 3;
export const MSTATUS_MPIE = 1 << 7;
export const MSTATUS_MPP = 3 << 11;
export const MSTATUS_MPRV = 1 << 17;
export const MSTATUS_TW = 1 << 21;
/** The mstatus bits this hart implements; the rest read as zero. */
export const MSTATUS_WRITABLE = MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP | MSTATUS_MPRV |
  MSTATUS_TW;

// Interrupt bits in mip / mie (privileged spec 3.1.9).
export const MIP_MSIP = 1 << 3;
export const MIP_MTIP = 1 << 7;
export const MIP_MEIP = 1 << 11;

/** Exception causes (privileged spec 3.1.15, table 3.6). */
export const CAUSE = {
  INSTRUCTION_MISALIGNED: 0,
  INSTRUCTION_ACCESS_FAULT: 1,
  ILLEGAL_INSTRUCTION: 2,
  BREAKPOINT: 3,
  LOAD_MISALIGNED: 4,
  LOAD_ACCESS_FAULT: 5,
  STORE_MISALIGNED: 6,
  STORE_ACCESS_FAULT: 7,
  ECALL_FROM_U: 8,
  ECALL_FROM_M: 11,
} as const;
/** Interrupt causes have the top bit of mcause set. */
export const INTERRUPT_BIT = 0x8000_0000;
/** Interrupt cause numbers (the low bits of mcause). */
export const IRQ = { MSI: 3, MTI: 7, MEI: 11 } as const;

/** Version of {@linkcode HartState}. */
export const HART_STATE_VERSION = 1;

/**
 * The saved hart.
 * NOTICE: changing this layout needs a version bump (HART_STATE_VERSION).
 */
export interface HartState {
  /** Integer registers x0..x31 as signed 32-bit values (x0 is always 0). */
  x: number[];
  /** Program counter (unsigned). */
  pc: number;
  /** Current privilege: 0 user, 3 machine. */
  priv: number;
  /** mstatus (privileged spec 3.1.6), unsigned; only MIE, MPIE, MPP, MPRV and TW are kept. */
  mstatus: number;
  /** mie, the interrupt enable bits MSIE 3, MTIE 7, MEIE 11 (spec 3.1.9), unsigned. */
  mie: number;
  /** mtvec, the trap vector base with mode in bits 1:0 (0 direct, 1 vectored; 3.1.7), unsigned. */
  mtvec: number;
  /** mscratch, a word the guest's trap handler keeps for itself, unsigned. */
  mscratch: number;
  /** mepc, the pc of the instruction that trapped (spec 3.1.14), unsigned. */
  mepc: number;
  /** mcause, bit 31 set for an interrupt, the low bits the cause (spec 3.1.15), unsigned. */
  mcause: number;
  /** mtval, the faulting address or instruction of the last trap (spec 3.1.16), unsigned. */
  mtval: number;
  /** mcounteren bits 0-2: U-mode may read cycle, time, instret (spec 3.1.11). */
  mcounteren: number;
  /** Instructions retired since reset (what `--stop-at` counts); below 2^53. */
  retired: number;
  /** minstret minus `retired`, modulo 2^64, as a decimal string (guest writes move it). */
  instretOffset: string;
  /** mcycle minus `retired`, modulo 2^64, as a decimal string. */
  cycleOffset: string;
  /** LR/SC reservation: the reserved word's address (unsigned), or -1 when there is none. */
  reservation: number;
}

const U64 = (1n << 64n) - 1n;

/** The hart's architectural state. Fields are public for the CPU loop's speed. */
export class Hart {
  /** x0..x31 plus slot 32, the write sink for rd = x0 (never read). */
  readonly x: Int32Array = new Int32Array(33);
  /** Program counter, kept as a signed 32-bit integer (`| 0`). */
  pc = 0;
  /** Current privilege: {@linkcode PRIV_M} (3) or {@linkcode PRIV_U} (0). */
  priv: number = PRIV_M;
  /** mstatus, signed 32-bit like every CSR field here ({@linkcode HartState} saves unsigned). */
  mstatus = 0;
  /** mie: interrupt enable bits, as in mip. */
  mie = 0;
  /** mtvec: trap vector base, mode in bits 1:0. */
  mtvec = 0;
  /** mscratch: a word for the guest's trap handler; the hart itself never reads it. */
  mscratch = 0;
  /** mepc: pc of the instruction that trapped. */
  mepc = 0;
  /** mcause: top bit set for an interrupt. */
  mcause = 0;
  /** mtval: faulting address or instruction of the last trap. */
  mtval = 0;
  /** mcounteren: which counters U-mode may read. */
  mcounteren = 0;
  /** Instructions retired since reset (what `--stop-at` counts); below 2^53. */
  retired = 0;
  /** minstret minus `retired`, modulo 2^64 (guest writes to minstret move it). */
  instretOffset = 0n;
  /** mcycle minus `retired`, modulo 2^64. */
  cycleOffset = 0n;
  /** Reserved word address for LR/SC, or -1. */
  reservation: number = -1;

  /** Reset to the state QEMU's `virt` reset vector leaves the hart in, with pc at `entry`. */
  reset(entry: number): void {
    this.x.fill(0);
    this.pc = entry | 0;
    this.priv = PRIV_M;
    this.mstatus = 0;
    this.mie = 0;
    this.mtvec = 0;
    this.mscratch = 0;
    this.mepc = 0;
    this.mcause = 0;
    this.mtval = 0;
    this.mcounteren = 0;
    this.retired = 0;
    this.instretOffset = 0n;
    this.cycleOffset = 0n;
    this.reservation = -1;
  }

  /** minstret (64-bit). */
  instret(): bigint {
    return (BigInt(this.retired) + this.instretOffset) & U64;
  }

  /** mcycle (64-bit): this hart retires one instruction per cycle. */
  cycle(): bigint {
    return (BigInt(this.retired) + this.cycleOffset) & U64;
  }

  /** Set minstret so that it reads `value` with the current `retired`. */
  setInstret(value: bigint): void {
    this.instretOffset = (value - BigInt(this.retired)) & U64;
  }

  /** Set mcycle so that it reads `value` with the current `retired`. */
  setCycle(value: bigint): void {
    this.cycleOffset = (value - BigInt(this.retired)) & U64;
  }

  /**
   * Take a trap into machine mode (privileged spec 3.1.6.1, 3.1.7, 3.1.14-3.1.16): save pc and
   * privilege, disable interrupts, jump to mtvec (vectored mode offsets interrupts by 4 * cause).
   * The LR/SC reservation is dropped (the spec allows it on any trap). Returns the new pc.
   */
  enterTrap(pc: number, cause: number, tval: number): number {
    this.mepc = pc | 0;
    this.mcause = cause | 0;
    this.mtval = tval | 0;
    let s = this.mstatus;
    s = (s & ~MSTATUS_MPIE) | ((s & MSTATUS_MIE) !== 0 ? MSTATUS_MPIE : 0);
    s = (s & ~(MSTATUS_MIE | MSTATUS_MPP)) | (this.priv << 11);
    this.mstatus = s;
    this.priv = PRIV_M;
    this.reservation = -1;
    const base = this.mtvec & ~3;
    const vectored = (this.mtvec & 3) === 1 && (cause & INTERRUPT_BIT) !== 0;
    this.pc = (vectored ? base + 4 * (cause & 0x7fff_ffff) : base) | 0;
    return this.pc;
  }

  /** mret (privileged spec 3.3.2): returns the new pc. */
  mret(): number {
    const s = this.mstatus;
    const mpp = (s >>> 11) & 3;
    this.priv = mpp === PRIV_M ? PRIV_M : PRIV_U;
    let n = (s & ~MSTATUS_MIE) | ((s & MSTATUS_MPIE) !== 0 ? MSTATUS_MIE : 0);
    n = (n | MSTATUS_MPIE) & ~MSTATUS_MPP; // MPP becomes the least privileged mode, U
    if (this.priv !== PRIV_M) n &= ~MSTATUS_MPRV;
    this.mstatus = n;
    this.reservation = -1;
    this.pc = this.mepc | 0;
    return this.pc;
  }

  /** Plain-data copy of the hart. */
  save(): HartState {
    return {
      x: Array.from(this.x.subarray(0, 32)),
      pc: this.pc >>> 0,
      priv: this.priv,
      mstatus: this.mstatus >>> 0,
      mie: this.mie >>> 0,
      mtvec: this.mtvec >>> 0,
      mscratch: this.mscratch >>> 0,
      mepc: this.mepc >>> 0,
      mcause: this.mcause >>> 0,
      mtval: this.mtval >>> 0,
      mcounteren: this.mcounteren >>> 0,
      retired: this.retired,
      instretOffset: this.instretOffset.toString(),
      cycleOffset: this.cycleOffset.toString(),
      reservation: this.reservation === -1 ? -1 : this.reservation >>> 0,
    };
  }

  /** Load a state produced by {@linkcode Hart.save}. */
  restore(s: HartState): void {
    if (!Array.isArray(s.x) || s.x.length !== 32) {
      throw new TypeError("Cannot restore hart: x must be an array of 32 registers");
    }
    if (!Number.isSafeInteger(s.retired) || s.retired < 0) {
      throw new RangeError(`Cannot restore hart: retired ${s.retired} is not an instruction count`);
    }
    if (s.priv !== PRIV_M && s.priv !== PRIV_U) {
      throw new RangeError(`Cannot restore hart: privilege ${s.priv} is not 0 or 3`);
    }
    this.x.fill(0);
    for (let i = 1; i < 32; i++) this.x[i] = s.x[i];
    this.pc = s.pc | 0;
    this.priv = s.priv;
    this.mstatus = s.mstatus & MSTATUS_WRITABLE;
    this.mie = s.mie | 0;
    this.mtvec = s.mtvec | 0;
    this.mscratch = s.mscratch | 0;
    this.mepc = s.mepc | 0;
    this.mcause = s.mcause | 0;
    this.mtval = s.mtval | 0;
    this.mcounteren = s.mcounteren | 0;
    this.retired = s.retired;
    this.instretOffset = BigInt(s.instretOffset) & U64;
    this.cycleOffset = BigInt(s.cycleOffset) & U64;
    this.reservation = s.reservation === -1 ? -1 : s.reservation | 0;
  }
}
