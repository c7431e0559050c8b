/**
 * zstd for the format, with decompression bounded by the size the record implies (FORMAT.md
 * §6.2): a frame must declare its content size, that size must equal the expected size, the frame
 * must end exactly where the data ends, and all of that is checked before a library sees the
 * frame; the library then writes into exactly `expected` bytes and no more.
 *
 * Two backends, the same frames from both:
 *
 * - **native** (Deno 2 and Node 23+): the runtime's own zstd behind `node:zlib`. Compression is
 *   most of a snapshot's writing time and level 1 ran about 1.8x faster per CPU second than the
 *   WebAssembly build; decompression about 2x (BENCHMARKS.md, "Writing and verifying"). Both go
 *   through one reusable native context per thread that reads and writes the caller's memory:
 *   the public `zstdCompressSync` / `zstdDecompressSync` allocate (and zero-fill) fresh output on
 *   every call, and fresh memory is the dearest thing a reader or writer touches here (a page fault
 *   per 4 KiB). Those contexts are the library's handles behind its public classes, which is not a
 *   documented interface: each is made when a thread first needs it and checked then (the
 *   compressor must make `zstdCompressSync`'s frame byte for byte, the decompressor must read a
 *   hand-made frame right and refuse too little room), every frame the compressor makes is
 *   checked for its declared size and its end, and a thread falls back to the public functions
 *   for good if anything differs.
 * - **wasm**, where `node:zlib` has no zstd: @bokuweb/zstd-wasm's WebAssembly file instantiated
 *   directly (its CommonJS loader would cost every thread Deno's Node compatibility layer), with
 *   input and output areas reused; the package's own API if the file cannot be reached.
 *
 * @module
 */
import * as zlib from "node:zlib";

/** The largest window a frame may ask for (ZSTD_WINDOWLOG_MAX_32: what a 32-bit reader takes). */
const MAX_WINDOW_LOG = 30;

/** ZSTD_COMPRESSBOUND of zstd.h plus room for the frame header: the most a frame can take. */
export function zstdCompressBound(n: number): number {
  const small = n < 128 << 10 ? ((128 << 10) - n) >> 11 : 0;
  return n + (n >> 8) + small + 64;
}

/** What this module needs of a backend. */
interface Backend {
  /** Writes one frame declaring its size at `out[at..]` (room for the bound); its length. */
  compressInto(data: Uint8Array, level: number, out: Uint8Array, at: number): number;
  /**
   * Decompresses `data` (already checked: one frame declaring `out.length` bytes, nothing after
   * it) into all of `out`; a reason string when the frame is damaged, else null.
   */
  decompressInto(data: Uint8Array, out: Uint8Array): string | null;
  /**
   * Decompresses into memory of the backend's (reused, valid until the next call), when that
   * saves a copy; undefined when `decompressInto` is as cheap.
   */
  decompressView?(data: Uint8Array, expected: number): Uint8Array | string;
}

// ---------------------------------------------------------------------------------------------
// The native backend: node:zlib.

const { constants } = zlib;
/** zlib's zstd functions, absent from runtimes older than Deno 2 or Node 22.15. */
const publicZstd = typeof zlib.zstdCompressSync === "function" &&
    typeof zlib.zstdDecompressSync === "function"
  ? { compress: zlib.zstdCompressSync, decompress: zlib.zstdDecompressSync }
  : null;

/** The native handle behind `zlib.ZstdCompress` / `ZstdDecompress`, as Deno 2 and Node 23+ have it. */
interface ZstdHandle {
  init(params: Uint32Array, onProgress: () => void, pledgedSrcSize: number): boolean;
  reset(): void;
  writeSync(
    flush: number,
    input: Uint8Array,
    inOffset: number,
    inLength: number,
    output: Uint8Array,
    outOffset: number,
    outLength: number,
  ): void;
}

