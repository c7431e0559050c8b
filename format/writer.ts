/**
 * The snapshot writer: pages in any order and any batch size, device sections whenever handed
 * them, written to any `WritableStream` without seeking (FORMAT.md §12).
 *
 * @module
 */
import { isZero } from "./_bytes.ts";
import { type EncodedBatch, encodePageBatch, type PageBatch } from "./_page_batch.ts";
import { AtomicFile, type AtomicFs } from "./atomic_file.ts";
import { createBlake3, type StreamHasher } from "./checksum.ts";
import {
  FLAG_CRITICAL,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  MAX_CHAIN_DEPTH,
  MAX_RECORD_PAYLOAD,
  RecordType,
} from "./constants.ts";
import { ContentDigestBuilder, type PageHashTable } from "./content_digest.ts";
import { type DeviceSectionInput, encodeDeviceSection, normalizeDevice } from "./device_section.ts";
import { encodeFooter } from "./footer.ts";
import {
  encodeHeader,
  encodePrologue,
  type MachineDescription,
  validateDescription,
} from "./header.ts";
import { encodeIndex, indexBodySize } from "./index_record.ts";
import { encodePageRecord } from "./page_record.ts";
import { encodeParentRecord, type ParentLink } from "./parent_record.ts";
import { encodeRecord, isKnownType } from "./record.ts";
import { encodeTrailer } from "./trailer.ts";

/** Options of {@linkcode SnapshotWriter}. */
export interface WriterOptions {
  /** How non-zero pages are stored: "zstd" (default) or "raw". */
  codec?: "zstd" | "raw";
  /** zstd level, default 1. */
  level?: number;
  /** Uncompressed bytes gathered before a PAGES record is written, default 1 MiB (at most 16). */
  batchBytes?: number;
  /** Write an INDEX record (default true). Omitted anyway when it would exceed the record cap. */
  index?: boolean;
  /**
   * Compression workers (default: one fewer than the CPUs, at most 4; 0 compresses on the calling
   * thread). Batches are hashed and compressed in the workers; records still reach the stream in
   * call order. Workers start once a snapshot has more than two batches.
   */
  workers?: number;
  /**
   * Also encode batches on the calling thread whenever every worker is busy (default true): both
   * cores work on a 2-core machine. False keeps the calling thread free for other work (batches
   * then wait for a worker). The file's bytes are the same either way.
   */
  callerEncodes?: boolean;
  /**
   * Makes this file a diff on `parent` (FORMAT.md §14): a PARENT record follows the HEADER, the
   * pages written are the changes since the parent (an all-zero page handed to `writePages` is
   * written as an explicit zero record, as is every page of {@linkcode SnapshotWriter.writeZeroPages}),
   * and the content digest declared is that of the whole state, computed from
   * `parent.pageHashes` and the pages written. Write every device section: a diff's devices are
   * the whole device state (the parent's do not carry over).
   */
  parent?: DiffParent;
  /**
   * Keep the page hashes of the state written and return them as `WriteSummary.pageHashes`
   * (default false), for the next diff's {@linkcode DiffParent.pageHashes}.
   */
  keepPageHashes?: boolean;
}

/**
 * The parent of a diff, as its writer needs it (FORMAT.md §14.1): what goes into the PARENT
 * record, and the parent's page hashes. {@linkcode diffParentOf} makes one from the summary of the
 * parent's own write; `readDiffParent` (chain.ts) from a file or chain on disk.
 */
export interface DiffParent {
  /** The parent's content digest: the whole state it stands for (its trailer's). */
  contentDigest: Uint8Array;
  /** The parent's file digest (its trailer's). */
  fileDigest: Uint8Array;
  /** The parent's file name (a directory part is dropped: readers look in the diff's directory). */
  name: string;
  /** The parent's depth: 0 for a full snapshot, n for a diff n links from its full snapshot. */
  depth: number;
  /** The file digest of the chain's full snapshot; for a full parent, its own file digest. */
  rootFileDigest: Uint8Array;
  /** The page hashes of the parent's whole state (not changed by the writer). */
  pageHashes: PageHashTable;
}

/** Options of {@linkcode SnapshotWriter.createFile}. */
export interface FileWriterOptions extends WriterOptions {
  /** The file-system operations of the temporary-file protocol (for tests; default the real one). */
  fs?: AtomicFs;
}

