/**
 * The content digest: one BLAKE3 value for the guest state a file holds, independent of page
 * order, duplicates, batching and compression (FORMAT.md §10). Computable while streaming with
 * 16 bytes per non-zero page, and from memory with {@linkcode computeContentDigest}.
 *
 * @module
 */
import { ByteBuilder, compareBytes, isZero, utf8 } from "./_bytes.ts";
import { createBlake3, digestPages, hashPageInto, type PageDigests } from "./checksum.ts";
import { CONTENT_DIGEST_TAG } from "./constants.ts";
import { type DeviceSection, type DeviceSectionInput, normalizeDevice } from "./device_section.ts";
import type { MachineDescription, Region } from "./header.ts";

const CHUNK_PAGES = 4096;
const HASH_SIZE = 16;

interface Chunk {
  hashes: Uint8Array;
  present: Uint8Array;
  /** The chunk's content-digest entries (FORMAT.md §10 item 3: `u32` page, 16-byte hash, for
   * each non-zero page in order), kept until the chunk changes; undefined until built. */
  entries?: Uint8Array;
}

/** Bytes of one content-digest entry: `u32` page number and the page's 16-byte hash. */
const ENTRY_SIZE = 4 + HASH_SIZE;

/**
 * The per-page half of a content digest (FORMAT.md §10): for every page of a machine, whether it
 * is non-zero and, if so, the XXH3-128 of its bytes; 16 bytes per non-zero page, allocated 4096
 * pages at a time. A diff's writer starts from its parent's table, so that it declares the digest
 * of the whole state without reading the pages it does not write (FORMAT.md §14.3).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { PageHashTable } from "./content_digest.ts";
 * const t = new PageHashTable([{ name: "ram", base: 0, size: 1 << 20, pageSize: 4096 }]);
 * t.set(0, 5, new Uint8Array(16).fill(1));
 * assert(t.has(0, 5) && !t.has(0, 6) && t.count() === 1);
 * ```
 */
export class PageHashTable {
  private readonly chunks: (Chunk | undefined)[][];
  /** The regions the table is for, in header order. */
  readonly regions: readonly Region[];

  /** An empty table (no page hashed) for `regions`. */
  constructor(regions: readonly Region[]) {
    this.regions = regions.map((r) => ({ ...r }));
    this.chunks = regions.map(() => []);
  }

  /** The chunk of page hashes holding `page`, allocated on first use. */
  private chunk(region: number, page: number): Chunk {
    const list = this.chunks[region];
    const i = Math.floor(page / CHUNK_PAGES);
    let c = list[i];
    if (c === undefined) {
      c = { hashes: new Uint8Array(CHUNK_PAGES * HASH_SIZE), present: new Uint8Array(CHUNK_PAGES) };
      list[i] = c;
    }
    return c;
  }

  /** Records a non-zero page by its 16-byte hash (`hash[hashOffset..+16]`). */
  set(region: number, page: number, hash: Uint8Array, hashOffset = 0): void {
    const c = this.chunk(region, page);
    const slot = page % CHUNK_PAGES;
    // Byte by byte: a subarray per page costs more than the 16 copies (one call per page).
    const to = c.hashes;
    for (let i = 0, at = slot * HASH_SIZE; i < HASH_SIZE; i++) to[at + i] = hash[hashOffset + i];
    c.present[slot] = 1;
    c.entries = undefined;
  }

  /** Hashes a non-zero page's bytes into the table. */
  setBytes(region: number, page: number, bytes: Uint8Array): void {
    const c = this.chunk(region, page);
    const slot = page % CHUNK_PAGES;
    hashPageInto(bytes, c.hashes, slot * HASH_SIZE);
    c.present[slot] = 1;
    c.entries = undefined;
  }

  /** Records that a page is zero (the same as absent). */
  clear(region: number, page: number): void {
    const c = this.chunks[region][Math.floor(page / CHUNK_PAGES)];
    if (c !== undefined) {
      c.present[page % CHUNK_PAGES] = 0;
      c.entries = undefined;
    }
  }

  /** True when the page is non-zero. */
  has(region: number, page: number): boolean {
    const c = this.chunks[region]?.[Math.floor(page / CHUNK_PAGES)];
    return c !== undefined && c.present[page % CHUNK_PAGES] === 1;
  }

