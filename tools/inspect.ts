/**
 * `inspect`: what a snapshot holds, as one plain object (the shape `inspect --json` prints):
 * regions, page counts by encoding, compression, records, device sections, digests, whether the
 * file is complete, where its instruction count comes from; optionally the page map, and one
 * device's decoded state.
 *
 * @module
 */
import { countBytes } from "./_count_bytes.ts";
import { isZeroPage } from "./_zero.ts";
import { toHex } from "../format/checksum.ts";
import { decodeDeviceState } from "../format/device_state.ts";
import { LsnapError } from "../format/errors.ts";
import { ChainError, type ChainProblem, openChain } from "../format/chain.ts";
import { type SnapshotRecord, SnapshotStreamReader, sortDevices } from "../format/stream_reader.ts";
import type { DeviceSection } from "../format/device_section.ts";
import { SnapshotFileReader } from "../format/file_reader.ts";
import type { MachineDescription } from "../format/header.ts";
import { type Json, stateToJson } from "./_state_json.ts";
import { qemuMachineOf } from "../qemu/convert.ts";
import { instructionsCountedFrom } from "../emulator/snapshot/machine_state.ts";
import { MACHINE_NAME } from "../emulator/memory_map.ts";

/**
 * Where a snapshot's instruction count comes from: counted by livesnap since the guest's reset,
 * counted since the restore of a QEMU stream (QEMU records none, so what ran before is not
 * counted), or not recorded at all (a snapshot converted from a QEMU stream).
 */
export interface InstructionCount {
  /** The hart's retired-instruction count, or null when the snapshot records none. */
  retired: number | null;
  /** Since when it counts: the guest's reset, the restore of a QEMU stream, or no count. */
  countedFrom: "reset" | "qemu-stream" | "not-recorded";
}

/** The instruction count of a snapshot with `description` and these device sections. */
export function instructionCountOf(
  description: MachineDescription,
  devices: Iterable<DeviceSection>,
): InstructionCount | null {
  if (qemuMachineOf(description) !== null) return { retired: null, countedFrom: "not-recorded" };
  let machine: unknown;
  try {
    const meta = description.metadata?.length ? decodeDeviceState(description.metadata) : null;
    machine = (meta as Record<string, unknown> | null)?.machine;
  } catch {
    return null;
  }
  if (machine !== MACHINE_NAME) return null;
  for (const d of devices) {
    if (d.id !== "hart" || d.instance !== 0 || d.encoding !== "cbor") continue;
    try {
      const retired = (decodeDeviceState(d.state) as Record<string, unknown>).retired;
      if (typeof retired === "number" && Number.isSafeInteger(retired)) {
        return { retired, countedFrom: instructionsCountedFrom(description) };
      }
    } catch {
      return null;
    }
  }
  return null;
}

/** One line saying where a snapshot's instruction count comes from (inspect's text output). */
export function describeInstructionCount(c: InstructionCount): string {
  switch (c.countedFrom) {
    case "reset":
      return `${c.retired} retired since the guest's reset (counted by livesnap)`;
    case "qemu-stream":
      return `${c.retired} retired since the restore of a QEMU stream (QEMU records no count: what ran before is not counted)`;
    case "not-recorded":
      return "not recorded (from a QEMU stream, which has no retired-instruction count): 'restore' counts from 0 at the restore point";
  }
}

/** A format error as plain data. */
export interface ErrorReport {
  /** The error's class name: "CorruptError", "TruncatedError", "ChecksumError"… */
  kind: string;
  /** The whole message, "Cannot read record N at byte B: …". */
  message: string;
  /** Byte offset of the record (or structure) that could not be read. */
  offset: number;
  /** Index of that record (0 is the HEADER), -1 outside records. */
  recordIndex: number;
}

