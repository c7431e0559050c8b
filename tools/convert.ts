/**
 * `convert`: rewrites a snapshot. Between `.lsnap` files it recompresses, rebatches, reorders
 * pages into address order, drops superseded duplicates, rebuilds a missing index and rewrites
 * an older minor version, in any combination. It also exchanges memory with tools that only know
 * flat images (`--to raw`, `--from raw`), writes ELF core files that `gdb` opens beside the
 * guest's ELF (`--to elf-core`), and reads and writes QEMU migration streams (`--from qemu`,
 * `--to qemu`; a QEMU stream given without `--from` is recognised by its `QEVM` magic).
 *
 * Every conversion that keeps the state keeps the content digest, and `convertSnapshot` checks
 * that before it returns: the output bytes are read back as they are written (a second,
 * independent reader recomputes the digest from the output's own records) and compared with the
 * digest of the input. On a mismatch the output is removed and a {@linkcode ConvertError} thrown.
 * A QEMU stream output (`--to qemu`) is re-read as it is written, by the QEMU stream reader, and
 * the content digest of what it holds (RAM pages, device sections byte for byte, the stream's
 * own data) is compared with the input's in the same way.
 *
 * Input and output formats live in two tables, {@linkcode INPUT_FORMATS} and
 * {@linkcode OUTPUT_FORMATS}; another module adds a format with {@linkcode registerInputFormat}
 * or {@linkcode registerOutputFormat}.
 *
 * @module
 */
import { isZero } from "../format/_bytes.ts";
import { toHex } from "../format/checksum.ts";
import { ContentDigestBuilder } from "../format/content_digest.ts";
import type { DeviceSection } from "../format/device_section.ts";
import { decodeDeviceState } from "../format/device_state.ts";
import { type MachineDescription, type Region, validateDescription } from "../format/header.ts";
import { type SnapshotRecord, SnapshotStreamReader } from "../format/stream_reader.ts";
import { SnapshotWriter } from "../format/writer.ts";
import type { CompressionChoice, RawRegionSpec } from "./_args.ts";
import { createOutput, openInput, type OutputHandle, readAll } from "./_io.ts";
import { PageStore } from "./_page_store.ts";
import { createProgress, type Progress } from "./_term.ts";
import { ConvertError } from "./_convert_error.ts";
import { isQemuInput, QEMU_INPUT, QEMU_OUTPUT } from "./_convert_qemu.ts";
import { layoutElfCore, type Rv32Registers } from "./elf_core.ts";

export { ConvertError };

/** One item of a snapshot, in the order a source produces them. */
export type SourceItem =
  | {
    kind: "pages";
    region: number;
    /** Page numbers in the region. */
    pages: Uint32Array;
    /**
     * `pages.length × pageSize` bytes, or null when every page is zero. It may be a view of a
     * buffer the source reuses once the next item is asked for: a consumer copies what it keeps.
     */
    data: Uint8Array | null;
  }
  | { kind: "device"; device: DeviceSection }
  | { kind: "extension"; type: number; payload: Uint8Array };

/** What an input format yields: the machine description, then items; later items win. */
export interface SnapshotSource {
  /** The input's name for messages. */
  readonly name: string;
  readonly description: MachineDescription;
  /** The items, in input order. Throws on malformed input. */
  items(): AsyncIterable<SourceItem>;
  /**
   * After `items()` is exhausted: the content digest of the state the input holds (declared by
   * an `.lsnap` trailer and checked by the reader, or computed from raw images), or null.
   */
  contentDigest(): Promise<Uint8Array | null>;
  /** Releases the input. */
  close(): void;
}

/** Options of {@linkcode convertSnapshot}. */
export interface ConvertOptions {
  /**
   * Input format: "lsnap", "raw", "qemu", or a registered one. Default: "qemu" for a file that
   * starts with a QEMU stream's magic, else "lsnap".
   */
  from?: string;
  /** Output format: "lsnap" (default), "raw", "elf-core", "qemu", or a registered one. */
  to?: string;
  /** Page storage of an `.lsnap` output (default zstd level 1). */
  compress?: CompressionChoice;
  /** Uncompressed bytes per PAGES record of an `.lsnap` output (default: the writer's, 1 MiB; at most 16 MiB). */
  batchBytes?: number;
  /** Compression workers of an `.lsnap` output (default: the writer's; 0 compresses in this thread). */
  workers?: number;
  /** Write pages in address order (each page once). */
  addressOrder?: boolean;
  /** Keep only the last occurrence of each page and device section. */
  dropDuplicates?: boolean;
  /** Write an INDEX record (default true; this is how a missing index is rebuilt). */
  index?: boolean;
  /** `--to raw`: the region to write (may be omitted when the snapshot has one region). */
  region?: string;
  /** `--from raw`: the flat images and where they live. */
  rawRegions?: RawRegionSpec[];
  /**
   * `--from raw`: page size of the regions (default 4096); `--from qemu`: the target page size
   * when the stream does not state it (default 4096).
   */
  pageSize?: number;
  /**
   * `--from qemu`: guest-physical base address of RAM blocks by name (the riscv `virt` board's
   * are known; other blocks are placed above 1 TiB).
   */
  bases?: Record<string, number>;
  /** Show progress on standard error (default: when it is a terminal). */
  progress?: boolean;
  /** Receives warnings (default: collected in the result only). */
  warn?: (message: string) => void;
  /**
   * Read the output back in a worker thread (true) or in this thread (false). Default: in a
   * worker when the input is 32 MiB or more, or of unknown size (a pipe).
   */
  checkInWorker?: boolean;
}

