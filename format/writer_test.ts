import { assertEquals, assertRejects } from "@std/assert/mod.js";
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
