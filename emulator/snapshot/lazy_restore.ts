/**
 * Lazy restore: the guest runs before its RAM is loaded. Every page the file holds starts absent
 * (GATE_ABSENT in the page gate, emulator/ram.ts); the first access to one (fetch, load, store,
 * atomic, a device) reads the record holding its last occurrence through the file's INDEX, checks
 * the record's CRC32C right then, decompresses it and installs its pages; the access then goes on.
 * A background loader (`lazy_loader.ts`, on its own thread) brings in the rest meanwhile, a
 * working-set hint's pages first (`working_set.ts`), and stops. Pages the file never names are
 * zeros: never absent, never read.
 *
 * What the guest computes is what it computes after an eager restore: a page is installed once,
 * by the one thread whose compare-and-swap claimed it, from the record holding its last
 * occurrence, before any access to it; the guest's stores reach a page only after that.
 *
 * A record that fails its check when the guest faults it in ends the run with a
 * {@linkcode LazyPageError} naming the page, the record's byte offset and the reason: the access
 * never happens. Every wait (for a page the loader is installing, for the loader's end) has a
 * bound.
 *
 * @module
 */

import { SnapshotFileReader } from "../../format/file_reader.ts";
import { ChecksumError, LsnapError, TruncatedError } from "../../format/errors.ts";
import type { MachineDescription } from "../../format/header.ts";
import { FOOTER_SIZE, RECORD_HEAD_SIZE, RECORD_TAIL_SIZE } from "../../format/constants.ts";
import { TRAILER_PAYLOAD_SIZE } from "../../format/trailer.ts";
import { ChainError, openChain } from "../../format/chain.ts";
import { decodeRecordHead } from "../../format/record.ts";
import { createBlake3, toHex } from "../../format/checksum.ts";
import { isQemuStream } from "../../qemu/stream_reader.ts";
import { isHttpUrl } from "../../format/open_source.ts";
import { virtBuilderFor } from "../../qemu/riscv_virt_restore.ts";
import { Machine, type MachineOptions } from "../machine.ts";
import { type AbsentPageHandler, GATE_ABSENT } from "../ram.ts";
import { PAGE_SIZE, RAM_BASE } from "../memory_map.ts";
import { adviseHugePages, populatePages } from "./discard_pages.ts";
import { readThreadCpu } from "./metrics.ts";
import { ContentDigestBuilder } from "../../format/content_digest.ts";
import { normalizeDevice } from "../../format/device_section.ts";
import {
  checkDescriptionFits,
  describeMachine,
  instructionsCountedFrom,
  machineContentDigest,
  sectionsFromState,
  SnapshotMismatchError,
  STATE_MIGRATIONS,
  stateFromSections,
  type StateMigration,
} from "./machine_state.ts";
import {
  BYTES_GUEST,
  BYTES_LOADER,
  createLazyBuffers,
  CTL_DEMAND_ACTIVE,
  CTL_DEMAND_FAILED,
  CTL_DEMAND_PAGE,
  CTL_DONE_MS,
  CTL_DOORBELL,
  CTL_FAILED_RECORDS,
  CTL_HINT_PAGES,
  CTL_HOLD_REST,
  CTL_LOADER,
  CTL_LOADERS_LEFT,
  CTL_PREFETCHED,
  CTL_PROGRESS,
  CTL_STOP,
  CTL_WAITING,
  type DecodedRecord,
  decodeRecordInto,
  HASHED_DATA,
  HINT_PROGRESS_BUSY,
  HINT_PROGRESS_DONE,
  installPages,
  installRecord,
  type InstallTarget,
  type LazyBuffers,
  type LazyViews,
  lazyViews,
  LOADER_DONE,
  LOADER_FAILED,
  LOADER_RUNNING,
  LOADER_STOPPED,
  type LoaderBoot,
  type LoaderEvent,
  loaderMessage,
  PAGE_ABSENT,
  PAGE_DEMANDED,
  PAGE_INSTALLING,
  PAGE_PREFETCHED,
  PageIndex,
  RECORD_KEY_STRIDE,
  recordKey,
  sharedClockMs,
  splitRecordKey,
} from "./lazy_pages.ts";
import {
  decodeWorkingSet,
  type WorkingSet,
  workingSetPath,
  writeWorkingSet,
} from "./working_set.ts";

const TRACE = Deno.env.get("LIVESNAP_LAZY_TRACE") === "1";

/** Instructions after the restore point that `--record-ws` records by default. */
export const DEFAULT_WS_WINDOW = 10_000_000;

/**
 * Hint records the guest's thread reads after each demand fault and between slices: a fault then
 * brings in what the guest needed next on the recorded run, bounded so that one fault never
 * costs more than this many record reads.
 */
export const HINT_BATCH = 16;

/**
 * The longest the guest's thread waits for a loader that is reading and installing the record of
 * a page it touched, a record of the working-set hint (ms); then it reads the record itself.
 */
export const HINT_WAIT_MS = 100;

/** The default bound on any wait of a lazy restore (ms). */
export const DEFAULT_WAIT_BOUND_MS = 30_000;

/**
 * The longest a background loader holds back the records outside a working-set hint while the
 * guest runs the hint's window (ms): a guest that sleeps, or runs slowly, inside its window still
 * gets the rest of its RAM loaded after this (its pages come in on demand meanwhile).
 */
export const HOLD_REST_MAX_MS = 10_000;

/**
 * Whether a lazy restore with a working-set hint holds the rest back during the hint's window
 * (`LIVESNAP_LAZY_HOLD=0` turns it off, for measuring; BENCHMARKS.md, "Restore: lazy and eager").
 */
function holdRestDuringWindow(): boolean {
  return Deno.env.get("LIVESNAP_LAZY_HOLD") !== "0";
}

/** A page could not be brought in: the guest stopped before the access. */
export class LazyPageError extends Error {
  /** The page (0 = the page at RAM_BASE). */
  readonly page: number;
  /** Byte offset of the record that failed, or -1. */
  readonly recordOffset: number;
  /** The file of the chain holding that record (an eager restore of a diff), else null. */
  readonly file: string | null;
  /** `reason` says what failed; `recordOffset` -1 when no record is concerned; `file` the file of
   * a chain the record is in. */
  constructor(
    page: number,
    recordOffset: number,
    reason: string,
    cause?: unknown,
    file: string | null = null,
  ) {
    super(
      `Cannot load guest page ${page} (address 0x${
        (RAM_BASE + page * PAGE_SIZE).toString(16)
      }) on its first access${
        recordOffset >= 0 ? ` from the PAGES record at byte ${recordOffset}` : ""
      }${file === null ? "" : ` of '${file}'`}: ${reason}; the guest was stopped before the access`,
      cause === undefined ? {} : { cause },
    );
    this.name = "LazyPageError";
    this.page = page;
    this.recordOffset = recordOffset;
    this.file = file;
  }
}

/** `restoreEagerly` cannot take this file (no index); the caller reads it as a stream. */
export class ParallelRestoreUnavailable extends Error {
  /** `reason`: why the file cannot be loaded in parallel. */
  constructor(reason: string) {
    super(`Cannot restore in parallel: ${reason}`);
    this.name = "ParallelRestoreUnavailable";
  }
}

