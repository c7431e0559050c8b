/**
 * The shared memory of one snapshot in progress: control words, the bounded copy buffer, the
 * queue of guest-copied pages and the dirty log. A {@linkcode SessionBuffers} value is plain data
 * (only `SharedArrayBuffer`s and numbers) so it crosses to a Worker with `postMessage`; each thread
 * wraps it in a {@linkcode SnapshotSession}.
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
 *
 * @module
 */

import { PAGE_SIZE } from "./page_state.ts";

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
const CTRL_WORDS = 16;

/** `WRITER_STATE` values. */
export const WRITER_RUNNING = 0;
export const WRITER_DONE = 1;
export const WRITER_FAILED = 2;

/** How a snapshot is taken. */
export type SnapshotMode = "stop" | "cow" | "precopy";

/** The shared buffers of one snapshot, as sent between threads. */
export interface SessionBuffers {
  mode: SnapshotMode;
  /** Pages of guest RAM. */
  pageCount: number;
  /** Slots in the copy buffer (cow only; 0 is allowed). */
  slotCount: number;
  control: SharedArrayBuffer;
  /** The page state table (see page_state.ts), one Int32 per page; owned by the guest side and
   * reused from one snapshot to the next, so its memory is already faulted in at the instant. */
  states: SharedArrayBuffer;
  /** `slotCount` pages of copied-aside contents. */
  slots: SharedArrayBuffer;
  /** Pairs (page, slot) of guest-copied pages, a ring of `slotCount` entries. */
  queue: SharedArrayBuffer;
  /** Slot numbers the writer freed, a ring of `slotCount` entries. */
  freeRing: SharedArrayBuffer;
  /** One bit per page: stored to since the last pass (precopy). */
  dirty: SharedArrayBuffer;
  /** One bit per page: the set the writer sends in the current pass (precopy). */
  pass: SharedArrayBuffer;
}

/** Allocates the buffers of a snapshot over a page state table of one entry per page. The memory is committed lazily by
 * the OS (fresh `SharedArrayBuffer`s are zero pages), so a large buffer costs only what is used. */
export function allocateSession(
  mode: SnapshotMode,
  states: SharedArrayBuffer,
  slotCount: number,
): SessionBuffers {
  const pageCount = states.byteLength / 4;
  if (!Number.isInteger(slotCount) || slotCount < 0 || slotCount > pageCount) {
    throw new RangeError(
      `Cannot allocate a copy buffer of ${slotCount} slots: must be an integer in 0..${pageCount}`,
    );
  }
  const slots = mode === "cow" ? slotCount : 0;
  const bitmapBytes = Math.ceil(pageCount / 32) * 4;
  const control = new SharedArrayBuffer(CTRL_WORDS * 4);
  const ctrl = new Int32Array(control);
  ctrl[CTRL_REQUEST_PAGE] = -1;
  ctrl[CTRL_FREE_SLOTS] = slots;
  return {
    mode,
    pageCount,
    slotCount: slots,
    control,
    states,
    slots: new SharedArrayBuffer(slots * PAGE_SIZE),
    queue: new SharedArrayBuffer(slots * 8),
    freeRing: new SharedArrayBuffer(slots * 4),
    dirty: new SharedArrayBuffer(mode === "precopy" ? bitmapBytes : 0),
    pass: new SharedArrayBuffer(mode === "precopy" ? bitmapBytes : 0),
  };
}

/** One thread's view of a snapshot's shared buffers. */
export class SnapshotSession {
  readonly mode: SnapshotMode;
  readonly pageCount: number;
  readonly slotCount: number;
  readonly ctrl: Int32Array;
  readonly states: Int32Array;
  readonly slots: Uint8Array;
  readonly queue: Int32Array;
  readonly freeRing: Int32Array;
  readonly dirty: Int32Array;
  readonly pass: Int32Array;
  readonly buffers: SessionBuffers;

  constructor(buffers: SessionBuffers) {
    this.buffers = buffers;
    this.mode = buffers.mode;
    this.pageCount = buffers.pageCount;
    this.slotCount = buffers.slotCount;
    this.ctrl = new Int32Array(buffers.control);
    this.states = new Int32Array(buffers.states);
    this.slots = new Uint8Array(buffers.slots);
    this.queue = new Int32Array(buffers.queue);
    this.freeRing = new Int32Array(buffers.freeRing);
    this.dirty = new Int32Array(buffers.dirty);
    this.pass = new Int32Array(buffers.pass);
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
