/**
 * The guest thread's half of the live snapshot engine: the store hook, the snapshot instant, and
 * the between-slices service for precopy passes. Everything here runs on the thread that runs the
 * guest, the only thread that reads CPU or device state and the only one that stores into RAM.
 *
 * @module
 */

import {
  armPage,
  entryGeneration,
  forceOpenPage,
  GATE_HOOK,
  GATE_MACHINE_BITS,
  MAX_GENERATION,
  openValue,
  PAGE_SIZE,
  tryClaimPage,
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
  CTRL_GENERATION,
  CTRL_GUEST_THREAD,
  CTRL_GUEST_WAITING,
  CTRL_JOB_SEQ,
  CTRL_KEPT_CHUNKS,
  CTRL_KICK,
  CTRL_PASS_READY,
  CTRL_PASS_REQUEST,
  CTRL_PREFAULTED,
  CTRL_PROGRESS,
  CTRL_QUEUE_TAIL,
  CTRL_REQUEST_PAGE,
  CTRL_STALL_US,
  CTRL_THROTTLE,
  CTRL_TRACK,
  CTRL_WRITER_STATE,
  SnapshotSession,
  WRITER_DONE,
  WRITER_FAILED,
  WRITER_RUNNING,
} from "./session.ts";
import type { SessionBuffers, SnapshotMode } from "./session.ts";
import { readThreadId } from "./metrics.ts";
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
  /** Of those, copies into a slot whose memory no thread had written yet (the guest paid its
   * page fault; the writer faults slots in ahead of the guest). */
  coldSlots: number;
  /** Most slots in use at once, in bytes. */
  bufferPeakBytes: number;
  /** Time the guest spent blocked on the snapshot (slot or page waits), in microseconds. */
  guestStallUs: number;
  /** The longest single wait for a free slot (or, with no slots, for its page to be written),
   * microseconds. */
  slotWaitMaxUs: number;
  /** The longest single wait for a page the writer was copying, microseconds. */
  pageWaitMaxUs: number;
  /** The longest single call of the store hook (a copy aside, with any chunk allocation and
   * page fault in it, or a wait), microseconds: a stretch in which the guest retired no
   * instruction because of the snapshot. */
  storeHookMaxUs: number;
  /** All the time spent in those calls, microseconds: the engine's cost to the guest thread
   * during the snapshot (copies, their page faults, waits). */
  storeHookUs: number;
  /** Stores that met a page the writer was copying and waited for it. */
  writerPageWaits: number;
  /** Time the guest slept because precopy throttled it (auto-converge), in microseconds. */
  throttleUs: number;
  /** The longest single sleep of that throttle, microseconds. */
  throttleMaxUs: number;
  /** The full garbage collection that gave the copy buffer back at the end, microseconds (0
   * without `--v8-flags=--expose-gc`; see slot_chunks.ts). */
  gcUs: number;
}

/** Microseconds from the monotonic clock. */
export function nowUs(): number {
  return performance.now() * 1000;
}

/** What {@linkcode GuestSnapshotSide} is attached to. */
export interface GuestSnapshotSideOptions {
  /** Guest RAM (page 0 at offset 0). */
  ram: Uint8Array;
  /** The emulator's page gate over that RAM (emulator/ram.ts), one entry per page. */
  gate: Int32Array;
  /** Hands a newly allocated copy-buffer chunk to the writer (a `MessagePort`). */
  sendChunk: (message: SlotChunkMessage) => void;
  /** Told the gate value of a page that needs no look before a store, whenever it changes (at a
   * snapshot instant, between two runs of the guest): the emulator sets `Ram.gateOpen` here. */
  onGateOpen?: (value: number) => void;
  /** The generation of the last snapshot, 0 by default: the next one takes the one after. For
   * tests of the wrap at {@linkcode MAX_GENERATION}; entries of the gate must not hold a
   * generation above it. */
  generation?: number;
  /** Copy-buffer chunks as huge pages where pages can be discarded (slot_chunks.ts). Default
   * true; false for benchmarks that compare the two. */
  hugePageChunks?: boolean;
}

/**
 * The guest thread's state for live snapshots over one machine's RAM and page gate.
 *
 * Install {@linkcode GuestSnapshotSide.onStore} as the machine's store hook: the emulator calls it
 * before a store into a page whose gate entry's engine bits differ from
 * {@linkcode GuestSnapshotSide.gateOpen} (see page_state.ts).
 */
