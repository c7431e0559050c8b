/**
 * What the guest thread and the background loader of a lazy restore share, and the one function
 * both use to bring a record's pages into RAM (`installRecord`).
 *
 * Shared memory, allocated once per restore (`createLazyBuffers`):
 *
 * - `state`, one `Int32` per page: {@linkcode PAGE_ABSENT} → {@linkcode PAGE_INSTALLING} (one
 *   compare-and-swap, by whichever thread installs it) → {@linkcode PAGE_PREFETCHED} (the loader
 *   installed it) or {@linkcode PAGE_DEMANDED} (a demand read on the guest thread installed it).
 *   Only the claimer writes the page's bytes, so the guest's later stores are never overwritten.
 * - `ctl`, control words (the `CTL_*` indices) and `bytes`, 64-bit byte counters.
 *
 * The page's gate bit (GATE_ABSENT, emulator/ram.ts) is cleared only by the guest thread, on the
 * page's first access: so every first touch is seen (prefetch hits, the working-set record) at
 * the cost of one slow-path call per page, no I/O.
 *
 * @module
 */

import { CorruptError } from "../../format/errors.ts";
import type { MachineDescription } from "../../format/header.ts";
import { decodePageRecord } from "../../format/page_record.ts";
import { RECORD_HEAD_SIZE, RecordType } from "../../format/constants.ts";
import { checkRecordCrc, decodeRecordHead, recordTypeName } from "../../format/record.ts";
import { zstdDecompressInto, zstdDecompressView } from "../../format/_zstd.ts";
import { isZero } from "../../format/_bytes.ts";
import { hashPageInto } from "../../format/checksum.ts";
import type { IndexBody } from "../../format/index_record.ts";

/** The page's bytes are not in RAM. */
export const PAGE_ABSENT = 0;
/** A thread claimed the page and is copying its bytes in. */
export const PAGE_INSTALLING = 1;
/** The loader brought the page in before the guest touched it. */
export const PAGE_PREFETCHED = 2;
/** A demand read brought the page in (the page faulted, or shares its record). */
export const PAGE_DEMANDED = 3;

/** Set by the guest while it reads a record on demand: the loader waits (demand goes first). */
export const CTL_DEMAND_ACTIVE = 0;
/** The loader's state: {@linkcode LOADER_STARTING} ... {@linkcode LOADER_STOPPED}. */
export const CTL_LOADER = 1;
/** Pages the loader installed. */
export const CTL_PREFETCHED = 2;
/** The guest asks the loader to stop (1). */
export const CTL_STOP = 3;
/** Non-zero while the guest waits on a page's `state` entry (the installer then notifies). */
export const CTL_WAITING = 4;
/** Page + 1 the guest asks the loader for (sources the guest cannot read itself), 0: none. */
export const CTL_DEMAND_PAGE = 5;
/** Bumped (and notified) whenever CTL_DEMAND_PAGE or CTL_STOP is set. */
export const CTL_DOORBELL = 6;
/** Records the loader could not read (bad CRC, short file): their pages stay absent. */
export const CTL_FAILED_RECORDS = 7;
/** Page + 1 whose demand read (CTL_DEMAND_PAGE) failed in the loader; its reason is in
 * `message`. */
export const CTL_DEMAND_FAILED = 12;
/** Milliseconds from the restore's start to the loader's end (valid once LOADER_DONE). */
export const CTL_DONE_MS = 8;
/** Hinted pages the loader brought in before the rest. */
export const CTL_HINT_PAGES = 9;
/** Loaders still running; the last one to finish sets CTL_DONE_MS and LOADER_DONE. */
export const CTL_LOADERS_LEFT = 10;
/** Bumped by a loader after each record it installs (the guest's waits measure progress). */
export const CTL_PROGRESS = 11;
/**
 * Non-zero while the guest runs the window of the working-set hint in use: a background loader
 * that has brought the hint's records in holds the rest back until the guest's thread clears it
 * (and notifies), or for at most `LoaderBoot.holdMaxMs` (`lazy_restore.ts`, `HOLD_REST_MAX_MS`).
 */
export const CTL_HOLD_REST = 13;
const CTL_WORDS = 16;

/** `ctl[CTL_LOADER]`: the worker is starting. */
export const LOADER_STARTING = 0;
/** `ctl[CTL_LOADER]`: prefetching. */
export const LOADER_RUNNING = 1;
/** `ctl[CTL_LOADER]`: every record read (failed ones counted in CTL_FAILED_RECORDS). */
export const LOADER_DONE = 2;
/** `ctl[CTL_LOADER]`: the loader could not go on (its message is in `message`). */
export const LOADER_FAILED = 3;
/** `ctl[CTL_LOADER]`: stopped at the guest's request. */
export const LOADER_STOPPED = 4;

