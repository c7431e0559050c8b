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
import { OffsetTable, StreamSource } from "./_source.ts";
import { createBlake3, toHex } from "./checksum.ts";
import {
  FILE_MAGIC,
  FOOTER_SIZE,
  PROLOGUE_SIZE,
  RECORD_HEAD_SIZE,
  RECORD_TAIL_SIZE,
  RecordType,
} from "./constants.ts";
import { ContentDigestBuilder } from "./content_digest.ts";
import { decodeDeviceSection, type DeviceSection } from "./device_section.ts";
import { ChecksumError, CorruptError, TruncatedError, UnsupportedError } from "./errors.ts";
import { decodeFooter } from "./footer.ts";
import {
  decodeHeader,
  decodePrologue,
  type FormatVersion,
  type MachineDescription,
} from "./header.ts";
import { decodeIndex, type SnapshotIndex } from "./index_record.ts";
import { decodePageRecord, expandPageData, type PageEncodingName } from "./page_record.ts";
import { checkRecordCrc, decodeRecordHead, isCritical, recordTypeName } from "./record.ts";
import { decodeTrailer, type Trailer } from "./trailer.ts";

interface RecordBase {
  /** Byte offset of the record. */
  offset: number;
  /** Index of the record (the header record is 0). */
  recordIndex: number;
}

/** One record as the streaming reader yields it. */
export type SnapshotRecord =
  | RecordBase & { kind: "header"; version: FormatVersion; description: MachineDescription }
  | RecordBase & {
    kind: "pages";
    region: number;
    encoding: PageEncodingName;
    /** Page numbers, in record order (a later entry for the same page wins). */
    pages: Uint32Array;
    /** `pages.length × pageSize` bytes, or null for a zero record (or when not decoded). */
    data: Uint8Array | null;
  }
  | RecordBase & { kind: "device"; device: DeviceSection }
  | RecordBase & { kind: "index"; index: SnapshotIndex }
  | RecordBase & { kind: "extension"; type: number; payload: Uint8Array }
  | RecordBase & { kind: "trailer"; trailer: Trailer };

/** Options of {@linkcode SnapshotStreamReader}. */
export interface StreamReaderOptions {
  /**
   * Decompress page data, yield it and check the content digest (default true). When false,
   * page records are checked for CRC and layout only and `data` is null.
   */
  decodePages?: boolean;
  /** Check every INDEX entry against the records actually read (default true). */
  checkIndex?: boolean;
}