/** What {@linkcode SnapshotWriter.close} reports. */
export interface WriteSummary {
  /** Bytes written, footer included. */
  bytes: number;
  /** Records written, trailer included. */
  records: number;
  /** The content digest (FORMAT.md §10). */
  contentDigest: Uint8Array;
  /** The file digest (FORMAT.md §9). */
  fileDigest: Uint8Array;
  /** Batches of non-zero pages encoded (hashed, compressed, framed) by workers and by the caller. */
  batches: { workers: number; caller: number };
  /** Chain depth: 0 for a full snapshot, the PARENT record's depth for a diff. */
  depth: number;
  /** The file digest of the chain's full snapshot (this file's own for a full snapshot). */
  rootFileDigest: Uint8Array;
  /** With `keepPageHashes`: the page hashes of the whole state written (the writer's; yours now). */
  pageHashes?: PageHashTable;
}

/**
 * The {@linkcode DiffParent} of a diff on the file whose write returned `summary` (written with
 * `keepPageHashes`) at `path`.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { diffParentOf, SnapshotWriter } from "./writer.ts";
 * const dir = await Deno.makeTempDir();
 * const description = {
 *   regions: [{ name: "ram", base: 0x8000_0000, size: 1 << 20, pageSize: 4096 }],
 *   creator: "doc", createdAt: 0,
 * };
 * const full = await SnapshotWriter.createFile(`${dir}/s-0.lsnap`, description, { keepPageHashes: true });
 * await full.writePages(0, 0, new Uint8Array(8192).fill(1));
 * const s0 = await full.close();
 * const diff = await SnapshotWriter.createFile(`${dir}/s-1.lsnap`, description, {
 *   parent: diffParentOf(s0, `${dir}/s-0.lsnap`),
 * });
 * await diff.writePages(0, 1, new Uint8Array(4096)); // page 1 became zero: an explicit zero record
 * const s1 = await diff.close();
 * assert(s1.depth === 1 && s1.rootFileDigest.join() === s0.fileDigest.join());
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function diffParentOf(summary: WriteSummary, path: string): DiffParent {
  if (summary.pageHashes === undefined) {
    throw new Error(
      `Cannot make a diff on '${path}': its write did not keep its page hashes (keepPageHashes)`,
    );
  }
  return {
    contentDigest: summary.contentDigest,
    fileDigest: summary.fileDigest,
    name: path,
    depth: summary.depth,
    rootFileDigest: summary.rootFileDigest,
    pageHashes: summary.pageHashes,
  };
}

/** The file name part of a path (after the last '/' or '\\'). */
export function baseName(path: string): string {
  const i = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return path.slice(i + 1);
}

const ZERO_BATCH = 16384;
const IN_NONE = 0;
const IN_ZERO = 1;
const IN_DATA = 2;
/** Records encoded or being encoded ahead of the stream (each holds up to a batch of memory). */
const MAX_IN_FLIGHT = 4;

/** What a writer is made of: the stream and the hooks of where it writes. */
interface WriterParts {
  out: WritableStreamDefaultWriter<Uint8Array>;
  description: MachineDescription;
  fileHasher: StreamHasher;
  options: WriterOptions;
  encoder: BatchEncoder;
  /** Called once the stream is closed (true) or aborted (false). */
  onClose: (ok: boolean) => Promise<void>;
  /** Called between the trailer and the footer (a file writer fsyncs there). */
  beforeFooter: () => Promise<void>;
  /** The destination named in error messages ("" for a stream). */
  target: string;
  /** The PARENT record's fields, for a diff. */
  link: ParentLink | null;
}

/** A record on its way to the stream, with what writing it changes. */
interface Queued {
  record: Uint8Array;
  /** For PAGES records: region and pages, and their hashes (null for a zero record). */
  region?: number;
  pages?: Uint32Array;
  hashes?: Uint8Array | null;
  /** For DEVICE records: the key "id\0instance". */
  deviceKey?: string;
}

/** Batches encoded before the first worker is started: small snapshots never pay for one. */
const SPAWN_AFTER_BATCHES = 2;
/** Batches a worker holds at once; past that the calling thread encodes the next one itself. */
const PER_WORKER = 2;

interface WorkerSlot {
  worker: Worker;
  ready: boolean;
  whenReady: Promise<void>;
  inFlight: number;
}

/**
 * Encodes page batches (hash, compress, frame) in worker threads and on the calling thread.
 *
 * Workers start only once a snapshot has more than {@linkcode SPAWN_AFTER_BATCHES} batches (a
 * worker costs a thread's start-up and module loading, about 0.1-0.2 s of CPU). A batch goes to
 * the ready worker holding the fewest. With `callerEncodes`, when every worker holds
 * {@linkcode PER_WORKER} batches (or none is ready yet) the calling thread encodes the batch at
 * once, so a core never idles while the caller waits for a worker; without it the batch waits
 * for a worker. Who encodes a batch never changes its bytes: the same function runs everywhere.
 */