export class GuestSnapshotSide {
  readonly ram: Uint8Array;
  readonly gate: Int32Array;
  /** The buffers every snapshot of this machine uses (hand them to the writer once). */
  readonly buffers: SessionBuffers;
  readonly pageCount: number;
  /** The copy buffer's chunks this thread holds (slot_chunks.ts). */
  readonly chunks: SlotChunks;
  readonly #sendChunk: (message: SlotChunkMessage) => void;
  #droppedSeen = 0;
  /** Chunks let go of during the snapshot (collect garbage at its end if enough). */
  #releasedDuring = 0;
  #session: SnapshotSession | null = null;
  /** One view of the session buffers, refreshed at each instant (the instant allocates
   * nothing). */
  readonly #view: SnapshotSession;
  /** The generation of the current (or last) snapshot: a page whose entry holds it was saved by
   * that snapshot and not stored to since. */
  #generation: number;
  /** The generation of pages open to stores: stored to since the last instant (and logged in the
   * dirty-tracking bitmap), or, during a precopy until its final pause, since the pass that
   * armed them. It is `#generation + 1`, except during precopy before the final pause. */
  #openGeneration: number;
  /** `#openGeneration` as a gate entry: see {@linkcode GuestSnapshotSide.gateOpen}. */
  #gateOpen: number;
  /** The dirty-tracking bitmap stores are logged into now (`SessionBuffers.track`). */
  #logging: Int32Array;
  readonly #onGateOpen: (value: number) => void;
  readonly #ctrl: Int32Array;
  #spareSlot = -1;
  #doorbell = false;
  #freshSlots = 0;
  #peakUsed = 0;
  /** Precopy's throttle: sleep the guest still owes for the slices it ran, microseconds. */
  #throttleDebtUs = 0;
  #metrics: GuestSideMetrics = emptyGuestMetrics();

  constructor(options: GuestSnapshotSideOptions) {
    const { ram, gate } = options;
    this.ram = ram;
    this.gate = gate;
    this.pageCount = Math.floor(ram.length / PAGE_SIZE);
    if (gate.length < this.pageCount) {
      throw new RangeError(
        `Cannot attach the snapshot engine: the page gate has ${gate.length} entries for ${this.pageCount} pages`,
      );
    }
    const generation = options.generation ?? 0;
    if (!Number.isInteger(generation) || generation < 0 || generation > MAX_GENERATION) {
      throw new RangeError(
        `Cannot attach the snapshot engine: generation ${generation} is not in 0..${MAX_GENERATION}`,
      );
    }
    this.buffers = allocateSessionBuffers(this.pageCount);
    this.chunks = new SlotChunks(this.buffers.chunks, { hugePages: options.hugePageChunks });
    this.#sendChunk = options.sendChunk;
    this.#onGateOpen = options.onGateOpen ?? (() => {});
    // Dirty tracking is on from the start: the open generation is one no gate entry holds yet
    // (entries start at 0 and hold at most `generation`), so the first store to every page is
    // logged. Right after a restore every page is therefore clean against the restored file.
    if (generation + 1 > MAX_GENERATION) {
      for (let p = 0; p < this.pageCount; p++) Atomics.and(gate, p, GATE_MACHINE_BITS);
      this.#generation = 0;
    } else {
      this.#generation = generation;
    }
    this.#openGeneration = this.#generation + 1;
    this.#gateOpen = openValue(this.#openGeneration);
    const ctrl = new Int32Array(this.buffers.control);
    Atomics.store(ctrl, CTRL_GENERATION, this.#generation);
    Atomics.store(ctrl, CTRL_GUEST_THREAD, readThreadId());
    this.#ctrl = ctrl;
    this.#view = new SnapshotSession(this.buffers);
    this.#logging = this.#view.logging;
    this.#onGateOpen(this.#gateOpen);
    this.#allocateReserve();
    this.warmUp();
  }

  /**
   * The gate entry of a page that needs no look before a store: the current generation shifted
   * into place (emulator/ram.ts `gateOpen`). A store hot path compares the page's entry with it
   * and calls {@linkcode GuestSnapshotSide.onStore} when they differ. It changes only at a
   * snapshot instant.
   */
  get gateOpen(): number {
    return this.#gateOpen;
  }

  /** The generation of the current (or last) snapshot (page_state.ts). */
  get generation(): number {
    return this.#generation;
  }

  /** The bitmap of pages stored to since the last snapshot's instant (one bit per page; read it
   * only between slices). */
  get dirtySinceSnapshot(): Int32Array {
    return this.#logging;
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
      for (let c = 0; c < chunks.extent; c++) {
        if (chunks.holds(c) && chunks.state(c) === CHUNK_DROPPED) {
          chunks.release(c);
          this.#releasedDuring++;
        }
      }
    }
  }

