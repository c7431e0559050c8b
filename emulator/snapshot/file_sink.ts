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
  #scratch = new Uint8Array(0);
  #list = new Uint32Array(0);
  /** Pages handed to the writer (zero pages of a resend included). */
  pagesWritten = 0;

  constructor(writer: SnapshotWriter, region = 0) {
    this.writer = writer;
    this.region = region;
  }

  async writePages(pages: PageToWrite[], flush: boolean): Promise<void> {
    const n = pages.length;
    if (this.#list.length < n) {
      this.#scratch = new Uint8Array(n * PAGE_SIZE);
      this.#list = new Uint32Array(n);
    }
    // One call per batch: the writer copies the bytes again into its own batch, so gather them
    // here once instead of paying an await per page.
    for (let i = 0; i < n; i++) {
      this.#list[i] = pages[i].index;
      this.#scratch.set(pages[i].data, i * PAGE_SIZE);
    }
    await this.writer.writePageList(
      this.region,
      this.#list.subarray(0, n),
      this.#scratch.subarray(0, n * PAGE_SIZE),
    );
    this.pagesWritten += n;
    if (flush) await this.writer.flush();
  }
}