/** Options of {@linkcode restoreLazily}. */
export interface LazyRestoreOptions {
  /** The snapshot file (a seekable local file). */
  path: string;
  /** Receives the guest's UART output. */
  uartSink?: MachineOptions["uartSink"];
  /** Device state migrations (default: the emulator's table). */
  migrations?: Readonly<Record<string, Readonly<Record<number, StateMigration>>>>;
  /** When the restore started, on {@linkcode sharedClockMs}'s clock (default: now). */
  startedAtMs?: number;
  /** A working-set sidecar to prefetch first: a path, "auto" (`FILE.ws` when it exists, the
   * default) or "off". */
  hint?: string;
  /** Record the working set of the first `window` instructions to `path` (default `FILE.ws`). */
  recordWs?: { window: number; path?: string } | null;
  /** Background loader threads (default 1; 0: demand only; eager restore uses more). */
  loaders?: number;
  /** Loader threads made beforehand with {@linkcode spawnLoaders} (the rest are made here). */
  workers?: Worker[];
  /** Start the loaders' work only at the guest's first instruction (the pager's
   * `markFirstInstruction`, or its first `tick`); see `LazyPager.startLoaders`. */
  deferLoaders?: boolean;
  /** Wait for the loaders to finish before returning (eager restore). */
  eager?: boolean;
  /** The bound on every wait, in ms (default {@linkcode DEFAULT_WAIT_BOUND_MS}). */
  waitBoundMs?: number;
  /** Notes for the user (a hint ignored, and why). */
  onNote?: (text: string) => void;
}

/** A machine restored lazily. */
export interface LazyRestored {
  /** The machine, its devices restored, its pages absent until touched. */
  machine: Machine;
  /** The file's machine description. */
  description: MachineDescription;
  /** The content digest the file's TRAILER declares (lazy restore reads pages as they are
   * needed, so it is not recomputed before the guest runs; each record's CRC is checked). */
  contentDigest: string;
  /** Instructions the guest had retired at the snapshot. */
  retired: number;
  /** The restore's pager: metrics, and `finish()` once done with the machine. */
  pager: LazyPager;
}

/** `--metrics` of a lazy restore (one JSON object). */
export interface LazyMetrics {
  /** `lazy`, or `eager` for {@linkcode restoreEagerly}. */
  mode: "lazy" | "eager";
  /** From the start of the restore (the file's first read) to the first retired instruction. */
  firstInstructionUs: number | null;
  /**
   * Of `firstInstructionUs`, the restoring thread's time on a CPU, and its time runnable but
   * waiting for one (Linux `/proc/thread-self/schedstat`; null elsewhere): on a machine shared
   * with other jobs, the first is what the restore itself cost and the second what the others
   * took of it.
   */
  firstInstructionCpu: { runUs: number; waitUs: number } | null;
  /** Pages the guest faulted in by reading a record itself. */
  demandFaults: number;
  /** Records the guest read for those faults: a fault on a page of the record the previous
   * demand read decoded copies it from there without reading (a fault installs its page alone). */
  demandRecordReads: number;
  /** Pages the loaders installed. */
  prefetchedPages: number;
  /** Pages the guest first touched after a loader had installed them. */
  prefetchHits: number;
  /** Bytes read from the file after its index (the guest's reads and the loaders'). */
  bytesRead: number;
  /** Wall time of each demand fault (read, check, decompress, install). */
  faultLatencyUs: { p50: number; p99: number; max: number };
  /** From the start of the restore to the loaders' end; null when the run ended first. */
  loaderDoneMs: number | null;
  /** Pages the file holds (absent at the start). */
  pagesInFile: number;
  /** Pages of the working-set hint used (0: none). */
  hintPages: number;
  /** Pages the hint made the loaders bring in first. */
  hintPrefetched: number;
  /** Why a hint was not used, or null. */
  hintIgnored: string | null;
  /** Records a loader could not read (their pages were left to demand reads). */
  failedRecords: number;
  /** Loader threads. */
  loaders: number;
}

/** Reads whole records synchronously from a local file, on the guest's thread. */
class SyncRecordReader {
  readonly #file: Deno.FsFile;
  readonly #head = new Uint8Array(RECORD_HEAD_SIZE);
  #area = new Uint8Array(0);
  constructor(readonly path: string) {
    this.#file = Deno.openSync(path, { read: true });
  }
  #readAt(offset: number, out: Uint8Array): number {
    this.#file.seekSync(offset, Deno.SeekMode.Start);
    let n = 0;
    while (n < out.length) {
      const k = this.#file.readSync(out.subarray(n));
      if (k === null || k === 0) break;
      n += k;
    }
    return n;
  }
  /** The record at `offset` (head, payload, CRC), unchecked, in a buffer reused by the next
   * read; a short read is a TruncatedError. */
  read(offset: number): Uint8Array {
    const loc = { offset, recordIndex: -1 };
    if (this.#readAt(offset, this.#head) !== RECORD_HEAD_SIZE) {
      throw new TruncatedError("the file now ends before this record's head", loc);
    }
    const h = decodeRecordHead(this.#head, offset, -1);
    const size = RECORD_HEAD_SIZE + h.length + RECORD_TAIL_SIZE;
    // Reused from read to read (valid until the next): fresh memory costs a fault per 4 KiB.
    if (this.#area.length < size) {
      this.#area = new Uint8Array(Math.max(size, 2 * this.#area.length));
    }
    const record = this.#area.subarray(0, size);
    const n = this.#readAt(offset, record);
    if (n !== record.length) {
      throw new TruncatedError(
        `the file now ends ${n} bytes into this ${record.length}-byte record (it shrank during the restore)`,
        loc,
      );
    }
    return record;
  }
  close(): void {
    this.#file.close();
  }
}

/**
 * The guest thread's side of a lazy restore: the absent-page handler, the loaders, the
 * working-set recording and the metrics.
 */
export class LazyPager implements AbsentPageHandler {
  /** The shared memory's views (state words, control words, counters). */
  readonly #views: LazyViews;
  readonly #buffers: LazyBuffers;
  readonly #machine: Machine;
  readonly #description: MachineDescription;
  /** Null for a source this thread cannot read synchronously (a URL): the loader reads. */
  readonly #reader: SyncRecordReader | null;
  /** The files the index's record keys name (`recordKey`): `[path]`, or a chain's files. */
  readonly #paths: string[];
  /** Readers of `#paths` after the first, opened on their first demand read. */
  readonly #more = new Map<number, SyncRecordReader>();
  readonly #index: PageIndex;
  readonly #waitBoundMs: number;
  readonly #startedAtMs: number;
  #workers: Worker[] = [];
  #demandFaults = 0;
  /** Records the guest's thread read for its demand faults (the rest were served from the last
   * one, `#lastRecord`). */
  #recordReads = 0;
  /** The record the last demand read decoded (in the demand-read area), or null. */
  #lastRecord: DecodedRecord | null = null;
  #prefetchHits = 0;
  #latencies: number[] = [];
  #firstInstructionUs: number | null = null;
  #firstInstructionCpu: { runUs: number; waitUs: number } | null = null;
  readonly #startCpu: { runNs: number; waitNs: number } | null;
  #settled = false;
  #pagesInFile = 0;
  #loaders = 0;
  /** First touches in order while recording (`--record-ws`), else null. */
  #touched: number[] | null = null;
  #recordEnd = Infinity;
  /** The first touches of a window that is over. */
  #recorded: number[] | null = null;
  #recordTo: { path: string; window: number; fileDigest: Uint8Array } | null = null;
  /** Pages of the working-set hint in use (0: none). */
  hintPages = 0;
  /** The hint's records in the order the guest first needed them (handed to the loaders as
   * `LoaderBoot.hintRecords`), each one's position in it, and how far this thread got from the
   * front. */
  #hintRecords: number[] = [];
  #hintPosition = new Map<number, number>();
  /** The hint's pages and their records (`LoaderBoot.hintIndex`), or null. */
  #hintIndex: { pages: Uint32Array; offsets: Float64Array } | null = null;
  #hintNext = 0;
  /** Each hint record's claim (`LoaderBoot.hintProgress`), or null. */
  #hintProgress: Int32Array | null = null;
  #hintBusy = false;
  /** The instruction count at which the hint's window ends and the loaders may load the rest
   * (`holdRestUntil`), or -1: no hold. */
  #holdEnd = -1;
  /** Why a hint was ignored, or null. */
  hintIgnored: string | null = null;

