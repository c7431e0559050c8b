import { assertEquals } from "@std/assert/mod.js";
import { decodeWorkingSet, encodeWorkingSet, type WorkingSet } from "./working_set.ts";

const digest = new Uint8Array(32).map((_, i) => i);
const ws: WorkingSet = {
  pageSize: 4096,
  pageCount: 1024,
  window: 10_000_000,
  fileDigest: digest,
  pages: Uint32Array.from([7, 3, 900, 0]),
};
const expect = { pageSize: 4096, pageCount: 1024, fileDigest: digest };

Deno.test("decodeWorkingSet() reads what encodeWorkingSet() wrote, pages in first-touch order", () => {
  const got = decodeWorkingSet(encodeWorkingSet(ws), expect);
  assertEquals(got, ws);
});

Deno.test("decodeWorkingSet() refuses a sidecar that does not fit, saying why", async (t) => {
  const good = encodeWorkingSet(ws);
  const cases: [string, Uint8Array, typeof expect, string][] = [
    [
      "another file",
      good,
      { ...expect, fileDigest: new Uint8Array(32) },
      "it was recorded for another snapshot (file digest 0001020304050607…, this file's is 0000000000000000…)",
    ],
    [
      "a flipped byte",
      good.map((b, i) => i === 66 ? b ^ 1 : b),
      expect,
      "its CRC32C does not match",
    ],
    [
      "cut short",
      good.subarray(0, good.length - 1),
      expect,
      "it is 83 bytes, its header declares 4 pages (84 bytes)",
    ],
    ["not a sidecar", new Uint8Array(100), expect, "it is not a working-set file"],
    [
      "another machine",
      good,
      { ...expect, pageCount: 512 },
      "it describes 1024 pages of 4096 bytes, the snapshot 512 of 4096",
    ],
  ];
  for (const [name, bytes, e, why] of cases) {
    await t.step(name, () => assertEquals(decodeWorkingSet(bytes, e), why));
  }
  await t.step("a repeated page, a page past the end", () => {
    assertEquals(
      decodeWorkingSet(encodeWorkingSet({ ...ws, pages: Uint32Array.from([5, 5]) }), expect),
      "its entry 1 repeats page 5",
    );
    assertEquals(
      decodeWorkingSet(encodeWorkingSet({ ...ws, pages: Uint32Array.from([1024]) }), expect),
      "its entry 0 names page 1024, past the last page 1023",
    );
  });
});
