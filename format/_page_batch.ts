/**
 * Turns a batch of non-zero pages into one framed PAGES record plus the pages' content hashes.
 * Runs on the writer's thread or in a compression worker (FORMAT.md §6, §10).
 *
 * @module
 */
import { zstdCompressBound, zstdCompressInto } from "./_zstd.ts";
import { hashPagesInto } from "./checksum.ts";
import { FLAG_CRITICAL, RecordType } from "./constants.ts";
import { encodePageRecordHead, type PageEncodingName } from "./page_record.ts";
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

/** This thread's compression output, reused from batch to batch (fresh memory is dear). */
let scratch = new Uint8Array(0);

/** Encodes a batch: hashes every page, compresses (falling back to raw), frames the record. */
export function encodePageBatch(b: PageBatch): EncodedBatch {
  const n = b.pages.length;
  const hashes = new Uint8Array(n * 16);
  hashPagesInto(b.raw, b.pageSize, hashes, 0);
  let encoding: PageEncodingName = "raw";
  let data: Uint8Array = b.raw;
  if (b.codec === "zstd") {
    const bound = zstdCompressBound(b.raw.length);
    if (scratch.length < bound) scratch = new Uint8Array(bound);
    const n = zstdCompressInto(b.raw, b.level, scratch, 0);
    if (n < b.raw.length) {
      encoding = "zstd";
      data = scratch.subarray(0, n);
    }
  }
  return {
    // The data is copied once, from the compressor's output (or the batch) into the record.
    record: encodeRecord(
      RecordType.PAGES,
      FLAG_CRITICAL,
      encodePageRecordHead(b.region, encoding, b.pages),
      data,
    ),
    hashes,
  };
}
