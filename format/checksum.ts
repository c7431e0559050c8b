/**
 * CRC32C (Castagnoli) for records, BLAKE3 for the file digest, XXH3-128 for page hashes
 * (FORMAT.md §3, §10). Hasher instances are created once and reused.
 *
 * CRC32C and XXH3-128 run in this library's own WebAssembly module with SIMD
 * (`_wasm_hashes.ts`). BLAKE3 runs as native code (the `@napi-rs/blake-hash` Node-API addon, SIMD
 * BLAKE3) where the runtime may load addons, that is where the `ffi` permission is granted
 * (`deno run -A`, as the `livesnap` command runs), loaded on the first {@linkcode createBlake3};
 * so does CRC32C from then on (the `@node-rs/crc32` addon, the CPU's CRC32C instruction: 2.6x
 * the speed of this library's WebAssembly on a flatten's records here, BENCHMARKS.md "Diff
 * snapshots").
 * Elsewhere, and if an addon fails to load or to give the known answers, BLAKE3 runs in
 * WebAssembly (`hash-wasm`), CRC32C in this library's module, and both CRC32C and XXH3-128 in
 * hash-wasm on a runtime without WebAssembly SIMD.
 * Every backend gives the same values (checksum_test.ts). Native BLAKE3 ran about 12x faster than
 * hash-wasm on the benchmark's records; the file digest is computed on the writer's own thread,
 * where it was the largest cost after compression (BENCHMARKS.md, "where the time went").
 *
 * @module
 */
import type { IHasher } from "hash-wasm";
import { isZero, toHex } from "./_bytes.ts";
// Hex is here for the callers of the digests; it lives where modules without WebAssembly reach it.
export { hex32, toHex } from "./_bytes.ts";
import {
  crc32cParts,
  digestPageArea,
  pageArea,
  wasmHashesAvailable,
  xxh3Pages,
} from "./_wasm_hashes.ts";

let hashWasmModule: Promise<typeof import("hash-wasm")> | undefined;
/** hash-wasm, loaded only where something falls back to it (its loading costs a thread ~0.05 s). */
function hashWasm(): Promise<typeof import("hash-wasm")> {
  return hashWasmModule ??= import("hash-wasm");
}

/** CRC-32C's reflected polynomial, as hash-wasm names it. */
const CRC32C_POLY = 0x82f63b78;

/** What the file digest and the readers need of a streaming hasher. */
export interface StreamHasher {
  /** Starts a new digest. */
  init(): void;
  /** Adds bytes. */
  update(data: Uint8Array): void;
  /** The digest of the bytes added since `init`. */
  digest(format: "binary"): Uint8Array;
}

interface NativeBlake3 {
  reset(): void;
  update(input: Uint8Array): unknown;
  digestBuffer(): Uint8Array;
}

const ASCII_123456789 = new TextEncoder().encode("123456789");
/** BLAKE3("123456789"), as the reference implementation and hash-wasm give it. */
const BLAKE3_123456789 = "b7d65b48420d1033cb2595293263b6f72eabee20d55e699d0df1973b3c9deed1";

/** True where the runtime may load Node-API addons without asking (a prompt would block). */
function addonsAllowed(): boolean {
  try {
    return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    return false;
  }
}

/** The prebuilt addons of @napi-rs/blake-hash (glibc builds on Linux), by `os-arch`. */
const ADDON_BUILDS: Record<string, string> = {
  "linux-x86_64": "linux-x64-gnu",
  "linux-aarch64": "linux-arm64-gnu",
  "darwin-x86_64": "darwin-x64",
  "darwin-aarch64": "darwin-arm64",
  "windows-x86_64": "win32-x64-msvc",
};

/**
 * The addon's hasher class loaded straight from its platform package beside the main package
 * (where npm and Deno put it), or null. The main package's loader would first ask for a whole
 * diagnostic report to tell glibc from musl, which costs a command about 0.03 s; a musl system
 * fails to load the glibc build here and goes through the loader.
 */
async function loadAddonDirectly(): Promise<unknown> {
  return (await dlopenBuild(
    () => import.meta.resolve("@napi-rs/blake-hash"),
    "blake-hash",
    "blake",
  ) as
    | { Blake3Hasher?: unknown }
    | null)?.Blake3Hasher ?? null;
}

/**
 * The exports of the prebuilt addon of a napi-rs package for this platform, loaded from
 * `../<dir>-<build>/<file>.<build>.node` beside the package's main module (`resolve()`, an
 * `import.meta.resolve` of the package's name: literal, so that publishing rewrites it), or null.
 */
