/**
 * The error of `convert` (in its own file so that format modules of `convert` can throw it
 * without importing `convert.ts`).
 *
 * @module
 */

/** A conversion failed a check (digest mismatch, bad option, incomplete input). */
export class ConvertError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConvertError";
  }
}
