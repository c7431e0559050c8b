/**
 * Zero-page test over a slice of a larger buffer.
 *
 * @module
 */
import { isZero } from "../format/_bytes.ts";

/** True if `data[at, at + length)` is all zero. */
export function isZeroPage(data: Uint8Array, at: number, length: number): boolean {
  return isZero(data.subarray(at, at + length));
}
