/**
 * The background loader of a lazy restore (run by `lazy_loader_worker.ts`): reads the records the guest has not faulted in yet
 * (a working-set hint's first, then the rest in file order) and installs their pages, then stops.
 * Several loaders split the records between them (eager restore decompresses in parallel).
 *
 * Demand goes first: before each record it waits while the guest reads one on demand
 * (`CTL_DEMAND_ACTIVE`), so on a machine with few cores the guest's fault is not slowed by
 * prefetching; a record all of whose pages are in already is skipped without a read. A record
 * that fails its check is counted and skipped: its pages stay absent, and the guest's own read
 * reports the damage if it ever touches one.
 *
 * @module
 */

import { LsnapError, TruncatedError } from "../../format/errors.ts";
import { SnapshotFileReader } from "../../format/file_reader.ts";
import { SourceError } from "../../format/random_access_source.ts";
import { decodeRecordHead } from "../../format/record.ts";
import { RECORD_HEAD_SIZE, RECORD_TAIL_SIZE } from "../../format/constants.ts";
import { PAGE_SIZE } from "../memory_map.ts";
import { populatePages } from "./discard_pages.ts";
import { zstdCompress, zstdDecompressView, zstdReserveView } from "../../format/_zstd.ts";
import { crc32c } from "../../format/checksum.ts";
import { lowerThreadPriority } from "./thread_priority.ts";
import {
  BYTES_LOADER,
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
  HINT_PROGRESS_BUSY,
  HINT_PROGRESS_DONE,
  installPages,
  installRecord,
  type InstallTarget,
  lazyViews,
  LOADER_DONE,
  LOADER_FAILED,
  type LoaderBoot,
  type LoaderEvent,
  PAGE_ABSENT,
  PAGE_DEMANDED,
  PAGE_PREFETCHED,
  PageIndex,
  setLoaderMessage,
  sharedClockMs,
  splitRecordKey,
} from "./lazy_pages.ts";

/**
 * Reads `out.length` bytes at `offset` (fewer at the end of the file), synchronously: on this
 * thread, at its priority. An asynchronous read runs on one of the runtime's I/O threads, at the
 * process's priority, and copies the bytes once more, which on a 2-core machine takes that time
 * from the guest's thread rather than from the background loader's.
 */
function readAt(file: Deno.FsFile, offset: number, out: Uint8Array): number {
  file.seekSync(offset, Deno.SeekMode.Start);
  let n = 0;
  while (n < out.length) {
    const k = file.readSync(out.subarray(n));
    if (k === null || k === 0) break;
    n += k;
  }
  return n;
}

/** Pages per huge page (2 MiB of 4 KiB pages). */
const CHUNK_PAGES = 512;

/**
 * Faults in, for writing, the 2 MiB chunks of `ram` that hold `pages` (sorted), one
 * `MADV_POPULATE_WRITE` per run of neighbouring chunks, before a record's pages are copied there.
 * The kernel then zeroes the memory in one system call per run rather than in a fault per page
 * (or per huge page) taken from JavaScript: fresh memory is most of an eager restore's time
 * (BENCHMARKS.md, "Restore: lazy and eager"), and each loader pays it on its own core. Does
 * nothing where `madvise` cannot be called.
 */
function populateChunks(ram: Uint8Array, pages: readonly number[]): void {
  const chunkBytes = CHUNK_PAGES * PAGE_SIZE;
  let from = -1;
  let to = -1;
  const flush = () => {
    if (from < 0) return;
    const start = from * chunkBytes;
    populatePages(ram.subarray(start, Math.min(ram.length, to * chunkBytes)));
  };
  for (const p of pages) {
    const c = Math.floor(p / CHUNK_PAGES);
    if (c >= from && c < to) continue;
    if (c === to) {
      to++;
      continue;
    }
    flush();
    from = c;
    to = c + 1;
  }
  flush();
}

/** Bytes of one PAGES record of this library's writer at most (256 pages). */
const RECORD_BYTES = 256 * PAGE_SIZE;

/**
 * Runs a loader's per-record work once on bytes of its own (zstd's context and the decompression
 * area, 1 MiB written once; the CRC32C WebAssembly), while the thread waits for its work and
 * before it says "ready" (`lazy_loader_worker.ts`): otherwise its first record pays for code and
 * memory used for the first time, while the guest, which shares a working-set hint with it, waits.
 */
