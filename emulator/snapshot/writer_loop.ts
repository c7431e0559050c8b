/**
 * The writer's half of the live snapshot engine: decides which page goes to the file next, takes
 * it from RAM or from a buffer slot, hands it to a {@linkcode PageSink} and frees what it held.
 * It runs on its own thread (a Worker) while the guest runs; it never reads CPU or device state.
 *
 * Order of service in `cow` (`README.md`, "Page states and how the invariants are kept"):
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
  CTRL_CHUNKS_DROPPED,
  CTRL_FINAL_DONE,
  CTRL_FINAL_READY,
  CTRL_FINAL_REQUEST,
  CTRL_FREE_SLOTS,
  CTRL_FREE_TAIL,
  CTRL_FRESH_SLOTS,
  CTRL_KICK,
  CTRL_PASS_READY,
  CTRL_PASS_REQUEST,
  CTRL_PREFAULTED,
  CTRL_PROGRESS,
  CTRL_QUEUE_HEAD,
  CTRL_QUEUE_TAIL,
  CTRL_REQUEST_PAGE,
  CTRL_STALL_US,
  CTRL_THROTTLE,
  CTRL_WRITER_STATE,
  SnapshotSession,
  WRITER_DONE,
  WRITER_FAILED,
  WRITER_RUNNING,
} from "./session.ts";
import type { SessionBuffers } from "./session.ts";
import { epochMs, type SnapshotTimeline, TimelineSampler } from "./metrics.ts";
import {
  CHUNK_DROPPED,
  CHUNK_LIVE,
  CHUNK_SHIFT,
  CHUNK_SLOTS,
  chunksFor,
  type SlotChunks,
} from "./slot_chunks.ts";

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
  /** The highest throttle precopy put on the guest, in percent of wall time asleep (0-99). */
  precopyThrottlePct: number;
  /** How the snapshot went, sampled by this loop; its times count from `timelineStartMs`. */
  timeline?: SnapshotTimeline;
  /** When this loop started, `epochMs()`. */
  timelineStartMs?: number;
}

/** Tuning of the writer loop. */
export interface WriterLoopOptions {
  /** Pages per sink call (compression works on batches). Default 16. */
  batchPages?: number;
  /** Precopy pauses once the pages dirty are at most this many, whatever the downtime allows.
   * Default 256. */
  precopyTargetPages?: number;
  /** Precopy passes after the first before the final pause whatever the dirty set. Default 20. */
  precopyMaxPasses?: number;
  /** Precopy's target downtime in ms (QEMU's `downtime-limit`): it pauses once the pages dirty
   * can be written in that time at the rate the last pass was written. Default 50. */
  precopyDowntimeMs?: number;
  /** The highest throttle precopy may put on the guest, in percent (0 disables auto-converge).
   * Default 99. */
  precopyMaxThrottlePct?: number;
  /** If given, counts each page written (for the "every page exactly once" check in tests). */
  audit?: Uint32Array;
  /** Lets the message carrying a copy-buffer chunk arrive (it is always sent before a slot of
   * it is queued). Default: a zero timeout. */
  waitForChunks?: () => Promise<void>;
}

/** Auto-converge: the first throttle, in percent of wall time the guest sleeps; each raise then
 * divides the share the guest runs by four (20, 80, 95, 98.75, 99), up to the maximum. QEMU
 * raises by 10 points a step (20, 30, ..., 99); a pass here takes about a second per 200 MiB
 * sent, so a steeper ramp resends the working set fewer times. */
export const PRECOPY_THROTTLE_INITIAL_PCT = 20;
/** A pass must leave at most this share of its pages dirty again, or the throttle goes up. */
export const PRECOPY_SHRINK_RATIO = 0.5;

