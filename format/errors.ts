/**
 * The one error hierarchy of the format: every malformed input is reported as a subclass of
 * {@linkcode LsnapError} carrying the byte offset and the record index (FORMAT.md §11).
 *
 * @module
 */

/** Where in a file an error was found. `recordIndex` is -1 for the prologue and the footer. */
export interface ErrorLocation {
  /** Byte offset of the record (or structure) that could not be read. */
  offset: number;
  /** Index of the record in the file, counting the header record as 0; -1 outside records. */
  recordIndex: number;
  /** The underlying error, if any (for example an I/O error). */
  cause?: unknown;
}

function where(loc: ErrorLocation): string {
  if (loc.recordIndex >= 0) return `record ${loc.recordIndex} at byte ${loc.offset}`;
  return `the file at byte ${loc.offset}`;
}

/**
 * Base class of every error the format raises. The message reads
 * "Cannot read record 3 at byte 4096: <reason>".
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { CorruptError, LsnapError } from "./errors.ts";
 * const e = new CorruptError("bad page count 0", { offset: 4096, recordIndex: 3 });
 * assert(e instanceof LsnapError && e.message === "Cannot read record 3 at byte 4096: bad page count 0");
 * ```
 */
export class LsnapError extends Error {
  /** Byte offset of the record that could not be read. */
  readonly offset: number;
  /** Index of that record (0 is the header record), -1 outside records. */
  readonly recordIndex: number;
  /** The reason alone, without the location prefix. */
  readonly reason: string;
  /** The message becomes "Cannot read record N at byte B: `reason`"; `loc.cause` is kept. */
  constructor(reason: string, loc: ErrorLocation) {
    super(
      `Cannot read ${where(loc)}: ${reason}`,
      loc.cause !== undefined ? { cause: loc.cause } : {},
    );
    this.name = new.target.name;
    this.offset = loc.offset;
    this.recordIndex = loc.recordIndex;
    this.reason = reason;
  }
}

/** The bytes break a rule of FORMAT.md: a bad magic, a length past the end, a field out of range. */
export class CorruptError extends LsnapError {}

/** The input ends before the file is complete (cut off, or its writer died). */
export class TruncatedError extends LsnapError {}

/** A CRC32C or a digest does not match the bytes. */
export class ChecksumError extends LsnapError {
  /** The checksum or digest the file declares, in lowercase hex. */
  readonly expected: string;
  /** The checksum or digest computed from the bytes, in lowercase hex. */
  readonly actual: string;
  /** `expected` and `actual` are lowercase hex; the message ends "(expected E, got A)". */
  constructor(reason: string, loc: ErrorLocation & { expected: string; actual: string }) {
    super(`${reason} (expected ${loc.expected}, got ${loc.actual})`, loc);
    this.expected = loc.expected;
    this.actual = loc.actual;
  }
}

/** The file is well formed but needs a feature this reader lacks: another major version, or an
 * unknown critical record type. */
export class UnsupportedError extends LsnapError {}