export function warmLoader(): void {
  const data = new Uint8Array(RECORD_BYTES);
  for (let i = 0; i < data.length; i += 64) data[i] = (i >> 6) & 0xff;
  zstdReserveView(RECORD_BYTES);
  const frame = zstdCompress(data, 1);
  for (let round = 0; round < 3; round++) {
    crc32c(frame);
    zstdDecompressView(frame, data.length);
  }
}

/** Runs one loader to its end; returns what {@linkcode LoaderEvent} "done" reports. */
export async function runLoader(boot: LoaderBoot): Promise<LoaderEvent> {
  // A background loader runs at the lowest priority, but not while it brings in a working-set
  // hint, which the guest is about to need (and may wait for, `HINT_PROGRESS_BUSY`): it lowers
  // itself once the hint is in (a thread can lower its priority, not raise it again).
  if (boot.background && boot.hintRecords.length === 0) lowerThreadPriority();
  const progress = boot.hintProgress === null ? null : new Int32Array(boot.hintProgress);
  const v = lazyViews(boot.buffers);
  const { state, ctl } = v;
  const ram = new Uint8Array(boot.ram);
  // The hint's pages and their records, from the guest's thread: enough to install the hint's
  // pages (and no other: `installPages` installs a page only from the record its index names)
  // before this loader has an index of its own.
  const hintTarget: InstallTarget | null = boot.hintIndex === null ? null : {
    views: v,
    index: new PageIndex(boot.hintIndex.pages, boot.hintIndex.offsets),
    ram,
    description: boot.description,
  };
  // The whole index: from the guest's thread (an eager restore of a local file), else read here,
  // off the guest's thread (a lazy restore's guest reads its INDEX in place; a source the loader
  // reads for the guest, an http(s) URL, is opened here), once it is needed.
  const opened: { reader: SnapshotFileReader | null; target: InstallTarget | null } = {
    reader: null,
    target: null,
  };
  const openIndex = async (): Promise<InstallTarget> => {
    if (opened.target !== null) return opened.target;
    if (boot.entries === null || boot.serveDemand) {
      opened.reader = await SnapshotFileReader.open(boot.path);
    }
    const entries = boot.entries ?? opened.reader!.pageEntries(0);
    opened.target = {
      views: v,
      index: new PageIndex(entries.pages, entries.offsets),
      ram,
      description: boot.description,
    };
    return opened.target;
  };
  // A source the guest cannot read itself needs the loader's reader for its demand reads now.
  if (boot.serveDemand || hintTarget === null) await openIndex();
  // The hint's records first, as the guest's thread worked them out (so the loader starts on them
  // at once, without grouping the whole index), then the rest.
  const order: number[] = Array.from(boot.hintRecords);
  const hinted = order.length;
  // Record → its pages (those it holds the last occurrence of), in file order; built once the
  // hint's records are in.
  let byRecord: Map<number, number[]> | null = null;
  const groupRest = (index: PageIndex) => {
    if (byRecord !== null) return;
    byRecord = new Map();
    const pages = index.pages;
    const offsets = index.offsets;
    for (let i = 0; i < pages.length; i++) {
      const o = offsets[i];
      const list = byRecord.get(o);
      if (list === undefined) byRecord.set(o, [pages[i]]);
      else list.push(pages[i]);
    }
    // Every record, the hint's included: a hint record installed from the hint's index has its
    // other pages still absent (the skip test passes over the records that are all in).
    for (const o of [...byRecord.keys()].sort((a, b) => a - b)) order.push(o);
  };
  // A record's pages, for its skip test; null for a hint record (claimed by this loader alone,
  // `hintProgress`: installRecord skips what a demand read brought in meanwhile).
  const pagesOf = (i: number) => i < hinted ? null : byRecord!.get(order[i])!;
  /** This loader's share of the records after the hint's: positions `i % of === id`. */
  const share = (from: number, to: number) => {
    const mine: number[] = [];
    for (let i = from + ((boot.id - from % boot.of + boot.of) % boot.of); i < to; i += boot.of) {
      mine.push(i);
    }
    return mine;
  };
  const stopped = () => Atomics.load(ctl, CTL_STOP) !== 0;
  const demand = boot.serveDemand ? serveDemand(opened.reader!, opened.target!) : Promise.resolve();
  let records = 0;
  let failed = 0;
  const installed = (i: number, n: number) => {
    Atomics.add(ctl, CTL_PREFETCHED, n);
    if (i < hinted) Atomics.add(ctl, CTL_HINT_PAGES, n);
    records++;
    Atomics.add(ctl, CTL_PROGRESS, 1);
    Atomics.notify(ctl, CTL_PROGRESS);
  };
  const skip = (e: unknown) => {
    if (!(e instanceof LsnapError) && !(e instanceof SourceError)) throw e;
    // Left absent: a demand read of any of its pages reports the damage to the guest.
    failed++;
    Atomics.add(ctl, CTL_FAILED_RECORDS, 1);
  };
  // One handle per file of the chain, opened on its first record (a single file: one).
  const files = new Map<number, Deno.FsFile>();
  const fileOf = (n: number): Deno.FsFile => {
    let f = files.get(n);
    if (f === undefined) {
      f = Deno.openSync(boot.paths[n], { read: true });
      files.set(n, f);
    }
    return f;
  };
  const head = new Uint8Array(RECORD_HEAD_SIZE);
  let area = new Uint8Array(0);
  /** Reads and installs the records at positions `mine` of the order. */
  const work = async (mine: number[]) => {
    const targetOf = (i: number) => i < hinted && hintTarget !== null ? hintTarget : opened.target!;
    if (boot.serveDemand) {
      // A remote source: batches of records, several ranges in flight; the guest's demand reads
      // are urgent and overtake them in the source's pool.
      const todo = mine.filter((i) => pagesOf(i)?.some((p) => state[p] === PAGE_ABSENT) ?? true);
      let k = 0;
      while (k < todo.length && !stopped()) {
        const batch = todo.slice(k, k + 8);
        k += batch.length;
        try {
          for await (
            const rec of opened.reader!.readPageRecords(batch.map((i) => order[i]), {
              batchBytes: 4 << 20,
            })
          ) {
            Atomics.add(v.bytes, BYTES_LOADER, BigInt(rec.length));
            const i = batch.find((j) => order[j] === rec.offset) ?? batch[0];
            installed(
              i,
              installPages(targetOf(i), rec.offset, rec.pages, () => rec.data, PAGE_PREFETCHED),
            );
            if (stopped()) break;
          }
        } catch (e) {
          skip(e);
        }
      }
      return;
    }
    for (const i of mine) {
      if (stopped()) break;
      // Demand first: wait (bounded) while the guest reads a record itself.
      const waitStart = sharedClockMs();
      while (Atomics.load(ctl, CTL_DEMAND_ACTIVE) !== 0) {
        const w = Atomics.waitAsync(ctl, CTL_DEMAND_ACTIVE, 1, 50);
        if (w.async) await w.value;
        if (sharedClockMs() - waitStart > boot.waitBoundMs) break;
      }
      const key = order[i];
      const pages = pagesOf(i);
      if (pages !== null && !pages.some((p) => Atomics.load(state, p) === PAGE_ABSENT)) continue;
      // A single file's keys are its offsets, whatever its size.
      const { file: fileNo, offset: at } = boot.paths.length === 1
        ? { file: 0, offset: key }
        : splitRecordKey(key);
      try {
        const file = fileOf(fileNo);
        if (readAt(file, at, head) !== RECORD_HEAD_SIZE) {
          throw new TruncatedError("the file ends inside the record's head", {
            offset: at,
            recordIndex: -1,
          });
        }
        const h = decodeRecordHead(head, at, -1);
        const size = RECORD_HEAD_SIZE + h.length + RECORD_TAIL_SIZE;
        // One read buffer per loader, grown as needed: fresh memory costs a page fault
        // per 4 KiB, more than reading the record.
        if (area.length < size) area = new Uint8Array(Math.max(size, 2 * area.length));
        const record = area.subarray(0, size);
        const n = readAt(file, at, record);
        Atomics.add(v.bytes, BYTES_LOADER, BigInt(n));
        if (n !== record.length) {
          throw new TruncatedError(
            `the file ends ${n} bytes into a ${record.length}-byte record`,
            { offset: at, recordIndex: -1 },
          );
        }
        if (boot.populate && pages !== null) populateChunks(ram, pages);
        installed(i, installRecord(targetOf(i), record, at, PAGE_PREFETCHED, key));
      } catch (e) {
        skip(e);
      }
    }
  };
  try {
    // The hint's records, each claimed (`LoaderBoot.hintProgress`) against the guest's thread
    // and the other loaders: from the back of the order, while the guest's thread takes them from
    // the front (what it needs first), so that the two meet in the middle; from the front for a
    // source the guest cannot read, a batch at a time (several ranges in flight).
    if (progress !== null) {
      const claim = boot.serveDemand ? 8 : 1;
      const run = async (batch: number[]) => {
        try {
          await work(batch);
        } finally {
          for (const j of batch) {
            Atomics.store(progress, j, HINT_PROGRESS_DONE);
            Atomics.notify(progress, j);
          }
        }
      };
      let batch: number[] = [];
      for (let k = 0; k < hinted && !stopped(); k++) {
        const j = boot.serveDemand ? k : hinted - 1 - k;
        if (Atomics.compareExchange(progress, j, 0, HINT_PROGRESS_BUSY) !== 0) continue;
        batch.push(j);
        if (batch.length < claim) continue;
        await run(batch);
        batch = [];
      }
      if (batch.length > 0) await run(batch);
    }
    if (boot.background) lowerThreadPriority();
    // The hint's records are in: the rest waits while the guest runs the hint's window, which by
    // the hint needs none of it. Loading it meanwhile cost the guest's thread CPU time whenever
    // the loader got a core (its reads, decompression and first touches of fresh memory, a
    // resource the two threads share on this VM; BENCHMARKS.md, "Restore: lazy and eager").
    const holdStart = sharedClockMs();
    while (
      Atomics.load(ctl, CTL_HOLD_REST) !== 0 && !stopped() &&
      sharedClockMs() - holdStart < boot.holdMaxMs
    ) {
      const w = Atomics.waitAsync(ctl, CTL_HOLD_REST, Atomics.load(ctl, CTL_HOLD_REST), 100);
      if (w.async) await w.value;
    }
    groupRest((await openIndex()).index);
    await work(share(hinted, order.length));
    if (Atomics.sub(ctl, CTL_LOADERS_LEFT, 1) === 1) {
      Atomics.store(ctl, CTL_DONE_MS, Math.round(sharedClockMs() - boot.startedAtMs));
      Atomics.store(ctl, CTL_LOADER, LOADER_DONE);
    }
    Atomics.add(ctl, CTL_PROGRESS, 1);
    Atomics.notify(ctl, CTL_PROGRESS);
    Atomics.notify(ctl, CTL_LOADER);
    await demand; // a remote source: demand reads go on until the guest stops the loader
  } finally {
    for (const f of files.values()) f.close();
    opened.reader?.close();
  }
  return { type: "done", id: boot.id, records, failed };
}

