/**
 * The snapshot writer: pages in any order and any batch size, device sections whenever handed
 * them, written to any `WritableStream` without seeking (FORMAT.md §12).
 *
 * @module
 */
import { isZero } from "./_bytes.ts";
import { zstdCompress } from "./_zstd.ts";
import { createBlake3, hashPageInto } from "./checksum.ts";
import {
  FLAG_CRITICAL,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  MAX_RECORD_PAYLOAD,
  RecordType,
} from "./constants.ts";
import { ContentDigestBuilder } from "./content_digest.ts";
import { type DeviceSectionInput, encodeDeviceSection, normalizeDevice } from "./device_section.ts";
import { encodeFooter } from "./footer.ts";
import { encodeHeader, encodePrologue, type MachineDescription, validateDescription } from "./header.ts";
import { encodeIndex, indexBodySize } from "./index_record.ts";
import { encodePageRecord, type PageEncodingName } from "./page_record.ts";
import { encodeRecord } from "./record.ts";
import { encodeTrailer } from "./trailer.ts";
import type { IHasher } from "hash-wasm";

/** Options of {@linkcode SnapshotWriter}. */
export interface WriterOptions {
  /** How non-zero pages are stored: "zstd" (default) or "raw". */
  codec?: "zstd" | "raw";
  /** zstd level, default 1. */
  level?: number;
  /** Uncompressed bytes gathered before a PAGES record is written, default 256 KiB. */
  batchBytes?: number;
  /** Write an INDEX record (default true). Omitted anyway when it would exceed the record cap. */
  index?: boolean;
}

/** What {@linkcode SnapshotWriter.close} reports. */
export interface WriteSummary {
  /** Bytes written, footer included. */
  bytes: number;
  /** Records written, trailer included. */
  records: number;
  /** The content digest (FORMAT.md §10). */
  contentDigest: Uint8Array;
  /** The file digest (FORMAT.md §9). */
  fileDigest: Uint8Array;
}

const ZERO_BATCH = 16384;
const IN_NONE = 0;
const IN_ZERO = 1;
const IN_DATA = 2;

/**
 * Writes one `.lsnap` file to a stream.
 *
 * Every `write*` method copies what it is given before its promise resolves, so the caller may
 * reuse or free the source buffer (for example a slot of a SharedArrayBuffer) as soon as the
 * promise resolves. Calls must not overlap: await each before the next.
 *
 * @example
 * ```ts
 * import { SnapshotWriter } from "./writer.ts";
 * const chunks: Uint8Array[] = [];
 * const sink = new WritableStream<Uint8Array>({ write(c) { chunks.push(c); } });
 * const w = await SnapshotWriter.create(sink, {
 *   regions: [{ name: "ram", base: 0x8000_0000, size: 65536, pageSize: 4096 }],
 *   creator: "doc", createdAt: 0,
 * });
 * await w.writePages(0, 3, new Uint8Array(4096).fill(1));
 * await w.writeDevice({ id: "uart", instance: 0, version: 1, state: new Uint8Array([0xa0]) });
 * const summary = await w.close();
 * console.assert(summary.bytes === chunks.reduce((n, c) => n + c.length, 0));
 * ```
 */
export class SnapshotWriter {
  private offset = 0;
  private records = 0;
  private pageRecords = 0;
  private pageOccurrences = 0;
  private deviceRecords = 0;
  private closed = false;
  private hashing = true;
  private readonly codec: "zstd" | "raw";
  private readonly level: number;
  private readonly batchBytes: number;
  private readonly wantIndex: boolean;
  private readonly digest: ContentDigestBuilder;
  private readonly pageOffsets: (Float64Array | undefined)[];
  private readonly pending: (Uint8Array | undefined)[];
  private readonly deviceOffsets = new Map<string, number>();
  private dataRegion = -1;
  private dataBuf = new Uint8Array(0);
  private dataPages = new Uint32Array(0);
  private dataCount = 0;
  private zeroRegion = -1;
  private readonly zeroPages = new Uint32Array(ZERO_BATCH);
  private zeroCount = 0;
  private readonly pageHash = new Uint8Array(16);

