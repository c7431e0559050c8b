/**
 * zstd through the runtime's native library (`node:zlib`, in Deno and Node), with decompression
 * bounded by the size the record implies (FORMAT.md §6.2): the frame must declare its content size
 * and it must equal the expected size, checked before the library allocates anything.
 *
 * Native rather than WebAssembly because compression is most of a snapshot's writing time: level
 * 1 on the benchmark's non-zero pages ran about 1.8x faster per CPU second than
 * @bokuweb/zstd-wasm (BENCHMARKS.md, "where the time went"), and nothing is compiled when a
 * thread starts.
 *
 * Compression goes through one reusable native context per thread and writes into the caller's
 * memory: `zstdCompressSync` allocates (and zero-fills) an output buffer of the compressed bound
 * on every call, and fresh memory is the dearest thing a writer can touch here (a page fault per
 * 4 KiB). That context is the library's handle behind its public classes, which is not a
 * documented interface: it is checked once per thread against the public function (same bytes,
 * declared size, exact end) and every frame it makes is checked for its declared size and its end,
 * and compression falls back to `zstdCompressSync` for good if anything differs.
 *
 * @module
 */
import * as zlib from "node:zlib";

const { constants, zstdCompressSync, zstdDecompressSync } = zlib;

/** ZSTD_COMPRESSBOUND of zstd.h plus room for the frame header: the most a frame can take. */
export function zstdCompressBound(n: number): number {
  const small = n < 128 << 10 ? ((128 << 10) - n) >> 11 : 0;
  return n + (n >> 8) + small + 64;
}

/** Compresses bytes into one zstd frame that declares its content size. */
export function zstdCompress(data: Uint8Array, level: number): Uint8Array {
  const native = reusableContext();
  if (native !== null) {
    const out = new Uint8Array(zstdCompressBound(data.length));
    const n = native.compress(data, level, out, 0);
    if (n >= 0) return out.slice(0, n);
  }
  return publicCompress(data, level);
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
  const native = reusableContext();
  const n = native === null ? -1 : native.compress(data, level, out, at);
  if (n >= 0) return n;
  const frame = publicCompress(data, level);
  out.set(frame, at);
  return frame.length;
}

function publicCompress(data: Uint8Array, level: number): Uint8Array {
  const out = zstdCompressSync(
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
    } as Parameters<typeof zstdCompressSync>[1],
  );
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** The native compression context behind `zlib.ZstdCompress`, as Deno 2 and Node 23+ expose it. */
interface ZstdHandle {
  init(params: Uint32Array, onProgress: () => void, pledgedSrcSize: number): boolean;
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

/** One native zstd context, re-initialised for each frame (which keeps its declared size). */
class ReusableContext {
  /** zstd's parameter table as the handle takes it: -1 (unset) but for the level. */
  private readonly params: Uint32Array;
  constructor(private readonly handle: ZstdHandle, private readonly state: Uint32Array) {
    this.params = new Uint32Array(constants.ZSTD_c_compressionLevel + 1);
  }

  /** Writes one frame at `out[at..]` and returns its length, or -1 if the frame is not right. */
  compress(data: Uint8Array, level: number, out: Uint8Array, at: number): number {
    if (!contextWorks) return -1;
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
    contextWorks = false;
    return -1;
  }
}

function noop(): void {}

let contextWorks = true;
let context: ReusableContext | null | undefined;
let publicOnly = false;

/**
 * Which compression path this thread uses: "context" (the reusable native context) or "public"
 * (`zstdCompressSync`). Tests and benchmarks call it; `publicOnly` forces the public path.
 */
export function zstdCompressionPath(publicOnlyFromNowOn?: boolean): "context" | "public" {
  if (publicOnlyFromNowOn !== undefined) publicOnly = publicOnlyFromNowOn;
  return reusableContext() === null ? "public" : "context";
}

/** This thread's reusable context, or null where the runtime does not offer one that works. */
function reusableContext(): ReusableContext | null {
  if (publicOnly) return null;
  if (context !== undefined) return contextWorks ? context : null;
  context = null;
  try {
    // deno-lint-ignore no-explicit-any
    const engine = new (zlib as any).ZstdCompress({}) as {
      _handle?: unknown;
      _writeState?: unknown;
    };
    const handle = engine._handle as Partial<ZstdHandle> | undefined;
    const state = engine._writeState;
    if (
      typeof handle?.init !== "function" || typeof handle.writeSync !== "function" ||
      !(state instanceof Uint32Array) || state.length < 2
    ) {
      return null;
    }
    const candidate = new ReusableContext(handle as ZstdHandle, state);
    // Checked against the public function once: the same frame, byte for byte.
    // Text-like and noisy halves: levels and parameters show in the bytes of such a frame.
    let x = 0x9e37_79b9;
    const sample = new Uint8Array(70_000).map((_, i) => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return i < 35_000 ? 97 + ((x >>> 0) % 7) : x & 0xff;
    });
    const out = new Uint8Array(zstdCompressBound(sample.length) + 5);
    const n = candidate.compress(sample, 1, out, 5);
    const expected = publicCompress(sample, 1);
    if (n !== expected.length || !expected.every((b, i) => b === out[5 + i])) {
      contextWorks = false;
      return null;
    }
    context = candidate;
  } catch {
    context = null;
  }
  return context;
}

/**
 * The largest window a frame may ask for (ZSTD_WINDOWLOG_MAX_32, what readers built for 32-bit
 * targets accept). Records hold at most 64 MiB, so no writer needs more.
 */
const MAX_WINDOW_LOG = 30;

/**
 * Reads the Frame_Content_Size of a zstd frame (RFC 8878 §3.1.1.1), or returns a reason string
 * when the bytes are not exactly one frame with a declared size.
 *
 * It also refuses a window larger than {@linkcode MAX_WINDOW_LOG}, before any memory is set
 * aside for it.
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
 * The library would otherwise decode the first frame and ignore frames or skippable frames that
 * follow (FORMAT.md §6.2 calls those bytes corrupt).
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

/**
 * Decompresses one frame whose content must be exactly `expected` bytes. Returns the bytes or a
 * reason string; never allocates more than `expected` for the output.
 */
export function zstdDecompressExact(data: Uint8Array, expected: number): Uint8Array | string {
  const size = zstdFrameContentSize(data);
  if (typeof size === "string") return size;
  if (size !== expected) return `zstd frame declares ${size} bytes, the record implies ${expected}`;
  const end = checkFrameEnd(data);
  if (end !== null) return end;
  let out: Uint8Array;
  try {
    out = zstdDecompressSync(
      data,
      {
        // One output chunk of exactly the expected size; anything larger is refused, not grown.
        // One output chunk one byte larger than the data: a chunk that fills up makes the library
        // allocate a second one.
        chunkSize: Math.max(64, expected + 1),
        maxOutputLength: Math.max(1, expected),
        params: { [constants.ZSTD_d_windowLogMax]: MAX_WINDOW_LOG },
      } as Parameters<typeof zstdDecompressSync>[1],
    );
  } catch (e) {
    return `zstd data is invalid (${(e as Error).message})`;
  }
  if (out.length !== expected) {
    return `zstd data decompressed to ${out.length} bytes, expected ${expected}`;
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}