/** `bytes[BYTES_GUEST]`: bytes the guest thread read; `bytes[BYTES_LOADER]`: the loader's. */
export const BYTES_GUEST = 0;
/** See {@linkcode BYTES_GUEST}. */
export const BYTES_LOADER = 1;

/** The shared memory of one lazy restore (plain `SharedArrayBuffer`s, posted to the loader). */
export interface LazyBuffers {
  state: SharedArrayBuffer;
  ctl: SharedArrayBuffer;
  bytes: SharedArrayBuffer;
  /** The loader's failure message, UTF-8, NUL-padded. */
  message: SharedArrayBuffer;
  /**
   * For an eager restore: each installed page's content-digest entry (FORMAT.md §10), written by
   * whichever thread installs the page from the bytes it copies: `pageHashes`, 16 bytes a page
   * (XXH3-128), and `pageHashed`, a byte a page (0: not recorded, {@linkcode HASHED_ZERO},
   * {@linkcode HASHED_DATA}). Null for a lazy restore (the guest changes pages before they are all
   * in).
   */
  pageHashes: SharedArrayBuffer | null;
  pageHashed: SharedArrayBuffer | null;
}

/** `pageHashed`: the page was installed and is all zeros. */
export const HASHED_ZERO = 1;
/** `pageHashed`: the page was installed and its XXH3-128 is in `pageHashes`. */
export const HASHED_DATA = 2;

/** Typed views of {@linkcode LazyBuffers}. */
export interface LazyViews {
  state: Int32Array;
  ctl: Int32Array;
  bytes: BigInt64Array;
  message: Uint8Array;
  pageHashes: Uint8Array | null;
  pageHashed: Uint8Array | null;
}

/** Allocates the shared memory for `pageCount` pages (with `hashes`, the content-digest
 * entries an eager restore records as it installs pages). */
export function createLazyBuffers(pageCount: number, hashes = false): LazyBuffers {
  return {
    state: new SharedArrayBuffer(pageCount * 4),
    ctl: new SharedArrayBuffer(CTL_WORDS * 4),
    bytes: new SharedArrayBuffer(2 * 8),
    message: new SharedArrayBuffer(1024),
    pageHashes: hashes ? new SharedArrayBuffer(pageCount * 16) : null,
    pageHashed: hashes ? new SharedArrayBuffer(pageCount) : null,
  };
}

/** Views over {@linkcode LazyBuffers}. */
export function lazyViews(b: LazyBuffers): LazyViews {
  return {
    state: new Int32Array(b.state),
    ctl: new Int32Array(b.ctl),
    bytes: new BigInt64Array(b.bytes),
    message: new Uint8Array(b.message),
    pageHashes: b.pageHashes === null ? null : new Uint8Array(b.pageHashes),
    pageHashed: b.pageHashed === null ? null : new Uint8Array(b.pageHashed),
  };
}

/**
 * The pages of region 0 the file holds and the offset of the record holding each one's last
 * occurrence (FORMAT.md §4), from the INDEX: as two columns (`SnapshotFileReader.pageEntries`),
 * or read in place ({@linkcode PageIndex.inPlace}, the INDEX body a lazy restore keeps, so that
 * nothing proportional to the file's pages is built before the guest runs). A page not listed
 * never appears (zeros: never absent, never read). Looked up by binary search.
 */
export class PageIndex {
  #pages: Uint32Array | null;
  #offsets: Float64Array | null;
  readonly #body: IndexBody | null;
  /** Pages listed. */
  readonly count: number;
  /** The columns (`pages` sorted, `offsets[i]` for `pages[i]`), or, with null columns, an INDEX
   * body to read in place ({@linkcode PageIndex.inPlace}). */
  constructor(pages: Uint32Array | null, offsets: Float64Array | null, body?: IndexBody) {
    this.#pages = pages;
    this.#offsets = offsets;
    this.#body = body ?? null;
    if (pages === null || offsets === null) {
      if (body === undefined) throw new TypeError("A PageIndex needs its columns or an INDEX body");
      const { start, end } = body.regionRange(0);
      this.count = end - start;
    } else this.count = pages.length;
  }

  /** Region 0 of an INDEX body read in place (the columns are built only if asked for). */
  static inPlace(body: IndexBody): PageIndex {
    return new PageIndex(null, null, body);
  }

  /** The INDEX body read in place, or null. */
  get body(): IndexBody | null {
    return this.#body;
  }

