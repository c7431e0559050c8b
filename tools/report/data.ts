/**
 * The data set a report holds, as it is embedded in the page
 * (`<script type="application/json" id="livesnap-data">`): the shape scripts read back. Each
 * file's `inspect` is exactly what `livesnap inspect --json FILE` prints; per-page and per-record
 * columns are {@linkcode PackedArray}s (little-endian typed arrays, gzip, base64), which keep a
 * 2 GiB snapshot's page map within a few megabytes whatever its layout.
 *
 * NOTICE: changing this layout needs a bump of {@linkcode REPORT_DATA_VERSION}.
 *
 * @module
 */
import type { ChainProblem } from "../../format/chain.ts";
import type { InspectResult, ParentReport } from "../inspect.ts";
import type { QemuStreamSummary } from "../../qemu/inspect.ts";
import type { SnapshotMetrics } from "../../emulator/snapshot/metrics.ts";

/** Version of the embedded data set's layout. */
export const REPORT_DATA_VERSION = 2;

/** Element types of {@linkcode PackedArray}. */
export type PackedType = "u8" | "u16" | "u32" | "i32" | "f64";

/**
 * A column of numbers: the little-endian bytes of a typed array of `type`, gzip-compressed
 * (RFC 1952) and base64-encoded. `length` is the number of elements.
 */
export interface PackedArray {
  /** The element type, hence the typed array {@linkcode unpackArray} returns. */
  type: PackedType;
  /** Number of elements (not bytes). */
  length: number;
  /** The gzip member of the elements' little-endian bytes, in standard base64. */
  gzipBase64: string;
}

/** Page states in {@linkcode RegionMap} runs (`kind`). */
export const PageKind = { ABSENT: 0, ZERO: 1, DATA: 2 } as const;

/**
 * One region's page map: runs of consecutive pages with the same state, copies and last record,
 * covering the region from page 0 to its last page in order (a run's first page is the sum of
 * the counts before it).
 */
export interface RegionMap {
  /** The region's name, as the file's HEADER (or the QEMU RAM block) gives it. */
  name: string;
  /** Guest-physical address of the region's first byte. */
  base: number;
  /** Size in bytes. */
  size: number;
  /** Page size in bytes. */
  pageSize: number;
  /** Pages in the region. */
  pages: number;
  /** The runs, as parallel columns (element `i` of each describes run `i`). */
  runs: {
    /** Pages in the run (u32). */
    count: PackedArray;
    /** {@linkcode PageKind}: 0 absent, 1 zero, 2 data; the content of the last copy (u8). */
    kind: PackedArray;
    /** How many copies of each page the file holds (u16; 0 for absent). */
    copies: PackedArray;
    /** Index in {@linkcode RecordTable} of the record holding the last copy (i32; -1 absent). */
    record: PackedArray;
  };
}

/**
 * Every record of the file in file order (for a QEMU stream: each batch of consecutive page
 * records, each device section and each other section).
 */
export interface RecordTable {
  /** Names of the record kinds; `kind` holds indexes into it. */
  kinds: string[];
  /** Names of page encodings; `encoding` holds indexes into it (255: not a page record). */
  encodings: string[];
  /** Byte offset of each record (f64). */
  offset: PackedArray;
  /** Bytes of each record, framing included (f64). */
  bytes: PackedArray;
  /** Index in `kinds` (u8). */
  kind: PackedArray;
  /** Region index of a page record, -1 otherwise (i32). */
  region: PackedArray;
  /** Index in `encodings` (u8). */
  encoding: PackedArray;
  /** Page entries of a page record (u32). */
  pages: PackedArray;
  /**
   * For a batch of QEMU page records: bytes from one page record to the next, so page `i` of
   * the batch is at `offset + i × stride` (u32; 0 for .lsnap records, whose pages share one
   * payload).
   */
  stride: PackedArray;
  /** 1 where a problem names this record (u8). */
  damaged: PackedArray;
  /** Labels of device records by record index (id:instance, and bytes of state). */
  devices: { record: number; id: string; instance: number; bytes: number }[];
  /** Ranges of the file that group records: a QEMU stream's RAM sections, one per pass. */
  spans: { offset: number; bytes: number; label: string }[];
}