function publicCompress(data: Uint8Array, level: number): Uint8Array {
  const out = publicZstd!.compress(
    data,
    {
      // The whole frame in one output chunk: with a smaller chunk, Deno 2.9's loop appends an
      // empty second frame once the first fills a chunk.
      chunkSize: zstdCompressBound(data.length),
      pledgedSrcSize: data.length,
      params: {
        [constants.ZSTD_c_compressionLevel]: level,
        [constants.ZSTD_c_contentSizeFlag]: 1,
        [constants.ZSTD_c_checksumFlag]: 0,
      },
    } as Parameters<typeof zlib.zstdCompressSync>[1],
  );
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

function publicDecompress(data: Uint8Array, expected: number): Uint8Array | string {
  let out: Uint8Array;
  try {
    out = publicZstd!.decompress(
      data,
      {
        // One output chunk one byte larger than the content: a chunk that fills up makes the
        // library allocate a second one. Anything larger than expected is refused, not grown.
        chunkSize: Math.max(64, expected + 1),
        maxOutputLength: Math.max(1, expected),
        params: { [constants.ZSTD_d_windowLogMax]: MAX_WINDOW_LOG },
      } as Parameters<typeof zlib.zstdDecompressSync>[1],
    );
  } catch (e) {
    return `zstd data is invalid (${(e as Error).message})`;
  }
  if (out.length !== expected) {
    return `zstd data decompressed to ${out.length} bytes, expected ${expected}`;
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** The handle and its `[output left, input left]` counters of a fresh zlib zstd object. */
function nativeHandle(kind: "ZstdCompress" | "ZstdDecompress"): [ZstdHandle, Uint32Array] | null {
  // deno-lint-ignore no-explicit-any
  const engine = new (zlib as any)[kind]({}) as { _handle?: unknown; _writeState?: unknown };
  const handle = engine._handle as Partial<ZstdHandle> | undefined;
  const state = engine._writeState;
  if (
    typeof handle?.init !== "function" || typeof handle.writeSync !== "function" ||
    typeof handle.reset !== "function" || !(state instanceof Uint32Array) || state.length < 2
  ) {
    return null;
  }
  return [handle as ZstdHandle, state];
}

function noop(): void {}

/** One native compression context, re-initialised for each frame (which keeps its declared size). */
class CompressionContext {
  /** zstd's parameter table as the handle takes it: -1 (unset) but for the level. */
  private readonly params = new Uint32Array(constants.ZSTD_c_compressionLevel + 1);
  /** False for good once a frame it made failed a check. */
  works = true;
  constructor(private readonly handle: ZstdHandle, private readonly state: Uint32Array) {}

  /** Writes one frame at `out[at..]` and returns its length, or -1 if the frame is not right. */
  compress(data: Uint8Array, level: number, out: Uint8Array, at: number): number {
    if (!this.works) return -1;
    try {
      this.params.fill(0xffff_ffff);
      this.params[constants.ZSTD_c_compressionLevel] = level;
      if (!this.handle.init(this.params, noop, data.length)) return this.broken();
      const room = out.length - at;
      this.handle.writeSync(constants.ZSTD_e_end, data, 0, data.length, out, at, room);
      // state[0]: output bytes left, state[1]: input bytes left. The bound leaves output room.
      const n = room - this.state[0];
      if (this.state[1] !== 0 || this.state[0] === 0 || n <= 0) return this.broken();
      const frame = out.subarray(at, at + n);
      if (zstdFrameContentSize(frame) !== data.length || checkFrameEnd(frame) !== null) {
        return this.broken();
      }
      return n;
    } catch {
      return this.broken();
    }
  }

  private broken(): number {
    this.works = false;
    return -1;
  }
}

/**
 * One native decompression context, reset for each frame. The handle writes into the caller's
 * memory and throws on damage; the counters say how much it produced and whether it wanted more
 * room than `expected` (input left once the output is full).
 */
class DecompressionContext {
  constructor(private readonly handle: ZstdHandle, private readonly state: Uint32Array) {
    const params = new Uint32Array(constants.ZSTD_d_windowLogMax + 1).fill(0xffff_ffff);
    params[constants.ZSTD_d_windowLogMax] = MAX_WINDOW_LOG;
    // The pledged size means nothing to a decompressor, but the handle wants a number.
    if (!handle.init(params, noop, 0)) throw new Error("Cannot start zstd: init refused");
  }

  decompressInto(data: Uint8Array, out: Uint8Array): string | null {
    this.handle.reset();
    this.state[0] = out.length;
    this.state[1] = data.length;
    try {
      this.handle.writeSync(constants.ZSTD_e_end, data, 0, data.length, out, 0, out.length);
    } catch (e) {
      return `zstd data is invalid (${(e as Error).message})`;
    }
    const produced = out.length - this.state[0];
    if (this.state[1] !== 0) {
      return `zstd data decompresses to more than the ${out.length} bytes expected`;
    }
    if (produced !== out.length) {
      return `zstd data decompressed to ${produced} bytes, expected ${out.length}`;
    }
    return null;
  }
}

/** Text-like and noisy halves: levels and parameters show in the bytes of such a frame. */
function sample(): Uint8Array {
  let x = 0x9e37_79b9;
  return new Uint8Array(70_000).map((_, i) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return i < 35_000 ? 97 + ((x >>> 0) % 7) : x & 0xff;
  });
}

/**
 * A frame made by hand (RFC 8878 §3.1.1): 200 bytes declared, 195 'a' in an RLE block, then
 * "hello" in the last, raw block. It checks how the decompression context is called without
 * making a compressor.
 */
const PROBE_FRAME = new Uint8Array([
  ...[0x28, 0xb5, 0x2f, 0xfd, 0x20, 200],
  ...[0x1a, 0x06, 0x00, 0x61],
  ...[0x29, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f],
]);

/** A compression context that makes the public function's frames, byte for byte, or null. */
function checkedCompressionContext(): CompressionContext | null {
  try {
    const c = nativeHandle("ZstdCompress");
    if (c === null) return null;
    const input = sample();
    const expected = publicCompress(input, 1);
    const candidate = new CompressionContext(...c);
    // Written off an offset, as the writer does.
    const out = new Uint8Array(zstdCompressBound(input.length) + 5);
    const n = candidate.compress(input, 1, out, 5);
    return n === expected.length && expected.every((b, i) => b === out[5 + i]) ? candidate : null;
  } catch {
    return null;
  }
}

/** A decompression context that reads the probe frame right, twice, and refuses too little room. */
function checkedDecompressionContext(): DecompressionContext | null {
  try {
    const d = nativeHandle("ZstdDecompress");
    if (d === null) return null;
    const candidate = new DecompressionContext(...d);
    const want = (out: Uint8Array) =>
      out.every((b, i) => b === (i < 195 ? 0x61 : "hello".charCodeAt(i - 195)));
    const out = new Uint8Array(200);
    // Twice: the second frame proves that reset() readies the context for another.
    const ok = candidate.decompressInto(PROBE_FRAME, out) === null && want(out) &&
      candidate.decompressInto(PROBE_FRAME, out.fill(0)) === null && want(out) &&
      typeof candidate.decompressInto(PROBE_FRAME, new Uint8Array(199)) === "string";
    return ok ? candidate : null;
  } catch {
    return null;
  }
}

/**
 * The native backend. Each context is made and checked when this thread first needs it (a reader
 * never makes a compressor); where a check fails, the public functions do that work.
 */
function nativeBackend(): Backend & { paths: NativePaths } {
  let compressor: CompressionContext | null | undefined;
  let decompressor: DecompressionContext | null | undefined;
  const paths: NativePaths = {
    get compress() {
      if (forcedPublic.compress) return "public";
      compressor ??= checkedCompressionContext();
      return compressor !== null && compressor.works ? "context" : "public";
    },
    get decompress() {
      if (forcedPublic.decompress) return "public";
      decompressor ??= checkedDecompressionContext();
      return decompressor !== null ? "context" : "public";
    },
  };
  return {
    paths,
    compressInto(data, level, out, at) {
      if (paths.compress === "context") {
        const n = compressor!.compress(data, level, out, at);
        if (n >= 0) return n;
      }
      const frame = publicCompress(data, level);
      out.set(frame, at);
      return frame.length;
    },
    decompressInto(data, out) {
      if (paths.decompress === "context") return decompressor!.decompressInto(data, out);
      const r = publicDecompress(data, out.length);
      if (typeof r === "string") return r;
      out.set(r);
      return null;
    },
  };
}

/** What tests force: the public functions instead of the contexts. */
const forcedPublic = { compress: false, decompress: false };

type NativePath = "context" | "public";
interface NativePaths {
  readonly compress: NativePath;
  readonly decompress: NativePath;
}

// ---------------------------------------------------------------------------------------------
// The WebAssembly backend: zstd-wasm, for runtimes without zstd in node:zlib.

/** zstd's functions, as this module calls them (pointers into `memory`). */
interface WasmZstd {
  memory: WebAssembly.Memory;
  malloc(size: number): number;
  free(pointer: number): void;
  decompress(dst: number, capacity: number, src: number, size: number): number;
  compress(dst: number, capacity: number, src: number, size: number, level: number): number;
  compressBound(size: number): number;
  isError(code: number): number;
}

/**
 * Instantiates zstd-wasm's WebAssembly file directly, without the package's JavaScript. The export
 * and import names are those of the pinned version (0.0.27). Null when the file cannot be reached
 * (the package is not in a local node_modules).
 */
async function instantiateWasmZstd(): Promise<WasmZstd | null> {
  let url: string;
  try {
    url = import.meta.resolve("@bokuweb/zstd-wasm");
  } catch {
    return null;
  }
  if (!url.startsWith("file:")) return null;
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await Deno.readFile(new URL("./zstd.wasm", url));
  } catch {
    return null;
  }
  let memory: WebAssembly.Memory | null = null;
  const imports = {
    a: {
      a: (code: number) => {
        throw new Error(`Cannot run zstd: it exited with status ${code}`);
      },
      b: () => {},
      c: () => {
        throw new Error("Cannot run zstd: it aborted");
      },
      d: () => 0,
      // emscripten_resize_heap: grow to at least the size asked for, in 64 KiB pages.
      e: (requested: number) => {
        const m = memory!;
        const want = Math.max(requested >>> 0, m.buffer.byteLength * 1.2);
        const pages = Math.ceil((want - m.buffer.byteLength) / 65536);
        try {
          m.grow(pages);
          return 1;
        } catch {
          return 0;
        }
      },
    },
  };
  const instance = await WebAssembly.instantiate(await WebAssembly.compile(bytes), imports);
  const x = instance.exports as Record<string, unknown>;
  memory = x.f as WebAssembly.Memory;
  (x.g as () => void)();
  return {
    memory,
    isError: x.h as WasmZstd["isError"],
    compressBound: x.i as WasmZstd["compressBound"],
    compress: x.m as WasmZstd["compress"],
    decompress: x.r as WasmZstd["decompress"],
    malloc: x.s as WasmZstd["malloc"],
    free: x.t as WasmZstd["free"],
  };
}

/** The backend on a directly instantiated zstd-wasm, with input and output areas reused. */
function directWasmBackend(zstd: WasmZstd): Backend {
  const area = { src: 0, srcSize: 0, dst: 0, dstSize: 0 };
  const reserve = (which: "src" | "dst", size: number): number => {
    const have = which === "src" ? area.srcSize : area.dstSize;
    if (have >= size) return which === "src" ? area.src : area.dst;
    const old = which === "src" ? area.src : area.dst;
    if (old !== 0) zstd.free(old);
    // Doubling amortises growth; the cap keeps a reader within FORMAT.md §13's one-record bound.
    const grown = Math.max(size, Math.min(have * 2, 64 << 20), 1 << 20);
    const p = zstd.malloc(grown);
    if (p === 0) throw new RangeError(`Cannot run zstd: no ${grown} bytes left in its heap`);
    if (which === "src") Object.assign(area, { src: p, srcSize: grown });
    else Object.assign(area, { dst: p, dstSize: grown });
    return p;
  };
  // A new view each time: the heap's buffer changes when it grows.
  const heap = () => new Uint8Array(zstd.memory.buffer);
  const view = (data: Uint8Array, expected: number): Uint8Array | string => {
    const src = reserve("src", data.length);
    const dst = reserve("dst", Math.max(expected, 1));
    heap().set(data, src);
    const n = zstd.decompress(dst, expected, src, data.length);
    if (zstd.isError(n)) return `zstd data is invalid (zstd error ${-n})`;
    if (n !== expected) return `zstd data decompressed to ${n} bytes, expected ${expected}`;
    return heap().subarray(dst, dst + n);
  };
  return {
    compressInto(data, level, out, at) {
      const src = reserve("src", data.length);
      const bound = zstd.compressBound(data.length);
      const dst = reserve("dst", bound);
      heap().set(data, src);
      const n = zstd.compress(dst, bound, src, data.length, level);
      if (zstd.isError(n)) throw new Error(`Cannot compress: zstd error ${-n}`);
      out.set(heap().subarray(dst, dst + n), at);
      return n;
    },
    decompressInto(data, out) {
      const r = view(data, out.length);
      if (typeof r === "string") return r;
      out.set(r);
      return null;
    },
    decompressView: view,
  };
}

/** The backend through zstd-wasm's own API, for when its file cannot be reached. */
async function packageWasmBackend(): Promise<Backend> {
  const pkg = await import("@bokuweb/zstd-wasm");
  await pkg.init();
  return {
    compressInto(data, level, out, at) {
      const frame = pkg.compress(data, level);
      out.set(frame, at);
      return frame.length;
    },
    decompressInto(data, out) {
      let r: Uint8Array;
      try {
        r = pkg.decompress(data, { defaultHeapSize: out.length });
      } catch (e) {
        return `zstd data is invalid (${(e as Error).message})`;
      }
      if (r.length !== out.length) {
        return `zstd data decompressed to ${r.length} bytes, expected ${out.length}`;
      }
      out.set(r);
      return null;
    },
  };
}

async function wasmBackend(): Promise<Backend> {
  const direct = await instantiateWasmZstd();
  return direct !== null ? directWasmBackend(direct) : await packageWasmBackend();
}

// ---------------------------------------------------------------------------------------------

const native = publicZstd === null ? null : nativeBackend();
/** This thread's backend; WebAssembly is compiled only where the runtime has no zstd. */
let backend: Backend = native ?? await wasmBackend();
let forced: Backend | null = null;

/**
 * Which backend and paths this thread uses: "native" with its compression and decompression paths
 * ("context": the reusable native contexts, "public": `zstdCompressSync` / `zstdDecompressSync`),
 * or "wasm". `use` switches this thread to a backend from now on ("native" back to the one chosen
 * at start; "wasm" compiles zstd-wasm): tests and benchmarks compare the two.
 */
export async function zstdBackend(
  use?: "native" | "wasm",
): Promise<{ backend: "native" | "wasm"; compress?: NativePath; decompress?: NativePath }> {
  if (use === "wasm") backend = forced ??= await wasmBackend();
  if (use === "native" && native !== null) backend = native;
  return backend === native && native !== null
    ? { backend: "native", compress: native.paths.compress, decompress: native.paths.decompress }
    : { backend: "wasm" };
}

/**
 * Which compression path this thread uses: "context" (the reusable native context) or "public"
 * (`zstdCompressSync`, also for good once the context failed a check). `publicOnlyFromNowOn`
 * forces one or the other, for tests.
 */
export function zstdCompressionPath(publicOnlyFromNowOn?: boolean): NativePath {
  if (native === null) return "public";
  if (publicOnlyFromNowOn !== undefined) forcedPublic.compress = publicOnlyFromNowOn;
  return native.paths.compress;
}

/**
 * Which decompression path this thread uses: "context" (the reusable native context) or "public"
 * (`zstdDecompressSync`). `publicOnlyFromNowOn` forces one or the other, for tests.
 */
export function zstdDecompressionPath(publicOnlyFromNowOn?: boolean): NativePath {
  if (native === null) return "public";
  if (publicOnlyFromNowOn !== undefined) forcedPublic.decompress = publicOnlyFromNowOn;
  return native.paths.decompress;
}

/** Compresses bytes into one zstd frame that declares its content size. */
export function zstdCompress(data: Uint8Array, level: number): Uint8Array {
  const out = new Uint8Array(zstdCompressBound(data.length));
  return out.slice(0, backend.compressInto(data, level, out, 0));
}

/**
 * Compresses bytes into one frame written at `out[at..]`, which must have room for
 * {@linkcode zstdCompressBound} bytes; returns the frame's length.
 */
export function zstdCompressInto(
  data: Uint8Array,
  level: number,
  out: Uint8Array,
  at: number,
): number {
  if (out.length - at < zstdCompressBound(data.length)) {
    throw new RangeError(
      `Cannot compress ${data.length} bytes: ${out.length - at} bytes of room, the bound is ${
        zstdCompressBound(data.length)
      }`,
    );
  }
  return backend.compressInto(data, level, out, at);
}

/**
 * Reads the Frame_Content_Size of a zstd frame (RFC 8878 §3.1.1.1), or returns a reason string
 * when the bytes are not exactly one frame with a declared size.
 *
 * It also refuses a window larger than {@linkcode MAX_WINDOW_LOG}, before any memory is set aside
 * for it.
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
  if (!single) {
    const windowLog = 10 + (b[5] >> 3);
    if (windowLog > MAX_WINDOW_LOG) {
      return `zstd frame asks for a 2^${windowLog}-byte window, more than 2^${MAX_WINDOW_LOG}`;
    }
  }
  const pos = 5 + (single ? 0 : 1) + [0, 1, 2, 4][dictFlag];
  const fcsSize = fcsFlag === 0 ? (single ? 1 : 0) : [0, 2, 4, 8][fcsFlag];
  if (fcsSize === 0) return "zstd frame does not declare its content size";
  if (pos + fcsSize > b.length) return "zstd frame header is cut off";
  let v = 0;
  for (let i = fcsSize - 1; i >= 0; i--) v = v * 256 + b[pos + i];
  if (fcsSize === 2) v += 256;
  return v;
}

/**
 * Walks a frame's block headers (RFC 8878 §3.1.1.2) and returns a reason string unless the frame
 * ends exactly where `b` ends; `b` must already have passed {@linkcode zstdFrameContentSize}.
 * Both libraries would otherwise decode the first frame and ignore or decode frames or skippable
 * frames that follow (FORMAT.md §6.2 calls those bytes corrupt).
 */
function checkFrameEnd(b: Uint8Array): string | null {
  const fhd = b[4];
  const single = (fhd >> 5) & 1;
  const fcsSize = [single ? 1 : 0, 2, 4, 8][fhd >> 6];
  let pos = 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3] + fcsSize;
  for (let last = 0; last === 0;) {
    if (pos + 3 > b.length) return "zstd frame is cut off inside its blocks";
    const bh = b[pos] | (b[pos + 1] << 8) | (b[pos + 2] << 16);
    last = bh & 1;
    const type = (bh >> 1) & 3;
    if (type === 3) return `zstd block at byte ${pos} has the reserved type`;
    pos += 3 + (type === 1 ? 1 : bh >>> 3);
  }
  pos += (fhd >> 2) & 1 ? 4 : 0;
  if (pos > b.length) return "zstd frame is cut off inside its blocks";
  if (pos < b.length) return `${b.length - pos} bytes follow the zstd frame`;
  return null;
}

