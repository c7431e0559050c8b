/**
 * A {@linkcode PageSink} over format/'s {@linkcode SnapshotWriter}: the live engine's pages
 * become PAGES records of one region (RAM).
 *
 * @module
 */

import type { SnapshotWriter } from "../../format/writer.ts";
import { PAGE_SIZE } from "./page_state.ts";
import type { PageSink, PageToWrite } from "./writer_loop.ts";

/** Writes pages into region `region` of a snapshot file. */
export class FormatPageSink implements PageSink {
  readonly writer: SnapshotWriter;
  readonly region: number;
  #list = new Uint32Array(64);
  /** Pages handed to the writer (zero pages of a resend included). */
  pagesWritten = 0;

  /** For a diff: true if the parent holds page `page` non-zero, so that the page, zero now, must
   * be written as an explicit zero record (FORMAT.md §14.2). */
  readonly #parentHas: ((page: number) => boolean) | null;

  constructor(
    writer: SnapshotWriter,
    region = 0,
    parentHas: ((page: number) => boolean) | null = null,
  ) {
    this.writer = writer;
    this.region = region;
    this.#parentHas = parentHas;
  }

  async writePages(pages: PageToWrite[], flush: boolean): Promise<void> {
    const n = pages.length;
    if (this.#list.length < n) this.#list = new Uint32Array(n);
    // The writer copies the bytes into its own batch (the page's last copy before compression).
    // Pages whose bytes follow one another in memory (the writer loop's staging area, slots the
    // guest took one after the other) go in one call, straight from where they are: no
    // gathering copy here.
    // A zero page written for the first time is left out: absent reads as zero (FORMAT.md), or,
    // in a diff, as the parent's page: there it is left out only if the parent's is zero too.
    const parentHas = this.#parentHas;
    const omit = (p: PageToWrite) =>
      p.zero && !p.resend && (parentHas === null || !parentHas(p.index));
    let i = 0;
    while (i < n) {
      if (omit(pages[i])) {
        i++;
        continue;
      }
      const first = pages[i].data;
      let j = i + 1;
      while (
        j < n && !omit(pages[j]) && pages[j].data.buffer === first.buffer &&
        pages[j].data.byteOffset === first.byteOffset + (j - i) * PAGE_SIZE
      ) j++;
      for (let k = i; k < j; k++) this.#list[k - i] = pages[k].index;
      await this.writer.writePageList(
        this.region,
        this.#list.subarray(0, j - i),
        new Uint8Array(first.buffer, first.byteOffset, (j - i) * PAGE_SIZE),
      );
      this.pagesWritten += j - i;
      i = j;
    }
    if (flush) await this.writer.flush();
  }
}
