/**
 * The `lsnap` input and output formats of `convert`: `.lsnap` files in, `.lsnap` files out
 * (recompressed, rebatched, with or without an index, at the current minor version).
 *
 * @module
 */
import type { MachineDescription } from "../../format/header.ts";
import { type SnapshotRecord, SnapshotStreamReader } from "../../format/stream_reader.ts";
import { SnapshotWriter } from "../../format/writer.ts";
import { countBytes } from "../_count_bytes.ts";
import { createOutput, openInput } from "../_io.ts";
import { ConvertError } from "./error.ts";
import { checkDigest, ReadBack } from "./read_back.ts";
import type { ConvertContext, OutputSummary, SnapshotSource, SourceItem } from "./types.ts";

/** Zero pages are written this many to a PAGES record (one record of zero-encoded pages). */
const ZERO_GROUP = 256;

/** Inputs at least this large have their output read back in a worker thread. */
const READ_BACK_WORKER_THRESHOLD = 32 << 20;

/** `--from lsnap` (the default): a livesnap `.lsnap` file. */
export async function openLsnap(input: string, ctx: ConvertContext): Promise<SnapshotSource> {
  const handle = await openInput(input);
  // Superseded occurrences are known only at the end; a file is read twice to find them first.
  let last: { pages: SnapshotStreamReader["pageOffsets"]; devices: Map<string, number> } | null =
    null;
  if (ctx.options.dropDuplicates && !ctx.options.addressOrder && handle.path !== undefined) {
    const pre = await openInput(handle.path);
    const scan = new SnapshotStreamReader(pre.readable, { decodePages: false, checkIndex: false });
    try {
      for await (const _ of scan.records()) { /* offsets gathered by the reader */ }
    } finally {
      pre.close();
    }
    last = { pages: scan.pageOffsets, devices: scan.deviceOffsets };
  }
  const reader = new SnapshotStreamReader(countBytes(handle.readable, (n) => ctx.progress.add(n)));
  const it = reader.records()[Symbol.asyncIterator]();
  let first: IteratorResult<SnapshotRecord>;
  try {
    first = await it.next();
  } catch (e) {
    handle.close();
    throw e;
  }
  if (first.done || first.value.kind !== "header") {
    handle.close();
    throw new ConvertError(`Cannot convert ${handle.name}: no header record`);
  }
  const description = first.value.description;
  return {
    name: handle.name,
    description,
    async *items() {
      for (;;) {
        const n = await it.next();
        if (n.done) break;
        const r = n.value;
        if (r.kind === "pages") {
          if (last === null) {
            yield { kind: "pages", region: r.region, pages: r.pages, data: r.data };
            continue;
          }
          const kept = keepLastOccurrences(r, last.pages!, description);
          if (kept !== null) yield kept;
        } else if (r.kind === "device") {
          const key = `${r.device.id}\u0000${r.device.instance}`;
          if (last === null || last.devices.get(key) === r.offset) {
            yield { kind: "device", device: r.device };
          }
        } else if (r.kind === "extension") {
          yield { kind: "extension", type: r.type, payload: r.payload };
        }
      }
      if (!reader.complete) {
        throw new ConvertError(`Cannot convert ${handle.name}: the input is incomplete`);
      }
    },
    contentDigest: () => Promise.resolve(reader.trailer?.contentDigest ?? null),
    close: () => handle.close(),
  };
}

