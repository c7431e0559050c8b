/**
 * Per-page record offsets, as the readers gather them while scanning (FORMAT.md §13: 8 bytes per
 * page named by the file, in 4096-page chunks).
 *
 * @module
 */

/** Per-page record offsets kept in 4096-page chunks allocated on first use. */
export class OffsetTable {
  private readonly chunks: (Float64Array | undefined)[][];
  constructor(regionCount: number) {
    this.chunks = Array.from({ length: regionCount }, () => []);
  }
  set(region: number, page: number, offset: number): void {
    const list = this.chunks[region];
    const i = page >>> 12;
    let c = list[i];
    if (c === undefined) {
      c = new Float64Array(4096);
      list[i] = c;
    }
    c[page & 4095] = offset + 1;
  }
  /** The offset, or -1 when the page never appeared. */
  get(region: number, page: number): number {
    const c = this.chunks[region][page >>> 12];
    return c === undefined || c[page & 4095] === 0 ? -1 : c[page & 4095] - 1;
  }
  /** Calls `f` for each page that appeared, by region then page. */
  forEach(f: (region: number, page: number, offset: number) => void): void {
    this.chunks.forEach((list, r) => {
      list.forEach((c, i) => {
        if (c === undefined) return;
        for (let k = 0; k < 4096; k++) if (c[k] !== 0) f(r, i * 4096 + k, c[k] - 1);
      });
    });
  }
  /** Number of pages that appeared. */
  count(): number {
    let n = 0;
    for (const list of this.chunks) {
      for (const c of list) if (c !== undefined) { for (const v of c) if (v !== 0) n++; }
    }
    return n;
  }
}