/** What {@linkcode convertSnapshot} reports. */
export interface ConvertResult {
  from: string;
  to: string;
  output: string;
  /** Bytes read from the input(s). */
  bytesIn: number;
  /** Bytes written. */
  bytesOut: number;
  /** Page occurrences written (an `.lsnap` output) or page slots filled (raw, ELF). */
  pages: number;
  /** Device sections written. */
  devices: number;
  /** The content digest of the output (hex) for state-keeping conversions, else null. */
  contentDigest: string | null;
  /** True when the output's content digest was recomputed and equals the input's. */
  digestChecked: boolean;
  warnings: string[];
}

/** Context handed to formats. */
export interface ConvertContext {
  options: ConvertOptions;
  /** Bytes of input, when known. */
  inputSize: number | undefined;
  progress: Progress;
  warn(message: string): void;
}

/** An input format: opens a source. */
export interface InputFormat {
  summary: string;
  open(input: string, ctx: ConvertContext): Promise<SnapshotSource>;
}

/** What an output format reports. */
export interface OutputSummary {
  bytes: number;
  pages: number;
  devices: number;
  contentDigest: Uint8Array | null;
  digestChecked: boolean;
}

/** An output format: consumes a source. */
export interface OutputFormat {
  summary: string;
  /** True when the output holds the whole state (its content digest is checked). */
  keepsState: boolean;
  write(source: SnapshotSource, output: string, ctx: ConvertContext): Promise<OutputSummary>;
}

const ZERO_CHUNK = new Uint8Array(1 << 20);
const ZERO_GROUP = 256;

// ---------------------------------------------------------------------------------------------
// Inputs

function counted(
  readable: ReadableStream<Uint8Array>,
  progress: Progress,
): ReadableStream<Uint8Array> {
  return readable.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        progress.add(chunk.length);
        controller.enqueue(chunk);
      },
    }),
  );
}

async function openLsnap(input: string, ctx: ConvertContext): Promise<SnapshotSource> {
  const handle = await openInput(input);
  // Superseded occurrences are known only at the end; a file is read twice to find them first.
  let last: { pages: SnapshotStreamReader["pageOffsets"]; devices: Map<string, number> } | null =
    null;
  if (ctx.options.dropDuplicates && !ctx.options.addressOrder && handle.path !== undefined) {
    const pre = await openInput(handle.path);
    const scan = new SnapshotStreamReader(pre.readable, { decodePages: false, checkIndex: false });
    try {
      for await (const _ of scan.records()) { /* offsets gathered by the reader */ }
    } finally {
      pre.close();
    }
    last = { pages: scan.pageOffsets, devices: scan.deviceOffsets };
  }
  const reader = new SnapshotStreamReader(counted(handle.readable, ctx.progress));
  const it = reader.records()[Symbol.asyncIterator]();
  let first: IteratorResult<SnapshotRecord>;
  try {
    first = await it.next();
  } catch (e) {
    handle.close();
    throw e;
  }
  if (first.done || first.value.kind !== "header") {
    handle.close();
    throw new ConvertError(`Cannot convert ${handle.name}: no header record`);
  }
  const description = first.value.description;
  return {
    name: handle.name,
    description,
    async *items() {
      for (;;) {
        const n = await it.next();
        if (n.done) break;
        const r = n.value;
        if (r.kind === "pages") {
          if (last === null) {
            yield { kind: "pages", region: r.region, pages: r.pages, data: r.data };
            continue;
          }
          const kept = keepLastOccurrences(r, last.pages!, description);
          if (kept !== null) yield kept;
        } else if (r.kind === "device") {
          const key = `${r.device.id}\u0000${r.device.instance}`;
          if (last === null || last.devices.get(key) === r.offset) {
            yield { kind: "device", device: r.device };
          }
        } else if (r.kind === "extension") {
          yield { kind: "extension", type: r.type, payload: r.payload };
        }
      }
      if (!reader.complete) {
        throw new ConvertError(`Cannot convert ${handle.name}: the input is incomplete`);
      }
    },
    contentDigest: () => Promise.resolve(reader.trailer?.contentDigest ?? null),
    close: () => handle.close(),
  };
}

