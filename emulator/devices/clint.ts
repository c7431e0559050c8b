/**
 * Core-local interruptor, SiFive CLINT layout as on QEMU's `virt` (hw/intc/riscv_aclint.c):
 * msip at +0x0000, mtimecmp at +0x4000 (64-bit), mtime at +0xBFF8 (64-bit). 32-bit halves are
 * accessed with 4-byte loads and stores (the only width an RV32 guest has for them).
 *
 * Time is deterministic: `mtime` advances by one tick per INSTRUCTIONS_PER_TICK retired
 * instructions (see memory_map.ts), never with the wall clock. `wfi` may fast-forward it to
 * mtimecmp (see machine.ts). The CLINT drives mip.MTIP (mtime >= mtimecmp, unsigned 64-bit) and
 * mip.MSIP (msip bit 0).
 *
 * @module
 */

import { INSTRUCTIONS_PER_TICK } from "../memory_map.ts";
import { MIP_MSIP, MIP_MTIP } from "../hart.ts";
import type { MmioDevice } from "./device.ts";

/** Version of {@linkcode ClintState}. */
export const CLINT_STATE_VERSION = 1;
/** Device id in snapshots. */
export const CLINT_DEVICE_ID = "clint";

/**
 * Saved CLINT. 64-bit registers are split into unsigned 32-bit halves.
 * NOTICE: changing this layout needs a version bump (CLINT_STATE_VERSION).
 */
export interface ClintState {
  /** The msip register at +0x0000: bit 0 is the machine software interrupt pending (mip.MSIP). */
  msip: number;
  /** Low 32 bits of mtime (+0xBFF8), the tick counter, unsigned. */
  mtimeLo: number;
  /** High 32 bits of mtime (+0xBFFC), unsigned. */
  mtimeHi: number;
  /** Low 32 bits of mtimecmp (+0x4000): mip.MTIP is set while mtime >= mtimecmp, unsigned. */
  mtimecmpLo: number;
  /** High 32 bits of mtimecmp (+0x4004), unsigned. */
  mtimecmpHi: number;
  /** Retired instructions since mtime last ticked (0 .. INSTRUCTIONS_PER_TICK - 1). */
  tickFraction: number;
}

const TWO32 = 0x1_0000_0000;

/** The CLINT. */
export class Clint implements MmioDevice {
  /** The msip register: bit 0 drives mip.MSIP. */
  msip = 0;
  /** Low 32 bits of mtime, in ticks (one per INSTRUCTIONS_PER_TICK retired instructions). */
  mtimeLo = 0;
  /** High 32 bits of mtime. */
  mtimeHi = 0;
  // Reset value of mtimecmp is 0 in QEMU too; guests set it before enabling MTIE.
  /** Low 32 bits of mtimecmp, the tick at which mip.MTIP rises. */
  mtimecmpLo = 0;
  /** High 32 bits of mtimecmp. */
  mtimecmpHi = 0;
  /** Retired instructions since mtime last ticked (0 .. INSTRUCTIONS_PER_TICK - 1). */
  tickFraction = 0;

  /** Account for `n` retired instructions. */
  advance(n: number): void {
    const f = this.tickFraction + n;
    const ticks = Math.floor(f / INSTRUCTIONS_PER_TICK);
    this.tickFraction = f - ticks * INSTRUCTIONS_PER_TICK;
    if (ticks !== 0) this.#addTicks(ticks);
  }

