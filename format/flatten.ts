/**
 * Flatten: one full snapshot of the state a chain of diffs stands for, made by copying the
 * chain's PAGES records as they are (never decompressed or recompressed), and proved by reading
 * the output back as it is written (FORMAT.md §14.5).
 *
 * @module
 */
import { AtomicFile } from "./atomic_file.ts";
import type { SnapshotChain } from "./chain.ts";
import { createBlake3, toHex } from "./checksum.ts";
import {
  FLAG_CRITICAL,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  MAX_RECORD_PAYLOAD,
  PROLOGUE_SIZE,
  RecordType,
} from "./constants.ts";
import { SnapshotChecker } from "./file_checks.ts";
import { encodeFooter } from "./footer.ts";
import { encodePrologue } from "./header.ts";
import { encodeIndex, indexBodySize } from "./index_record.ts";
import { type PageDigestPool, startPageDigestPool } from "./page_digest_pool.ts";
import { decodePageRecord } from "./page_record.ts";
import { encodeRecord } from "./record.ts";
import { streamSource } from "./record_scanner.ts";
import { encodeTrailer } from "./trailer.ts";

/** Options of {@linkcode flattenChain}. */
export interface FlattenOptions {
  /**
   * Read the output back in a worker thread (any number above 0) or in the calling thread (0).
   * Default: a worker when the chain's files total at least 16 MiB.
   */
  workers?: number;
}

/** Chains at least this large are read back in a worker by default. */
const WORKER_THRESHOLD = 16 << 20;

/** Where the output's bytes go to be read back. */
interface ReadBackChannel {
  /** Hands over `bytes`, which the caller never touches again. */
  push(bytes: Uint8Array): Promise<void>;
  /** Ends the bytes; the content digest read back, or a FlattenError. */
  finish(): Promise<Uint8Array>;
  stop(): void;
}

/** What {@linkcode flattenChain} reports. */
export interface FlattenSummary {
  /** Bytes written, footer included. */
  bytes: number;
  /** Records written, trailer included. */
  records: number;
  /** PAGES records copied from the chain, and those left out (no entry of theirs is final). */
  copiedRecords: number;
  /** PAGES records of the chain left out: every entry of theirs is superseded. */
  skippedRecords: number;
  /** Page entries in the copied records that a later copied record supersedes. */
  supersededEntries: number;
  /** The content digest, read back from the output: the one the newest file declares. */
  contentDigest: Uint8Array;
  /** The output's file digest. */
  fileDigest: Uint8Array;
}

