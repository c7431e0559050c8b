/**
 * The streaming reader: one pass over a `ReadableStream` (a pipe works), checking every record's
 * CRC, the file digest, the content digest and completeness as it goes (FORMAT.md §13).
 *
 * What it cannot do that {@linkcode SnapshotFileReader} can: read one page without reading
 * everything before it. What it does that the file reader does not: verify the file digest and
 * content digest of the whole file.
 *
 * @module
 */
import type { OffsetTable } from "./_offset_table.ts";
import { SnapshotChecker, type SnapshotRecord } from "./file_checks.ts";
import type { PageHashTable } from "./content_digest.ts";
import type { ParentLink } from "./parent_record.ts";
import type { DeviceSection } from "./device_section.ts";
import { UnsupportedError } from "./errors.ts";
import type { FormatVersion, MachineDescription } from "./header.ts";
import { streamSource } from "./record_scanner.ts";
import type { Trailer } from "./trailer.ts";
import type { RecordCounts } from "./file_checks.ts";

export type { SnapshotRecord };
export type { RecordBase, RecordCounts } from "./file_checks.ts";

/** Options of {@linkcode SnapshotStreamReader}. */
export interface StreamReaderOptions {
  /**
   * Decompress page data, yield it and check the content digest (default true). With "digest",
   * check the content digest without yielding page data (`data` is null): each record's pages are
   * expanded into memory that is reused and hashed there, never copied out. When false, page
   * records are checked for CRC and layout only and `data` is null.
   */
  decodePages?: boolean | "digest";
  /** Check every INDEX entry against the records actually read (default true). */
  checkIndex?: boolean;
  /**
   * Read a diff (FORMAT.md §14) rather than refuse it (the default refuses with an
   * {@linkcode UnsupportedError}: a diff alone is not a whole state). With `parentPages` (the
   * parent's whole-state page hashes) its content digest is checked too.
   */
  diffs?: "read" | "refuse";
  /** For a diff: the page hashes of its parent's whole state, to check its content digest. */
  parentPages?: PageHashTable;
}

/**
 * Reads a snapshot from a stream in one pass, checking every rule of FORMAT.md as it goes (the
 * rules live in {@linkcode SnapshotChecker}; this reader stops at the first problem).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { SnapshotStreamReader } from "./stream_reader.ts";
 * import { SnapshotWriter } from "./writer.ts";
 * const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
 * const regions = [{ name: "ram", base: 0, size: 8192, pageSize: 4096 }];
 * const writing = SnapshotWriter.create(writable, { regions, creator: "doc", createdAt: 0 })
 *   .then(async (w) => { await w.writePages(0, 1, new Uint8Array(4096).fill(9)); return w.close(); });
 * const reader = new SnapshotStreamReader(readable);
 * let pages = 0;
 * for await (const r of reader.records()) if (r.kind === "pages") pages += r.pages.length;
 * await writing;
 * assert(pages === 1 && reader.complete);
 * ```
 */
export class SnapshotStreamReader {
  private readonly checker: SnapshotChecker;

  /** Locks `stream` for this reader; reading starts with {@linkcode SnapshotStreamReader.records}. */
  constructor(stream: ReadableStream<Uint8Array>, options: StreamReaderOptions = {}) {
    this.checker = new SnapshotChecker(streamSource(stream), {
      report: (e) => {
        throw e;
      },
      pages: options.decodePages === "digest"
        ? "digest"
        : (options.decodePages ?? true)
        ? "data"
        : "none",
      checkIndex: options.checkIndex ?? true,
      diffs: options.diffs,
      parentPages: options.parentPages,
    });
  }

  /** A diff's PARENT record, once read (null for a full snapshot). */
  get parent(): ParentLink | null {
    return this.checker.parent;
  }
  /** The page hashes of the whole state, after a complete read whose content digest was checked. */
  get pageHashes(): PageHashTable | null {
    return this.checker.pageHashes;
  }

  /** The machine description, once the header record was read. */
  get description(): MachineDescription | null {
    return this.checker.description;
  }
  /** The version in the prologue, once read. */
  get version(): FormatVersion | null {
    return this.checker.version;
  }
  /** The trailer, once read and checked. */
  get trailer(): Trailer | null {
    return this.complete ? this.checker.trailer : null;
  }
  /** True once the trailer, footer and end of input were read and every check passed. */
  get complete(): boolean {
    return this.checker.complete;
  }
  /** The content digest computed from the records (after a complete read, with decodePages). */
  get contentDigest(): Uint8Array | null {
    return this.checker.contentDigest;
  }
  /** The file digest computed from the bytes (after the trailer was read). */
  get fileDigest(): Uint8Array | null {
    return this.checker.fileDigest;
  }
  /**
   * Record offsets of the last occurrence of each page (filled while reading). For livesnap's
   * own tools (`convert --drop-duplicates`); its table type is not exported.
   *
   * @ignore
   */
  get pageOffsets(): OffsetTable | null {
    return this.checker.pageOffsets;
  }
  /** Record offset of the last DEVICE record for each "id\0instance". */
  get deviceOffsets(): Map<string, number> {
    return this.checker.deviceOffsets;
  }
  /** Counts gathered while reading. */
  get counts(): RecordCounts {
    return this.checker.counts;
  }
  /** Offset of the INDEX record seen, or 0. */
  get indexOffset(): number {
    return this.checker.indexOffset;
  }

