import { assert, assertEquals, assertThrows } from "@std/assert/mod.js";
import {
  decodeIndex,
  encodeIndex,
  findIndexEntry,
  IndexBody,
  reserveIndexArea,
  type SnapshotIndex,
} from "./index_record.ts";
import { CorruptError } from "./errors.ts";
import { SnapshotFileReader } from "./file_reader.ts";
import { SnapshotWriter } from "./writer.ts";

/** A sorted index over `counts` pages per region, about one page in `every` named, pseudo-random. */
function randomIndex(counts: number[], every: number, seed: number): SnapshotIndex {
  let x = seed;
  const next = () => (x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32;
  const regions: number[] = [];
  const pages: number[] = [];
  const offsets: number[] = [];
  counts.forEach((n, r) => {
    for (let p = 0; p < n; p++) {
      if (next() * every >= 1) continue;
      regions.push(r);
      pages.push(p);
      offsets.push(64 + Math.floor(next() * 1e6));
    }
  });
  return {
    regions: Uint16Array.from(regions),
    pages: Uint32Array.from(pages),
    pageOffsets: Float64Array.from(offsets),
    deviceOffsets: Float64Array.from([2e6, 2e6 + 100]),
  };
}

const LIMIT = 3e6;
const AT = 3e6; // the INDEX record's offset, named by every error

Deno.test("IndexBody looks up every page as decodeIndex does, in place, for any region and density", () => {
  for (
    const [counts, every, seed] of [[[5000, 300, 1], 3, 1], [[20000], 1.1, 2], [
      [70, 4000],
      40,
      3,
    ]] as const
  ) {
    const index = randomIndex([...counts], every, seed);
    const payload = encodeIndex(index);
    const full = decodeIndex(payload, [...counts], LIMIT, AT, -1);
    const body = IndexBody.open(payload, [...counts], LIMIT, AT, -1);
    assertEquals(body.count, index.pages.length);
    assertEquals(body.deviceOffsets, index.deviceOffsets);
    counts.forEach((n, r) => {
      for (let p = 0; p < n; p++) {
        const i = findIndexEntry(full, r, p);
        assertEquals(
          body.recordOf(r, p),
          i < 0 ? -1 : full.pageOffsets[i],
          `region ${r} page ${p}`,
        );
      }
      const listed: number[] = [];
      body.forEachPage(r, (p) => listed.push(p));
      const { start, end } = body.regionRange(r);
      assertEquals(listed, [...full.pages.subarray(start, end)]);
      assertEquals(body.recordOf(r, n + 5), -1, "past the region");
    });
    assertEquals(body.decode(), full);
    body.release();
    assertThrows(() => body.recordOf(0, 0), Error, "after its release");
  }
});

Deno.test("IndexBody refuses a damaged index naming the INDEX record; an entry's offset is checked when it is looked up", () => {
  const counts = [4000];
  const good = randomIndex(counts, 4, 9);
  const damaged = (change: (ix: SnapshotIndex) => void) => {
    const ix = structuredClone(good);
    change(ix);
    return encodeIndex(ix);
  };
  const refused = (payload: Uint8Array, what: string) => {
    const e = assertThrows(
      () => IndexBody.open(payload, counts, LIMIT, AT, -1),
      CorruptError,
      what,
    );
    assertEquals(e.offset, AT);
  };
  refused(damaged((ix) => ix.regions[7] = 3), "names region 3, which does not exist");
  refused(damaged((ix) => ix.pages[ix.pages.length - 1] = 4000), "which does not exist");
  refused(damaged((ix) => ix.pages[10] = ix.pages[9]), "repeats a page");
  refused(damaged((ix) => ix.deviceOffsets[1] = LIMIT + 1), "not before the index");
  refused(encodeIndex(good).subarray(0, 40), "");
  // An entry past the index: the body opens, and the lookup of that page names the INDEX.
  const page = good.pages[100];
  const body = IndexBody.open(damaged((ix) => ix.pageOffsets[100] = LIMIT), counts, LIMIT, AT, -1);
  assertEquals(body.recordOf(0, good.pages[99]), good.pageOffsets[99]);
  const e = assertThrows(() => body.recordOf(0, page), CorruptError, `points at byte ${LIMIT}`);
  assertEquals(e.offset, AT);
  assertThrows(() => body.decode(), CorruptError, "not before the index");
  body.release();
});

Deno.test("IndexBody: two bodies held at once each keep their own memory (the reserved area goes to one)", () => {
  reserveIndexArea(1 << 20);
  const a = randomIndex([3000], 2, 4);
  const b = randomIndex([3000], 2, 5);
  const ba = IndexBody.open(encodeIndex(a), [3000], LIMIT, AT, -1);
  const bb = IndexBody.open(encodeIndex(b), [3000], LIMIT, AT, -1);
  assertEquals(ba.decode(), decodeIndex(encodeIndex(a), [3000], LIMIT, AT, -1));
  assertEquals(bb.decode(), decodeIndex(encodeIndex(b), [3000], LIMIT, AT, -1));
  ba.release();
  const bc = IndexBody.open(encodeIndex(a), [3000], LIMIT, AT, -1);
  assertEquals(bb.decode().pages, b.pages, "a body opened later does not write over a live one");
  bb.release();
  bc.release();
});

Deno.test("SnapshotFileReader with lazyIndex reads what it reads without: pages, devices, the full index on demand", async () => {
  const path = await Deno.makeTempFile({ suffix: ".lsnap" });
  try {
    const regions = [{ name: "ram", base: 0, size: 4 << 20, pageSize: 4096 }];
    const w = await SnapshotWriter.createFile(path, { regions, creator: "test", createdAt: 0 });
    const data = new Uint8Array(40 * 4096);
    for (let i = 0; i < data.length; i += 97) data[i] = i & 0xff;
    await w.writePages(0, 3, data);
    await w.writePages(0, 500, new Uint8Array(4096).fill(7));
    await w.writePages(0, 10, new Uint8Array(4096).fill(9)); // a later occurrence wins
    await w.close();
    const eager = await SnapshotFileReader.open(path);
    const lazy = await SnapshotFileReader.open(path, { lazyIndex: true });
    assertEquals(eager.indexBody, null);
    const body = lazy.indexBody!;
    assert(body instanceof IndexBody);
    for (let p = 0; p < 1024; p++) {
      assertEquals(body.recordOf(0, p), eager.pageRecordOffset(0, p), `page ${p}`);
    }
    assertEquals(await lazy.devices(), await eager.devices());
    assertEquals(await lazy.readPage(0, 10), new Uint8Array(4096).fill(9));
    assertEquals(lazy.pageEntries(0), eager.pageEntries(0));
    body.release();
    eager.close();
    lazy.close();
  } finally {
    await Deno.remove(path);
  }
});