/**
 * Where each record's pages sit, for the record-order chart: runs of consecutive pages within one
 * record, in file order. When the file holds more than the cap of segments, single-page runs are
 * sampled evenly first (one in `sampled` is kept; runs of several pages are all kept), and only
 * then are runs of a record closer than `gap` pages merged (a merged span may include pages the
 * record does not hold). `sampled` and `gap` are 1 when every run is there, exactly.
 */
export interface SegmentTable {
  /** Runs of one record closer than this many pages were merged (1: none were). */
  gap: number;
  /** One single-page run in this many was kept (1: all were). */
  sampled: number;
  /** Record index of each segment (u32). */
  record: PackedArray;
  /** Region index (u16). */
  region: PackedArray;
  /** First page (u32). */
  first: PackedArray;
  /** Pages (u32). */
  count: PackedArray;
}

/** A problem found in a file: the class of error, the message, where. */
export interface ReportProblem {
  /** The error's class name, e.g. "ChecksumError" or "QemuStreamCorruptError". */
  kind: string;
  /** The whole message, with its record and byte offset. */
  message: string;
  /** Byte offset in the file where the problem is. */
  offset: number;
  /** -1 outside records (prologue, footer) and for QEMU streams. */
  recordIndex: number;
}

/** One input file. */
export interface FileReport {
  /** The path as given on the command line. */
  path: string;
  /** An `.lsnap` file or a QEMU migration stream (told by its first bytes). */
  kind: "lsnap" | "qemu";
  /**
   * What `livesnap inspect --json FILE` prints for this file; for a QEMU stream that cannot be
   * read to its end, null (inspect prints only the error).
   */
  inspect: InspectResult | QemuStreamSummary | null;
  /** True when the file is complete and every check passed. */
  intact: boolean;
  /** Every problem found (from `verify`'s scan for an .lsnap file). */
  problems: ReportProblem[];
  /** True when more problems may follow those listed. */
  problemsTruncated: boolean;
  /**
   * Bytes the maps and tables come from: the whole file when it is intact, else the bytes read
   * up to the first problem.
   */
  bytesMapped: number;
  /** The file's size in bytes (null for standard input). */
  size: number | null;
  /** The content digest the file holds (trailer; for QEMU streams: computed), or null. */
  contentDigest: string | null;
  /**
   * For a diff (FORMAT.md §14), its PARENT record as `inspect --json` shows it (`name`, `depth`,
   * `contentDigest`, `fileDigest`, `rootFileDigest`); null for a full snapshot or a QEMU stream.
   */
  parent: ParentReport | null;
  /** Each region's page map (a QEMU stream's RAM blocks), in file order. */
  regions: RegionMap[];
  /** Every record of the file, for the record chart and table. */
  records: RecordTable;
  /** Where each record's pages sit, for the record-order chart. */
  segments: SegmentTable;
}

/** Page states in {@linkcode DiffRegion} runs (`kind`). */
export const DiffKind = { SAME: 0, CHANGED: 1, ZEROED: 2, FILLED: 3 } as const;

/** One region compared between two files. */
export interface DiffRegion {
  /** The region's name, or "A's / B's" for regions paired by layout, not by name. */
  name: string;
  /** Guest-physical address of the region's first byte (file A's). */
  base: number;
  /** Page size in bytes (regions whose page sizes differ are `unmatched`). */
  pageSize: number;
  /** Pages compared (those of the smaller region). */
  pages: number;
  /** Region indexes in file A and B. */
  a: number;
  /** Region index in file B. */
  b: number;
  /** Pages with different non-zero contents. */
  changed: number;
  /** Pages non-zero in A, zero in B. */
  zeroed: number;
  /** Pages zero in A, non-zero in B. */
  filled: number;
  /**
   * Runs of pages covering the compared pages in order: `kind` is {@linkcode DiffKind} (u8):
   * same, changed (different non-zero contents), zeroed (zero in B only), filled (zero in A
   * only); `count` pages (u32).
   */
  runs: { count: PackedArray; kind: PackedArray };
}