  /**
   * Yields every record in file order. Throws an {@linkcode LsnapError} subclass for any
   * malformed input (FORMAT.md §11); a stream that ends before the footer throws
   * {@linkcode TruncatedError}.
   */
  records(): AsyncGenerator<SnapshotRecord> {
    return this.checker.records();
  }
}

/** A whole snapshot in memory, as {@linkcode readSnapshot} returns it. */
export interface Snapshot {
  /** The format version in the file's prologue (FORMAT.md §2). */
  version: FormatVersion;
  /** The HEADER record's machine description: regions, creator, time (FORMAT.md §5). */
  description: MachineDescription;
  /** One byte array per region, region-sized; pages never written are zero. */
  regions: Uint8Array[];
  /** The last section of each (id, instance), sorted by id then instance. */
  devices: DeviceSection[];
  /** The TRAILER record: counts and both digests, all checked (FORMAT.md §9). */
  trailer: Trailer;
  /** The content digest, checked against the trailer. */
  contentDigest: Uint8Array;
}

/** Options of {@linkcode readSnapshot}. */
export interface ReadSnapshotOptions {
  /** Refuse descriptions whose regions total more than this many bytes (default 4 GiB). */
  maxMemoryBytes?: number;
}

/**
 * Reads a complete snapshot from a stream into memory, checking everything.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { readSnapshot } from "./stream_reader.ts";
 * import { SnapshotWriter } from "./writer.ts";
 * const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
 * const regions = [{ name: "ram", base: 0, size: 8192, pageSize: 4096 }];
 * SnapshotWriter.create(writable, { regions, creator: "doc", createdAt: 0 })
 *   .then(async (w) => { await w.writePages(0, 0, new Uint8Array(4096).fill(5)); await w.close(); });
 * const snap = await readSnapshot(readable);
 * assert(snap.regions[0][0] === 5 && snap.regions[0][4096] === 0);
 * ```
 */
export async function readSnapshot(
  stream: ReadableStream<Uint8Array>,
  options: ReadSnapshotOptions = {},
): Promise<Snapshot> {
  const max = options.maxMemoryBytes ?? 4 * 1024 ** 3;
  const reader = new SnapshotStreamReader(stream);
  let regions: (Uint8Array | undefined)[] = [];
  const devices = new Map<string, DeviceSection>();
  for await (const r of reader.records()) {
    if (r.kind === "header") {
      const total = r.description.regions.reduce((n, x) => n + x.size, 0);
      if (total > max) {
        throw new UnsupportedError(
          `the regions total ${total} bytes, more than the ${max} this reader may allocate`,
          r,
        );
      }
      regions = r.description.regions.map(() => undefined);
    } else if (r.kind === "pages") {
      const reg = reader.description!.regions[r.region];
      const ps = reg.pageSize;
      let mem = regions[r.region];
      if (mem === undefined) {
        if (r.data === null) continue;
        mem = new Uint8Array(reg.size);
        regions[r.region] = mem;
      }
      for (let i = 0; i < r.pages.length; i++) {
        const at = r.pages[i] * ps;
        if (r.data === null) mem.fill(0, at, at + ps);
        else mem.set(r.data.subarray(i * ps, (i + 1) * ps), at);
      }
    } else if (r.kind === "device") {
      devices.set(`${r.device.id}\u0000${r.device.instance}`, r.device);
    }
  }
  const d = reader.description!;
  return {
    version: reader.version!,
    description: d,
    regions: d.regions.map((x, i) => regions[i] ?? new Uint8Array(x.size)),
    devices: sortDevices([...devices.values()]),
    trailer: reader.trailer!,
    contentDigest: reader.contentDigest!,
  };
}

/** Sorts device sections by id (UTF-8 bytes), then instance. */
export function sortDevices(list: DeviceSection[]): DeviceSection[] {
  const enc = new TextEncoder();
  return list.sort((a, b) => {
    const x = enc.encode(a.id);
    const y = enc.encode(b.id);
    const n = Math.min(x.length, y.length);
    for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length || a.instance - b.instance;
  });
}