/** A run of consecutive pages of one region with the same state and the same last record. */
export interface PageRun {
  /** The region's name. */
  region: string;
  /** First page number and number of pages. */
  first: number;
  /** Number of pages in the run. */
  count: number;
  /** Guest-physical address of the first page. */
  address: number;
  /** "data" or "zero" (the last occurrence's contents). */
  state: "data" | "zero";
  /** The record holding the last occurrence of these pages. */
  record: { index: number; offset: number };
  /** How many times each page of the run appears in the file (more than 1: duplicated). */
  occurrences: number;
}

/** What {@linkcode inspectSnapshot} returns. */
export interface InspectResult {
  /** "MAJOR.MINOR" from the prologue, or null if unreadable. */
  formatVersion: string | null;
  /** True when the trailer and footer were read and every check passed. */
  complete: boolean;
  /** The program that wrote the file (HEADER `creator`), or null if unreadable. */
  creator: string | null;
  /** Creation time as an ISO 8601 string. */
  createdAt: string | null;
  /** The HEADER's regions: name, guest-physical base, size and page size in bytes. */
  regions: { name: string; base: number; size: number; pageSize: number }[];
  /** What the PAGES records hold. */
  pages: {
    /** Distinct pages that appear at least once. */
    present: number;
    /** Of those, pages whose last occurrence is all zero. */
    zero: number;
    /** PAGES records. */
    records: number;
    /** Page occurrences beyond the first for the same page. */
    duplicates: number;
    /** PAGES records by encoding. */
    encodings: { zero: number; raw: number; zstd: number };
  };
  /** Page occurrences, and bytes of PAGES records (framing included), by record encoding. */
  byEncoding: {
    pages: { zero: number; raw: number; zstd: number };
    bytes: { zero: number; raw: number; zstd: number };
  };
  /**
   * `pageData`: uncompressed bytes of the pages in raw and zstd records over those records'
   * bytes; `file`: bytes of all regions over the file's bytes (what the snapshot saves against a
   * flat dump). Null when nothing was read.
   */
  compression: { pageData: number | null; file: number | null };
  /** The last DEVICE record of each (id, instance): encoding `cbor` or `foreign`, state bytes. */
  devices: { id: string; instance: number; version: number; encoding: string; bytes: number }[];
  /** Digests in lowercase hex; null when the trailer was not reached. */
  digests: { content: string | null; file: string | null };
  /** Records read (trailer included when present). */
  records: number;
  /** Bytes read. */
  bytes: number;
  /** True when an INDEX record was present. */
  indexed: boolean;
  /** Unknown optional records skipped. */
  extensions: number;
  /** The first problem found, or null. */
  error: ErrorReport | null;
  /** The page map, with `pages: true`: runs in address order, region by region. */
  pageMap?: PageRun[];
  /** Where the hart's instruction count comes from; null for snapshots of other machines. */
  instructions: InstructionCount | null;
  /**
   * For a diff (FORMAT.md §14): its PARENT record, digests in lowercase hex. A diff's pages are
   * only the changes, and its content digest (the whole state's) is not checked without its
   * parents; null for a full snapshot.
   */
  parent: ParentReport | null;
  /** With `inspectChain`: the chain the file ends, or why it cannot be used. */
  chain?: ChainReport;
}

/** A diff's PARENT record as `inspect` reports it. */
export interface ParentReport {
  /** The parent's file name, as the diff records it (looked up in the diff's directory). */
  name: string;
  /** This diff's depth: 1 on a full snapshot. */
  depth: number;
  /** The parent's content digest (FORMAT.md §10), hex. */
  contentDigest: string;
  /** The parent's file digest (FORMAT.md §9), hex. */
  fileDigest: string;
  /** The file digest of the chain's full snapshot. */
  rootFileDigest: string;
}

/** The chain a file ends, as `inspect` reports it: its files, the full snapshot first. */
export type ChainReport =
  | {
    ok: true;
    files: {
      path: string;
      depth: number;
      bytes: number;
      contentDigest: string;
      fileDigest: string;
    }[];
  }
  | { ok: false; problem: ChainProblem; message: string };