class BatchEncoder {
  private readonly slots: WorkerSlot[] = [];
  private readonly waiting = new Map<
    number,
    {
      slot: WorkerSlot;
      resolve: (r: EncodedBatch & { raw: Uint8Array }) => void;
      reject: (e: Error) => void;
    }
  >();
  private next = 0;
  private batches = 0;
  private closed = false;
  /** Batches encoded by workers and by the calling thread. */
  readonly counts = { workers: 0, caller: 0 };
  constructor(private readonly count: number, private readonly callerEncodes: boolean) {}

  private spawn(): void {
    for (let i = 0; i < this.count; i++) {
      const w = new Worker(new URL("./_compress_worker.ts", import.meta.url).href, {
        type: "module",
      });
      let markReady = () => {};
      const slot: WorkerSlot = {
        worker: w,
        ready: false,
        whenReady: new Promise((resolve) => markReady = resolve),
        inFlight: 0,
      };
      w.onmessage = (e) => {
        const m = e.data;
        if (m.ready === true) {
          slot.ready = true;
          markReady();
          return;
        }
        const p = this.waiting.get(m.id);
        if (p === undefined) return;
        this.waiting.delete(m.id);
        slot.inFlight--;
        if (m.error !== undefined) p.reject(new Error(`Cannot compress pages: ${m.error}`));
        else p.resolve({ record: m.record, hashes: m.hashes, raw: m.raw });
      };
      w.onerror = (e) => {
        e.preventDefault();
        slot.ready = false;
        const error = new Error(`Cannot compress pages: ${e.message}`);
        for (const [id, p] of this.waiting) {
          if (p.slot !== slot) continue;
          this.waiting.delete(id);
          p.reject(error);
        }
      };
      this.slots.push(slot);
    }
  }

  encode(batch: PageBatch): Promise<EncodedBatch & { raw: Uint8Array }> {
    if (this.count > 0 && !this.closed && ++this.batches > SPAWN_AFTER_BATCHES) {
      if (this.slots.length === 0) this.spawn();
      let best: WorkerSlot | undefined;
      for (const s of this.slots) {
        if (!this.callerEncodes || (s.ready && s.inFlight < PER_WORKER)) {
          if (best === undefined || s.inFlight < best.inFlight) best = s;
        }
      }
      if (best !== undefined) return this.post(best, batch);
    }
    this.counts.caller++;
    try {
      return Promise.resolve({ ...encodePageBatch(batch), raw: batch.raw });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private post(slot: WorkerSlot, batch: PageBatch): Promise<EncodedBatch & { raw: Uint8Array }> {
    const id = this.next++;
    slot.inFlight++;
    this.counts.workers++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { slot, resolve, reject });
      // A worker gets no message before it has loaded: one sent earlier could be lost.
      const send = () => slot.worker.postMessage({ id, batch }, [batch.raw.buffer as ArrayBuffer]);
      if (slot.ready) send();
      else slot.whenReady.then(send);
    });
  }

  close(): void {
    this.closed = true;
    for (const s of this.slots) s.worker.terminate();
    this.slots.length = 0;
  }
}

/**
 * Writes one `.lsnap` file to a stream.
 *
 * Pages may come in any order, in any batch size, and more than once (the last occurrence wins).
 * Every `write*` method copies what it is given before its promise resolves, so the caller may
 * reuse or free the source buffer (for example a slot of a SharedArrayBuffer) as soon as the
 * promise resolves. Calls must not overlap: await each before the next. Records reach the stream
 * in call order; the stream is never seeked. Every chunk handed to the stream is its own
 * ArrayBuffer, which the writer never touches again: the stream may keep it or transfer it.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { SnapshotWriter } from "./writer.ts";
 * const chunks: Uint8Array[] = [];
 * const sink = new WritableStream<Uint8Array>({ write(c) { chunks.push(c); } });
 * const w = await SnapshotWriter.create(sink, {
 *   regions: [{ name: "ram", base: 0x8000_0000, size: 65536, pageSize: 4096 }],
 *   creator: "doc", createdAt: 0,
 * });
 * await w.writePages(0, 3, new Uint8Array(4096).fill(1));
 * await w.writeDevice({ id: "uart", instance: 0, version: 1, state: new Uint8Array([0xa0]) });
 * const summary = await w.close();
 * assert(summary.bytes === chunks.reduce((n, c) => n + c.length, 0));
 * ```
 */
