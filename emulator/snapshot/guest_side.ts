/**
 * The guest thread's half of the live snapshot engine: the store hook, the snapshot instant, and
 * the between-slices service for precopy passes. Everything here runs on the thread that runs the
 * guest, the only thread that reads CPU or device state and the only one that stores into RAM.
 *
 * @module
 */

import {
  GATE_HOOK,
  PAGE_COPYING_GUEST,
  PAGE_COPYING_WRITER,
  PAGE_DIRTY_ARMED,
  PAGE_OPEN,
  PAGE_PROTECTED,
  PAGE_SHIFT,
  PAGE_SIZE,
  tryMovePage,
} from "./page_state.ts";
import {
  allocateSessionBuffers,
  CTRL_CHUNKS_DROPPED,
  CTRL_FINAL_DONE,
  CTRL_FINAL_READY,
  CTRL_FINAL_REQUEST,
  CTRL_FREE_HEAD,
  CTRL_FREE_SLOTS,
  CTRL_FREE_TAIL,
  CTRL_FRESH_SLOTS,
  CTRL_GUEST_WAITING,
  CTRL_JOB_SEQ,
  CTRL_KICK,
  CTRL_PASS_READY,
  CTRL_PASS_REQUEST,
  CTRL_PREFAULTED,
  CTRL_PROGRESS,
  CTRL_QUEUE_TAIL,
  CTRL_REQUEST_PAGE,
  CTRL_STALL_US,
  CTRL_THROTTLE,
  CTRL_WRITER_STATE,
  resetSession,
  SnapshotSession,
  WRITER_FAILED,
  WRITER_RUNNING,
} from "./session.ts";
import type { SessionBuffers, SnapshotMode } from "./session.ts";
import {
  CHUNK_ABSENT,
  CHUNK_DROPPED,
  CHUNK_GC_MIN,
  CHUNK_RESERVE,
  CHUNK_SHIFT,
  CHUNK_SLOTS,
  chunksFor,
  collectGarbage,
  type SlotChunkMessage,
  SlotChunks,
} from "./slot_chunks.ts";

/** What the guest thread measured during one snapshot. */
export interface GuestSideMetrics {
  /** Pages the guest copied into the buffer before storing to them. */
  pagesViaBuffer: number;
  /** Most slots in use at once, in bytes. */
  bufferPeakBytes: number;
  /** Time the guest spent blocked on the snapshot (slot or page waits), in microseconds. */
  guestStallUs: number;
  /** Stores that met a page the writer was copying and waited for it. */
  writerPageWaits: number;
  /** Time the guest slept because precopy throttled it (auto-converge), in microseconds. */
  throttleUs: number;
  /** The full garbage collection that gave the copy buffer back at the end, microseconds (0
   * without `--v8-flags=--expose-gc`; see slot_chunks.ts). */
  gcUs: number;
}

/** Microseconds from the monotonic clock. */
export function nowUs(): number {
  return performance.now() * 1000;
}

/**
 * The guest thread's state for live snapshots over one machine's RAM and page gate.
 *
 * Install {@linkcode GuestSnapshotSide.onStore} as the machine's store hook; it is called only for
 * pages whose gate entry has {@linkcode GATE_HOOK} set.
 */
export class GuestSnapshotSide {
  readonly ram: Uint8Array;
  readonly gate: Int32Array;
  /** The buffers every snapshot of this machine uses (hand them to the writer once). */
  readonly buffers: SessionBuffers;
  /** The page state table (page_state.ts), reused by every snapshot of this machine. */
  readonly states: Int32Array;
  readonly pageCount: number;
  /** The copy buffer's chunks this thread holds (slot_chunks.ts). */
  readonly chunks: SlotChunks;
  readonly #sendChunk: (message: SlotChunkMessage) => void;
  #droppedSeen = 0;
  /** Chunks let go of during the snapshot (collect garbage at its end if enough). */
  #releasedDuring = 0;
  #session: SnapshotSession | null = null;
  #spareSlot = -1;
  #doorbell = false;
  #freshSlots = 0;
  #peakUsed = 0;
  /** Precopy's throttle: sleep the guest still owes for the slices it ran, microseconds. */
  #throttleDebtUs = 0;
  #metrics: GuestSideMetrics = emptyGuestMetrics();

