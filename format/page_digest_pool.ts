/**
 * Worker threads that expand and hash the pages of PAGES records for the content digest (the work
 * of `digestPageData` in _page_digest.ts, whose types are the messages).
 *
 * @module
 */
import type { PageDigestMessage, PageDigests, PageJob, PageJobMessage } from "./_page_digest.ts";

/** Jobs a worker may hold at once before the submitter waits. */
const PER_WORKER = 4;

interface Slot {
  worker: Worker;
  ready: boolean;
  inFlight: number;
}

/**
 * Worker threads running `digestPageData` (_page_digest.ts). Each job's data is copied once into a buffer
 * of the pool (the caller's view may be reused as soon as `submit` returns), and the buffer travels
 * to the worker and back without further copies. With `inlineWhileLoading`, the caller does the
 * jobs until a worker has loaded, so a short input never waits for one.
 *
 * This module loads nothing heavy (no WebAssembly): a command can start the workers first and
 * load the rest while they load.
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
   * finishes) to the promise of its result; or to null, with `inlineWhileLoading` while no
   * worker has loaded yet: the caller then does the job itself.
   */
  async submit(job: PageJob): Promise<{ result: Promise<PageDigests> } | null> {
    let slot = this.pick();
    while (slot === null && this.failure === null) {
      if (this.inlineWhileLoading && !this.slots.some((s) => s.ready)) return null;
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

/** Inputs at least this large get page workers by default. */
const WORKER_THRESHOLD = 16 << 20;

/**
 * Starts the page workers a reader wants for these options: `workers` of them, or by default,
 * when `sizeHint` is at least 16 MiB, one fewer than the CPUs (at least 1, at most 3) that leave
 * the first jobs to the caller until they have loaded; none for a small input.
 */
export function startPageDigestPool(
  options: { workers?: number; sizeHint?: number } = {},
): PageDigestPool | undefined {
  let workers = options.workers;
  if (workers === undefined) {
    const big = options.sizeHint !== undefined && options.sizeHint >= WORKER_THRESHOLD;
    workers = big ? Math.min(3, Math.max(1, (navigator.hardwareConcurrency ?? 1) - 1)) : 0;
  }
  if (!Number.isInteger(workers) || workers < 0 || workers > 64) {
    throw new Error(`Cannot start page workers: ${workers} is not an integer in 0..64`);
  }
  // Explicit workers do every job (tests rely on it); default ones let the caller start alone.
  const inlineWhileLoading = options.workers === undefined;
  return workers > 0 ? new PageDigestPool(workers, { inlineWhileLoading }) : undefined;
}