/** Thrown when the output does not read back as the state the chain declares. */
export class FlattenError extends Error {
  /** The reason, and the error behind it in `options.cause`. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "FlattenError";
  }
}

/** Per region: which file of the chain holds each page's final occurrence, and where. */
interface FinalPages {
  file: Int16Array;
  offset: Float64Array;
}

/**
 * Writes one full snapshot of the state `chain` stands for to `sink` (FORMAT.md §14.5): the
 * newest file's HEADER; the PAGES records of the chain's files, oldest file first, each copied as
 * it is when one of its entries is a page's final occurrence; the newest file's DEVICE records; a
 * new INDEX, TRAILER and footer. Every byte written also goes to an independent reader (the
 * streaming checker, with page workers) that checks the output's framing, index, file digest and
 * content digest; the promise rejects with {@linkcode FlattenError} unless the content digest read
 * back is the one the newest file of the chain declares. The sink is closed on success and aborted
 * on failure.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { openChain } from "./chain.ts";
 * import { flattenChain } from "./flatten.ts";
 * import { diffParentOf, SnapshotWriter } from "./writer.ts";
 * const dir = await Deno.makeTempDir();
 * const description = {
 *   regions: [{ name: "ram", base: 0x8000_0000, size: 1 << 16, pageSize: 4096 }],
 *   creator: "doc", createdAt: 0,
 * };
 * const w0 = await SnapshotWriter.createFile(`${dir}/s-0.lsnap`, description, { keepPageHashes: true });
 * await w0.writePages(0, 0, new Uint8Array(8192).fill(1));
 * const s0 = await w0.close();
 * const w1 = await SnapshotWriter.createFile(`${dir}/s-1.lsnap`, description, {
 *   parent: diffParentOf(s0, `${dir}/s-0.lsnap`),
 * });
 * await w1.writePages(0, 5, new Uint8Array(4096).fill(2));
 * const s1 = await w1.close();
 * const chain = await openChain(`${dir}/s-1.lsnap`);
 * const out = await Deno.open(`${dir}/flat.lsnap`, { write: true, create: true });
 * const summary = await flattenChain(chain, out.writable);
 * chain.close();
 * assertEquals(summary.contentDigest, s1.contentDigest);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function flattenChain(
  chain: SnapshotChain,
  sink: WritableStream<Uint8Array>,
  options: FlattenOptions = {},
): Promise<FlattenSummary> {
  const out = sink.getWriter();
  const d = chain.description;
  const totalSize = chain.files.reduce((n, f) => n + f.reader.size, 0);
  // A large output is read back on a core of its own (the worker decompresses and hashes its
  // pages); a small one in this thread, which spares the worker's start.
  const inWorker = options.workers === undefined
    ? totalSize >= WORKER_THRESHOLD
    : options.workers > 0;
  const pool = inWorker ? undefined : startPageDigestPool({ workers: 0 });
  const back: ReadBackChannel = inWorker ? new WorkerReadBack() : new ReadBack(pool);
  try {
    // 1. The final occurrence of every page: the newest file that names it wins (FORMAT.md §14.2).
    const final: FinalPages[] = d.regions.map((r) => {
      const n = r.size / r.pageSize;
      return { file: new Int16Array(n).fill(-1), offset: new Float64Array(n) };
    });
    const wanted: Set<number>[] = chain.files.map(() => new Set());
    for (let i = chain.files.length - 1; i >= 0; i--) {
      chain.files[i].reader.forEachPage((region, page, at) => {
        const f = final[region];
        if (f.file[page] >= 0) return;
        f.file[page] = i;
        f.offset[page] = at;
        wanted[i].add(at);
      });
    }

    const hasher = await createBlake3();
    hasher.init();
    let offset = 0;
    let records = 0;
    const write = async (bytes: Uint8Array, isRecord = true) => {
      hasher.update(bytes);
      offset += bytes.length;
      if (isRecord) records++;
      await out.write(bytes);
      await back.push(bytes);
    };
    await write(encodePrologue(FORMAT_MAJOR, FORMAT_MINOR), false);
    const header = await chain.head.reader.readRecord(PROLOGUE_SIZE);
    await write(header.bytes.slice());

    // 2. The PAGES records, oldest file first, in file order; a record keeps its bytes.
    let pageRecords = 0;
    let pageEntries = 0;
    let skipped = 0;
    const moved: Map<number, number>[] = chain.files.map(() => new Map());
    for (let i = 0; i < chain.files.length; i++) {
      const reader = chain.files[i].reader;
      skipped += chain.files[i].trailer.pageRecordCount - wanted[i].size;
      for (const at of [...wanted[i]].sort((a, b) => a - b)) {
        const rec = await reader.readRecord(at);
        const head = decodePageRecord(rec.payload, d.regions, at, -1);
        moved[i].set(at, offset);
        pageRecords++;
        pageEntries += head.pages.length;
        // The record's own buffer: the sink and the read-back may keep it.
        await write(rec.bytes);
      }
    }

    // 3. The newest file's devices: the whole device state (FORMAT.md §14.2).
    const deviceOffsets: number[] = [];
    for (const at of chain.head.reader.deviceRecordOffsets().sort((a, b) => a - b)) {
      const rec = await chain.head.reader.readRecord(at);
      deviceOffsets.push(offset);
      await write(rec.bytes);
    }

    // 4. The index of the output (FORMAT.md §8), when it fits a record.
    let n = 0;
    for (const f of final) for (let p = 0; p < f.file.length; p++) if (f.file[p] >= 0) n++;
    let indexOffset = 0;
    if (indexBodySize(n, deviceOffsets.length) <= MAX_RECORD_PAYLOAD) {
      const regions = new Uint16Array(n);
      const pages = new Uint32Array(n);
      const pageOffsets = new Float64Array(n);
      let k = 0;
      final.forEach((f, r) => {
        for (let p = 0; p < f.file.length; p++) {
          if (f.file[p] < 0) continue;
          regions[k] = r;
          pages[k] = p;
          pageOffsets[k++] = moved[f.file[p]].get(f.offset[p])!;
        }
      });
      indexOffset = offset;
      await write(
        encodeRecord(
          RecordType.INDEX,
          0,
          encodeIndex({
            regions,
            pages,
            pageOffsets,
            deviceOffsets: Float64Array.from(deviceOffsets),
          }),
        ),
      );
    }

    // 5. Trailer and footer. The content digest is the one the chain declares: the read-back
    // recomputes it from the records just written and refuses the output if it differs.
    const fileDigest = hasher.digest("binary");
    const trailerOffset = offset;
    await write(
      encodeRecord(
        RecordType.TRAILER,
        FLAG_CRITICAL,
        encodeTrailer({
          recordCount: records,
          pageRecordCount: pageRecords,
          pageCount: pageEntries,
          deviceCount: deviceOffsets.length,
          indexOffset,
          contentDigest: chain.contentDigest,
          fileDigest,
        }),
      ),
    );
    await write(encodeFooter({ trailerOffset, indexOffset }), false);
    const readBack = await back.finish();
    if (toHex(readBack) !== toHex(chain.contentDigest)) {
      throw new FlattenError(
        `Cannot flatten: the output's content digest ${toHex(readBack)} is not the ${
          toHex(chain.contentDigest)
        } that '${chain.head.path}' declares`,
      );
    }
    await out.close();
    const superseded = pageEntries - n;
    return {
      bytes: offset,
      records,
      copiedRecords: pageRecords,
      skippedRecords: skipped,
      supersededEntries: superseded,
      contentDigest: readBack,
      fileDigest,
    };
  } catch (e) {
    back.stop();
    await out.abort(e).catch(() => {});
    throw e;
  } finally {
    pool?.close();
  }
}

/**
 * The output's bytes on their way to the streaming checker, which checks every rule of FORMAT.md
 * on them and recomputes the content digest from them (with page workers when given).
 */
class ReadBack implements ReadBackChannel {
  private readonly echo = new TransformStream<Uint8Array, Uint8Array>(undefined, {
    highWaterMark: 64,
  });
  private readonly writer = this.echo.writable.getWriter();
  private readonly checker: SnapshotChecker;
  private readonly done: Promise<void>;