/** Two consecutive input files compared page by page. */
export interface DiffReport {
  /** File indexes. */
  a: number;
  /** Index in {@linkcode ReportData.files} of file B (A's plus one). */
  b: number;
  /** Regions paired by name, or else by equal layout, compared page by page. */
  regions: DiffRegion[];
  /** Regions of one file that the other lacks or lays out differently, by name. */
  unmatched: { file: "a" | "b"; name: string; reason: string }[];
  /** Device sections in one file only, or different in both. */
  devices: { id: string; instance: number; change: "only-in-a" | "only-in-b" | "changed" }[];
}

/** One file of a {@linkcode ReportChain}. */
export interface ReportChainLink {
  /** The path it was opened by (an input's path, or found through a diff's name hint). */
  path: string;
  /** Index in `files` when it is an input file, else -1 (a parent found through a name hint). */
  file: number;
  /** 0 for the full snapshot, else the diff's depth. */
  depth: number;
  /** The file's size in bytes. */
  bytes: number;
  /** Its trailer's content digest (FORMAT.md §10), lowercase hex. */
  contentDigest: string;
  /** Its trailer's file digest (FORMAT.md §9), lowercase hex. */
  fileDigest: string;
  /** Its PARENT record, as `inspect --json` shows it (null for the full snapshot). */
  parent: ParentReport | null;
  /**
   * The pages the file holds, as `inspect --json` counts them (`pages.present`, `pages.zero`;
   * `data` is the difference): for a diff, the pages written since its parent, the zero ones
   * being explicit zero pages; null when the file could not be read.
   */
  pages: { present: number; zero: number; data: number } | null;
  /** Why the link from this file to its parent is refused (the chain's message), else null. */
  broken: string | null;
}

/**
 * A chain of snapshots (FORMAT.md §14) ending at an input diff, opened through the format's
 * `openChain` with the other inputs as parents (matched by file digest), else the name hints.
 * `links` is in chain order, the full snapshot first. When a link is refused, `ok` is false,
 * `problem` and `message` say why (`ChainError`), and `links` holds the files that could be
 * identified from the inputs, the newest last, with the refused link's child marked `broken`. A
 * chain whose links hold but one of whose files is damaged is not `ok` either: that file's link is
 * marked `broken`.
 */
export interface ReportChain {
  /** Index in `files` of the newest file. */
  head: number;
  /** Whether every link holds and every file of the chain reads whole. */
  ok: boolean;
  /** `ChainError`'s problem, or "damaged-file" when the links hold but a file of the chain is damaged. */
  problem: ChainProblem | "damaged-file" | null;
  /** The refusal's message (names the file and the link), or null when `ok`. */
  message: string | null;
  /** The chain's files, the full snapshot first (see above when a link is refused). */
  links: ReportChainLink[];
}

/** One snapshot's metrics from `--metrics`. */
export interface TimelineReport {
  /** Index of the file whose content digest the metrics name, or -1. */
  file: number;
  /** The metrics line as the engine wrote it. */
  metrics: Partial<SnapshotMetrics> & Record<string, unknown>;
}