  /** A non-zero page's 16-byte hash (a copy), or null for a zero page. */
  get(region: number, page: number): Uint8Array | null {
    const c = this.chunks[region]?.[Math.floor(page / CHUNK_PAGES)];
    const slot = page % CHUNK_PAGES;
    if (c === undefined || c.present[slot] === 0) return null;
    return c.hashes.slice(slot * HASH_SIZE, (slot + 1) * HASH_SIZE);
  }

  /** The number of non-zero pages (of one region, or of all). */
  count(region?: number): number {
    let n = 0;
    this.chunks.forEach((list, r) => {
      if (region !== undefined && r !== region) return;
      for (const c of list) {
        if (c !== undefined) { for (let i = 0; i < CHUNK_PAGES; i++) n += c.present[i]; }
      }
    });
    return n;
  }

  /** An independent copy. */
  clone(): PageHashTable {
    const t = new PageHashTable(this.regions);
    this.chunks.forEach((list, r) => {
      list.forEach((c, i) => {
        if (c !== undefined) {
          t.chunks[r][i] = { hashes: c.hashes.slice(), present: c.present.slice() };
        }
      });
    });
    return t;
  }

  /**
   * Calls `f(page, hashes, at)` for each non-zero page of `region` in increasing page order; the
   * page's hash is `hashes[at..at+16]` (valid during the call).
   */
  forEachPage(region: number, f: (page: number, hashes: Uint8Array, at: number) => void): void {
    const list = this.chunks[region];
    for (let ci = 0; ci < list.length; ci++) {
      const c = list[ci];
      if (c === undefined) continue;
      for (let i = 0; i < CHUNK_PAGES; i++) {
        if (c.present[i] === 1) f(ci * CHUNK_PAGES + i, c.hashes, i * HASH_SIZE);
      }
    }
  }

  /**
   * The content-digest entries of `region` (FORMAT.md §10 item 3: for each non-zero page in
   * increasing order, `u32` page number and its 16-byte hash), one array per 4096-page chunk
   * that has any. Each chunk's entries are kept until a page of it changes, so after
   * {@linkcode PageHashTable.prepareEntries} only the chunks changed since are built again.
   */
  entryBlocks(region: number): Uint8Array[] {
    const blocks: Uint8Array[] = [];
    const list = this.chunks[region];
    for (let ci = 0; ci < list.length; ci++) {
      const c = list[ci];
      if (c === undefined) continue;
      const e = c.entries ?? buildEntries(c, ci * CHUNK_PAGES);
      c.entries = e;
      if (e.length > 0) blocks.push(e);
    }
    return blocks;
  }

  /** Builds the entries of every chunk changed since the last call (see `entryBlocks`). */
  prepareEntries(): void {
    for (let r = 0; r < this.chunks.length; r++) this.entryBlocks(r);
  }

  /**
   * The table as plain data for `postMessage` (a writer in another thread): the regions and, per
   * region, its 4096-page chunks (null where no page was ever recorded). The buffers are the
   * table's own: transfer them only when the table is not used again.
   */
  toMessage(): PageHashTableMessage {
    return {
      regions: this.regions.map((r) => ({ ...r })),
      chunks: this.chunks.map((list) =>
        Array.from(list, (c) => c === undefined ? null : { hashes: c.hashes, present: c.present })
      ),
    };
  }

  /** The table {@linkcode toMessage} described (after `postMessage`), its buffers adopted. */
  static fromMessage(m: PageHashTableMessage): PageHashTable {
    const t = new PageHashTable(m.regions);
    if (m.chunks.length !== m.regions.length) {
      throw new Error(
        `Cannot read page hashes: ${m.chunks.length} chunk lists for ${m.regions.length} regions`,
      );
    }
    m.chunks.forEach((list, r) => {
      list.forEach((c, i) => {
        if (c === null) return;
        if (c.hashes.length !== CHUNK_PAGES * HASH_SIZE || c.present.length !== CHUNK_PAGES) {
          throw new Error(`Cannot read page hashes: chunk ${i} of region ${r} has the wrong size`);
        }
        t.chunks[r][i] = { hashes: c.hashes, present: c.present };
      });
    });
    return t;
  }

  /** True when `regions` are this table's (same names, bases, sizes and page sizes, in order). */
  fits(regions: readonly Region[]): boolean {
    return regions.length === this.regions.length &&
      regions.every((r, i) => sameRegion(r, this.regions[i]));
  }
}