/** The frame checks of FORMAT.md §6.2, before anything is decompressed. */
function checkFrame(data: Uint8Array, expected: number): string | null {
  const size = zstdFrameContentSize(data);
  if (typeof size === "string") return size;
  if (size !== expected) return `zstd frame declares ${size} bytes, the record implies ${expected}`;
  return checkFrameEnd(data);
}

/**
 * Decompresses one frame whose content must be exactly `out.length` bytes into `out`. Returns a
 * reason string when the frame is refused or damaged (then `out` holds garbage), else null.
 */
export function zstdDecompressInto(data: Uint8Array, out: Uint8Array): string | null {
  return checkFrame(data, out.length) ?? backend.decompressInto(data, out);
}

/** This thread's output area of {@linkcode zstdDecompressView}, reused from call to call. */
let viewArea = new Uint8Array(0);

/**
 * Like {@linkcode zstdDecompressExact}, but the bytes are a view into memory this thread reuses,
 * valid only until the next call: for callers that only look at them (hash, compare) and need no
 * copy.
 */
export function zstdDecompressView(data: Uint8Array, expected: number): Uint8Array | string {
  const bad = checkFrame(data, expected);
  if (bad !== null) return bad;
  if (backend.decompressView !== undefined) return backend.decompressView(data, expected);
  if (viewArea.length < expected) {
    // Doubling amortises growth; records hold at most 64 MiB (FORMAT.md §13).
    viewArea = new Uint8Array(Math.max(expected, Math.min(viewArea.length * 2, 64 << 20)));
  }
  const out = viewArea.subarray(0, expected);
  return backend.decompressInto(data, out) ?? out;
}

/**
 * Grows this thread's {@linkcode zstdDecompressView} area to at least `bytes` and writes it once,
 * so that later calls up to that size find it in memory rather than taking a fault per 4 KiB
 * (a process that is about to restore lazily does this before its clock starts).
 */
export function zstdReserveView(bytes: number): void {
  if (backend.decompressView !== undefined || viewArea.length >= bytes) return;
  viewArea = new Uint8Array(Math.min(bytes, 64 << 20));
  viewArea.fill(0);
}

/**
 * Decompresses one frame whose content must be exactly `expected` bytes. Returns the bytes or a
 * reason string; never allocates more than `expected` for the output.
 */
export function zstdDecompressExact(data: Uint8Array, expected: number): Uint8Array | string {
  const bad = checkFrame(data, expected);
  if (bad !== null) return bad;
  const out = new Uint8Array(expected);
  return backend.decompressInto(data, out) ?? out;
}
