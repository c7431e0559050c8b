/**
 * The error of `convert`.
 *
 * @module
 */

/**
 * A conversion failed a check (digest mismatch, bad option, incomplete input). A malformed input
 * is reported by its reader's own error class instead (an `LsnapError` or a `QemuStreamError`).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { ConvertError } from "./error.ts";
 * const e = new ConvertError("Cannot convert: the output x.lsnap is the input");
 * assert(e instanceof Error && e.name === "ConvertError");
 * ```
 */
export class ConvertError extends Error {
  /** Makes the error; `options.cause` carries the error it wraps. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConvertError";
  }
}
