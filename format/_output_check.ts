/**
 * The read-back of an output as it is written: the streaming checker (every rule of FORMAT.md:
 * each record's framing and CRC32C, the INDEX against the records, the trailer's counts, the file
 * digest and the content digest recomputed from the output's own records, the footer, the end of
 * the input), on a core of its own when the output is large. When the output is a file, its bytes
 * are read back from the file itself (what reached it, not what was meant for it) while it grows,
 * through the checker's one reused buffer; otherwise they are the chunks handed over. A file read
 * back in a worker can be shared: once the writer has written the last byte, it reads PAGES records
 * back from the end while the worker goes on from the front ({@linkcode ShareOptions}).
 *
 * @module
 */
import { digestPageData, type PageDigests, type PageJobRunner } from "./_page_digest.ts";
import { crc32c, hex32 } from "./checksum.ts";
import { RECORD_HEAD_SIZE, RECORD_TAIL_SIZE, RecordType } from "./constants.ts";
import { LsnapError } from "./errors.ts";
import { SnapshotChecker } from "./file_checks.ts";
import { takeReadBackWorker } from "./_read_back_worker_spare.ts";
import type { Region } from "./header.ts";
import { decodePageRecord } from "./page_record.ts";
import { decodeRecordHead } from "./record.ts";
import type { ByteSource } from "./record_scanner.ts";
import type { Trailer } from "./trailer.ts";

/** The output does not read back; `offset` is the byte of the output where, when known. */
export class OutputReadBackError extends Error {
  /** The reason, and the offset in the output it concerns (null when none). */
  constructor(message: string, readonly offset: number | null) {
    super(message);
    this.name = "OutputReadBackError";
  }
}

/** What the read-back found (every rule held, or it would have thrown). */
export interface OutputCheckResult {
  /** The trailer as read back; its digests equal the ones recomputed from the bytes. */
  trailer: Trailer;
  /** The content digest recomputed from the output's records. */
  contentDigest: Uint8Array;
}

/**
 * The bytes of an output as they become available: appended chunks, or a file read up to the
 * length written so far. A {@linkcode ByteSource} for the checker, which waits for more bytes until
 * {@linkcode end} is called.
 */
export class OutputFeed implements ByteSource {
  private readonly chunks: Uint8Array[] = [];
  private written = 0;
  private position = 0;
  private ended = false;
  private wake: (() => void) | null = null;

  /** `file`, when given, is the output open for reading; else the bytes come as chunks. */
  constructor(
    private readonly file: Deno.FsFile | null,
    private readonly onConsumed: (n: number) => void = () => {},
  ) {}

  /** Chunk mode: `bytes` come next (kept as they are: the caller never changes them). */
  addChunk(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.written += bytes.length;
    this.signal();
  }

  /** File mode: the file now holds `length` bytes. */
  setWritten(length: number): void {
    this.written = length;
    this.signal();
  }

  /** No more bytes come. */
  end(): void {
    this.ended = true;
    this.signal();
  }

