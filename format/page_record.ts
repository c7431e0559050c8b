/**
 * The PAGES record: a batch of pages of one region, addressed as a run or a list, encoded as
 * zero, raw or zstd (FORMAT.md §6).
 *
 * @module
 */
import { ByteBuilder, ByteCursor } from "./_bytes.ts";
import { zstdDecompressExact } from "./_zstd.ts";
import {
  MAX_BATCH_BYTES,
  MAX_ZERO_PAGES_PER_RECORD,
  PageAddressing,
  PageEncoding,
} from "./constants.ts";
import type { Region } from "./header.ts";

/** Page encodings by name. */
export type PageEncodingName = "zero" | "raw" | "zstd";

/** A decoded PAGES record before its data is expanded. */
export interface PageRecordHead {
  /** Index of the region in the header. */
  region: number;
  encoding: PageEncodingName;
  /** Page numbers within the region, in record order. */
  pages: Uint32Array;
  /** The encoded data (empty for zero). */
  data: Uint8Array;
}

const ENCODING_NAMES: PageEncodingName[] = ["zero", "raw", "zstd"];

/** Encodes a PAGES payload. `pages` are page numbers; `data` is already encoded. */
export function encodePageRecord(
  region: number,
  encoding: PageEncodingName,
  pages: Uint32Array,
  data: Uint8Array,
): Uint8Array {
  const head = encodePageRecordHead(region, encoding, pages);
  const out = new Uint8Array(head.length + data.length);
  out.set(head);
  out.set(data, head.length);
  return out;
}

/**
 * The fields of a PAGES payload that come before its data (region, encoding, addressing, count,
 * addresses), for writers that frame the data without copying it twice.
 */
export function encodePageRecordHead(
  region: number,
  encoding: PageEncodingName,
  pages: Uint32Array,
): Uint8Array {
  const n = pages.length;
  let run = true;
  for (let i = 1; i < n && run; i++) if (pages[i] !== pages[0] + i) run = false;
  const b = new ByteBuilder(12 + (run ? 4 : 5 * n));
  b.u16(region).u8(PageEncoding[encoding.toUpperCase() as "ZERO" | "RAW" | "ZSTD"]);
  b.u8(run ? PageAddressing.RUN : PageAddressing.LIST).u32(n);
  if (run) b.u32(pages[0]);
  else {
    // FORMAT.md §6.1: each entry is the zigzag-encoded difference from the previous page number.
    let prev = 0;
    for (let i = 0; i < n; i++) {
      const delta = pages[i] - prev;
      b.varint(delta >= 0 ? delta * 2 : -delta * 2 - 1);
      prev = pages[i];
    }
  }
  return b.finish();
}

/** Decodes a PAGES payload's fields and checks them against the regions (FORMAT.md §6). */
export function decodePageRecord(
  payload: Uint8Array,
  regions: Region[],
  offset: number,
  recordIndex: number,
): PageRecordHead {
  const c = new ByteCursor(payload, offset, recordIndex);
  const region = c.u16("region index");
  if (region >= regions.length) {
    c.fail(`region index ${region} is not below the region count ${regions.length}`);
  }
  const enc = c.u8("encoding");
  if (enc > 2) c.fail(`unknown page encoding ${enc}`);
  const addressing = c.u8("addressing");
  if (addressing > 1) c.fail(`unknown page addressing ${addressing}`);
  const count = c.u32("page count");
  const r = regions[region];
  const regionPages = r.size / r.pageSize;
  if (count === 0) c.fail("page count is 0");
  const encoding = ENCODING_NAMES[enc];
  if (
    encoding === "zero" ? count > MAX_ZERO_PAGES_PER_RECORD : count * r.pageSize > MAX_BATCH_BYTES
  ) {
    c.fail(`page count ${count} exceeds the cap for ${encoding} records`);
  }
  let pages: Uint32Array;
  if (addressing === PageAddressing.RUN) {
    const first = c.u32("first page");
    if (first + count > regionPages) {
      c.fail(
        `pages ${first}..${
          first + count - 1
        } run past the end of region '${r.name}' (${regionPages} pages)`,
      );
    }
    pages = new Uint32Array(count);
    for (let i = 0; i < count; i++) pages[i] = first + i;
  } else {
    // Every entry takes at least one byte: check before allocating.
    c.need(count, "page list");
    pages = new Uint32Array(count);
    let prev = 0;
    for (let i = 0; i < count; i++) {
      const z = c.varint("page delta");
      const p = prev + (z % 2 === 0 ? z / 2 : -(z + 1) / 2);
      prev = p;
      if (p < 0) c.fail(`page delta makes page number ${p} negative`);
      if (p >= regionPages) {
        c.fail(`page ${p} is past the end of region '${r.name}' (${regionPages} pages)`);
      }
      pages[i] = p;
    }
  }
  const data = c.rest();
  if (encoding === "zero" && data.length !== 0) {
    c.fail(`zero record carries ${data.length} data bytes`);
  }
  if (encoding === "raw" && data.length !== count * r.pageSize) {
    c.fail(`raw data is ${data.length} bytes, expected ${count} × ${r.pageSize}`);
  }
  return { region, encoding, pages, data };
}

/**
 * Expands a record's data to `pages.length × pageSize` bytes, or returns null for a zero record.
 * zstd output is bounded by that size (FORMAT.md §6.2).
 */
export function expandPageData(
  head: PageRecordHead,
  pageSize: number,
  offset: number,
  recordIndex: number,
  fail: (reason: string, offset: number, recordIndex: number) => never,
): Uint8Array | null {
  if (head.encoding === "zero") return null;
  if (head.encoding === "raw") return head.data;
  const out = zstdDecompressExact(head.data, head.pages.length * pageSize);
  if (typeof out === "string") return fail(out, offset, recordIndex);
  return out;
}
