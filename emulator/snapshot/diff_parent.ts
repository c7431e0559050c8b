/**
 * The parent of the engine's next diff, in a form that crosses between threads: a restored
 * machine's guest thread reads it from the file it restores and hands it to the writer thread,
 * which keeps the parent of every later diff itself (format/'s `DiffParent`, from each write).
 *
 * @module
 */

import { PageHashTable } from "../../format/content_digest.ts";
import type { DiffParent } from "../../format/writer.ts";
import type { Region } from "../../format/header.ts";

/** A {@linkcode DiffParent} as plain data (`postMessage` drops a class's methods). */
export interface ParentTransfer {
  name: string;
  contentDigest: Uint8Array;
  fileDigest: Uint8Array;
  depth: number;
  rootFileDigest: Uint8Array;
  regions: Region[];
  /** Per region: the non-zero pages, in increasing order, and their 16-byte hashes. */
  pages: Uint32Array[];
  hashes: Uint8Array[];
}

/**
 * `parent` as plain data.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { PageHashTable } from "../../format/content_digest.ts";
 * import { parentFromTransfer, parentToTransfer } from "./diff_parent.ts";
 * const regions = [{ name: "ram", base: 0x8000_0000, size: 1 << 20, pageSize: 4096 }];
 * const pageHashes = new PageHashTable(regions);
 * pageHashes.set(0, 3, new Uint8Array(16).fill(9));
 * const d = new Uint8Array(32);
 * const parent = { name: "s.lsnap", contentDigest: d, fileDigest: d, depth: 0, rootFileDigest: d, pageHashes };
 * const back = parentFromTransfer(structuredClone(parentToTransfer(parent)));
 * assertEquals(back.pageHashes.get(0, 3), new Uint8Array(16).fill(9));
 * assertEquals(back.pageHashes.count(), 1);
 * ```
 */
export function parentToTransfer(parent: DiffParent): ParentTransfer {
  const t = parent.pageHashes;
  const pages: Uint32Array[] = [];
  const hashes: Uint8Array[] = [];
  t.regions.forEach((_, r) => {
    const n = t.count(r);
    const p = new Uint32Array(n);
    const h = new Uint8Array(n * 16);
    let i = 0;
    t.forEachPage(r, (page, from, at) => {
      p[i] = page;
      h.set(from.subarray(at, at + 16), i * 16);
      i++;
    });
    pages.push(p);
    hashes.push(h);
  });
  return {
    name: parent.name,
    contentDigest: parent.contentDigest,
    fileDigest: parent.fileDigest,
    depth: parent.depth,
    rootFileDigest: parent.rootFileDigest,
    regions: t.regions.map((r) => ({ ...r })),
    pages,
    hashes,
  };
}

/** The {@linkcode DiffParent} that {@linkcode parentToTransfer} made plain. */
export function parentFromTransfer(t: ParentTransfer): DiffParent {
  const pageHashes = new PageHashTable(t.regions);
  t.pages.forEach((pages, r) => {
    for (let i = 0; i < pages.length; i++) pageHashes.set(r, pages[i], t.hashes[r], i * 16);
  });
  return {
    name: t.name,
    contentDigest: t.contentDigest,
    fileDigest: t.fileDigest,
    depth: t.depth,
    rootFileDigest: t.rootFileDigest,
    pageHashes,
  };
}
