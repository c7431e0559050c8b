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
 * A diff (incremental snapshot) saves only the pages of the job's frozen dirty set (the pages
 * stored to since the previous snapshot's instant): the sweep, `stop`'s pass and precopy's first
 * pass go over that set alone, and the guest copies aside only pages in it.
 *
 * @module
 */

import { isZeroPage, PAGE_SIZE, releasePage, tryClaimPage } from "./page_state.ts";
import { canDiscardPages, discardPages } from "./discard_pages.ts";
import { readThreadCpu } from "./metrics.ts";
import {
  CTRL_CHUNKS_DROPPED,
  CTRL_FINAL_DONE,
  CTRL_FINAL_READY,
  CTRL_FINAL_REQUEST,
  CTRL_FREE_SLOTS,
  CTRL_FREE_TAIL,
  CTRL_FRESH_SLOTS,
  CTRL_GUEST_THREAD,
  CTRL_GUEST_WAITING,
  CTRL_KEPT_CHUNKS,
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
  /** True if every byte is zero. A zero page that is not a resend may be left out of the file
   * (absent reads as zero). */
  zero: boolean;
  /** The copy-buffer slot the page comes from (cow: the guest copied it aside), else -1. Its
   * slot is freed only after `writePages` with `flush` has returned. */
  slot: number;
  /** True for a page written again (precopy): it replaces an older copy, zero or not. */
  resend: boolean;
}

/** Where the writer puts pages: a snapshot file, or a test's recorder. */
export interface PageSink {
  /**
   * Takes these pages (every page the writer saves, zero ones included); their `data` may be
   * reused as soon as it returns (or its promise settles). With `flush` the pages must be in the
   * file by then, not only in a batch: the writer is about to free their buffer slots or let a
   * waiting guest store.
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
  /** For a diff, the pages of its frozen dirty set (stored to since the parent's instant); -1
   * for a full snapshot. Precopy resends more on top. */
  diffPages: number;
  /** Precopy passes after the first, the final one included. */
  precopyPasses: number;
  /** Pages written in the final pause (precopy). */
  pagesInFinalPause: number;
  /** The highest throttle precopy put on the guest, in percent of wall time asleep (0-99). */
  precopyThrottlePct: number;
  /** Time this thread slept to leave a core to a guest that was waiting for one (cow),
   * milliseconds. */
  writerYieldMs: number;
  /** How the snapshot went, sampled by this loop; its times count from `timelineStartMs`. */
  timeline?: SnapshotTimeline;
  /** When this loop started, `epochMs()`. */
  timelineStartMs?: number;
}