/** The next throttle step after `pct` (see {@linkcode PRECOPY_THROTTLE_INITIAL_PCT}). */
export function nextThrottlePct(pct: number, maxPct: number): number {
  const next = pct === 0 ? PRECOPY_THROTTLE_INITIAL_PCT : 100 - (100 - pct) / 4;
  return Math.min(maxPct, next);
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
  readonly #downtimeMs: number;
  readonly #maxThrottlePct: number;
  readonly #audit: Uint32Array | undefined;
  /** Private copies of sweep pages: the page is saved once it is here, so the guest's wait on a
   * page the writer copies lasts one memcpy, not a compression and a write. */
  readonly #staging: Uint8Array;
  #metrics: WriterSideMetrics;
  /** The copy buffer's chunks, as this thread holds them (slot_chunks.ts). */
  readonly chunks: SlotChunks;
  readonly #waitForChunks: () => Promise<void>;
  #prefaulted = 0;
  /** The timeline's sampler, the pages saved so far and the guest's stall counter at the start. */
  readonly #timeline: TimelineSampler;
  readonly #startMs: number;
  #pagesSaved = 0;
  readonly #stall0: number;
  #prefaultWords: Int32Array | null = null;
  #prefaultChunk = -1;
  #sweepDone = false;

  constructor(
    buffers: SessionBuffers,
    ram: Uint8Array,
    gate: Int32Array,
    sink: PageSink,
    chunks: SlotChunks,
    options: WriterLoopOptions = {},
  ) {
    this.session = new SnapshotSession(buffers);
    this.chunks = chunks;
    this.#waitForChunks = options.waitForChunks ??
      (() => new Promise<void>((r) => setTimeout(r, 0)));
    this.ram = ram;
    this.gate = gate;
    this.sink = sink;
    this.#batch = Math.max(1, options.batchPages ?? 16);
    this.#targetPages = options.precopyTargetPages ?? 256;
    this.#maxPasses = options.precopyMaxPasses ?? 20;
    this.#downtimeMs = options.precopyDowntimeMs ?? 50;
    this.#maxThrottlePct = Math.max(0, Math.min(99, options.precopyMaxThrottlePct ?? 99));
    this.#audit = options.audit;
    this.#staging = new Uint8Array(4 * this.#batch * PAGE_SIZE);
    this.#startMs = epochMs();
    this.#timeline = new TimelineSampler(this.#startMs);
    this.#stall0 = Atomics.load(this.session.ctrl, CTRL_STALL_US);
    this.#metrics = {
      pagesTotal: this.session.pageCount,
      pagesZero: 0,
      pagesViaSweep: 0,
      pagesOnRequest: 0,
      pagesFromBuffer: 0,
      pagesResent: 0,
      precopyPasses: 0,
      pagesInFinalPause: 0,
      precopyThrottlePct: 0,
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
      this.#metrics.timeline = this.#timeline.finish(epochMs(), this.#counters());
      this.#metrics.timelineStartMs = this.#startMs;
      // Let go of the buffer's chunks before the guest can see the end (it then allocates new
      // ones, possibly with the same numbers).
      releaseTouchedChunks(this.chunks, ctrl);
      Atomics.store(ctrl, CTRL_WRITER_STATE, WRITER_DONE);
      return this.#metrics;
    } catch (error) {
      releaseTouchedChunks(this.chunks, ctrl);
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
        if (sweep >= pageCount) {
          // No page is protected any more, so the guest takes no slot from now on: every chunk
          // whose slots are all free can go back.
          this.#sweepDone = true;
          for (let c = 0; c < this.chunks.count; c++) this.#dropIfFree(c);
        }
        continue;
      }
      // Sweep done, queue empty, pages missing: the guest is copying some now. Wait for it.
      waitWhile(s.ctrl, CTRL_QUEUE_TAIL, tail, 100);
      this.#sample();
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
    let slot = this.#prefaulted;
    for (; slot < stop; slot++) {
      const c = slot >> CHUNK_SHIFT;
      if (c !== this.#prefaultChunk) {
        // The guest allocates chunks ahead of its slots; one not here yet is touched later.
        const view = this.chunks.view(c);
        if (view === undefined) break;
        this.#prefaultWords = new Int32Array(view.buffer);
        this.#prefaultChunk = c;
      }
      Atomics.add(this.#prefaultWords!, (slot & (CHUNK_SLOTS - 1)) * (PAGE_SIZE >> 2), 0);
    }
    if (slot > this.#prefaulted) {
      this.#prefaulted = slot;
      Atomics.store(s.ctrl, CTRL_PREFAULTED, slot);
    }
  }

  /** After the sweep: gives chunk `c` back if none of its slots is in use (slot_chunks.ts). */
  #dropIfFree(c: number): void {
    const chunks = this.chunks;
    if (chunks.state(c) !== CHUNK_LIVE || chunks.used(c) !== 0) return;
    chunks.setState(c, CHUNK_DROPPED);
    chunks.release(c);
    if (c === this.#prefaultChunk) {
      this.#prefaultWords = null;
      this.#prefaultChunk = -1;
    }
    Atomics.add(this.session.ctrl, CTRL_CHUNKS_DROPPED, 1);
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
      let data = this.chunks.slot(slot);
      // The guest sent the slot's chunk before queueing it: let that message in.
      while (data === undefined) {
        await this.#waitForChunks();
        data = this.chunks.slot(slot);
      }
      pages.push({ index, data, zero: isZeroPage(data, 0) });
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
    for (const slot of slots) this.chunks.addUsed(slot >> CHUNK_SHIFT, -1);
    Atomics.store(s.ctrl, CTRL_FREE_TAIL, freeTail);
    Atomics.add(s.ctrl, CTRL_FREE_SLOTS, n);
    s.bump(CTRL_PROGRESS);
    if (this.#sweepDone) {
      for (const slot of slots) this.#dropIfFree(slot >> CHUNK_SHIFT);
    }
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

  /**
   * Precopy with auto-converge (QEMU's `auto-converge` and `downtime-limit`, reimplemented):
   *
   * 1. a first pass writes every page while the guest runs;
   * 2. each further pass takes the pages dirtied since the previous one (the guest swaps the
   *    dirty log into the pass set between slices) and writes them while the guest runs on;
   * 3. after each pass the writer counts the pages dirty now (what a pause now would write). If
   *    they can be written within the target downtime at the rate this pass ran (or are at most
   *    `precopyTargetPages`), or `precopyMaxPasses` passes are done, the guest pauses for them;
   * 4. otherwise, if the guest dirtied more than half as many pages as the pass sent meanwhile,
   *    the throttle goes up a step: the guest sleeps that share of its wall time, so it dirties pages that much
   *    slower than the writer sends them.
   */
  async #runPrecopy(): Promise<void> {
    const s = this.session;
    const first = epochMs();
    await this.#firstPass();
    this.#timeline.pass(
      { pass: 0, pagesSent: s.pageCount, dirtyPages: countBits(s.dirty), throttlePct: 0 },
      first,
      epochMs(),
    );
    let throttle = 0;
    for (let pass = 1;; pass++) {
      Atomics.store(s.ctrl, CTRL_PASS_REQUEST, pass);
      s.bump(CTRL_KICK);
      while (Atomics.load(s.ctrl, CTRL_PASS_READY) !== pass) {
        waitWhile(s.ctrl, CTRL_PASS_READY, pass - 1, 100);
      }
      this.#metrics.precopyPasses++;
      const started = epochMs();
      const t0 = performance.now();
      const sent = await this.#writeSet(s.pass);
      const ms = performance.now() - t0;
      // Pages per millisecond, from a pass big enough to time; else assume the whole downtime
      // holds nothing more than the target.
      const rate = sent >= 64 && ms > 0 ? sent / ms : 0;
      const pending = countBits(s.dirty);
      this.#timeline.pass(
        { pass, pagesSent: sent, dirtyPages: pending, throttlePct: throttle },
        started,
        epochMs(),
      );
      const fits = Math.max(this.#targetPages, Math.floor(rate * this.#downtimeMs));
      if (pending <= fits || pass >= this.#maxPasses) break;
      // The guest dirtied more than half as many pages as the writer sent in the same time.
      if (pending > PRECOPY_SHRINK_RATIO * sent) {
        throttle = nextThrottlePct(throttle, this.#maxThrottlePct);
        Atomics.store(s.ctrl, CTRL_THROTTLE, Math.round(throttle * 10));
        this.#metrics.precopyThrottlePct = throttle;
      }
    }
    // The guest stops at its next slice boundary, puts the last dirty set in `pass`, saves the
    // device state for the host and waits for FINAL_DONE.
    Atomics.store(s.ctrl, CTRL_FINAL_REQUEST, 1);
    s.bump(CTRL_KICK);
    while (Atomics.load(s.ctrl, CTRL_FINAL_READY) === 0) {
      waitWhile(s.ctrl, CTRL_FINAL_READY, 0, 100);
    }
    const paused = epochMs();
    this.#metrics.precopyPasses++;
    this.#metrics.pagesInFinalPause = await this.#writeSet(s.pass);
    Atomics.store(s.ctrl, CTRL_FINAL_DONE, 1);
    Atomics.notify(s.ctrl, CTRL_FINAL_DONE);
    this.#timeline.pause("final", paused, epochMs());
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
    this.#pagesSaved += pages.length;
    this.#sample();
  }

  /** The timeline's counters now: a clock read and two atomic loads (writer thread only). */
  #counters(): { pagesWritten: number; bufferBytes: number; guestStallUs: number } {
    const s = this.session;
    const used = s.mode === "cow" ? s.slotCount - Atomics.load(s.ctrl, CTRL_FREE_SLOTS) : 0;
    return {
      pagesWritten: this.#pagesSaved,
      bufferBytes: Math.max(0, used) * PAGE_SIZE,
      // The counter wraps at 2^32 microseconds: its difference does not.
      guestStallUs: (Atomics.load(s.ctrl, CTRL_STALL_US) - this.#stall0) >>> 0,
    };
  }

  /** Offers the counters to the timeline (kept only when its interval has passed). */
  #sample(): void {
    this.#timeline.sample(epochMs(), this.#counters());
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
 * The writer's end of a snapshot: lets go of every copy-buffer chunk the snapshot touched (slots
 * below the guest's fresh count or the writer's prefault count) or dropped, exactly the chunks
 * the guest gives back when it sees the end (slot_chunks.ts). Call before marking the session
 * done or failed.
 */
export function releaseTouchedChunks(chunks: SlotChunks, ctrl: Int32Array): void {
  const touched = chunksFor(
    Math.max(Atomics.load(ctrl, CTRL_FRESH_SLOTS), Atomics.load(ctrl, CTRL_PREFAULTED)),
  );
  for (let c = 0; c < chunks.count; c++) {
    if (c < touched || chunks.state(c) === CHUNK_DROPPED) chunks.release(c);
  }
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