  /** At the end of a snapshot (the writer has let go of the same chunks already): gives back
   * every chunk the snapshot touched or dropped, and allocates a fresh reserve. Nothing to do if
   * the writer kept the chunks and discarded their pages instead (discard_pages.ts): their
   * memory is back already, and this thread's references cost no memory. */
  #releaseTouchedChunks(s: SnapshotSession): void {
    const chunks = this.chunks;
    if (Atomics.load(s.ctrl, CTRL_KEPT_CHUNKS) === 1) {
      this.#droppedSeen = Atomics.load(s.ctrl, CTRL_CHUNKS_DROPPED);
      this.#releasedDuring = 0;
      return;
    }
    let released = 0;
    const touched = chunksFor(
      Math.max(Atomics.load(s.ctrl, CTRL_FRESH_SLOTS), Atomics.load(s.ctrl, CTRL_PREFAULTED)),
    );
    // Chunks past `extent` were never allocated: nothing to give back there.
    for (let c = 0; c < chunks.extent; c++) {
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
   * Runs the instant's code with no effect (no job is rung, the generation stays), so that the
   * first snapshot of a process does not pay for compiling it: it resets the control words and
   * refreshes the session view a few times. Call it only while no snapshot runs.
   */
  warmUp(): void {
    if (this.#session !== null) return;
    for (let i = 0; i < 4; i++) {
      this.#view.reset("cow", 0, 0, 0);
      this.#view.usedSlots();
    }
  }

  /** The snapshot in progress on this thread, or null. */
  get session(): SnapshotSession | null {
    return this.#session;
  }

  /**
   * The snapshot instant (call between two instructions, then pass the new `gateOpen` to the
   * store hot path before the guest runs on: `onGateOpen` does): sets up the job in the shared
   * control words, arms every page for `mode` and sets the writer's doorbell. For `cow` and
   * `precopy` arming all of RAM is moving to the next generation: every page's gate entry then
   * differs from `gateOpen`, so it is protected (cow) or dirty-armed (precopy) until its first
   * store or the writer saves it, and no page is touched: the instant's work does not grow with
   * RAM. For `stop` it leaves RAM alone (the guest will not run until the writer is done).
   * Nothing is allocated and no message is sent. `tagKind` and `tagIndex` name the request for
   * the host.
   */
  begin(
    mode: SnapshotMode,
    slotCount: number,
    tagKind = 0,
    tagIndex = 0,
    diff = false,
  ): SnapshotSession {
    if (this.#session !== null) {
      throw new Error("Cannot start a snapshot: another snapshot is still being written");
    }
    const session = this.#view;
    session.reset(mode, slotCount, tagKind, tagIndex, diff);
    // Every mode moves to a new generation, `stop` too: the next store to any page must be
    // logged for the next diff. Precopy's pages stay open at the snapshot's generation until
    // its final pause (its own dirty log runs until then; see beginFinal).
    this.#nextGeneration(mode === "precopy" ? 0 : 1);
    // The dirty set since the last instant freezes (the job's, if it is a diff), and stores
    // from now on are logged into the other bitmap, which the previous job's end left empty:
    // one word written, no page touched.
    const track = Atomics.load(this.#ctrl, CTRL_TRACK) ^ 1;
    Atomics.store(this.#ctrl, CTRL_TRACK, track);
    this.#logging = session.track[track];
    session.generation = this.#generation;
    this.#session = session;
    this.#spareSlot = -1;
    this.#freshSlots = 0;
    this.#peakUsed = 0;
    this.#throttleDebtUs = 0;
    // #metrics is fresh: end() made it, so that the instant allocates nothing (an allocation can
    // be the one that starts a collection).
    // The doorbell is set now but rung (Atomics.notify, a futex wake-up that can let the writer
    // preempt this thread for milliseconds on a busy machine) only once the guest has run on:
    // see ringWriter. The writer also looks at it every few milliseconds by itself.
    Atomics.add(session.ctrl, CTRL_JOB_SEQ, 1);
    this.#doorbell = true;
    return session;
  }

  /**
   * Moves to the next generation, G, above every one an entry holds: every page is protected.
   * Pages open to stores take G + `open` (G + 1: stored to since this instant, logged for the
   * next diff; G: precopy's passes).
   */
  #nextGeneration(open: number): void {
    let g = this.#openGeneration + 1;
    if (g + 1 > MAX_GENERATION) {
      // Once every 268 million snapshots: an entry left at an old generation by a failed
      // snapshot or by precopy must not be taken for a saved page of a new one.
      for (let p = 0; p < this.pageCount; p++) Atomics.and(this.gate, p, GATE_MACHINE_BITS);
      g = 1;
    }
    this.#generation = g;
    Atomics.store(this.#ctrl, CTRL_GENERATION, g);
    this.#setOpen(g + open);
  }

  #setOpen(generation: number): void {
    this.#openGeneration = generation;
    this.#gateOpen = openValue(generation);
    this.#onGateOpen(this.#gateOpen);
  }

  /** Logs `page` as stored to since the last instant and opens it to stores. */
  #openLogged(page: number): void {
    Atomics.or(this.#logging, page >>> 5, 1 << (page & 31));
    forceOpenPage(this.gate, page, this.#openGeneration);
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
   * Ends the session once the writer has finished and returns what the guest side measured. A
   * page still protected or armed (precopy leaves some, a failed writer many) is not touched
   * here: its entry holds an older generation, so its next store opens it (see `onStore`); the
   * end's work does not grow with RAM either. Precopy's dirty log is cleared (one word per 32
   * pages) so the next precopy starts from an empty one.
   */
  end(): GuestSideMetrics {
    if (this.#session === null) throw new Error("Cannot end a snapshot: none is running");
    const s = this.#session;
    if (s.mode === "precopy") s.dirty.fill(0);
    // The frozen set is done with. If the snapshot failed, no file holds its instant: its pages
    // go back into the log, which then holds every page stored to since the last snapshot that
    // did complete (the parent of the next diff), so none is lost.
    const frozen = s.frozen;
    const failed = Atomics.load(s.ctrl, CTRL_WRITER_STATE) !== WRITER_DONE;
    for (let w = 0; w < frozen.length; w++) {
      const bits = Atomics.exchange(frozen, w, 0);
      if (failed && bits !== 0) Atomics.or(this.#logging, w, bits);
    }
    this.#session = null;
    this.#throttleDebtUs = 0;
    this.#releaseTouchedChunks(s);
    const metrics = this.#metrics;
    metrics.bufferPeakBytes = this.#peakUsed * PAGE_SIZE;
    this.#metrics = emptyGuestMetrics();
    return metrics;
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
    this.#metrics.throttleMaxUs = Math.max(this.#metrics.throttleMaxUs, slept);
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
   * The store hook: called before a store to `page` whose gate entry's engine bits differ from
   * `gateOpen`. Returns when the store may go ahead: at once for a page saved in this generation,
   * after logging it (precopy), after copying it aside (cow, protected), or after the writer's
   * copy of it (cow, copying).
   */
  onStore = (page: number): void => {
    const gate = this.gate;
    const generation = this.#generation;
    let t0 = -1;
    for (;;) {
      const entry = Atomics.load(gate, page);
      if ((entry & ~GATE_MACHINE_BITS) === this.#gateOpen) break; // open (a machine bit called)
      const s = this.#session;
      // No snapshot needs the page (none runs, or the writer failed and abandoned it): its entry
      // still holds an older generation, or a claim a dead writer left. Log it and open it.
      if (s === null || Atomics.load(s.ctrl, CTRL_WRITER_STATE) === WRITER_FAILED) {
        this.#openLogged(page);
        break;
      }
      if (entryGeneration(entry) === generation) {
        if ((entry & GATE_HOOK) === 0) {
          // Saved by this snapshot; stored to for the first time since its instant.
          this.#openLogged(page);
          break;
        }
        // The writer holds this page for the microseconds of one copy: wait for it alone.
        if (t0 < 0) t0 = nowUs();
        this.#metrics.writerPageWaits++;
        const w0 = nowUs();
        this.#stall(() => Atomics.wait(gate, page, entry, 1000));
        this.#metrics.pageWaitMaxUs = Math.max(this.#metrics.pageWaitMaxUs, nowUs() - w0);
        continue;
      }
      if (s.mode !== "cow") {
        // Precopy's dirty log until the final pause (stop never runs the guest): the bit is set
        // before the store lands, so a writer reading the page now resends it later. After the
        // final pause the file's point in time is behind us: the store is logged for the next
        // diff instead.
        if (s.mode === "precopy" && this.#openGeneration === generation) {
          Atomics.or(s.dirty, page >>> 5, 1 << (page & 31));
          forceOpenPage(gate, page, generation);
        } else {
          this.#openLogged(page);
        }
        break;
      }
      // A diff saves only the pages of its frozen set: any other page is open at once.
      if (s.diff && (s.frozen[page >>> 5] & (1 << (page & 31))) === 0) {
        this.#openLogged(page);
        break;
      }
      if (t0 < 0) t0 = nowUs();
      // Copied (the page is then saved, and the next turn opens it) or not (look again).
      this.#copyAside(s, page);
    }
    if (t0 >= 0) {
      const us = nowUs() - t0;
      this.#metrics.storeHookUs += us;
      this.#metrics.storeHookMaxUs = Math.max(this.#metrics.storeHookMaxUs, us);
    }
  };

  /** Copies a protected page into a free slot; false if the page changed state meanwhile. */
  #copyAside(s: SnapshotSession, page: number): boolean {
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
        entryGeneration(Atomics.load(this.gate, page)) !== s.generation &&
        Atomics.load(s.ctrl, CTRL_FREE_SLOTS) === 0
      ) {
        const w0 = nowUs();
        this.#stall(() => Atomics.wait(s.ctrl, CTRL_PROGRESS, seen, 1000));
        this.#metrics.slotWaitMaxUs = Math.max(this.#metrics.slotWaitMaxUs, nowUs() - w0);
      }
      return false;
    }
    this.#spareSlot = slot;
    if (!tryClaimPage(this.gate, page, s.generation)) return false;
    this.#spareSlot = -1;
    // Copy 1 of 2 on this page's way to the file (the guest's): RAM into its slot. The writer
    // hands the slot to the file's batch itself (copy 2, writer_loop.ts).
    const from = page * PAGE_SIZE;
    this.chunks.view(slot >> CHUNK_SHIFT)!.set(
      this.ram.subarray(from, from + PAGE_SIZE),
      (slot & (CHUNK_SLOTS - 1)) * PAGE_SIZE,
    );
    const tail = Atomics.load(s.ctrl, CTRL_QUEUE_TAIL);
    const at = (tail % s.slotCount) * 2;
    Atomics.store(s.queue, at, page);
    Atomics.store(s.queue, at + 1, slot);
    // The contents are safe in the slot: the page is saved, the store may go ahead. No one waits
    // on a page the guest claimed (the writer skips it), so no notify.
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
      // Memory nobody has written yet: this thread's copy pays its page fault.
      if (slot >= Atomics.load(s.ctrl, CTRL_PREFAULTED)) this.#metrics.coldSlots++;
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
    // A writer that stepped aside for this thread (writer_loop.ts) must come back now.
    Atomics.notify(s.ctrl, CTRL_GUEST_WAITING);
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
    // The snapshot's instant: from here on a store is logged for the next diff (its page leaves
    // the generation precopy opened pages at).
    this.#setOpen(this.#generation + 1);
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
        armPage(this.gate, (w << 5) | b);
      }
    }
  }
}

function emptyGuestMetrics(): GuestSideMetrics {
  return {
    pagesViaBuffer: 0,
    coldSlots: 0,
    bufferPeakBytes: 0,
    guestStallUs: 0,
    slotWaitMaxUs: 0,
    pageWaitMaxUs: 0,
    storeHookMaxUs: 0,
    storeHookUs: 0,
    writerPageWaits: 0,
    throttleUs: 0,
    throttleMaxUs: 0,
    gcUs: 0,
  };
}