export class SnapshotWriter {
  private offset = 0;
  private records = 0;
  private pageRecords = 0;
  private pageOccurrences = 0;
  private deviceRecords = 0;
  private closed = false;
  private hashing = true;
  private readonly codec: "zstd" | "raw";
  private readonly level: number;
  private readonly batchBytes: number;
  private readonly wantIndex: boolean;
  private readonly keepPageHashes: boolean;
  private readonly link: ParentLink | null;
  private readonly digest: ContentDigestBuilder;
  private readonly pageOffsets: (Float64Array | undefined)[];
  private readonly pending: (Uint8Array | undefined)[];
  private readonly deviceOffsets = new Map<string, number>();
  private readonly queue: Promise<Queued>[] = [];
  private readonly freeBuffers: ArrayBuffer[] = [];
  private dataRegion = -1;
  private dataBuf = new Uint8Array(0);
  private dataPages = new Uint32Array(0);
  private dataCount = 0;
  private zeroRegion = -1;
  private readonly zeroPages = new Uint32Array(ZERO_BATCH);
  private zeroCount = 0;

  private readonly out: WritableStreamDefaultWriter<Uint8Array>;
  private readonly description: MachineDescription;
  private readonly fileHasher: StreamHasher;
  private readonly onClose: (ok: boolean) => Promise<void>;
  private readonly encoder: BatchEncoder;
  private readonly beforeFooter: () => Promise<void>;
  private readonly target: string;

  private constructor(parts: WriterParts) {
    ({
      out: this.out,
      description: this.description,
      fileHasher: this.fileHasher,
      onClose: this.onClose,
      encoder: this.encoder,
      beforeFooter: this.beforeFooter,
      target: this.target,
    } = parts);
    const { options, description } = parts;
    this.codec = options.codec ?? "zstd";
    this.level = options.level ?? 1;
    this.batchBytes = Math.max(4096, Math.min(options.batchBytes ?? 1024 * 1024, 16 * 1024 * 1024));
    this.wantIndex = options.index ?? true;
    this.digest = new ContentDigestBuilder(description, options.parent?.pageHashes);
    this.keepPageHashes = options.keepPageHashes ?? false;
    this.link = parts.link;
    this.pageOffsets = description.regions.map(() => undefined);
    this.pending = description.regions.map(() => undefined);
  }

  /** Starts a snapshot on a stream: writes the prologue and the HEADER record. */
  static async create(
    stream: WritableStream<Uint8Array>,
    description: MachineDescription,
    options: WriterOptions = {},
  ): Promise<SnapshotWriter> {
    return await SnapshotWriter.start(stream.getWriter(), description, options, {
      onClose: () => Promise.resolve(),
      beforeFooter: () => Promise.resolve(),
      target: "",
    });
  }

  /**
   * Starts a snapshot file at `path`, written through an {@linkcode AtomicFile}: the bytes go to
   * `<path>.tmp-<host>-<pid>-<random>` in the same directory, which is fsync'd and renamed to
   * `path` only once the footer is written (then the directory is fsync'd too);
   * {@linkcode abort} or any write error removes it. Temporaries of `path` that writers killed on
   * this host left behind are removed first (FORMAT.md §9).
   */
  static async createFile(
    path: string,
    description: MachineDescription,
    options: FileWriterOptions = {},
  ): Promise<SnapshotWriter> {
    validateDescription(description);
    const file = await AtomicFile.create(path, { fs: options.fs });
    const sink = new WritableStream<Uint8Array>({ write: (chunk) => file.write(chunk) });
    const finish = (ok: boolean) => ok ? file.commit() : file.abort();
    try {
      // Everything but the footer is made durable first, so that a writer killed before its
      // rename leaves a complete temporary only for the time of one 32-byte write and fsync.
      return await SnapshotWriter.start(sink.getWriter(), description, options, {
        onClose: finish,
        beforeFooter: () => file.sync(),
        target: path,
      });
    } catch (e) {
      await file.abort();
      throw e;
    }
  }

