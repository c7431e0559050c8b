import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert/mod.js";
import { computeContentDigest, PageHashTable } from "./content_digest.ts";
import { toHex } from "./checksum.ts";
import { UnsupportedError } from "./errors.ts";
import { readSnapshot, SnapshotStreamReader } from "./stream_reader.ts";
import { diffParentOf, SnapshotWriter } from "./writer.ts";

const PS = 4096;
const description = {
  regions: [{ name: "ram", base: 0x8000_0000, size: 32 * PS, pageSize: PS }],
  creator: "diff_writer_test",
  createdAt: 0,
};
const uart = (lsr: number) => ({
  id: "uart",
  instance: 0,
  version: 1,
  state: new Uint8Array([lsr]),
});

function collect(): { sink: WritableStream<Uint8Array>; bytes: () => Uint8Array } {
  const chunks: Uint8Array[] = [];
  return {
    sink: new WritableStream({ write: (c) => void chunks.push(c) }),
    bytes: () => {
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let o = 0;
      for (const c of chunks) out.set(c, (o += c.length) - c.length);
      return out;
    },
  };
}

Deno.test("SnapshotWriter with parent declares the whole state's content digest", async () => {
  const ram = new Uint8Array(32 * PS);
  for (let p = 0; p < 16; p++) ram.fill(p + 1, p * PS, (p + 1) * PS);
  const full = collect();
  const w0 = await SnapshotWriter.create(full.sink, description, { keepPageHashes: true });
  await w0.writePages(0, 0, ram);
  await w0.writeDevice(uart(1));
  const s0 = await w0.close();
  assertEquals(s0.depth, 0);
  assert(s0.pageHashes !== undefined && s0.pageHashes.count() === 16);

  // The guest writes page 20, zeroes page 3 and rewrites page 5.
  ram.fill(0xaa, 20 * PS, 21 * PS);
  ram.fill(0, 3 * PS, 4 * PS);
  ram.fill(0xbb, 5 * PS, 6 * PS);
  const diff = collect();
  const w1 = await SnapshotWriter.create(diff.sink, description, {
    parent: diffParentOf(s0, "/some/dir/s-0.lsnap"),
    keepPageHashes: true,
  });
  await w1.writePages(0, 20, ram.subarray(20 * PS, 21 * PS));
  await w1.writeZeroPages(0, [3]);
  await w1.writePages(0, 5, ram.subarray(5 * PS, 6 * PS));
  await w1.writeDevice(uart(2));
  const s1 = await w1.close();
  const expected = await computeContentDigest(description, [ram], [uart(2)]);
  assertEquals(toHex(s1.contentDigest), toHex(expected));
  assertEquals(s1.depth, 1);
  assertEquals(toHex(s1.rootFileDigest), toHex(s0.fileDigest));
  // The parent's table is left as it was: the next diff on s0 starts from s0's state.
  assertEquals(s0.pageHashes!.count(), 16);
  assertEquals(s1.pageHashes!.count(), 16);

  // A reader refuses the diff by default, and checks it against the parent's pages when told.
  await assertRejects(
    () => readSnapshot(ReadableStream.from([diff.bytes()])),
    UnsupportedError,
    "Cannot read record 1 at byte ",
  );
  const r = new SnapshotStreamReader(ReadableStream.from([diff.bytes()]), {
    diffs: "read",
    parentPages: s0.pageHashes,
  });
  const zeroRecords: number[] = [];
  for await (const rec of r.records()) {
    if (rec.kind === "pages" && rec.encoding === "zero") zeroRecords.push(...rec.pages);
  }
  assertEquals(zeroRecords, [3]);
  assertEquals(r.parent?.parentName, "s-0.lsnap");
  assertEquals(toHex(r.contentDigest!), toHex(expected));
  assertEquals(r.pageHashes?.count(), 16);
});

Deno.test("SnapshotWriter refuses a parent of another machine", async () => {
  const other = new PageHashTable([{ name: "ram", base: 0, size: 32 * PS, pageSize: PS }]);
  await assertRejects(
    () =>
      SnapshotWriter.create(collect().sink, description, {
        parent: {
          contentDigest: new Uint8Array(32),
          fileDigest: new Uint8Array(32),
          rootFileDigest: new Uint8Array(32),
          name: "p.lsnap",
          depth: 0,
          pageHashes: other,
        },
      }),
    Error,
    "Cannot write a diff on 'p.lsnap': the parent's regions are not this machine's",
  );
  assertThrows(
    () => diffParentOf({ contentDigest: new Uint8Array(32) } as never, "x.lsnap"),
    Error,
    "did not keep its page hashes",
  );
});