  /** A pager for `machine`, reading `path` (its index in `index`). */
  constructor(o: {
    machine: Machine;
    description: MachineDescription;
    buffers: LazyBuffers;
    index: PageIndex;
    path: string;
    /** For an index whose keys name several files (`recordKey`): those files, by number. */
    paths?: string[];
    waitBoundMs: number;
    startedAtMs: number;
    /** The restoring thread's schedstat when the restore started, or null. */
    startCpu: { runNs: number; waitNs: number } | null;
  }) {
    this.#startCpu = o.startCpu;
    this.#index = o.index;
    this.#machine = o.machine;
    this.#description = o.description;
    this.#buffers = o.buffers;
    this.#views = lazyViews(o.buffers);
    this.#paths = o.paths ?? [o.path];
    this.#reader = isHttpUrl(o.path) ? null : new SyncRecordReader(this.#paths[0]);
    this.#waitBoundMs = o.waitBoundMs;
    this.#startedAtMs = o.startedAtMs;
  }

  /**
   * Marks every page the file names absent (call once, before the guest runs). Nothing to do on
   * RAM whose pages start absent (`Machine` `absentRam`): there a page the file does not name is
   * absent too until its first access, which finds it zero in the index and reads nothing.
   */
  markPagesAbsent(): number {
    const ram = this.#machine.ram;
    const n = this.#index.count;
    this.#pagesInFile = n;
    if (ram.absentFlip !== 0) return n;
    const gate = ram.pageGate;
    // No other thread holds the gate yet: plain writes; `Ram.lazy` turns the load check on.
    this.#index.forEachPage((p) => gate[p] |= GATE_ABSENT);
    ram.lazy = n > 0;
    return n;
  }

