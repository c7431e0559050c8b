/**
 * The INDEX record (optional): where the last occurrence of each page and each device section
 * lies, so a reader of a seekable file finds them without scanning (FORMAT.md §8).
 *
 * @module
 */
import { ByteBuilder, ByteCursor } from "./_bytes.ts";
import { zstdCompress, zstdDecompressInto, zstdDecompressView } from "./_zstd.ts";
import { CorruptError } from "./errors.ts";
import { MAX_RECORD_PAYLOAD } from "./constants.ts";

/** Bytes per page entry in the index body: region u16, page delta u32, record offset u64. */
export const PAGE_ENTRY_SIZE = 14;
/** Bytes per device entry: record offset u64. */
export const DEVICE_ENTRY_SIZE = 8;

/** A decoded index, entries kept in flat typed arrays (sorted by region, then page). */
export interface SnapshotIndex {
  /** Region index of each page entry. */
  regions: Uint16Array;
  /** Page number of each page entry. */
  pages: Uint32Array;
  /** Record offset of each page entry. */
  pageOffsets: Float64Array;
  /** Record offsets of the last DEVICE record of each (id, instance). */
  deviceOffsets: Float64Array;
}

/** Size of the index body for `n` page entries and `d` device entries. */
export function indexBodySize(n: number, d: number): number {
  return 8 + n * PAGE_ENTRY_SIZE + d * DEVICE_ENTRY_SIZE;
}

/**
 * Encodes an INDEX payload (FORMAT.md §8): a column-wise body, zstd-compressed when that is
 * smaller. Entries must already be sorted by (region, page).
 */
export function encodeIndex(index: SnapshotIndex): Uint8Array {
  const n = index.pages.length;
  const d = index.deviceOffsets.length;
  const b = new ByteBuilder(indexBodySize(n, d));
  b.u32(n).u32(d);
  for (let i = 0; i < n; i++) b.u16(index.regions[i]);
  for (let i = 0; i < n; i++) {
    const sameRegion = i > 0 && index.regions[i] === index.regions[i - 1];
    b.u32(sameRegion ? index.pages[i] - index.pages[i - 1] : index.pages[i]);
  }
  for (let i = 0; i < n; i++) b.u64(index.pageOffsets[i]);
  for (const o of index.deviceOffsets) b.u64(o);
  const body = b.finish();
  const z = zstdCompress(body, 3);
  const compressed = z.length < body.length;
  return new ByteBuilder(5 + body.length).u8(compressed ? 1 : 0).u32(body.length).bytes(
    compressed ? z : body,
  )
    .finish();
}

/**
 * The body of an INDEX payload (FORMAT.md §8): its outer header checked (compression, declared
 * length against the cap and the payload), and the body decompressed by `decompress` (the bytes,
 * or a reason string) when compressed. Throws a CorruptError naming the INDEX record.
 */
function indexPayloadBody(
  payload: Uint8Array,
  offset: number,
  recordIndex: number,
  decompress: (data: Uint8Array, length: number) => Uint8Array | string,
): Uint8Array {
  const outer = new ByteCursor(payload, offset, recordIndex);
  const compression = outer.u8("index compression");
  const bodyLength = outer.u32("index body length");
  if (compression > 1) outer.fail(`unknown index compression ${compression}`);
  if (bodyLength > MAX_RECORD_PAYLOAD) {
    outer.fail(`index body of ${bodyLength} bytes exceeds the cap of ${MAX_RECORD_PAYLOAD}`);
  }
  const body = outer.rest();
  if (compression === 0) {
    if (body.length !== bodyLength) {
      outer.fail(`index body is ${body.length} bytes, declared ${bodyLength}`);
    }
    return body;
  }
  const out = decompress(body, bodyLength);
  return typeof out === "string" ? outer.fail(out) : out;
}

/**
 * Decodes an INDEX payload. Checks the declared sizes against the cap and the payload before
 * allocating, that entries are strictly sorted, and that offsets lie before `limit` (the index's
 * own offset).
 */
