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
import { decodeRecordHead } from "../../format/record.ts";
import { RECORD_HEAD_SIZE, RECORD_TAIL_SIZE } from "../../format/constants.ts";
import {
  BYTES_LOADER,
  CTL_DEMAND_ACTIVE,
  CTL_DONE_MS,
  CTL_FAILED_RECORDS,
  CTL_HINT_PAGES,
  CTL_LOADER,
  CTL_LOADERS_LEFT,
  CTL_PREFETCHED,
  CTL_PROGRESS,
  CTL_STOP,
  installRecord,
  lazyViews,
  LOADER_DONE,
  LOADER_FAILED,
  type LoaderBoot,
  type LoaderEvent,
  PAGE_ABSENT,
  PAGE_PREFETCHED,
  PageIndex,
  setLoaderMessage,
  sharedClockMs,
} from "./lazy_pages.ts";

async function readAt(file: Deno.FsFile, offset: number, out: Uint8Array): Promise<number> {
  await file.seek(offset, Deno.SeekMode.Start);
  let n = 0;
  while (n < out.length) {
    const k = await file.read(out.subarray(n));
    if (k === null) break;
    n += k;
  }
  return n;
}

/** Runs one loader to its end; returns what {@linkcode LoaderEvent} "done" reports. */
export async function runLoader(boot: LoaderBoot): Promise<LoaderEvent> {
  const v = lazyViews(boot.buffers);
  const { state, ctl } = v;
  // The loader reads the footer, trailer and index itself (off the guest's thread).
  const reader = await SnapshotFileReader.open(boot.path);
  const entries = reader.pageEntries(0);
  reader.close();
  const index = new PageIndex(entries.pages, entries.offsets);
  const target = {
    views: v,
    index,
    ram: new Uint8Array(boot.ram),
    description: boot.description,
  };
  // Record → its pages (those it holds the last occurrence of), in file order.
  const byRecord = new Map<number, number[]>();
  for (let i = 0; i < entries.pages.length; i++) {
    const o = entries.offsets[i];
    const list = byRecord.get(o);
    if (list === undefined) byRecord.set(o, [entries.pages[i]]);
    else list.push(entries.pages[i]);
  }
  const order: number[] = [];
  const queued = new Set<number>();
  for (const p of boot.hint) {
    const o = index.recordOf(p);
    if (o >= 0 && !queued.has(o)) {
      queued.add(o);
      order.push(o);
    }
  }
  const hinted = order.length;
  for (const o of [...byRecord.keys()].sort((a, b) => a - b)) if (!queued.has(o)) order.push(o);
  const file = await Deno.open(boot.path, { read: true });
  const head = new Uint8Array(RECORD_HEAD_SIZE);
  let records = 0;
  let failed = 0;
  try {
    for (let i = boot.id; i < order.length; i += boot.of) {
      if (Atomics.load(ctl, CTL_STOP) !== 0) break;
      // Demand first: wait (bounded) while the guest reads a record itself.
      const waitStart = sharedClockMs();
      while (Atomics.load(ctl, CTL_DEMAND_ACTIVE) !== 0) {
        const w = Atomics.waitAsync(ctl, CTL_DEMAND_ACTIVE, 1, 50);
        if (w.async) await w.value;
        if (sharedClockMs() - waitStart > boot.waitBoundMs) break;
      }
      const at = order[i];
      const pages = byRecord.get(at)!;
      if (!pages.some((p) => Atomics.load(state, p) === PAGE_ABSENT)) continue;
      try {
        if (await readAt(file, at, head) !== RECORD_HEAD_SIZE) {
          throw new TruncatedError("the file ends inside the record's head", {
            offset: at,
            recordIndex: -1,
          });
        }
        const h = decodeRecordHead(head, at, -1);
        const record = new Uint8Array(RECORD_HEAD_SIZE + h.length + RECORD_TAIL_SIZE);
        const n = await readAt(file, at, record);
        Atomics.add(v.bytes, BYTES_LOADER, BigInt(n));
        if (n !== record.length) {
          throw new TruncatedError(`the file ends ${n} bytes into a ${record.length}-byte record`, {
            offset: at,
            recordIndex: -1,
          });
        }
        const installed = installRecord(target, record, at, PAGE_PREFETCHED);
        Atomics.add(ctl, CTL_PREFETCHED, installed);
        if (i < hinted) Atomics.add(ctl, CTL_HINT_PAGES, installed);
        records++;
        Atomics.add(ctl, CTL_PROGRESS, 1);
        Atomics.notify(ctl, CTL_PROGRESS);
      } catch (e) {
        if (!(e instanceof LsnapError)) throw e;
        // Left absent: a demand read of any of its pages reports the damage to the guest.
        failed++;
        Atomics.add(ctl, CTL_FAILED_RECORDS, 1);
      }
    }
  } finally {
    file.close();
  }
  if (Atomics.sub(ctl, CTL_LOADERS_LEFT, 1) === 1) {
    Atomics.store(ctl, CTL_DONE_MS, Math.round(sharedClockMs() - boot.startedAtMs));
    Atomics.store(ctl, CTL_LOADER, LOADER_DONE);
  }
  Atomics.add(ctl, CTL_PROGRESS, 1);
  Atomics.notify(ctl, CTL_PROGRESS);
  Atomics.notify(ctl, CTL_LOADER);
  return { type: "done", id: boot.id, records, failed };
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
