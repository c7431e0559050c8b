/**
 * The latest contents of every page seen, kept in memory by region in 1024-page chunks allocated
 * on first use. Used where pages must leave in address order but arrive in any order (a pipe):
 * `convert --address-order`, `--drop-duplicates`, and raw or ELF output to standard output.
 *
 * @module
 */
import type { MachineDescription } from "../format/header.ts";

const CHUNK_PAGES = 1024;
const ABSENT = 0;
const ZERO = 1;
const DATA = 2;

interface Chunk {
  state: Uint8Array;
  data: Uint8Array | undefined;
}

/** A run of consecutive present pages of one region, all zero or all data. */
export interface PageRun {
  region: number;
  firstPage: number;
  count: number;
  /** `count × pageSize` bytes, or null when every page of the run is zero. */
  data: Uint8Array | null;
}

/** Holds the last occurrence of each page. */
export class PageStore {
  private readonly chunks: (Chunk | undefined)[][];
  /** Bytes of page data held. */
  heldBytes = 0;

  constructor(readonly description: MachineDescription, readonly regions?: ReadonlySet<number>) {
    this.chunks = description.regions.map(() => []);
  }

  /** Whether pages of `region` are kept. */
  keeps(region: number): boolean {
    return this.regions === undefined || this.regions.has(region);
  }

  private chunk(region: number, page: number, withData: boolean): Chunk {
    const list = this.chunks[region];
    const i = Math.floor(page / CHUNK_PAGES);
    let c = list[i];
    if (c === undefined) {
      c = { state: new Uint8Array(CHUNK_PAGES), data: undefined };
      list[i] = c;
    }
    if (withData && c.data === undefined) {
      const ps = this.description.regions[region].pageSize;
      c.data = new Uint8Array(CHUNK_PAGES * ps);
      this.heldBytes += c.data.length;
    }
    return c;
  }

  /** Records pages of a record: `data` holds them in order, or is null for zero pages. */
  put(region: number, pages: ArrayLike<number>, data: Uint8Array | null): void {
    if (!this.keeps(region)) return;
    const ps = this.description.regions[region].pageSize;
    for (let i = 0; i < pages.length; i++) {
      const p = pages[i];
      const slot = p % CHUNK_PAGES;
      if (data === null) {
        this.chunk(region, p, false).state[slot] = ZERO;
      } else {
        const c = this.chunk(region, p, true);
        c.state[slot] = DATA;
        c.data!.set(data.subarray(i * ps, (i + 1) * ps), slot * ps);
      }
    }
  }

  /**
   * Yields runs of present pages in address order (region by region, in header order), each at
   * most `maxBytes` long. A run's `data` is a view into the store: copy it before the next put.
   */
  *runs(maxBytes = 1 << 20): Generator<PageRun> {
    for (let r = 0; r < this.chunks.length; r++) {
      if (!this.keeps(r)) continue;
      const ps = this.description.regions[r].pageSize;
      const maxPages = Math.max(1, Math.floor(maxBytes / ps));
      const list = this.chunks[r];
      for (let ci = 0; ci < list.length; ci++) {
        const c = list[ci];
        if (c === undefined) continue;
        let i = 0;
        while (i < CHUNK_PAGES) {
          const s = c.state[i];
          if (s === ABSENT) {
            i++;
            continue;
          }
          let j = i + 1;
          while (j < CHUNK_PAGES && j - i < maxPages && c.state[j] === s) j++;
          yield {
            region: r,
            firstPage: ci * CHUNK_PAGES + i,
            count: j - i,
            data: s === ZERO ? null : c.data!.subarray(i * ps, j * ps),
          };
          i = j;
        }
      }
    }
  }
}
