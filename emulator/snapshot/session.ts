/**
 * The shared memory of a machine's snapshots: control words, the bounded copy buffer, the queue
 * of guest-copied pages and the dirty log. A {@linkcode SessionBuffers} value is plain data (only
 * `SharedArrayBuffer`s and numbers) so it crosses to a Worker with `postMessage` once, at boot;
 * each thread wraps it in a {@linkcode SnapshotSession} per snapshot.
 *
 * Who writes what (each index has one writer thread unless it says "both"):
 *
 * | control word | written by | meaning |
 * |---|---|---|
 * | `REQUEST_PAGE` | both | page the guest waits on and the writer must serve next, or -1 |
 * | `PROGRESS` | writer | bumped after every page saved or slot freed; the guest waits on it |
 * | `QUEUE_TAIL` / `QUEUE_HEAD` | guest / writer | the queue of guest-copied pages |
 * | `FREE_TAIL` / `FREE_HEAD` | writer / guest | slots the writer has freed, back to the guest |
 * | `FREE_SLOTS` | both | free slots (atomic add/sub) |
 * | `PASS_REQUEST` / `PASS_READY` | writer / guest | precopy: a new pass's dirty set, please |
 * | `FINAL_REQUEST` / `FINAL_READY` / `FINAL_DONE` | writer / guest / writer | precopy's last pause |
 * | `WRITER_STATE` | writer | running, done or failed |
 * | `GUEST_WAITING` | guest | 1 while the guest is blocked on this snapshot (for tests, metrics) |
 * | `JOB_*` | guest | the job's mode, slot count and tag; `JOB_SEQ` is the writer's doorbell |
 * | `THROTTLE` | writer | precopy: the share of wall time the guest must sleep, in 1/10 % |
 * | `KICK` | writer | bumped (and notified) with each request to the guest: wakes a throttled guest |
 * | `PREFAULTED` | writer | slots whose memory the writer has touched ahead of the guest |
 * | `CHUNKS_DROPPED` | writer | bumped when the writer drops a buffer chunk (slot_chunks.ts) |
 * | `GENERATION` | guest | the generation of the current (or last) `cow` or `precopy` snapshot (page_state.ts); not reset |
 * | `GUEST_THREAD` | guest | the guest thread's id, for the writer's look at its scheduling (set once) |
 * | `KEPT_CHUNKS` | writer | 1 if the job kept the copy buffer's chunks and discarded their pages, 0 if it let go of them |
 * | `JOB_DIFF` | guest | 1 if the job is a diff: only the pages of the frozen dirty set go to the file |
 * | `TRACK` | guest | which of the two `track` bitmaps logs stores now (the other is the frozen set); not reset |
 *
 * The pages' states are not here: they live in the emulator's page gate (page_state.ts).
 *
 * @module
 */

import { allocateChunkTable } from "./slot_chunks.ts";

/** Indexes into the control words. */
export const CTRL_REQUEST_PAGE = 0;
export const CTRL_PROGRESS = 1;
export const CTRL_QUEUE_TAIL = 2;
export const CTRL_QUEUE_HEAD = 3;
export const CTRL_FREE_TAIL = 4;
export const CTRL_FREE_HEAD = 5;
export const CTRL_FREE_SLOTS = 6;
export const CTRL_PASS_REQUEST = 7;
export const CTRL_PASS_READY = 8;
export const CTRL_FINAL_REQUEST = 9;
export const CTRL_FINAL_READY = 10;
export const CTRL_FINAL_DONE = 11;
export const CTRL_WRITER_STATE = 12;
export const CTRL_GUEST_WAITING = 13;
/** The job: mode code, slot count, and a tag (kind code, index) naming the request. */
export const CTRL_JOB_MODE = 14;
export const CTRL_JOB_SLOTS = 15;
export const CTRL_JOB_TAG_KIND = 16;
export const CTRL_JOB_TAG_INDEX = 17;
/** Bumped by the guest (after everything above is set) to hand a new job to the writer. */
export const CTRL_JOB_SEQ = 18;
/** Slots the guest has taken fresh (never used before in this job): the writer faults in the
 * memory of the next few ahead of it, so the guest's copy does not pay the page fault. */