/** Everything the page shows. */
export interface ReportData {
  /** Always `livesnap-report`: tells this data set from other JSON. */
  format: "livesnap-report";
  /** The layout's version; a script reading the data checks it before trusting the shape. */
  version: typeof REPORT_DATA_VERSION;
  /** The program that made it, e.g. "livesnap 0.1.0". */
  generator: string;
  /** When the report was made (ISO 8601). */
  createdAt: string;
  /** True when any input file is damaged or incomplete, or a chain cannot be used. */
  damaged: boolean;
  /** Each input file, in command-line order. */
  files: FileReport[];
  /** The chain ending at each input diff that no other input diff names as its parent. */
  chains: ReportChain[];
  /** Each file against the next one. */
  diffs: DiffReport[];
  /** The `--metrics` file's path, or null. */
  metricsPath: string | null;
  /** One entry per snapshot of the `--metrics` file, in its order. */
  timelines: TimelineReport[];
}

const TYPED = {
  u8: Uint8Array,
  u16: Uint16Array,
  u32: Uint32Array,
  i32: Int32Array,
  f64: Float64Array,
} as const;

/** The typed array of each {@linkcode PackedType}. */
export type TypedArrayOf<T extends PackedType> = {
  u8: Uint8Array<ArrayBuffer>;
  u16: Uint16Array<ArrayBuffer>;
  u32: Uint32Array<ArrayBuffer>;
  i32: Int32Array<ArrayBuffer>;
  f64: Float64Array<ArrayBuffer>;
}[T];

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return await new Response(s).bytes();
}

async function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new DecompressionStream("gzip"));
  return await new Response(s).bytes();
}

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/**
 * Packs a typed array into a {@linkcode PackedArray} (this machine is little-endian, as every
 * platform Deno runs on; the layout says little-endian for readers elsewhere).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { packArray, unpackArray } from "./data.ts";
 * const packed = await packArray("u32", new Uint32Array([1, 2, 70000]));
 * assertEquals(await unpackArray(packed), new Uint32Array([1, 2, 70000]));
 * ```
 */
export async function packArray<T extends PackedType>(
  type: T,
  values: TypedArrayOf<T> | ArrayLike<number>,
): Promise<PackedArray> {
  const array = values instanceof TYPED[type] ? values : TYPED[type].from(values);
  const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  return { type, length: array.length, gzipBase64: toBase64(await gzip(bytes)) };
}

/** Unpacks a {@linkcode PackedArray}; throws when its bytes do not match its type and length. */
export async function unpackArray(p: PackedArray): Promise<TypedArrayOf<PackedType>> {
  const ctor = TYPED[p.type];
  if (ctor === undefined) throw new Error(`Cannot unpack column: unknown type '${p.type}'`);
  const bytes = await gunzip(Uint8Array.from(atob(p.gzipBase64), (c) => c.charCodeAt(0)));
  if (bytes.length !== p.length * ctor.BYTES_PER_ELEMENT) {
    throw new Error(
      `Cannot unpack column: ${bytes.length} bytes for ${p.length} elements of ${p.type}`,
    );
  }
  const aligned = new Uint8Array(bytes.length);
  aligned.set(bytes);
  return new ctor(aligned.buffer) as TypedArrayOf<PackedType>;
}

/** A growable column of numbers, turned into a typed array at the end. */
export class Column<T extends PackedType> {
  private data: TypedArrayOf<T>;
  /** Elements pushed. */
  length = 0;
  constructor(readonly type: T, capacity = 1024) {
    this.data = new TYPED[type](capacity) as TypedArrayOf<T>;
  }
  /** Appends a value. */
  push(v: number): void {
    if (this.length === this.data.length) {
      const grown = new TYPED[this.type](this.data.length * 2) as TypedArrayOf<T>;
      grown.set(this.data as never);
      this.data = grown;
    }
    this.data[this.length++] = v;
  }
  /** Value at `i`. */
  get(i: number): number {
    return this.data[i];
  }
  /** Sets the value at `i` (below `length`). */
  set(i: number, v: number): void {
    this.data[i] = v;
  }
  /** The values pushed. */
  values(): TypedArrayOf<T> {
    return this.data.subarray(0, this.length) as TypedArrayOf<T>;
  }
  /** The values, packed. */
  pack(): Promise<PackedArray> {
    return packArray(this.type, this.values());
  }
}
