/**
 * The read-back of an output as it is written: the streaming checker (every rule of FORMAT.md:
 * each record's framing and CRC32C, the INDEX against the records, the trailer's counts, the file
 * digest and the content digest recomputed from the output's own records, the footer, the end of
 * the input), on a core of its own when the output is large. When the output is a file, its bytes
 * are read back from the file itself (what reached it, not what was meant for it) while it grows,
 * through the checker's one reused buffer; otherwise they are the chunks handed over.
 *
 * @module
 */
import { LsnapError } from "./errors.ts";
import { SnapshotChecker } from "./file_checks.ts";
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
export async function checkOutput(feed: ByteSource): Promise<OutputCheckResult> {
  try {
    return await runChecker(feed);
  } catch (e) {
    if (e instanceof OutputReadBackError) throw e;
    throw new OutputReadBackError((e as Error).message, e instanceof LsnapError ? e.offset : null);
  }
}

async function runChecker(feed: ByteSource): Promise<OutputCheckResult> {
  const checker = new SnapshotChecker(feed, {
    report: (e) => {
      throw e;
    },
    pages: "digest",
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
  /** No more bytes: the verdict. */
  finish(): Promise<OutputCheckResult>;
  /** Stops the check (on failure). */
  stop(): void;
}

/**
 * Starts the read-back of an output: of the file `path` (the output's temporary, being written)
 * or, with `path` null, of the chunks handed to `written` (which must not change afterwards); in
 * a worker thread (a core of its own) or in this thread.
 */
export function startOutputCheck(path: string | null, inWorker: boolean): OutputCheck {
  return inWorker ? new WorkerOutputCheck(path) : new LocalOutputCheck(path);
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
  private readonly worker = new Worker(
    new URL("./_output_check_worker.ts", import.meta.url).href,
    { type: "module" },
  );
  private length = 0;
  private told = 0;
  private inFlight = 0;
  private waiters: (() => void)[] = [];
  private failure: Error | null = null;
  private readonly result: Promise<OutputCheckResult>;

  constructor(private readonly path: string | null) {
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
    // A worker queues the messages sent before it listens.
    this.worker.postMessage({ start: { path } });
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
      return await this.result;
    } finally {
      this.worker.terminate();
    }
  }

  stop(): void {
    this.worker.terminate();
  }
}
