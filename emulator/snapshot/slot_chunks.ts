/**
 * The copy buffer's memory, in chunks that can be given back to the operating system.
 *
 * A `SharedArrayBuffer` cannot return pages it has touched (JavaScript has no `madvise`), but a
 * whole one is freed (unmapped) once no thread references it and the garbage collector has run.
 * So the slots that hold copied-aside pages live in chunks of {@linkcode CHUNK_SLOTS} slots
 * (2 MiB), each its own `SharedArrayBuffer`. Where pages can be discarded (discard_pages.ts: Linux,
 * FFI allowed) a chunk is one transparent huge page: its buffer is allocated twice as large and
 * only the 2 MiB-aligned window inside it is used (the rest is never touched: address space
 * only), advised `MADV_HUGEPAGE`. The first write to it then faults in all 2 MiB at once. On the
 * virtual machine of BENCHMARKS.md that costs about 10 µs per 4 KiB for memory new to the
 * process (16-20 µs in 4 KiB faults) and 0.3 µs per 4 KiB for a chunk whose pages were discarded
 * a moment before (15 µs in 4 KiB faults: what is expensive there is each page's first mapping,
 * not the kernel's zeroing). The chunks' life:
 *
 * - the guest thread allocates them: a reserve of {@linkcode CHUNK_RESERVE} chunks before any
 *   snapshot (untouched, so they cost address space only; the instant allocates nothing), then,
 *   between slices, enough to stay {@linkcode CHUNK_RESERVE} chunks ahead of the slots it has
 *   taken; it sends each one to the writer through a `MessagePort` before any slot of it can
 *   be queued;
 * - the writer drops a chunk once the sweep has passed all of RAM (no slot will be taken any
 *   more) and every slot of it is free (its pages are in the file); the guest drops its own
 *   reference between slices;
 * - when the snapshot ends, both drop every chunk the snapshot touched, and the guest allocates
 *   a fresh, untouched reserve for the next one.
 *
 * A dropped chunk's memory goes back to the OS when both threads' garbage collectors have freed
 * their `SharedArrayBuffer` objects: by then they are old objects, so that takes a full
 * collection, which V8 runs on its own schedule. When the process runs with
 * `--v8-flags=--expose-gc` (the `livesnap` task does), each thread runs one itself when a
 * snapshot ends ({@linkcode collectGarbage}): the writer after every job, the guest only when it
 * let go of at least {@linkcode CHUNK_GC_MIN} chunks, since its collection stalls the guest.
 *
 * Shared state, three `Int32` per chunk: the slots of it in use (guest adds on taking, writer
 * subtracts on freeing), its state ({@linkcode CHUNK_ABSENT}, {@linkcode CHUNK_LIVE},
 * {@linkcode CHUNK_DROPPED}) and its generation, bumped by the guest at each allocation: a
 * thread uses a chunk only if the one it holds is of the current generation, so a reference
 * left over from an earlier snapshot (a writer that failed half-way) can never be read for a
 * newer chunk of the same number; the reader waits for the new one's message instead.
 *
 * @module
 */

import { PAGE_SIZE } from "./page_state.ts";
import { adviseHugePages, canDiscardPages, hugePageOffset } from "./discard_pages.ts";

/** Slots per chunk: 512 pages, 2 MiB (one huge page). */
export const CHUNK_SLOTS = 512;
/** log2(CHUNK_SLOTS). */
export const CHUNK_SHIFT = 9;
/** A chunk's bytes. */
export const CHUNK_BYTES = CHUNK_SLOTS * PAGE_SIZE;
/** Chunks kept allocated ahead of the guest (8 MiB of address space, touched only when used). */
export const CHUNK_RESERVE = 4;

/** The guest thread collects garbage at a snapshot's end only if it let go of at least this many
 * chunks (32 MiB, twice the default buffer): the collection, and warming the instant's code up
 * again after it, stall the guest for tens of milliseconds. */
export const CHUNK_GC_MIN = 16;

/** Not allocated (or given back at the end of a snapshot). */
export const CHUNK_ABSENT = 0;
/** Allocated by the guest and sent to the writer. */
export const CHUNK_LIVE = 1;
/** Dropped by the writer during the snapshot: no slot of it is used or will be. */
export const CHUNK_DROPPED = 2;

/** The message that carries a chunk from the guest thread to the writer. */
export interface SlotChunkMessage {
  type: "slot-chunk";
  index: number;
  generation: number;
  buffer: SharedArrayBuffer;
  /** Where the chunk's {@linkcode CHUNK_BYTES} start in `buffer` (a huge page's alignment). */
  offset: number;
}

/** Chunks needed for `slots` slots. */
export function chunksFor(slots: number): number {
  return Math.ceil(slots / CHUNK_SLOTS);
}

