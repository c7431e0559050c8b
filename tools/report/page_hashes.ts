/**
 * The last copy of every page of a snapshot, remembered by a 16-byte hash (XXH3-128, as the
 * content digest uses), so that two snapshots can be compared page by page after each was read
 * once: 17 bytes per page, in chunks of 4096 pages allocated only where pages appear.
 *
 * @module
 */
import { hashPageInto } from "../../format/checksum.ts";
import { isZeroPage } from "../_zero.ts";

const CHUNK = 4096;
const HASH = 16;

/** Page states of a {@linkcode PageHashes} table. */
export const HashState = { ABSENT: 0, ZERO: 1, DATA: 2 } as const;

interface Chunk {
  hashes: Uint8Array;
  state: Uint8Array;
}

/**
 * The last copy of each page of each region.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { HashState, PageHashes } from "./page_hashes.ts";
 * const h = new PageHashes([4]);
 * h.set(0, 2, new Uint8Array(4096).fill(1), 0, 4096);
 * h.set(0, 3, new Uint8Array(4096), 0, 4096);
 * assertEquals([h.state(0, 1), h.state(0, 2), h.state(0, 3)], [HashState.ABSENT, HashState.DATA, HashState.ZERO]);
 * ```
 */
export class PageHashes {
  private readonly regions: (Chunk | undefined)[][];

  /** A table for regions of `pageCounts[i]` pages each. */
  constructor(readonly pageCounts: readonly number[]) {
    this.regions = pageCounts.map(() => []);
  }

  private chunk(region: number, page: number): Chunk {
    const list = this.regions[region];
    const i = Math.floor(page / CHUNK);
    let c = list[i];
    if (c === undefined) {
      c = { hashes: new Uint8Array(CHUNK * HASH), state: new Uint8Array(CHUNK) };
      list[i] = c;
    }
    return c;
  }

  /** Records the page `page` of `region` as `data[at, at + pageSize)` (its last copy so far). */
  set(region: number, page: number, data: Uint8Array, at: number, pageSize: number): void {
    if (isZeroPage(data, at, pageSize)) {
      this.setZero(region, page);
      return;
    }
    const c = this.chunk(region, page);
    const slot = page % CHUNK;
    hashPageInto(data.subarray(at, at + pageSize), c.hashes, slot * HASH);
    c.state[slot] = HashState.DATA;
  }

  /** Records the page as zero. */
  setZero(region: number, page: number): void {
    this.chunk(region, page).state[page % CHUNK] = HashState.ZERO;
  }

  /** The page's {@linkcode HashState}. */
  state(region: number, page: number): number {
    const c = this.regions[region][Math.floor(page / CHUNK)];
    return c === undefined ? HashState.ABSENT : c.state[page % CHUNK];
  }

  /** True when both pages are data with the same hash. */
  sameData(region: number, page: number, other: PageHashes, otherRegion: number): boolean {
    const a = this.regions[region][Math.floor(page / CHUNK)];
    const b = other.regions[otherRegion][Math.floor(page / CHUNK)];
    if (a === undefined || b === undefined) return false;
    const at = (page % CHUNK) * HASH;
    for (let i = 0; i < HASH; i++) if (a.hashes[at + i] !== b.hashes[at + i]) return false;
    return true;
  }

  /**
   * The state of a diff on this state (FORMAT.md §14.2): a new table where every page `diff`
   * holds (data or zero) replaces this table's, and every page it does not hold is this table's.
   */
  overlaid(diff: PageHashes): PageHashes {
    const out = new PageHashes(this.pageCounts);
    this.regions.forEach((list, ri) => {
      list.forEach((c, i) => {
        if (c !== undefined) {
          out.regions[ri][i] = { hashes: c.hashes.slice(), state: c.state.slice() };
        }
      });
    });
    diff.regions.forEach((list, ri) => {
      if (out.regions[ri] === undefined) return;
      list.forEach((c, i) => {
        if (c === undefined) return;
        for (let slot = 0; slot < CHUNK; slot++) {
          const st = c.state[slot];
          if (st === HashState.ABSENT) continue;
          const o = out.chunk(ri, i * CHUNK + slot);
          o.state[slot] = st;
          o.hashes.set(c.hashes.subarray(slot * HASH, slot * HASH + HASH), slot * HASH);
        }
      });
    });
    return out;
  }
}
