import { assertEquals, assertNotEquals, assertRejects } from "@std/assert/mod.js";
import { computeContentDigest, ContentDigestBuilder } from "./content_digest.ts";
import { toHex } from "./checksum.ts";

const d = {
  regions: [{ name: "ram", base: 0, size: 4 * 4096, pageSize: 4096 }],
  creator: "t",
  createdAt: 0,
};

Deno.test("computeContentDigest() treats zero pages as absent and depends on regions and devices", async () => {
  const ram = new Uint8Array(4 * 4096);
  ram[4096 + 5] = 9;
  const b = new ContentDigestBuilder(d);
  b.setPage(0, 1, ram.subarray(4096, 8192));
  b.setPage(0, 2, new Uint8Array(4096).fill(3));
  b.clearPage(0, 2);
  const dev = { id: "x", instance: 0, version: 1, state: new Uint8Array([1]) };
  b.setDevice({
    ...dev,
    state: new Uint8Array([0]),
    encoding: "cbor",
    description: new Uint8Array(),
  });
  b.setDevice({ ...dev, encoding: "cbor", description: new Uint8Array() });
  const expected = toHex(await computeContentDigest(d, [ram], [dev]));
  assertEquals(toHex(await b.digest()), expected);
  const moved = { ...d, regions: [{ ...d.regions[0], base: 4096 }] };
  assertNotEquals(toHex(await computeContentDigest(moved, [ram], [dev])), expected);
  assertNotEquals(toHex(await computeContentDigest(d, [ram], [{ ...dev, version: 2 }])), expected);
  assertNotEquals(toHex(await computeContentDigest(d, [ram], [])), expected);
  await assertRejects(
    () => computeContentDigest(d, [new Uint8Array(5)], []),
    Error,
    "has 5 bytes, expected 16384",
  );
});

Deno.test("computeContentDigest() reads RAM backed by a SharedArrayBuffer", async () => {
  const plain = new Uint8Array(4 * 4096);
  plain.fill(7, 4096, 8192);
  const shared = new Uint8Array(new SharedArrayBuffer(4 * 4096));
  shared.set(plain);
  assertEquals(
    toHex(await computeContentDigest(d, [shared], [])),
    toHex(await computeContentDigest(d, [plain], [])),
  );
});