async function dlopenBuild(
  resolve: () => string,
  dir: string,
  file: string,
): Promise<unknown> {
  const build = ADDON_BUILDS[`${Deno.build.os}-${Deno.build.arch}`];
  if (build === undefined) return null;
  try {
    const url = new URL(`../${dir}-${build}/${file}.${build}.node`, resolve());
    if (url.protocol !== "file:") return null;
    const { default: process } = await import("node:process");
    const module = { exports: {} as unknown };
    process.dlopen(module, decodeURIComponent(url.pathname));
    return module.exports ?? null;
  } catch {
    return null;
  }
}

/** `crc32c(input, crc)` of @node-rs/crc32: the CRC32C of `input` continuing `crc` (0 to start). */
type NativeCrc32c = (input: Uint8Array, crc?: number) => number;

/** The CRC32C addon's function if it loads and gives the known answers, else null. */
async function loadNativeCrc32c(): Promise<NativeCrc32c | null> {
  if (!addonsAllowed()) return null;
  try {
    const m = (await dlopenBuild(() => import.meta.resolve("@node-rs/crc32"), "crc32", "crc32") ??
      await import("@node-rs/crc32")) as { crc32c?: NativeCrc32c };
    const f = m.crc32c;
    if (typeof f !== "function") return null;
    // The check value, continued across two parts, and from a view at an odd offset.
    const odd = new Uint8Array(12);
    odd.set(ASCII_123456789, 3);
    const ok = f(ASCII_123456789) >>> 0 === 0xe306_9283 &&
      f(ASCII_123456789.subarray(4), f(ASCII_123456789.subarray(0, 4))) >>> 0 === 0xe306_9283 &&
      f(odd.subarray(3)) >>> 0 === 0xe306_9283 && f(new Uint8Array(0), 5) >>> 0 === 5;
    return ok ? f : null;
  } catch {
    return null;
  }
}

/** Set once the CRC32C addon has loaded in this thread (see {@linkcode loadNativeChecksums}). */
let nativeCrc: NativeCrc32c | null = null;
let nativeCrcLoading: Promise<NativeCrc32c | null> | undefined;

/**
 * Loads the native checksums in this thread where it may (the `ffi` permission): BLAKE3 for
 * {@linkcode createBlake3}, and CRC32C, which {@linkcode crc32c} uses from then on (it is
 * synchronous: until then it runs in WebAssembly). The first {@linkcode createBlake3} calls it.
 */
export async function loadNativeChecksums(): Promise<void> {
  nativeBlake3 ??= loadNativeBlake3();
  nativeCrcLoading ??= loadNativeCrc32c().then((f) => nativeCrc = f);
  await Promise.all([nativeBlake3, nativeCrcLoading]);
}

/** The BLAKE3 addon if it loads and gives the known answer, else null. */
async function loadNativeBlake3(): Promise<(new () => NativeBlake3) | null> {
  if (!addonsAllowed()) return null;
  try {
    const B = (await loadAddonDirectly() ??
      (await import("@napi-rs/blake-hash")).Blake3Hasher) as unknown as new () => NativeBlake3;
    const h = new B();
    h.update(ASCII_123456789.subarray(0, 3));
    h.update(ASCII_123456789.subarray(3));
    return toHex(h.digestBuffer()) === BLAKE3_123456789 ? B : null;
  } catch {
    return null;
  }
}

// hash-wasm only where the runtime cannot run this library's own module (no WebAssembly SIMD).
const fallbackCrc: IHasher | null = wasmHashesAvailable
  ? null
  : await (await hashWasm()).createCRC32(CRC32C_POLY);

/** CRC32C computed by hash-wasm, whatever this thread uses (for tests and benchmarks). */
export async function createWasmCrc32c(): Promise<(...parts: Uint8Array[]) => number> {
  const h = await (await hashWasm()).createCRC32(CRC32C_POLY);
  return (...parts) => crcWith(h, parts);
}

function crcWith(h: IHasher, parts: Uint8Array[]): number {
  h.init();
  for (const p of parts) h.update(p);
  const d = h.digest("binary");
  return ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) >>> 0;
}

/** A BLAKE3 hasher in WebAssembly, whatever this thread uses (for tests and benchmarks). */
export async function createWasmBlake3(): Promise<StreamHasher> {
  return await (await hashWasm()).createBLAKE3(256);
}

let nativeBlake3: Promise<(new () => NativeBlake3) | null> | undefined;

/**
 * Which implementation this thread uses for BLAKE3 and CRC32C ("native": the addons), CRC32C
 * and XXH3 ("simd": this library's WebAssembly module); "wasm" is hash-wasm. The native ones are
 * settled by the first {@linkcode createBlake3} (or {@linkcode loadNativeChecksums}), which this
 * awaits.
 */