export const CTRL_FRESH_SLOTS = 19;
/** Precopy's auto-converge: the share of each slice's wall time the guest sleeps, in tenths of
 * a percent (0: not throttled). Set by the writer between passes. */
export const CTRL_THROTTLE = 20;
/** Bumped and notified by the writer whenever it asks the guest for something (a pass, the final
 * pause), so a guest sleeping off its throttle answers at once. */
export const CTRL_KICK = 21;
/** Slots the writer has faulted in (all below this one), so that both threads agree which
 * buffer chunks a snapshot touched. */
export const CTRL_PREFAULTED = 22;
/** Bumped by the writer each time it drops a buffer chunk during a snapshot. */
export const CTRL_CHUNKS_DROPPED = 23;
/** The page generation of the current (or last) `cow` or `precopy` snapshot (page_state.ts):
 * set by the guest at the instant, before the doorbell; never reset. */
export const CTRL_GENERATION = 24;
/** Set by the writer before it marks a job done: 1 if it kept the copy buffer's chunks and
 * discarded their pages (discard_pages.ts), so the guest keeps them too and needs no garbage
 * collection; 0 if it let go of them (slot_chunks.ts). Reset at each instant. */
export const CTRL_KEPT_CHUNKS = 25;
/** The guest thread's id (metrics.ts readThreadId; 0: unknown), set once by the guest side: the
 * writer watches how long the guest waits for a core. */
export const CTRL_GUEST_THREAD = 26;
/** The words reset at each snapshot instant. */
const CTRL_SESSION_WORDS = 18;
/** Microseconds the guest has stalled on snapshots, added after each wait (wraps; the writer's
 * timeline samples its differences). */
export const CTRL_STALL_US = 27;
/** 1 if the job is a diff (incremental snapshot): only the pages of its frozen dirty set are
 * saved; set at each instant. */
export const CTRL_JOB_DIFF = 28;
/** Which `track` bitmap (0 or 1) logs the pages stored to since the last instant; the other one
 * holds the frozen set of the job in progress (or is empty). Flipped by the guest at each
 * instant, never reset. */
export const CTRL_TRACK = 29;
const CTRL_WORDS = 30;

/** `WRITER_STATE` values. */
export const WRITER_RUNNING = 0;
export const WRITER_DONE = 1;
export const WRITER_FAILED = 2;

/** How a snapshot is taken. */
export type SnapshotMode = "stop" | "cow" | "precopy";

/** Snapshot modes as numbers for shared memory. */
export const MODE_CODES: Record<SnapshotMode, number> = { stop: 1, cow: 2, precopy: 3 };
/** The inverse of MODE_CODES. */
export const MODE_NAMES: Record<number, SnapshotMode> = { 1: "stop", 2: "cow", 3: "precopy" };

/**
 * The shared buffers of a machine's snapshots, as sent between threads. They are allocated once
 * per machine and reused by every snapshot, so the snapshot instant allocates nothing and sends
 * no message: it resets the control words, arms the pages and rings the writer's doorbell. Each
 * is sized for the worst case (a copy buffer as large as RAM). The copy buffer's own memory is
 * not here: it comes in chunks the guest allocates ahead of need and the threads give back (see
 * slot_chunks.ts); `chunks` is their shared per-chunk table.
 */