/** One thread's references to the chunks (a sparse table), and the shared per-chunk words. */
export class SlotChunks {
  /** Per chunk: [slots in use, state, generation]. */
  readonly shared: Int32Array;
  readonly count: number;
  /** One past the highest chunk this thread has ever held: loops over the chunks stop here, so
   * they cost in proportion to the buffer's use, not to RAM. */
  extent = 0;
  readonly #views: (Uint8Array | undefined)[];
  readonly #generations: Int32Array;

  /** Whether {@linkcode SlotChunks.allocate} makes huge-page chunks where it can. */
  readonly hugePages: boolean;

  /** `table` is the shared per-chunk words (from {@linkcode allocateChunkTable}); `hugePages`
   * false makes every chunk a plain buffer (benchmarks compare the two). */
  constructor(table: SharedArrayBuffer, options: { hugePages?: boolean } = {}) {
    this.hugePages = options.hugePages ?? true;
    this.shared = new Int32Array(table);
    this.count = Math.floor(this.shared.length / 3);
    this.#views = new Array(this.count).fill(undefined);
    this.#generations = new Int32Array(this.count);
  }

  /** The chunk's bytes, or undefined if this thread does not hold its current generation. */
  view(chunk: number): Uint8Array | undefined {
    const v = this.#views[chunk];
    if (v === undefined) return undefined;
    return this.#generations[chunk] === Atomics.load(this.shared, chunk * 3 + 2) ? v : undefined;
  }

  /** The bytes of `slot`, or undefined if this thread does not hold its chunk. */
  slot(slot: number): Uint8Array | undefined {
    const v = this.view(slot >> CHUNK_SHIFT);
    if (v === undefined) return undefined;
    const at = (slot & (CHUNK_SLOTS - 1)) * PAGE_SIZE;
    return v.subarray(at, at + PAGE_SIZE);
  }

  /** Takes a chunk received from the other thread. */
  receive(message: SlotChunkMessage): void {
    this.#hold(message.index, message.buffer, message.generation, message.offset);
  }

  #hold(chunk: number, buffer: SharedArrayBuffer, generation: number, offset: number): void {
    if (chunk >= this.extent) this.extent = chunk + 1;
    this.#views[chunk] = new Uint8Array(buffer, offset, CHUNK_BYTES);
    this.#generations[chunk] = generation;
  }

  /** The guest: a new chunk numbered `chunk` (its next generation), held and marked live: a
   * huge page where pages can be discarded (see the module's doc), else a plain buffer. Returns
   * the message that hands it to the writer. */
  allocate(chunk: number): SlotChunkMessage {
    let buffer: SharedArrayBuffer;
    let offset = -1;
    if (this.hugePages && canDiscardPages()) {
      buffer = new SharedArrayBuffer(2 * CHUNK_BYTES);
      offset = hugePageOffset(buffer);
      if (offset >= 0) adviseHugePages(new Uint8Array(buffer, offset, CHUNK_BYTES));
    }
    if (offset < 0) {
      buffer = new SharedArrayBuffer(CHUNK_BYTES);
      offset = 0;
    }
    const generation = Atomics.add(this.shared, chunk * 3 + 2, 1) + 1;
    const message: SlotChunkMessage = {
      type: "slot-chunk",
      index: chunk,
      generation,
      buffer: buffer!,
      offset,
    };
    this.receive(message);
    this.setState(chunk, CHUNK_LIVE);
    return message;
  }

  /** Forgets this thread's reference (the memory goes once both threads have, and GC ran). */
  release(chunk: number): void {
    this.#views[chunk] = undefined;
  }

  /** True if this thread holds a reference to the chunk (of any generation). */
  holds(chunk: number): boolean {
    return this.#views[chunk] !== undefined;
  }

  /** Slots of `chunk` in use now. */
  used(chunk: number): number {
    return Atomics.load(this.shared, chunk * 3);
  }

  /** Sets the slots in use of `chunk` (the guest, at the end of a snapshot). */
  setUsed(chunk: number, used: number): void {
    Atomics.store(this.shared, chunk * 3, used);
  }

  /** The chunk's state. */
  state(chunk: number): number {
    return Atomics.load(this.shared, chunk * 3 + 1);
  }

  setState(chunk: number, state: number): void {
    Atomics.store(this.shared, chunk * 3 + 1, state);
  }

  /** Counts a slot of the chunk taken (+1) or freed (-1). */
  addUsed(chunk: number, delta: number): void {
    Atomics.add(this.shared, chunk * 3, delta);
  }
}

/** The shared per-chunk words for a copy buffer of up to `pageCount` slots. */
export function allocateChunkTable(pageCount: number): SharedArrayBuffer {
  const t = new SharedArrayBuffer(Math.max(1, chunksFor(pageCount)) * 12);
  new Int32Array(t).fill(0);
  return t;
}

/** Runs a full garbage collection on this thread if the runtime exposes one (`--v8-flags=
 * --expose-gc`), so that dropped chunks go back to the OS now; returns the microseconds spent (0
 * if there is no such function). */
export function collectGarbage(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc !== "function") return 0;
  const t0 = performance.now();
  gc();
  return (performance.now() - t0) * 1000;
}
