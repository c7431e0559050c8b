/**
 * The INDEX record (optional): where the last occurrence of each page and each device section
 * lies, so a reader of a seekable file finds them without scanning (FORMAT.md §8).
 *
 * @module
 */
import { ByteBuilder, ByteCursor } from "./_bytes.ts";
import { zstdCompress, zstdDecompressView } from "./_zstd.ts";
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
  const outer = new ByteCursor(payload, offset, recordIndex);
  const compression = outer.u8("index compression");
  const bodyLength = outer.u32("index body length");
  if (compression > 1) outer.fail(`unknown index compression ${compression}`);
  if (bodyLength > MAX_RECORD_PAYLOAD) {
    outer.fail(`index body of ${bodyLength} bytes exceeds the cap of ${MAX_RECORD_PAYLOAD}`);
  }
  let body = outer.rest();
  if (compression === 1) {
    // Into this thread's reused area (read once below, never kept): the columns are decoded
    // straight from it, so the only fresh memory is the decoded columns themselves.
    const out = zstdDecompressView(body, bodyLength);
    if (typeof out === "string") return outer.fail(out);
    body = out;
  } else if (body.length !== bodyLength) {
    outer.fail(`index body is ${body.length} bytes, declared ${bodyLength}`);
  }
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