  /** Checks the description and worker count, writes the prologue and HEADER (FORMAT.md §2, §5). */
  private static async start(
    out: WritableStreamDefaultWriter<Uint8Array>,
    description: MachineDescription,
    options: WriterOptions,
    hooks: Pick<WriterParts, "onClose" | "beforeFooter" | "target">,
  ): Promise<SnapshotWriter> {
    validateDescription(description);
    const link = options.parent === undefined ? null : parentLink(options.parent, description);
    const hasher = await createBlake3();
    hasher.init();
    const cpus = navigator.hardwareConcurrency ?? 1;
    const workers = options.workers ?? Math.min(4, Math.max(0, cpus - 1));
    if (!Number.isInteger(workers) || workers < 0 || workers > 64) {
      throw new Error(`Cannot start writer: workers ${workers} is not an integer in 0..64`);
    }
    const w = new SnapshotWriter({
      out,
      description,
      fileHasher: hasher,
      options,
      encoder: new BatchEncoder(workers, options.callerEncodes ?? true),
      link,
      ...hooks,
    });
    try {
      await w.emit(encodePrologue(FORMAT_MAJOR, FORMAT_MINOR), false);
      await w.emit(encodeRecord(RecordType.HEADER, FLAG_CRITICAL, encodeHeader(description)));
      if (link !== null) {
        // Critical: a reader that does not know diffs must refuse one (FORMAT.md §14).
        await w.emit(encodeRecord(RecordType.PARENT, FLAG_CRITICAL, encodeParentRecord(link)));
      }
    } catch (e) {
      w.encoder.close();
      throw e;
    }
    return w;
  }

  /** Writes bytes in file order, feeding the file digest; a failed write aborts the writer. */
  private async emit(bytes: Uint8Array, isRecord = true): Promise<void> {
    if (this.hashing) this.fileHasher.update(bytes);
    this.offset += bytes.length;
    if (isRecord) this.records++;
    try {
      await this.out.write(bytes);
    } catch (e) {
      await this.fail();
      throw this.writeError(e);
    }
  }

  /** A write failure as "Cannot write snapshot to 'path': …", the I/O error as its cause. */
  private writeError(e: unknown): Error {
    const to = this.target === "" ? "" : ` to '${this.target}'`;
    return new Error(`Cannot write snapshot${to}: ${(e as Error).message}`, { cause: e });
  }

  /** Queues a record; waits for the oldest to be written while too many are in flight. */
  private async enqueue(q: Promise<Queued>): Promise<void> {
    // Keep a rejection from surfacing as unhandled before its turn comes.
    q.catch(() => {});
    this.queue.push(q);
    while (this.queue.length > MAX_IN_FLIGHT) await this.drainOne();
  }

  /** Writes the oldest queued record (awaiting its compression) and notes its offsets. */
  private async drainOne(): Promise<void> {
    let q: Queued;
    try {
      q = await this.queue.shift()!;
    } catch (e) {
      await this.fail();
      throw e;
    }
    const at = this.offset;
    await this.emit(q.record);
    if (q.pages !== undefined) this.notePages(q.region!, q.pages, q.hashes!, at);
    if (q.deviceKey !== undefined) this.deviceOffsets.set(q.deviceKey, at);
  }

  /** Writes every queued record, in queue order. */
  private async drainAll(): Promise<void> {
    while (this.queue.length > 0) await this.drainOne();
  }

  /** Closes the writer for good and aborts the output (a file writer removes its temporary). */
  private async fail(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.encoder.close();
    await this.out.abort().catch(() => {});
    await this.onClose(false);
  }

  /** Throws once the writer was closed or aborted. */
  private checkOpen(): void {
    if (this.closed) throw new Error("Cannot write snapshot: the writer is closed");
  }

  /** Throws unless the writer is open and `region` exists; returns the region's page count. */
  private checkPages(region: number, what: string): number {
    this.checkOpen();
    const r = this.description.regions[region];
    if (r === undefined) {
      throw new Error(`Cannot write pages: region index ${region} does not exist (${what})`);
    }
    return r.size / r.pageSize;
  }

  /**
   * Writes `data.length / pageSize` consecutive pages of region `region` starting at `firstPage`.
   * Resolves once the bytes have been copied (the caller may then reuse `data`).
   */
  async writePages(region: number, firstPage: number, data: Uint8Array): Promise<void> {
    const total = this.checkPages(region, "writePages");
    const ps = this.description.regions[region].pageSize;
    if (data.length % ps !== 0) {
      throw new Error(
        `Cannot write pages: ${data.length} bytes is not a multiple of the page size ${ps}`,
      );
    }
    const n = data.length / ps;
    if (!Number.isInteger(firstPage) || firstPage < 0 || firstPage + n > total) {
      throw new Error(
        `Cannot write pages: pages ${firstPage}..${firstPage + n - 1} are outside region '${
          this.description.regions[region].name
        }' (${total} pages)`,
      );
    }
    for (let i = 0; i < n; i++) {
      const bytes = data.subarray(i * ps, (i + 1) * ps);
      if (!this.addPageFast(region, firstPage + i, bytes)) {
        await this.addPage(region, firstPage + i, bytes);
      }
    }
  }

