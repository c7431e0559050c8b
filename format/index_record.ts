/**
 * The INDEX record (optional): where the last occurrence of each page and each device section
 * lies, so a reader of a seekable file finds them without scanning (FORMAT.md §8).
 *
 * @module
 */
import { ByteBuilder, ByteCursor } from "./_bytes.ts";

/** Bytes per page entry: region u16, reserved u16, page u32, record offset u64. */
export const PAGE_ENTRY_SIZE = 16;
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

/** Encodes an INDEX payload; entries must already be sorted by (region, page). */
export function encodeIndex(index: SnapshotIndex): Uint8Array {
  const n = index.pages.length;
  const b = new ByteBuilder(8 + n * PAGE_ENTRY_SIZE + index.deviceOffsets.length * DEVICE_ENTRY_SIZE);
  b.u32(n).u32(index.deviceOffsets.length);
  for (let i = 0; i < n; i++) b.u16(index.regions[i]).u16(0).u32(index.pages[i]).u64(index.pageOffsets[i]);
  for (const o of index.deviceOffsets) b.u64(o);
  return b.finish();
}

/**
 * Decodes an INDEX payload. Checks the counts against the payload length before allocating, that
 * entries are strictly sorted, and that offsets lie before `limit` (the index's own offset).
 */
export function decodeIndex(
  payload: Uint8Array,
  regionPageCounts: number[],
  limit: number,
  offset: number,
  recordIndex: number,
): SnapshotIndex {
  const c = new ByteCursor(payload, offset, recordIndex);
  const n = c.u32("page entry count");
  const d = c.u32("device entry count");
  if (n * PAGE_ENTRY_SIZE + d * DEVICE_ENTRY_SIZE !== c.remaining) {
    c.fail(`${n} page and ${d} device entries do not fill the ${c.remaining} bytes that remain`);
  }
  const regions = new Uint16Array(n);
  const pages = new Uint32Array(n);
  const pageOffsets = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const r = c.u16("entry region");
    c.u16("reserved");
    const p = c.u32("entry page");
    const o = c.u64("entry offset");
    if (r >= regionPageCounts.length || p >= regionPageCounts[r]) c.fail(`index entry ${i} names page ${p} of region ${r}, which does not exist`);
    if (i > 0 && (r < regions[i - 1] || (r === regions[i - 1] && p <= pages[i - 1]))) c.fail(`index entry ${i} is out of order`);
    if (o >= limit) c.fail(`index entry ${i} points at byte ${o}, not before the index at ${limit}`);
    regions[i] = r;
    pages[i] = p;
    pageOffsets[i] = o;
  }
  const deviceOffsets = new Float64Array(d);
  for (let i = 0; i < d; i++) {
    const o = c.u64("device entry offset");
    if (o >= limit) c.fail(`device entry ${i} points at byte ${o}, not before the index at ${limit}`);
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