  private constructor(
    private readonly out: WritableStreamDefaultWriter<Uint8Array>,
    private readonly description: MachineDescription,
    private readonly fileHasher: IHasher,
    options: WriterOptions,
    private readonly onClose: (ok: boolean) => Promise<void>,
  ) {
    this.codec = options.codec ?? "zstd";
    this.level = options.level ?? 1;
    this.batchBytes = Math.max(4096, Math.min(options.batchBytes ?? 256 * 1024, 16 * 1024 * 1024));
    this.wantIndex = options.index ?? true;
    this.digest = new ContentDigestBuilder(description);
    this.pageOffsets = description.regions.map(() => undefined);
    this.pending = description.regions.map(() => undefined);
  }

  /** Starts a snapshot on a stream: writes the prologue and the HEADER record. */
  static async create(
    stream: WritableStream<Uint8Array>,
    description: MachineDescription,
    options: WriterOptions = {},
  ): Promise<SnapshotWriter> {
    return await SnapshotWriter.start(stream.getWriter(), description, options, () => Promise.resolve());
  }

  /**
   * Starts a snapshot file at `path`. Bytes go to `<path>.tmp-<random>` in the same directory,
   * which is fsync'd and renamed to `path` only once the footer is written; {@linkcode abort} or
   * any write error removes it.
   */
  static async createFile(
    path: string,
    description: MachineDescription,
    options: WriterOptions = {},
  ): Promise<SnapshotWriter> {
    validateDescription(description);
    const rand = crypto.getRandomValues(new Uint8Array(6));
    const tmp = `${path}.tmp-${Array.from(rand, (b) => b.toString(16).padStart(2, "0")).join("")}`;
    const file = await Deno.open(tmp, { write: true, createNew: true });
    let open = true;
    const closeFile = () => {
      if (open) {
        open = false;
        file.close();
      }
    };
    const sink = new WritableStream<Uint8Array>({
      async write(chunk) {
        let n = 0;
        while (n < chunk.length) n += await file.write(chunk.subarray(n));
      },
      async close() {
        await file.sync();
        closeFile();
      },
      abort() {
        closeFile();
      },
    });
    const finish = async (ok: boolean) => {
      closeFile();
      if (ok) await Deno.rename(tmp, path);
      else await Deno.remove(tmp).catch(() => {});
    };
    try {
      return await SnapshotWriter.start(sink.getWriter(), description, options, finish);
    } catch (e) {
      await finish(false);
      throw e;
    }
  }

  private static async start(
    out: WritableStreamDefaultWriter<Uint8Array>,
    description: MachineDescription,
    options: WriterOptions,
    onClose: (ok: boolean) => Promise<void>,
  ): Promise<SnapshotWriter> {
    validateDescription(description);
    const hasher = await createBlake3();
    hasher.init();
    const w = new SnapshotWriter(out, description, hasher, options, onClose);
    await w.emit(encodePrologue(FORMAT_MAJOR, FORMAT_MINOR), false);
    await w.emitRecord(RecordType.HEADER, FLAG_CRITICAL, encodeHeader(description));
    return w;
  }

  private async emit(bytes: Uint8Array, isRecord = true): Promise<void> {
    if (this.hashing) this.fileHasher.update(bytes);
    this.offset += bytes.length;
    if (isRecord) this.records++;
    try {
      await this.out.write(bytes);
    } catch (e) {
      await this.fail();
      throw new Error(`Cannot write snapshot: ${(e as Error).message}`, { cause: e });
    }
  }

  private async emitRecord(type: number, flags: number, payload: Uint8Array): Promise<number> {
    const at = this.offset;
    await this.emit(encodeRecord(type, flags, payload));
    return at;
  }

  private async fail(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.out.abort().catch(() => {});
    await this.onClose(false);
  }

  private checkOpen(): void {
    if (this.closed) throw new Error("Cannot write snapshot: the writer is closed");
  }

  private checkPages(region: number, what: string): number {
    this.checkOpen();
    const r = this.description.regions[region];
    if (r === undefined) throw new Error(`Cannot write pages: region index ${region} does not exist (${what})`);
    return r.size / r.pageSize;
  }

  /**
   * Writes `data.length / pageSize` consecutive pages of region `region` starting at `firstPage`.
   * Resolves once the bytes have been copied and hashed (the caller may then reuse `data`).
   */
  async writePages(region: number, firstPage: number, data: Uint8Array): Promise<void> {
    const total = this.checkPages(region, "writePages");
    const ps = this.description.regions[region].pageSize;
    if (data.length % ps !== 0) throw new Error(`Cannot write pages: ${data.length} bytes is not a multiple of the page size ${ps}`);
    const n = data.length / ps;
    if (!Number.isInteger(firstPage) || firstPage < 0 || firstPage + n > total) {
      throw new Error(`Cannot write pages: pages ${firstPage}..${firstPage + n - 1} are outside region '${this.description.regions[region].name}' (${total} pages)`);
    }
    for (let i = 0; i < n; i++) await this.addPage(region, firstPage + i, data.subarray(i * ps, (i + 1) * ps));
  }

