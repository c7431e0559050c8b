/**
 * Guest RAM and its page gate.
 *
 * RAM is one `Uint8Array` over a `SharedArrayBuffer` so that a Worker (the snapshot writer) can
 * read it while the guest runs. Every write into RAM (CPU stores of all widths, `sc.w`, AMOs, the
 * ELF loader, devices) passes one gate: `pageGate`, an `Int32Array` over its own
 * `SharedArrayBuffer` with one entry per 4 KiB page. When an entry differs from
 * {@linkcode Ram.gateOpen} the writer calls {@linkcode Ram.gatedStore} before the store: one load
 * and one test on the hot path. Bits of an entry:
 *
 * - {@linkcode GATE_HOOK} (bit 0) and bits 4-31 belong to the snapshot engine. Bits 4-31 hold the
 *   snapshot generation in which the page was last saved; `gateOpen` is the current generation
 *   shifted left by {@linkcode GATE_GENERATION_SHIFT}. So the engine write-protects all of RAM at
 *   once, without touching a page, by moving to a new generation: every entry then differs from
 *   `gateOpen` until its page is saved and the entry takes the new generation. GATE_HOOK marks a
 *   page the engine is copying. Whenever the engine bits differ from `gateOpen`, the store hook
 *   installed with {@linkcode Ram.setStoreHook} runs before a store into the page (it may block
 *   with `Atomics.wait`). The engine changes its bits with compare-and-swap or `Atomics.and` /
 *   `Atomics.or`, so the machine's bits survive.
 * - {@linkcode GATE_WATCH} (bit 1) belongs to the machine: stores into the page are reported so
 *   the machine can react after the instruction (HTIF `tohost`).
 * - {@linkcode GATE_CODE} (bit 2) belongs to the machine: the page holds decoded instructions,
 *   and a store into it must drop them from the decoded-instruction cache.
 * - {@linkcode GATE_ABSENT} (bit 3) belongs to the machine: the page's contents are not in RAM
 *   yet (a lazy restore, a post-copy migration). Every access to it, load or store, instruction
 *   fetch or device access, first calls the absent-page handler installed with
 *   {@linkcode Ram.setAbsentHandler}, which must bring the page in and clear the bit (any
 *   thread may clear it: {@linkcode clearAbsent}) or throw. Stores reach the handler through the
 *   store gate above (the bit makes the entry differ from `gateOpen`); loads and fetches test
 *   the bit only while {@linkcode Ram.lazy} is true, a flag the CPU loop reads once per run, so
 *   a machine with every page present pays nothing on loads. On RAM made with `absentAtStart` the
 *   bit's meaning is flipped ({@linkcode Ram.absentFlip}: set means present), so that every page
 *   starts absent with nothing written; code that reads the bit itself XORs it with `absentFlip`.
 *
 * @module
 */

import { PAGE_SHIFT, PAGE_SIZE, RAM_BASE } from "./memory_map.ts";

/** Gate bit owned by the snapshot engine: call the store hook before a store into the page. */
export const GATE_HOOK = 1;
/** Gate bit owned by the machine: report stores into the page (HTIF `tohost`). */
export const GATE_WATCH = 2;

/** Gate bit owned by the machine: the page holds cached decoded instructions. */
export const GATE_CODE = 4;

/** Gate bit owned by the machine: the page's contents are not in RAM yet (lazy restore,
 * post-copy); see {@linkcode Ram.setAbsentHandler}. */
export const GATE_ABSENT = 8;

/** The machine's bits of a gate entry; every other bit belongs to the snapshot engine. */
export const GATE_MACHINE_BITS: number = GATE_WATCH | GATE_CODE | GATE_ABSENT;

/** Where the snapshot engine's generation starts in a gate entry (bits 4-31). */
export const GATE_GENERATION_SHIFT = 4;

/**
 * Brings absent pages in (`Ram.setAbsentHandler`). Both methods run on the guest's thread, in
 * the middle of an instruction; they may block (with a bounded wait) and must either leave the
 * page(s) present, with {@linkcode GATE_ABSENT} cleared, or throw: the access then never
 * happens and the run ends with that exception (the guest never runs on bytes that are not its
 * own).
 */
export interface AbsentPageHandler {
  /** Make page `page` (0 = the page at RAM_BASE) present. */
  fault(page: number): void;
  /** Make every page present (before the whole of RAM is read: a snapshot, a digest). */
  faultAll(): void;
}

/**
 * Marks page `page` present in a gate (any thread, after the page's bytes are in RAM; the
 * atomic write publishes them to the guest thread). `flip`: the RAM's `absentFlip` (then the
 * bit is set rather than cleared).
 */
export function clearAbsent(gate: Int32Array, page: number, flip = 0): void {
  if (flip === 0) Atomics.and(gate, page, ~GATE_ABSENT);
  else Atomics.or(gate, page, GATE_ABSENT);
}

