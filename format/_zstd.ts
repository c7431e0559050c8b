/**
 * zstd through @bokuweb/zstd-wasm, with decompression bounded by the size the record implies
 * (FORMAT.md §6.2): the frame must declare its content size and it must equal the expected size,
 * checked before the library allocates anything.
 *
 * @module
 */
import { compress, decompress, init } from "@bokuweb/zstd-wasm";

await init();

/** Compresses bytes into one zstd frame that declares its content size. */
export function zstdCompress(data: Uint8Array, level: number): Uint8Array {
  return compress(data, level);
}

/**
 * Reads the Frame_Content_Size of a zstd frame (RFC 8878 §3.1.1.1), or returns a reason string
 * when the bytes are not a frame with a declared size.
 */
export function zstdFrameContentSize(b: Uint8Array): number | string {
  if (b.length < 6) return "zstd frame is shorter than its header";
  if (b[0] !== 0x28 || b[1] !== 0xb5 || b[2] !== 0x2f || b[3] !== 0xfd) {
    return "bad zstd frame magic";
  }
  const fhd = b[4];
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const dictFlag = fhd & 3;
  if ((fhd >> 3) & 1) return "reserved bit set in zstd frame header";
  let pos = 5 + (single ? 0 : 1) + [0, 1, 2, 4][dictFlag];
  const fcsSize = fcsFlag === 0 ? (single ? 1 : 0) : [0, 2, 4, 8][fcsFlag];
  if (fcsSize === 0) return "zstd frame does not declare its content size";
  if (pos + fcsSize > b.length) return "zstd frame header is cut off";
  let v = 0;
  for (let i = fcsSize - 1; i >= 0; i--) v = v * 256 + b[pos + i];
  if (fcsSize === 2) v += 256;
  pos += fcsSize;
  return v;
}

/**
 * Decompresses one frame whose content must be exactly `expected` bytes. Returns the bytes or a
 * reason string; never allocates more than `expected` for the output.
 */
export function zstdDecompressExact(data: Uint8Array, expected: number): Uint8Array | string {
  const size = zstdFrameContentSize(data);
  if (typeof size === "string") return size;
  if (size !== expected) return `zstd frame declares ${size} bytes, the record implies ${expected}`;
  let out: Uint8Array;
  try {
    out = decompress(data, { defaultHeapSize: expected });
  } catch (e) {
    return `zstd data is invalid (${(e as Error).message})`;
  }
  if (out.length !== expected) {
    return `zstd data decompressed to ${out.length} bytes, expected ${expected}`;
  }
  return out;
}
