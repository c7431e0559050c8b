/**
 * HTIF `tohost` / `fromhost` (the Berkeley host-target interface used by riscv-tests and Spike),
 * active when the guest ELF defines a `tohost` symbol. The doubleword lives in guest RAM; the
 * machine watches its page through the page gate (GATE_WATCH) and looks at it after every store
 * into that page. Like QEMU's htif (hw/char/riscv_htif.c), a command is acted on when the
 * upper word of `tohost` is written (riscv-tests write the lower word, then the upper one).
 *
 * - `tohost` = (code << 1) | 1 with the upper word 0: power off; code 0 is a pass, anything else
 *   a failure (riscv-tests put the failing test number in `code`).
 * - device 1, command 1 (upper word 0x0101_0000): write the low byte to the console; the machine
 *   clears `tohost` and sets `fromhost` to 1 << 0 | (device, command) as Spike does.
 *
 * @module
 */

/** Version of {@linkcode HtifState}. */
export const HTIF_STATE_VERSION = 1;
/** Device id in snapshots. */
export const HTIF_DEVICE_ID = "htif";

/**
 * Saved HTIF configuration (the doublewords themselves are in RAM).
 * NOTICE: changing this layout needs a version bump (HTIF_STATE_VERSION).
 */
export interface HtifState {
  /** Guest physical address of `tohost`, or -1 when the ELF defines none. */
  tohost: number;
  /** Guest physical address of `fromhost`, or -1. */
  fromhost: number;
}

/** What a `tohost` write asked for. */
export type HtifRequest =
  | { kind: "none" }
  | { kind: "exit"; code: number }
  | { kind: "putchar"; byte: number };

/** Interpret the `tohost` doubleword (lo, hi as unsigned 32-bit halves). */
export function decodeTohost(lo: number, hi: number): HtifRequest {
  if (lo === 0 && hi === 0) return { kind: "none" };
  if (hi === 0 && (lo & 1) === 1) return { kind: "exit", code: lo >>> 1 };
  if ((hi >>> 16) === 0x0101) return { kind: "putchar", byte: lo & 0xff };
  return { kind: "none" };
}
