/**
 * The writer's half of the live snapshot engine: decides which page goes to the file next, takes
 * it from RAM or from a buffer slot, hands it to a {@linkcode PageSink} and frees what it held.
 * It runs on its own thread (a Worker) while the guest runs; it never reads CPU or device state.
 *
 * Order of service in `cow` (see `shared/LIVE_SNAPSHOT_NOTES.md`):
 * 1. a page the guest waits on (it found the buffer full): written alone, at once;
 * 2. the queue of guest-copied pages, oldest first; each slot is freed once its record is written;
 * 3. the sweep over RAM, skipping pages already saved or claimed by the guest.
 *
 * @module
 */

import {
  isZeroPage,
  openPage,
  PAGE_COPYING_WRITER,
  PAGE_PROTECTED,
  PAGE_SHIFT,
  PAGE_SIZE,
  tryMovePage,
} from "./page_state.ts";
import {
  CTRL_FINAL_DONE,
  CTRL_FINAL_READY,
  CTRL_FINAL_REQUEST,
  CTRL_FREE_SLOTS,
  CTRL_FREE_TAIL,
  CTRL_FRESH_SLOTS,
  CTRL_PASS_READY,
  CTRL_PASS_REQUEST,
  CTRL_PROGRESS,
  CTRL_QUEUE_HEAD,
  CTRL_QUEUE_TAIL,
  CTRL_REQUEST_PAGE,
  CTRL_WRITER_STATE,
  SnapshotSession,
  WRITER_DONE,
  WRITER_FAILED,
  WRITER_RUNNING,
} from "./session.ts";
import type { SessionBuffers } from "./session.ts";

/** One page handed to a sink. `data` is only valid until `writePages` returns. */
export interface PageToWrite {
  /** Page number (guest physical address = RAM base + index * PAGE_SIZE). */
  index: number;
  /** PAGE_SIZE bytes. */
  data: Uint8Array;
  /** True if every byte is zero. */
  zero: boolean;
}

/** Where the writer puts pages: a snapshot file, or a test's recorder. */
export interface PageSink {
  /**
   * Takes these pages; their `data` may be reused as soon as it returns (or its promise
   * settles). With `flush` the pages must be in the file by then, not only in a batch: the
   * writer is about to free their buffer slots or let a waiting guest store.
   */
  writePages(pages: PageToWrite[], flush: boolean): void | Promise<void>;
}

/** What the writer measured during one snapshot. */
export interface WriterSideMetrics {
  /** Pages of RAM. */
  pagesTotal: number;
  /** Pages found all zero at their first write and left out of the file (absent reads as zero). */
  pagesZero: number;
  /** Pages written by the sweep straight from RAM (cow), or in a first pass (precopy, stop). */
  pagesViaSweep: number;
  /** Pages the guest waited on and the writer served at once (cow, buffer full). */
  pagesOnRequest: number;
  /** Pages written from buffer slots (cow). */
  pagesFromBuffer: number;
  /** Pages written again because the guest dirtied them (precopy). */
  pagesResent: number;
  /** Precopy passes after the first, the final one included. */
  precopyPasses: number;
  /** Pages written in the final pause (precopy). */
  pagesInFinalPause: number;
}

/** Tuning of the writer loop. */
export interface WriterLoopOptions {
  /** Pages per sink call (compression works on batches). Default 16. */
  batchPages?: number;
  /** Precopy stops passing once a dirty set is at most this many pages. Default 256. */
  precopyTargetPages?: number;
  /** Precopy passes after the first before the final pause whatever the dirty set. Default 8. */
  precopyMaxPasses?: number;
  /** If given, counts each page written (for the "every page exactly once" check in tests). */
  audit?: Uint32Array;
}

/** Slots faulted in ahead of the guest's next fresh one (2 MiB), and at most per loop step. */
const PREFAULT_AHEAD = 512;
const PREFAULT_STEP = 64;

/** Blocks this thread until control word `index` differs from `value` (or `ms` pass). */
function waitWhile(ctrl: Int32Array, index: number, value: number, ms: number): void {
  Atomics.wait(ctrl, index, value, ms);
}

