/**
 * The random-access reader: opens a snapshot from its footer, reads the trailer and the index,
 * and reads any page or device section with a constant number of reads; falls back to one scan
 * when the index (or the footer) is missing (FORMAT.md §13).
 *
 * It reads through a {@linkcode RandomAccessSource}: a local file, an `http://` or `https://`
 * URL read with Range requests, or any source the caller builds. The tail of the file (footer,
 * trailer and, when small, the index) comes in one read; then only the records asked for, each
 * with one read where the index tells where it ends, several in flight with
 * {@linkcode SnapshotFileReader.readPageRecords}. Memory stays bounded by the records in flight:
 * the file is never read whole.
 *
 * What it cannot do that `SnapshotStreamReader` can: read a pipe (refused with
 * `NotRandomAccessError`). It does not check the file digest or the content digest (that needs
 * every byte; use `verifySnapshot`); it checks every record's CRC32C when it reads the record.
 *
 * @module
 */
import type { OffsetTable } from "./_offset_table.ts";
import {
  FOOTER_SIZE,
  MAX_RECORD_PAYLOAD,
  PROLOGUE_SIZE,
  RECORD_HEAD_SIZE,
  RECORD_TAIL_SIZE,
  RecordType,
} from "./constants.ts";
import { decodeDeviceSection, type DeviceSection } from "./device_section.ts";
import { CorruptError, LsnapError, TruncatedError, UnsupportedError } from "./errors.ts";
import { decodeFooter } from "./footer.ts";
import {
  decodeHeader,
  decodePrologue,
  type FormatVersion,
  type MachineDescription,
} from "./header.ts";
import { decodeIndex, findIndexEntry, IndexBody, type SnapshotIndex } from "./index_record.ts";
import { decodePageRecord, expandPageData } from "./page_record.ts";
import { decodeParentRecord, type ParentLink } from "./parent_record.ts";
import { checkRecordCrc, decodeRecordHead, recordTypeName } from "./record.ts";
import { SnapshotChecker } from "./file_checks.ts";
import { streamSource } from "./record_scanner.ts";
import { sortDevices } from "./stream_reader.ts";
import { decodeTrailer, type Trailer } from "./trailer.ts";
import { openSource, type OpenSourceOptions } from "./open_source.ts";
import {
  type RandomAccessSource,
  type ReadOptions,
  sourceReadable,
} from "./random_access_source.ts";

/** Bytes read from the end of the file at open: the footer, the trailer, and a small index. */
const TAIL_READ = 64 * 1024;
/**
 * Largest span read in one go to fetch a record whose end is only bounded by the next record the
 * index names (stale or unknown records may lie between): past it, the head is read first.
 * Records of this library's writer are at most about 1 MiB.
 */
const MAX_SPECULATIVE_SPAN = 2 * 1024 * 1024;

/**
 * The offsets of every record `index` names, and `indexOffset`, sorted and each once. Page
 * entries come in page order, and neighbouring pages mostly share a record: only a change of
 * offset from one entry to the next is kept, so what is sorted is about one offset per record,
 * not one per page (a 1 GiB machine's index: 105 000 entries, 411 records).
 */
function recordBounds(index: SnapshotIndex, indexOffset: number): Float64Array {
  const offsets = index.pageOffsets;
  const kept: number[] = [indexOffset, ...index.deviceOffsets];
  let last = -1;
  for (let i = 0; i < offsets.length; i++) {
    if (offsets[i] !== last) {
      last = offsets[i];
      kept.push(last);
    }
  }
  const all = Float64Array.from(kept).sort();
  let k = 0;
  for (let i = 0; i < all.length; i++) if (i === 0 || all[i] !== all[k - 1]) all[k++] = all[i];
  return all.slice(0, k);
}

/** One PAGES record, read, CRC-checked and decoded. */
export interface PageRecordData {
  /** Byte offset of the record. */
  offset: number;
  /** Region index. */
  region: number;
  /** Page numbers of its entries, in entry order (an entry may repeat a page; the later wins). */
  pages: Uint32Array;
  /** The pages' bytes, `pages.length × pageSize`; null for a zero record (every page zero). */
  data: Uint8Array | null;
  /** Bytes of the record in the file, framing included. */
  length: number;
}

