/**
 * What a report shows of one .lsnap file, gathered in one pass of `inspect` (whose result the
 * report embeds as it is) with its per-record hook: the record table, the record-order segments,
 * each region's page runs and, for diffs, a hash of every page's last copy. A damaged file is
 * read again by `verify`'s scan, which lists every problem with its record and byte offset.
 *
 * @module
 */
import type { SnapshotRecord } from "../../format/stream_reader.ts";
import { inspectChain, type InspectResult, inspectSnapshot } from "../inspect.ts";
import { verifySnapshot } from "../verify.ts";
import { type InputHandle, openInput } from "../_io.ts";
import { type FileReport, PageKind, type RegionMap, type ReportProblem } from "./data.ts";
import { RecordColumns, RunBuilder, SegmentCollector } from "./map_builder.ts";
import { PageHashes } from "./page_hashes.ts";

/** Bytes of a TRAILER record, framing included (FORMAT.md §9: 8 + 104 + 4). */
const TRAILER_RECORD_BYTES = 116;

/** Options of the gatherers. */
export interface GatherOptions {
  /** Keep a hash of every page's last copy (for diffs). */
  hashPages?: boolean;
  /** Most problems listed per damaged file (default 100). */
  maxProblems?: number;
  /** Most record-order segments (default {@linkcode MAX_SEGMENTS}). */
  maxSegments?: number;
  /** Called with byte counts as they are read (for progress). */
  onBytes?: (n: number) => void;
}

/** One file's report, and what the diff needs from it. */
export interface GatheredFile {
  report: FileReport;
  hashes: PageHashes | null;
  /** Each device's final state (version, encoding and bytes), by "id\0instance". */
  devices: Map<string, Uint8Array>;
}

/** The device's version, encoding and state as one byte string, for comparison. */
export function deviceFingerprint(
  version: number,
  encoding: string,
  state: Uint8Array,
): Uint8Array {
  const head = new TextEncoder().encode(`${version}\u0000${encoding}\u0000`);
  const out = new Uint8Array(head.length + state.length);
  out.set(head);
  out.set(state, head.length);
  return out;
}

/**
 * Reads an .lsnap file (`input`, already opened; `path` to read it again when it is damaged)
 * and gathers its report. Never throws for a malformed file: the problems are in the report.
 */
export async function gatherLsnap(
  input: InputHandle,
  readable: ReadableStream<Uint8Array>,
  options: GatherOptions = {},
): Promise<GatheredFile> {
  const records = new RecordColumns();
  const segments = new SegmentCollector(options.maxSegments);
  const devices = new Map<string, Uint8Array>();
  let hashes: PageHashes | null = null;
  let pageSizes: number[] = [];
  let previous = -1;
  const onRecord = (r: SnapshotRecord) => {
    if (previous >= 0) records.bytes.set(previous, r.offset - records.offset.get(previous));
    previous = records.length;
    switch (r.kind) {
      case "header":
        records.push({ offset: r.offset, bytes: 0, kind: "header" });
        pageSizes = r.description.regions.map((x) => x.pageSize);
        if (options.hashPages) {
          hashes = new PageHashes(r.description.regions.map((x) => x.size / x.pageSize));
        }
        break;
      case "pages": {
        const i = records.push({
          offset: r.offset,
          bytes: 0,
          kind: "pages",
          region: r.region,
          encoding: r.encoding,
          pages: r.pages.length,
        });
        segments.addPages(i, r.region, r.pages);
        const h = hashes as PageHashes | null;
        if (h !== null) {
          const ps = pageSizes[r.region];
          for (let k = 0; k < r.pages.length; k++) {
            if (r.data === null) h.setZero(r.region, r.pages[k]);
            else h.set(r.region, r.pages[k], r.data, k * ps, ps);
          }
        }
        break;
      }
      case "device": {
        const d = r.device;
        const i = records.push({ offset: r.offset, bytes: 0, kind: "device" });
        records.devices.push({ record: i, id: d.id, instance: d.instance, bytes: d.state.length });
        devices.set(
          `${d.id}\u0000${d.instance}`,
          deviceFingerprint(d.version, d.encoding, d.state),
        );
        break;
      }
      case "parent":
        // A diff's link to its parent (FORMAT.md §14.1), record 1.
        records.push({ offset: r.offset, bytes: 0, kind: "parent" });
        break;
      case "index":
        records.push({ offset: r.offset, bytes: 0, kind: "index" });
        break;
      case "extension":
        records.push({ offset: r.offset, bytes: 0, kind: `extension 0x${r.type.toString(16)}` });
        break;
      case "trailer":
        records.push({ offset: r.offset, bytes: TRAILER_RECORD_BYTES, kind: "trailer" });
        previous = -1;
        break;
    }
  };
  const result = await inspectSnapshot(readable, {
    pages: true,
    onBytes: options.onBytes,
    onRecord,
  });
  // The last record read before a problem ends where the problem was found.
  if (previous >= 0) {
    const end = result.error !== null && result.error.offset > records.offset.get(previous)
      ? result.error.offset
      : result.bytes;
    records.bytes.set(previous, Math.max(0, end - records.offset.get(previous)));
  }
  const { pageMap, ...inspect } = result;
  // As `inspect --json FILE` shows a diff: with its chain, parents found by their name hints.
  if (inspect.parent !== null && input.path !== undefined) {
    inspect.chain = await inspectChain(input.path);
  }
  const problems: ReportProblem[] = [];
  let problemsTruncated = false;
  if (result.error !== null) {
    const listed = await verifyAgain(input, options.maxProblems);
    if (listed === null) problems.push(result.error);
    else {
      problems.push(...listed.problems);
      problemsTruncated = listed.stoppedEarly;
    }
    for (const p of problems) records.markDamaged(p.offset);
    // What follows the first problem is not read: one row says so, up to the end of the file.
    const at = result.error.offset;
    if (!records.markDamaged(at)) {
      const i = records.push({
        offset: at,
        bytes: Math.max(0, (input.size ?? result.bytes) - at),
        kind: "unreadable",
      });
      records.markDamaged(records.offset.get(i));
    }
  }
  const regions: RegionMap[] = [];
  for (const region of inspect.regions) {
    const pages = region.size / region.pageSize;
    const runs = new RunBuilder(pages);
    for (const run of pageMap ?? []) {
      if (run.region !== region.name) continue;
      runs.add(
        run.first,
        run.count,
        run.state === "zero" ? PageKind.ZERO : PageKind.DATA,
        run.occurrences,
        run.record.index,
      );
    }
    regions.push({ ...region, pages, runs: await runs.pack() });
  }
  return {
    report: {
      path: input.name,
      kind: "lsnap",
      inspect: inspect as InspectResult,
      intact: result.complete && result.error === null,
      problems,
      problemsTruncated,
      bytesMapped: result.bytes,
      size: input.size ?? null,
      contentDigest: result.digests.content,
      parent: result.parent,
      regions,
      records: await records.pack(),
      segments: await segments.pack(),
    },
    hashes,
    devices,
  };
}

/** Every problem of a damaged file, from verify's scan of a second read; null for a pipe. */
async function verifyAgain(
  input: InputHandle,
  maxErrors = 100,
): Promise<{ problems: ReportProblem[]; stoppedEarly: boolean } | null> {
  if (input.path === undefined) return null;
  const again = await openInput(input.path);
  try {
    const v = await verifySnapshot(again.readable, { maxErrors });
    return { problems: v.problems, stoppedEarly: v.stoppedEarly };
  } finally {
    again.close();
  }
}