  #addTicks(ticks: number): void {
    const lo = this.mtimeLo + ticks;
    const carry = Math.floor(lo / TWO32);
    this.mtimeLo = lo - carry * TWO32;
    this.mtimeHi = (this.mtimeHi + carry) % TWO32;
  }

  /** mtime as a 64-bit value. */
  mtime(): bigint {
    return (BigInt(this.mtimeHi) << 32n) | BigInt(this.mtimeLo);
  }

  /** Whether mtime >= mtimecmp (unsigned). */
  timerPending(): boolean {
    return this.mtimeHi > this.mtimecmpHi ||
      (this.mtimeHi === this.mtimecmpHi && this.mtimeLo >= this.mtimecmpLo);
  }

  /** mip bits driven by the CLINT. */
  pendingInterrupts(): number {
    return (this.timerPending() ? MIP_MTIP : 0) | ((this.msip & 1) !== 0 ? MIP_MSIP : 0);
  }

  /**
   * Retired instructions until mtime reaches mtimecmp (0 if it already has), capped at `cap`.
   */
  instructionsUntilTimer(cap: number): number {
    if (this.timerPending()) return 0;
    const ticks = (this.mtimecmpHi - this.mtimeHi) * TWO32 + (this.mtimecmpLo - this.mtimeLo);
    const insns = ticks * INSTRUCTIONS_PER_TICK - this.tickFraction;
    return insns < cap ? insns : cap;
  }

  /**
   * Whether mtime can still reach mtimecmp: false when mtimecmp is 2^64 - 1, the usual way to
   * switch the timer off (waiting for it would take 58,000 years at 10 MHz).
   */
  timerCanFire(): boolean {
    return this.timerPending() || this.mtimecmpHi !== 0xffff_ffff ||
      this.mtimecmpLo !== 0xffff_ffff;
  }

  /** Jump mtime forward to mtimecmp (wfi with only the timer able to wake the hart). */
  skipToTimer(): void {
    if (this.timerPending()) return;
    this.mtimeLo = this.mtimecmpLo;
    this.mtimeHi = this.mtimecmpHi;
    this.tickFraction = 0;
  }

  load(offset: number, size: number): number {
    if (size !== 4) return 0;
    switch (offset) {
      case 0x0000:
        return this.msip;
      case 0x4000:
        return this.mtimecmpLo | 0;
      case 0x4004:
        return this.mtimecmpHi | 0;
      case 0xbff8:
        return this.mtimeLo | 0;
      case 0xbffc:
        return this.mtimeHi | 0;
      default:
        return 0;
    }
  }

  store(offset: number, size: number, value: number): void {
    if (size !== 4) return;
    const v = value >>> 0;
    switch (offset) {
      case 0x0000:
        this.msip = v & 1;
        break;
      case 0x4000:
        this.mtimecmpLo = v;
        break;
      case 0x4004:
        this.mtimecmpHi = v;
        break;
      case 0xbff8:
        this.mtimeLo = v;
        break;
      case 0xbffc:
        this.mtimeHi = v;
        break;
      default:
        return;
    }
  }

  /** The registers as plain data for a snapshot (version {@linkcode CLINT_STATE_VERSION}). */
  save(): ClintState {
    return {
      msip: this.msip,
      mtimeLo: this.mtimeLo,
      mtimeHi: this.mtimeHi,
      mtimecmpLo: this.mtimecmpLo,
      mtimecmpHi: this.mtimecmpHi,
      tickFraction: this.tickFraction,
    };
  }

  /** Load registers from a snapshot; throws a RangeError for a tickFraction out of range. */
  restore(s: ClintState): void {
    this.msip = s.msip & 1;
    this.mtimeLo = s.mtimeLo >>> 0;
    this.mtimeHi = s.mtimeHi >>> 0;
    this.mtimecmpLo = s.mtimecmpLo >>> 0;
    this.mtimecmpHi = s.mtimecmpHi >>> 0;
    if (
      !Number.isInteger(s.tickFraction) || s.tickFraction < 0 ||
      s.tickFraction >= INSTRUCTIONS_PER_TICK
    ) {
      throw new RangeError(
        `Cannot restore CLINT: tickFraction ${s.tickFraction} is outside 0..${
          INSTRUCTIONS_PER_TICK - 1
        }`,
      );
    }
    this.tickFraction = s.tickFraction;
  }
}