/** One precopy pass, as the writer saw it (`--metrics`, live migration's progress lines). */
export interface PrecopyPassReport {
  /** 0 for the first pass over all of RAM. */
  pass: number;
  /** Pages this pass wrote. */
  pagesSent: number;
  /** Wall time of the pass, milliseconds. */
  ms: number;
  /** Pages dirty when it ended (what the next pass or the final pause must send). */
  dirtyPages: number;
  /** The auto-converge throttle during the pass, percent. */
  throttlePct: number;
  /** The final pause comes next. */
  last: boolean;
  /** The drain in the estimate, milliseconds: the wait at the end of the last pass big enough
   * to time (this one, if it was) for the stream's consumer to take the last of it (the `drain`
   * hook; 0 without one). */
  drainMs: number;
  /** The switch-over's fixed cost as this pass sees it, milliseconds: `precopyFixedMs` times how
   * much longer than its CPU time the writer's work in the pass took (a machine with more busy
   * threads than cores stretches every part of a switch-over so), at most 10 times. */
  fixedMs: number;
  /** What a switch-over now would stop the guest for, milliseconds: the dirty pages at the
   * writer's pace in the last pass big enough to time, that pass's drain and `fixedMs` (the
   * figure the decision to switch over compares with the target). */
  estimatedMs: number;
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
  /** What the switch-over costs on top of the dirty pages, ms (see `PrecopyOptions.fixedMs`).
   * Default 0. */
  precopyFixedMs?: number;
  /** The highest throttle precopy may put on the guest, in percent (0 disables auto-converge).
   * Default 99. */
  precopyMaxThrottlePct?: number;
  /** If given, counts each page written (for the "every page exactly once" check in tests). */
  audit?: Uint32Array;
  /** Lets the message carrying a copy-buffer chunk arrive (it is always sent before a slot of
   * it is queued). Default: a zero timeout. */
  waitForChunks?: () => Promise<void>;
  /** Gives the memory of a copy-buffer chunk's pages back to the OS, keeping the chunk; false if
   * it could not. Default: {@linkcode discardPages} where it works (Linux, FFI allowed), else
   * null: chunks are let go of, and their memory returns once both threads collect garbage. */
  discardPages?: ((bytes: Uint8Array) => boolean) | null;
  /** During `cow`, step aside (sleep) when the guest thread spends more than a tenth of its
   * time runnable but without a core, as long as it does not wait on this thread (Linux: the
   * guest's /proc schedstat). Default true. */
  yieldToGuest?: boolean;
  /** Called as each precopy pass ends (live migration prints one line per pass). */
  onPass?: (report: PrecopyPassReport) => void;
  /** Awaited at the end of each precopy pass, once its pages are flushed to the sink, while the
   * guest still runs, before the pages dirty are counted: a live migration waits there until the
   * destination has restored everything sent. The pass's time (so its rate) then runs to the
   * destination, and the final pause starts with nothing in flight. */
  drain?: () => Promise<void>;
  /** Runs once every page is written, before the job is marked done: the guest sees the job end
   * (and its dirty set is dropped) only if this succeeds. The file writer completes the file
   * here, so that a job whose file failed to close counts as failed. */
  beforeDone?: () => Promise<void>;
}

/** A precopy pass must send at least this many pages to be timed (its rate then estimates the
 * final pause's). */
const MIN_TIMED_PASS = 64;
/** The writer's CPU time in a pass below which its wait for a core is not weighed (Linux
 * schedstat counts in nanoseconds, but a few ms of work say little). */
const CONTENTION_MIN_RUN_NS = 2e6;
/** The most the fixed cost is stretched for a machine's contention. */
const MAX_STRETCH = 10;

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

/** Slots faulted in ahead of the guest's next fresh one (2 MiB, one chunk), and at most per loop
 * step. Where chunks are huge pages (slot_chunks.ts) the first touch of a chunk faults all of it. */
export const PREFAULT_AHEAD = 512;
const PREFAULT_STEP = 64;

/** The writer steps aside when the guest thread waited for a core more than this share of the
 * time since it last looked (every {@linkcode YIELD_CHECK_MS}), and sleeps as long as the guest
 * waited, {@linkcode YIELD_MAX_MS} at most: so it never sleeps more than half the time. */
const YIELD_GUEST_WAIT_SHARE = 0.1;
const YIELD_CHECK_MS = 5;
const YIELD_MAX_MS = 5;

/** How long the writer waits, once its sweep is over and the queue empty, for the pages it has
 * not seen yet before it fails the snapshot (they are copied in microseconds; see #runCow). */
