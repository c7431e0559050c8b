/**
 * Flatten: one full snapshot of the state a chain of diffs stands for, made by copying the
 * chain's PAGES records as they are (never decompressed or recompressed), and proved by reading
 * the output back as it is written: from the file itself, on a core of its own (FORMAT.md §14.5).
 *
 * @module
 */
import { AtomicFile, type AtomicFs } from "./atomic_file.ts";
import type { SnapshotChain } from "./chain.ts";
import { createBlake3, toHex } from "./checksum.ts";
import {
  FLAG_CRITICAL,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  MAX_RECORD_PAYLOAD,
  PROLOGUE_SIZE,
  RECORD_HEAD_SIZE,
  RECORD_TAIL_SIZE,
  RecordType,
} from "./constants.ts";
import { CorruptError } from "./errors.ts";
import type { SnapshotFileReader } from "./file_reader.ts";
import { FileSource } from "./file_source.ts";
import { encodeFooter } from "./footer.ts";
import { encodePrologue } from "./header.ts";
import { encodeIndex, indexBodySize } from "./index_record.ts";
import { type OutputCheck, OutputReadBackError, startOutputCheck } from "./_output_check.ts";
import { decodePageRecord } from "./page_record.ts";
import { decodeRecordHead, encodeRecord } from "./record.ts";
import { encodeTrailer } from "./trailer.ts";

/** Options of {@linkcode flattenChain}. */
export interface FlattenOptions {
  /**
   * Read the output back in a worker thread (any number above 0: a core of its own) or in the
   * calling thread (0). Default: a worker when the chain's files total at least 16 MiB.
   */
  workers?: number;
  /**
   * The file system {@linkcode flattenChainToFile} writes through (default the real one); tests
   * give one that damages or fails writes.
   */
  fs?: AtomicFs;
  /**
   * {@linkcode flattenChainToFile} with a worker: how this thread shares the read-back once it
   * has written the output (FORMAT.md §14.5). "auto" (the default): it takes PAGES records from
   * the end (reads each back from the file, checks its CRC32C, decompresses and hashes its pages)
   * while the worker goes on from the front, until they meet; "all": it takes every one (tests);
   * "none": the worker does all. The check proves the same in every case.
   */
  readBackShare?: "auto" | "all" | "none";
}

/** Chains at least this large are read back in a worker by default. */
const WORKER_THRESHOLD = 16 << 20;

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
  /**
   * PAGES records whose read-back (CRC32C, decompression, page hashes) this thread did rather
   * than the worker (see {@linkcode FlattenOptions.readBackShare}).
   */
  sharedRecords: number;
}

