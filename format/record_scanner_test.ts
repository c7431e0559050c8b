import { assert, assertEquals } from "@std/assert/mod.js";
import { RecordScanner, streamSource } from "./record_scanner.ts";
import { encodeRecord } from "./record.ts";

/** A 16-byte prologue, then records of the given payload sizes (type 0x7001, filled per index). */
function file(sizes: number[]): { bytes: Uint8Array; records: Uint8Array[] } {
  const records = sizes.map((n, i) => encodeRecord(0x7001, 0, new Uint8Array(n).fill(i + 1)));
  const bytes = new Uint8Array(16 + records.reduce((a, r) => a + r.length, 0));
  let at = 16;
  for (const r of records) {
    bytes.set(r, at);
    at += r.length;
  }
  return { bytes, records };
}

async function scanAll(chunks: Uint8Array[]) {
  const consumed: Uint8Array[] = [];
  const s = new RecordScanner(streamSource(ReadableStream.from(chunks)), {
    onConsumed: (b) => consumed.push(b.slice()),
    chunkSize: 1024,
  });
  await s.take(16);
  const seen: { bytes: Uint8Array; copy: Uint8Array; crcOk: boolean }[] = [];
  for (;;) {
    const r = await s.next();
    if (r.kind !== "record") {
      assertEquals(r.kind, "end");
      break;
    }
    seen.push({ bytes: r.bytes, copy: r.bytes.slice(), crcOk: r.storedCrc === r.actualCrc });
  }
  return { seen, consumed };
}

Deno.test("RecordScanner hands out a record that lies within one chunk as a view of that chunk", async () => {
  const { bytes, records } = file([100, 3000, 0, 5000]);
  // One chunk per record, as a writer's records reach a read-back check.
  const chunks = [bytes.slice(0, 16), ...records.map((r) => r.slice())];
  const { seen, consumed } = await scanAll(chunks);
  assertEquals(seen.length, records.length);
  for (const [i, r] of seen.entries()) {
    assert(r.bytes.buffer === chunks[i + 1].buffer, `record ${i} was copied`);
    assertEquals(r.copy, records[i]);
    assert(r.crcOk);
  }
  const all = new Uint8Array(consumed.reduce((a, c) => a + c.length, 0));
  consumed.reduce((at, c) => (all.set(c, at), at + c.length), 0);
  assertEquals(all, bytes, "every byte passes through onConsumed once, in order");
});

Deno.test("RecordScanner reads records split across chunks of any size", async () => {
  const { bytes, records } = file([10, 4000, 1, 20_000, 77, 0, 3000]);
  for (const size of [1, 7, 16, 300, 1024, 5000, bytes.length]) {
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < bytes.length; at += size) chunks.push(bytes.slice(at, at + size));
    const { seen, consumed } = await scanAll(chunks);
    assertEquals(seen.map((r) => r.copy), records, `chunks of ${size} bytes`);
    assert(seen.every((r) => r.crcOk));
    assertEquals(consumed.reduce((a, c) => a + c.length, 0), bytes.length);
  }
});