  private signal(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async read(into: Uint8Array): Promise<Uint8Array> {
    while (this.position >= this.written && !this.ended) {
      await new Promise<void>((r) => (this.wake = r));
    }
    const n = Math.min(into.length, this.written - this.position);
    if (n <= 0) return into.subarray(0, 0);
    if (this.file !== null) {
      this.file.seekSync(this.position, Deno.SeekMode.Start);
      let got = 0;
      while (got < n) {
        const k = this.file.readSync(into.subarray(got, n));
        if (k === null) {
          throw new Error(
            `the output ends at byte ${this.position + got}, before the ${this.written} written`,
          );
        }
        got += k;
      }
    } else {
      let got = 0;
      while (got < n) {
        const c = this.chunks[0];
        const k = Math.min(c.length, n - got);
        into.set(c.subarray(0, k), got);
        got += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.position += n;
    this.onConsumed(n);
    return into.subarray(0, n);
  }

  close(): Promise<void> {
    this.file?.close();
    return Promise.resolve();
  }
}

/**
 * Runs the checker over `feed` (a full snapshot: a PARENT record is refused) and returns the
 * trailer read back and the content digest recomputed; rejects with the first problem found.
 */
export async function checkOutput(
  feed: ByteSource,
  pool?: PageJobRunner,
): Promise<OutputCheckResult> {
  try {
    return await runChecker(feed, pool);
  } catch (e) {
    if (e instanceof OutputReadBackError) throw e;
    throw new OutputReadBackError((e as Error).message, e instanceof LsnapError ? e.offset : null);
  }
}

async function runChecker(feed: ByteSource, pool?: PageJobRunner): Promise<OutputCheckResult> {
  const checker = new SnapshotChecker(feed, {
    report: (e) => {
      throw e;
    },
    pages: "digest",
    pool,
    // The writer waits for the verdict, not for the trailer: the digest's entries built once.
    keepDigestEntries: false,
  });
  for await (const _ of checker.records()) { /* every rule is applied */ }
  if (!checker.complete || checker.trailer === null || checker.contentDigest === null) {
    throw new OutputReadBackError("the output does not read back whole", null);
  }
  return { trailer: checker.trailer, contentDigest: checker.contentDigest };
}

/** The read-back as the writer drives it. */
export interface OutputCheck {
  /**
   * `bytes` were just written (to a file: they are in it). Chunk mode: with `handedOver` the
   * caller never touches them again and the check takes them as they are, else a copy.
   */
  written(bytes: Uint8Array, handedOver?: boolean): Promise<void>;
  /**
   * The PAGES record (not a zero record) at `offset` of the output, `length` bytes framed, was
   * just written: once the writing is done, this thread may take a share of the read-back's page
   * work (see {@linkcode ShareOptions}). Records are told in output order.
   */
  pageRecord(offset: number, length: number): void;
  /** No more bytes: the verdict. */
  finish(): Promise<OutputCheckResult>;
  /** Shared PAGES records whose page work this thread did (after `finish`). */
  readonly sharedRecords: number;
  /** Stops the check (on failure). */
  stop(): void;
}

/**
 * The writing thread's share of a read-back in a worker, of a file. Once the writer has written
 * the last byte it has nothing left to do but wait for the worker, which then still has the page
 * work (decompressing and hashing, most of the read-back's CPU) of the records it has not reached.
 * So the writing thread takes PAGES records from the end of the output, one at a time, while the
 * worker goes on from the front; each record is claimed through shared memory by exactly one of
 * them, and they stop where they meet. The writing thread reads its records back from the file
 * itself, checks each one's framing and CRC32C, decompresses and hashes its pages and hands the
 * result to the worker, which applies it in file order as its own: the check proves the same.
 */
export interface ShareOptions {
  /** The output's regions (its HEADER's), to read its PAGES records. */
  regions: readonly Region[];
  /** At most this many PAGES records are shared (the shared memory has a slot for each). */
  maxRecords: number;
  /**
   * For tests: the writing thread claims every record as it is told of it (before its bytes are
   * written, so before the worker can reach it) and does all the page work. Default false.
   */
  claimAll?: boolean;
}

/**
 * Starts the read-back of an output: of the file `path` (the output's temporary, being written)
 * or, with `path` null, of the chunks handed to `written` (which must not change afterwards); in
 * a worker thread (a core of its own) or in this thread. With `share`, a worker reading a file
 * back is helped by this thread once the writing is done ({@linkcode ShareOptions}).
 */
export function startOutputCheck(
  path: string | null,
  inWorker: boolean,
  share?: ShareOptions,
): OutputCheck {
  return inWorker
    ? new WorkerOutputCheck(path, path === null ? undefined : share)
    : new LocalOutputCheck(path);
}

/** Slot 0 of the shared claims: set once the worker has stopped (a verdict or an error). */
const STOPPED = 0;
/** A record's slot (1 + its number among the shared records): who does its page work. */
const FREE = 0;
const BY_WORKER = 1;
const BY_WRITER = 2;

/** How long the worker waits for the writing thread's result for one record it claimed. */
const SHARE_TIMEOUT_MS = 60_000;

/** The writing thread's result for the `k`-th shared record, at `offset` of the output. */
export interface SharedPageResult {
  k: number;
  offset: number;
  result: PageDigests;
}

/**
 * The worker's side of the share ({@linkcode ShareOptions}): a {@linkcode PageJobRunner} for its
 * checker. The `k`-th PAGES record that is not a zero record is the worker's if it claims it as
 * the scanner frames it; else the writing thread has it, checks its CRC32C (the scanner skips it)
 * and does its page work, whose result comes through {@linkcode deliver}.
 */
export class SharedPageWork implements PageJobRunner {
  private next = 0;
  /** Records the writing thread has, by offset: their number among the shared records. */
  private readonly theirs = new Map<number, number>();
  private readonly waiting = new Map<
    number,
    {
      offset: number;
      count: number;
      done: (r: PageDigests) => void;
      timer: ReturnType<typeof setTimeout>;
    }
  >();
  private readonly arrived = new Map<number, SharedPageResult>();

  /** `claims` is the shared memory of the writing thread's {@linkcode WorkerOutputCheck}. */
  constructor(private readonly claims: Int32Array) {}

  claim(offset: number, type: number, payload: Uint8Array): boolean {
    // A PAGES record (FORMAT.md §6.2: u16 region, u8 encoding) that is not a zero record.
    if (type !== RecordType.PAGES || payload.length < 3 || payload[2] === 0) return false;
    const k = this.next++;
    const slot = 1 + k;
    if (slot >= this.claims.length) return false;
    if (Atomics.compareExchange(this.claims, slot, FREE, BY_WORKER) !== BY_WRITER) return false;
    this.theirs.set(offset, k);
    return true;
  }

  submit(
    job: { count: number },
    at: { offset: number },
  ): Promise<{ result: Promise<PageDigests> } | null> {
    const k = this.theirs.get(at.offset);
    if (k === undefined) return Promise.resolve(null);
    this.theirs.delete(at.offset);
    const result = new Promise<PageDigests>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(k);
        resolve({
          error: `the writing thread's share of the read-back did not answer for this record ` +
            `within ${SHARE_TIMEOUT_MS / 1000} s`,
        });
      }, SHARE_TIMEOUT_MS);
      this.waiting.set(k, { offset: at.offset, count: job.count, done: resolve, timer });
    });
    const early = this.arrived.get(k);
    if (early !== undefined) {
      this.arrived.delete(k);
      this.deliver(early);
    }
    return Promise.resolve({ result });
  }

  /** The writing thread's result for a record it claimed. */
  deliver(m: SharedPageResult): void {
    const w = this.waiting.get(m.k);
    if (w === undefined) {
      this.arrived.set(m.k, m);
      return;
    }
    this.waiting.delete(m.k);
    clearTimeout(w.timer);
    const r = m.result;
    if ("error" in r) w.done(r);
    else if (m.offset !== w.offset || r.zero.length !== w.count) {
      w.done({
        error: `the writing thread read back ${r.zero.length} pages at byte ${m.offset} for ` +
          `this record of ${w.count} pages`,
      });
    } else w.done(r);
  }

  /** The worker stops: the writing thread claims nothing more. */
  stop(): void {
    Atomics.store(this.claims, STOPPED, 1);
    for (const w of this.waiting.values()) clearTimeout(w.timer);
    this.waiting.clear();
  }
}

