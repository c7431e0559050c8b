import { assert, assertEquals, assertRejects } from "@std/assert/mod.js";
import { computeContentDigest } from "./content_digest.ts";
import { toHex } from "./checksum.ts";
import { SnapshotWriter } from "./writer.ts";
import { TruncatedError } from "./errors.ts";
import { readSnapshot } from "./stream_reader.ts";

const description = {
  regions: [{ name: "ram", base: 0x8000_0000, size: 64 * 4096, pageSize: 4096 }],
  creator: "writer_test",
  createdAt: 0,
};

Deno.test("SnapshotWriter reports a failing stream and what it wrote never reads as complete", async () => {
  const written: Uint8Array[] = [];
  let budget = 3;
  const sink = new WritableStream<Uint8Array>({
    write(c) {
      if (budget-- <= 0) throw new Error("disk full");
      written.push(c.slice());
    },
  });
  const w = await SnapshotWriter.create(sink, description, { batchBytes: 4096, workers: 0 });
  const page = new Uint8Array(4096);
  await assertRejects(
    async () => {
      for (let p = 0; p < 64; p++) {
        page.fill(p + 1);
        await w.writePages(0, p, page);
      }
      await w.close();
    },
    Error,
    "Cannot write snapshot: disk full",
  );
  const bytes = new Uint8Array(written.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of written) {
    bytes.set(c, o);
    o += c.length;
  }
  await assertRejects(
    () => readSnapshot(ReadableStream.from([bytes])),
    TruncatedError,
    "incomplete",
  );
});

Deno.test("SnapshotWriter refuses bad descriptions and out-of-range pages", async () => {
  const sink = () => new WritableStream<Uint8Array>();
  await assertRejects(
    () =>
      SnapshotWriter.create(sink(), {
        ...description,
        regions: [{ name: "ram", base: 0, size: 4096, pageSize: 3000 }],
      }),
    Error,
    "page size 3000 is not a power of two",
  );
  await assertRejects(
    () =>
      SnapshotWriter.create(sink(), {
        ...description,
        regions: [{ name: "a", base: 0, size: 8192, pageSize: 4096 }, {
          name: "b",
          base: 4096,
          size: 4096,
          pageSize: 4096,
        }],
      }),
    Error,
    "overlap",
  );
  const w = await SnapshotWriter.create(new WritableStream<Uint8Array>(), description, {
    workers: 0,
  });
  await assertRejects(
    () => w.writePages(0, 64, new Uint8Array(4096)),
    Error,
    "outside region 'ram'",
  );
  await assertRejects(
    () => w.writePages(1, 0, new Uint8Array(4096)),
    Error,
    "region index 1 does not exist",
  );
  await assertRejects(
    () => w.writePages(0, 0, new Uint8Array(100)),
    Error,
    "not a multiple of the page size",
  );
  const summary = await w.close();
  assertEquals(summary.records, 3); // header, index, trailer
});

Deno.test("SnapshotWriter copies pages out of a SharedArrayBuffer before resolving", async () => {
  const chunks: Uint8Array[] = [];
  const w = await SnapshotWriter.create(
    new WritableStream({ write: (c) => void chunks.push(c) }),
    description,
  );
  const slot = new Uint8Array(new SharedArrayBuffer(4096));
  for (let p = 0; p < 8; p++) {
    slot.fill(p + 1);
    await w.writePages(0, p, slot); // the slot is reused at once
  }
  await w.close();
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    bytes.set(c, o);
    o += c.length;
  }
  const snap = await readSnapshot(ReadableStream.from([bytes]));
  for (let p = 0; p < 8; p++) assertEquals(snap.regions[0][p * 4096 + 100], p + 1);
});

Deno.test("SnapshotWriter writes the same bytes whoever encodes the batches", async () => {
  const PAGES = 64;
  const d = { ...description, regions: [{ ...description.regions[0], size: PAGES * 4096 }] };
  const ram = new Uint8Array(PAGES * 4096);
  for (let p = 0; p < PAGES; p++) {
    if (p % 3 === 0) continue; // zero pages between the others
    const page = ram.subarray(p * 4096, (p + 1) * 4096);
    if (p % 3 === 1) page.fill(p); // compresses
    else for (let i = 0; i < 4096; i++) page[i] = (Math.imul(i + 1, p * 2654435761) >>> 24) & 0xff;
  }
  // Every page once in a scrambled order, then some again (the later occurrence wins), one of
  // them as zero after data.
  const order = [...Array(PAGES).keys()].map((p) => (p * 37) % PAGES).concat([5, 7, 8, 5]);
  const runs: { bytes: Uint8Array; batches: { workers: number; caller: number } }[] = [];
  for (const workers of [0, 1, 3]) {
    for (const callerEncodes of [true, false]) {
      const chunks: Uint8Array[] = [];
      const w = await SnapshotWriter.create(
        new WritableStream({ write: (c) => void chunks.push(c) }),
        d,
        { workers, callerEncodes, batchBytes: 2 * 4096 },
      );
      for (const [i, p] of order.entries()) {
        const page = i >= PAGES && p === 8
          ? new Uint8Array(4096)
          : ram.subarray(p * 4096, (p + 1) * 4096);
        await w.writePages(0, p, page);
      }
      const summary = await w.close();
      const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let o = 0;
      for (const c of chunks) {
        bytes.set(c, o);
        o += c.length;
      }
      runs.push({ bytes, batches: summary.batches });
      if (workers === 0) assertEquals(summary.batches.workers, 0);
      if (workers > 0 && !callerEncodes) {
        // Only the first two batches, before the workers start, are encoded by the caller.
        assertEquals(summary.batches.caller, 2);
        assert(summary.batches.workers > 10, `${summary.batches.workers} batches in workers`);
      }
    }
  }
  for (const r of runs.slice(1)) assertEquals(r.bytes, runs[0].bytes);
  const expected = ram.slice();
  expected.fill(0, 8 * 4096, 9 * 4096);
  const snap = await readSnapshot(ReadableStream.from([runs[0].bytes]));
  assertEquals(snap.regions[0], expected);
  assertEquals(toHex(snap.contentDigest), toHex(await computeContentDigest(d, [expected], [])));
});

Deno.test("SnapshotWriter hands the stream whole buffers it never touches again", async () => {
  const copies: Uint8Array[] = [];
  const seen = new Set<ArrayBufferLike>();
  const sink = new WritableStream<Uint8Array>({
    write(c) {
      assertEquals([c.byteOffset, c.byteLength], [0, c.buffer.byteLength]);
      assert(!seen.has(c.buffer), "a buffer handed over twice");
      seen.add(c.buffer);
      copies.push(c.slice());
      // A stream that takes the buffer away (as convert's read-back check transfers it).
      structuredClone(c.buffer, { transfer: [c.buffer as ArrayBuffer] });
    },
  });
  const ram = new Uint8Array(64 * 4096);
  for (let p = 0; p < 64; p += 2) ram.fill(p + 1, p * 4096, p * 4096 + 3000);
  const w = await SnapshotWriter.create(sink, description, { batchBytes: 4 * 4096, workers: 1 });
  for (let p = 0; p < 64; p += 8) await w.writePages(0, p, ram.subarray(p * 4096, (p + 8) * 4096));
  await w.writeDevice({ id: "uart", instance: 0, version: 1, state: new Uint8Array([0xa0]) });
  await w.close();
  const bytes = new Uint8Array(copies.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of copies) {
    bytes.set(c, o);
    o += c.length;
  }
  assertEquals((await readSnapshot(ReadableStream.from([bytes]))).regions[0], ram);
});
