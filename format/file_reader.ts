/**
 * The random-access reader: opens a seekable file from its footer, reads the trailer and the
 * index, and reads any page or device section with a constant number of reads; falls back to one
 * scan when the index (or the footer) is missing (FORMAT.md §13).
 *
 * What it cannot do that `SnapshotStreamReader` can: read a pipe. It does not check
 * the file digest or the content digest (that needs every byte; use `verifySnapshot`).
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
import { decodeIndex, findIndexEntry, type SnapshotIndex } from "./index_record.ts";
import { decodePageRecord, expandPageData } from "./page_record.ts";
import { checkRecordCrc, decodeRecordHead, recordTypeName } from "./record.ts";
import { SnapshotChecker } from "./file_checks.ts";
import { streamSource } from "./record_scanner.ts";
import { sortDevices } from "./stream_reader.ts";
import { decodeTrailer, type Trailer } from "./trailer.ts";

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
 * const r = await SnapshotFileReader.open(path);
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
  private index: SnapshotIndex | null = null;
  private scanned: OffsetTable | null = null;
  private scannedDevices: number[] = [];
  private cache: { offset: number; pages: Uint32Array; data: Uint8Array | null } | null = null;

  private constructor(
    private readonly file: Deno.FsFile,
    private readonly path: string,
    readonly size: number,
    readonly version: FormatVersion,
    readonly description: MachineDescription,
  ) {}

  /** Opens a file; throws an {@linkcode LsnapError} if the prologue or header is bad. */
  static async open(path: string): Promise<SnapshotFileReader> {
    const file = await Deno.open(path, { read: true });
    try {
      const size = (await file.stat()).size;
      const prologue = await readAt(file, 0, Math.min(size, PROLOGUE_SIZE));
      if (prologue.length < PROLOGUE_SIZE) {
        throw new TruncatedError(`the file is ${size} bytes, shorter than the prologue`, {
          offset: 0,
          recordIndex: -1,
        });
      }
      const version = decodePrologue(prologue);
      const header = await readRecordAt(file, size, PROLOGUE_SIZE, 0);
      if (header.type !== RecordType.HEADER) {
        throw new CorruptError(`the first record is ${recordTypeName(header.type)}, not HEADER`, {
          offset: PROLOGUE_SIZE,
          recordIndex: 0,
        });
      }
      const description = decodeHeader(header.payload, PROLOGUE_SIZE, 0);
      const r = new SnapshotFileReader(file, path, size, version, description);
      await r.locate();
      return r;
    } catch (e) {
      file.close();
      throw e;
    }
  }

  private async locate(): Promise<void> {
    if (this.size >= PROLOGUE_SIZE + FOOTER_SIZE) {
      try {
        const f = decodeFooter(
          await readAt(this.file, this.size - FOOTER_SIZE, FOOTER_SIZE),
          this.size - FOOTER_SIZE,
        );
        const t = await readRecordAt(this.file, this.size, f.trailerOffset, -1);
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
          const ir = await readRecordAt(this.file, this.size, f.indexOffset, -1);
          if (ir.type === RecordType.INDEX) {
            this.index = decodeIndex(
              ir.payload,
              this.description.regions.map((x) => x.size / x.pageSize),
              f.indexOffset,
              f.indexOffset,
              -1,
            );
            this.indexed = true;
            return;
          }
        }
      } catch (e) {
        if (!(e instanceof LsnapError)) throw e;
        this.complete = false;
        this.trailer = null;
      }
    }
    await this.scan();
  }

  /** The scan of FORMAT.md §13: every rule but the digests, gathering offsets as it goes. */
  private async scan(): Promise<void> {
    const f = await Deno.open(this.path, { read: true });
    const checker = new SnapshotChecker(streamSource(f.readable), {
      report: (e) => {
        throw e;
      },
      pages: "none",
      checkIndex: false,
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
   * {@linkcode SnapshotFileReader.readRecord}.
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
   * One whole record (head, payload, CRC) at `offset`, its length checked against the file's
   * size and its CRC32C checked: a {@linkcode TruncatedError} or `ChecksumError` names the offset.
   */
  async readRecord(
    offset: number,
  ): Promise<{ type: number; flags: number; payload: Uint8Array; length: number }> {
    return await readRecordAt(this.file, this.size, offset, -1);
  }

  private async loadPageRecord(
    region: number,
    at: number,
  ): Promise<{ pages: Uint32Array; data: Uint8Array | null }> {
    if (this.cache?.offset === at) return this.cache;
    const rec = await readRecordAt(this.file, this.size, at, -1);
    const fail = (reason: string): never => {
      throw new CorruptError(reason, { offset: at, recordIndex: -1 });
    };
    if (rec.type !== RecordType.PAGES) {
      fail(`index points at a ${recordTypeName(rec.type)} record, not PAGES`);
    }
    const head = decodePageRecord(rec.payload, this.description.regions, at, -1);
    if (head.region !== region) {
      fail(`index points at a record of region ${head.region}, not ${region}`);
    }
    const pageSize = this.description.regions[region].pageSize;
    const data = expandPageData(head, pageSize, at, -1, fail);
    this.cache = { offset: at, pages: head.pages, data };
    return this.cache;
  }

  /** A page's bytes (zeros when the page never appears). */
  async readPage(region: number, page: number): Promise<Uint8Array> {
    const r = this.description.regions[region];
    if (r === undefined || !Number.isInteger(page) || page < 0 || page >= r.size / r.pageSize) {
      throw new RangeError(`Cannot read page ${page} of region ${region}: no such page`);
    }
    const at = this.pageRecordOffset(region, page);
    if (at < 0) return new Uint8Array(r.pageSize);
    const { pages, data } = await this.loadPageRecord(region, at);
    let pos = -1;
    for (let i = pages.length - 1; i >= 0; i--) {
      if (pages[i] === page) {
        pos = i;
        break;
      }
    }
    if (pos < 0) {
      throw new CorruptError(`the record does not hold page ${page}`, {
        offset: at,
        recordIndex: -1,
      });
    }
    return data === null
      ? new Uint8Array(r.pageSize)
      : data.slice(pos * r.pageSize, (pos + 1) * r.pageSize);
  }

  /**
   * A whole region's bytes; reads each record that holds a last occurrence once. A region larger
   * than `options.maxMemoryBytes` (default 4 GiB, as {@linkcode readSnapshot}) is refused with
   * {@linkcode UnsupportedError} before anything is allocated: the header alone declares the size,
   * so a file of a few hundred bytes could otherwise ask for terabytes.
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
    const offsets = new Set<number>();
    for (let p = 0; p < r.size / r.pageSize; p++) {
      const at = this.pageRecordOffset(region, p);
      if (at >= 0) offsets.add(at);
    }
    for (const at of [...offsets].sort((a, b) => a - b)) {
      const { pages, data } = await this.loadPageRecord(region, at);
      if (data === null) continue;
      for (let i = 0; i < pages.length; i++) {
        if (this.pageRecordOffset(region, pages[i]) !== at) continue;
        out.set(data.subarray(i * r.pageSize, (i + 1) * r.pageSize), pages[i] * r.pageSize);
      }
    }
    return out;
  }

  /** The last section of each (id, instance), sorted by id then instance. */
  async devices(): Promise<DeviceSection[]> {
    const offsets = this.index !== null ? [...this.index.deviceOffsets] : this.scannedDevices;
    const out: DeviceSection[] = [];
    for (const at of offsets) {
      const rec = await readRecordAt(this.file, this.size, at, -1);
      if (rec.type !== RecordType.DEVICE) {
        throw new CorruptError(`index points at a ${recordTypeName(rec.type)} record, not DEVICE`, {
          offset: at,
          recordIndex: -1,
        });
      }
      out.push(decodeDeviceSection(rec.payload, at, -1));
    }
    return sortDevices(out);
  }

  /** One device section, or undefined. */
  async readDevice(id: string, instance: number): Promise<DeviceSection | undefined> {
    return (await this.devices()).find((d) => d.id === id && d.instance === instance);
  }

  /** Closes the file. */
  close(): void {
    this.file.close();
  }
}

async function readAt(file: Deno.FsFile, offset: number, length: number): Promise<Uint8Array> {
  await file.seek(offset, Deno.SeekMode.Start);
  const out = new Uint8Array(length);
  let n = 0;
  while (n < length) {
    const k = await file.read(out.subarray(n));
    if (k === null) break;
    n += k;
  }
  return n === length ? out : out.subarray(0, n);
}

/** Reads and checks one whole record at `offset`: length against the file's end, then CRC. */
async function readRecordAt(
  file: Deno.FsFile,
  size: number,
  offset: number,
  recordIndex: number,
): Promise<{ type: number; flags: number; payload: Uint8Array; length: number }> {
  const loc = { offset, recordIndex };
  if (offset + RECORD_HEAD_SIZE + RECORD_TAIL_SIZE > size) {
    throw new TruncatedError("record head lies past the end of the file", loc);
  }
  const head = await readAt(file, offset, RECORD_HEAD_SIZE);
  const h = decodeRecordHead(head, offset, recordIndex);
  const total = RECORD_HEAD_SIZE + h.length + RECORD_TAIL_SIZE;
  if (h.length > MAX_RECORD_PAYLOAD || offset + total > size) {
    throw new TruncatedError(
      `record declares ${h.length} payload bytes but the file ends ${
        size - offset - RECORD_HEAD_SIZE
      } bytes later`,
      loc,
    );
  }
  const record = await readAt(file, offset, total);
  checkRecordCrc(record, offset, recordIndex);
  return {
    type: h.type,
    flags: h.flags,
    payload: record.subarray(RECORD_HEAD_SIZE, RECORD_HEAD_SIZE + h.length),
    length: total,
  };
}
