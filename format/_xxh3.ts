/**
 * XXH3-128 (seed 0) of whole pages in WebAssembly with 128-bit SIMD (FORMAT.md §10). A page is
 * at least 512 bytes (FORMAT.md §5), so only XXH3's path for inputs over 240 bytes is built
 * (format/_xxh3/xxh3_128.c, rebuilt by format/_xxh3/build.sh).
 *
 * Written for the content digest, which hashes every non-zero page up to three times when a
 * snapshot is converted (the input, the writer, the read-back check): hash-wasm's XXH3-128 took
 * about 1.7 µs a 4 KiB page (three calls into WebAssembly and a result array per page); this
 * hashes a whole batch per call at several times the speed, and a thread that loads it does not
 * load hash-wasm.
 *
 * @module
 */
import { XXH3_WASM_BASE64 } from "./_xxh3_wasm.ts";

interface Exports {
  memory: WebAssembly.Memory;
  heap_base(): number;
  hash_pages(input: number, size: number, count: number, out: number): void;
}

/** The most input copied into WebAssembly memory per call (one page at least). */
const CHUNK_BYTES = 1 << 20;

function instantiate(): Exports | null {
  try {
    const bin = atob(XXH3_WASM_BASE64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes));
    return instance.exports as unknown as Exports;
  } catch {
    // A runtime without WebAssembly SIMD: the caller falls back to hash-wasm.
    return null;
  }
}

const wasm = instantiate();
const base = wasm === null ? 0 : wasm.heap_base();

/** True when this runtime runs the SIMD module (else {@linkcode xxh3Pages} must not be called). */
export const xxh3Available: boolean = wasm !== null;

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
  const w = wasm!;
  const perCall = Math.max(1, Math.floor(CHUNK_BYTES / pageSize));
  const count = data.length / pageSize;
  const need = base + perCall * pageSize + perCall * 16;
  if (w.memory.buffer.byteLength < need) {
    w.memory.grow(Math.ceil((need - w.memory.buffer.byteLength) / 65536));
  }
  const heap = new Uint8Array(w.memory.buffer);
  for (let first = 0; first < count; first += perCall) {
    const n = Math.min(perCall, count - first);
    heap.set(data.subarray(first * pageSize, (first + n) * pageSize), base);
    const hashes = base + perCall * pageSize;
    w.hash_pages(base, pageSize, n, hashes);
    out.set(heap.subarray(hashes, hashes + n * 16), at + first * 16);
  }
}