/**
 * Serves the guest's demand reads when it cannot read the source itself: waits on the doorbell
 * (in steps of 100 ms, to notice a stop), reads the record of the page asked for as an urgent
 * read, installs it and wakes the guest; on failure leaves the reason for the guest
 * (CTL_DEMAND_FAILED and the message).
 */
async function serveDemand(
  reader: SnapshotFileReader,
  target: InstallTarget,
): Promise<void> {
  const { ctl, state } = target.views;
  let seen = Atomics.load(ctl, CTL_DOORBELL);
  while (Atomics.load(ctl, CTL_STOP) === 0) {
    const d = Atomics.load(ctl, CTL_DEMAND_PAGE);
    if (d === 0) {
      const w = Atomics.waitAsync(ctl, CTL_DOORBELL, seen, 100);
      if (w.async) await w.value;
      seen = Atomics.load(ctl, CTL_DOORBELL);
      continue;
    }
    const page = d - 1;
    const at = target.index.recordOf(page);
    try {
      const rec = await reader.readPageRecord(at, { urgent: true });
      Atomics.add(target.views.bytes, BYTES_LOADER, BigInt(rec.length));
      installPages(target, at, rec.pages, () => rec.data, PAGE_DEMANDED);
      if (Atomics.load(state, page) === PAGE_ABSENT) {
        throw new Error("the record does not hold the page the index says it does");
      }
    } catch (e) {
      setLoaderMessage(target.views, e instanceof LsnapError ? e.reason : (e as Error).message);
      Atomics.store(ctl, CTL_DEMAND_FAILED, d);
    }
    Atomics.compareExchange(ctl, CTL_DEMAND_PAGE, d, 0);
    Atomics.notify(state, page);
  }
}

/** Records a loader's failure in shared memory (the guest reads it) and wakes every waiter. */
export function failLoader(boot: LoaderBoot, message: string): void {
  const v = lazyViews(boot.buffers);
  setLoaderMessage(v, message);
  Atomics.store(v.ctl, CTL_LOADER, LOADER_FAILED);
  Atomics.add(v.ctl, CTL_PROGRESS, 1);
  Atomics.notify(v.ctl, CTL_PROGRESS);
  Atomics.notify(v.ctl, CTL_LOADER);
}
