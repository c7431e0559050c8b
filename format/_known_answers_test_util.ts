/**
 * Inputs of published test vectors, for the known-answer tests (`checksum_test.ts`,
 * `content_digest_test.ts`).
 *
 * @module
 */

/**
 * xxHash's sanity test buffer (`XSUM_fillTestBuffer` in its cli/xsum_sanity_check.c): byte i
 * is the top byte of PRIME32 × PRIME64^i modulo 2^64.
 */
export function xxhashSanityBuffer(length: number): Uint8Array {
  const out = new Uint8Array(length);
  let gen = 2_654_435_761n;
  for (let i = 0; i < length; i++) {
    out[i] = Number(gen >> 56n);
    gen = (gen * 11_400_714_785_074_694_797n) & 0xffff_ffff_ffff_ffffn;
  }
  return out;
}