  /**
   * Writes pages of region `region` named by `pages`; page `pages[i]` is
   * `data[i × pageSize ..]`. Resolves once the bytes have been copied.
   */
  async writePageList(region: number, pages: ArrayLike<number>, data: Uint8Array): Promise<void> {
    const total = this.checkPages(region, "writePageList");
    const ps = this.description.regions[region].pageSize;
    if (data.length !== pages.length * ps) {
      throw new Error(
        `Cannot write pages: ${data.length} bytes for ${pages.length} pages of ${ps} bytes`,
      );
    }
    for (let i = 0; i < pages.length; i++) {
      const p = pages[i];
      if (!Number.isInteger(p) || p < 0 || p >= total) {
        throw new Error(
          `Cannot write pages: page ${p} is outside region '${
            this.description.regions[region].name
          }' (${total} pages)`,
        );
      }
    }
    for (let i = 0; i < pages.length; i++) {
      const bytes = data.subarray(i * ps, (i + 1) * ps);
      if (!this.addPageFast(region, pages[i], bytes)) await this.addPage(region, pages[i], bytes);
    }
  }

  /**
   * Writes pages of region `region` named by `pages` as zero pages (FORMAT.md §6.2, encoding
   * zero), without page data. In a diff this is how a page that became zero since the parent is
   * written (FORMAT.md §14.2); in a full snapshot it is the same state as leaving the page out.
   */
  async writeZeroPages(region: number, pages: ArrayLike<number>): Promise<void> {
    const total = this.checkPages(region, "writeZeroPages");
    const ps = this.description.regions[region].pageSize;
    for (let i = 0; i < pages.length; i++) {
      const p = pages[i];
      if (!Number.isInteger(p) || p < 0 || p >= total) {
        throw new Error(
          `Cannot write pages: page ${p} is outside region '${
            this.description.regions[region].name
          }' (${total} pages)`,
        );
      }
    }
    const zero = new Uint8Array(ps);
    for (let i = 0; i < pages.length; i++) {
      if (!this.addPageFast(region, pages[i], zero)) await this.addPage(region, pages[i], zero);
    }
  }

  /** Per page of `region`, which unflushed batch holds it (IN_NONE, IN_ZERO, IN_DATA). */
  private pendingMap(region: number): Uint8Array {
    let m = this.pending[region];
    if (m === undefined) {
      const r = this.description.regions[region];
      m = new Uint8Array(r.size / r.pageSize);
      this.pending[region] = m;
    }
    return m;
  }

  /** Adds a page without awaiting when no record has to be flushed; false means "use addPage". */
  private addPageFast(region: number, page: number, bytes: Uint8Array): boolean {
    const pending = this.pending[region];
    if (pending === undefined) return false;
    if (isZero(bytes)) {
      if (pending[page] === IN_DATA || this.zeroCount + 1 >= ZERO_BATCH) return false;
      if (this.zeroCount > 0 && this.zeroRegion !== region) return false;
      this.zeroRegion = region;
      this.zeroPages[this.zeroCount++] = page;
      pending[page] = IN_ZERO;
    } else {
      if (this.dataRegion !== region || this.dataBuf.length === 0) return false;
      if (pending[page] === IN_ZERO || this.dataCount + 1 >= this.dataPages.length) return false;
      this.dataBuf.set(bytes, this.dataCount * bytes.length);
      this.dataPages[this.dataCount++] = page;
      pending[page] = IN_DATA;
    }
    this.pageOccurrences++;
    return true;
  }

  /**
   * Adds a page to the zero or data batch, first flushing a batch holding an older occurrence of
   * it, so that the later occurrence comes later in the file (FORMAT.md §4).
   */
  private async addPage(region: number, page: number, bytes: Uint8Array): Promise<void> {
    const pending = this.pendingMap(region);
    this.pageOccurrences++;
    if (isZero(bytes)) {
      if (this.zeroRegion !== region && this.zeroCount > 0) await this.flushZero();
      // A page pending as data must reach the file before its newer zero occurrence.
      if (pending[page] === IN_DATA) await this.flushData();
      this.zeroRegion = region;
      this.zeroPages[this.zeroCount++] = page;
      pending[page] = IN_ZERO;
      if (this.zeroCount === ZERO_BATCH) await this.flushZero();
      return;
    }
    if (this.dataRegion !== region && this.dataCount > 0) await this.flushData();
    if (pending[page] === IN_ZERO) await this.flushZero();
    if (this.dataRegion !== region || this.dataBuf.length === 0) this.startBatch(region);
    this.dataBuf.set(bytes, this.dataCount * bytes.length);
    this.dataPages[this.dataCount++] = page;
    pending[page] = IN_DATA;
    if (this.dataCount === this.dataPages.length) await this.flushData();
  }