/**
 * Opens the chain that ends at `path` (every link checked against the files' trailers, FORMAT.md
 * §14.4; the bytes are not read: `verify --chain` proves them) and describes it. Never throws for
 * a chain that cannot be used: the problem is in the report.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { inspectChain } from "./inspect.ts";
 * const r = await inspectChain("/nonexistent/s-3.lsnap");
 * assert(!r.ok && r.problem === "missing-parent");
 * ```
 */
export async function inspectChain(path: string, parents: string[] = []): Promise<ChainReport> {
  let chain;
  try {
    chain = await openChain(path, { parents });
  } catch (e) {
    if (e instanceof ChainError) return { ok: false, problem: e.problem, message: e.message };
    throw e;
  }
  try {
    return {
      ok: true,
      files: chain.files.map((f) => ({
        path: f.path,
        depth: f.depth,
        bytes: f.reader.size,
        contentDigest: toHex(f.trailer.contentDigest),
        fileDigest: toHex(f.trailer.fileDigest),
      })),
    };
  } finally {
    chain.close();
  }
}

/** Options of {@linkcode inspectSnapshot}. */
export interface InspectOptions {
  /** Build the page map (`pageMap`). */
  pages?: boolean;
  /** Called with byte counts as they are read (for progress). */
  onBytes?: (n: number) => void;
  /**
   * Called with every record read, in file order, after inspect has counted it (`livesnap report`
   * gathers its per-record data in the same pass). Page data is valid only during the call.
   */
  onRecord?: (record: SnapshotRecord) => void;
}

/** Turns an error into a report, rethrowing anything that is not a format error. */
export function reportError(e: unknown): ErrorReport {
  if (e instanceof LsnapError) {
    return { kind: e.name, message: e.message, offset: e.offset, recordIndex: e.recordIndex };
  }
  throw e;
}

// Per page, kept per 4096-page chunk: state (0 absent, 1 zero, 2 data), occurrences, last record.
interface MapChunk {
  state: Uint8Array;
  seen: Uint16Array;
  record: Int32Array;
}

/**
 * Reads a whole snapshot from a stream and describes it. Never throws for a malformed file: the
 * problem is in `error` and `complete` is false.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { inspectSnapshot } from "./inspect.ts";
 * const r = await inspectSnapshot(ReadableStream.from([new Uint8Array(10)]));
 * assert(r.complete === false && r.error?.kind === "CorruptError");
 * ```
 */