/** Runs one snapshot's writer side to completion. */
export class SnapshotWriterLoop {
  readonly session: SnapshotSession;
  readonly ram: Uint8Array;
  readonly gate: Int32Array;
  readonly sink: PageSink;
  readonly #batch: number;
  readonly #targetPages: number;
  readonly #maxPasses: number;
  readonly #audit: Uint32Array | undefined;
  /** Private copies of sweep pages: the page is saved once it is here, so the guest's wait on a
   * page the writer copies lasts one memcpy, not a compression and a write. */
  readonly #staging: Uint8Array;
  #metrics: WriterSideMetrics;
  readonly #slotWords: Int32Array;
  #prefaulted = 0;

  constructor(
    buffers: SessionBuffers,
    ram: Uint8Array,
    gate: Int32Array,
    sink: PageSink,
    options: WriterLoopOptions = {},
  ) {
    this.session = new SnapshotSession(buffers);
    this.ram = ram;
    this.gate = gate;
    this.sink = sink;
    this.#batch = Math.max(1, options.batchPages ?? 16);
    this.#targetPages = options.precopyTargetPages ?? 256;
    this.#maxPasses = options.precopyMaxPasses ?? 8;
    this.#audit = options.audit;
    this.#staging = new Uint8Array(4 * this.#batch * PAGE_SIZE);
    this.#slotWords = new Int32Array(buffers.slots);
    this.#metrics = {
      pagesTotal: this.session.pageCount,
      pagesZero: 0,
      pagesViaSweep: 0,
      pagesOnRequest: 0,
      pagesFromBuffer: 0,
      pagesResent: 0,
      precopyPasses: 0,
      pagesInFinalPause: 0,
    };
  }

  /**
   * Writes the snapshot's pages, then marks the session done (or failed, rethrowing the error
   * after releasing the guest so that it never waits on a dead writer).
   */
  async run(): Promise<WriterSideMetrics> {
    const ctrl = this.session.ctrl;
    try {
      switch (this.session.mode) {
        case "stop":
          await this.#firstPass();
          break;
        case "cow":
          await this.#runCow();
          break;
        case "precopy":
          await this.#runPrecopy();
          break;
      }
      Atomics.store(ctrl, CTRL_WRITER_STATE, WRITER_DONE);
      return this.#metrics;
    } catch (error) {
      Atomics.store(ctrl, CTRL_WRITER_STATE, WRITER_FAILED);
      throw error;
    } finally {
      Atomics.notify(ctrl, CTRL_WRITER_STATE);
      // A guest blocked on a slot or the final pause must not wait on a dead writer (one blocked
      // on a page it finds claimed sees WRITER_FAILED at its next timed wake-up).
      Atomics.add(ctrl, CTRL_PROGRESS, 1);
      Atomics.notify(ctrl, CTRL_PROGRESS);
      Atomics.store(ctrl, CTRL_FINAL_DONE, 1);
      Atomics.notify(ctrl, CTRL_FINAL_DONE);
    }
  }

  async #runCow(): Promise<void> {
    const s = this.session;
    const pageCount = s.pageCount;
    let written = 0;
    let sweep = 0;
    while (written < pageCount) {
      this.#prefaultSlots();
      const asked = Atomics.exchange(s.ctrl, CTRL_REQUEST_PAGE, -1);
      if (
        asked >= 0 && tryMovePage(this.session.states, asked, PAGE_PROTECTED, PAGE_COPYING_WRITER)
      ) {
        // The guest waits on this page with no slot to copy it into. With `--cow-buffer 0` its
        // store waits until the record is written, so the page is written before it is opened.
        const data = this.#staging.subarray(0, PAGE_SIZE);
        data.set(this.ram.subarray(asked << PAGE_SHIFT, (asked + 1) << PAGE_SHIFT));
        await this.#write([{ index: asked, data, zero: isZeroPage(data, 0) }], true, true);
        openPage(this.session.states, this.gate, asked);
        s.bump(CTRL_PROGRESS);
        this.#metrics.pagesOnRequest++;
        written++;
        continue;
      }
      const head = Atomics.load(s.ctrl, CTRL_QUEUE_HEAD);
      const tail = Atomics.load(s.ctrl, CTRL_QUEUE_TAIL);
      if (head !== tail) {
        written += await this.#drainQueue(head, tail);
        continue;
      }
      if (sweep < pageCount) {
        const [next, count] = await this.#sweepBatch(sweep);
        sweep = next;
        written += count;
        continue;
      }
      // Sweep done, queue empty, pages missing: the guest is copying some now. Wait for it.
      waitWhile(s.ctrl, CTRL_QUEUE_TAIL, tail, 100);
    }
  }

  /**
   * Faults in the memory of the next slots the guest will take fresh, a little ahead of it: a
   * fresh slot's first write costs a page fault (the kernel zeroes 4 KiB), which this thread
   * pays instead of the guest. An atomic add of 0 writes without changing anything, even if the
   * guest has meanwhile taken the slot and copies into it. Never beyond the buffer's size.
   */
  #prefaultSlots(): void {
    const s = this.session;
    const target = Math.min(s.slotCount, Atomics.load(s.ctrl, CTRL_FRESH_SLOTS) + PREFAULT_AHEAD);
    const stop = Math.min(target, this.#prefaulted + PREFAULT_STEP);
    for (let slot = this.#prefaulted; slot < stop; slot++) {
      Atomics.add(this.#slotWords, slot * (PAGE_SIZE >> 2), 0);
    }
    if (stop > this.#prefaulted) this.#prefaulted = stop;
  }

  /** Writes queue entries [head, tail) (at most four batches: one record, one flush) and frees
   * their slots. */
  async #drainQueue(head: number, tail: number): Promise<number> {
    const s = this.session;
    const n = Math.min(tail - head, 4 * this.#batch);
    const pages: PageToWrite[] = [];
    const slots: number[] = [];
    for (let i = 0; i < n; i++) {
      const at = ((head + i) % s.slotCount) * 2;
      const index = Atomics.load(s.queue, at);
      const slot = Atomics.load(s.queue, at + 1);
      const data = s.slots.subarray(slot * PAGE_SIZE, (slot + 1) * PAGE_SIZE);
      pages.push({ index, data, zero: isZeroPage(s.slots, slot * PAGE_SIZE) });
      slots.push(slot);
    }
    await this.#write(pages, true, true);
    this.#metrics.pagesFromBuffer += n;
    Atomics.store(s.ctrl, CTRL_QUEUE_HEAD, head + n);
    // Only now, with the records written, do the slots go back to the guest.
    let freeTail = Atomics.load(s.ctrl, CTRL_FREE_TAIL);
    for (const slot of slots) {
      Atomics.store(s.freeRing, freeTail % s.slotCount, slot);
      freeTail++;
    }
    Atomics.store(s.ctrl, CTRL_FREE_TAIL, freeTail);
    Atomics.add(s.ctrl, CTRL_FREE_SLOTS, n);
    s.bump(CTRL_PROGRESS);
    return n;
  }

  /** Claims and writes the next batch of still-protected pages from `from` on. */
  async #sweepBatch(from: number): Promise<[number, number]> {
    const s = this.session;
    const pages: PageToWrite[] = [];
    let p = from;
    while (p < s.pageCount && pages.length < this.#batch) {
      if (tryMovePage(s.states, p, PAGE_PROTECTED, PAGE_COPYING_WRITER)) {
        const k = pages.length;
        const data = this.#staging.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE);
        data.set(this.ram.subarray(p << PAGE_SHIFT, (p + 1) << PAGE_SHIFT));
        openPage(s.states, this.gate, p);
        pages.push({ index: p, data, zero: isZeroPage(data, 0) });
      }
      p++;
    }
    if (pages.length > 0) {
      await this.#write(pages, true, false);
      this.#metrics.pagesViaSweep += pages.length;
    }
    return [p, pages.length];
  }

  /** A whole pass over RAM without claiming pages: `stop` (guest paused) or precopy's first. */
  async #firstPass(): Promise<void> {
    const pageCount = this.session.pageCount;
    for (let p = 0; p < pageCount; p += this.#batch) {
      const pages = this.#readPages(p, Math.min(this.#batch, pageCount - p));
      await this.#write(pages, true, false);
      this.#metrics.pagesViaSweep += pages.length;
    }
  }

  #readPages(from: number, count: number): PageToWrite[] {
    const pages: PageToWrite[] = [];
    for (let k = 0; k < count; k++) {
      const p = from + k;
      const data = this.#staging.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE);
      data.set(this.ram.subarray(p << PAGE_SHIFT, (p + 1) << PAGE_SHIFT));
      pages.push({ index: p, data, zero: isZeroPage(data, 0) });
    }
    return pages;
  }

  async #runPrecopy(): Promise<void> {
    const s = this.session;
    await this.#firstPass();
    // Each pass takes the pages dirtied since the previous one and writes them while the guest
    // runs on. Once a pass is small (or there were enough of them), what the guest dirtied while
    // it was written is the final set, written during the pause.
    let previous = s.pageCount;
    for (let pass = 1;; pass++) {
      Atomics.store(s.ctrl, CTRL_PASS_REQUEST, pass);
      while (Atomics.load(s.ctrl, CTRL_PASS_READY) !== pass) {
        waitWhile(s.ctrl, CTRL_PASS_READY, pass - 1, 100);
      }
      this.#metrics.precopyPasses++;
      const dirty = await this.#writeSet(s.pass);
      // Converged, or not converging (the guest dirties as fast as the passes send): either way
      // more passes only cost time and disk, so pause for the rest.
      if (dirty <= this.#targetPages || pass >= this.#maxPasses || dirty > 0.9 * previous) break;
      previous = dirty;
    }
    // The guest stops at its next slice boundary, puts the last dirty set in `pass`, saves the
    // device state for the host and waits for FINAL_DONE.
    Atomics.store(s.ctrl, CTRL_FINAL_REQUEST, 1);
    while (Atomics.load(s.ctrl, CTRL_FINAL_READY) === 0) {
      waitWhile(s.ctrl, CTRL_FINAL_READY, 0, 100);
    }
    this.#metrics.precopyPasses++;
    this.#metrics.pagesInFinalPause = await this.#writeSet(s.pass);
    Atomics.store(s.ctrl, CTRL_FINAL_DONE, 1);
    Atomics.notify(s.ctrl, CTRL_FINAL_DONE);
  }

  /** Writes every page whose bit is set in `set` from RAM, zero pages included (they replace an
   * older copy). */
  async #writeSet(set: Int32Array): Promise<number> {
    let batch: number[] = [];
    let total = 0;
    const flush = async () => {
      const pages: PageToWrite[] = [];
      for (let k = 0; k < batch.length; k++) {
        const p = batch[k];
        const data = this.#staging.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE);
        data.set(this.ram.subarray(p << PAGE_SHIFT, (p + 1) << PAGE_SHIFT));
        pages.push({ index: p, data, zero: isZeroPage(data, 0) });
      }
      await this.#write(pages, false, false);
      this.#metrics.pagesResent += pages.length;
      total += pages.length;
      batch = [];
    };
    for (let w = 0; w < set.length; w++) {
      const bits = Atomics.load(set, w);
      if (bits === 0) continue;
      for (let b = 0; b < 32; b++) {
        if ((bits & (1 << b)) === 0) continue;
        batch.push((w << 5) | b);
        if (batch.length === this.#batch) await flush();
      }
    }
    if (batch.length > 0) await flush();
    return total;
  }

  /** Hands pages to the sink. A first write leaves zero pages out (absent reads as zero); a
   * resend must write them, since they replace an older non-zero copy. */
  async #write(pages: PageToWrite[], first: boolean, flush: boolean): Promise<void> {
    let out = pages;
    if (first) {
      out = pages.filter((p) => !p.zero);
      this.#metrics.pagesZero += pages.length - out.length;
    }
    if (this.#audit !== undefined && first) {
      for (const p of pages) this.#audit[p.index]++;
    }
    if (out.length > 0) await this.sink.writePages(out, flush);
  }
}

/** Number of set bits in a bitmap. */
export function countBits(bits: Int32Array): number {
  let n = 0;
  for (let w = 0; w < bits.length; w++) {
    let v = Atomics.load(bits, w);
    while (v !== 0) {
      v &= v - 1;
      n++;
    }
  }
  return n;
}

/**
 * Marks a session failed and wakes every waiter, for a writer that fails before (or after) its
 * loop runs: the guest then stops consulting the session and runs on.
 */
export function abandonSession(buffers: SessionBuffers): void {
  const ctrl = new Int32Array(buffers.control);
  Atomics.compareExchange(ctrl, CTRL_WRITER_STATE, WRITER_RUNNING, WRITER_FAILED);
  Atomics.notify(ctrl, CTRL_WRITER_STATE);
  Atomics.add(ctrl, CTRL_PROGRESS, 1);
  Atomics.notify(ctrl, CTRL_PROGRESS);
  Atomics.store(ctrl, CTRL_FINAL_DONE, 1);
  Atomics.notify(ctrl, CTRL_FINAL_DONE);
}