  #columns(): void {
    if (this.#pages !== null) return;
    const all = this.#body!.decode();
    const { start, end } = this.#body!.regionRange(0);
    this.#pages = all.pages.subarray(start, end);
    this.#offsets = all.pageOffsets.subarray(start, end);
  }

  /** The pages, in increasing order (built from an INDEX body on the first call). */
  get pages(): Uint32Array {
    this.#columns();
    return this.#pages!;
  }

  /** The record offset of each of {@linkcode pages}. */
  get offsets(): Float64Array {
    this.#columns();
    return this.#offsets!;
  }

  /** Calls `fn` with each page, in increasing order, without building the columns. */
  forEachPage(fn: (page: number) => void): void {
    if (this.#pages === null) return this.#body!.forEachPage(0, fn);
    for (const p of this.#pages) fn(p);
  }

  /** The record offset of `page`'s last occurrence, or -1. */
  recordOf(page: number): number {
    const pages = this.#pages;
    if (pages === null) return this.#body!.recordOf(0, page);
    let lo = 0;
    let hi = pages.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = pages[mid];
      if (v === page) return this.#offsets![mid];
      if (v < page) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }
}

/**
 * A record's key in a {@linkcode PageIndex}: its byte offset, plus its file's number in a chain
 * (0 = the full snapshot) times this stride, so one index can name records of several files (an
 * eager restore of a diff's chain, FORMAT.md §14.2). A single file's keys are its offsets.
 * Files below 2^42 bytes (4 TiB) and chains of at most 2048 files (FORMAT.md allows 1025) keep
 * every key below 2^53, exact in a float.
 */
export const RECORD_KEY_STRIDE = 2 ** 42;

/** The key of the record at `offset` of file `file` (see {@linkcode RECORD_KEY_STRIDE}). */
export function recordKey(file: number, offset: number): number {
  return file * RECORD_KEY_STRIDE + offset;
}

/** The file number and the byte offset a record key names. */
export function splitRecordKey(key: number): { file: number; offset: number } {
  const file = Math.floor(key / RECORD_KEY_STRIDE);
  return { file, offset: key - file * RECORD_KEY_STRIDE };
}

/** Where installRecord puts pages. */
export interface InstallTarget {
  views: LazyViews;
  index: PageIndex;
  /** Guest RAM (region 0, `ram`). */
  ram: Uint8Array;
  description: MachineDescription;
}

/**
 * Checks a whole record read at `offset` (head, payload, CRC: its CRC32C first) and decodes it as
 * a PAGES record of region 0. Throws format/'s errors naming the offset.
 */
function checkPagesRecord(record: Uint8Array, offset: number, description: MachineDescription) {
  const head = decodeRecordHead(record, offset, -1);
  if (RECORD_HEAD_SIZE + head.length + 4 !== record.length) {
    throw new CorruptError(`record is ${record.length} bytes, its head declares ${head.length}`, {
      offset,
      recordIndex: -1,
    });
  }
  checkRecordCrc(record, offset, -1);
  if (head.type !== RecordType.PAGES) {
    throw new CorruptError(`the index points at a ${recordTypeName(head.type)} record, not PAGES`, {
      offset,
      recordIndex: -1,
    });
  }
  const payload = record.subarray(RECORD_HEAD_SIZE, RECORD_HEAD_SIZE + head.length);
  const p = decodePageRecord(payload, description.regions, offset, -1);
  if (p.region !== 0) {
    throw new CorruptError(`the index points at a record of region ${p.region}, not 0`, {
      offset,
      recordIndex: -1,
    });
  }
  return p;
}

/**
 * Checks a whole record read at `offset` (head, payload, CRC: its CRC32C first), decodes it as a
 * PAGES record of region 0 and copies every page it holds the last occurrence of, and that is
 * still absent, into RAM, claiming each by compare-and-swap and marking it `origin`. Throws
 * format/'s errors naming the offset. Returns the pages installed. `key` is the record's key in
 * the index (its offset, unless the index names records of several files).
 *
 * Copies: the record's zstd data is decompressed into this thread's reused area, then each page
 * into RAM (one copy per page; a raw record's pages are copied from the read buffer).
 */
export function installRecord(
  target: InstallTarget,
  record: Uint8Array,
  offset: number,
  origin: typeof PAGE_PREFETCHED | typeof PAGE_DEMANDED,
  key: number = offset,
): number {
  const p = checkPagesRecord(record, offset, target.description);
  const pageSize = target.description.regions[0].pageSize;
  let data: Uint8Array | null | undefined;
  return installPages(target, key, p.pages, () => {
    if (data !== undefined) return data;
    if (p.encoding === "raw") data = p.data;
    else if (p.encoding === "zero") data = null;
    else {
      const out = zstdDecompressView(p.data, p.pages.length * pageSize);
      if (typeof out === "string") throw new CorruptError(out, { offset, recordIndex: -1 });
      data = out;
    }
    return data;
  }, origin);
}

/** A PAGES record checked and decoded into a {@linkcode DemandScratch} (`decodeRecordInto`). */
export interface DecodedRecord {
  /** The record's key in the index. */
  key: number;
  /** Page numbers of its entries, in entry order. */
  pages: Uint32Array;
  /** The pages' bytes in the scratch area; null for a zero record. */
  data: Uint8Array | null;
}

/**
 * The guest thread's area for the records it reads on demand: one record decompressed (or, raw,
 * copied) into memory reused from fault to fault, so that a demand fault installs only the page
 * the guest touched and the next fault on the same record copies from here without reading
 * again. {@linkcode reserveDemandScratch} writes it once beforehand (the warm-up), so that the
 * first fault does not take a page fault per 4 KiB of it.
 */
let demandScratch = new Uint8Array(0);

/** Grows the demand-read area (see `demandScratch`) to at least `bytes` and writes it once. */
export function reserveDemandScratch(bytes: number): void {
  if (demandScratch.length >= bytes) return;
  demandScratch = new Uint8Array(bytes);
  demandScratch.fill(0);
}

/**
 * Checks and decodes the PAGES record read at `offset` (as {@linkcode installRecord} does) into
 * this thread's demand-read area, valid until the next call. Throws format/'s errors naming the
 * offset.
 */
export function decodeRecordInto(
  record: Uint8Array,
  offset: number,
  description: MachineDescription,
  key: number = offset,
): DecodedRecord {
  const p = checkPagesRecord(record, offset, description);
  if (p.encoding === "zero") return { key, pages: p.pages, data: null };
  const size = p.pages.length * description.regions[0].pageSize;
  if (demandScratch.length < size) reserveDemandScratch(size);
  const out = demandScratch.subarray(0, size);
  if (p.encoding === "raw") out.set(p.data);
  else {
    const bad = zstdDecompressInto(p.data, out);
    if (bad !== null) throw new CorruptError(bad, { offset, recordIndex: -1 });
  }
  return { key, pages: p.pages, data: out };
}

/**
 * Copies every page of a decoded PAGES record with key `offset` (see {@linkcode recordKey}) that it
 * holds the last occurrence of,
 * and that is still absent, into RAM, claiming each by compare-and-swap and marking it `origin`;
 * `data()` gives the record's bytes (null: every page zero) and is called only if some page is
 * to be installed. Wakes a guest waiting on one of them. Returns the pages installed. With `only`,
 * installs that page alone (a demand fault: the rest of the record is left to the loaders, and
 * to later faults, BENCHMARKS.md "Restore: lazy and eager").
 */
export function installPages(
  target: InstallTarget,
  offset: number,
  pages: Uint32Array,
  data: () => Uint8Array | null,
  origin: typeof PAGE_PREFETCHED | typeof PAGE_DEMANDED,
  only = -1,
): number {
  const { state, ctl } = target.views;
  const index = target.index;
  const pageSize = target.description.regions[0].pageSize;
  // Nothing to do (every page it holds last is in already, or later records hold them): no
  // decompression.
  let any = false;
  for (let i = 0; i < pages.length && !any; i++) {
    const page = pages[i];
    any = (only < 0 || page === only) && Atomics.load(state, page) === PAGE_ABSENT &&
      index.recordOf(page) === offset;
  }
  if (!any) return 0;
  const bytes = data();
  let installed = 0;
  // From the last entry back: of a page repeated within the record the later entry wins
  // (FORMAT.md §4), and the earlier one then fails its compare-and-swap.
  for (let i = pages.length - 1; i >= 0; i--) {
    const page = pages[i];
    if (only >= 0 && page !== only) continue;
    if (Atomics.load(state, page) !== PAGE_ABSENT || index.recordOf(page) !== offset) continue;
    if (Atomics.compareExchange(state, page, PAGE_ABSENT, PAGE_INSTALLING) !== PAGE_ABSENT) {
      continue;
    }
    // A zero page: fresh RAM already reads as zeros and nothing has written an absent page.
    const src = bytes === null ? null : bytes.subarray(i * pageSize, (i + 1) * pageSize);
    if (src !== null) target.ram.set(src, page * pageSize);
    const hashed = target.views.pageHashed;
    if (hashed !== null) {
      if (src === null || isZero(src)) hashed[page] = HASHED_ZERO;
      else {
        hashPageInto(src, target.views.pageHashes!, page * 16);
        hashed[page] = HASHED_DATA;
      }
    }
    Atomics.store(state, page, origin);
    installed++;
  }
  if (Atomics.load(ctl, CTL_WAITING) !== 0) {
    if (only >= 0) Atomics.notify(state, only);
    else for (let i = 0; i < pages.length; i++) Atomics.notify(state, pages[i]);
  }
  return installed;
}

/** The loader's failure message, or "" (reads the shared buffer). */
export function loaderMessage(v: LazyViews): string {
  const end = v.message.indexOf(0);
  return new TextDecoder().decode(v.message.slice(0, end < 0 ? v.message.length : end));
}

/** Stores the loader's failure message (truncated to the buffer). */
export function setLoaderMessage(v: LazyViews, text: string): void {
  const b = new TextEncoder().encode(text).subarray(0, v.message.length - 1);
  v.message.fill(0);
  v.message.set(b);
}

/** The boot message of a loader worker (`lazy_loader_worker.ts`). */
export interface LoaderBoot {
  /** The snapshot: a local path or an http(s) URL. */
  path: string;
  /**
   * The local files the index's record keys name, by file number ({@linkcode recordKey}): a
   * chain's files, the full snapshot first (an eager restore of a diff); `[path]` for one file.
   */
  paths: string[];
  /** True when the guest cannot read the source itself (a URL): the loader serves its demand
   * reads (CTL_DEMAND_PAGE) first, and keeps serving them after its prefetch until stopped. */
  serveDemand: boolean;
  /** Guest RAM. */
  ram: SharedArrayBuffer;
  buffers: LazyBuffers;
  description: MachineDescription;
  /**
   * The working-set hint's records (their index keys) in the order the guest first needed them,
   * as the guest's thread worked them out (`LazyPager.useHint`), to bring in first; or empty.
   */
  hintRecords: Float64Array;
  /**
   * The hint's pages (increasing) and the key of the record holding each one's last occurrence,
   * as the guest's thread looked them up: the loader installs the hint's pages from these before
   * it has an index of its own. Null without a hint.
   */
  hintIndex: { pages: Uint32Array; offsets: Float64Array } | null;
  /**
   * One `Int32` per record of the hint, in the hint's record order: 0 until a thread claims it
   * (compare-and-swap to {@linkcode HINT_PROGRESS_BUSY}: the guest's thread from the front of
   * the order, the loaders of a local file from its back), then {@linkcode HINT_PROGRESS_DONE};
   * no hint record is read twice. Null without a hint.
   */
  hintProgress: SharedArrayBuffer | null;
  /** This loader's share of the records: those at positions `i % of === id` of the order. */
  id: number;
  of: number;
  /** `performance.timeOrigin + performance.now()` when the restore started (ms). */
  startedAtMs: number;
  /** The longest wait for anything (ms). */
  waitBoundMs: number;
  /** The longest the loader holds the records outside the hint back while CTL_HOLD_REST is set
   * (ms). */
  holdMaxMs: number;
  /** Fault each record's 2 MiB chunks of RAM in with one `madvise` call before copying
   * (`lazy_loader.ts`); false: the copies fault the memory in. */
  populate: boolean;
  /**
   * Region 0's index entries as the guest's thread decoded them (`SnapshotFileReader.pageEntries`),
   * copied to the loader with this message so that it starts on records at once; null: the loader
   * reads the index itself (a source it serves the guest's demand reads from).
   */
  entries: { pages: Uint32Array; offsets: Float64Array } | null;
  /** A lazy restore's loader: the guest does not wait for it, so it runs at the lowest priority
   * (`thread_priority.ts`); false for an eager restore's, which the guest waits for. */
  background: boolean;
}

/** `LoaderBoot.hintProgress`: a thread claimed the hint's record and is reading and installing it. */
export const HINT_PROGRESS_BUSY = 1;
/** `LoaderBoot.hintProgress`: the claimer is done with the record (installed, or failed). */
export const HINT_PROGRESS_DONE = 2;

/** What a loader worker posts: once, when it stops. */
export type LoaderEvent =
  | { type: "ready" }
  | { type: "done"; id: number; records: number; failed: number }
  | { type: "failed"; id: number; message: string };

/** Milliseconds on a clock every thread shares (`performance.now()` is per thread). */
export function sharedClockMs(): number {
  return performance.timeOrigin + performance.now();
}