/** The pages of record `r` that are the last occurrence of their page in the file, or null. */
function keepLastOccurrences(
  r: Extract<SnapshotRecord, { kind: "pages" }>,
  lastOffsets: NonNullable<SnapshotStreamReader["pageOffsets"]>,
  description: MachineDescription,
): SourceItem | null {
  const ps = description.regions[r.region].pageSize;
  const keep: number[] = [];
  const seen = new Set<number>();
  // Within a record the later entry wins, so walk it backwards.
  for (let i = r.pages.length - 1; i >= 0; i--) {
    const p = r.pages[i];
    if (seen.has(p)) continue;
    seen.add(p);
    if (lastOffsets.get(r.region, p) === r.offset) keep.push(i);
  }
  if (keep.length === 0) return null;
  keep.reverse();
  if (keep.length === r.pages.length) {
    return { kind: "pages", region: r.region, pages: r.pages, data: r.data };
  }
  const pages = Uint32Array.from(keep, (i) => r.pages[i]);
  let data: Uint8Array | null = null;
  if (r.data !== null) {
    data = new Uint8Array(keep.length * ps);
    keep.forEach((i, k) => data!.set(r.data!.subarray(i * ps, (i + 1) * ps), k * ps));
  }
  return { kind: "pages", region: r.region, pages, data };
}

/** The part of `Deno.FsFile` that {@linkcode readFully} uses. */
interface Readable {
  read(p: Uint8Array): Promise<number | null>;
  close(): void;
}

