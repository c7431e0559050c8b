/**
 * The SiFive test device ("finisher", QEMU hw/misc/sifive_test.c): a 32-bit write of 0x5555
 * powers off with success, `(code << 16) | 0x3333` powers off with failure `code`, 0x7777
 * requests a reset. Other values and reads do nothing.
 *
 * @module
 */

import type { MmioDevice } from "./device.ts";

/** Version of {@linkcode SifiveTestState}. */
export const SIFIVE_TEST_STATE_VERSION = 1;
/** Device id in snapshots. */
export const SIFIVE_TEST_DEVICE_ID = "sifive_test";

/**
 * Saved test device (it has no registers; the record exists so every device has one).
 * NOTICE: changing this layout needs a version bump (SIFIVE_TEST_STATE_VERSION).
 */
export type SifiveTestState = Record<string, never>;

/** What the guest asked for. */
export type FinisherRequest = { kind: "exit"; code: number } | { kind: "reset" };

/** The finisher. */
export class SifiveTest implements MmioDevice {
  /** Set by a finishing write; the machine reads and clears it after the instruction. */
  request: FinisherRequest | null = null;

  load(_offset: number, _size: number): number {
    return 0;
  }

  store(offset: number, size: number, value: number): void {
    if (offset !== 0 || size !== 4) return;
    const status = value & 0xffff;
    if (status === 0x5555) this.request = { kind: "exit", code: 0 };
    else if (status === 0x3333) this.request = { kind: "exit", code: value >>> 16 };
    else if (status === 0x7777) this.request = { kind: "reset" };
  }

  /** The empty state record (version {@linkcode SIFIVE_TEST_STATE_VERSION}). */
  save(): SifiveTestState {
    return {};
  }

  /** Forget any pending request: a finishing write never survives a snapshot. */
  restore(_s: SifiveTestState): void {
    this.request = null;
  }
}