export async function checksumBackends(): Promise<
  { blake3: "native" | "wasm"; crc32c: "native" | "simd" | "wasm"; xxh3: "simd" | "wasm" }
> {
  await loadNativeChecksums();
  return {
    blake3: (await nativeBlake3) === null ? "wasm" : "native",
    crc32c: nativeCrc !== null ? "native" : wasmHashesAvailable ? "simd" : "wasm",
    xxh3: wasmHashesAvailable ? "simd" : "wasm",
  };
}

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
  const native = nativeCrc;
  if (native !== null) {
    let crc = 0;
    for (const p of parts) crc = native(p, crc);
    return crc >>> 0;
  }
  return fallbackCrc === null ? crc32cParts(parts) : crcWith(fallbackCrc, parts);
}

class NativeBlake3Hasher implements StreamHasher {
  private readonly h: NativeBlake3;
  constructor(B: new () => NativeBlake3) {
    this.h = new B();
  }
  init(): void {
    this.h.reset();
  }
  update(data: Uint8Array): void {
    if (data.length > 0) this.h.update(data);
  }
  digest(_format: "binary"): Uint8Array {
    const d = this.h.digestBuffer();
    return new Uint8Array(d.buffer, d.byteOffset, d.length).slice();
  }
}

/** A new streaming BLAKE3 hasher (32-byte output). */
export async function createBlake3(): Promise<StreamHasher> {
  await loadNativeChecksums();
  const B = await (nativeBlake3 ??= loadNativeBlake3());
  return B === null ? await createWasmBlake3() : new NativeBlake3Hasher(B);
}

/** A hash-wasm XXH3-128 hasher (seed 0), whatever this thread uses (for tests and benchmarks). */
export async function createWasmPageHasher(): Promise<IHasher> {
  return await (await hashWasm()).createXXHash128();
}

/** hash-wasm's XXH3-128, only where the runtime has no WebAssembly SIMD. */
const fallbackPageHasher: IHasher | null = wasmHashesAvailable
  ? null
  : await createWasmPageHasher();

/**
 * XXH3-128 (seed 0) of one page (more than 240 bytes: pages are at least 512), canonical
 * (big-endian) bytes, written into `out` at `at`.
 */
export function hashPageInto(page: Uint8Array, out: Uint8Array, at: number): void {
  hashPagesInto(page, page.length, out, at);
}

/**
 * XXH3-128 of each `pageSize`-byte page of `data` (16 bytes a page, in order) written into `out`
 * from `at`: one call for a whole batch.
 */
export function hashPagesInto(
  data: Uint8Array,
  pageSize: number,
  out: Uint8Array,
  at: number,
): void {
  const h = fallbackPageHasher;
  if (h === null) {
    xxh3Pages(data, pageSize, out, at);
    return;
  }
  for (let i = 0; i * pageSize < data.length; i++) {
    h.init();
    h.update(data.subarray(i * pageSize, (i + 1) * pageSize));
    out.set(h.digest("binary"), at + i * 16);
  }
}

/** Per page: 1 when it is all zero bytes, else 0; and the XXH3-128 of each non-zero page. */
export interface PageDigests {
  zero: Uint8Array;
  /** 16 bytes a page, in order (unspecified for zero pages). */
  hashes: Uint8Array;
}

/**
 * What the content digest needs of `count` pages of `pageSize` bytes (FORMAT.md §10): which are
 * zero, and the XXH3-128 of the others. `fill` writes the pages into the memory it is given and
 * returns null, or returns a reason string, which this returns instead: a decompressor writes
 * straight into the memory the hash runs on, so the pages are never copied.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { digestPages } from "./checksum.ts";
 * const d = digestPages(2, 4096, (area) => {
 *   area.fill(0).fill(7, 4096);
 *   return null;
 * });
 * assert(typeof d !== "string" && d.zero[0] === 1 && d.zero[1] === 0);
 * ```
 */
export function digestPages(
  count: number,
  pageSize: number,
  fill: (area: Uint8Array) => string | null,
): PageDigests | string {
  const zero = new Uint8Array(count);
  const hashes = new Uint8Array(count * 16);
  if (wasmHashesAvailable && pageSize > 240 && pageSize % 64 === 0) {
    const bad = fill(pageArea(count * pageSize));
    if (bad !== null) return bad;
    digestPageArea(count, pageSize, zero, hashes);
    return { zero, hashes };
  }
  const data = new Uint8Array(count * pageSize);
  const bad = fill(data);
  if (bad !== null) return bad;
  for (let i = 0; i < count; i++) {
    const page = data.subarray(i * pageSize, (i + 1) * pageSize);
    if (isZero(page)) zero[i] = 1;
    else hashPageInto(page, hashes, i * 16);
  }
  return { zero, hashes };
}
