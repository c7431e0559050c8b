/**
 * Turns a batch of non-zero pages into one framed PAGES record plus the pages' content hashes.
 * Runs on the writer's thread or in a compression worker (FORMAT.md §6, §10).
 *
 * @module
 */
import { zstdCompress } from "./_zstd.ts";
import { hashPageInto } from "./checksum.ts";
import { FLAG_CRITICAL, RecordType } from "./constants.ts";
import { encodePageRecord, type PageEncodingName } from "./page_record.ts";
import { encodeRecord } from "./record.ts";

/** A batch to encode. */
export interface PageBatch {
  region: number;
  pages: Uint32Array;
  /** `pages.length × pageSize` bytes. */
  raw: Uint8Array;
  pageSize: number;
  codec: "zstd" | "raw";
  level: number;
}

/** An encoded batch. */
export interface EncodedBatch {
  /** The whole framed record. */
  record: Uint8Array;
  /** 16 bytes per page: XXH3-128 of each page, in batch order. */
  hashes: Uint8Array;
}

/** Encodes a batch: hashes every page, compresses (falling back to raw), frames the record. */
export function encodePageBatch(b: PageBatch): EncodedBatch {
  const n = b.pages.length;
  const hashes = new Uint8Array(n * 16);
  for (let i = 0; i < n; i++) {
    hashPageInto(b.raw.subarray(i * b.pageSize, (i + 1) * b.pageSize), hashes, i * 16);
  }
  let encoding: PageEncodingName = "raw";
  let data: Uint8Array = b.raw;
  if (b.codec === "zstd") {
    const z = zstdCompress(b.raw, b.level);
    if (z.length < b.raw.length) {
      encoding = "zstd";
      data = z;
    }
  }
  return {
    record: encodeRecord(
      RecordType.PAGES,
      FLAG_CRITICAL,
      encodePageRecord(b.region, encoding, b.pages, data),
    ),
    hashes,
  };
}