/** Called with the page index (0 = the page at RAM_BASE) before a store into a hooked page. */
export type StoreHook = (pageIndex: number) => void;

/** Guest RAM: bytes, typed views for aligned accesses, and the per-page store gate. */
export class Ram {
  /** RAM size in bytes (a multiple of PAGE_SIZE). */
  readonly size: number;
  /** All of RAM, over a SharedArrayBuffer. Index 0 is guest physical address RAM_BASE. */
  readonly bytes: Uint8Array;
  /** 16-bit view of the same memory (host is little-endian, checked at construction). */
  readonly u16: Uint16Array;
  /** 32-bit view of the same memory. */
  readonly i32: Int32Array;
  /** One entry per page; an entry other than `gateOpen` means "call gatedStore(page) before
   * storing". */
  readonly pageGate: Int32Array;
  /**
   * 0, or {@linkcode GATE_ABSENT} for RAM made with `absentAtStart`: then the bit is set in the
   * entry of a page that is present, so that a gate of zeros (fresh memory, never written) has
   * every page absent and marking them costs nothing (a lazy restore; BENCHMARKS.md, "Restore:
   * lazy and eager"). A page is absent when `((entry ^ absentFlip) & GATE_ABSENT) !== 0`.
   */
  readonly absentFlip: number;
  #open = 0;
  /**
   * The value of a gate entry whose page needs no look before a store: the snapshot engine's
   * current generation shifted left by {@linkcode GATE_GENERATION_SHIFT} (0 until the engine's
   * first snapshot), with {@linkcode absentFlip}'s bit, no other. The engine sets its value; it
   * changes only between two runs of the machine, never during one: the CPU loop reads it once
   * per run.
   */
  get gateOpen(): number {
    return this.#open | this.absentFlip;
  }
  set gateOpen(value: number) {
    this.#open = value;
  }
  /** Number of pages. */
  readonly pageCount: number;
  #hook: StoreHook | null = null;
  #absent: AbsentPageHandler | null = null;
  /**
   * True while pages may be absent ({@linkcode GATE_ABSENT}): loads and instruction fetches
   * then test the page's bit. Set by {@linkcode Ram.markAbsent}; the absent-page handler's owner
   * sets it back to false once every page is present (read by the CPU loop once per run).
   */
  lazy = false;
  /**
   * Called for a write into a GATE_CODE page with the RAM offsets [start, end) it may have
   * changed (the machine drops those instructions from its decode cache).
   */
  onCodeWrite: (start: number, end: number) => void = () => {};
  /**
   * RAM offset of the last store into a GATE_WATCH page (-1: none since the machine last
   * looked); the machine resets it.
   */
  watchHit: number = -1;