const MISSING_PAGES_MS = 10_000;

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
  readonly #fixedMs: number;
  readonly #maxThrottlePct: number;
  readonly #audit: Uint32Array | undefined;
  readonly #onPass: ((report: PrecopyPassReport) => void) | undefined;
  readonly #drain: (() => Promise<void>) | undefined;
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
  readonly #discard: ((bytes: Uint8Array) => boolean) | null;
  /** The guest thread's id, while this thread watches its waits for a core (0: it does not). */
  readonly #guestThread: number;
  #lastLook = 0;
  #guestWaitNs = 0;
  /** Chunks whose pages this job discarded already. */
  readonly #discarded: Uint8Array;
  readonly #beforeDone: (() => Promise<void>) | undefined;

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
    this.#fixedMs = Math.max(0, options.precopyFixedMs ?? 0);
    this.#maxThrottlePct = Math.max(0, Math.min(99, options.precopyMaxThrottlePct ?? 99));
    this.#audit = options.audit;
    this.#onPass = options.onPass;
    this.#drain = options.drain;
    this.#beforeDone = options.beforeDone;
    this.#discard = options.discardPages !== undefined
      ? options.discardPages
      : canDiscardPages()
      ? discardPages
      : null;
    this.#discarded = new Uint8Array(this.chunks.count);
    this.#guestThread = options.yieldToGuest === false
      ? 0
      : Atomics.load(this.session.ctrl, CTRL_GUEST_THREAD);
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
      diffPages: this.session.diff ? countBits(this.session.frozen) : -1,
      precopyPasses: 0,
      pagesInFinalPause: 0,
      precopyThrottlePct: 0,
      writerYieldMs: 0,
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
          if (this.session.diff) await this.#writeSet(this.session.frozen, true);
          else await this.#firstPass();
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
      // Give the buffer's memory back before the guest can see the end: discard the pages of
      // the chunks and keep them (the guest keeps them too), or let go of them (the guest then
      // allocates new ones, possibly with the same numbers).
      if (this.#discardTouchedChunks()) Atomics.store(ctrl, CTRL_KEPT_CHUNKS, 1);
      else releaseTouchedChunks(this.chunks, ctrl);
      if (this.#beforeDone !== undefined) await this.#beforeDone();
      Atomics.store(ctrl, CTRL_WRITER_STATE, WRITER_DONE);
      return this.#metrics;
    } catch (error) {
      releaseTouchedChunks(this.chunks, ctrl);
      Atomics.store(ctrl, CTRL_KEPT_CHUNKS, 0);
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
    // A diff saves the pages of its frozen set, each exactly once; a full snapshot every page.
    const target = s.diff ? this.#metrics.diffPages : pageCount;
    const only = s.diff ? s.frozen : null;
    let written = 0;
    let sweep = 0;
    let stuckSince = 0;
    while (written < target) {
      // A little prefaulting per step, and the queue drained before the sweep: a slot freed
      // after its record is written is the guest's next one, and its memory is warm. While a
      // guest copies pages faster than this thread writes them (storing all over RAM right
      // after the instant), draining is what gives it warm slots: faulting fresh ones in ahead
      // costs about what compressing a page does (BENCHMARKS.md) and writes nothing.
      this.#prefaultSlots(PREFAULT_STEP);
      this.#yieldToGuest();
      const asked = Atomics.exchange(s.ctrl, CTRL_REQUEST_PAGE, -1);
      if (asked >= 0 && tryClaimPage(this.gate, asked, s.generation)) {
        // The guest waits on this page with no slot to copy it into. With `--cow-buffer 0` its
        // store waits until the record is written, so the page is written before it is opened.
        const data = this.#staging.subarray(0, PAGE_SIZE);
        data.set(this.ram.subarray(asked * PAGE_SIZE, (asked + 1) * PAGE_SIZE));
        await this.#write(
          [{ index: asked, data, zero: isZeroPage(data, 0), slot: -1, resend: false }],
          true,
          true,
        );
        releasePage(this.gate, asked);
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
        const [next, count] = await this.#sweepBatch(sweep, only);
        sweep = next;
        written += count;
        if (sweep >= pageCount) {
          // No page is protected any more, so the guest takes no slot from now on: every chunk
          // whose slots are all free can go back.
          this.#sweepDone = true;
          for (let c = 0; c < this.chunks.extent; c++) this.#dropIfFree(c);
        }
        continue;
      }
      // Sweep done, queue empty, pages missing: the guest is copying some now (a copy takes
      // microseconds). Wait for it, within a bound: a page nobody saves would be a bug, and the
      // snapshot fails with it rather than wait forever.
      if (stuckSince === 0) stuckSince = performance.now();
      else if (performance.now() - stuckSince > MISSING_PAGES_MS) {
        throw new Error(
          `Cannot finish the snapshot: ${target - written} of ${target} pages were never ` +
            `saved (the sweep is over, no copy is queued, none came for ${MISSING_PAGES_MS} ms)`,
        );
      }
      waitWhile(s.ctrl, CTRL_QUEUE_TAIL, tail, 100);
      if (Atomics.load(s.ctrl, CTRL_QUEUE_TAIL) !== tail) stuckSince = 0;
      this.#sample();
    }
  }

  /**
   * Faults in the memory of up to `step` of the next slots the guest will take fresh, at most
   * {@linkcode PREFAULT_AHEAD} ahead of it and never beyond the buffer's size: a fresh slot's
   * first write costs a page fault (the kernel zeroes 4 KiB), which this thread pays instead of
   * the guest. An atomic add of 0 writes without changing anything, even if the guest has
   * meanwhile taken the slot and copies into it.
   */
  #prefaultSlots(step: number): void {
    const s = this.session;
    const fresh = Atomics.load(s.ctrl, CTRL_FRESH_SLOTS);
    const target = Math.min(s.slotCount, fresh + PREFAULT_AHEAD);
    // Slots below the guest's fresh count are taken: its copy has touched them.
    const from = Math.max(this.#prefaulted, fresh);
    let slot = from;
    const stop = Math.min(target, slot + step);
    for (; slot < stop; slot++) {
      const c = slot >> CHUNK_SHIFT;
      if (c !== this.#prefaultChunk) {
        // The guest allocates chunks ahead of its slots; one not here yet is touched later.
        const view = this.chunks.view(c);
        if (view === undefined) break;
        this.#prefaultWords = new Int32Array(view.buffer, view.byteOffset, view.byteLength >> 2);
        this.#prefaultChunk = c;
      }
      Atomics.add(this.#prefaultWords!, (slot & (CHUNK_SLOTS - 1)) * (PAGE_SIZE >> 2), 0);
      // Tell the guest often (it counts the copies it makes into memory still cold).
      if ((slot & 15) === 15) Atomics.store(s.ctrl, CTRL_PREFAULTED, slot + 1);
    }
    if (slot > this.#prefaulted) {
      this.#prefaulted = slot;
      Atomics.store(s.ctrl, CTRL_PREFAULTED, slot);
    }
  }

  /**
   * On a machine with fewer free cores than busy threads, this thread and the guest's take
   * turns: the guest then runs at a fraction of its speed while the snapshot is written. When
   * the guest thread has waited for a core more than {@linkcode YIELD_GUEST_WAIT_SHARE} of the
   * time since the last look, this thread sleeps as long as the guest waited (capped), unless
   * the guest waits on it (a page, a slot: then it must run). The snapshot takes longer; the
   * guest keeps more of its speed, which is what a live snapshot is for. Each look reads the
   * guest's /proc schedstat (Linux; elsewhere the writer never steps aside).
   */
  #yieldToGuest(): void {
    if (this.#guestThread === 0) return;
    const now = performance.now();
    if (now - this.#lastLook < YIELD_CHECK_MS) return;
    const cpu = readThreadCpu(this.#guestThread);
    if (cpu === null) return;
    const waitedMs = (cpu.waitNs - this.#guestWaitNs) / 1e6;
    const first = this.#lastLook === 0;
    const elapsed = now - this.#lastLook;
    this.#lastLook = now;
    this.#guestWaitNs = cpu.waitNs;
    const ctrl = this.session.ctrl;
    // Not while the guest waits on this thread, nor while pages it copied aside wait in the
    // queue: their slots, once written and freed, are the guest's next ones, already faulted in
    // (a slot of fresh memory costs the guest a page fault, BENCHMARKS.md).
    if (
      first || waitedMs <= YIELD_GUEST_WAIT_SHARE * elapsed ||
      Atomics.load(ctrl, CTRL_GUEST_WAITING) !== 0 || Atomics.load(ctrl, CTRL_REQUEST_PAGE) >= 0 ||
      Atomics.load(ctrl, CTRL_QUEUE_HEAD) !== Atomics.load(ctrl, CTRL_QUEUE_TAIL)
    ) return;
    // Woken at once if the guest starts waiting on this thread (guest_side.ts #stall).
    Atomics.wait(ctrl, CTRL_GUEST_WAITING, 0, Math.min(YIELD_MAX_MS, waitedMs));
    this.#lastLook = performance.now();
    this.#metrics.writerYieldMs += this.#lastLook - now;
    // The next look judges the time after the sleep only, and at least YIELD_CHECK_MS of work
    // comes before another sleep.
    this.#guestWaitNs = readThreadCpu(this.#guestThread)?.waitNs ?? this.#guestWaitNs;
  }

  /** After the sweep (no slot will be taken any more): gives chunk `c`'s memory back if none of
   * its slots is in use: discards its pages and keeps it, or drops it (slot_chunks.ts). */
  #dropIfFree(c: number): void {
    const chunks = this.chunks;
    if (chunks.state(c) !== CHUNK_LIVE || chunks.used(c) !== 0) return;
    if (this.#discard !== null) {
      const view = chunks.view(c);
      if (this.#discarded[c] === 0 && view !== undefined && this.#discard(view)) {
        this.#discarded[c] = 1;
        return;
      }
      if (this.#discarded[c] === 1) return;
    }
    chunks.setState(c, CHUNK_DROPPED);
    chunks.release(c);
    if (c === this.#prefaultChunk) {
      this.#prefaultWords = null;
      this.#prefaultChunk = -1;
    }
    Atomics.add(this.session.ctrl, CTRL_CHUNKS_DROPPED, 1);
  }

  /**
   * At the end of a job, with discarding available: discards the pages of every chunk the job
   * touched (all their slots are free: every page is in the file) and keeps the chunks. False,
   * with nothing done, if discarding is not available or a chunk was dropped already.
   */
  #discardTouchedChunks(): boolean {
    const chunks = this.chunks;
    if (this.#discard === null) return false;
    const ctrl = this.session.ctrl;
    const touched = chunksFor(
      Math.max(Atomics.load(ctrl, CTRL_FRESH_SLOTS), Atomics.load(ctrl, CTRL_PREFAULTED)),
    );
    for (let c = 0; c < chunks.extent; c++) {
      if (chunks.state(c) === CHUNK_DROPPED) return false;
    }
    for (let c = 0; c < touched; c++) {
      if (this.#discarded[c] === 1) continue;
      const view = chunks.view(c);
      // A chunk this thread does not hold (its message is late) was never touched here; the
      // guest's copies into it are written and freed, so its pages are simply kept.
      if (view !== undefined && !this.#discard(view)) return false;
      this.#discarded[c] = 1;
    }
    return true;
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
      pages.push({ index, data, zero: isZeroPage(data, 0), slot, resend: false });
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

  /** Claims and writes the next batch of still-protected pages from `from` on (only those in
   * `only`, if given). */
  async #sweepBatch(from: number, only: Int32Array | null): Promise<[number, number]> {
    const s = this.session;
    const pages: PageToWrite[] = [];
    let p = from;
    while (p < s.pageCount && pages.length < this.#batch) {
      if (only !== null) {
        p = nextInSet(only, p, s.pageCount);
        if (p >= s.pageCount) break;
      }
      if (tryClaimPage(this.gate, p, s.generation)) {
        // Copy 1 of 2 of a swept page (copy 2 is the sink's into the file's batch): into
        // staging, so that the page is saved, and a guest storing to it waits for one memcpy,
        // not for compression. Consecutive, so the sink hands the batch on without gathering.
        const k = pages.length;
        const data = this.#staging.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE);
        data.set(this.ram.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE));
        releasePage(this.gate, p, s.ctrl, CTRL_GUEST_WAITING);
        pages.push({ index: p, data, zero: isZeroPage(data, 0), slot: -1, resend: false });
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
      data.set(this.ram.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE));
      pages.push({ index: p, data, zero: isZeroPage(data, 0), slot: -1, resend: false });
    }
    return pages;
  }

  /**
   * Precopy with auto-converge (QEMU's `auto-converge` and `downtime-limit`, reimplemented):
   *
   * 1. a first pass writes every page while the guest runs;
   * 2. each further pass takes the pages dirtied since the previous one (the guest swaps the
   *    dirty log into the pass set between slices) and writes them while the guest runs on;
   * 3. a pass ends once its pages are flushed and, with a `drain` hook (a live migration), once
   *    the consumer has taken them all: nothing is left in flight, and the pass's time is split
   *    in the writer's part (`W`, pages read, compressed and handed on, at the pace the
   *    consumer takes them once the windows between are full) and the drain (`D`, the last
   *    bytes' way to the consumer);
   * 4. then the writer counts the pages dirty now (what a pause now would write: those dirtied
   *    while the pass drained included) and estimates the pause as `dirty × W / sent + D +
   *    precopyFixedMs × stretch`, from the last pass big enough to time: the final pause too
   *    writes its pages at the writer's pace and then waits for the last of them to arrive;
   *    `stretch` is how much longer than its CPU time the writer's part of the pass took (Linux
   *    schedstat: the rest it waited for a core), for the fixed part is thread work and
   *    hand-offs that a machine with more busy threads than cores stretches alike. If that fits
   *    the target downtime, or `precopyMaxPasses` passes are done, or they are at most
   *    `precopyTargetPages` and no pass could help (nothing timed yet, or the drain and the
   *    fixed cost alone exceed the target), the guest pauses for them; otherwise another pass
   *    follows;
   * 5. if the guest dirtied more than half as many pages as the pass sent meanwhile, the
   *    throttle goes up a step: the guest sleeps that share of its wall time, so it dirties
   *    pages that much slower than the writer sends them.
   */
  async #runPrecopy(): Promise<void> {
    const s = this.session;
    const first = epochMs();
    let cpu = readThreadCpu();
    let firstSent = s.pageCount;
    if (s.diff) firstSent = await this.#writeSet(s.frozen, true);
    else await this.#firstPass();
    const firstWritten = epochMs();
    // How much longer than its CPU time this thread's work took: it waited for a core the rest.
    let stretch = 1;
    const contention = (from: typeof cpu) => {
      const to = readThreadCpu();
      if (from !== null && to !== null) {
        const run = to.runNs - from.runNs;
        const wait = to.waitNs - from.waitNs;
        if (run >= CONTENTION_MIN_RUN_NS) {
          stretch = Math.min(MAX_STRETCH, Math.max(1, (run + wait) / run));
        }
      }
    };
    contention(cpu);
    const firstDrainMs = await this.#endPass();
    const firstEnd = epochMs();
    const dirty0 = countBits(s.dirty);
    this.#timeline.pass(
      { pass: 0, pagesSent: firstSent, dirtyPages: dirty0, throttlePct: 0 },
      first,
      firstEnd,
    );
    // The last pass big enough to time: ms per page of the writer's part, and its drain.
    let perPage = 0;
    let drainMs = 0;
    if (firstSent >= MIN_TIMED_PASS) {
      perPage = (firstWritten - first) / firstSent;
      drainMs = firstDrainMs;
    }
    // A pause now: its pages at the writer's pace, the last one's way, the fixed cost.
    const estimate = (dirty: number) =>
      (perPage > 0 ? dirty * perPage + drainMs : 0) + this.#fixedMs * stretch;
    this.#onPass?.({
      pass: 0,
      pagesSent: firstSent,
      ms: firstEnd - first,
      dirtyPages: dirty0,
      throttlePct: 0,
      last: false, // a second pass always follows
      drainMs,
      fixedMs: this.#fixedMs * stretch,
      estimatedMs: estimate(dirty0),
    });
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
      cpu = readThreadCpu();
      const sent = await this.#writeSet(s.pass);
      const writtenMs = performance.now() - t0;
      contention(cpu);
      const drained = await this.#endPass();
      const ms = performance.now() - t0;
      // A pass too small to time keeps the last figures; with none, the whole downtime is
      // assumed to hold nothing more than the target.
      if (sent >= MIN_TIMED_PASS) {
        perPage = writtenMs / sent;
        drainMs = drained;
      }
      const pending = countBits(s.dirty);
      this.#timeline.pass(
        { pass, pagesSent: sent, dirtyPages: pending, throttlePct: throttle },
        started,
        epochMs(),
      );
      const estimatedMs = estimate(pending);
      // Few pages left stop the passes only where another pass cannot help: nothing is timed,
      // or what is over the target is the drain and the fixed cost, not the pages.
      const few = pending <= this.#targetPages && (perPage === 0 || estimate(0) > this.#downtimeMs);
      const last = few || (perPage > 0 && estimatedMs <= this.#downtimeMs) ||
        pass >= this.#maxPasses;
      this.#onPass?.({
        pass,
        pagesSent: sent,
        ms,
        dirtyPages: pending,
        throttlePct: throttle,
        last,
        drainMs,
        fixedMs: this.#fixedMs * stretch,
        estimatedMs,
      });
      if (last) break;
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

  /** The end of a precopy pass with a `drain` hook: its pages flushed into the sink, then the
   * hook awaited (the consumer has taken them). Resolves to the time both took, milliseconds
   * (0 without a hook): the final pause pays both for its last pages too. */
  async #endPass(): Promise<number> {
    if (this.#drain === undefined) return 0;
    const t0 = performance.now();
    await this.sink.writePages([], true);
    await this.#drain();
    return performance.now() - t0;
  }

  /** Writes every page whose bit is set in `set` from RAM: as resends, zero pages included
   * (they replace an older copy), or with `first` as each page's first write (a diff's pass). */
  async #writeSet(set: Int32Array, first = false): Promise<number> {
    let batch: number[] = [];
    let total = 0;
    const flush = async () => {
      const pages: PageToWrite[] = [];
      for (let k = 0; k < batch.length; k++) {
        const p = batch[k];
        const data = this.#staging.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE);
        data.set(this.ram.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE));
        pages.push({ index: p, data, zero: isZeroPage(data, 0), slot: -1, resend: !first });
      }
      await this.#write(pages, first, false);
      if (first) this.#metrics.pagesViaSweep += pages.length;
      else this.#metrics.pagesResent += pages.length;
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

  /** Hands pages to the sink and counts them (`first`: each page's first write; the zero ones
   * of those the sink leaves out of the file). */
  async #write(pages: PageToWrite[], first: boolean, flush: boolean): Promise<void> {
    if (first) {
      for (const p of pages) {
        if (p.zero) this.#metrics.pagesZero++;
        if (this.#audit !== undefined) this.#audit[p.index]++;
      }
    }
    if (pages.length > 0) await this.sink.writePages(pages, flush);
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

/**
 * The first page at or after `from` whose bit is set in `set`, or `end` if none before it.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { nextInSet } from "./writer_loop.ts";
 * const set = new Int32Array(new SharedArrayBuffer(8)); // pages 0..63
 * set[0] = 1 << 5;
 * set[1] = 1 << 31; // page 63
 * assertEquals(nextInSet(set, 0, 64), 5);
 * assertEquals(nextInSet(set, 6, 64), 63);
 * assertEquals(nextInSet(set, 6, 40), 40);
 * ```
 */
export function nextInSet(set: Int32Array, from: number, end: number): number {
  let p = from;
  while (p < end) {
    const w = p >>> 5;
    const bits = Atomics.load(set, w) >>> (p & 31);
    if (bits === 0) {
      p = (w + 1) << 5;
      continue;
    }
    return Math.min(end, p + (31 - Math.clz32(bits & -bits)));
  }
  return end;
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
  for (let c = 0; c < chunks.extent; c++) {
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