export async function inspectSnapshot(
  stream: ReadableStream<Uint8Array>,
  options: InspectOptions = {},
): Promise<InspectResult> {
  const bytesRead = { n: 0 };
  const reader = new SnapshotStreamReader(
    countBytes(stream, (n) => {
      bytesRead.n += n;
      options.onBytes?.(n);
    }),
    { diffs: "read" },
  );
  const maps: Map<number, MapChunk>[] = [];
  const devices = new Map<string, DeviceSection>();
  const encodings = { zero: 0, raw: 0, zstd: 0 };
  const pagesByEncoding = { zero: 0, raw: 0, zstd: 0 };
  const bytesByEncoding = { zero: 0, raw: 0, zstd: 0 };
  const recordOffsets: number[] = [];
  let pending: { encoding: "zero" | "raw" | "zstd"; offset: number } | null = null;
  let records = 0;
  let error: ErrorReport | null = null;
  let occurrences = 0;
  let dataBytes = 0;
  const closePending = (nextOffset: number) => {
    if (pending !== null) bytesByEncoding[pending.encoding] += nextOffset - pending.offset;
    pending = null;
  };
  try {
    for await (const r of reader.records()) {
      records++;
      recordOffsets.push(r.offset);
      closePending(r.offset);
      if (r.kind === "header") r.description.regions.forEach(() => maps.push(new Map()));
      else if (r.kind === "pages") {
        encodings[r.encoding]++;
        pagesByEncoding[r.encoding] += r.pages.length;
        pending = { encoding: r.encoding, offset: r.offset };
        const ps = reader.description!.regions[r.region].pageSize;
        if (r.encoding !== "zero") dataBytes += r.pages.length * ps;
        const map = maps[r.region];
        for (let i = 0; i < r.pages.length; i++) {
          occurrences++;
          const p = r.pages[i];
          let chunk = map.get(p >>> 12);
          if (chunk === undefined) {
            chunk = {
              state: new Uint8Array(4096),
              seen: new Uint16Array(4096),
              record: new Int32Array(4096),
            };
            map.set(p >>> 12, chunk);
          }
          const slot = p & 4095;
          chunk.state[slot] = r.data === null || isZeroPage(r.data, i * ps, ps) ? 1 : 2;
          if (chunk.seen[slot] < 0xffff) chunk.seen[slot]++;
          chunk.record[slot] = r.recordIndex;
        }
      } else if (r.kind === "device") {
        devices.set(`${r.device.id}\u0000${r.device.instance}`, r.device);
      }
      options.onRecord?.(r);
    }
  } catch (e) {
    error = reportError(e);
  }
  // A PAGES record cut short by damage: count it up to where reading stopped.
  closePending(
    pending === null ? 0 : Math.max((pending as { offset: number }).offset, bytesRead.n),
  );
  let present = 0;
  let zero = 0;
  for (const map of maps) {
    for (const chunk of map.values()) {
      for (const v of chunk.state) {
        if (v !== 0) present++;
        if (v === 1) zero++;
      }
    }
  }
  const d = reader.description;
  const t = reader.trailer;
  const stored = bytesByEncoding.raw + bytesByEncoding.zstd;
  const regionBytes = d?.regions.reduce((n, r) => n + r.size, 0) ?? 0;
  const result: InspectResult = {
    formatVersion: reader.version ? `${reader.version.major}.${reader.version.minor}` : null,
    complete: reader.complete && error === null,
    creator: d?.creator ?? null,
    createdAt: d ? new Date(d.createdAt).toISOString() : null,
    regions:
      d?.regions.map((r) => ({ name: r.name, base: r.base, size: r.size, pageSize: r.pageSize })) ??
        [],
    pages: {
      present,
      zero,
      records: reader.counts.pageRecords,
      duplicates: occurrences - present,
      encodings,
    },
    byEncoding: { pages: pagesByEncoding, bytes: bytesByEncoding },
    compression: {
      pageData: stored > 0 ? dataBytes / stored : null,
      file: bytesRead.n > 0 && regionBytes > 0 ? regionBytes / bytesRead.n : null,
    },
    devices: sortDevices([...devices.values()]).map((x) => ({
      id: x.id,
      instance: x.instance,
      version: x.version,
      encoding: x.encoding,
      bytes: x.state.length,
    })),
    digests: { content: t ? toHex(t.contentDigest) : null, file: t ? toHex(t.fileDigest) : null },
    records,
    bytes: bytesRead.n,
    indexed: reader.indexOffset !== 0,
    extensions: reader.counts.extensions,
    error,
    instructions: d === null ? null : instructionCountOf(d, devices.values()),
    parent: reader.parent === null ? null : {
      name: reader.parent.parentName,
      depth: reader.parent.depth,
      contentDigest: toHex(reader.parent.parentContentDigest),
      fileDigest: toHex(reader.parent.parentFileDigest),
      rootFileDigest: toHex(reader.parent.rootFileDigest),
    },
  };
  if (options.pages && d !== null) {
    const runs: PageRun[] = [];
    d.regions.forEach((region, ri) => {
      const map = maps[ri];
      const keys = [...map.keys()].sort((a, b) => a - b);
      let run: PageRun | null = null;
      for (const k of keys) {
        const c = map.get(k)!;
        for (let s = 0; s < 4096; s++) {
          const st = c.state[s];
          const page = k * 4096 + s;
          if (st === 0) {
            run = null;
            continue;
          }
          const state = st === 1 ? "zero" : "data";
          const index = c.record[s];
          if (
            run !== null && run.first + run.count === page && run.state === state &&
            run.record.index === index && run.occurrences === c.seen[s]
          ) {
            run.count++;
            continue;
          }
          run = {
            region: region.name,
            first: page,
            count: 1,
            address: region.base + page * region.pageSize,
            state,
            record: { index, offset: recordOffsets[index] },
            occurrences: c.seen[s],
          };
          runs.push(run);
        }
      }
    });
    result.pageMap = runs;
  }
  return result;
}