  constructor(pool: PageDigestPool | undefined) {
    const checker = new SnapshotChecker(streamSource(this.echo.readable), {
      report: (e) => {
        throw e;
      },
      pages: "digest",
      pool,
    });
    this.checker = checker;
    this.done = (async () => {
      for await (const _ of checker.records()) { /* every rule is applied */ }
    })();
    this.done.catch(() => {});
  }

  async push(bytes: Uint8Array): Promise<void> {
    try {
      await this.writer.ready;
    } catch {
      // The checker stopped on a problem: report it.
      await this.finish();
    }
    // The checker reads the chunk later: it gets the bytes as written (never changed after).
    this.writer.write(bytes).catch(() => {});
  }

  async finish(): Promise<Uint8Array> {
    // A checker that stopped early has cancelled its input: its own error says why.
    await this.writer.close().catch(() => {});
    try {
      await this.done;
    } catch (e) {
      throw new FlattenError(
        `Cannot flatten: the output does not read back: ${(e as Error).message}`,
        { cause: e },
      );
    }
    if (!this.checker.complete || this.checker.contentDigest === null) {
      throw new FlattenError("Cannot flatten: the output does not read back whole");
    }
    return this.checker.contentDigest;
  }

  stop(): void {
    this.writer.abort().catch(() => {});
  }
}

/** Bytes handed to the worker and not yet consumed, before the writer waits. */
const WORKER_WINDOW = 64 << 20;

/** The read-back in `_read_back_worker.ts`: chunks in, `ack`s as they are consumed, a verdict. */
class WorkerReadBack implements ReadBackChannel {
  private readonly worker = new Worker(new URL("./_read_back_worker.ts", import.meta.url).href, {
    type: "module",
  });
  private inFlight = 0;
  private waiters: (() => void)[] = [];
  private failure: Error | null = null;
  private signalReady: () => void = () => {};
  private readonly ready = new Promise<void>((r) => (this.signalReady = r));
  private readonly result: Promise<{ complete: boolean; contentDigest: Uint8Array | null }>;