export interface SessionBuffers {
  /** Pages of guest RAM. */
  pageCount: number;
  control: SharedArrayBuffer;
  /** Per copy-buffer chunk: slots in use and state (slot_chunks.ts). */
  chunks: SharedArrayBuffer;
  /** Pairs (page, slot) of guest-copied pages, a ring of (slot count) entries. */
  queue: SharedArrayBuffer;
  /** Slot numbers the writer freed, a ring of (slot count) entries. */
  freeRing: SharedArrayBuffer;
  /** One bit per page: stored to since the last pass (precopy). */
  dirty: SharedArrayBuffer;
  /** One bit per page: the set the writer sends in the current pass (precopy). */
  pass: SharedArrayBuffer;
  /**
   * Two bitmaps of one bit per page: the pages stored to since the last snapshot's instant (the
   * one `TRACK` names; the guest logs into it), and the frozen set of the snapshot in progress
   * (the other). Incremental snapshots write the frozen set.
   */
  track: [SharedArrayBuffer, SharedArrayBuffer];
}

/** Allocates a machine's snapshot buffers for `pageCount` pages of RAM. */
export function allocateSessionBuffers(pageCount: number): SessionBuffers {
  const bitmapBytes = Math.ceil(pageCount / 32) * 4;
  const buffers: SessionBuffers = {
    pageCount,
    control: new SharedArrayBuffer(CTRL_WORDS * 4),
    chunks: allocateChunkTable(pageCount),
    queue: new SharedArrayBuffer(pageCount * 8),
    freeRing: new SharedArrayBuffer(pageCount * 4),
    dirty: new SharedArrayBuffer(bitmapBytes),
    pass: new SharedArrayBuffer(bitmapBytes),
    track: [new SharedArrayBuffer(bitmapBytes), new SharedArrayBuffer(bitmapBytes)],
  };
  // Fault in the dirty logs, which the first stores set bits in.
  new Int32Array(buffers.dirty).fill(0);
  for (const t of buffers.track) new Int32Array(t).fill(0);
  new Int32Array(buffers.control).fill(0);
  return buffers;
}

/** One thread's view of a snapshot's shared buffers, for the job set up by the last reset. */
export class SnapshotSession {
  mode: SnapshotMode;
  readonly pageCount: number;
  slotCount: number;
  /** The job's page generation (page_state.ts): pages whose gate entry holds another one are
   * not saved yet. */
  generation: number;
  readonly ctrl: Int32Array;
  readonly queue: Int32Array;
  readonly freeRing: Int32Array;
  readonly dirty: Int32Array;
  readonly pass: Int32Array;
  /** The two `track` bitmaps (see {@linkcode SessionBuffers.track}). */
  readonly track: [Int32Array, Int32Array];
  /** True if the job is a diff: only the pages in {@linkcode SnapshotSession.frozen} are saved. */
  diff: boolean;
  readonly buffers: SessionBuffers;

  constructor(buffers: SessionBuffers) {
    this.buffers = buffers;
    this.ctrl = new Int32Array(buffers.control);
    this.pageCount = buffers.pageCount;
    this.queue = new Int32Array(buffers.queue);
    this.freeRing = new Int32Array(buffers.freeRing);
    this.dirty = new Int32Array(buffers.dirty);
    this.pass = new Int32Array(buffers.pass);
    this.track = [new Int32Array(buffers.track[0]), new Int32Array(buffers.track[1])];
    this.diff = false;
    this.mode = "stop";
    this.slotCount = 0;
    this.generation = 0;
    // A fresh machine's buffers hold no job yet: read as a stopped one.
    if (Atomics.load(this.ctrl, CTRL_JOB_MODE) !== 0) this.refresh();
  }