/**
 * Reads the framed PAGES record `offset .. offset + length` back from `file` into `scratch` and
 * returns its page work's result: its framing and CRC32C checked, its pages decompressed and
 * hashed. Every problem is an `{ error }` naming what is wrong (the worker names the record).
 */
export function readBackPageRecord(
  file: Deno.FsFile,
  offset: number,
  length: number,
  regions: readonly Region[],
  scratch: Uint8Array,
): PageDigests {
  if (length < RECORD_HEAD_SIZE + RECORD_TAIL_SIZE || length > scratch.length) {
    return { error: `a shared record of ${length} bytes cannot be a PAGES record` };
  }
  const bytes = scratch.subarray(0, length);
  file.seekSync(offset, Deno.SeekMode.Start);
  for (let got = 0; got < length;) {
    const n = file.readSync(bytes.subarray(got));
    if (n === null) return { error: `the output ends at byte ${offset + got}, inside the record` };
    got += n;
  }
  try {
    const head = decodeRecordHead(bytes, offset, -1);
    if (
      head.type !== RecordType.PAGES || RECORD_HEAD_SIZE + head.length + RECORD_TAIL_SIZE !== length
    ) {
      return { error: `the record read back is not the ${length}-byte PAGES record written` };
    }
    const end = length - RECORD_TAIL_SIZE;
    const stored = new DataView(bytes.buffer, bytes.byteOffset + end, 4).getUint32(0, true);
    const actual = crc32c(bytes.subarray(0, end));
    if (stored !== actual) {
      return {
        error: `record CRC32C mismatch (expected ${hex32(stored)}, actual ${hex32(actual)})`,
      };
    }
    const p = decodePageRecord(bytes.subarray(RECORD_HEAD_SIZE, end), [...regions], offset, -1);
    if (p.encoding === "zero") return { error: "a zero record among the shared records" };
    return digestPageData({
      encoding: p.encoding,
      data: p.data,
      count: p.pages.length,
      pageSize: regions[p.region].pageSize,
    });
  } catch (e) {
    if (e instanceof LsnapError) return { error: e.reason };
    throw e;
  }
}