/** The content-digest entries of chunk `c`, whose first page is `first`. */
function buildEntries(c: Chunk, first: number): Uint8Array {
  let n = 0;
  for (let i = 0; i < CHUNK_PAGES; i++) n += c.present[i];
  const out = new Uint8Array(n * ENTRY_SIZE);
  const v = new DataView(out.buffer);
  const hashes = c.hashes;
  for (let i = 0, at = 0; i < CHUNK_PAGES; i++) {
    if (c.present[i] === 0) continue;
    v.setUint32(at, first + i, true);
    for (let k = 0, from = i * HASH_SIZE; k < HASH_SIZE; k++) out[at + 4 + k] = hashes[from + k];
    at += ENTRY_SIZE;
  }
  return out;
}

/** A {@linkcode PageHashTable} as plain data, for `postMessage`. */
export interface PageHashTableMessage {
  /** The table's regions. */
  regions: Region[];
  /** Per region, per 4096-page chunk: 16 bytes and 1 presence byte per page, or null. */
  chunks: ({ hashes: Uint8Array; present: Uint8Array } | null)[][];
}

/** True when two regions are the same (name, base, size, page size). */
export function sameRegion(a: Region, b: Region): boolean {
  return a.name === b.name && a.base === b.base && a.size === b.size &&
    a.pageSize === b.pageSize;
}

/**
 * Accumulates the content digest as pages and device sections arrive in any order; the last
 * occurrence of a page or of a device (id, instance) wins.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { ContentDigestBuilder } from "./content_digest.ts";
 * const d = { regions: [{ name: "ram", base: 0, size: 8192, pageSize: 4096 }], creator: "x", createdAt: 0 };
 * const b = new ContentDigestBuilder(d);
 * b.setPage(0, 1, new Uint8Array(4096).fill(7));
 * const digest = await b.digest();
 * assert(digest.length === 32);
 * ```
 */
export class ContentDigestBuilder {
  private readonly table: PageHashTable;
  private readonly devices = new Map<string, DeviceSection>();
  /** Pages recorded since the table's entries were last brought up to date. */
  private changed = 0;
  /** False: the entries are built once, by {@linkcode ContentDigestBuilder.digest} (see keepUp). */
  private readonly keepEntries: boolean;
  /**
   * `base`, when given, is the page half of the state the pages recorded here change (a diff's
   * parent, FORMAT.md §14.3); it is copied, never changed. Its regions must be the description's.
   * `options.keepUp` (default true) keeps the digest's entries up to date as pages arrive, so that
   * `digest()` is quick when it comes (a migration's stopped guest waits for it); a caller that
   * only waits for the digest at the end of its input sets it false and builds them once there.
   */
  constructor(
    readonly description: MachineDescription,
    base?: PageHashTable,
    options: { keepUp?: boolean } = {},
  ) {
    this.keepEntries = options.keepUp ?? true;
    if (base !== undefined && !base.fits(description.regions)) {
      throw new Error(
        "Cannot compute content digest: the base page hashes are for other regions than the machine's",
      );
    }
    this.table = base?.clone() ?? new PageHashTable(description.regions);
  }

  /** The page hashes recorded so far (the table itself: a later record changes it). */
  get pageHashes(): PageHashTable {
    return this.table;
  }

  /** Records a page's final bytes (replacing any earlier occurrence). */
  setPage(region: number, page: number, bytes: Uint8Array): void {
    if (isZero(bytes)) {
      this.clearPage(region, page);
      return;
    }
    this.table.setBytes(region, page, bytes);
    this.keepUp(1);
  }

  /** Records a page known to be non-zero by its precomputed 16-byte hash. */
  setPageHash(region: number, page: number, hash: Uint8Array, hashOffset = 0): void {
    this.table.set(region, page, hash, hashOffset);
    this.keepUp(1);
  }

  /**
   * Records the pages of a record at once (`pages[i]` from `data[i × pageSize..]`, later entries
   * winning): one call hashes them all, zero pages are cleared.
   */
  setPageData(region: number, pages: Uint32Array, data: Uint8Array): void {
    const ps = this.description.regions[region].pageSize;
    const d = digestPages(pages.length, ps, (area) => {
      area.set(data.subarray(0, pages.length * ps));
      return null;
    });
    this.setPageDigests(region, pages, d as PageDigests);
  }