  /** A fresh data batch for `region`: as many pages as `batchBytes` holds, at least one. */
  private startBatch(region: number): void {
    const ps = this.description.regions[region].pageSize;
    const cap = Math.max(1, Math.floor(this.batchBytes / ps));
    let buf = this.freeBuffers.pop();
    if (buf === undefined || buf.byteLength !== cap * ps) buf = new ArrayBuffer(cap * ps);
    this.dataBuf = new Uint8Array(buf);
    this.dataPages = new Uint32Array(cap);
    this.dataRegion = region;
  }

  /** Called as a PAGES record reaches the stream, in file order. */
  private notePages(
    region: number,
    pages: Uint32Array,
    hashes: Uint8Array | null,
    at: number,
  ): void {
    let offsets = this.pageOffsets[region];
    if (offsets === undefined && this.wantIndex) {
      const r = this.description.regions[region];
      offsets = new Float64Array(r.size / r.pageSize);
      this.pageOffsets[region] = offsets;
    }
    for (let i = 0; i < pages.length; i++) {
      // Stored +1 so that 0 means "absent".
      if (offsets !== undefined) offsets[pages[i]] = at + 1;
      if (hashes === null) this.digest.clearPage(region, pages[i]);
      else this.digest.setPageHash(region, pages[i], hashes, i * 16);
    }
    this.pageRecords++;
  }

  /** Marks `pages` as in no unflushed batch. */
  private clearPending(region: number, pages: Uint32Array): void {
    const pending = this.pending[region]!;
    for (let i = 0; i < pages.length; i++) pending[pages[i]] = IN_NONE;
  }

  /** Queues the zero batch as one zero-encoded PAGES record (FORMAT.md §6.2). */
  private async flushZero(): Promise<void> {
    if (this.zeroCount === 0) return;
    const pages = this.zeroPages.slice(0, this.zeroCount);
    this.zeroCount = 0;
    this.clearPending(this.zeroRegion, pages);
    const record = encodeRecord(
      RecordType.PAGES,
      FLAG_CRITICAL,
      encodePageRecord(this.zeroRegion, "zero", pages, new Uint8Array(0)),
    );
    await this.enqueue(Promise.resolve({ record, region: this.zeroRegion, pages, hashes: null }));
  }

  /** Queues the data batch as one PAGES record, compressed on a worker or on this thread. */
  private async flushData(): Promise<void> {
    if (this.dataCount === 0) return;
    const region = this.dataRegion;
    const pages = this.dataPages.slice(0, this.dataCount);
    const ps = this.description.regions[region].pageSize;
    const raw = this.dataBuf.subarray(0, this.dataCount * ps);
    this.dataCount = 0;
    this.dataBuf = new Uint8Array(0);
    this.clearPending(region, pages);
    const encoded = this.encoder.encode({
      region,
      pages,
      raw,
      pageSize: ps,
      codec: this.codec,
      level: this.level,
    });
    await this.enqueue(
      encoded.then((e) => {
        // The record holds its own copy: the batch buffer can take the next batch at once.
        this.freeBuffers.push(e.raw.buffer as ArrayBuffer);
        return { record: e.record, region, pages, hashes: e.hashes };
      }),
    );
  }

  /**
   * Writes the pages gathered so far as records now, instead of when a batch fills, and waits
   * until every queued record is in the stream. For callers that may release something only once
   * its page is in the file (a live snapshot's buffer slot).
   */
  async flush(): Promise<void> {
    this.checkOpen();
    await this.flushZero();
    await this.flushData();
    await this.drainAll();
  }

  /** Writes a device section (FORMAT.md §7) after the pages written so far; the last one for an
   * (id, instance) wins. */
  async writeDevice(section: DeviceSectionInput): Promise<void> {
    this.checkOpen();
    const d = normalizeDevice(section);
    const copy = { ...d, state: d.state.slice(), description: d.description.slice() };
    this.digest.setDevice(copy);
    this.deviceRecords++;
    const record = encodeRecord(RecordType.DEVICE, FLAG_CRITICAL, encodeDeviceSection(copy));
    await this.enqueue(Promise.resolve({ record, deviceKey: `${d.id}\u0000${d.instance}` }));
  }