class LocalOutputCheck implements OutputCheck {
  private readonly feed: OutputFeed;
  private readonly done: Promise<OutputCheckResult>;
  private length = 0;

  constructor(private readonly path: string | null) {
    this.feed = new OutputFeed(path === null ? null : Deno.openSync(path, { read: true }));
    this.done = checkOutput(this.feed);
    this.done.catch(() => {});
  }

  written(bytes: Uint8Array, handedOver = false): Promise<void> {
    this.length += bytes.length;
    if (this.path === null) this.feed.addChunk(handedOver ? bytes : bytes.slice());
    else this.feed.setWritten(this.length);
    return Promise.resolve();
  }

  pageRecord(): void {}

  readonly sharedRecords = 0;

  async finish(): Promise<OutputCheckResult> {
    this.feed.end();
    return await this.done;
  }

  stop(): void {
    this.feed.end();
  }
}

/** Chunk mode: bytes handed to the worker and not yet consumed, before the writer waits. */
const WORKER_WINDOW = 64 << 20;
/** File mode: the worker is told of new bytes every this many. */
const FILE_STEP = 4 << 20;

/** The read-back in `_output_check_worker.ts`. */
class WorkerOutputCheck implements OutputCheck {
  private readonly worker = takeReadBackWorker();
  private length = 0;
  private told = 0;
  private inFlight = 0;
  private waiters: (() => void)[] = [];
  private failure: Error | null = null;
  private readonly result: Promise<OutputCheckResult>;
  /** With a share: slot 0 STOPPED, then one slot per shared record (who does it). */
  private readonly claims: Int32Array | null = null;
  /** The shared records told so far: offset and framed length, in output order. */
  private readonly shared: number[] = [];
  /** Shared records whose page work this thread did. */
  sharedRecords = 0;