/** One device section's decoded state, as `inspect --device` prints it. */
export interface DeviceStateReport {
  /** Device id, e.g. `hart`, `ns16550a`. */
  id: string;
  /** Instance number among devices with this id. */
  instance: number;
  /** The device's own state layout version (FORMAT.md §7). */
  version: number;
  /** `cbor` (FORMAT.md §7.1) or `foreign`: another program's state kept verbatim. */
  encoding: "cbor" | "foreign";
  /** The decoded CBOR state (JSON view: bytes as hex), or for foreign payloads their bytes. */
  state: Json;
  /** For foreign payloads, the decoded description (null when empty). */
  description?: Json;
}

/** The snapshot has no section of the device asked for; the message names those it has. */
export class DeviceNotFoundError extends Error {
  /** Makes the error. */
  constructor(message: string) {
    super(message);
    this.name = "DeviceNotFoundError";
  }
}

/**
 * Reads a snapshot from a stream, or through a random-access reader (only the footer, the index
 * and the device records: what `inspect --device` does for a URL), and returns the last section
 * of device `id` (instance `instance`, or the lowest instance when omitted), decoded. Throws an `LsnapError` subclass for
 * a damaged file, and a {@linkcode DeviceNotFoundError} naming the devices present when there
 * is no such device.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { inspectDevice } from "./inspect.ts";
 * import { SnapshotWriter } from "../format/writer.ts";
 * import { encodeDeviceState } from "../format/device_state.ts";
 * const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
 * const regions = [{ name: "ram", base: 0, size: 4096, pageSize: 4096 }];
 * SnapshotWriter.create(writable, { regions, creator: "doc", createdAt: 0 }).then(async (w) => {
 *   await w.writeDevice({ id: "uart", instance: 0, version: 1, state: encodeDeviceState({ lsr: 96 }) });
 *   await w.close();
 * });
 * const d = await inspectDevice(readable, "uart");
 * assert((d.state as { lsr: number }).lsr === 96);
 * ```
 */
export async function inspectDevice(
  input: ReadableStream<Uint8Array> | SnapshotFileReader,
  id: string,
  instance?: number,
): Promise<DeviceStateReport> {
  let all: DeviceSection[];
  if (input instanceof SnapshotFileReader) {
    all = await input.devices();
  } else {
    // A diff holds the whole device state (FORMAT.md §14.2): its devices are the state's.
    const reader = new SnapshotStreamReader(input, { decodePages: false, diffs: "read" });
    const found = new Map<string, DeviceSection>();
    for await (const r of reader.records()) {
      if (r.kind === "device") found.set(`${r.device.id}\u0000${r.device.instance}`, r.device);
    }
    all = sortDevices([...found.values()]);
  }
  const d = all.find((x) => x.id === id && (instance === undefined || x.instance === instance));
  if (d === undefined) {
    const names = all.map((x) => `${x.id}:${x.instance}`).join(", ") || "none";
    throw new DeviceNotFoundError(
      `Cannot find device ${id}${instance === undefined ? "" : `:${instance}`} (devices: ${names})`,
    );
  }
  if (d.encoding === "foreign") {
    let description: Json = null;
    if (d.description.length > 0) {
      try {
        description = stateToJson(decodeDeviceState(d.description));
      } catch {
        description = stateToJson(d.description);
      }
    }
    return {
      id: d.id,
      instance: d.instance,
      version: d.version,
      encoding: d.encoding,
      state: stateToJson(d.state),
      description,
    };
  }
  return {
    id: d.id,
    instance: d.instance,
    version: d.version,
    encoding: d.encoding,
    state: stateToJson(decodeDeviceState(d.state)),
  };
}