  /**
   * Writes pages of region `region` named by `pages`; page `pages[i]` is
   * `data[i × pageSize ..]`. Resolves once the bytes have been copied and hashed.
   */
  async writePageList(region: number, pages: ArrayLike<number>, data: Uint8Array): Promise<void> {
    const total = this.checkPages(region, "writePageList");
    const ps = this.description.regions[region].pageSize;
    if (data.length !== pages.length * ps) throw new Error(`Cannot write pages: ${data.length} bytes for ${pages.length} pages of ${ps} bytes`);
    for (let i = 0; i < pages.length; i++) {
      const p = pages[i];
      if (!Number.isInteger(p) || p < 0 || p >= total) throw new Error(`Cannot write pages: page ${p} is outside region '${this.description.regions[region].name}' (${total} pages)`);
    }
    for (let i = 0; i < pages.length; i++) await this.addPage(region, pages[i], data.subarray(i * ps, (i + 1) * ps));
  }

  private pendingMap(region: number): Uint8Array {
    let m = this.pending[region];
    if (m === undefined) {
      const r = this.description.regions[region];
      m = new Uint8Array(r.size / r.pageSize);
      this.pending[region] = m;
    }
    return m;
  }

  private async addPage(region: number, page: number, bytes: Uint8Array): Promise<void> {
    const pending = this.pendingMap(region);
    this.pageOccurrences++;
    if (isZero(bytes)) {
      this.digest.clearPage(region, page);
      if (this.zeroRegion !== region && this.zeroCount > 0) await this.flushZero();
      // A page pending as data must reach the file before its newer zero occurrence.
      if (pending[page] === IN_DATA) await this.flushData();
      this.zeroRegion = region;
      this.zeroPages[this.zeroCount++] = page;
      pending[page] = IN_ZERO;
      if (this.zeroCount === ZERO_BATCH) await this.flushZero();
      return;
    }
    hashPageInto(bytes, this.pageHash, 0);
    this.digest.setPageHash(region, page, this.pageHash);
    if (this.dataRegion !== region && this.dataCount > 0) await this.flushData();
    if (pending[page] === IN_ZERO) await this.flushZero();
    if (this.dataRegion !== region) {
      const ps = this.description.regions[region].pageSize;
      const cap = Math.max(1, Math.floor(this.batchBytes / ps));
      if (this.dataBuf.length !== cap * ps) {
        this.dataBuf = new Uint8Array(cap * ps);
        this.dataPages = new Uint32Array(cap);
      }
      this.dataRegion = region;
    }
    this.dataBuf.set(bytes, this.dataCount * bytes.length);
    this.dataPages[this.dataCount++] = page;
    pending[page] = IN_DATA;
    if (this.dataCount === this.dataPages.length) await this.flushData();
  }

  private notePages(region: number, pages: Uint32Array, at: number): void {
    const pending = this.pending[region]!;
    let offsets = this.pageOffsets[region];
    if (offsets === undefined && this.wantIndex) {
      const r = this.description.regions[region];
      offsets = new Float64Array(r.size / r.pageSize);
      this.pageOffsets[region] = offsets;
    }
    for (let i = 0; i < pages.length; i++) {
      pending[pages[i]] = IN_NONE;
      // Stored +1 so that 0 means "absent".
      if (offsets !== undefined) offsets[pages[i]] = at + 1;
    }
    this.pageRecords++;
  }

  private async flushZero(): Promise<void> {
    if (this.zeroCount === 0) return;
    const pages = this.zeroPages.slice(0, this.zeroCount);
    this.zeroCount = 0;
    const at = await this.emitRecord(RecordType.PAGES, FLAG_CRITICAL, encodePageRecord(this.zeroRegion, "zero", pages, new Uint8Array(0)));
    this.notePages(this.zeroRegion, pages, at);
  }

