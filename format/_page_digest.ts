/**
 * The per-page work of the content digest (FORMAT.md §10) for a reader that needs the digest but
 * not the pages (verify): expand a PAGES record's data, tell zero pages apart and hash the others
 * with XXH3-128. {@linkcode digestPageData} does it on the calling thread; a
 * {@linkcode PageDigestPool} does it in worker threads, so that a second core decompresses and
 * hashes while the reading thread checks CRCs and the file digest. The messages between the two
 * sides are the types of this module.
 *
 * @module
 */
import { isZero } from "./_bytes.ts";
import { zstdDecompressView } from "./_zstd.ts";
import { hashPageInto } from "./checksum.ts";

/** The data of one PAGES record (FORMAT.md §6.2), to be expanded and hashed. */
export interface PageJob {
  encoding: "raw" | "zstd";
  /** The record's data (raw pages, or one zstd frame). */
  data: Uint8Array;
  /** Number of entries. */
  count: number;
  pageSize: number;
}

/** Per entry: 1 when the page is all zero bytes, else 0; and the XXH3-128 of each non-zero page. */
export type PageDigests = { zero: Uint8Array; hashes: Uint8Array } | { error: string };

/** A job as posted to a worker: the data in a buffer of the pool, transferred both ways. */
export interface PageJobMessage {
  id: number;
  encoding: "raw" | "zstd";
  buffer: ArrayBuffer;
  length: number;
  count: number;
  pageSize: number;
}

/** A worker's answer; `buffer` comes back to the pool. */
export type PageDigestMessage =
  | { ready: true }
  | { id: number; buffer: ArrayBuffer; result: PageDigests };

/** Expands and hashes one record's pages on the calling thread (no copy of zstd output). */
export function digestPageData(job: PageJob): PageDigests {
  const size = job.count * job.pageSize;
  const data = job.encoding === "zstd" ? zstdDecompressView(job.data, size) : job.data;
  if (typeof data === "string") return { error: data };
  const zero = new Uint8Array(job.count);
  const hashes = new Uint8Array(job.count * 16);
  for (let i = 0, at = 0; i < job.count; i++, at += job.pageSize) {
    const page = data.subarray(at, at + job.pageSize);
    if (isZero(page)) zero[i] = 1;
    else hashPageInto(page, hashes, i * 16);
  }
  return { zero, hashes };
}

/** Jobs a worker may hold at once before the submitter waits. */
const PER_WORKER = 4;

interface Slot {
  worker: Worker;
  ready: boolean;
  inFlight: number;
}

/**
 * Worker threads running {@linkcode digestPageData}. Each job's data is copied once into a buffer
 * of the pool (the caller's view may be reused as soon as `submit` returns), and the buffer travels
 * to the worker and back without further copies. With `inlineWhileLoading`, jobs run on the
 * calling thread until a worker has loaded, so a short input never waits for one.
 */
export class PageDigestPool {
  private readonly slots: Slot[] = [];
  private readonly free: ArrayBuffer[] = [];
  private readonly waiting = new Map<
    number,
    { slot: Slot; resolve: (r: PageDigests) => void; reject: (e: Error) => void }
  >();
  private readonly room: (() => void)[] = [];
  private next = 0;
  private failure: Error | null = null;

  private readonly inlineWhileLoading: boolean;

  constructor(workers: number, options: { inlineWhileLoading?: boolean } = {}) {
    this.inlineWhileLoading = options.inlineWhileLoading ?? false;
    for (let i = 0; i < workers; i++) {
      const worker = new Worker(new URL("./_page_digest_worker.ts", import.meta.url).href, {
        type: "module",
      });
      const slot: Slot = { worker, ready: false, inFlight: 0 };
      worker.onmessage = (e: MessageEvent<PageDigestMessage>) => this.receive(slot, e.data);
      worker.onerror = (e) => {
        e.preventDefault();
        this.fail(new Error(`Cannot hash pages: a worker failed: ${e.message}`));
      };
      this.slots.push(slot);
    }
  }

  private receive(slot: Slot, m: PageDigestMessage): void {
    if ("ready" in m) {
      slot.ready = true;
      this.room.shift()?.();
      return;
    }
    const w = this.waiting.get(m.id);
    if (w === undefined) return;
    this.waiting.delete(m.id);
    slot.inFlight--;
    this.free.push(m.buffer);
    w.resolve(m.result);
    this.room.shift()?.();
  }

  private fail(e: Error): void {
    this.failure = e;
    for (const w of this.waiting.values()) w.reject(e);
    this.waiting.clear();
    for (const wake of this.room.splice(0)) wake();
  }

  private pick(): Slot | null {
    let best: Slot | null = null;
    for (const s of this.slots) {
      if (s.ready && s.inFlight < PER_WORKER && (best === null || s.inFlight < best.inFlight)) {
        best = s;
      }
    }
    return best;
  }

  private buffer(size: number): ArrayBuffer {
    const i = this.free.findIndex((b) => b.byteLength >= size);
    if (i >= 0) return this.free.splice(i, 1)[0];
    return new ArrayBuffer(Math.max(size, 2 << 20));
  }

  /**
   * Starts one job. Resolves once the job is accepted (when every worker is busy, after one
   * finishes) to the promise of its result.
   */
  async submit(job: PageJob): Promise<{ result: Promise<PageDigests> }> {
    let slot = this.pick();
    while (slot === null && this.failure === null) {
      if (this.inlineWhileLoading && !this.slots.some((s) => s.ready)) {
        return { result: Promise.resolve(digestPageData(job)) };
      }
      await new Promise<void>((wake) => this.room.push(wake));
      slot = this.pick();
    }
    if (this.failure !== null) return { result: Promise.reject(this.failure) };
    const s = slot!;
    const buffer = this.buffer(job.data.length);
    new Uint8Array(buffer, 0, job.data.length).set(job.data);
    const id = this.next++;
    s.inFlight++;
    const result = new Promise<PageDigests>((resolve, reject) => {
      this.waiting.set(id, { slot: s, resolve, reject });
    });
    const message: PageJobMessage = {
      id,
      encoding: job.encoding,
      buffer,
      length: job.data.length,
      count: job.count,
      pageSize: job.pageSize,
    };
    s.worker.postMessage(message, [buffer]);
    return { result };
  }

  /** Stops the workers; jobs still running are rejected. */
  close(): void {
    for (const s of this.slots) s.worker.terminate();
    this.slots.length = 0;
    this.fail(new Error("Cannot hash pages: the pool was closed"));
  }
}