export function decodeIndex(
  payload: Uint8Array,
  regionPageCounts: number[],
  limit: number,
  offset: number,
  recordIndex: number,
): SnapshotIndex {
  // Into this thread's reused area (read once below, never kept): the columns are decoded
  // straight from it, so the only fresh memory is the decoded columns themselves.
  const body = indexPayloadBody(payload, offset, recordIndex, zstdDecompressView);
  const c = new ByteCursor(body, offset, recordIndex);
  const n = c.u32("page entry count");
  const d = c.u32("device entry count");
  if (indexBodySize(n, d) !== body.length) {
    c.fail(`${n} page and ${d} device entries do not fill the ${body.length}-byte index body`);
  }
  // One pass over the three columns, checking as it goes: a lazy restore decodes the index
  // before the guest's first instruction, and a 2 GiB machine's index has half a million
  // entries (BENCHMARKS.md, "Restore: lazy and eager").
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const regions = new Uint16Array(n);
  const pages = new Uint32Array(n);
  const pageOffsets = new Float64Array(n);
  const regionCount = regionPageCounts.length;
  const pagesAt = 8 + 2 * n;
  const offsetsAt = 8 + 6 * n;
  let prevRegion = -1;
  let prevPage = 0;
  for (let i = 0; i < n; i++) {
    const r = view.getUint16(8 + 2 * i, true);
    const v = view.getUint32(pagesAt + 4 * i, true);
    const lo = view.getUint32(offsetsAt + 8 * i, true);
    const hi = view.getUint32(offsetsAt + 8 * i + 4, true);
    if (r >= regionCount) c.fail(`index entry ${i} names region ${r}, which does not exist`);
    if (r < prevRegion) c.fail(`index entry ${i} is out of order`);
    const sameRegion = r === prevRegion;
    if (sameRegion && v === 0) c.fail(`index entry ${i} repeats a page`);
    const p = sameRegion ? prevPage + v : v;
    if (p >= regionPageCounts[r]) {
      c.fail(`index entry ${i} names page ${p} of region ${r}, which does not exist`);
    }
    if (hi >= 0x20_0000) c.fail(`entry offset ${hi * 2 ** 32 + lo} is 2^53 or more`);
    const o = hi * 2 ** 32 + lo;
    if (o >= limit) {
      c.fail(`index entry ${i} points at byte ${o}, not before the index at ${limit}`);
    }
    regions[i] = r;
    pages[i] = p;
    pageOffsets[i] = o;
    prevRegion = r;
    prevPage = p;
  }
  const deviceOffsets = new Float64Array(d);
  for (let i = 0; i < d; i++) {
    const lo = view.getUint32(offsetsAt + 8 * (n + i), true);
    const hi = view.getUint32(offsetsAt + 8 * (n + i) + 4, true);
    if (hi >= 0x20_0000) c.fail(`device entry offset ${hi * 2 ** 32 + lo} is 2^53 or more`);
    const o = hi * 2 ** 32 + lo;
    if (o >= limit) {
      c.fail(`device entry ${i} points at byte ${o}, not before the index at ${limit}`);
    }
    deviceOffsets[i] = o;
  }
  return { regions, pages, pageOffsets, deviceOffsets };
}