  constructor() {
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
          if (this.inFlight <= WORKER_WINDOW) this.wakeAll();
        } else if (m.done !== undefined) {
          this.wakeAll();
          resolve(m.done);
        } else if (m.error !== undefined) fail(new Error(m.error.message));
      };
      this.worker.onerror = (e) => {
        e.preventDefault();
        fail(new Error(`the read-back worker failed: ${e.message}`));
      };
    });
    this.result.catch(() => {});
  }

  private wakeAll(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private unreadable(e: Error): FlattenError {
    return new FlattenError(`Cannot flatten: the output does not read back: ${e.message}`, {
      cause: e,
    });
  }

  async push(bytes: Uint8Array): Promise<void> {
    await this.ready;
    if (this.failure !== null) throw this.unreadable(this.failure);
    const whole = bytes.buffer instanceof ArrayBuffer && bytes.byteOffset === 0 &&
      bytes.byteLength === bytes.buffer.byteLength;
    const own = whole ? bytes : bytes.slice();
    this.inFlight += own.length;
    this.worker.postMessage({ chunk: own }, [own.buffer as ArrayBuffer]);
    while (this.inFlight > WORKER_WINDOW && this.failure === null) {
      await new Promise<void>((r) => this.waiters.push(r));
    }
    if (this.failure !== null) throw this.unreadable(this.failure);
  }

  async finish(): Promise<Uint8Array> {
    await this.ready;
    this.worker.postMessage({ end: true });
    let r;
    try {
      r = await this.result;
    } catch (e) {
      throw this.unreadable(e as Error);
    } finally {
      this.worker.terminate();
    }
    if (!r.complete || r.contentDigest === null) {
      throw new FlattenError("Cannot flatten: the output does not read back whole");
    }
    return r.contentDigest;
  }

  stop(): void {
    this.worker.terminate();
  }
}

/** Identity of a file: device and inode where the platform has them, else its real path. */
async function identity(path: string): Promise<string | null> {
  try {
    const st = await Deno.stat(path);
    if (st.ino !== null && st.dev !== null) return `${st.dev}:${st.ino}`;
    return await Deno.realPath(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * Flattens `chain` into the file `path` through an {@linkcode AtomicFile}: the bytes go to a
 * temporary that is renamed to `path` only once the output read back holds the chain's state; on
 * any failure nothing is left at `path` (an old file there stays as it was). Refuses a `path` that
 * is one of the chain's files (by device and inode, so another name of the same file is refused
 * too), before anything is written.
 */
export async function flattenChainToFile(
  chain: SnapshotChain,
  path: string,
  options: FlattenOptions = {},
): Promise<FlattenSummary> {
  const target = await identity(path);
  if (target !== null) {
    for (const f of chain.files) {
      if ((await identity(f.path)) === target) {
        throw new FlattenError(
          `Cannot flatten to '${path}': it is '${f.path}', a file of the chain being flattened`,
        );
      }
    }
  }
  const file = await AtomicFile.create(path);
  let committed = false;
  const sink = new WritableStream<Uint8Array>({
    // Synchronous on purpose: to a regular file (the page cache) an asynchronous write per record
    // costs a round trip through the thread pool, which made flatten several times slower on a
    // loaded machine (BENCHMARKS.md, "Diff snapshots").
    write: (chunk) => {
      let done = 0;
      while (done < chunk.length) done += file.file.writeSync(chunk.subarray(done));
    },
    close: async () => {
      await file.commit();
      committed = true;
    },
    abort: () => file.abort(),
  });
  try {
    return await flattenChain(chain, sink, options);
  } finally {
    if (!committed) await file.abort();
  }
}