  private async flushData(): Promise<void> {
    if (this.dataCount === 0) return;
    const pages = this.dataPages.slice(0, this.dataCount);
    const ps = this.description.regions[this.dataRegion].pageSize;
    const raw = this.dataBuf.subarray(0, this.dataCount * ps);
    this.dataCount = 0;
    let encoding: PageEncodingName = "raw";
    let data: Uint8Array = raw;
    if (this.codec === "zstd") {
      const z = zstdCompress(raw, this.level);
      if (z.length < raw.length) {
        encoding = "zstd";
        data = z;
      }
    }
    const at = await this.emitRecord(RecordType.PAGES, FLAG_CRITICAL, encodePageRecord(this.dataRegion, encoding, pages, data));
    this.notePages(this.dataRegion, pages, at);
  }

  /** Writes a device section now (FORMAT.md §7); the last one for an (id, instance) wins. */
  async writeDevice(section: DeviceSectionInput): Promise<void> {
    this.checkOpen();
    const d = normalizeDevice(section);
    const copy = { ...d, state: d.state.slice(), description: d.description.slice() };
    this.digest.setDevice(copy);
    const at = await this.emitRecord(RecordType.DEVICE, FLAG_CRITICAL, encodeDeviceSection(copy));
    this.deviceOffsets.set(`${d.id}\u0000${d.instance}`, at);
    this.deviceRecords++;
  }

  /**
   * Writes a record of a type this library does not define (for extensions and tests). A reader
   * that does not know `type` skips it unless `critical` is set, in which case it refuses the file.
   */
  async writeExtensionRecord(type: number, payload: Uint8Array, critical: boolean): Promise<void> {
    this.checkOpen();
    if (!Number.isInteger(type) || type <= RecordType.TRAILER || type > 0xffff) {
      throw new Error(`Cannot write extension record: type ${type} is reserved or not a u16`);
    }
    await this.emitRecord(type, critical ? FLAG_CRITICAL : 0, payload.slice());
  }

  /** Flushes pending pages, writes the index, trailer and footer, and closes the stream. */
  async close(): Promise<WriteSummary> {
    this.checkOpen();
    try {
      await this.flushZero();
      await this.flushData();
      const indexOffset = await this.writeIndex();
      const contentDigest = await this.digest.digest();
      const fileDigest = this.fileHasher.digest("binary");
      this.hashing = false;
      const trailer = encodeTrailer({
        recordCount: this.records,
        pageRecordCount: this.pageRecords,
        pageCount: this.pageOccurrences,
        deviceCount: this.deviceRecords,
        indexOffset,
        contentDigest,
        fileDigest,
      });
      const trailerOffset = await this.emitRecord(RecordType.TRAILER, FLAG_CRITICAL, trailer);
      await this.emit(encodeFooter({ trailerOffset, indexOffset }), false);
      await this.out.close();
      this.closed = true;
      await this.onClose(true);
      return { bytes: this.offset, records: this.records, contentDigest, fileDigest };
    } catch (e) {
      await this.fail();
      throw e;
    }
  }

  /** Abandons the snapshot: aborts the stream (a file writer removes its temporary file). */
  async abort(): Promise<void> {
    await this.fail();
  }

  private async writeIndex(): Promise<number> {
    if (!this.wantIndex) return 0;
    let n = 0;
    for (const o of this.pageOffsets) if (o !== undefined) for (let i = 0; i < o.length; i++) if (o[i] !== 0) n++;
    if (indexBodySize(n, this.deviceOffsets.size) > MAX_RECORD_PAYLOAD) return 0;
    const regions = new Uint16Array(n);
    const pages = new Uint32Array(n);
    const pageOffsets = new Float64Array(n);
    let k = 0;
    this.pageOffsets.forEach((o, r) => {
      if (o === undefined) return;
      for (let i = 0; i < o.length; i++) {
        if (o[i] === 0) continue;
        regions[k] = r;
        pages[k] = i;
        pageOffsets[k++] = o[i] - 1;
      }
    });
    const keys = [...this.deviceOffsets.keys()].sort((a, b) => {
      const [ia, na] = a.split("\u0000");
      const [ib, nb] = b.split("\u0000");
      return ia < ib ? -1 : ia > ib ? 1 : Number(na) - Number(nb);
    });
    const deviceOffsets = Float64Array.from(keys, (k) => this.deviceOffsets.get(k)!);
    return await this.emitRecord(RecordType.INDEX, 0, encodeIndex({ regions, pages, pageOffsets, deviceOffsets }));
  }
}
