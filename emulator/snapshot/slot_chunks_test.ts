import { assert, assertEquals } from "@std/assert/mod.js";
import {
  allocateChunkTable,
  CHUNK_BYTES,
  CHUNK_SLOTS,
  type SlotChunkMessage,
  SlotChunks,
} from "./slot_chunks.ts";
import { canDiscardPages, hugePageOffset } from "./discard_pages.ts";
import { PAGE_SIZE } from "./page_state.ts";

Deno.test("SlotChunks.allocate() hands the other thread the same bytes of every slot", async (t) => {
  for (const hugePages of [true, false]) {
    await t.step(hugePages ? "huge-page chunks" : "plain chunks", () => {
      const table = allocateChunkTable(4 * CHUNK_SLOTS);
      const guest = new SlotChunks(table, { hugePages });
      const writer = new SlotChunks(table);
      for (let c = 0; c < 3; c++) {
        const m: SlotChunkMessage = structuredClone(guest.allocate(c));
        if (!hugePages) assertEquals([m.buffer.byteLength, m.offset], [CHUNK_BYTES, 0]);
        writer.receive(m);
        assertEquals(writer.view(c)!.byteLength, CHUNK_BYTES);
        for (const slot of [c * CHUNK_SLOTS, c * CHUNK_SLOTS + 1, (c + 1) * CHUNK_SLOTS - 1]) {
          guest.slot(slot)!.fill(slot & 255 || 1);
          const seen = writer.slot(slot)!;
          assertEquals(seen.length, PAGE_SIZE);
          assert(
            seen.every((b) => b === (slot & 255 || 1)),
            `slot ${slot} differs between threads`,
          );
        }
      }
      // Slots do not overlap: the last slot of chunk 0 still holds its own byte.
      assertEquals(writer.slot(CHUNK_SLOTS - 1)![0], 255);
    });
  }
});

Deno.test({
  name: "SlotChunks.allocate() puts a chunk on a 2 MiB boundary where pages can be discarded",
  ignore: !canDiscardPages(),
  fn: () => {
    const chunks = new SlotChunks(allocateChunkTable(CHUNK_SLOTS));
    const m = chunks.allocate(0);
    assertEquals(m.buffer.byteLength, 2 * CHUNK_BYTES);
    // The window starts where the buffer's first 2 MiB boundary is, and fits inside it.
    assertEquals(m.offset, hugePageOffset(m.buffer));
    assert(m.offset + CHUNK_BYTES <= m.buffer.byteLength);
    const base = Deno.UnsafePointer.value(
      Deno.UnsafePointer.of(new Uint8Array(m.buffer) as unknown as Uint8Array<ArrayBuffer>)!,
    );
    assertEquals((BigInt(base) + BigInt(m.offset)) % BigInt(2 * 1024 * 1024), 0n);
  },
});