  /**
   * Zeroed RAM of `size` bytes (a positive multiple of 4096, at most 2 GiB) on a
   * SharedArrayBuffer, so the snapshot engine's writer thread can read it; throws a RangeError
   * otherwise. With `absentAtStart`, every page starts absent ({@linkcode absentFlip}): install
   * the absent-page handler before the first access.
   */
  constructor(size: number, options: { absentAtStart?: boolean } = {}) {
    if (!Number.isInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) {
      throw new RangeError(
        `Cannot create RAM: size ${size} is not a positive multiple of ${PAGE_SIZE}`,
      );
    }
    if (size > 0x8000_0000) {
      throw new RangeError(`Cannot create RAM: size ${size} exceeds 2 GiB (RAM ends at 4 GiB)`);
    }
    if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
      throw new Error("Cannot create RAM: the host is big-endian; only little-endian is supported");
    }
    const sab = new SharedArrayBuffer(size);
    this.size = size;
    this.bytes = new Uint8Array(sab);
    this.u16 = new Uint16Array(sab);
    this.i32 = new Int32Array(sab);
    this.pageCount = size / PAGE_SIZE;
    this.pageGate = new Int32Array(new SharedArrayBuffer(this.pageCount * 4));
    this.absentFlip = options.absentAtStart === true ? GATE_ABSENT : 0;
    this.lazy = options.absentAtStart === true;
  }

  /**
   * Install (or with `null` remove) the snapshot engine's store hook. The hook runs for stores
   * into pages whose gate entry has GATE_HOOK set, before the store happens.
   */
  setStoreHook(hook: StoreHook | null): void {
    this.#hook = hook;
  }

  /**
   * Install (or remove) the handler that brings absent pages in. Mark pages absent with
   * {@linkcode Ram.markAbsent} after installing it.
   */
  setAbsentHandler(handler: AbsentPageHandler | null): void {
    this.#absent = handler;
  }

  /**
   * Marks pages `[first, first + count)` absent (their bytes in RAM are not the guest's yet) and
   * turns on the load check ({@linkcode Ram.lazy}). Call between runs, on the guest's thread.
   */
  markAbsent(first = 0, count: number = this.pageCount - first): void {
    if (count <= 0) return;
    if (this.#absent === null) {
      throw new Error("Cannot mark pages absent: no absent-page handler is installed");
    }
    for (let p = first; p < first + count; p++) {
      if (this.absentFlip === 0) Atomics.or(this.pageGate, p, GATE_ABSENT);
      else Atomics.and(this.pageGate, p, ~GATE_ABSENT);
    }
    this.lazy = true;
  }

  /** True when page `page` is absent. */
  isAbsent(page: number): boolean {
    return ((Atomics.load(this.pageGate, page) ^ this.absentFlip) & GATE_ABSENT) !== 0;
  }

  /** Marks page `page` present (see {@linkcode clearAbsent}). */
  markPresent(page: number): void {
    clearAbsent(this.pageGate, page, this.absentFlip);
  }

  /**
   * Brings page `page` in through the handler (the slow path of a load, fetch or store that met
   * GATE_ABSENT). Throws what the handler throws, or an Error if it returned with the page still
   * absent.
   */
  faultIn(page: number): void {
    if (!this.isAbsent(page)) return;
    if (this.#absent === null) {
      throw new Error(`Cannot access page ${page}: it is absent and no handler is installed`);
    }
    this.#absent.fault(page);
    if (this.isAbsent(page)) {
      throw new Error(`Cannot access page ${page}: the absent-page handler left it absent`);
    }
  }

  /** Brings in every absent page of RAM offsets `[off, off + len)`. */
  ensurePresent(off: number, len: number): void {
    if (!this.lazy || len <= 0) return;
    for (let p = off >>> PAGE_SHIFT; p <= (off + len - 1) >>> PAGE_SHIFT; p++) this.faultIn(p);
  }

  /** Brings in every absent page (before all of RAM is read: a snapshot, a digest, a save). */
  ensureAllPresent(): void {
    if (!this.lazy) return;
    this.#absent?.faultAll();
    for (let p = 0; p < this.pageCount; p++) this.faultIn(p);
    this.lazy = false;
  }

  /**
   * The slow half of the store gate: called when `pageGate[page] !== gateOpen`, before the store
   * at RAM offset `offset`. Brings an absent page in first. Returns true when the machine must
   * look at the store after the instruction (GATE_WATCH).
   */
  gatedStore(page: number, offset: number): boolean {
    let g = Atomics.load(this.pageGate, page);
    if (((g ^ this.absentFlip) & GATE_ABSENT) !== 0) {
      this.faultIn(page);
      g = Atomics.load(this.pageGate, page);
    }
    if ((g & ~GATE_MACHINE_BITS) !== this.#open && this.#hook !== null) this.#hook(page);
    if ((g & GATE_CODE) !== 0) this.onCodeWrite(offset, offset + 4);
    if ((g & GATE_WATCH) !== 0) {
      this.watchHit = offset;
      return true;
    }
    return false;
  }

  /** Whether [addr, addr+len) (guest physical) lies in RAM. */
  contains(addr: number, len: number): boolean {
    const off = addr - RAM_BASE;
    return off >= 0 && len >= 0 && off + len <= this.size;
  }

  /**
   * Write bytes at a guest physical address through the gate (loader and device writes).
   * Throws a RangeError when the range is outside RAM: callers check first.
   */
  write(addr: number, data: Uint8Array): void {
    if (!this.contains(addr, data.length)) {
      throw new RangeError(
        `Cannot write ${data.length} bytes at 0x${addr.toString(16)}: outside RAM`,
      );
    }
    const off = addr - RAM_BASE;
    this.#gateRange(off, data.length);
    this.bytes.set(data, off);
  }

  /** Zero a range of RAM through the gate. */
  fill(addr: number, len: number, value = 0): void {
    if (!this.contains(addr, len)) {
      throw new RangeError(`Cannot fill ${len} bytes at 0x${addr.toString(16)}: outside RAM`);
    }
    const off = addr - RAM_BASE;
    this.#gateRange(off, len);
    this.bytes.fill(value, off, off + len);
  }

  /** Copy of bytes at a guest physical address (no store gate; absent pages are brought in). */
  read(addr: number, len: number): Uint8Array {
    if (!this.contains(addr, len)) {
      throw new RangeError(`Cannot read ${len} bytes at 0x${addr.toString(16)}: outside RAM`);
    }
    const off = addr - RAM_BASE;
    this.ensurePresent(off, len);
    return this.bytes.slice(off, off + len);
  }

  #gateRange(off: number, len: number): void {
    if (len === 0) return;
    const first = off >>> PAGE_SHIFT;
    const last = (off + len - 1) >>> PAGE_SHIFT;
    for (let p = first; p <= last; p++) {
      if (this.pageGate[p] === this.gateOpen) continue;
      const start = Math.max(off, p * PAGE_SIZE);
      this.gatedStore(p, start);
      if ((this.pageGate[p] & GATE_CODE) !== 0) {
        this.onCodeWrite(start, Math.min(off + len, (p + 1) * PAGE_SIZE));
      }
    }
  }
}