function memoryFile(bytes: Uint8Array): Readable {
  let at = 0;
  return {
    read(p) {
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, bytes.length - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
    close() {},
  };
}

async function readFully(file: Readable, buf: Uint8Array): Promise<number> {
  let n = 0;
  while (n < buf.length) {
    const k = await file.read(buf.subarray(n));
    if (k === null) break;
    n += k;
  }
  return n;
}

async function openRaw(_input: string, ctx: ConvertContext): Promise<SnapshotSource> {
  const specs = ctx.options.rawRegions ?? [];
  if (specs.length === 0) {
    throw new ConvertError("Cannot convert from raw: give at least one --region NAME:BASE:FILE");
  }
  const pageSize = ctx.options.pageSize ?? 4096;
  if (specs.filter((s) => s.path === "-").length > 1) {
    throw new ConvertError("Cannot convert from raw: only one --region can read standard input");
  }
  // An image on standard input has no size until it ends: it is read whole first.
  let stdinImage: Uint8Array | undefined;
  if (specs.some((s) => s.path === "-")) stdinImage = await readAll(Deno.stdin.readable);
  const regions: Region[] = [];
  for (const s of specs) {
    let size: number;
    try {
      size = s.path === "-" ? stdinImage!.length : (await Deno.stat(s.path)).size;
    } catch (e) {
      throw new ConvertError(`Cannot open ${s.path}: ${(e as Error).message}`, { cause: e });
    }
    if (size === 0) throw new ConvertError(`Cannot convert from raw: ${s.path} is empty`);
    const padded = Math.ceil(size / pageSize) * pageSize;
    if (padded !== size) {
      ctx.warn(`${s.path}: ${size} bytes is not a multiple of the page size; padded with zeros`);
    }
    regions.push({ name: s.name, base: s.base, size: padded, pageSize });
  }
  const description: MachineDescription = {
    regions,
    creator: "livesnap convert --from raw",
    createdAt: Date.now(),
  };
  let digest: ContentDigestBuilder;
  try {
    digest = new ContentDigestBuilder(description);
    // The writer validates too, but a raw user deserves the message before any file is made.
    validateDescription(description);
  } catch (e) {
    throw new ConvertError(`Cannot convert from raw: ${(e as Error).message}`, { cause: e });
  }
  let done = false;
  return {
    name: specs.map((s) => s.path).join(", "),
    description,
    async *items() {
      const chunkPages = Math.max(1, Math.floor((1 << 20) / pageSize));
      const buf = new Uint8Array(chunkPages * pageSize);
      for (let r = 0; r < specs.length; r++) {
        const file = specs[r].path === "-"
          ? memoryFile(stdinImage!)
          : await Deno.open(specs[r].path, { read: true });
        try {
          for (let first = 0; first * pageSize < regions[r].size; first += chunkPages) {
            const want = Math.min(buf.length, regions[r].size - first * pageSize);
            const got = await readFully(file, buf.subarray(0, want));
            ctx.progress.add(got);
            buf.fill(0, got, want);
            // Zero pages stay absent: absent and zero are the same state (FORMAT.md §10).
            const n = want / pageSize;
            let i = 0;
            while (i < n) {
              if (isZero(buf.subarray(i * pageSize, (i + 1) * pageSize))) {
                i++;
                continue;
              }
              let j = i + 1;
              while (j < n && !isZero(buf.subarray(j * pageSize, (j + 1) * pageSize))) j++;
              // A view, not a copy: every consumer copies or writes a page before it asks for
              // the next item (see SourceItem), and fresh memory costs a page fault per 4 KiB.
              const data = buf.subarray(i * pageSize, j * pageSize);
              const pages = new Uint32Array(j - i);
              for (let k = 0; k < pages.length; k++) {
                pages[k] = first + i + k;
                digest.setPage(r, first + i + k, data.subarray(k * pageSize, (k + 1) * pageSize));
              }
              yield { kind: "pages", region: r, pages, data };
              i = j;
            }
          }
        } finally {
          file.close();
        }
      }
      done = true;
    },
    contentDigest: async () => (done ? await digest.digest() : null),
    close() {},
  };
}

/** Input formats by name. */
export const INPUT_FORMATS: Map<string, InputFormat> = new Map([
  ["lsnap", { summary: "a livesnap .lsnap file (default)", open: openLsnap }],
  ["raw", { summary: "flat memory images, one per --region NAME:BASE:FILE", open: openRaw }],
  ["qemu", QEMU_INPUT],
]);

/** Adds an input format (`--from NAME`). */
export function registerInputFormat(name: string, format: InputFormat): void {
  INPUT_FORMATS.set(name, format);
}

// ---------------------------------------------------------------------------------------------
// Transformations

/** Holds every page and emits the last occurrences in address order, devices after pages. */
function inAddressOrder(source: SnapshotSource): SnapshotSource {
  return {
    ...source,
    name: source.name,
    description: source.description,
    async *items() {
      const store = new PageStore(source.description);
      const devices = new Map<string, DeviceSection>();
      const extensions: SourceItem[] = [];
      for await (const item of source.items()) {
        if (item.kind === "pages") store.put(item.region, item.pages, item.data);
        else if (item.kind === "device") {
          devices.set(`${item.device.id}\u0000${item.device.instance}`, item.device);
        } else extensions.push(item);
      }
      for (const run of store.runs()) {
        const pages = new Uint32Array(run.count);
        for (let i = 0; i < run.count; i++) pages[i] = run.firstPage + i;
        yield { kind: "pages", region: run.region, pages, data: run.data };
      }
      for (const d of devices.values()) yield { kind: "device", device: d };
      yield* extensions;
    },
    contentDigest: () => source.contentDigest(),
    close: () => source.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// Outputs

/** Bytes handed to the read-back worker and not yet consumed, before the writer waits. */
const READ_BACK_WINDOW = 64 << 20;

/**
 * The read-back check: the output's bytes go to a worker thread that reads them with an
 * independent streaming reader and recomputes the content digest from the output's records
 * (see `_read_back_worker.ts`). This checks compression, batching and framing, not only the
 * pages handed to the writer.
 */
class ReadBackCheck {
  private readonly worker: Worker;
  private inFlight = 0;
  private waiters: (() => void)[] = [];
  private failure: Error | null = null;
  private readonly ready: Promise<void>;
  private signalReady: () => void = () => {};
  readonly result: Promise<{ complete: boolean; contentDigest: string | null }>;

  constructor(private readonly name: string) {
    this.worker = new Worker(new URL("./_read_back_worker.ts", import.meta.url).href, {
      type: "module",
    });
    this.ready = new Promise((r) => (this.signalReady = r));
    this.result = new Promise((resolve, reject) => {
      const fail = (e: Error) => {
        this.failure = e;
        this.signalReady();
        this.wakeAll();
        reject(e);
      };
      this.worker.onmessage = (e) => {
        const m = e.data;
        if (m.ready) this.signalReady();
        else if (m.ack !== undefined) {
          this.inFlight -= m.ack;
          if (this.inFlight <= READ_BACK_WINDOW) this.wakeAll();
        } else if (m.done !== undefined) {
          this.wakeAll();
          resolve(m.done);
        } else if (m.error !== undefined) {
          fail(
            new ConvertError(
              `Cannot convert to ${this.name}: the output does not read back: ${m.error.message}`,
            ),
          );
        }
      };
      this.worker.onerror = (e) => {
        e.preventDefault();
        fail(
          new ConvertError(
            `Cannot convert to ${this.name}: the read-back check failed: ${e.message}`,
          ),
        );
      };
    });
    this.result.catch(() => {});
  }

  private wakeAll(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /**
   * Hands `chunk` to the worker (its buffer, when the chunk is a whole ArrayBuffer as every chunk
   * of SnapshotWriter is, else a copy); waits while too much is in flight.
   */
  async push(chunk: Uint8Array): Promise<void> {
    await this.ready;
    if (this.failure !== null) throw this.failure;
    const whole = chunk.buffer instanceof ArrayBuffer && chunk.byteOffset === 0 &&
      chunk.byteLength === chunk.buffer.byteLength;
    const own = whole ? chunk : chunk.slice();
    this.inFlight += own.length;
    this.worker.postMessage({ chunk: own }, [own.buffer as ArrayBuffer]);
    while (this.inFlight > READ_BACK_WINDOW && this.failure === null) {
      await new Promise<void>((r) => this.waiters.push(r));
    }
    if (this.failure !== null) throw this.failure;
  }

  /** Ends the input and returns what the worker found. */
  async finish(): Promise<{ complete: boolean; contentDigest: string | null }> {
    await this.ready;
    this.worker.postMessage({ end: true });
    try {
      return await this.result;
    } finally {
      this.worker.terminate();
    }
  }

  stop(): void {
    this.worker.terminate();
  }
}

/** The same check in this thread: for small outputs, where starting a worker costs more. */
class InlineReadBackCheck {
  private readonly echo = new TransformStream<Uint8Array, Uint8Array>(undefined, {
    highWaterMark: 16,
  });
  private readonly writer = this.echo.writable.getWriter();
  private readonly reader = new SnapshotStreamReader(this.echo.readable);
  private readonly done: Promise<void>;
  constructor(private readonly name: string) {
    this.done = (async () => {
      for await (const _ of this.reader.records()) { /* the reader checks every record */ }
    })();
    this.done.catch(() => {});
  }
  async push(chunk: Uint8Array): Promise<void> {
    await this.writer.ready;
    // SnapshotWriter never touches a chunk again once it has handed it over.
    await this.writer.write(chunk);
  }
  async finish(): Promise<{ complete: boolean; contentDigest: string | null }> {
    await this.writer.close();
    try {
      await this.done;
    } catch (e) {
      throw new ConvertError(
        `Cannot convert to ${this.name}: the output does not read back: ${(e as Error).message}`,
        { cause: e },
      );
    }
    const d = this.reader.contentDigest;
    return { complete: this.reader.complete, contentDigest: d === null ? null : toHex(d) };
  }
  stop(): void {
    this.writer.abort().catch(() => {});
  }
}

/** Inputs at least this large have their output checked in a worker thread. */
const READ_BACK_WORKER_THRESHOLD = 32 << 20;

async function writeLsnap(
  source: SnapshotSource,
  output: string,
  ctx: ConvertContext,
): Promise<OutputSummary> {
  const out = await createOutput(output);
  const inWorker = ctx.options.checkInWorker ??
    (ctx.inputSize === undefined || ctx.inputSize >= READ_BACK_WORKER_THRESHOLD);
  const check = inWorker ? new ReadBackCheck(out.name) : new InlineReadBackCheck(out.name);
  let failed = false;
  const sink = new WritableStream<Uint8Array>({
    async write(chunk) {
      await out.write(chunk);
      await check.push(chunk);
    },
    abort() {
      failed = true;
    },
  });
  const c = ctx.options.compress;
  let writer: SnapshotWriter;
  try {
    writer = await SnapshotWriter.create(sink, source.description, {
      codec: c?.codec,
      level: c?.level,
      batchBytes: ctx.options.batchBytes,
      index: ctx.options.index ?? true,
      workers: ctx.options.workers,
    });
  } catch (e) {
    check.stop();
    await out.abort();
    throw e;
  }
  let pages = 0;
  let devices = 0;
  try {
    const zero = new Uint8Array(ZERO_GROUP * 4096);
    for await (const item of source.items()) {
      if (item.kind === "pages") {
        pages += item.pages.length;
        if (item.data !== null) {
          await writer.writePageList(item.region, item.pages, item.data);
          continue;
        }
        const ps = source.description.regions[item.region].pageSize;
        const group = ps <= 4096 ? ZERO_GROUP : 1;
        const zeros = ps <= 4096 ? zero.subarray(0, group * ps) : new Uint8Array(ps);
        for (let i = 0; i < item.pages.length; i += group) {
          const part = item.pages.subarray(i, i + group);
          await writer.writePageList(item.region, part, zeros.subarray(0, part.length * ps));
        }
      } else if (item.kind === "device") {
        devices++;
        await writer.writeDevice(item.device);
      } else {
        await writer.writeExtensionRecord(item.type, item.payload, false);
      }
    }
    const summary = await writer.close();
    const back = await check.finish();
    const expected = await source.contentDigest();
    const written = back.contentDigest;
    if (written === null || !back.complete) {
      throw new ConvertError(`Cannot convert to ${out.name}: the output could not be read back`);
    }
    if (written !== toHex(summary.contentDigest)) {
      throw new ConvertError(
        `Cannot convert to ${out.name}: the output's records give content digest ${written}, ` +
          `the writer computed ${toHex(summary.contentDigest)}`,
      );
    }
    if (expected !== null && toHex(expected) !== written) {
      throw new ConvertError(
        `Cannot convert to ${out.name}: the output's content digest ${written} differs from ` +
          `the input's ${toHex(expected)}`,
      );
    }
    await out.commit();
    return {
      bytes: summary.bytes,
      pages,
      devices,
      contentDigest: summary.contentDigest,
      digestChecked: expected !== null,
    };
  } catch (e) {
    if (!failed) await writer.abort().catch(() => {});
    check.stop();
    await out.abort();
    throw e;
  }
}

function pickRegion(description: MachineDescription, name: string | undefined): number {
  const names = description.regions.map((r) => r.name);
  if (name === undefined) {
    if (names.length === 1) return 0;
    throw new ConvertError(
      `Cannot convert to raw: name one region with --region (one of: ${names.join(", ")})`,
    );
  }
  const i = names.indexOf(name);
  if (i < 0) {
    throw new ConvertError(
      `Cannot convert to raw: no region '${name}' (regions: ${names.join(", ")})`,
    );
  }
  return i;
}

// Synchronous on purpose: an async write per run costs a round trip through the thread pool that
// the profile showed as idle time; the tool has nothing else to do meanwhile.
function writeAt(file: Deno.FsFile, offset: number, bytes: Uint8Array): Promise<void> {
  file.seekSync(offset, Deno.SeekMode.Start);
  let n = 0;
  while (n < bytes.length) n += file.writeSync(bytes.subarray(n));
  return Promise.resolve();
}

async function writeZeros(out: OutputHandle, count: number): Promise<void> {
  while (count > 0) {
    const n = Math.min(count, ZERO_CHUNK.length);
    await out.write(ZERO_CHUNK.subarray(0, n));
    count -= n;
  }
}

/**
 * Gathers positioned writes into runs of contiguous bytes so that a file gets a few large writes
 * rather than one seek and write per page. A gap of pages known never to have been written may
 * be filled with zeros to join two runs. Writes are applied in the order given.
 */
class CoalescingWriter {
  private readonly buf = new Uint8Array(4 << 20);
  private start = 0;
  private length = 0;
  constructor(private readonly file: Deno.FsFile, private readonly maxGap = 64 << 10) {}

  async write(
    offset: number,
    bytes: Uint8Array,
    gapIsUnwritten: (from: number, to: number) => boolean,
  ): Promise<void> {
    const end = this.start + this.length;
    if (this.length > 0 && offset >= end && offset - end <= this.maxGap) {
      const gap = offset - end;
      if (
        this.length + gap + bytes.length <= this.buf.length &&
        (gap === 0 || gapIsUnwritten(end, offset))
      ) {
        this.buf.fill(0, this.length, this.length + gap);
        this.buf.set(bytes, this.length + gap);
        this.length += gap + bytes.length;
        return;
      }
    }
    await this.flush();
    if (bytes.length >= this.buf.length) {
      await writeAt(this.file, offset, bytes);
      return;
    }
    this.start = offset;
    this.buf.set(bytes, 0);
    this.length = bytes.length;
  }

  async flush(): Promise<void> {
    if (this.length > 0) await writeAt(this.file, this.start, this.buf.subarray(0, this.length));
    this.length = 0;
  }
}

/**
 * Places the pages of `regions` into a seekable file at `offsetOf(region) + page × pageSize`,
 * leaving holes for pages never written; a zero page overwrites only a page written before.
 */
async function placePages(
  source: SnapshotSource,
  file: Deno.FsFile,
  regions: ReadonlySet<number>,
  offsetOf: (region: number) => number,
  onDevice: (d: DeviceSection) => void,
): Promise<number> {
  const written = source.description.regions.map((r) => new Uint8Array(r.size / r.pageSize));
  const out = new CoalescingWriter(file);
  let count = 0;
  for await (const item of source.items()) {
    if (item.kind === "device") onDevice(item.device);
    if (item.kind !== "pages" || !regions.has(item.region)) continue;
    const ps = source.description.regions[item.region].pageSize;
    const base = offsetOf(item.region);
    const marks = written[item.region];
    const unwritten = (from: number, to: number) => {
      // Only gaps inside this region, made of pages no earlier write touched.
      if (from < base || to > base + marks.length * ps) return false;
      for (let p = (from - base) / ps; p < (to - base) / ps; p++) if (marks[p] !== 0) return false;
      return true;
    };
    let i = 0;
    while (i < item.pages.length) {
      let j = i + 1;
      while (j < item.pages.length && item.pages[j] === item.pages[j - 1] + 1) j++;
      const first = item.pages[i];
      if (item.data !== null) {
        await out.write(base + first * ps, item.data.subarray(i * ps, j * ps), unwritten);
        marks.fill(1, first, first + (j - i));
      } else {
        for (let k = i; k < j; k++) {
          const p = item.pages[k];
          if (marks[p] === 1) await out.write(base + p * ps, ZERO_CHUNK.subarray(0, ps), unwritten);
          marks[p] = 0;
        }
      }
      count += j - i;
      i = j;
    }
  }
  await out.flush();
  return count;
}

/** Writes regions in address order from a page store to a sequential output, zero-filling. */
async function streamRegions(
  store: PageStore,
  out: OutputHandle,
  regions: number[],
  startOf: (region: number) => number,
): Promise<number> {
  let pos = startOf(regions[0]);
  let count = 0;
  const runs = store.runs();
  let run = runs.next();
  for (const r of regions) {
    const reg = store.description.regions[r];
    const start = startOf(r);
    await writeZeros(out, start - pos);
    pos = start;
    while (!run.done && run.value.region === r) {
      const at = start + run.value.firstPage * reg.pageSize;
      await writeZeros(out, at - pos);
      const len = run.value.count * reg.pageSize;
      if (run.value.data === null) await writeZeros(out, len);
      else await out.write(run.value.data);
      pos = at + len;
      count += run.value.count;
      run = runs.next();
    }
    await writeZeros(out, start + reg.size - pos);
    pos = start + reg.size;
  }
  return count;
}

async function writeRawImage(
  source: SnapshotSource,
  output: string,
  ctx: ConvertContext,
): Promise<OutputSummary> {
  const region = pickRegion(source.description, ctx.options.region);
  const size = source.description.regions[region].size;
  const out = await createOutput(output);
  try {
    let pages: number;
    if (out.file !== undefined) {
      await out.file.truncate(size);
      pages = await placePages(source, out.file, new Set([region]), () => 0, () => {});
    } else {
      const store = new PageStore(source.description, new Set([region]));
      for await (const item of source.items()) {
        if (item.kind === "pages") store.put(item.region, item.pages, item.data);
      }
      pages = await streamRegions(store, out, [region], () => 0);
    }
    await out.commit();
    return { bytes: size, pages, devices: 0, contentDigest: null, digestChecked: false };
  } catch (e) {
    await out.abort();
    throw e;
  }
}

/** The hart's pc and x registers from its device section, or undefined (with a warning). */
export function hartRegisters(
  devices: DeviceSection[],
  warn: (m: string) => void,
): Rv32Registers | undefined {
  const harts = devices.filter((d) => (d.id === "hart" || d.id === "cpu") && d.encoding === "cbor")
    .sort((a, b) => a.instance - b.instance);
  if (harts.length === 0) {
    warn("the snapshot has no hart section: the core file has no registers");
    return undefined;
  }
  if (harts.length > 1) {
    warn(`the snapshot has ${harts.length} harts: the core file holds hart ${harts[0].instance}`);
  }
  let state: unknown;
  try {
    state = decodeDeviceState(harts[0].state);
  } catch (e) {
    warn(
      `the hart section does not decode (${(e as Error).message}): the core file has no registers`,
    );
    return undefined;
  }
  const s = state as { pc?: unknown; x?: unknown };
  const x = s.x;
  if (
    typeof s.pc !== "number" || !Array.isArray(x) || x.length !== 32 ||
    !x.every((v) => typeof v === "number")
  ) {
    warn("the hart section has no pc and 32 x registers: the core file has no registers");
    return undefined;
  }
  return { pc: s.pc >>> 0, x: (x as number[]).map((v) => v >>> 0) };
}

async function writeElfCore(
  source: SnapshotSource,
  output: string,
  ctx: ConvertContext,
): Promise<OutputSummary> {
  const d = source.description;
  const segments = d.regions.map((r) => ({ address: r.base, size: r.size }));
  const all = d.regions.map((_, i) => i);
  let layout;
  try {
    // Reserve room for the register note, whether or not a hart section turns up.
    const withNote = layoutElfCore(segments, { pc: 0, x: new Array(32).fill(0) });
    layout = { dataOffset: withNote.segments[0].fileOffset, withNote };
  } catch (e) {
    throw new ConvertError(`Cannot convert to elf-core: ${(e as Error).message}`, { cause: e });
  }
  const devices = new Map<string, DeviceSection>();
  const onDevice = (dev: DeviceSection) => devices.set(`${dev.id}\u0000${dev.instance}`, dev);
  const out = await createOutput(output);
  try {
    let pages: number;
    const offsets = layout.withNote.segments.map((s) => s.fileOffset);
    const finalHeader = () => {
      const regs = hartRegisters([...devices.values()], ctx.warn);
      const l = layoutElfCore(segments, regs, { dataOffset: layout.dataOffset });
      return l;
    };
    if (out.file !== undefined) {
      await out.file.truncate(layout.withNote.fileSize);
      pages = await placePages(source, out.file, new Set(all), (r) => offsets[r], onDevice);
      await writeAt(out.file, 0, finalHeader().header);
    } else {
      const store = new PageStore(d);
      for await (const item of source.items()) {
        if (item.kind === "pages") store.put(item.region, item.pages, item.data);
        else if (item.kind === "device") onDevice(item.device);
      }
      const header = finalHeader().header;
      await out.write(header);
      await writeZeros(out, layout.dataOffset - header.length);
      pages = await streamRegions(store, out, all, (r) => offsets[r]);
    }
    await out.commit();
    return {
      bytes: layout.withNote.fileSize,
      pages,
      devices: 0,
      contentDigest: null,
      digestChecked: false,
    };
  } catch (e) {
    await out.abort();
    throw e;
  }
}

/** Output formats by name. */
export const OUTPUT_FORMATS: Map<string, OutputFormat> = new Map([
  ["lsnap", { summary: "a livesnap .lsnap file (default)", keepsState: true, write: writeLsnap }],
  ["raw", {
    summary: "one region as a flat image (--region NAME)",
    keepsState: false,
    write: writeRawImage,
  }],
  [
    "elf-core",
    {
      summary: "an ELF core file for gdb: one PT_LOAD per region, registers in a note",
      keepsState: false,
      write: writeElfCore,
    },
  ],
  ["qemu", QEMU_OUTPUT],
]);

/** Adds an output format (`--to NAME`). */
export function registerOutputFormat(name: string, format: OutputFormat): void {
  OUTPUT_FORMATS.set(name, format);
}

// ---------------------------------------------------------------------------------------------

/**
 * Converts `input` to `output` (paths; `-` is standard input or output).
 *
 * Throws {@linkcode ConvertError} for a failed check or a bad combination of options, an
 * `LsnapError` subclass for a malformed input (naming record and offset); in every failure case
 * the output file is removed.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { convertSnapshot } from "./convert.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeFile(`${dir}/ram.img`, new Uint8Array(65536).fill(7));
 * // A flat memory image becomes a snapshot (its content digest is checked on the way)...
 * const made = await convertSnapshot("", `${dir}/vm.lsnap`, {
 *   from: "raw",
 *   rawRegions: [{ name: "ram", base: 0x8000_0000, path: `${dir}/ram.img` }],
 * });
 * assert(made.digestChecked);
 * // ...is recompressed in address order, keeping its content digest...
 * const small = await convertSnapshot(`${dir}/vm.lsnap`, `${dir}/small.lsnap`, {
 *   compress: { codec: "zstd", level: 9 },
 *   addressOrder: true,
 * });
 * assert(small.contentDigest === made.contentDigest);
 * // ...and becomes a flat image again, or an ELF core for gdb.
 * await convertSnapshot(`${dir}/small.lsnap`, `${dir}/back.img`, { to: "raw", region: "ram" });
 * await convertSnapshot(`${dir}/small.lsnap`, `${dir}/vm.core`, { to: "elf-core" });
 * assert((await Deno.readFile(`${dir}/back.img`))[100] === 7);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function convertSnapshot(
  input: string,
  output: string,
  options: ConvertOptions = {},
): Promise<ConvertResult> {
  const from = options.from ??
    (input !== "-" && input !== "" && await isQemuInput(input) ? "qemu" : "lsnap");
  const to = options.to ?? "lsnap";
  const inFormat = INPUT_FORMATS.get(from);
  const outFormat = OUTPUT_FORMATS.get(to);
  if (inFormat === undefined) {
    throw new ConvertError(
      `Cannot convert: unknown input format '${from}' (known: ${
        [...INPUT_FORMATS.keys()].join(", ")
      })`,
    );
  }
  if (outFormat === undefined) {
    throw new ConvertError(
      `Cannot convert: unknown output format '${to}' (known: ${
        [...OUTPUT_FORMATS.keys()].join(", ")
      })`,
    );
  }
  const batch = options.batchBytes;
  if (batch !== undefined && (batch < 4096 || batch > 16 << 20)) {
    throw new ConvertError(`Cannot convert: batch size ${batch} is not between 4 KiB and 16 MiB`);
  }
  if (output !== "-" && input !== "-" && from !== "raw") {
    const [a, b] = await Promise.all([
      Deno.realPath(input).catch(() => input),
      Deno.realPath(output).catch(() => output),
    ]);
    if (a === b) throw new ConvertError(`Cannot convert: the output ${output} is the input`);
  }
  const warnings: string[] = [];
  let total: number | undefined;
  if (from === "raw") {
    total = 0;
    for (const s of options.rawRegions ?? []) {
      total += (await Deno.stat(s.path).catch(() => ({ size: 0 }))).size;
    }
  } else if (input !== "-") {
    total = (await Deno.stat(input).catch(() => undefined))?.size;
  }
  const progress = createProgress({ label: "convert", total, enabled: options.progress });
  const ctx: ConvertContext = {
    options,
    inputSize: total,
    progress,
    warn(message) {
      warnings.push(message);
      options.warn?.(message);
    },
  };
  let source = await inFormat.open(input, ctx);
  try {
    // Duplicates are dropped in file order only from an .lsnap file (read twice); from a pipe or
    // another format the pages are gathered and leave in address order.
    const twoPass = from === "lsnap" && input !== "-";
    if (options.addressOrder || (options.dropDuplicates && !twoPass)) {
      source = inAddressOrder(source);
    }
    const summary = await outFormat.write(source, output, ctx);
    return {
      from,
      to,
      output,
      bytesIn: progress.bytes,
      bytesOut: summary.bytes,
      pages: summary.pages,
      devices: summary.devices,
      contentDigest: summary.contentDigest === null ? null : toHex(summary.contentDigest),
      digestChecked: summary.digestChecked,
      warnings,
    };
  } finally {
    progress.done();
    source.close();
  }
}