  constructor(private readonly path: string | null, private readonly share?: ShareOptions) {
    this.result = new Promise((resolve, reject) => {
      const fail = (e: Error) => {
        this.failure = e;
        this.wakeAll();
        reject(e);
      };
      this.worker.onmessage = (e) => {
        const m = e.data;
        if (m.ack !== undefined) {
          this.inFlight -= m.ack;
          if (this.inFlight <= WORKER_WINDOW) this.wakeAll();
        } else if (m.done !== undefined) {
          this.wakeAll();
          resolve(m.done);
        } else if (m.error !== undefined) {
          fail(new OutputReadBackError(m.error.message, m.error.offset ?? null));
        }
      };
      this.worker.onerror = (e) => {
        e.preventDefault();
        fail(new OutputReadBackError(`the read-back worker failed: ${e.message}`, null));
      };
    });
    this.result.catch(() => {});
    if (share !== undefined && share.maxRecords > 0) {
      this.claims = new Int32Array(new SharedArrayBuffer(4 * (1 + share.maxRecords)));
    }
    // A worker queues the messages sent before it listens.
    this.worker.postMessage({ start: { path, claims: this.claims } });
  }

  pageRecord(offset: number, length: number): void {
    if (this.claims === null || this.shared.length / 2 >= this.claims.length - 1) return;
    // Told before its bytes are written, so before the worker can reach it.
    if (this.share!.claimAll) Atomics.store(this.claims, 1 + this.shared.length / 2, BY_WRITER);
    this.shared.push(offset, length);
  }

  /**
   * This thread's share (see {@linkcode ShareOptions}): the shared records from the last back,
   * each claimed, read back from the file and its result posted, until the worker has claimed
   * the next one or has stopped. Every record claimed gets a result, an error included.
   */
  private takeShare(): void {
    const claims = this.claims!;
    const regions = this.share!.regions;
    const n = this.shared.length / 2;
    let longest = 0;
    for (let k = 0; k < n; k++) longest = Math.max(longest, this.shared[2 * k + 1]);
    const file = Deno.openSync(this.path!, { read: true });
    try {
      const scratch = new Uint8Array(longest);
      for (let k = n - 1; k >= 0; k--) {
        if (Atomics.load(claims, STOPPED) !== 0 || this.failure !== null) break;
        const slot = 1 + k;
        if (
          Atomics.compareExchange(claims, slot, FREE, BY_WRITER) !== FREE &&
          Atomics.load(claims, slot) !== BY_WRITER
        ) break;
        const offset = this.shared[2 * k];
        let result: PageDigests;
        try {
          result = readBackPageRecord(file, offset, this.shared[2 * k + 1], regions, scratch);
        } catch (e) {
          result = { error: `the record does not read back: ${(e as Error).message}` };
        }
        const m: SharedPageResult = { k, offset, result };
        const transfer = "zero" in result
          ? [result.zero.buffer as ArrayBuffer, result.hashes.buffer as ArrayBuffer]
          : [];
        this.worker.postMessage({ share: m }, transfer);
        this.sharedRecords++;
      }
    } finally {
      file.close();
    }
  }

  private wakeAll(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  async written(bytes: Uint8Array, handedOver = false): Promise<void> {
    if (this.failure !== null) throw this.failure;
    this.length += bytes.length;
    if (this.path !== null) {
      if (this.length - this.told >= FILE_STEP) {
        this.told = this.length;
        this.worker.postMessage({ written: this.length });
      }
      return;
    }
    const whole = handedOver && bytes.buffer instanceof ArrayBuffer && bytes.byteOffset === 0 &&
      bytes.byteLength === bytes.buffer.byteLength;
    const own = whole ? bytes : bytes.slice();
    this.inFlight += own.length;
    this.worker.postMessage({ chunk: own }, [own.buffer as ArrayBuffer]);
    while (this.inFlight > WORKER_WINDOW && this.failure === null) {
      await new Promise<void>((r) => this.waiters.push(r));
    }
    if (this.failure !== null) throw this.failure;
  }

  async finish(): Promise<OutputCheckResult> {
    this.worker.postMessage({ written: this.length, end: true });
    try {
      if (this.claims !== null) this.takeShare();
      return await this.result;
    } finally {
      this.worker.terminate();
    }
  }

  stop(): void {
    this.worker.terminate();
  }
}
