import { assertEquals } from "@std/assert/mod.js";
import { isZero } from "./_bytes.ts";

Deno.test("isZero() finds a non-zero byte at every position, length and alignment", () => {
  const buf = new Uint8Array(4096 + 8);
  for (const length of [0, 1, 3, 31, 32, 33, 36, 100, 4096]) {
    for (const start of [0, 1, 2, 3, 4]) {
      const page = buf.subarray(start, start + length);
      assertEquals(isZero(page), true);
      for (let at = 0; at < length; at++) {
        page[at] = at % 2 === 0 ? 1 : 0x80; // 0x80 in a word's top byte makes it negative
        assertEquals(isZero(page), false, `length ${length}, start ${start}, byte ${at}`);
        page[at] = 0;
      }
      // A non-zero byte just outside the view is not seen.
      buf[start + length] = 1;
      assertEquals(isZero(page), true);
      buf[start + length] = 0;
    }
  }
});