/** The pages of record `r` that are the last occurrence of their page in the file, or null. */
function keepLastOccurrences(
  r: Extract<SnapshotRecord, { kind: "pages" }>,
  lastOffsets: NonNullable<SnapshotStreamReader["pageOffsets"]>,
  description: MachineDescription,
): SourceItem | null {
  const ps = description.regions[r.region].pageSize;
  const keep: number[] = [];
  const seen = new Set<number>();
  // Within a record the later entry wins, so walk it backwards.
  for (let i = r.pages.length - 1; i >= 0; i--) {
    const p = r.pages[i];
    if (seen.has(p)) continue;
    seen.add(p);
    if (lastOffsets.get(r.region, p) === r.offset) keep.push(i);
  }
  if (keep.length === 0) return null;
  keep.reverse();
  if (keep.length === r.pages.length) {
    return { kind: "pages", region: r.region, pages: r.pages, data: r.data };
  }
  const pages = Uint32Array.from(keep, (i) => r.pages[i]);
  let data: Uint8Array | null = null;
  if (r.data !== null) {
    data = new Uint8Array(keep.length * ps);
    keep.forEach((i, k) => data!.set(r.data!.subarray(i * ps, (i + 1) * ps), k * ps));
  }
  return { kind: "pages", region: r.region, pages, data };
}

/**
 * `--to lsnap` (the default): a livesnap `.lsnap` file, read back and checked against the input's
 * content digest before it is renamed into place.
 */
export async function writeLsnap(
  source: SnapshotSource,
  output: string,
  ctx: ConvertContext,
): Promise<OutputSummary> {
  const out = await createOutput(output);
  const inWorker = ctx.options.checkInWorker ??
    (ctx.inputSize === undefined || ctx.inputSize >= READ_BACK_WORKER_THRESHOLD);
  const check = ReadBack.lsnap(out.name, out.tempPath, inWorker);
  let failed = false;
  const sink = new WritableStream<Uint8Array>({
    async write(chunk) {
      await out.write(chunk);
      // SnapshotWriter never touches a chunk again once the stream has it.
      await check.push(chunk, true);
    },
    abort() {
      failed = true;
    },
  });
  const c = ctx.options.compress;
  let writer: SnapshotWriter;
  try {
    writer = await SnapshotWriter.create(sink, source.description, {
      codec: c?.codec,
      level: c?.level,
      batchBytes: ctx.options.batchBytes,
      index: ctx.options.index ?? true,
      workers: ctx.options.workers,
    });
  } catch (e) {
    check.stop();
    await out.abort();
    throw e;
  }
  let pages = 0;
  let devices = 0;
  let syncing: Promise<void> | null = null;
  try {
    const zero = new Uint8Array(ZERO_GROUP * 4096);
    for await (const item of source.items()) {
      if (item.kind === "pages") {
        pages += item.pages.length;
        if (item.data !== null) {
          await writer.writePageList(item.region, item.pages, item.data);
          continue;
        }
        const ps = source.description.regions[item.region].pageSize;
        const group = ps <= 4096 ? ZERO_GROUP : 1;
        const zeros = ps <= 4096 ? zero.subarray(0, group * ps) : new Uint8Array(ps);
        for (let i = 0; i < item.pages.length; i += group) {
          const part = item.pages.subarray(i, i + group);
          await writer.writePageList(item.region, part, zeros.subarray(0, part.length * ps));
        }
      } else if (item.kind === "device") {
        devices++;
        await writer.writeDevice(item.device);
      } else {
        await writer.writeExtensionRecord(item.type, item.payload, false);
      }
    }
    const summary = await writer.close();
    // The disk takes the bytes while the read-back finishes: the commit's fsync then finds
    // little left to wait for. Nothing is renamed before the read-back's verdict.
    syncing = out.sync();
    syncing.catch(() => {});
    const written = await check.finish();
    checkDigest(out.name, written, summary.contentDigest, "the one the writer computed");
    const expected = await source.contentDigest();
    checkDigest(out.name, written, expected);
    await syncing;
    await out.commit();
    return {
      bytes: summary.bytes,
      pages,
      devices,
      contentDigest: summary.contentDigest,
      digestChecked: expected !== null,
    };
  } catch (e) {
    if (!failed) await writer.abort().catch(() => {});
    check.stop();
    await (syncing as Promise<void> | null)?.catch(() => {});
    await out.abort();
    throw e;
  }
}