  /**
   * Writes a record of a type this library does not define (for extensions and tests). A reader
   * that does not know `type` skips it unless `critical` is set, in which case it refuses the file.
   */
  async writeExtensionRecord(type: number, payload: Uint8Array, critical: boolean): Promise<void> {
    this.checkOpen();
    // Any type the format does not define, 0x0000 included (FORMAT.md §3.2): readers skip it when
    // optional, so `convert` must be able to carry it over.
    const defined = isKnownType(type);
    if (!Number.isInteger(type) || type < 0 || defined || type > 0xffff) {
      throw new Error(`Cannot write extension record: type ${type} is reserved or not a u16`);
    }
    await this.enqueue(
      Promise.resolve({
        record: encodeRecord(type, critical ? FLAG_CRITICAL : 0, payload.slice()),
      }),
    );
  }

  /** Flushes pending pages, writes the index, trailer and footer, and closes the stream. */
  async close(): Promise<WriteSummary> {
    this.checkOpen();
    try {
      await this.flushZero();
      await this.flushData();
      await this.drainAll();
      this.encoder.close();
      const indexOffset = await this.writeIndex();
      const contentDigest = await this.digest.digest();
      const fileDigest = this.fileHasher.digest("binary");
      this.hashing = false;
      const trailer = encodeTrailer({
        recordCount: this.records,
        pageRecordCount: this.pageRecords,
        pageCount: this.pageOccurrences,
        deviceCount: this.deviceRecords,
        indexOffset,
        contentDigest,
        fileDigest,
      });
      const trailerOffset = this.offset;
      await this.emit(encodeRecord(RecordType.TRAILER, FLAG_CRITICAL, trailer));
      await this.beforeFooter().catch((e) => Promise.reject(this.writeError(e)));
      await this.emit(encodeFooter({ trailerOffset, indexOffset }), false);
      await this.out.close().catch((e) => Promise.reject(this.writeError(e)));
      this.closed = true;
      await this.onClose(true);
      return {
        bytes: this.offset,
        records: this.records,
        contentDigest,
        fileDigest,
        batches: { ...this.encoder.counts },
        depth: this.link?.depth ?? 0,
        rootFileDigest: this.link?.rootFileDigest ?? fileDigest,
        ...(this.keepPageHashes ? { pageHashes: this.digest.pageHashes } : {}),
      };
    } catch (e) {
      await this.fail();
      throw e;
    }
  }

  /** Abandons the snapshot: aborts the stream (a file writer removes its temporary file). */
  async abort(): Promise<void> {
    await Promise.allSettled(this.queue);
    await this.fail();
  }

  /**
   * Writes the INDEX record (FORMAT.md §8); returns its offset, or 0 when it is not wanted or
   * would exceed the payload cap.
   */
  private async writeIndex(): Promise<number> {
    if (!this.wantIndex) return 0;
    let n = 0;
    for (const o of this.pageOffsets) {
      if (o !== undefined) { for (let i = 0; i < o.length; i++) if (o[i] !== 0) n++; }
    }
    if (indexBodySize(n, this.deviceOffsets.size) > MAX_RECORD_PAYLOAD) return 0;
    const regions = new Uint16Array(n);
    const pages = new Uint32Array(n);
    const pageOffsets = new Float64Array(n);
    let k = 0;
    this.pageOffsets.forEach((o, r) => {
      if (o === undefined) return;
      for (let i = 0; i < o.length; i++) {
        if (o[i] === 0) continue;
        regions[k] = r;
        pages[k] = i;
        pageOffsets[k++] = o[i] - 1;
      }
    });
    const deviceOffsets = Float64Array.from(this.deviceOffsets.values()).sort();
    const at = this.offset;
    await this.emit(
      encodeRecord(
        RecordType.INDEX,
        0,
        encodeIndex({ regions, pages, pageOffsets, deviceOffsets }),
      ),
    );
    return at;
  }
}

/** The PARENT record of a diff on `parent` (FORMAT.md §14.1); throws for a parent that cannot be. */
function parentLink(parent: DiffParent, description: MachineDescription): ParentLink {
  const fail = (reason: string): never => {
    throw new Error(`Cannot write a diff on '${parent.name}': ${reason}`);
  };
  if (!Number.isInteger(parent.depth) || parent.depth < 0 || parent.depth >= MAX_CHAIN_DEPTH) {
    fail(`the parent's depth ${parent.depth} is not in 0..${MAX_CHAIN_DEPTH - 1}`);
  }
  if (!parent.pageHashes.fits(description.regions)) {
    fail("the parent's regions are not this machine's (a chain holds one machine)");
  }
  return {
    depth: parent.depth + 1,
    parentContentDigest: parent.contentDigest.slice(),
    parentFileDigest: parent.fileDigest.slice(),
    rootFileDigest: parent.depth === 0 ? parent.fileDigest.slice() : parent.rootFileDigest.slice(),
    parentName: baseName(parent.name),
  };
}