/** Thrown when the output does not read back as the state the chain declares. */
export class FlattenError extends Error {
  /** The reason, and the error behind it in `options.cause`. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "FlattenError";
  }
}

/**
 * Per region: which file of the chain holds each page's final occurrence, where in it, and where
 * that record is in the output once copied.
 */
interface FinalPages {
  file: Int16Array;
  offset: Float64Array;
  out: Float64Array;
}

/**
 * Where the output's bytes go. `bytes` is a view of a buffer that is reused once the returned
 * promise settles: a sink that keeps bytes must copy them.
 */
type Emit = (bytes: Uint8Array) => void | Promise<void>;

/**
 * Writes one full snapshot of the state `chain` stands for to `sink` (FORMAT.md §14.5): the
 * newest file's HEADER; the PAGES records of the chain's files, oldest file first, each copied as
 * it is when one of its entries is a page's final occurrence; the newest file's DEVICE records; a
 * new INDEX, TRAILER and footer. Every byte handed to `sink` also goes to an independent reader
 * (the streaming checker) that checks the output's framing, CRC32Cs, index, trailer, file digest
 * and content digest; the promise rejects with {@linkcode FlattenError} unless the content digest
 * read back is the one the newest file of the chain declares. The sink is closed on success and
 * aborted on failure. ({@linkcode flattenChainToFile} reads the output back from the file itself.)
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
  const inWorkers = useWorkers(chain, options);
  let check: OutputCheck | null = null;
  try {
    check = startOutputCheck(null, inWorkers);
    const summary = await writeFlat(
      chain,
      async (bytes) => {
        // The sink may keep what it is given: its own copy. The check takes another (a worker's
        // is transferred, which would empty the sink's).
        await out.write(bytes.slice());
        await check!.written(bytes);
      },
      check,
    );
    await out.close();
    return summary;
  } catch (e) {
    check?.stop();
    await out.abort(e).catch(() => {});
    throw e;
  }
}

function useWorkers(chain: SnapshotChain, options: FlattenOptions): boolean {
  if (options.workers !== undefined) return options.workers > 0;
  return chain.files.reduce((n, f) => n + f.reader.size, 0) >= WORKER_THRESHOLD;
}

/**
 * Writes the flattened output through `emit` and has it read back (see {@linkcode flattenChain}):
 * `check` is the read-back of what `emit` delivered, told of each chunk by `emit` itself.
 */
async function writeFlat(
  chain: SnapshotChain,
  emit: Emit,
  check: OutputCheck,
  written: () => void = () => {},
): Promise<FlattenSummary> {
  const d = chain.description;
  // 1. The final occurrence of every page: the newest file that names it wins (FORMAT.md §14.2).
  const final: FinalPages[] = d.regions.map((r) => {
    const n = r.size / r.pageSize;
    return {
      file: new Int16Array(n).fill(-1),
      offset: new Float64Array(n),
      out: new Float64Array(n),
    };
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
    await emit(bytes);
    hasher.update(bytes);
    offset += bytes.length;
    if (isRecord) records++;
  };
  await write(encodePrologue(FORMAT_MAJOR, FORMAT_MINOR), false);
  const header = await chain.head.reader.readRecord(PROLOGUE_SIZE);
  if (header.type !== RecordType.HEADER) {
    throw new CorruptError("the record after the prologue is not a HEADER", {
      offset: PROLOGUE_SIZE,
      recordIndex: 0,
    });
  }
  await write(header.bytes);

  // 2. The PAGES records, oldest file first, in file order; a record keeps its bytes.
  let pageRecords = 0;
  let pageEntries = 0;
  let skipped = 0;
  /** Where each record copied came from, in output order: to name it when it reads back bad. */
  const sources: CopiedRecord[] = [];
  const window = new RunWindow();
  for (let i = 0; i < chain.files.length; i++) {
    const file = chain.files[i];
    skipped += file.trailer.pageRecordCount - wanted[i].size;
    const run = new RecordRun(file.reader, window);
    for (const at of [...wanted[i]].sort((a, b) => a - b)) {
      const rec = await run.read(at, RecordType.PAGES);
      const payload = rec.subarray(RECORD_HEAD_SIZE, rec.length - RECORD_TAIL_SIZE);
      const p = decodePageRecord(payload, d.regions, at, -1);
      const f = final[p.region];
      for (let k = 0; k < p.pages.length; k++) {
        const page = p.pages[k];
        if (f.file[page] === i && f.offset[page] === at) f.out[page] = offset;
      }
      sources.push({ out: offset, end: offset + rec.length, path: file.path, at });
      pageRecords++;
      pageEntries += p.pages.length;
      if (p.encoding !== "zero") check.pageRecord(offset, rec.length);
      await write(rec);
    }
  }

  // 3. The newest file's devices: the whole device state (FORMAT.md §14.2).
  const deviceOffsets: number[] = [];
  for (const at of chain.head.reader.deviceRecordOffsets().sort((a, b) => a - b)) {
    const rec = await chain.head.reader.readRecord(at);
    if (rec.type !== RecordType.DEVICE) {
      throw new CorruptError("the index names a record that is not a DEVICE record", {
        offset: at,
        recordIndex: -1,
      });
    }
    deviceOffsets.push(offset);
    sources.push({ out: offset, end: offset + rec.bytes.length, path: chain.head.path, at });
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
        pageOffsets[k++] = f.out[p];
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
  written();

  // 6. What was delivered reads back whole: every rule, and both digests recomputed.
  let back;
  try {
    back = await check.finish();
  } catch (e) {
    throw new FlattenError(
      `Cannot flatten: the output does not read back: ${(e as Error).message}${
        e instanceof OutputReadBackError ? copiedFrom(sources, e.offset) : ""
      }`,
      { cause: e },
    );
  }
  if (toHex(back.trailer.fileDigest) !== toHex(fileDigest)) {
    throw new FlattenError(
      `Cannot flatten: the output read back has file digest ${
        toHex(back.trailer.fileDigest)
      }, not the ${toHex(fileDigest)} of the bytes written`,
    );
  }
  const declared = toHex(chain.contentDigest);
  if (toHex(back.contentDigest) !== declared) {
    throw new FlattenError(
      `Cannot flatten: content digest mismatch (expected ${declared}, which '${chain.head.path}' declares; actual ${
        toHex(back.contentDigest)
      }, read back)`,
    );
  }
  return {
    bytes: offset,
    records,
    copiedRecords: pageRecords,
    skippedRecords: skipped,
    supersededEntries: pageEntries - n,
    contentDigest: back.contentDigest,
    fileDigest,
    sharedRecords: check.sharedRecords,
  };
}

/** A record copied: where it is in the output (`out .. end`) and where it came from. */
interface CopiedRecord {
  out: number;
  end: number;
  path: string;
  at: number;
}

/** " (a record copied from byte B of 'file')" for a problem at `offset` of the output. */
function copiedFrom(sources: CopiedRecord[], offset: number | null): string {
  if (offset === null) return "";
  let lo = 0;
  let hi = sources.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (sources[mid].out <= offset) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  if (found < 0 || offset >= sources[found].end) return "";
  const s = sources[found];
  return ` (in the record copied from byte ${s.at} of '${s.path}')`;
}

/** Bytes read from a chain file at once when copying its records. */
const RUN_WINDOW = 8 << 20;

/** The buffer the {@linkcode RecordRun}s of one flatten share, one file after the other. */
class RunWindow {
  buf = new Uint8Array(0);
}

/**
 * Reads the records of one chain file in ascending offsets through one buffer that it reuses, and
 * that the runs of the chain's other files reuse after it (a run of neighbours in one read; fresh
 * memory costs a page fault per 4 KiB, about 13 µs here). A record is a view valid until the next
 * `read`. Files that are not local fall back to the reader's reads.
 */
class RecordRun {
  private base = 0;
  private length = 0;
  private readonly file: FileSource | null;

  constructor(private readonly reader: SnapshotFileReader, private readonly window: RunWindow) {
    this.file = reader.source instanceof FileSource ? reader.source : null;
  }

  private get buf(): Uint8Array {
    return this.window.buf;
  }

  /**
   * The whole framed record at `at`, of type `type`, its length checked against the cap and the
   * file (local files: its CRC32C is not, see the caller).
   */
  async read(at: number, type: number): Promise<Uint8Array> {
    if (this.file === null) {
      const r = await this.reader.readRecord(at);
      this.check(at, r.type, type);
      return r.bytes;
    }
    const size = this.reader.size;
    if (at + RECORD_HEAD_SIZE > size) {
      throw new CorruptError(`a record head at byte ${at} runs past the end of the file`, {
        offset: at,
        recordIndex: -1,
      });
    }
    this.fill(at, RECORD_HEAD_SIZE);
    const h = decodeRecordHead(this.view(at, RECORD_HEAD_SIZE), at, -1);
    const total = RECORD_HEAD_SIZE + h.length + RECORD_TAIL_SIZE;
    if (at + total > size) {
      throw new CorruptError(
        `the record's ${h.length}-byte payload runs past the end of the file (${size} bytes)`,
        { offset: at, recordIndex: -1 },
      );
    }
    this.fill(at, total);
    this.check(at, h.type, type);
    // Its CRC32C is checked where it lands: in the output read back (FORMAT.md §14.5).
    return this.view(at, total);
  }

  private check(at: number, actual: number, expected: number): void {
    if (actual !== expected) {
      throw new CorruptError(`the index names a record of type ${actual}, not ${expected}`, {
        offset: at,
        recordIndex: -1,
      });
    }
  }

  private view(at: number, n: number): Uint8Array {
    return this.buf.subarray(at - this.base, at - this.base + n);
  }

  /** Makes bytes `at .. at + n` of the file available in the buffer. */
  private fill(at: number, n: number): void {
    if (this.length > 0 && at >= this.base && at + n <= this.base + this.length) return;
    if (this.buf.length < n || this.buf.length === 0) {
      this.window.buf = new Uint8Array(Math.max(n, RUN_WINDOW));
    }
    const len = Math.min(this.buf.length, this.reader.size - at);
    this.file!.readInto(at, this.buf.subarray(0, len));
    this.base = at;
    this.length = len;
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
  const file = await AtomicFile.create(path, { fs: options.fs });
  let check: OutputCheck | null = null;
  let syncing: Promise<void> | null = null;
  try {
    // The read-back reads the temporary itself: what reached the file, not what was meant for it.
    const share = options.readBackShare ?? "auto";
    check = startOutputCheck(
      file.tempPath,
      useWorkers(chain, options),
      share === "none" ? undefined : {
        regions: chain.description.regions,
        // Every PAGES record of the output is one of the chain's.
        maxRecords: chain.files.reduce((n, f) => n + f.trailer.pageRecordCount, 0),
        claimAll: share === "all",
      },
    );
    const summary = await writeFlat(
      chain,
      (bytes) => {
        // Synchronous on purpose: to a regular file (the page cache) an asynchronous write per
        // record costs a round trip through the thread pool, which made flatten several times
        // slower on a loaded machine (BENCHMARKS.md, "Diff snapshots").
        let done = 0;
        while (done < bytes.length) done += file.file.writeSync(bytes.subarray(done));
        return check!.written(bytes);
      },
      check,
      // The disk takes the bytes while the read-back finishes: the commit's fsync then finds
      // little left to wait for. Nothing is renamed before the read-back's verdict.
      () => {
        syncing = file.sync();
        syncing.catch(() => {});
      },
    );
    await syncing;
    await file.commit();
    return summary;
  } catch (e) {
    check?.stop();
    await (syncing as Promise<void> | null)?.catch(() => {});
    await file.abort();
    throw e;
  }
}
