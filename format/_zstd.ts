/**
 * zstd (the WebAssembly build of @bokuweb/zstd-wasm), with decompression bounded by the size the
 * record implies (FORMAT.md §6.2): the frame must declare its content size and it must equal the
 * expected size, checked before the library allocates anything.
 *
 * @module
 */
/** zstd's functions, as this module calls them (pointers into `memory`). */
interface Zstd {
  memory: WebAssembly.Memory;
  malloc(size: number): number;
  free(pointer: number): void;
  decompress(dst: number, capacity: number, src: number, size: number): number;
  compress(dst: number, capacity: number, src: number, size: number, level: number): number;
  compressBound(size: number): number;
  isError(code: number): number;
}

/**
 * Instantiates zstd-wasm's WebAssembly file directly, without the package's JavaScript: its
 * loader is CommonJS, which costs every process (and every worker) Deno's Node compatibility layer
 * at start-up, and its API copies every input and output through fresh allocations, which costs
 * more than the work (fresh memory is slow to touch). The export and import names are those of the
 * pinned version (0.0.27). Null when the file cannot be reached (the package is not in a local
 * node_modules): the package's API is used instead.
 */
async function instantiateZstd(): Promise<Zstd | null> {
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
    isError: x.h as Zstd["isError"],
    compressBound: x.i as Zstd["compressBound"],
    compress: x.m as Zstd["compress"],
    decompress: x.r as Zstd["decompress"],
    malloc: x.s as Zstd["malloc"],
    free: x.t as Zstd["free"],
  };
}

/** What the rest of this module needs: compress, and decompress into a view. */
interface Codec {
  compress(data: Uint8Array, level: number): Uint8Array;
  /** Decompresses `data` (already checked) into a view valid until the next call. */
  decompress(data: Uint8Array, expected: number): Uint8Array | string;
}

/** The codec on a directly instantiated zstd, with input and output areas reused. */
function directCodec(zstd: Zstd): Codec {
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
  return {
    compress(data, level) {
      const src = reserve("src", data.length);
      const bound = zstd.compressBound(data.length);
      const dst = reserve("dst", bound);
      heap().set(data, src);
      const n = zstd.compress(dst, bound, src, data.length, level);
      if (zstd.isError(n)) throw new Error(`Cannot compress: zstd error ${-n}`);
      return heap().slice(dst, dst + n);
    },
    decompress(data, expected) {
      const src = reserve("src", data.length);
      const dst = reserve("dst", Math.max(expected, 1));
      heap().set(data, src);
      const n = zstd.decompress(dst, expected, src, data.length);
      if (zstd.isError(n)) return `zstd data is invalid (zstd error ${-n})`;
      if (n !== expected) return `zstd data decompressed to ${n} bytes, expected ${expected}`;
      return heap().subarray(dst, dst + n);
    },
  };
}

/** The codec through the package's own API, for when its file cannot be reached. */
async function packageCodec(): Promise<Codec> {
  const pkg = await import("@bokuweb/zstd-wasm");
  await pkg.init();
  return {
    compress: (data, level) => pkg.compress(data, level),
    decompress(data, expected) {
      let out: Uint8Array;
      try {
        out = pkg.decompress(data, { defaultHeapSize: expected });
      } catch (e) {
        return `zstd data is invalid (${(e as Error).message})`;
      }
      if (out.length !== expected) {
        return `zstd data decompressed to ${out.length} bytes, expected ${expected}`;
      }
      return out;
    },
  };
}

const direct = await instantiateZstd();
const codec: Codec = direct !== null ? directCodec(direct) : await packageCodec();

/** Compresses bytes into one zstd frame that declares its content size. */
export function zstdCompress(data: Uint8Array, level: number): Uint8Array {
  return codec.compress(data, level);
}

/** The largest window a frame may ask for: zstd-wasm is a 32-bit build (ZSTD_WINDOWLOG_MAX_32). */
const MAX_WINDOW_LOG = 30;

/**
 * Reads the Frame_Content_Size of a zstd frame (RFC 8878 §3.1.1.1), or returns a reason string
 * when the bytes are not exactly one frame with a declared size.
 *
 * It also refuses a window larger than the 32-bit library accepts: `ZSTD_getFrameContentSize`
 * then reports an error, which zstd-wasm's `decompress` would take for a buffer size (-2).
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
 * zstd-wasm's `decompress` would otherwise also decode frames or skippable frames that follow
 * (FORMAT.md §6.2 calls those bytes corrupt).
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

/** The frame checks of {@linkcode zstdDecompressExact}, before anything is decompressed. */
function checkFrame(data: Uint8Array, expected: number): string | null {
  const size = zstdFrameContentSize(data);
  if (typeof size === "string") return size;
  if (size !== expected) return `zstd frame declares ${size} bytes, the record implies ${expected}`;
  return checkFrameEnd(data);
}

/**
 * Like {@linkcode zstdDecompressExact}, but the bytes are a view into the decompressor's memory,
 * valid only until the next call of either function: for callers that only look at them (hash,
 * compare) and need no copy.
 */
export function zstdDecompressView(data: Uint8Array, expected: number): Uint8Array | string {
  const bad = checkFrame(data, expected);
  if (bad !== null) return bad;
  return codec.decompress(data, expected);
}

/**
 * Decompresses one frame whose content must be exactly `expected` bytes. Returns the bytes or a
 * reason string; never allocates more than `expected` for the output.
 */
export function zstdDecompressExact(data: Uint8Array, expected: number): Uint8Array | string {
  const view = zstdDecompressView(data, expected);
  return typeof view === "string" ? view : view.slice();
}
