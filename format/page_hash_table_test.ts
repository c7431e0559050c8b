import { assertEquals, assertThrows } from "@std/assert/mod.js";
import { PageHashTable } from "./content_digest.ts";

const regions = [{ name: "ram", base: 0x8000_0000, size: 3 * 4096 * 4096, pageSize: 4096 }];

Deno.test("PageHashTable.toMessage() survives postMessage to a writer in another thread", () => {
  const t = new PageHashTable(regions);
  t.set(0, 5, new Uint8Array(16).fill(5));
  t.set(0, 9000, new Uint8Array(16).fill(9));
  t.set(0, 6, new Uint8Array(16).fill(6));
  t.clear(0, 6);
  // structuredClone is what postMessage does to the message.
  const back = PageHashTable.fromMessage(structuredClone(t.toMessage()));
  assertEquals(back.count(), 2);
  assertEquals(back.get(0, 5), new Uint8Array(16).fill(5));
  assertEquals(back.get(0, 9000), new Uint8Array(16).fill(9));
  assertEquals([back.has(0, 6), back.has(0, 4096)], [false, false]);
  assertEquals(back.fits(regions), true);
  const m = t.toMessage();
  m.chunks[0][0] = { hashes: new Uint8Array(16), present: new Uint8Array(1) };
  assertThrows(() => PageHashTable.fromMessage(m), Error, "chunk 0 of region 0 has the wrong size");
});