  /**
   * The guest, at the snapshot instant: resets the session's control words for a job of `mode`
   * with `slotCount` slots, named by (`tagKind`, `tagIndex`), and reads it back. The writer of
   * the previous job has finished (the guest checks), so no other thread touches these words
   * now. It allocates nothing (a typed array over shared memory costs microseconds to make).
   */
  reset(
    mode: SnapshotMode,
    slotCount: number,
    tagKind: number,
    tagIndex: number,
    diff = false,
  ): void {
    if (!Number.isInteger(slotCount) || slotCount < 0 || slotCount > this.pageCount) {
      throw new RangeError(
        `Cannot use a copy buffer of ${slotCount} slots: must be an integer in 0..${this.pageCount}`,
      );
    }
    const ctrl = this.ctrl;
    for (let i = 0; i < CTRL_SESSION_WORDS; i++) Atomics.store(ctrl, i, 0);
    Atomics.store(ctrl, CTRL_REQUEST_PAGE, -1);
    const slots = mode === "cow" ? slotCount : 0;
    Atomics.store(ctrl, CTRL_FREE_SLOTS, slots);
    Atomics.store(ctrl, CTRL_JOB_MODE, MODE_CODES[mode]);
    Atomics.store(ctrl, CTRL_JOB_SLOTS, slots);
    Atomics.store(ctrl, CTRL_JOB_TAG_KIND, tagKind);
    Atomics.store(ctrl, CTRL_JOB_TAG_INDEX, tagIndex);
    Atomics.store(ctrl, CTRL_FRESH_SLOTS, 0);
    Atomics.store(ctrl, CTRL_THROTTLE, 0);
    Atomics.store(ctrl, CTRL_PREFAULTED, 0);
    Atomics.store(ctrl, CTRL_KEPT_CHUNKS, 0);
    Atomics.store(ctrl, CTRL_JOB_DIFF, diff ? 1 : 0);
    this.mode = mode;
    this.diff = diff;
    this.slotCount = slots;
    this.generation = Atomics.load(ctrl, CTRL_GENERATION);
  }

  /** Reads the job set up by the last reset (the guest reuses one view for every snapshot, so
   * that the instant allocates nothing). */
  refresh(): void {
    const mode = MODE_NAMES[Atomics.load(this.ctrl, CTRL_JOB_MODE)];
    if (mode === undefined) throw new Error("Cannot open a snapshot session: no job was set");
    this.mode = mode;
    this.slotCount = Atomics.load(this.ctrl, CTRL_JOB_SLOTS);
    this.generation = Atomics.load(this.ctrl, CTRL_GENERATION);
    this.diff = Atomics.load(this.ctrl, CTRL_JOB_DIFF) === 1;
  }

  /** The bitmap the guest logs stores into now (pages dirtied since the last instant). */
  get logging(): Int32Array {
    return this.track[Atomics.load(this.ctrl, CTRL_TRACK) & 1];
  }

  /** The frozen dirty set of the job in progress: the pages stored to between the previous
   * snapshot's instant and this one's (a diff writes them). */
  get frozen(): Int32Array {
    return this.track[(Atomics.load(this.ctrl, CTRL_TRACK) & 1) ^ 1];
  }

  /** Slots in use now (the buffer's occupancy). */
  usedSlots(): number {
    return this.slotCount - Atomics.load(this.ctrl, CTRL_FREE_SLOTS);
  }

  /** Wakes whoever waits on control word `index` after bumping it. */
  bump(index: number): void {
    Atomics.add(this.ctrl, index, 1);
    Atomics.notify(this.ctrl, index);
  }
}

/** Tag kinds: what asked for a snapshot. */
export const TAG_AT = 1;
export const TAG_EVERY = 2;
export const TAG_CONTROL = 3;
const TAG_NAMES: Record<number, string> = {
  [TAG_AT]: "at",
  [TAG_EVERY]: "every",
  [TAG_CONTROL]: "ctl",
};

/** The name host, guest and writer use for a snapshot request: `at:0`, `every:3`, `ctl:7`. */
export function tagName(kind: number, index: number): string {
  return `${TAG_NAMES[kind] ?? "job"}:${index}`;
}

/** The tag of the job set up by the last reset. */
export function jobTag(buffers: SessionBuffers): string {
  const ctrl = new Int32Array(buffers.control);
  return tagName(Atomics.load(ctrl, CTRL_JOB_TAG_KIND), Atomics.load(ctrl, CTRL_JOB_TAG_INDEX));
}
