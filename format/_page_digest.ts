/**
 * The per-page work of the content digest (FORMAT.md §10) for a reader that needs the digest but
 * not the pages (verify): expand a PAGES record's data, tell zero pages apart and hash the others
 * with XXH3-128. {@linkcode digestPageData} does it on the calling thread; `PageDigestPool`
 * (page_digest_pool.ts) does it in worker threads, so that a second core decompresses and hashes
 * while the reading thread checks CRCs and the file digest. The messages between the two sides are
 * the types of this module.
 *
 * @module
 */
import { isZero } from "./_bytes.ts";
import { zstdDecompressView } from "./_zstd.ts";
import { hashPageInto } from "./checksum.ts";

/** The data of one PAGES record (FORMAT.md §6.2), to be expanded and hashed. */
export interface PageJob {
  encoding: "raw" | "zstd";
  /** The record's data (raw pages, or one zstd frame). */
  data: Uint8Array;
  /** Number of entries. */
  count: number;
  pageSize: number;
}

/** Per entry: 1 when the page is all zero bytes, else 0; and the XXH3-128 of each non-zero page. */
export type PageDigests = { zero: Uint8Array; hashes: Uint8Array } | { error: string };

/** A job as posted to a worker: the data in a buffer of the pool, transferred both ways. */
export interface PageJobMessage {
  id: number;
  encoding: "raw" | "zstd";
  buffer: ArrayBuffer;
  length: number;
  count: number;
  pageSize: number;
}

/** A worker's answer; `buffer` comes back to the pool. */
export type PageDigestMessage =
  | { ready: true }
  | { id: number; buffer: ArrayBuffer; result: PageDigests };

/** Expands and hashes one record's pages on the calling thread (no copy of zstd output). */
export function digestPageData(job: PageJob): PageDigests {
  const size = job.count * job.pageSize;
  const data = job.encoding === "zstd" ? zstdDecompressView(job.data, size) : job.data;
  if (typeof data === "string") return { error: data };
  const zero = new Uint8Array(job.count);
  const hashes = new Uint8Array(job.count * 16);
  for (let i = 0, at = 0; i < job.count; i++, at += job.pageSize) {
    const page = data.subarray(at, at + job.pageSize);
    if (isZero(page)) zero[i] = 1;
    else hashPageInto(page, hashes, i * 16);
  }
  return { zero, hashes };
}
