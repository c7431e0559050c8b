/**
 * PAGES records on their way into a content digest (FORMAT.md §10): each record's pages are
 * expanded and hashed (in the workers of a {@linkcode PageDigestPool} when given, else on the
 * calling thread), and the results are applied to the digest in the order the records were added,
 * so that a later occurrence of a page wins (§4) whatever order the workers finish in.
 *
 * @module
 */
import type { ContentDigestBuilder } from "./content_digest.ts";
import type { PageDigestPool } from "./page_digest_pool.ts";
import { digestPageData, type PageDigests } from "./_page_digest.ts";
import type { PageRecordHead } from "./page_record.ts";

interface Pending<T> {
  region: number;
  pages: Uint32Array;
  where: T;
  settled: PageDigests | null;
  result?: Promise<PageDigests>;
}

/** Records allowed in flight before {@linkcode PageDigestQueue.add} waits for the oldest. */
const MAX_PENDING = 16;

/** Page records in file order, expanded and hashed into a {@linkcode ContentDigestBuilder}. */
export class PageDigestQueue<T> {
  private readonly pending: Pending<T>[] = [];

  /**
   * `fail` is told of a record whose data does not expand (bad zstd data, a wrong length), with
   * the `where` it was added with; it throws to stop, or returns to go on without that record.
   */
  constructor(
    private readonly builder: ContentDigestBuilder,
    private readonly pool: PageDigestPool | undefined,
    private readonly fail: (reason: string, where: T) => void,
  ) {}

  /**
   * Adds a decoded PAGES record. Its `data` may be reused once this returns (a pool copies it).
   */
  async add(p: PageRecordHead, where: T): Promise<void> {
    const entry: Pending<T> = { region: p.region, pages: p.pages, where, settled: null };
    if (p.encoding === "zero") {
      entry.settled = { zero: new Uint8Array(p.pages.length).fill(1), hashes: ZERO };
    } else {
      const pageSize = this.builder.description.regions[p.region].pageSize;
      const job = { encoding: p.encoding, data: p.data, count: p.pages.length, pageSize };
      const accepted = this.pool === undefined ? null : await this.pool.submit(job);
      if (accepted === null) entry.settled = digestPageData(job);
      else {
        entry.result = accepted.result;
        accepted.result.then((x) => entry.settled = x, () => {});
      }
    }
    this.pending.push(entry);
    while (this.pending.length > 0 && this.pending[0].settled !== null) {
      const e = this.pending.shift()!;
      this.apply(e, e.settled!);
    }
    if (this.pending.length > MAX_PENDING) await this.settleOne();
  }

  private async settleOne(): Promise<void> {
    const e = this.pending.shift()!;
    this.apply(e, e.settled ?? await e.result!);
  }

  /** Waits for every record added and applies it. */
  async settle(): Promise<void> {
    while (this.pending.length > 0) await this.settleOne();
  }

  private apply(e: Pending<T>, r: PageDigests): void {
    if ("error" in r) {
      this.fail(r.error, e.where);
      return;
    }
    this.builder.setPageDigests(e.region, e.pages, r);
  }
}

const ZERO = new Uint8Array(0);