/**
 * Reads a snapshot from a stream in one pass.
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
  /** The machine description, once the header record was read. */
  description: MachineDescription | null = null;
  /** The version in the prologue, once read. */
  version: FormatVersion | null = null;
  /** The trailer, once read. */
  trailer: Trailer | null = null;
  /** True once the trailer, footer and end of input were read and every check passed. */
  complete = false;
  /** The content digest computed from the records (after a complete read, with decodePages). */
  contentDigest: Uint8Array | null = null;
  /** The file digest computed from the bytes (after the trailer was read). */
  fileDigest: Uint8Array | null = null;
  /** Record offsets of the last occurrence of each page (filled while reading). */
  pageOffsets: OffsetTable | null = null;
  /** Record offset of the last DEVICE record for each "id\0instance". */
  readonly deviceOffsets: Map<string, number> = new Map();
  /** Counts gathered while reading. */
  readonly counts = { records: 0, pageRecords: 0, pageOccurrences: 0, devices: 0, extensions: 0 };
  /** Offset of the INDEX record seen, or 0. */
  indexOffset = 0;

  private readonly source: StreamSource;
  private readonly decodePages: boolean;
  private readonly checkIndex: boolean;
  private used = false;

  constructor(stream: ReadableStream<Uint8Array>, options: StreamReaderOptions = {}) {
    this.source = new StreamSource(stream);
    this.decodePages = options.decodePages ?? true;
    this.checkIndex = options.checkIndex ?? true;
  }

  /**
   * Yields every record in file order. Throws an {@linkcode LsnapError} subclass for any
   * malformed input; a stream that ends before the footer throws {@linkcode TruncatedError}.
   */
  async *records(): AsyncGenerator<SnapshotRecord> {
    if (this.used) throw new Error("Cannot read snapshot: records() was already called");
    this.used = true;
    const src = this.source;
    try {
      const hasher = await createBlake3();
      hasher.init();
      const prologue = await src.read(PROLOGUE_SIZE);
      if (prologue.length < PROLOGUE_SIZE) {
        if (prologue.some((b, i) => i < FILE_MAGIC.length && b !== FILE_MAGIC[i])) {
          throw new CorruptError("bad magic: not an .lsnap file", { offset: 0, recordIndex: -1 });
        }
        throw new TruncatedError(`input ends after ${prologue.length} bytes, inside the prologue`, {
          offset: 0,
          recordIndex: -1,
        });
      }
      this.version = decodePrologue(prologue);
      hasher.update(prologue);
      let offset = PROLOGUE_SIZE;
      let digest: ContentDigestBuilder | null = null;
      for (let index = 0;; index++) {
        const loc = { offset, recordIndex: index };
        const head = await src.read(RECORD_HEAD_SIZE);
        if (head.length === 0) {
          throw new TruncatedError(
            `input ends after ${index} records without a trailer: the file is incomplete`,
            loc,
          );
        }
        if (head.length < RECORD_HEAD_SIZE) {
          throw new TruncatedError(`input ends inside the record head`, loc);
        }
        const h = decodeRecordHead(head, offset, index);
        const rest = await src.read(h.length + RECORD_TAIL_SIZE);
        if (rest.length < h.length + RECORD_TAIL_SIZE) {
          throw new TruncatedError(
            `record declares ${h.length} payload bytes but the input ends ${rest.length} bytes later`,
            loc,
          );
        }
        const record = new Uint8Array(RECORD_HEAD_SIZE + rest.length);
        record.set(head, 0);
        record.set(rest, RECORD_HEAD_SIZE);
        checkRecordCrc(record, offset, index);
        const payload = record.subarray(RECORD_HEAD_SIZE, RECORD_HEAD_SIZE + h.length);
        if (index === 0 && h.type !== RecordType.HEADER) {
          throw new CorruptError(`the first record is ${recordTypeName(h.type)}, not HEADER`, loc);
        }
        if (index > 0 && h.type === RecordType.HEADER) {
          throw new CorruptError("a second HEADER record", loc);
        }
        const base = { offset, recordIndex: index };
        if (h.type === RecordType.TRAILER) {
          const trailer = decodeTrailer(payload, offset, index);
          this.fileDigest = hasher.digest("binary");
          this.checkTrailer(trailer, index, offset);
          if (digest !== null) this.contentDigest = await digest.digest();
          this.compareDigest("file digest", trailer.fileDigest, this.fileDigest, offset, index);
          if (this.contentDigest !== null) {
            this.compareDigest(
              "content digest",
              trailer.contentDigest,
              this.contentDigest,
              offset,
              index,
            );
          }
          const footerAt = offset + record.length;
          const footer = await src.read(FOOTER_SIZE);
          if (footer.length < FOOTER_SIZE) {
            throw new TruncatedError(
              `input ends ${footer.length} bytes into the ${FOOTER_SIZE}-byte footer`,
              { offset: footerAt, recordIndex: -1 },
            );
          }
          const f = decodeFooter(footer, footerAt);
          if (f.trailerOffset !== offset || f.indexOffset !== trailer.indexOffset) {
            throw new CorruptError(
              `footer points at trailer ${f.trailerOffset} and index ${f.indexOffset}, but they are at ${offset} and ${trailer.indexOffset}`,
              { offset: footerAt, recordIndex: -1 },
            );
          }
          if (!(await src.atEnd())) {
            throw new CorruptError("bytes follow the footer", {
              offset: footerAt + FOOTER_SIZE,
              recordIndex: -1,
            });
          }
          this.trailer = trailer;
          this.complete = true;
          yield { ...base, kind: "trailer", trailer };
          return;
        }
        hasher.update(record);
        this.counts.records++;
        offset += record.length;
        switch (h.type) {
          case RecordType.HEADER: {
            this.description = decodeHeader(payload, base.offset, index);
            this.pageOffsets = new OffsetTable(this.description.regions.length);
            if (this.decodePages) digest = new ContentDigestBuilder(this.description);
            yield { ...base, kind: "header", version: this.version, description: this.description };
            break;
          }
          case RecordType.PAGES: {
            const regions = this.description!.regions;
            const p = decodePageRecord(payload, regions, base.offset, index);
            const ps = regions[p.region].pageSize;
            let data: Uint8Array | null = null;
            if (this.decodePages) {
              data = expandPageData(p, ps, base.offset, index, (reason, o, i) => {
                throw new CorruptError(reason, { offset: o, recordIndex: i });
              });
            }
            for (let i = 0; i < p.pages.length; i++) {
              this.pageOffsets!.set(p.region, p.pages[i], base.offset);
              if (digest !== null) {
                if (data === null) digest.clearPage(p.region, p.pages[i]);
                else digest.setPage(p.region, p.pages[i], data.subarray(i * ps, (i + 1) * ps));
              }
            }
            this.counts.pageRecords++;
            this.counts.pageOccurrences += p.pages.length;
            yield {
              ...base,
              kind: "pages",
              region: p.region,
              encoding: p.encoding,
              pages: p.pages,
              data,
            };
            break;
          }
          case RecordType.DEVICE: {
            const device = decodeDeviceSection(payload, base.offset, index);
            digest?.setDevice(device);
            this.deviceOffsets.set(`${device.id}\u0000${device.instance}`, base.offset);
            this.counts.devices++;
            yield { ...base, kind: "device", device };
            break;
          }
          case RecordType.INDEX: {
            const regions = this.description!.regions;
            const idx = decodeIndex(
              payload,
              regions.map((r) => r.size / r.pageSize),
              base.offset,
              base.offset,
              index,
            );
            if (this.indexOffset !== 0) throw new CorruptError("a second INDEX record", loc);
            this.indexOffset = base.offset;
            if (this.checkIndex) this.checkIndexEntries(idx, base.offset, index);
            yield { ...base, kind: "index", index: idx };
            break;
          }
          default: {
            if (isCritical(h.flags)) {
              throw new UnsupportedError(
                `critical record type ${recordTypeName(h.type)} is unknown to this reader`,
                loc,
              );
            }
            this.counts.extensions++;
            yield { ...base, kind: "extension", type: h.type, payload: payload.slice() };
          }
        }
      }
    } finally {
      await src.release();
    }
  }

  private checkTrailer(t: Trailer, index: number, offset: number): void {
    const c = this.counts;
    const pairs: [string, number, number][] = [
      ["record count", t.recordCount, c.records],
      ["page record count", t.pageRecordCount, c.pageRecords],
      ["page count", t.pageCount, c.pageOccurrences],
      ["device count", t.deviceCount, c.devices],
      ["index offset", t.indexOffset, this.indexOffset],
    ];
    for (const [what, declared, seen] of pairs) {
      if (declared !== seen) {
        throw new CorruptError(`trailer declares ${what} ${declared} but the file has ${seen}`, {
          offset,
          recordIndex: index,
        });
      }
    }
  }

  private compareDigest(
    what: string,
    expected: Uint8Array,
    actual: Uint8Array,
    offset: number,
    recordIndex: number,
  ) {
    const e = toHex(expected);
    const a = toHex(actual);
    if (e !== a) {
      throw new ChecksumError(`${what} mismatch`, { offset, recordIndex, expected: e, actual: a });
    }
  }

  private checkIndexEntries(idx: SnapshotIndex, offset: number, recordIndex: number): void {
    const table = this.pageOffsets!;
    for (let i = 0; i < idx.pages.length; i++) {
      const seen = table.get(idx.regions[i], idx.pages[i]);
      if (seen !== idx.pageOffsets[i]) {
        throw new CorruptError(
          `index entry ${i} puts page ${idx.pages[i]} of region ${idx.regions[i]} at byte ${
            idx.pageOffsets[i]
          }, but its last record is at ${seen}`,
          { offset, recordIndex },
        );
      }
    }
    if (idx.pages.length !== table.count()) {
      throw new CorruptError(
        `index has ${idx.pages.length} page entries but ${table.count()} pages appear`,
        { offset, recordIndex },
      );
    }
    const devs = new Set(this.deviceOffsets.values());
    if (idx.deviceOffsets.length !== devs.size || idx.deviceOffsets.some((o) => !devs.has(o))) {
      throw new CorruptError("index device entries do not match the device records", {
        offset,
        recordIndex,
      });
    }
  }
}

/** A whole snapshot in memory, as {@linkcode readSnapshot} returns it. */
export interface Snapshot {
  version: FormatVersion;
  description: MachineDescription;
  /** One byte array per region, region-sized; pages never written are zero. */
  regions: Uint8Array[];
  /** The last section of each (id, instance), sorted by id then instance. */
  devices: DeviceSection[];
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
