/**
 * The mask ROM at 0x1000 of QEMU's `virt` board (hw/riscv/virt.c, VIRT_MROM: 0xf000 bytes, RAM
 * block `riscv_virt_board.mrom`): where QEMU's reset vector and firmware information live.
 * Guests read it and may execute from it (a QEMU stream saved before the guest left the reset
 * vector has its pc there); writes are ignored, as QEMU ignores writes to ROM.
 *
 * A machine booted from an ELF has an empty (all-zero) ROM: livesnap starts the guest at its
 * entry point itself. A machine restored from a QEMU stream holds QEMU's ROM contents, so a
 * snapshot of it can be resumed in QEMU with them.
 *
 * @module
 */

import type { MmioDevice } from "./device.ts";

/** Version of {@linkcode MromState}. */
export const MROM_STATE_VERSION = 1;
/** Device id in snapshots. */
export const MROM_DEVICE_ID = "mrom";
/** Guest address of the ROM. */
export const MROM_BASE = 0x1000;
/** Size of the ROM. */
export const MROM_SIZE = 0xf000;

/**
 * Saved ROM contents.
 * NOTICE: changing this layout needs a version bump (MROM_STATE_VERSION).
 */
export interface MromState {
  /** The ROM from its first byte on; bytes past the end of this array are zero. */
  bytes: Uint8Array;
}

/** The mask ROM. */
export class Mrom implements MmioDevice {
  /** The ROM's contents (a guest cannot write them). */
  readonly bytes: Uint8Array = new Uint8Array(MROM_SIZE);

  load(offset: number, size: number): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = (v << 8) | this.bytes[offset + i];
    return v;
  }

  store(_offset: number, _size: number, _value: number): void {
    // read-only
  }

  /**
   * The instruction at `offset` (16 or 32 bits), or -1 when it does not lie wholly in the ROM.
   */
  fetch(offset: number): number {
    if (offset < 0 || offset + 2 > MROM_SIZE) return -1;
    const lo = this.bytes[offset] | (this.bytes[offset + 1] << 8);
    if ((lo & 3) !== 3) return lo;
    if (offset + 4 > MROM_SIZE) return -1;
    return (lo | (this.bytes[offset + 2] << 16) | (this.bytes[offset + 3] << 24)) >>> 0;
  }

  /** Plain-data copy: the contents up to the last non-zero byte. */
  save(): MromState {
    let end = MROM_SIZE;
    while (end > 0 && this.bytes[end - 1] === 0) end--;
    return { bytes: this.bytes.slice(0, end) };
  }

  /** Load a state produced by {@linkcode Mrom.save}. */
  restore(s: MromState): void {
    if (!(s.bytes instanceof Uint8Array) || s.bytes.length > MROM_SIZE) {
      throw new RangeError(`Cannot restore mrom: bytes must be at most ${MROM_SIZE} bytes`);
    }
    this.bytes.fill(0);
    this.bytes.set(s.bytes);
  }
}
