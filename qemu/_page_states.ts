/**
 * A small number (0..255) per page of a RAM block of any declared size, kept in chunks of
 * {@link CHUNK_PAGES} pages allocated when a page of the chunk is first set to a non-zero value:
 * memory follows the pages a stream sends, not the size its block list declares (a 30-byte
 * stream may declare a block of 2^60 bytes).
 *
 * @module
 */

/** Pages per chunk: 512 bytes of state for every 512 pages a stream touches. */
const CHUNK_PAGES = 512;

/**
 * Per-page states, all 0 at first.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { PageStates } from "./_page_states.ts";
 * const s = new PageStates(2 ** 40); // a block of 2^40 pages costs nothing until used
 * s.set(2 ** 39, 2);
 * s.set(7, 1);
 * s.set(7, 0);
 * assertEquals([s.get(2 ** 39), s.get(7), s.count(2), s.count(0)], [2, 0, 1, 2 ** 40 - 1]);
 * ```
 */
export class PageStates {
  readonly #chunks = new Map<number, Uint8Array>();
  /** Pages with each non-zero state. */
  readonly #counts = new Float64Array(256);
  /** @param pages the block's page count */
  constructor(readonly pages: number) {}

  get(page: number): number {
    return this.#chunks.get(Math.floor(page / CHUNK_PAGES))?.[page % CHUNK_PAGES] ?? 0;
  }

  set(page: number, value: number): void {
    const key = Math.floor(page / CHUNK_PAGES);
    let chunk = this.#chunks.get(key);
    if (chunk === undefined) {
      if (value === 0) return;
      chunk = new Uint8Array(CHUNK_PAGES);
      this.#chunks.set(key, chunk);
    }
    const i = page % CHUNK_PAGES;
    this.#counts[chunk[i]]--;
    chunk[i] = value;
    this.#counts[value]++;
  }

  /** How many pages have state `value`. */
  count(value: number): number {
    if (value !== 0) return this.#counts[value];
    let nonZero = 0;
    for (let v = 1; v < 256; v++) nonZero += this.#counts[v];
    return this.pages - nonZero;
  }
}
