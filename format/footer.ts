/**
 * The fixed-size footer after the trailer record: where the trailer and the index are, so a
 * reader of a seekable file starts from the end (FORMAT.md §9).
 *
 * @module
 */
import { crc32c, hex32 } from "./checksum.ts";
import { FOOTER_MAGIC, FOOTER_SIZE } from "./constants.ts";
import { ChecksumError, CorruptError } from "./errors.ts";

/** The footer's fields. */
export interface Footer {
  trailerOffset: number;
  indexOffset: number;
}

/** Encodes the 32-byte footer. */
export function encodeFooter(f: Footer): Uint8Array {
  const out = new Uint8Array(FOOTER_SIZE);
  const v = new DataView(out.buffer);
  out.set(FOOTER_MAGIC, 0);
  v.setUint32(8, f.trailerOffset % 2 ** 32, true);
  v.setUint32(12, Math.floor(f.trailerOffset / 2 ** 32), true);
  v.setUint32(16, f.indexOffset % 2 ** 32, true);
  v.setUint32(20, Math.floor(f.indexOffset / 2 ** 32), true);
  v.setUint32(28, crc32c(out.subarray(0, 28)), true);
  return out;
}

/** Decodes the footer found at `offset`; checks magic, then CRC, then fields. */
export function decodeFooter(bytes: Uint8Array, offset: number): Footer {
  const loc = { offset, recordIndex: -1 };
  if (bytes.length !== FOOTER_SIZE) {
    throw new CorruptError(`footer is ${bytes.length} bytes, not ${FOOTER_SIZE}`, loc);
  }
  for (let i = 0; i < 8; i++) {
    if (bytes[i] !== FOOTER_MAGIC[i]) throw new CorruptError("bad footer magic", loc);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, FOOTER_SIZE);
  const stored = v.getUint32(28, true);
  const actual = crc32c(bytes.subarray(0, 28));
  if (stored !== actual) {
    throw new ChecksumError("footer CRC32C mismatch", {
      ...loc,
      expected: hex32(stored),
      actual: hex32(actual),
    });
  }
  const hiT = v.getUint32(12, true);
  const hiI = v.getUint32(20, true);
  if (hiT >= 0x20_0000 || hiI >= 0x20_0000 || v.getUint32(24, true) !== 0) {
    throw new CorruptError("footer fields out of range", loc);
  }
  return {
    trailerOffset: hiT * 2 ** 32 + v.getUint32(8, true),
    indexOffset: hiI * 2 ** 32 + v.getUint32(16, true),
  };
}
