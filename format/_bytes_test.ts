import { assertEquals } from "@std/assert/mod.js";
import { isZero } from "./_bytes.ts";

Deno.test("isZero() finds a non-zero byte at any position and alignment", () => {
  const buf = new Uint8Array(4096 + 3);
  for (const start of [0, 1, 2, 3]) {
    const page = buf.subarray(start, start + 4096);
    assertEquals(isZero(page), true);
    for (const at of [0, 1, 2047, 4093, 4095]) {
      page[at] = 1;
      assertEquals(isZero(page), false);
      page[at] = 0;
    }
  }
});