  /**
   * Records pages by what {@linkcode digestPages} found of them (zero, or their hash). For the
   * format's own readers, which hash pages where they decompress them; `digestPages` is not
   * exported, so neither is this.
   *
   * @ignore
   */
  setPageDigests(region: number, pages: Uint32Array, d: PageDigests): void {
    for (let i = 0; i < pages.length; i++) {
      if (d.zero[i] === 1) this.table.clear(region, pages[i]);
      else this.table.set(region, pages[i], d.hashes, i * HASH_SIZE);
    }
    this.keepUp(pages.length);
  }

  /**
   * Brings the table's digest entries up to date every 4096 pages recorded, so that
   * {@linkcode ContentDigestBuilder.digest} at the end builds only those of the chunks changed
   * since (a live migration computes it while the guest is stopped, at both ends).
   */
  private keepUp(pages: number): void {
    if (!this.keepEntries) return;
    this.changed += pages;
    if (this.changed < CHUNK_PAGES) return;
    this.changed = 0;
    this.table.prepareEntries();
  }

  /** Records that a page is zero (the same as absent). */
  clearPage(region: number, page: number): void {
    this.table.clear(region, page);
    this.keepUp(1);
  }

  /** Records a device section (replacing an earlier one with the same id and instance). */
  setDevice(d: DeviceSection): void {
    this.devices.set(`${d.id}\u0000${d.instance}`, d);
  }

  /** The digest of everything recorded so far (FORMAT.md §10). */
  async digest(): Promise<Uint8Array> {
    const h = await createBlake3();
    h.init();
    const head = new ByteBuilder();
    head.bytes(utf8(CONTENT_DIGEST_TAG)).u8(0).u32(this.description.regions.length);
    for (const r of this.description.regions) {
      head.str16(r.name).u64(r.base).u64(r.size).u32(r.pageSize);
    }
    h.update(head.finish());
    // The entries go to the hasher a chunk (up to 4096 pages) at a time, kept from earlier
    // calls for the chunks that did not change (see keepUp).
    const count = new Uint8Array(4);
    for (let r = 0; r < this.description.regions.length; r++) {
      const blocks = this.table.entryBlocks(r);
      let bytes = 0;
      for (const b of blocks) bytes += b.length;
      new DataView(count.buffer).setUint32(0, bytes / ENTRY_SIZE, true);
      h.update(count);
      for (const b of blocks) h.update(b);
    }
    const devs = [...this.devices.values()].sort((a, b) =>
      compareBytes(utf8(a.id), utf8(b.id)) || a.instance - b.instance
    );
    const tail = new ByteBuilder();
    tail.u32(devs.length);
    for (const d of devs) {
      tail.str16(d.id).u32(d.instance).u32(d.version).u8(d.encoding === "cbor" ? 0 : 1);
      tail.u32(d.description.length).bytes(d.description).u32(d.state.length).bytes(d.state);
    }
    h.update(tail.finish());
    return h.digest("binary");
  }
}

/**
 * Computes the content digest of a machine held in memory: one byte array per region (each
 * exactly the region's size), plus device sections. Equals the content digest of any snapshot
 * file holding that state.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { computeContentDigest } from "./content_digest.ts";
 * import { encodeDeviceState } from "./device_state.ts";
 * const description = { regions: [{ name: "ram", base: 0x8000_0000, size: 16384, pageSize: 4096 }], creator: "doc", createdAt: 0 };
 * const ram = new Uint8Array(16384);
 * ram[5000] = 1;
 * const hex = await computeContentDigest(description, [ram], [
 *   { id: "uart", instance: 0, version: 1, state: encodeDeviceState({ lsr: 0x60 }) },
 * ]);
 * assert(hex.length === 32);
 * ```
 */
export async function computeContentDigest(
  description: MachineDescription,
  regionBytes: Uint8Array[],
  devices: DeviceSectionInput[],
): Promise<Uint8Array> {
  if (regionBytes.length !== description.regions.length) {
    throw new Error(
      `Cannot compute content digest: ${regionBytes.length} byte arrays for ${description.regions.length} regions`,
    );
  }
  const b = new ContentDigestBuilder(description);
  description.regions.forEach((r, i) => {
    const bytes = regionBytes[i];
    if (bytes.length !== r.size) {
      throw new Error(
        `Cannot compute content digest: region '${r.name}' has ${bytes.length} bytes, expected ${r.size}`,
      );
    }
    for (let p = 0, off = 0; off < r.size; p++, off += r.pageSize) {
      const page = bytes.subarray(off, off + r.pageSize);
      if (!isZero(page)) b.setPage(i, p, page);
    }
  });
  for (const d of devices) b.setDevice(normalizeDevice(d));
  return await b.digest();
}
