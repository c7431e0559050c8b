/**
 * CRC32C (Castagnoli) for records, BLAKE3 for the file digest, XXH3-128 for page hashes
 * (FORMAT.md §3, §10). Hasher instances are created once and reused.
 *
 * @module
 */
import { createBLAKE3, createCRC32, createXXHash128, type IHasher } from "hash-wasm";

/** CRC-32C's reflected polynomial, as hash-wasm names it. */
const CRC32C_POLY = 0x82f63b78;

const crcHasher: IHasher = await createCRC32(CRC32C_POLY);

/**
 * CRC32C of one or more byte ranges taken in order, as an unsigned 32-bit number.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { crc32c } from "./checksum.ts";
 * assert(crc32c(new TextEncoder().encode("123456789")) === 0xe3069283);
 * ```
 */
export function crc32c(...parts: Uint8Array[]): number {
  crcHasher.init();
  for (const p of parts) crcHasher.update(p);
  const d = crcHasher.digest("binary");
  return ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) >>> 0;
}

/** A new streaming BLAKE3 hasher (32-byte output). */
export function createBlake3(): Promise<IHasher> {
  return createBLAKE3(256);
}

/** A new XXH3-128 hasher (seed 0). */
export function createPageHasher(): Promise<IHasher> {
  return createXXHash128();
}

/**
 * Lowercase hex of bytes.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { toHex } from "./checksum.ts";
 * assert(toHex(new Uint8Array([0, 171])) === "00ab");
 * ```
 */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Lowercase hex of a 32-bit unsigned number, 8 digits. */
export function hex32(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}

const pageHasher: IHasher = await createXXHash128();

/** XXH3-128 (seed 0) of one page, canonical (big-endian) bytes, written into `out` at `at`. */
export function hashPageInto(page: Uint8Array, out: Uint8Array, at: number): void {
  pageHasher.init();
  pageHasher.update(page);
  out.set(pageHasher.digest("binary"), at);
}