  /** `sendChunk` hands a newly allocated copy-buffer chunk to the writer (a `MessagePort`). */
  constructor(ram: Uint8Array, gate: Int32Array, sendChunk: (message: SlotChunkMessage) => void) {
    this.ram = ram;
    this.gate = gate;
    this.pageCount = Math.floor(ram.length / PAGE_SIZE);
    if (gate.length < this.pageCount) {
      throw new RangeError(
        `Cannot attach the snapshot engine: the page gate has ${gate.length} entries for ${this.pageCount} pages`,
      );
    }
    this.buffers = allocateSessionBuffers(this.pageCount);
    this.states = new Int32Array(this.buffers.states);
    this.chunks = new SlotChunks(this.buffers.chunks);
    this.#sendChunk = sendChunk;
    this.#allocateReserve();
    this.warmUp();
  }

  /** Allocates chunk `c` of the copy buffer and sends it to the writer (before any slot of it
   * can be queued: the writer gets the message first). */
  #allocateChunk(c: number): void {
    this.#sendChunk(this.chunks.allocate(c));
  }

  /** The reserve for the next snapshot's first slots: untouched memory, address space only. */
  #allocateReserve(): void {
    const n = Math.min(CHUNK_RESERVE, this.chunks.count);
    for (let c = 0; c < n; c++) {
      if (this.chunks.state(c) === CHUNK_ABSENT) this.#allocateChunk(c);
    }
  }

  /**
   * Between slices during a `cow` snapshot: allocates chunks to stay {@linkcode CHUNK_RESERVE}
   * ahead of the slots taken (never past the buffer's size), and lets go of the chunks the
   * writer dropped.
   */
  serviceChunks(): void {
    const s = this.#session;
    if (s === null || s.mode !== "cow") return;
    const chunks = this.chunks;
    if (s.slotCount > 0) {
      const want = Math.min(chunksFor(s.slotCount), chunksFor(this.#freshSlots) + CHUNK_RESERVE);
      for (let c = chunksFor(this.#freshSlots) - 1; c < want; c++) {
        if (c >= 0 && chunks.state(c) === CHUNK_ABSENT) this.#allocateChunk(c);
      }
    }
    const dropped = Atomics.load(s.ctrl, CTRL_CHUNKS_DROPPED);
    if (dropped !== this.#droppedSeen) {
      this.#droppedSeen = dropped;
      for (let c = 0; c < chunks.count; c++) {
        if (chunks.holds(c) && chunks.state(c) === CHUNK_DROPPED) {
          chunks.release(c);
          this.#releasedDuring++;
        }
      }
    }
  }

  /** At the end of a snapshot (the writer has let go of the same chunks already): gives back
   * every chunk the snapshot touched or dropped, and allocates a fresh reserve. */
  #releaseTouchedChunks(s: SnapshotSession): void {
    const chunks = this.chunks;
    let released = 0;
    const touched = chunksFor(
      Math.max(Atomics.load(s.ctrl, CTRL_FRESH_SLOTS), Atomics.load(s.ctrl, CTRL_PREFAULTED)),
    );
    for (let c = 0; c < chunks.count; c++) {
      if (c < touched || chunks.state(c) === CHUNK_DROPPED) {
        if (chunks.holds(c)) released++;
        chunks.release(c);
        chunks.setState(c, CHUNK_ABSENT);
        chunks.setUsed(c, 0);
      }
    }
    this.#droppedSeen = Atomics.load(s.ctrl, CTRL_CHUNKS_DROPPED);
    this.#allocateReserve();
    // Once per snapshot, at its end, and only when it gives back at least CHUNK_GC_MIN chunks: a
    // full collection on this thread (and warming the instant's code up again after it) costs
    // the guest tens of milliseconds (see slot_chunks.ts).
    if (released + this.#releasedDuring >= CHUNK_GC_MIN) this.#metrics.gcUs += collectGarbage();
    this.#releasedDuring = 0;
  }

  /**
   * Runs the instant's code with no effect (before any snapshot: no job is rung), so that the
   * first snapshot of a process does not pay for compiling it or for first touches of the
   * shared tables: it resets the control words, opens a session view, fills the state table
   * and passes over the gate setting and clearing no bit. Each loop runs a few times, so that
   * the optimizing compiler has seen it entered from the top, not only through on-stack
   * replacement.
   */
  warmUp(): void {
    for (let i = 0; i < 4; i++) {
      resetSession(this.buffers, "cow", 0, 0, 0);
      new SnapshotSession(this.buffers).usedSlots();
      this.states.fill(PAGE_OPEN);
      setGateBits(this.gate, this.pageCount, 0);
      clearGateBits(this.gate, this.pageCount, 0);
    }
  }

  /** The snapshot in progress on this thread, or null. */
  get session(): SnapshotSession | null {
    return this.#session;
  }

  /**
   * The snapshot instant (call between two instructions): sets up the job in the shared control
   * words, arms every page for `mode` and rings the writer's doorbell. For `cow` that
   * write-protects all of RAM (one fill of the state table, one pass setting the gate's hook
   * bit); for `precopy` it arms the dirty log the same way; for `stop` it leaves RAM alone (the
   * guest will not run until the writer is done). Nothing is allocated and no message is sent.
   * `tagKind` and `tagIndex` name the request for the host.
   */
  begin(mode: SnapshotMode, slotCount: number, tagKind = 0, tagIndex = 0): SnapshotSession {
    if (this.#session !== null) {
      throw new Error("Cannot start a snapshot: another snapshot is still being written");
    }
    resetSession(this.buffers, mode, slotCount, tagKind, tagIndex);
    const session = new SnapshotSession(this.buffers);
    this.#session = session;
    this.#spareSlot = -1;
    this.#freshSlots = 0;
    this.#peakUsed = 0;
    this.#throttleDebtUs = 0;
    this.#metrics = emptyGuestMetrics();
    if (mode !== "stop") {
      this.states.fill(mode === "cow" ? PAGE_PROTECTED : PAGE_DIRTY_ARMED);
      if (mode === "precopy") session.dirty.fill(0);
      setGateBits(this.gate, this.pageCount, GATE_HOOK);
    }
    // The doorbell is set now but rung (Atomics.notify, a futex wake-up that can let the writer
    // preempt this thread for milliseconds on a busy machine) only once the guest has run on:
    // see ringWriter. The writer also looks at it every few milliseconds by itself.
    Atomics.add(session.ctrl, CTRL_JOB_SEQ, 1);
    this.#doorbell = true;
    return session;
  }

  /** Wakes the writer for a job set up by `begin` (once; cheap when there is nothing to do).
   * The guest thread calls it after its first slice, and before it would wait on the writer. */
  ringWriter(): void {
    if (!this.#doorbell) return;
    this.#doorbell = false;
    Atomics.notify(this.#session!.ctrl, CTRL_JOB_SEQ);
  }

  /** True once the writer has finished (or failed) the current session. */
  writerFinished(): boolean {
    const s = this.#session;
    return s === null || Atomics.load(s.ctrl, CTRL_WRITER_STATE) !== WRITER_RUNNING;
  }

  /**
   * Ends the session once the writer has finished: opens any page still armed (precopy leaves
   * some, a failed writer many) and returns what the guest side measured.
   */
  end(): GuestSideMetrics {
    if (this.#session === null) throw new Error("Cannot end a snapshot: none is running");
    const s = this.#session;
    this.states.fill(PAGE_OPEN);
    clearGateBits(this.gate, this.pageCount, GATE_HOOK);
    this.#session = null;
    this.#throttleDebtUs = 0;
    this.#releaseTouchedChunks(s);
    this.#metrics.bufferPeakBytes = this.#peakUsed * PAGE_SIZE;
    return this.#metrics;
  }

  /**
   * Precopy's auto-converge, after a slice that ran for `ranUs` of wall time: if the writer has
   * set a throttle of t (a share of wall time), the guest owes `ranUs * t / (1 - t)` of sleep, so
   * that over time it runs only (1 - t) of the wall time and dirties pages that much slower. Only
   * wall time changes: the guest executes the same instructions, in the same order.
   */
  chargeSlice(ranUs: number): void {
    const s = this.#session;
    if (s === null || s.mode !== "precopy") return;
    const permille = Atomics.load(s.ctrl, CTRL_THROTTLE);
    if (permille <= 0) return;
    this.#throttleDebtUs += ranUs * permille / (1000 - permille);
  }

  /**
   * Sleeps off (part of) the throttle the guest owes, at most `maxUs` at a time, waking early when
   * the writer asks for something (a pass, the final pause). Returns true if the guest still owes
   * sleep and must not run its next slice yet; the caller serves its mailbox and the writer's
   * requests, then calls again.
   */
  payThrottle(maxUs: number): boolean {
    const s = this.#session;
    if (s === null || this.#throttleDebtUs <= 0) return false;
    if (Atomics.load(s.ctrl, CTRL_FINAL_REQUEST) !== 0 || this.writerFinished()) {
      this.#throttleDebtUs = 0;
      return false;
    }
    this.ringWriter();
    const kick = Atomics.load(s.ctrl, CTRL_KICK);
    const t0 = nowUs();
    Atomics.wait(s.ctrl, CTRL_KICK, kick, Math.min(this.#throttleDebtUs, maxUs) / 1000);
    const slept = nowUs() - t0;
    this.#metrics.throttleUs += slept;
    this.#throttleDebtUs -= slept;
    return this.#throttleDebtUs > 0;
  }

  /** Blocks until the writer has finished; used by `stop`, whose guest does not run meanwhile. */
  waitForWriter(): void {
    const s = this.#session;
    if (s === null) return;
    this.ringWriter();
    while (Atomics.load(s.ctrl, CTRL_WRITER_STATE) === WRITER_RUNNING) {
      Atomics.wait(s.ctrl, CTRL_WRITER_STATE, WRITER_RUNNING, 1000);
    }
  }

  /**
   * The store hook: called before a store to `page` whose gate has the hook bit. Returns when
   * the store may go ahead.
   */
  onStore = (page: number): void => {
    const states = this.states;
    for (;;) {
      const state = Atomics.load(states, page);
      if (state === PAGE_OPEN) return;
      // A failed writer abandons the snapshot: the guest must not wait on it.
      if (Atomics.load(this.#session!.ctrl, CTRL_WRITER_STATE) === WRITER_FAILED) return;
      if (state === PAGE_DIRTY_ARMED) {
        // Only this thread moves pages out of dirty-armed, so no compare-and-swap is needed; the
        // bit is set before the store lands, so a writer reading the page now resends it later.
        const s = this.#session!;
        Atomics.or(s.dirty, page >>> 5, 1 << (page & 31));
        Atomics.store(states, page, PAGE_OPEN);
        Atomics.and(this.gate, page, ~GATE_HOOK);
        return;
      }
      if (state === PAGE_PROTECTED) {
        if (this.#copyAside(page)) return;
        continue;
      }
      if (state === PAGE_COPYING_WRITER) {
        // The writer holds this page for the microseconds of one copy: wait for it alone.
        this.#metrics.writerPageWaits++;
        this.#stall(() => Atomics.wait(states, page, PAGE_COPYING_WRITER, 1000));
        continue;
      }
      throw new Error(`Cannot store to page ${page}: unexpected page state ${state}`);
    }
  };

  /** Copies a protected page into a free slot; false if the page changed state meanwhile. */
  #copyAside(page: number): boolean {
    const s = this.#session!;
    let slot = this.#spareSlot;
    if (slot < 0) slot = this.#takeSlot(s);
    if (slot < 0) {
      // No slot. With a zero-size buffer, ask the writer to write this very page next (else the
      // guest would wait for the sweep to reach it). With slots, all of them sit in the queue the
      // writer drains before anything else, so one frees soon: wait for that. Either way wait on
      // PROGRESS, read before the checks, so that a wake-up cannot be missed.
      const seen = Atomics.load(s.ctrl, CTRL_PROGRESS);
      if (s.slotCount === 0) Atomics.store(s.ctrl, CTRL_REQUEST_PAGE, page);
      if (
        Atomics.load(this.states, page) === PAGE_PROTECTED &&
        Atomics.load(s.ctrl, CTRL_FREE_SLOTS) === 0
      ) {
        this.#stall(() => Atomics.wait(s.ctrl, CTRL_PROGRESS, seen, 1000));
      }
      return false;
    }
    this.#spareSlot = slot;
    if (!tryMovePage(this.states, page, PAGE_PROTECTED, PAGE_COPYING_GUEST)) return false;
    this.#spareSlot = -1;
    const from = page << PAGE_SHIFT;
    this.chunks.view(slot >> CHUNK_SHIFT)!.set(
      this.ram.subarray(from, from + PAGE_SIZE),
      (slot & (CHUNK_SLOTS - 1)) * PAGE_SIZE,
    );
    const tail = Atomics.load(s.ctrl, CTRL_QUEUE_TAIL);
    const at = (tail % s.slotCount) * 2;
    Atomics.store(s.queue, at, page);
    Atomics.store(s.queue, at + 1, slot);
    // The contents are safe in the slot: the page is saved, the store may go ahead. No one can
    // be waiting on a page in copying-guest (the writer skips those), so no notify.
    Atomics.store(this.states, page, PAGE_OPEN);
    Atomics.and(this.gate, page, ~GATE_HOOK);
    Atomics.store(s.ctrl, CTRL_QUEUE_TAIL, tail + 1);
    Atomics.notify(s.ctrl, CTRL_QUEUE_TAIL);
    this.#metrics.pagesViaBuffer++;
    return true;
  }

  /** Takes a free slot, or returns -1 if the buffer is full. Reuses freed slots before fresh
   * ones, so the memory touched never exceeds the peak occupancy. */
  #takeSlot(s: SnapshotSession): number {
    if (Atomics.load(s.ctrl, CTRL_FREE_SLOTS) === 0) return -1;
    let slot: number;
    const head = Atomics.load(s.ctrl, CTRL_FREE_HEAD);
    if (head !== Atomics.load(s.ctrl, CTRL_FREE_TAIL)) {
      slot = Atomics.load(s.freeRing, head % s.slotCount);
      Atomics.store(s.ctrl, CTRL_FREE_HEAD, head + 1);
    } else {
      slot = this.#freshSlots++;
      Atomics.store(s.ctrl, CTRL_FRESH_SLOTS, this.#freshSlots);
    }
    const c = slot >> CHUNK_SHIFT;
    if (this.chunks.state(c) === CHUNK_DROPPED) {
      // The writer gives chunks back only once its sweep has passed all of RAM, so the page
      // this slot was for is no longer protected: no slot is needed (the caller sees the page
      // open). The free count was not decremented; the slot is not used again in this snapshot.
      return -1;
    }
    if (!this.chunks.holds(c)) {
      // The guest took slots faster than serviceChunks kept ahead within one slice: allocate
      // here.
      if (this.chunks.state(c) !== CHUNK_ABSENT) {
        throw new Error(`Cannot take slot ${slot}: its chunk ${c} was given back`);
      }
      this.#allocateChunk(c);
    }
    this.chunks.addUsed(c, 1);
    const free = Atomics.sub(s.ctrl, CTRL_FREE_SLOTS, 1) - 1;
    const used = s.slotCount - free;
    if (used > this.#peakUsed) this.#peakUsed = used;
    return slot;
  }

  #stall(wait: () => void): void {
    const s = this.#session!;
    this.ringWriter();
    Atomics.store(s.ctrl, CTRL_GUEST_WAITING, 1);
    const t0 = nowUs();
    wait();
    const stalled = nowUs() - t0;
    this.#metrics.guestStallUs += stalled;
    Atomics.add(s.ctrl, CTRL_STALL_US, Math.round(stalled));
    Atomics.store(s.ctrl, CTRL_GUEST_WAITING, 0);
  }

  /**
   * Between slices (no store in flight): answers a precopy writer's request for the next pass
   * by moving the dirty log into the pass set with one atomic swap per word, and re-arming those
   * pages so that a store from now on logs them again. Returns true if it did something.
   */
  servicePass(): boolean {
    const s = this.#session;
    if (s === null || s.mode !== "precopy") return false;
    const want = Atomics.load(s.ctrl, CTRL_PASS_REQUEST);
    if (want === Atomics.load(s.ctrl, CTRL_PASS_READY)) return false;
    this.#swapDirtyIntoPass(s);
    Atomics.store(s.ctrl, CTRL_PASS_READY, want);
    Atomics.notify(s.ctrl, CTRL_PASS_READY);
    return true;
  }

  /** True if a precopy writer asks for the final pause. */
  finalRequested(): boolean {
    const s = this.#session;
    return s !== null && s.mode === "precopy" && Atomics.load(s.ctrl, CTRL_FINAL_REQUEST) !== 0 &&
      Atomics.load(s.ctrl, CTRL_FINAL_READY) === 0;
  }

  /**
   * Precopy's final pause, first half: the last dirty set goes to the writer. The caller saves
   * the device state now, then calls {@linkcode waitForFinalPages}.
   */
  beginFinal(): void {
    const s = this.#session!;
    this.#swapDirtyIntoPass(s);
    Atomics.store(s.ctrl, CTRL_FINAL_READY, 1);
    Atomics.notify(s.ctrl, CTRL_FINAL_READY);
  }

  /** Precopy's final pause, second half: blocks until the writer has the last pages. */
  waitForFinalPages(): void {
    const s = this.#session!;
    this.ringWriter();
    while (Atomics.load(s.ctrl, CTRL_FINAL_DONE) === 0) {
      if (Atomics.load(s.ctrl, CTRL_WRITER_STATE) !== WRITER_RUNNING) return;
      Atomics.wait(s.ctrl, CTRL_FINAL_DONE, 0, 1000);
    }
  }

  #swapDirtyIntoPass(s: SnapshotSession): void {
    for (let w = 0; w < s.dirty.length; w++) {
      const bits = Atomics.exchange(s.dirty, w, 0);
      Atomics.store(s.pass, w, bits);
      if (bits === 0) continue;
      for (let b = 0; b < 32; b++) {
        if ((bits & (1 << b)) === 0) continue;
        const page = (w << 5) | b;
        Atomics.store(this.states, page, PAGE_DIRTY_ARMED);
        Atomics.or(this.gate, page, GATE_HOOK);
      }
    }
  }
}

/** Sets `bit` in the first `n` gate entries. No other thread writes the gate when this runs (the
 * previous snapshot's writer has finished); a plain loop keeps the machine's own bits and runs
 * at memset speed. */
function setGateBits(gate: Int32Array, n: number, bit: number): void {
  for (let p = 0; p < n; p++) gate[p] |= bit;
}

function clearGateBits(gate: Int32Array, n: number, bit: number): void {
  const mask = ~bit;
  for (let p = 0; p < n; p++) gate[p] &= mask;
}

function emptyGuestMetrics(): GuestSideMetrics {
  return {
    pagesViaBuffer: 0,
    bufferPeakBytes: 0,
    guestStallUs: 0,
    writerPageWaits: 0,
    throttleUs: 0,
    gcUs: 0,
  };
}