/** Options of {@linkcode SnapshotFileReader.open}. */
export interface FileReaderOptions extends OpenSourceOptions {
  /** Close a source passed to `open` when the reader closes (default false: the caller owns it). */
  closeSource?: boolean;
  /** A diff (FORMAT.md §14): "refuse" it (the default: it is not a whole state) or "read" it. */
  diffs?: "read" | "refuse";
  /**
   * Keep the INDEX decompressed and look pages up in place ({@linkcode IndexBody}, through
   * {@linkcode SnapshotFileReader.indexBody}) instead of decoding it at open; the full decode
   * happens on the first call that needs every entry. For a lazy restore, whose first
   * instruction needs a few entries of it (default false).
   */
  lazyIndex?: boolean;
}

/** Options of {@linkcode SnapshotFileReader.readPageRecords}. */
export interface ReadPageRecordsOptions {
  /** Bytes of records fetched per batch; the next batch is fetched while the current one is
   * consumed, so about twice this is held (default 16 MiB). */
  batchBytes?: number;
  /** Stops the reads. */
  signal?: AbortSignal;
}

/**
 * Reads pages and device sections of a snapshot file in any order.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { SnapshotFileReader } from "./file_reader.ts";
 * import { SnapshotWriter } from "./writer.ts";
 * const path = await Deno.makeTempFile({ suffix: ".lsnap" });
 * const regions = [{ name: "ram", base: 0, size: 65536, pageSize: 4096 }];
 * const w = await SnapshotWriter.createFile(path, { regions, creator: "doc", createdAt: 0 });
 * await w.writePages(0, 7, new Uint8Array(4096).fill(3));
 * await w.close();
 * const r = await SnapshotFileReader.open(path); // or an http(s) URL, or a RandomAccessSource
 * assert((await r.readPage(0, 7))[0] === 3 && (await r.readPage(0, 8))[0] === 0);
 * r.close();
 * await Deno.remove(path);
 * ```
 */
export class SnapshotFileReader {
  /** True when the footer and trailer were found and agree (digests are not checked here). */
  complete = false;
  /** The trailer, when the file is complete. */
  trailer: Trailer | null = null;
  /** True when page lookups use the file's INDEX record rather than a scan. */
  indexed = false;
  #index: SnapshotIndex | null = null;
  #body: IndexBody | null = null;
  #indexOffset = 0;
  private scanned: OffsetTable | null = null;
  private scannedDevices: number[] = [];
  /** Offsets of every record the index names, and of the INDEX itself, sorted: a record ends at
   * or before the next one. */
  private bounds: Float64Array = new Float64Array(0);
  private tail: { offset: number; bytes: Uint8Array } | null = null;
  private cache: PageRecordData | null = null;

  private constructor(
    /** The bytes being read; its `stats` count the requests and bytes. */
    readonly source: RandomAccessSource,
    private readonly ownsSource: boolean,
    readonly size: number,
    readonly version: FormatVersion,
  ) {}

  private header: MachineDescription | null = null;
  /** A diff's PARENT record (FORMAT.md §14), null for a full snapshot. */
  parent: ParentLink | null = null;
  /** The machine the snapshot describes (its HEADER record). */
  get description(): MachineDescription {
    return this.header!;
  }

