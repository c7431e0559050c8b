/**
 * Errors raised while reading or writing a QEMU migration stream. Every read error carries the
 * byte offset in the stream where the problem was found.
 *
 * @module
 */

/**
 * Base class of every QEMU stream error. The message reads
 * "Cannot read QEMU stream at byte 4096: <reason>".
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { QemuStreamCorruptError, QemuStreamError } from "./errors.ts";
 * const e = new QemuStreamCorruptError("bad magic 0x00000000", 0);
 * assert(e instanceof QemuStreamError && e.offset === 0);
 * assert(e.message === "Cannot read QEMU stream at byte 0: bad magic 0x00000000");
 * ```
 */
export class QemuStreamError extends Error {
  /** Byte offset in the stream where the problem was found. */
  readonly offset: number;
  /** The reason alone, without the location prefix. */
  readonly reason: string;
  /** The message becomes "Cannot read QEMU stream at byte `offset`: `reason`". */
  constructor(reason: string, offset: number, options?: { cause?: unknown }) {
    super(`Cannot read QEMU stream at byte ${offset}: ${reason}`, options);
    this.name = new.target.name;
    this.offset = offset;
    this.reason = reason;
  }
}

/** The bytes break the stream's rules: bad magic, unknown section type, a page past its block. */
export class QemuStreamCorruptError extends QemuStreamError {}

/** The stream ends before it is complete. */
export class QemuStreamTruncatedError extends QemuStreamError {}

/**
 * The stream is valid but uses a feature this reader does not handle, such as compressed or
 * XBZRLE pages, multifd, postcopy or an iterative device other than RAM.
 */
export class QemuStreamUnsupportedError extends QemuStreamError {}
