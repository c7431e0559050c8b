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
import { zstdDecompressInto } from "./_zstd.ts";
import { digestPages } from "./checksum.ts";

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

/**
 * Something that takes page jobs off the checker's thread: `PageDigestPool` (worker threads) or
 * the read-back's share in `_output_check.ts` (the writing thread, once it has written). `submit`
 * resolves to the promise of the job's result, or to null: the caller does the job itself. `at`
 * is the record the job is of.
 */
export interface PageJobRunner {
  submit(job: PageJob, at: { offset: number }): Promise<{ result: Promise<PageDigests> } | null>;
  /**
   * Optional: asked for each record as it is framed. True takes the whole record: the runner has
   * its CRC32C checked elsewhere (the scanner skips it) and the result of its page job, which
   * `submit` then returns, is an error if that CRC32C or anything else about it is wrong.
   */
  claim?(offset: number, type: number, payload: Uint8Array): boolean;
}

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

/**
 * Expands and hashes one record's pages on the calling thread. zstd data is decompressed straight
 * into the memory the pages are hashed in, raw data copied there once (`digestPages`).
 */
export function digestPageData(job: PageJob): PageDigests {
  const size = job.count * job.pageSize;
  const r = digestPages(job.count, job.pageSize, (area) => {
    if (job.encoding === "zstd") return zstdDecompressInto(job.data, area);
    if (job.data.length !== size) {
      return `raw page data is ${job.data.length} bytes, expected ${size}`;
    }
    area.set(job.data);
    return null;
  });
  return typeof r === "string" ? { error: r } : r;
}