  /**
   * Opens a snapshot: a path, an `http://` or `https://` URL (read with Range requests; see
   * `HttpSource` for what the server must do), or a {@linkcode RandomAccessSource}. Throws an
   * {@linkcode LsnapError} if the prologue or header is bad, a `SourceError` if the bytes cannot
   * be read (`NotRandomAccessError` for a pipe or `-`). A diff (FORMAT.md §14) is refused with an
   * {@linkcode UnsupportedError} unless `options.diffs` is "read": its pages are only the changes
   * since its parent (read it through `openChain`), and {@linkcode readPage} then returns zeros
   * for a page the diff does not hold, which is not the page's state
   * ({@linkcode pageRecordOffset} tells the two apart).
   */
  static async open(
    input: string | URL | RandomAccessSource,
    options: FileReaderOptions = {},
  ): Promise<SnapshotFileReader> {
    const given = typeof input === "object" && !(input instanceof URL);
    const source = given ? input : await openSource(input, options);
    const owns = !given || options.closeSource === true;
    try {
      const size = source.size;
      const prologue = await source.read(0, Math.min(size, PROLOGUE_SIZE));
      if (prologue.length < PROLOGUE_SIZE) {
        throw new TruncatedError(`the file is ${size} bytes, shorter than the prologue`, {
          offset: 0,
          recordIndex: -1,
        });
      }
      const version = decodePrologue(prologue);
      const r = new SnapshotFileReader(source, owns, size, version);
      const header = await r.#readRecordAt(PROLOGUE_SIZE, 0);
      if (header.type !== RecordType.HEADER) {
        throw new CorruptError(`the first record is ${recordTypeName(header.type)}, not HEADER`, {
          offset: PROLOGUE_SIZE,
          recordIndex: 0,
        });
      }
      r.header = decodeHeader(header.payload, PROLOGUE_SIZE, 0);
      const second = PROLOGUE_SIZE + header.length;
      if (second + RECORD_HEAD_SIZE <= size) {
        const head = decodeRecordHead(await r.#readAt(second, RECORD_HEAD_SIZE), second, 1);
        if (head.type === RecordType.PARENT) {
          const rec = await r.#readRecordAt(second, 1);
          r.parent = decodeParentRecord(rec.payload, second, 1);
          if ((options.diffs ?? "refuse") === "refuse") {
            throw new UnsupportedError(
              `the file is a diff on '${r.parent.parentName}' (chain depth ${r.parent.depth}), ` +
                "not a whole state: read it through its chain (openChain, livesnap flatten)",
              { offset: second, recordIndex: 1 },
            );
          }
        }
      }
      await r.locate(options.lazyIndex === true);
      return r;
    } catch (e) {
      if (owns) source.close();
      throw e;
    }
  }

  /** Finds the trailer and INDEX through the footer (FORMAT.md §9, §8), else scans the file. */
  private async locate(lazyIndex: boolean): Promise<void> {
    if (this.size >= PROLOGUE_SIZE + FOOTER_SIZE) {
      // One read for the footer, the trailer and (when it fits) the index.
      const start = Math.max(0, this.size - TAIL_READ);
      this.tail = { offset: start, bytes: await this.source.read(start, this.size - start) };
      try {
        const f = decodeFooter(
          await this.#readAt(this.size - FOOTER_SIZE, FOOTER_SIZE),
          this.size - FOOTER_SIZE,
        );
        const t = await this.#readRecordAt(f.trailerOffset, -1);
        if (
          t.type !== RecordType.TRAILER || f.trailerOffset + t.length !== this.size - FOOTER_SIZE
        ) {
          throw new CorruptError("footer does not point at the trailer", {
            offset: this.size - FOOTER_SIZE,
            recordIndex: -1,
          });
        }
        this.trailer = decodeTrailer(t.payload, f.trailerOffset, -1);
        this.complete = true;
        if (f.indexOffset !== 0 && f.indexOffset === this.trailer.indexOffset) {
          const ir = await this.#readRecordAt(f.indexOffset, -1);
          if (ir.type === RecordType.INDEX) {
            const counts = this.description.regions.map((x) => x.size / x.pageSize);
            this.#indexOffset = f.indexOffset;
            if (lazyIndex) {
              this.#body = IndexBody.open(ir.payload, counts, f.indexOffset, f.indexOffset, -1);
              // Until the full decode: the device records and the index bound each other.
              this.bounds = Float64Array.from([f.indexOffset, ...this.#body.deviceOffsets])
                .sort();
            } else {
              this.#index = decodeIndex(ir.payload, counts, f.indexOffset, f.indexOffset, -1);
              this.bounds = recordBounds(this.#index, f.indexOffset);
            }
            this.indexed = true;
            return;
          }
        }
      } catch (e) {
        if (!(e instanceof LsnapError)) throw e;
        this.complete = false;
        this.trailer = null;
      } finally {
        this.tail = null;
      }
    }
    await this.scan();
  }

  /** The decoded index (decoded now when the reader kept it in place), or null. */
  private get index(): SnapshotIndex | null {
    if (this.#index === null && this.#body !== null) {
      this.#index = this.#body.decode();
      this.bounds = recordBounds(this.#index, this.#indexOffset);
    }
    return this.#index;
  }

  /**
   * The INDEX kept in place, for a reader opened with `lazyIndex` (else null): valid until its
   * `release()`, which whoever takes it calls when done (the reader never does).
   */
  get indexBody(): IndexBody | null {
    return this.#body;
  }

  /** The scan of FORMAT.md §13: every rule but the digests, gathering offsets as it goes. */
  private async scan(): Promise<void> {
    const checker = new SnapshotChecker(streamSource(sourceReadable(this.source)), {
      report: (e) => {
        throw e;
      },
      pages: "none",
      checkIndex: false,
      diffs: "read",
    });
    try {
      for await (const _ of checker.records()) { /* offsets are gathered by the checker */ }
    } catch (e) {
      // An incomplete file still yields the pages before the damage.
      if (!(e instanceof TruncatedError)) throw e;
    }
    this.scanned = checker.pageOffsets;
    this.scannedDevices = [...checker.deviceOffsets.values()];
    if (checker.complete) {
      this.complete = true;
      this.trailer = checker.trailer;
    }
  }

  /** Record offset of the last occurrence of a page, or -1 when it never appears. */
  pageRecordOffset(region: number, page: number): number {
    if (this.index !== null) {
      const i = findIndexEntry(this.index, region, page);
      return i < 0 ? -1 : this.index.pageOffsets[i];
    }
    return this.scanned?.get(region, page) ?? -1;
  }

  /**
   * The pages of `region` that appear in the file, in increasing order, with the offset of the
   * record holding each one's last occurrence (`offsets[i]` for `pages[i]`); pages not listed
   * never appear (they read as zeros). Views of the index (or, without one, of the scan's
   * table); for lazy restore, which reads records one by one with
   * {@linkcode SnapshotFileReader.readPageRecord}.
   */
  pageEntries(region: number): { pages: Uint32Array; offsets: Float64Array } {
    const r = this.description.regions[region];
    if (r === undefined) throw new RangeError(`Cannot list region ${region}: no such region`);
    if (this.index !== null) {
      const { regions, pages, pageOffsets } = this.index;
      let lo = 0;
      while (lo < regions.length && regions[lo] < region) lo++;
      let hi = lo;
      while (hi < regions.length && regions[hi] === region) hi++;
      return { pages: pages.subarray(lo, hi), offsets: pageOffsets.subarray(lo, hi) };
    }
    const list: number[] = [];
    const offs: number[] = [];
    for (let p = 0; p < r.size / r.pageSize; p++) {
      const o = this.scanned?.get(region, p) ?? -1;
      if (o >= 0) {
        list.push(p);
        offs.push(o);
      }
    }
    return { pages: Uint32Array.from(list), offsets: Float64Array.from(offs) };
  }

  /**
   * The offsets of the PAGES records that hold the last occurrence of at least one page of
   * `region` (of every region when omitted), in file order: what a loader reads to have the whole
   * state.
   */
  pageRecordOffsets(region?: number): number[] {
    const out = new Set<number>();
    if (this.index !== null) {
      const { regions, pageOffsets } = this.index;
      for (let i = 0; i < pageOffsets.length; i++) {
        if (region === undefined || regions[i] === region) out.add(pageOffsets[i]);
      }
    } else if (this.scanned !== null) {
      this.description.regions.forEach((r, ri) => {
        if (region !== undefined && ri !== region) return;
        for (let p = 0; p < r.size / r.pageSize; p++) {
          const at = this.scanned!.get(ri, p);
          if (at >= 0) out.add(at);
        }
      });
    }
    return [...out].sort((a, b) => a - b);
  }

  /**
   * Reads one PAGES record at `offset`: checks its length against the file, its CRC32C, its
   * layout and its zstd frame, and returns its pages decompressed. Errors name the record's byte
   * offset. `options.urgent` lets a demand fault overtake prefetches on a shared source.
   */
  async readPageRecord(offset: number, options: ReadOptions = {}): Promise<PageRecordData> {
    if (this.cache?.offset === offset) return this.cache;
    const rec = await this.#readRecordAt(offset, -1, options);
    this.cache = this.decodePages(offset, rec);
    return this.cache;
  }

  /**
   * Reads the PAGES records at `offsets` and yields them in that order, decoded as
   * {@linkcode readPageRecord} does. Reads go in batches of about `batchBytes`, each through the
   * source's `readMany` (several ranges in flight, neighbours merged into one request), the next
   * batch in flight while the current one is consumed.
   */
  async *readPageRecords(
    offsets: readonly number[],
    options: ReadPageRecordsOptions = {},
  ): AsyncGenerator<PageRecordData> {
    const batchBytes = options.batchBytes ?? 16 * 1024 * 1024;
    const batches: number[][] = [];
    let cur: number[] = [];
    let bytes = 0;
    for (const at of offsets) {
      const span = this.knownSpan(at) ?? MAX_SPECULATIVE_SPAN;
      if (cur.length > 0 && bytes + span > batchBytes) {
        batches.push(cur);
        cur = [];
        bytes = 0;
      }
      cur.push(at);
      bytes += span;
    }
    if (cur.length > 0) batches.push(cur);
    const fetchBatch = (b: number[]) => {
      const p = this.#readBatch(b, options.signal);
      p.catch(() => {}); // reported when the consumer reaches it
      return p;
    };
    let next = batches.length > 0 ? fetchBatch(batches[0]) : null;
    for (let i = 0; i < batches.length; i++) {
      const records = await next!;
      next = i + 1 < batches.length ? fetchBatch(batches[i + 1]) : null;
      for (let j = 0; j < records.length; j++) {
        yield this.decodePages(batches[i][j], records[j]);
      }
    }
  }

  async #readBatch(offsets: number[], signal?: AbortSignal) {
    const spans = offsets.map((at) => this.knownSpan(at));
    const known = offsets.filter((_, i) => spans[i] !== null);
    const bytes = await this.source.readMany(
      known.map((at) => ({ offset: at, length: this.knownSpan(at)! })),
      { signal },
    );
    const byOffset = new Map(known.map((at, i) => [at, bytes[i]]));
    return await Promise.all(offsets.map((at) => {
      const b = byOffset.get(at);
      return b !== undefined
        ? this.#recordFromSpan(at, -1, b)
        : this.#readRecordAt(at, -1, { signal });
    }));
  }

  /** Checks a PAGES record read at `at` and decodes its pages (errors name the offset). */
  private decodePages(
    at: number,
    rec: { type: number; payload: Uint8Array; length: number },
  ): PageRecordData {
    const fail = (reason: string): never => {
      throw new CorruptError(reason, { offset: at, recordIndex: -1 });
    };
    if (rec.type !== RecordType.PAGES) {
      fail(`index points at a ${recordTypeName(rec.type)} record, not PAGES`);
    }
    const head = decodePageRecord(rec.payload, this.description.regions, at, -1);
    const pageSize = this.description.regions[head.region].pageSize;
    const data = expandPageData(head, pageSize, at, -1, fail);
    return { offset: at, region: head.region, pages: head.pages, data, length: rec.length };
  }

  /**
   * Calls `f` for every page the file names, with the offset of the record holding its last
   * occurrence (by region, then page).
   */
  forEachPage(f: (region: number, page: number, recordOffset: number) => void): void {
    const idx = this.index;
    if (idx !== null) {
      for (let i = 0; i < idx.pages.length; i++) {
        f(idx.regions[i], idx.pages[i], idx.pageOffsets[i]);
      }
    } else this.scanned?.forEach(f);
  }

  /** Offsets of the last DEVICE record of each (id, instance). */
  deviceRecordOffsets(): number[] {
    return this.index !== null ? [...this.index.deviceOffsets] : [...this.scannedDevices];
  }

  /**
   * The whole framed record at `offset` (head, payload, CRC; its length checked against the file
   * and its CRC checked), for copying it as it is.
   */
  async readRecord(
    offset: number,
  ): Promise<{ type: number; bytes: Uint8Array; payload: Uint8Array }> {
    const r = await this.#readRecordAt(offset, -1);
    return {
      type: r.type,
      // The payload is a view of the whole record #readRecordAt read.
      bytes: new Uint8Array(r.payload.buffer, r.payload.byteOffset - RECORD_HEAD_SIZE, r.length),
      payload: r.payload,
    };
  }

  /** A page's bytes (zeros when the page never appears). */
  async readPage(region: number, page: number, options: ReadOptions = {}): Promise<Uint8Array> {
    const r = this.description.regions[region];
    if (r === undefined || !Number.isInteger(page) || page < 0 || page >= r.size / r.pageSize) {
      throw new RangeError(`Cannot read page ${page} of region ${region}: no such page`);
    }
    const at = this.pageRecordOffset(region, page);
    if (at < 0) return new Uint8Array(r.pageSize);
    const rec = await this.readPageRecord(at, options);
    if (rec.region !== region) {
      throw new CorruptError(`index points at a record of region ${rec.region}, not ${region}`, {
        offset: at,
        recordIndex: -1,
      });
    }
    const pos = rec.pages.lastIndexOf(page);
    if (pos < 0) {
      throw new CorruptError(`the record does not hold page ${page}`, {
        offset: at,
        recordIndex: -1,
      });
    }
    return rec.data === null
      ? new Uint8Array(r.pageSize)
      : rec.data.slice(pos * r.pageSize, (pos + 1) * r.pageSize);
  }

  /**
   * A whole region's bytes; reads each record that holds a last occurrence once, several in
   * flight (see {@linkcode readPageRecords}). A region larger than `options.maxMemoryBytes`
   * (default 4 GiB, as {@linkcode readSnapshot}) is refused with {@linkcode UnsupportedError}
   * before anything is allocated: the header alone declares the size, so a file of a few hundred
   * bytes could otherwise ask for terabytes.
   */
  async readRegion(
    region: number,
    options: { maxMemoryBytes?: number } = {},
  ): Promise<Uint8Array> {
    const r = this.description.regions[region];
    if (r === undefined) throw new RangeError(`Cannot read region ${region}: no such region`);
    const max = options.maxMemoryBytes ?? 4 * 1024 ** 3;
    if (r.size > max) {
      throw new UnsupportedError(
        `region '${r.name}' is ${r.size} bytes, more than the ${max} this reader may allocate`,
        { offset: PROLOGUE_SIZE, recordIndex: 0 },
      );
    }
    const out = new Uint8Array(r.size);
    for await (const rec of this.readPageRecords(this.pageRecordOffsets(region))) {
      if (rec.region !== region) {
        throw new CorruptError(`index points at a record of region ${rec.region}, not ${region}`, {
          offset: rec.offset,
          recordIndex: -1,
        });
      }
      if (rec.data === null) continue;
      for (let i = 0; i < rec.pages.length; i++) {
        if (this.pageRecordOffset(region, rec.pages[i]) !== rec.offset) continue;
        out.set(rec.data.subarray(i * r.pageSize, (i + 1) * r.pageSize), rec.pages[i] * r.pageSize);
      }
    }
    return out;
  }

  /** The last section of each (id, instance), sorted by id then instance. */
  async devices(): Promise<DeviceSection[]> {
    const offsets = this.#body !== null
      ? [...this.#body.deviceOffsets]
      : this.index !== null
      ? [...this.index.deviceOffsets]
      : this.scannedDevices;
    const records = await this.#readBatch(offsets);
    const out = records.map((rec, i) => {
      if (rec.type !== RecordType.DEVICE) {
        throw new CorruptError(`index points at a ${recordTypeName(rec.type)} record, not DEVICE`, {
          offset: offsets[i],
          recordIndex: -1,
        });
      }
      return decodeDeviceSection(rec.payload, offsets[i], -1);
    });
    return sortDevices(out);
  }

  /** One device section, or undefined. */
  async readDevice(id: string, instance: number): Promise<DeviceSection | undefined> {
    return (await this.devices()).find((d) => d.id === id && d.instance === instance);
  }

  /** Closes the source, unless it was handed to `open` (then its owner closes it). */
  close(): void {
    if (this.ownsSource) this.source.close();
  }

  /** The bytes from `at` to the next record the index names, when that is small enough. */
  private knownSpan(at: number): number | null {
    const b = this.bounds;
    let lo = 0;
    let hi = b.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (b[mid] <= at) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= b.length) return null;
    const span = b[lo] - at;
    return span >= RECORD_HEAD_SIZE + RECORD_TAIL_SIZE && span <= MAX_SPECULATIVE_SPAN
      ? span
      : null;
  }

  #readAt(offset: number, length: number, options?: ReadOptions): Promise<Uint8Array> {
    const t = this.tail;
    if (t !== null && offset >= t.offset && offset + length <= t.offset + t.bytes.length) {
      return Promise.resolve(t.bytes.subarray(offset - t.offset, offset - t.offset + length));
    }
    return this.source.read(offset, length, options);
  }

  /**
   * Reads and checks one whole record at `offset`: length against the file's end, then CRC. One
   * read when the index bounds its end, else two (head, then the record).
   */
  async #readRecordAt(offset: number, recordIndex: number, options?: ReadOptions) {
    const loc = { offset, recordIndex };
    if (offset + RECORD_HEAD_SIZE + RECORD_TAIL_SIZE > this.size) {
      throw new TruncatedError("record head lies past the end of the file", loc);
    }
    const span = this.knownSpan(offset);
    if (span !== null) {
      return this.#recordFromSpan(offset, recordIndex, await this.#readAt(offset, span, options));
    }
    const head = await this.#readAt(offset, RECORD_HEAD_SIZE, options);
    const total = this.checkedTotal(head, offset, recordIndex);
    return this.#recordFromSpan(
      offset,
      recordIndex,
      await this.#readAt(offset, total, options),
    );
  }

  /** The record's whole length from its head, checked against the cap and the file's end. */
  private checkedTotal(head: Uint8Array, offset: number, recordIndex: number): number {
    const h = decodeRecordHead(head, offset, recordIndex);
    const total = RECORD_HEAD_SIZE + h.length + RECORD_TAIL_SIZE;
    if (h.length > MAX_RECORD_PAYLOAD || offset + total > this.size) {
      throw new TruncatedError(
        `record declares ${h.length} payload bytes but the file ends ${
          this.size - offset - RECORD_HEAD_SIZE
        } bytes later`,
        { offset, recordIndex },
      );
    }
    return total;
  }

  /** The record at the start of `bytes` (which may run on past it), CRC-checked. */
  #recordFromSpan(offset: number, recordIndex: number, bytes: Uint8Array) {
    const total = this.checkedTotal(bytes.subarray(0, RECORD_HEAD_SIZE), offset, recordIndex);
    if (total > bytes.length) {
      throw new CorruptError(
        `the record is ${total} bytes but the next record the index names starts ${bytes.length} bytes after it`,
        { offset, recordIndex },
      );
    }
    const record = bytes.subarray(0, total);
    checkRecordCrc(record, offset, recordIndex);
    const h = decodeRecordHead(record, offset, recordIndex);
    return {
      type: h.type,
      flags: h.flags,
      payload: record.subarray(RECORD_HEAD_SIZE, RECORD_HEAD_SIZE + h.length),
      length: total,
    };
  }
}