/** Position of (region, page) in a sorted index, or -1. */
export function findIndexEntry(index: SnapshotIndex, region: number, page: number): number {
  let lo = 0;
  let hi = index.pages.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const r = index.regions[mid];
    const p = index.pages[mid];
    if (r === region && p === page) return mid;
    if (r < region || (r === region && p < page)) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** Entries between two of {@linkcode IndexBody}'s checkpoints (absolute page numbers). */
const CHECKPOINT_EVERY = 64;

/**
 * Memory for one {@linkcode IndexBody}, written once beforehand ({@linkcode reserveIndexArea}),
 * handed to the next body that fits and back when it is released; null while a body holds it.
 */
let spareArea: Uint8Array | null = null;

/**
 * Grows the memory kept for the next {@linkcode IndexBody} to at least `bytes` and writes it
 * once, so that a lazy restore's index is decompressed into memory already in place rather than
 * taking a fault per 4 KiB (a process about to restore lazily does this before its clock starts).
 */
export function reserveIndexArea(bytes: number): void {
  if (spareArea !== null && spareArea.length >= bytes) return;
  spareArea = new Uint8Array(bytes);
  spareArea.fill(0);
}

/**
 * A decompressed INDEX body (FORMAT.md §8) read in place: nothing proportional to the entries is
 * built, so a lazy restore looks up the few pages its first instruction needs without decoding
 * the whole index ({@linkcode decodeIndex} builds three columns of fresh memory, about 10 ms per
 * 200 000 entries; BENCHMARKS.md, "Restore: lazy and eager").
 *
 * {@linkcode IndexBody.open} checks what {@linkcode decodeIndex} checks except the record
 * offsets of page entries: every region number, the order, each page's range, in one pass that
 * writes nothing but a checkpoint every {@linkcode CHECKPOINT_EVERY} entries. A page entry's
 * offset is checked when it is looked up ({@linkcode IndexBody.recordOf}, {@linkcode
 * IndexBody.decode}), with the same error naming the INDEX record.
 */
export class IndexBody {
  readonly #view: DataView;
  readonly #area: Uint8Array | null;
  readonly #regionPageCounts: number[];
  readonly #limit: number;
  readonly #offset: number;
  readonly #recordIndex: number;
  /** Absolute page number of entry `k * CHECKPOINT_EVERY`. */
  readonly #checkpoints: Uint32Array;
  /** First entry of each region, and the end (length regions + 1). */
  readonly #regionStart: Uint32Array;
  #released = false;
  /** Page entries. */
  readonly count: number;
  /** Record offsets of the last DEVICE record of each (id, instance). */
  readonly deviceOffsets: Float64Array;

  private constructor(
    view: DataView,
    area: Uint8Array | null,
    regionPageCounts: number[],
    limit: number,
    offset: number,
    recordIndex: number,
  ) {
    this.#view = view;
    this.#area = area;
    this.#regionPageCounts = regionPageCounts;
    this.#limit = limit;
    this.#offset = offset;
    this.#recordIndex = recordIndex;
    const c = new ByteCursor(new Uint8Array(view.buffer, view.byteOffset, 8), offset, recordIndex);
    const n = c.u32("page entry count");
    const d = c.u32("device entry count");
    this.count = n;
    const checkpoints = new Uint32Array(Math.ceil(n / CHECKPOINT_EVERY));
    const regionStart = new Uint32Array(regionPageCounts.length + 1);
    const regionCount = regionPageCounts.length;
    const pagesAt = 8 + 2 * n;
    let prevRegion = -1;
    let prevPage = 0;
    for (let i = 0; i < n; i++) {
      const r = view.getUint16(8 + 2 * i, true);
      const v = view.getUint32(pagesAt + 4 * i, true);
      if (r !== prevRegion) {
        if (r >= regionCount) {
          this.#fail(`index entry ${i} names region ${r}, which does not exist`);
        }
        if (r < prevRegion) this.#fail(`index entry ${i} is out of order`);
        for (let k = prevRegion + 1; k <= r; k++) regionStart[k] = i;
        prevRegion = r;
        prevPage = v;
      } else {
        if (v === 0) this.#fail(`index entry ${i} repeats a page`);
        prevPage += v;
      }
      if (prevPage >= regionPageCounts[r]) {
        this.#fail(`index entry ${i} names page ${prevPage} of region ${r}, which does not exist`);
      }
      if (i % CHECKPOINT_EVERY === 0) checkpoints[i / CHECKPOINT_EVERY] = prevPage;
    }
    for (let k = prevRegion + 1; k <= regionCount; k++) regionStart[k] = n;
    this.#checkpoints = checkpoints;
    this.#regionStart = regionStart;
    const deviceOffsets = new Float64Array(d);
    for (let i = 0; i < d; i++) deviceOffsets[i] = this.#offsetAt(n + i, "device entry", i);
    this.deviceOffsets = deviceOffsets;
  }

  /**
   * Decompresses an INDEX payload (into the memory {@linkcode reserveIndexArea} kept, when it is
   * free and large enough) and checks it as the class describes. Throws a CorruptError naming
   * the INDEX record.
   */
  static open(
    payload: Uint8Array,
    regionPageCounts: number[],
    limit: number,
    offset: number,
    recordIndex: number,
  ): IndexBody {
    // The kept memory, when it was free and large enough: given back if the body is refused.
    let area = null as Uint8Array | null;
    try {
      const body = indexPayloadBody(payload, offset, recordIndex, (data, length) => {
        if (spareArea !== null && spareArea.length >= length) {
          area = spareArea;
          spareArea = null;
        }
        const out = (area ?? new Uint8Array(length)).subarray(0, length);
        return zstdDecompressInto(data, out) ?? out;
      });
      const fail = (reason: string): never => {
        throw new CorruptError(reason, { offset, recordIndex });
      };
      if (body.length < 8) fail(`index body is ${body.length} bytes, shorter than its counts`);
      const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
      const n = view.getUint32(0, true);
      const d = view.getUint32(4, true);
      if (indexBodySize(n, d) !== body.length) {
        fail(`${n} page and ${d} device entries do not fill the ${body.length}-byte index body`);
      }
      return new IndexBody(view, area, regionPageCounts, limit, offset, recordIndex);
    } catch (e) {
      if (area !== null) spareArea = area;
      throw e;
    }
  }

  #fail(reason: string): never {
    throw new CorruptError(reason, { offset: this.#offset, recordIndex: this.#recordIndex });
  }

  /** The record offset of 64-bit entry `j` of the offsets column, checked. */
  #offsetAt(j: number, what: string, i: number): number {
    this.#live();
    const at = 8 + 6 * this.count + 8 * j;
    const lo = this.#view.getUint32(at, true);
    const hi = this.#view.getUint32(at + 4, true);
    if (hi >= 0x20_0000) this.#fail(`${what} offset ${hi * 2 ** 32 + lo} is 2^53 or more`);
    const o = hi * 2 ** 32 + lo;
    if (o >= this.#limit) {
      this.#fail(`${what} ${i} points at byte ${o}, not before the index at ${this.#limit}`);
    }
    return o;
  }

  #live(): void {
    if (this.#released) throw new Error("Cannot read an index body after its release");
  }

  /** Page entries `[start, end)` of `region`. */
  regionRange(region: number): { start: number; end: number } {
    return { start: this.#regionStart[region], end: this.#regionStart[region + 1] };
  }

  /** Calls `fn` with each page of `region` the index names, in increasing order: one pass. */
  forEachPage(region: number, fn: (page: number) => void): void {
    this.#live();
    const { start, end } = this.regionRange(region);
    const view = this.#view;
    const pagesAt = 8 + 2 * this.count;
    let p = 0;
    for (let i = start; i < end; i++) {
      const v = view.getUint32(pagesAt + 4 * i, true);
      p = i === start ? v : p + v;
      fn(p);
    }
  }

  /** The page of entry `i` (walking from the checkpoint before it). */
  #pageAt(i: number, start: number): number {
    const view = this.#view;
    const pagesAt = 8 + 2 * this.count;
    let k = Math.floor(i / CHECKPOINT_EVERY) * CHECKPOINT_EVERY;
    // A checkpoint before the region's first entry holds another region's page.
    if (k < start) k = start;
    let p = k === start
      ? view.getUint32(pagesAt + 4 * k, true)
      : this.#checkpoints[k / CHECKPOINT_EVERY];
    for (let j = k + 1; j <= i; j++) p += view.getUint32(pagesAt + 4 * j, true);
    return p;
  }

  /** The record offset of `page` of `region`'s last occurrence, or -1 (checked as it is read). */
  recordOf(region: number, page: number): number {
    this.#live();
    const { start, end } = this.regionRange(region);
    if (start === end) return -1;
    // Binary search over the checkpoints in the region, then a walk of at most
    // CHECKPOINT_EVERY entries.
    const cps = this.#checkpoints;
    let lo = Math.ceil(start / CHECKPOINT_EVERY);
    let hi = Math.ceil(end / CHECKPOINT_EVERY) - 1;
    let from = start;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (cps[mid] <= page) {
        from = mid * CHECKPOINT_EVERY;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    const view = this.#view;
    const pagesAt = 8 + 2 * this.count;
    let p = this.#pageAt(from, start);
    const stop = Math.min(
      end,
      Math.floor(from / CHECKPOINT_EVERY) * CHECKPOINT_EVERY + CHECKPOINT_EVERY,
    );
    for (let i = from; i < stop; i++) {
      if (i > from) p += view.getUint32(pagesAt + 4 * i, true);
      if (p === page) return this.#offsetAt(i, "index entry", i);
      if (p > page) return -1;
    }
    return -1;
  }

  /** The whole index as {@linkcode decodeIndex} gives it (every offset checked). */
  decode(): SnapshotIndex {
    this.#live();
    const n = this.count;
    const regions = new Uint16Array(n);
    const pages = new Uint32Array(n);
    const pageOffsets = new Float64Array(n);
    for (let r = 0; r < this.#regionPageCounts.length; r++) {
      const { start } = this.regionRange(r);
      let i = start;
      this.forEachPage(r, (p) => {
        regions[i] = r;
        pages[i] = p;
        pageOffsets[i] = this.#offsetAt(i, "index entry", i);
        i++;
      });
    }
    return { regions, pages, pageOffsets, deviceOffsets: this.deviceOffsets };
  }

  /** Gives the memory back for the next body (this one can no longer be read). */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#area !== null && (spareArea === null || spareArea.length < this.#area.length)) {
      spareArea = this.#area;
    }
  }
}