  /**
   * Starts `count` loader threads over `path`, the hint's records first ({@linkcode useHint});
   * uses `workers` made by
   * {@linkcode spawnLoaders} first (creating a Worker blocks the creating thread for tens of
   * milliseconds on a busy machine, so a caller makes them before the restore starts). With
   * `deferred`, they are handed their work only at {@linkcode markFirstInstruction} (or the first
   * {@linkcode tick}, {@linkcode waitForLoaders}, {@linkcode faultAll}): on a 2-core machine the
   * loaders' start (the index's copy, their record order) would otherwise take a core from the
   * guest's first instruction, which does not need them. `background` loaders (a lazy
   * restore's) run at the lowest priority.
   */
  startLoaders(
    path: string,
    count: number,
    workers: Worker[] = [],
    deferred = false,
    background = false,
  ): void {
    this.#loaders = count;
    const ctl = this.#views.ctl;
    for (const w of workers.slice(count)) w.terminate();
    if (count === 0) return;
    Atomics.store(ctl, CTL_LOADERS_LEFT, count);
    Atomics.store(ctl, CTL_LOADER, LOADER_RUNNING);
    const made = spawnLoaders(count - Math.min(count, workers.length));
    for (let id = 0; id < count; id++) {
      this.#workers.push(id < workers.length ? workers[id] : made[id - workers.length]);
    }
    const boots = this.#workers.map((_, id): LoaderBoot => ({
      path,
      paths: this.#paths,
      serveDemand: this.#reader === null && id === 0,
      ram: this.#machine.ram.bytes.buffer as SharedArrayBuffer,
      buffers: this.#buffers,
      description: this.#description,
      hintRecords: Float64Array.from(this.#hintRecords),
      hintIndex: this.#hintIndex,
      hintProgress: this.#hintProgress === null
        ? null
        : this.#hintProgress.buffer as SharedArrayBuffer,
      id,
      of: count,
      startedAtMs: this.#startedAtMs,
      waitBoundMs: this.#waitBoundMs,
      holdMaxMs: HOLD_REST_MAX_MS,
      populate: ramAdvice() === "chunks",
      // An index read in place is decoded by the loader itself (off this thread, after the
      // first instruction), as a source the loader reads for the guest is.
      entries: this.#reader === null || this.#index.body !== null
        ? null
        : { pages: this.#index.pages, offsets: this.#index.offsets },
      background,
    }));
    this.#launch = () => {
      this.#launch = null;
      this.#workers.forEach((w, id) => w.postMessage(boots[id]));
    };
    // A source the guest cannot read itself needs its loader for every demand read.
    if (!deferred || this.#reader === null) this.#launch();
  }

  /** Reads the record with index key `key` on this thread (`SyncRecordReader.read`). */
  #readKey(key: number): Uint8Array {
    if (this.#paths.length === 1) return this.#reader!.read(key);
    const { file, offset } = splitRecordKey(key);
    if (file === 0) return this.#reader!.read(offset);
    let r = this.#more.get(file);
    if (r === undefined) {
      r = new SyncRecordReader(this.#paths[file]);
      this.#more.set(file, r);
    }
    return r.read(offset);
  }

  /** The byte offset a record key names in its file (a single file's keys are its offsets). */
  #offsetOf(key: number): number {
    return this.#paths.length === 1 ? key : splitRecordKey(key).offset;
  }

  /** A LazyPageError for `page`, whose record has index key `key` (or -1). */
  #pageError(page: number, key: number, reason: string, cause?: unknown): LazyPageError {
    if (key < 0 || this.#paths.length === 1) return new LazyPageError(page, key, reason, cause);
    const { file, offset } = splitRecordKey(key);
    return new LazyPageError(page, offset, reason, cause, this.#paths[file]);
  }

  /** Hands the loaders their work, if {@linkcode startLoaders} deferred it. */
  #launch: (() => void) | null = null;

  /**
   * Has the background loaders hold back the records outside the hint once they have brought the
   * hint's in, until the guest has retired `retired` instructions ({@linkcode tick} then lets
   * them go on), at most {@linkcode HOLD_REST_MAX_MS}. Call before {@linkcode startLoaders}.
   */
  holdRestUntil(retired: number): void {
    this.#holdEnd = retired;
    Atomics.store(this.#views.ctl, CTL_HOLD_REST, 1);
  }

  /** Lets the loaders load the rest (the hint's window is over, or everything is wanted now). */
  #releaseRest(): void {
    if (this.#holdEnd < 0) return;
    this.#holdEnd = -1;
    Atomics.store(this.#views.ctl, CTL_HOLD_REST, 0);
    Atomics.notify(this.#views.ctl, CTL_HOLD_REST);
  }

  /** Starts recording first touches until `window` instructions after now. */
  recordWorkingSet(window: number, path: string, fileDigest: Uint8Array): void {
    this.#touched = [];
    this.#recordEnd = this.#machine.hart.retired + window;
    this.#recordTo = { path, window, fileDigest };
  }

  /** The guest's first instruction retired now. */
  markFirstInstruction(): void {
    this.#launch?.();
    if (this.#firstInstructionUs === null) {
      this.#firstInstructionUs = Math.round((sharedClockMs() - this.#startedAtMs) * 1000);
      const now = this.#startCpu === null ? null : readThreadCpu();
      if (now !== null && this.#startCpu !== null) {
        this.#firstInstructionCpu = {
          runUs: Math.round((now.runNs - this.#startCpu.runNs) / 1000),
          waitUs: Math.round((now.waitNs - this.#startCpu.waitNs) / 1000),
        };
      }
    }
  }

  /** The absent-page handler: see emulator/ram.ts. */
  fault(page: number): void {
    const { state, ctl } = this.#views;
    let s = Atomics.load(state, page);
    if (s === PAGE_ABSENT && this.#zeroPage(page)) return;
    if (s === PAGE_ABSENT && this.#awaitHintRecord(page)) s = Atomics.load(state, page);
    if (s === PAGE_ABSENT) {
      const t0 = performance.now();
      this.#demand(page);
      this.#latencies.push(performance.now() - t0);
      this.#demandFaults++;
      s = Atomics.load(state, page);
      // The demand is served; now a bounded batch of the hint (what the guest needed next last
      // time), before the access goes on.
      this.#prefetchHint();
    } else if (s === PAGE_PREFETCHED) {
      this.#prefetchHits++;
    }
    if (s === PAGE_INSTALLING) {
      // A loader is copying it in: wait for this page alone, bounded.
      Atomics.add(ctl, CTL_WAITING, 1);
      try {
        const until = performance.now() + this.#waitBoundMs;
        while ((s = Atomics.load(state, page)) === PAGE_INSTALLING) {
          const left = until - performance.now();
          if (left <= 0) {
            throw this.#pageError(
              page,
              this.#index.recordOf(page),
              `a loader thread held it for more than ${this.#waitBoundMs} ms`,
            );
          }
          Atomics.wait(state, page, PAGE_INSTALLING, Math.min(left, 100));
        }
      } finally {
        Atomics.sub(ctl, CTL_WAITING, 1);
      }
      if (s === PAGE_PREFETCHED) this.#prefetchHits++;
    }
    this.#touched?.push(page);
    this.#machine.ram.markPresent(page);
  }

  /**
   * On RAM whose pages start absent: a page the file does not name is zero, and fresh RAM reads
   * as zeros; it becomes present with no read, and is no demand fault (true). False for a page
   * the file names.
   */
  #zeroPage(page: number): boolean {
    const ram = this.#machine.ram;
    if (ram.absentFlip === 0 || this.#recordOf(page) >= 0) return false;
    // No loader installs a page the index does not name: this thread alone writes its state.
    Atomics.store(this.#views.state, page, PAGE_DEMANDED);
    ram.markPresent(page);
    return true;
  }

  /**
   * A demand read through the loader (a source this thread cannot read synchronously): asks for
   * the page through CTL_DEMAND_PAGE and waits on its state, bounded.
   */
  #demandFromLoader(page: number, at: number): void {
    const { ctl, state } = this.#views;
    Atomics.store(ctl, CTL_DEMAND_FAILED, 0);
    Atomics.store(ctl, CTL_DEMAND_PAGE, page + 1);
    Atomics.add(ctl, CTL_DOORBELL, 1);
    Atomics.notify(ctl, CTL_DOORBELL);
    Atomics.add(ctl, CTL_WAITING, 1);
    try {
      const until = performance.now() + this.#waitBoundMs;
      for (;;) {
        const s = Atomics.load(state, page);
        if (s >= PAGE_PREFETCHED) return;
        if (Atomics.load(ctl, CTL_DEMAND_FAILED) === page + 1) {
          throw new LazyPageError(page, at, loaderMessage(this.#views));
        }
        const failure = this.loaderFailure();
        if (failure !== null) throw new LazyPageError(page, at, `the loader failed: ${failure}`);
        const left = until - performance.now();
        if (left <= 0) {
          throw new LazyPageError(
            page,
            at,
            `no answer from the source within ${this.#waitBoundMs} ms`,
          );
        }
        Atomics.wait(state, page, s, Math.min(left, 50));
      }
    } finally {
      Atomics.sub(ctl, CTL_WAITING, 1);
      Atomics.compareExchange(ctl, CTL_DEMAND_PAGE, page + 1, 0);
    }
  }

  /** Gives this thread the hint's pages, in first-touch order (see {@linkcode HINT_BATCH}). */
  useHint(pages: Uint32Array): void {
    const seen = new Set<number>();
    const named: [number, number][] = [];
    for (const p of pages) {
      const o = this.#index.recordOf(p);
      if (o < 0) continue;
      named.push([p, o]);
      if (!seen.has(o)) {
        seen.add(o);
        this.#hintPosition.set(o, this.#hintRecords.length);
        this.#hintRecords.push(o);
      }
    }
    if (this.#hintRecords.length > 0) {
      this.#hintProgress = new Int32Array(new SharedArrayBuffer(4 * this.#hintRecords.length));
      named.sort((a, b) => a[0] - b[0]);
      this.#hintIndex = {
        pages: Uint32Array.from(named, ([p]) => p),
        offsets: Float64Array.from(named, ([, o]) => o),
      };
    }
  }

  /**
   * When `page`'s record is a hint record a loader is reading and installing now: waits for it
   * (at most {@linkcode HINT_WAIT_MS}, then this thread reads it itself) rather than read it a
   * second time. True when it waited.
   */
  #awaitHintRecord(page: number): boolean {
    const progress = this.#hintProgress;
    if (progress === null) return false;
    const at = this.#hintPosition.get(this.#recordOf(page));
    if (at === undefined || Atomics.load(progress, at) !== HINT_PROGRESS_BUSY) return false;
    const until = performance.now() + HINT_WAIT_MS;
    for (;;) {
      const left = until - performance.now();
      if (left <= 0 || Atomics.load(progress, at) !== HINT_PROGRESS_BUSY) return true;
      Atomics.wait(progress, at, HINT_PROGRESS_BUSY, left);
    }
  }

  /**
   * Reads up to {@linkcode HINT_BATCH} records of the hint on this thread (after a demand fault
   * and between slices), from the front of the hint's order, claiming each
   * (`LoaderBoot.hintProgress`) against the loaders, which take them from the back meanwhile. A
   * record that fails its check here is left for a demand read (which reports it).
   */
  #prefetchHint(): void {
    const progress = this.#hintProgress;
    const count = this.#hintRecords.length;
    if (this.#reader === null || this.#hintBusy || progress === null || this.#hintNext >= count) {
      return;
    }
    this.#hintBusy = true;
    const { ctl } = this.#views;
    try {
      for (let k = 0; k < HINT_BATCH && this.#hintNext < count; this.#hintNext++) {
        const next = this.#hintNext;
        if (Atomics.compareExchange(progress, next, 0, HINT_PROGRESS_BUSY) !== 0) continue;
        k++;
        const at = this.#hintRecords[next];
        try {
          const record = this.#readKey(at);
          Atomics.add(this.#views.bytes, BYTES_GUEST, BigInt(record.length));
          const n = installRecord(
            {
              views: this.#views,
              index: this.#index,
              ram: this.#machine.ram.bytes,
              description: this.#description,
            },
            record,
            this.#offsetOf(at),
            PAGE_PREFETCHED,
            at,
          );
          Atomics.add(ctl, CTL_PREFETCHED, n);
          Atomics.add(ctl, CTL_HINT_PAGES, n);
        } catch (e) {
          if (!(e instanceof LsnapError)) throw e;
          Atomics.add(ctl, CTL_FAILED_RECORDS, 1);
        } finally {
          Atomics.store(progress, next, HINT_PROGRESS_DONE);
        }
      }
    } finally {
      this.#hintBusy = false;
    }
  }

  /** Where this thread installs pages. */
  #target(): InstallTarget {
    return {
      views: this.#views,
      index: this.#index,
      ram: this.#machine.ram.bytes,
      description: this.#description,
    };
  }

  /**
   * Installs the pages of the record the last demand read decoded that are still absent (from
   * the demand-read area: no read), and forgets it.
   */
  #flushLast(): void {
    const rec = this.#lastRecord;
    if (rec === null) return;
    this.#lastRecord = null;
    const data = rec.data;
    installPages(this.#target(), rec.key, rec.pages, () => data, PAGE_DEMANDED);
  }

  /**
   * The index key of `page`'s record, or -1. An index read in place checks an entry when it is
   * looked up: a damaged one stops the guest with the INDEX record's offset.
   */
  #recordOf(page: number): number {
    try {
      return this.#index.recordOf(page);
    } catch (e) {
      if (!(e instanceof LsnapError)) throw e;
      throw this.#pageError(page, -1, `the INDEX record at byte ${e.offset}: ${e.reason}`, e);
    }
  }

  /** Reads the page's record on this thread (or takes the last one read) and installs the page
   * (loaders wait meanwhile). */
  #demand(page: number): void {
    const { ctl, state } = this.#views;
    const at = this.#recordOf(page);
    if (this.#reader === null) return this.#demandFromLoader(page, at);
    Atomics.store(ctl, CTL_DEMAND_ACTIVE, 1);
    try {
      // The record decoded by the last demand read, when it holds this page too: no read.
      let rec = this.#lastRecord;
      if (rec === null || rec.key !== at) {
        this.#flushLast();
        const record = this.#readKey(at);
        Atomics.add(this.#views.bytes, BYTES_GUEST, BigInt(record.length));
        rec = decodeRecordInto(record, this.#offsetOf(at), this.#description, at);
        this.#lastRecord = rec;
        this.#recordReads++;
      }
      const data = rec.data;
      // This page alone: the rest of the record goes in between two slices of the guest
      // (`tick`) or before the next record is read (`#flushLast`), so that the access that
      // faulted, the first instruction's above all, does not wait for a record's 256 pages to be
      // copied into fresh RAM (milliseconds; BENCHMARKS.md, "Restore: lazy and eager").
      installPages(this.#target(), at, rec.pages, () => data, PAGE_DEMANDED, page);
    } catch (e) {
      if (e instanceof LsnapError) throw this.#pageError(page, at, e.reason, e);
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied) {
        throw this.#pageError(page, at, `the file cannot be read: ${(e as Error).message}`, e);
      }
      throw e;
    } finally {
      Atomics.store(ctl, CTL_DEMAND_ACTIVE, 0);
      Atomics.notify(ctl, CTL_DEMAND_ACTIVE);
    }
    if (Atomics.load(state, page) === PAGE_ABSENT) {
      throw this.#pageError(page, at, "the record does not hold the page the index says it does");
    }
  }

  /** Brings every page in: waits for the loaders (bounded: they must make progress), then reads
   * what is left itself. */
  faultAll(): void {
    this.#launch?.();
    this.#releaseRest();
    this.waitForLoaders();
    const ram = this.#machine.ram;
    const saved = this.#touched;
    this.#touched = null; // not the guest's touches
    try {
      for (const p of this.#index.pages) if (ram.isAbsent(p)) this.#quietFault(p);
    } finally {
      this.#touched = saved;
    }
  }

  #quietFault(page: number): void {
    const { state } = this.#views;
    if (Atomics.load(state, page) === PAGE_ABSENT && this.#zeroPage(page)) return;
    if (Atomics.load(state, page) === PAGE_ABSENT) this.#demand(page);
    const until = performance.now() + this.#waitBoundMs;
    while (Atomics.load(state, page) === PAGE_INSTALLING) {
      if (performance.now() > until) {
        throw this.#pageError(
          page,
          this.#index.recordOf(page),
          "a loader thread held it too long",
        );
      }
      Atomics.wait(state, page, PAGE_INSTALLING, 10);
    }
    this.#machine.ram.markPresent(page);
  }

  /** Waits until the loaders have stopped, as long as they make progress (each stretch without
   * progress is bounded by the wait bound). */
  waitForLoaders(): void {
    this.#launch?.();
    this.#releaseRest();
    const ctl = this.#views.ctl;
    let last = Atomics.load(ctl, CTL_PROGRESS);
    let since = performance.now();
    while (this.#loaders > 0 && Atomics.load(ctl, CTL_LOADER) === LOADER_RUNNING) {
      Atomics.wait(ctl, CTL_PROGRESS, last, 50);
      const now = Atomics.load(ctl, CTL_PROGRESS);
      if (now !== last) {
        last = now;
        since = performance.now();
      } else if (performance.now() - since > this.#waitBoundMs) {
        throw new Error(
          `Cannot restore: the page loaders made no progress for ${this.#waitBoundMs} ms`,
        );
      }
    }
  }

  /** True once the loaders have stopped (or there are none). */
  loadersStopped(): boolean {
    return this.#loaders === 0 || Atomics.load(this.#views.ctl, CTL_LOADER) !== LOADER_RUNNING;
  }

  /**
   * Between two runs of the guest: ends the working-set window once `retired` passes it, and once
   * the loaders are done (and no window is open) opens every page they brought in, so the CPU
   * stops testing loads (`Ram.lazy` false when no page is left absent).
   */
  tick(retired: number): void {
    this.#launch?.();
    this.#flushLast();
    this.#prefetchHint();
    if (this.#holdEnd >= 0 && retired >= this.#holdEnd) this.#releaseRest();
    if (this.#touched !== null && retired >= this.#recordEnd) {
      // The window is over: later first touches are not part of the working set.
      this.#recorded = this.#touched;
      this.#touched = null;
    }
    if (this.#settled || this.#touched !== null) return;
    if (this.#loaders === 0 || Atomics.load(this.#views.ctl, CTL_LOADER) === LOADER_RUNNING) return;
    this.#settled = true;
    const { state } = this.#views;
    const ram = this.#machine.ram;
    // On RAM whose pages start absent, the pages the file does not name are opened here too
    // (they are zero), in one walk beside the index's sorted pages.
    const named = ram.absentFlip !== 0 ? this.#index.pages : null;
    let k = 0;
    let left = 0;
    for (let p = 0; p < state.length; p++) {
      let listed = true;
      if (named !== null) {
        while (k < named.length && named[k] < p) k++;
        listed = k < named.length && named[k] === p;
      }
      if (!ram.isAbsent(p)) continue;
      if (!listed || Atomics.load(state, p) >= PAGE_PREFETCHED) ram.markPresent(p);
      else left++;
    }
    if (left === 0) ram.lazy = false;
  }

  /** Stops the loaders and writes the working set if one was recorded. Returns a note. */
  async finish(): Promise<string | null> {
    const ctl = this.#views.ctl;
    Atomics.store(ctl, CTL_STOP, 1);
    if (Atomics.load(ctl, CTL_LOADER) === LOADER_RUNNING) {
      Atomics.store(ctl, CTL_LOADER, LOADER_STOPPED);
    }
    for (const w of this.#workers) w.terminate();
    this.#workers = [];
    this.#reader?.close();
    for (const r of this.#more.values()) r.close();
    this.#more.clear();
    this.#lastRecord = null;
    // Its memory goes to the next restore in this process (no demand read follows: the reader
    // is closed).
    this.#index.body?.release();
    const rec = this.#recordTo;
    const touched = this.#recorded ?? this.#touched; // a run that ended inside the window
    this.#touched = null;
    this.#recorded = null;
    if (rec === null || touched === null) return null;
    const ws: WorkingSet = {
      pageSize: PAGE_SIZE,
      pageCount: this.#machine.ram.pageCount,
      window: rec.window,
      fileDigest: rec.fileDigest,
      pages: Uint32Array.from(touched),
    };
    await writeWorkingSet(rec.path, ws);
    return `recorded a working set of ${touched.length} pages (first ${rec.window} instructions) → ${rec.path}`;
  }

  /** The metrics of this restore so far. */
  metrics(mode: "lazy" | "eager" = "lazy"): LazyMetrics {
    const { ctl, bytes } = this.#views;
    const lat = [...this.#latencies].sort((a, b) => a - b);
    const q = (f: number) =>
      lat.length === 0
        ? 0
        : Math.round(lat[Math.min(lat.length - 1, Math.floor(f * lat.length))] * 1000);
    return {
      mode,
      firstInstructionUs: this.#firstInstructionUs,
      firstInstructionCpu: this.#firstInstructionCpu,
      demandFaults: this.#demandFaults,
      demandRecordReads: this.#recordReads,
      prefetchedPages: Atomics.load(ctl, CTL_PREFETCHED),
      prefetchHits: this.#prefetchHits,
      bytesRead: Number(Atomics.load(bytes, BYTES_GUEST) + Atomics.load(bytes, BYTES_LOADER)),
      faultLatencyUs: {
        p50: q(0.5),
        p99: q(0.99),
        max: lat.length === 0 ? 0 : Math.round(lat[lat.length - 1] * 1000),
      },
      loaderDoneMs: Atomics.load(ctl, CTL_LOADER) === LOADER_DONE
        ? Atomics.load(ctl, CTL_DONE_MS)
        : null,
      pagesInFile: this.#pagesInFile,
      hintPages: this.hintPages,
      hintPrefetched: Atomics.load(ctl, CTL_HINT_PAGES),
      hintIgnored: this.hintIgnored,
      failedRecords: Atomics.load(ctl, CTL_FAILED_RECORDS),
      loaders: this.#loaders,
    };
  }

  /**
   * The content digest (hex) of the machine as restored, from the entries the installing threads
   * recorded for the pages the file holds (an eager restore's buffers only) and the devices'
   * sections; every other page is zero, since nothing writes RAM before the guest runs. Null when
   * some page's entry is missing (then hash RAM itself). Call before the guest runs.
   */
  async installedContentDigest(): Promise<string | null> {
    const { pageHashed, pageHashes } = this.#views;
    if (pageHashed === null || pageHashes === null) return null;
    const b = new ContentDigestBuilder(describeMachine(this.#machine, 0));
    for (const p of this.#index.pages) {
      const h = pageHashed[p];
      if (h === 0) return null;
      if (h === HASHED_DATA) b.setPageHash(0, p, pageHashes, p * 16);
    }
    for (const d of sectionsFromState(this.#machine.save())) b.setDevice(normalizeDevice(d));
    return toHex(await b.digest());
  }

  /** The loaders' failure, if they failed (not a damaged record: those are skipped). */
  loaderFailure(): string | null {
    return Atomics.load(this.#views.ctl, CTL_LOADER) === LOADER_FAILED
      ? loaderMessage(this.#views)
      : null;
  }
}

/** Creates `count` loader threads, idle until a restore hands them its work. */
export function spawnLoaders(count: number): Worker[] {
  return Array.from({ length: count }, () => {
    const w = new Worker(new URL("./lazy_loader_worker.ts", import.meta.url), { type: "module" });
    // Listened for from the start: a message nobody listens for when it arrives is lost.
    loaderReadiness.set(
      w,
      new Promise<void>((ok) => {
        const on = (e: MessageEvent) => {
          if ((e.data as LoaderEvent | undefined)?.type !== "ready") return;
          w.removeEventListener("message", on);
          ok();
        };
        w.addEventListener("message", on);
      }),
    );
    return w;
  });
}

/** Loader threads made by {@linkcode spawnLoaders}, and whether each has said "ready". */
const loaderReadiness = new WeakMap<Worker, Promise<void>>();

/**
 * Waits until each of `workers` (from {@linkcode spawnLoaders}) has loaded its code and says
 * "ready", at most `boundMs` in all; true when they all did (a loader not ready by then still
 * works, later). A restore waits for this before its clock starts: a loader compiling its modules
 * while the guest starts would take a core from it on a 2-core machine.
 */
export async function loadersReady(
  workers: Worker[],
  boundMs: number = DEFAULT_WAIT_BOUND_MS,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<boolean>((ok) => timer = setTimeout(() => ok(false), boundMs));
  try {
    return await Promise.race([
      Promise.all(workers.map((w) => loaderReadiness.get(w) ?? Promise.resolve())).then(() => true),
      bound,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads a working-set hint for the snapshot, or explains why not (a note). */
async function loadHint(
  o: LazyRestoreOptions,
  expect: { pageSize: number; pageCount: number; fileDigest: Uint8Array },
): Promise<
  { pages: Uint32Array; window: number; note: string | null; ignored: string | null }
> {
  const none = new Uint32Array(0);
  const choice = o.hint ?? "auto";
  if (choice === "off" || (choice === "auto" && isHttpUrl(o.path))) {
    return { pages: none, window: 0, note: null, ignored: null };
  }
  const path = choice === "auto" ? workingSetPath(o.path) : choice;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (choice === "auto" && e instanceof Deno.errors.NotFound) {
      return { pages: none, window: 0, note: null, ignored: null };
    }
    const why = `it cannot be read (${(e as Error).message})`;
    return {
      pages: none,
      window: 0,
      note: `ignoring the working-set hint ${path}: ${why}`,
      ignored: why,
    };
  }
  const ws = decodeWorkingSet(bytes, expect);
  if (typeof ws === "string") {
    return {
      pages: none,
      window: 0,
      note: `ignoring the working-set hint ${path}: ${ws}`,
      ignored: ws,
    };
  }
  return { pages: ws.pages, window: ws.window, note: null, ignored: null };
}

/**
 * Restores the snapshot at `path` lazily: reads the header, the footer, the trailer, the index
 * and the device sections, marks every page the file holds absent and returns a machine ready
 * to run, with its loaders started. Refused, before anything runs: a file that is not complete
 * (no valid footer and trailer), a QEMU stream or an `.lsnap` converted from one, a pipe.
 */
export async function restoreLazily(o: LazyRestoreOptions): Promise<LazyRestored> {
  const startedAtMs = o.startedAtMs ?? sharedClockMs();
  const startCpu = readThreadCpu();
  const T = (what: string) =>
    TRACE && console.error(
      what,
      (sharedClockMs() - startedAtMs).toFixed(1),
      startCpu === null
        ? ""
        : `cpu ${((readThreadCpu()!.runNs - startCpu.runNs) / 1e6).toFixed(1)}`,
    );
  const remote = isHttpUrl(o.path);
  if (o.path === "-") {
    throw new SnapshotMismatchError(
      "standard input is a pipe: a lazy restore reads records by offset, which a pipe cannot give; restore it without --lazy",
    );
  }
  // Synchronous: nothing here is worth a turn of the event loop before the first instruction.
  const info = remote ? null : Deno.statSync(o.path);
  if (info !== null && !info.isFile) {
    throw new SnapshotMismatchError(
      `${o.path} is not a regular file: a lazy restore reads records by offset, which a pipe or a device cannot give; restore it without --lazy`,
    );
  }
  const head = new Uint8Array(8);
  if (!remote) {
    const f = Deno.openSync(o.path);
    try {
      f.readSync(head);
    } finally {
      f.close();
    }
  }
  if (isQemuStream(head)) {
    throw new SnapshotMismatchError(
      "a QEMU migration stream has no index to read pages from; restore it without --lazy",
    );
  }
  T("head");
  // A lazy restore keeps the INDEX in place: its first instruction needs a few entries of it.
  const reader = await SnapshotFileReader.open(o.path, { lazyIndex: o.eager !== true });
  T("reader");
  let pager: LazyPager | null = null;
  try {
    if (!reader.complete || reader.trailer === null) {
      throw new TruncatedError(
        "the file is incomplete (no valid footer and trailer); a lazy restore needs a complete file",
        { offset: reader.size, recordIndex: -1 },
      );
    }
    if (o.eager && !reader.indexed) {
      throw new ParallelRestoreUnavailable("the file has no index");
    }
    const description = reader.description;
    if (virtBuilderFor(description) !== null) {
      throw new SnapshotMismatchError(
        "a snapshot converted from QEMU is mapped field by field from all of its RAM; restore it without --lazy",
      );
    }
    const ramSize = checkDescriptionFits(description);
    // A lazy restore's RAM starts with every page absent: nothing to mark (ram.ts `absentFlip`).
    const machine = new Machine({ ramSize, uartSink: o.uartSink, absentRam: o.eager !== true });
    adviseRam(machine.ram.bytes);
    machine.instructionsCountedFrom = instructionsCountedFrom(description);
    T("machine");
    const state = stateFromSections(await reader.devices(), o.migrations ?? STATE_MIGRATIONS);
    T("devices");
    try {
      machine.restore(state);
    } catch (e) {
      throw new SnapshotMismatchError((e as Error).message.replace(/^Cannot restore /, ""));
    }
    // An eager restore records each page's content-digest entry as it installs it.
    const buffers = createLazyBuffers(machine.ram.pageCount, o.eager === true);
    const body = reader.indexBody;
    let index: PageIndex;
    if (body !== null) index = PageIndex.inPlace(body);
    else {
      const entries = reader.pageEntries(0);
      index = new PageIndex(entries.pages, entries.offsets);
    }
    pager = new LazyPager({
      machine,
      description,
      buffers,
      index,
      path: o.path,
      waitBoundMs: o.waitBoundMs ?? DEFAULT_WAIT_BOUND_MS,
      startedAtMs,
      startCpu,
    });
    T("restored");
    machine.ram.setAbsentHandler(pager);
    pager.markPagesAbsent();
    T("absent");
    const fileDigest = reader.trailer.fileDigest;
    const hint = await loadHint(o, {
      pageSize: PAGE_SIZE,
      pageCount: machine.ram.pageCount,
      fileDigest,
    });
    if (hint.note !== null) o.onNote?.(hint.note);
    pager.hintPages = hint.pages.length;
    pager.useHint(hint.pages);
    pager.hintIgnored = hint.ignored;
    if (hint.pages.length > 0 && o.eager !== true && holdRestDuringWindow()) {
      pager.holdRestUntil(machine.hart.retired + hint.window);
    }
    if (o.recordWs != null && remote && o.recordWs.path === undefined) {
      throw new SnapshotMismatchError(
        "a working set is recorded beside the snapshot, which a URL cannot take; record it from a local copy",
      );
    }
    if (o.recordWs != null) {
      pager.recordWorkingSet(
        o.recordWs.window,
        o.recordWs.path ?? workingSetPath(o.path),
        fileDigest,
      );
    }
    T("hint");
    // A URL is read by the loader only: at least one, which serves the guest's demand reads.
    const loaders = remote ? Math.max(1, o.loaders ?? 1) : o.loaders ?? 1;
    pager.startLoaders(
      o.path,
      loaders,
      o.workers,
      // With a hint, the loaders start on it now (its records are wanted at once; this thread
      // and the loaders share them).
      o.deferLoaders === true && hint.pages.length === 0,
      o.eager !== true,
    );
    T("loaders");
    if (o.eager) machine.ram.ensureAllPresent();
    return {
      machine,
      description,
      contentDigest: toHex(reader.trailer.contentDigest),
      retired: machine.hart.retired,
      pager,
    };
  } catch (e) {
    if (pager === null) reader.indexBody?.release();
    await pager?.finish().catch(() => {});
    for (const w of o.workers ?? []) w.terminate();
    throw e;
  } finally {
    reader.close();
  }
}

/**
 * How a restore gets RAM's fresh memory (`LIVESNAP_RAM_ADVICE`, for measuring; BENCHMARKS.md,
 * "Restore: lazy and eager"): "huge" (the default) asks for huge pages and lets the copies fault
 * them in; "chunks" also has each loader fault in the 2 MiB chunks a record fills with one
 * `MADV_POPULATE_WRITE` before copying it (`lazy_loader.ts`); "populate" faults all of RAM in on
 * the guest's thread first; "none" takes 4 KiB faults.
 */
function ramAdvice(): "huge" | "chunks" | "populate" | "none" {
  const how = Deno.env.get("LIVESNAP_RAM_ADVICE") ?? "huge";
  return how === "chunks" || how === "populate" || how === "none" ? how : "huge";
}

/**
 * Before a restore writes RAM (all of it, eagerly or by its loaders): huge pages where the
 * process may ask for them (`discard_pages.ts`), so that the first touch of each 2 MiB costs one
 * fault instead of 512 (BENCHMARKS.md, "Restore: lazy and eager": fresh memory is most of an
 * eager restore's time, and of a lazy one's demand faults).
 */
function adviseRam(ram: Uint8Array): void {
  const how = ramAdvice();
  if (how !== "none") adviseHugePages(ram);
  if (how === "populate") populatePages(ram);
}

/** Loader threads of an eager restore: the machine's cores, 1 to 4. */
export function eagerLoaderCount(): number {
  return Math.max(1, Math.min(4, navigator.hardwareConcurrency ?? 2));
}

/**
 * Eager restore at full speed: the lazy machinery with every page loaded before the guest runs,
 * by {@linkcode eagerLoaderCount} loader threads that read, check (CRC32C) and decompress records
 * in parallel straight into guest RAM (one copy per page: the decompressed record into RAM).
 * Then the state's content digest is recomputed from RAM and the devices and compared with the
 * trailer's, so a file whose pages or devices differ from what it declares is refused before any
 * instruction runs, as by the streaming restore. The file digest (a BLAKE3 of every byte) is not
 * recomputed: `livesnap verify` does that. Throws {@linkcode ParallelRestoreUnavailable} for a
 * file without an index; the caller then reads it as a stream.
 */
export async function restoreEagerly(
  o: Omit<LazyRestoreOptions, "eager" | "hint" | "recordWs">,
): Promise<LazyRestored> {
  const r = await restoreLazily({
    ...o,
    eager: true,
    hint: "off",
    loaders: o.loaders ?? eagerLoaderCount(),
  });
  try {
    // The loaders hashed each page as they copied it, in parallel; RAM is read again only if one
    // was missed.
    const digest = await r.pager.installedContentDigest() ?? await machineContentDigest(r.machine);
    if (digest !== r.contentDigest) {
      throw new ChecksumError("the restored state does not match the trailer's content digest", {
        offset: 0,
        recordIndex: -1,
        expected: r.contentDigest,
        actual: digest,
      });
    }
  } catch (e) {
    await r.pager.finish();
    throw e;
  }
  await r.pager.finish();
  return r;
}

/** Options of {@linkcode restoreChainEagerly}. */
export interface ChainRestoreOptions
  extends Omit<LazyRestoreOptions, "eager" | "hint" | "recordWs" | "deferLoaders"> {
  /** Parent files to use before the name hints (`restore --parent`), matched by file digest. */
  parents?: string[];
  /** Refuse ({@linkcode ParallelRestoreUnavailable}) a chain whose files hold fewer bytes in all
   * (default 0: any chain). */
  minBytes?: number;
}

/** What {@linkcode restoreChainEagerly} returns: the restore and the chain's files. */
export interface ChainRestored extends LazyRestored {
  /** The files read, the full snapshot first. */
  chain: string[];
}

/** Bytes hashed a read when proving a file digest. */
const DIGEST_READ = 1 << 20;

/**
 * BLAKE3 of the bytes of `path` before its TRAILER record (its file digest, FORMAT.md §9), read
 * in one pass through one reused buffer.
 */
async function fileDigestOf(path: string, size: number): Promise<Uint8Array> {
  const end = size - FOOTER_SIZE - RECORD_HEAD_SIZE - TRAILER_PAYLOAD_SIZE - RECORD_TAIL_SIZE;
  const h = await createBlake3();
  const file = Deno.openSync(path, { read: true });
  try {
    const buf = new Uint8Array(DIGEST_READ);
    let at = 0;
    while (at < end) {
      // Synchronous: an asynchronous read goes through another thread and a copy of the bytes,
      // which costs more than the read itself on two cores (the loaders have them).
      const n = file.readSync(buf.subarray(0, Math.min(buf.length, end - at)));
      if (n === null) break;
      h.update(buf.subarray(0, n));
      at += n;
    }
    if (at !== end) {
      throw new TruncatedError(`the file now ends at byte ${at}, before its trailer`, {
        offset: at,
        recordIndex: -1,
      });
    }
    return h.digest("binary");
  } finally {
    file.close();
  }
}

/**
 * Eager restore of a diff through its chain (FORMAT.md §14) with parallel loaders, as
 * {@linkcode restoreEagerly} restores one file:
 *
 * 1. `openChain` finds every parent and checks every link against the trailers (each PARENT
 *    record's parent file digest and content digest, depth, root, regions; a missing, swapped or
 *    foreign parent, a cycle, mixed machines: a `ChainError` naming the link, §14.4).
 * 2. For every page, the record holding its newest copy: the last file of the chain whose INDEX
 *    names the page wins, a zero record included (§14.2); pages no file names are zero.
 * 3. The loaders read, check (CRC32C) and install each such record once, from whichever file
 *    holds it, recording each installed page's XXH3-128; a record that fails is read again on
 *    this thread and refused as a `ChainError` naming its file and byte offset.
 * 4. Meanwhile this thread recomputes every file's file digest (BLAKE3 of its bytes) and compares
 *    it with its trailer's, which step 1 compared with its child's PARENT record: each link is
 *    bound to the exact bytes its child was written on.
 * 5. The final state's content digest, built from the installed pages' hashes and the newest
 *    file's devices, must equal the one the newest file declares.
 *
 * The intermediate files' own content digests are not recomputed (FORMAT.md §14.4 says why that
 * proves as much). Throws {@linkcode ParallelRestoreUnavailable} for a chain with a file without
 * an index or one converted from QEMU; the caller then reads the chain on one thread.
 */
export async function restoreChainEagerly(o: ChainRestoreOptions): Promise<ChainRestored> {
  const startedAtMs = o.startedAtMs ?? sharedClockMs();
  const startCpu = readThreadCpu();
  const chain = await openChain(o.path, { parents: o.parents });
  const paths = chain.files.map((f) => f.path);
  const newest = chain.head.path;
  let pager: LazyPager | null = null;
  try {
    for (const f of chain.files) {
      if (!f.reader.indexed) throw new ParallelRestoreUnavailable(`'${f.path}' has no index`);
      if (f.reader.size >= RECORD_KEY_STRIDE) {
        throw new ParallelRestoreUnavailable(`'${f.path}' is too large for a record key`);
      }
    }
    const bytes = chain.files.reduce((sum, f) => sum + f.reader.size, 0);
    if (bytes < (o.minBytes ?? 0)) {
      throw new ParallelRestoreUnavailable(
        `the chain holds ${bytes} bytes, fewer than the loaders pay for`,
      );
    }
    const description = chain.description;
    if (virtBuilderFor(description) !== null) {
      throw new ParallelRestoreUnavailable("the chain was converted from QEMU");
    }
    const ramSize = checkDescriptionFits(description);
    const machine = new Machine({ ramSize, uartSink: o.uartSink });
    adviseRam(machine.ram.bytes);
    machine.instructionsCountedFrom = instructionsCountedFrom(description);
    const state = stateFromSections(await chain.devices(), o.migrations ?? STATE_MIGRATIONS);
    try {
      machine.restore(state);
    } catch (e) {
      throw new SnapshotMismatchError((e as Error).message.replace(/^Cannot restore /, ""));
    }
    // The newest copy of each page: later files overwrite earlier ones' keys.
    const keys = new Float64Array(machine.ram.pageCount).fill(-1);
    let named = 0;
    chain.files.forEach((f, n) => {
      const e = f.reader.pageEntries(0);
      for (let i = 0; i < e.pages.length; i++) {
        if (keys[e.pages[i]] < 0) named++;
        keys[e.pages[i]] = recordKey(n, e.offsets[i]);
      }
    });
    const pages = new Uint32Array(named);
    const offsets = new Float64Array(named);
    for (let p = 0, k = 0; p < keys.length; p++) {
      if (keys[p] < 0) continue;
      pages[k] = p;
      offsets[k++] = keys[p];
    }
    pager = new LazyPager({
      machine,
      description,
      buffers: createLazyBuffers(machine.ram.pageCount, true),
      index: new PageIndex(pages, offsets),
      path: paths[0],
      paths,
      waitBoundMs: o.waitBoundMs ?? DEFAULT_WAIT_BOUND_MS,
      startedAtMs,
      startCpu,
    });
    machine.ram.setAbsentHandler(pager);
    pager.markPagesAbsent();
    pager.startLoaders(
      paths[0],
      o.loaders ?? eagerLoaderCount(),
      o.workers,
      false,
      false,
    );
    // The file digests while the loaders work (reported after a damaged record, which names
    // more: its offset).
    let digestProblem: ChainError | null = null;
    for (const f of chain.files) {
      const actual = await fileDigestOf(f.path, f.reader.size);
      if (toHex(actual) !== toHex(f.trailer.fileDigest)) {
        const child = chain.files.find((c) => c.depth === f.depth + 1);
        digestProblem = new ChainError(
          "digest-mismatch",
          `'${f.path}': its bytes give file digest ${toHex(actual).slice(0, 16)}…, its trailer${
            child === undefined ? "" : ` and the PARENT record of '${child.path}'`
          } name ${toHex(f.trailer.fileDigest).slice(0, 16)}…`,
          { file: newest, parent: f.path === newest ? null : f.path },
        );
        break;
      }
    }
    try {
      machine.ram.ensureAllPresent();
    } catch (e) {
      if (!(e instanceof LazyPageError)) throw e;
      const file = e.file ?? paths[0];
      throw new ChainError(
        "damaged-record",
        `'${file}' (depth ${
          paths.indexOf(file)
        }): its PAGES record at byte ${e.recordOffset}, the newest copy of page ${e.page}, cannot be used: ${
          e.cause instanceof LsnapError ? e.cause.reason : e.message
        }`,
        { file: newest, parent: file === newest ? null : file, cause: e },
      );
    }
    if (digestProblem !== null) throw digestProblem;
    const digest = await pager.installedContentDigest() ?? await machineContentDigest(machine);
    const declared = toHex(chain.contentDigest);
    if (digest !== declared) {
      throw new ChainError(
        "digest-mismatch",
        `the state the chain restores has content digest ${
          digest.slice(0, 16)
        }…, '${newest}' declares ${declared.slice(0, 16)}…`,
        { file: newest },
      );
    }
    await pager.finish();
    return {
      machine,
      description,
      contentDigest: declared,
      retired: machine.hart.retired,
      pager,
      chain: paths,
    };
  } catch (e) {
    await pager?.finish().catch(() => {});
    for (const w of o.workers ?? []) w.terminate();
    throw e;
  } finally {
    chain.close();
  }
}
