import { assertEquals, assertRejects } from "@std/assert/mod.js";
import type { QemuStreamRecord } from "./model.ts";
import { readQemuStream } from "./stream_reader.ts";
import { QemuStreamWriter } from "./stream_writer.ts";

const VIRT_CONFIG = new Uint8Array([7, 0, 0, 0, 4, 0x76, 0x69, 0x72, 0x74]);

function collector(): { chunks: Uint8Array[]; sink: { write(c: Uint8Array): Promise<void> } } {
  const chunks: Uint8Array[] = [];
  return { chunks, sink: { write: (c) => Promise.resolve(void chunks.push(c.slice())) } };
}

async function pagesOf(
  chunks: Uint8Array[],
): Promise<Extract<QemuStreamRecord, { kind: "page" }>[]> {
  const out: Extract<QemuStreamRecord, { kind: "page" }>[] = [];
  for await (const r of readQemuStream(chunks)) if (r.kind === "page") out.push(r);
  return out;
}

Deno.test("QemuStreamWriter sends pages never written as zero pages", async () => {
  const { chunks, sink } = collector();
  const w = new QemuStreamWriter(sink);
  await w.writeHeader(VIRT_CONFIG);
  await w.writeRamBlocks([{ name: "a", size: 3 * 4096 }, { name: "b", size: 4096 }], {
    sectionId: 2,
  });
  await w.writePage("a", 4096, new Uint8Array(4096).fill(9));
  await w.close();
  const pages = await pagesOf(chunks);
  assertEquals(
    pages.map((p) => [p.block, p.address, p.data === undefined ? `fill ${p.fill}` : p.data[0]]),
    [["a", 4096, 9], ["a", 0, "fill 0"], ["a", 8192, "fill 0"], ["b", 0, "fill 0"]],
  );
});

Deno.test("QemuStreamWriter names the block once per run of pages (CONTINUE)", async () => {
  const { chunks, sink } = collector();
  const w = new QemuStreamWriter(sink, { pagesPerSection: 2 });
  await w.writeHeader(VIRT_CONFIG);
  await w.writeRamBlocks([{ name: "blk", size: 4 * 4096 }], { sectionId: 7 });
  for (let i = 0; i < 4; i++) await w.writePage("blk", i * 4096, i);
  await w.close();
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  chunks.reduce((at, c) => (bytes.set(c, at), at + c.length), 0);
  // Two PART sections of two pages: the name appears once in the block list, once per section.
  const text = new TextDecoder("latin1").decode(bytes);
  assertEquals(text.split("blk").length - 1, 3);
  const pages = await pagesOf([bytes]);
  assertEquals(pages.map((p) => p.fill), [0, 1, 2, 3]);
});

Deno.test("QemuStreamWriter refuses calls out of order and pages outside their block", async () => {
  const { sink } = collector();
  const w = new QemuStreamWriter(sink);
  await assertRejects(
    () => w.writePage("ram", 0, 0),
    Error,
    "Cannot write QEMU stream: a page is out of order (stage 'new')",
  );
  await w.writeHeader(VIRT_CONFIG);
  await w.writeRamBlocks([{ name: "ram", size: 8192 }], { sectionId: 2 });
  await assertRejects(
    () => w.writePage("ram", 8192, 0),
    Error,
    "Cannot write QEMU stream: page 0x2000 is not a page of block 'ram' (size 0x2000)",
  );
  await assertRejects(() => w.writePage("rom", 0, 0), Error, "no RAM block 'rom'");
  await assertRejects(
    () => w.writePage("ram", 0, new Uint8Array(100)),
    Error,
    "a page of 100 bytes (expected 4096)",
  );
  await w.writeDeviceSection({
    sectionType: 4,
    sectionId: 3,
    idstr: "dev",
    instanceId: 0,
    versionId: 1,
    data: new Uint8Array([1]),
  });
  await assertRejects(() => w.writePage("ram", 0, 0), Error, "a page is out of order");
});
