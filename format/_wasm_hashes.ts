/**
 * XXH3-128 of whole pages and CRC32C, in this library's own WebAssembly module with 128-bit SIMD
 * (format/_wasm_hashes/hashes.c, rebuilt by format/_wasm_hashes/build.sh).
 *
 * XXH3-128 (seed 0, FORMAT.md §10) covers inputs over 240 bytes only: a page is at least 512
 * bytes (FORMAT.md §5). It was written for the content digest, which hashes every non-zero page
 * up to three times when a snapshot is converted (the input, the writer, the read-back check):
 * hash-wasm's XXH3-128 took about 1.7 µs a 4 KiB page (three calls into WebAssembly and a result
 * array per page); this hashes a whole batch per call at several times the speed. CRC32C (FORMAT.md
 * §1) is here so that a thread needs neither hash-wasm nor a native addon to frame records: both
 * cost a thread about 0.05-0.1 s of CPU to load, more than CRC32C of a whole snapshot costs here.
 *
 * @module
 */
import { WASM_HASHES_BASE64 } from "./_wasm_hashes_binary.ts";

interface Exports {
  memory: WebAssembly.Memory;
  heap_base(): number;
  hash_pages(input: number, size: number, count: number, out: number): void;
  digest_pages(input: number, size: number, count: number, zero: number, out: number): void;
  crc32c_init(): void;
  crc32c_update(crc: number, input: number, length: number): number;
}

/** The most input copied into WebAssembly memory per call (XXH3: one page at least). */
const CHUNK_BYTES = 1 << 20;

function instantiate(): Exports | null {
  try {
    const bin = atob(WASM_HASHES_BASE64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const exports = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports;
    (exports as unknown as Exports).crc32c_init();
    return exports as unknown as Exports;
  } catch {
    // A runtime without WebAssembly SIMD: callers fall back to hash-wasm.
    return null;
  }
}

const wasm = instantiate();
const base = wasm === null ? 0 : wasm.heap_base();

/** True when this runtime runs the module (else nothing else here may be called). */
export const wasmHashesAvailable: boolean = wasm !== null;

/**
 * The module's memory, grown to hold `bytes` after its static data. The first
 * {@linkcode SCRATCH_BYTES} are the scratch area of {@linkcode xxh3Pages} and
 * {@linkcode crc32cParts}; the page area of {@linkcode pageArea} follows.
 */
function heap(bytes: number): Uint8Array {
  const w = wasm!;
  const need = base + bytes;
  if (w.memory.buffer.byteLength < need) {
    w.memory.grow(Math.ceil((need - w.memory.buffer.byteLength) / 65536));
  }
  return new Uint8Array(w.memory.buffer);
}

/**
 * XXH3-128 of each `pageSize`-byte page of `data`, written as 16 canonical bytes per page into
 * `out` from `at`. `pageSize` must be more than 240 and divide `data.length`.
 */
export function xxh3Pages(data: Uint8Array, pageSize: number, out: Uint8Array, at: number): void {
  if (pageSize <= 240 || data.length % pageSize !== 0) {
    throw new RangeError(
      `Cannot hash pages: ${data.length} bytes in pages of ${pageSize} bytes (more than 240 each)`,
    );
  }
  const perCall = Math.max(1, Math.floor(CHUNK_BYTES / pageSize));
  const count = data.length / pageSize;
  const mem = heap(perCall * pageSize + perCall * 16);
  const hashes = base + perCall * pageSize;
  for (let first = 0; first < count; first += perCall) {
    const n = Math.min(perCall, count - first);
    mem.set(data.subarray(first * pageSize, (first + n) * pageSize), base);
    wasm!.hash_pages(base, pageSize, n, hashes);
    out.set(mem.subarray(hashes, hashes + n * 16), at + first * 16);
  }
}

/** Bytes of the scratch area: a chunk and its page hashes (at least 16 bytes a 512-byte page). */
const SCRATCH_BYTES = CHUNK_BYTES + CHUNK_BYTES / 32;

/**
 * A view of at least `bytes` bytes of the module's memory (16-byte aligned) for
 * {@linkcode digestPageArea}, which the caller fills: a decompressor can write pages straight
 * into it. Valid until the next call of any function of this module (memory that grows moves).
 */
export function pageArea(bytes: number): Uint8Array {
  const area = base + SCRATCH_BYTES;
  // The area, then one zero flag and one hash per page of at least 512 bytes (FORMAT.md §5).
  const mem = heap(SCRATCH_BYTES + bytes + Math.ceil(bytes / 512) * 17 + 16);
  return mem.subarray(area, area + bytes);
}

/**
 * For each of `count` pages of `pageSize` bytes at the start of the page area: `zero[i]` = 1 when
 * page i is all zero bytes, else 0 and its XXH3-128 (canonical bytes) at `hashes[16 * i..]`.
 * `pageSize` must be a multiple of 64 and more than 240 (every page size of FORMAT.md §5 is).
 */
export function digestPageArea(
  count: number,
  pageSize: number,
  zero: Uint8Array,
  hashes: Uint8Array,
): void {
  if (pageSize <= 240 || pageSize % 64 !== 0) {
    throw new RangeError(`Cannot hash pages: ${pageSize}-byte pages are not supported here`);
  }
  const area = base + SCRATCH_BYTES;
  const zeroAt = area + count * pageSize;
  const hashAt = (zeroAt + count + 15) & ~15;
  heap(hashAt - base + count * 16);
  wasm!.digest_pages(area, pageSize, count, zeroAt, hashAt);
  const mem = new Uint8Array(wasm!.memory.buffer);
  zero.set(mem.subarray(zeroAt, zeroAt + count));
  hashes.set(mem.subarray(hashAt, hashAt + count * 16));
}

/** CRC32C of byte ranges taken in order, as an unsigned 32-bit number. */
export function crc32cParts(parts: Uint8Array[]): number {
  let crc = 0;
  let mem: Uint8Array | null = null;
  for (const p of parts) {
    for (let at = 0; at < p.length; at += CHUNK_BYTES) {
      const n = Math.min(CHUNK_BYTES, p.length - at);
      mem ??= heap(CHUNK_BYTES);
      mem.set(p.subarray(at, at + n), base);
      crc = wasm!.crc32c_update(crc, base, n);
    }
  }
  return crc >>> 0;
}
