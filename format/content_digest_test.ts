import { assertEquals, assertNotEquals, assertRejects } from "@std/assert/mod.js";
import { computeContentDigest, ContentDigestBuilder } from "./content_digest.ts";
import { createWasmBlake3, createWasmPageHasher, toHex } from "./checksum.ts";

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

Deno.test("ContentDigestBuilder.digest() is FORMAT.md §10's BLAKE3, page entries in any number", async () => {
  // Two regions with more non-zero pages than the builder hands the hasher at once, so the
  // entries cross its buffer; the reference below builds §10's byte string naively.
  const regions = [
    { name: "ram", base: 0x8000_0000, size: 7000 * 512, pageSize: 512 },
    { name: "rom", base: 0x1000, size: 3 * 4096, pageSize: 4096 },
  ];
  const desc = { regions, creator: "t", createdAt: 0 };
  const ram = new Uint8Array(regions[0].size);
  for (let p = 0; p < 7000; p++) if (p % 7 !== 3) ram[p * 512 + (p % 512)] = 1 + (p % 250);
  const rom = new Uint8Array(regions[1].size).fill(0xaa, 4096, 8192);
  const device = { id: "uart", instance: 2, version: 1, state: new Uint8Array([1, 2]) };
  const xxh = await createWasmPageHasher();
  const parts: number[] = [...new TextEncoder().encode("lsnap content digest v1"), 0];
  const u32 = (v: number) => parts.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24);
  const u64 = (v: number) => {
    u32(v % 2 ** 32);
    u32(Math.floor(v / 2 ** 32));
  };
  const str16 = (t: string) => {
    const b = new TextEncoder().encode(t);
    parts.push(b.length & 0xff, b.length >> 8, ...b);
  };
  u32(regions.length);
  for (const r of regions) {
    str16(r.name);
    u64(r.base);
    u64(r.size);
    u32(r.pageSize);
  }
  for (const [i, bytes] of [ram, rom].entries()) {
    const ps = regions[i].pageSize;
    const nonZero = [];
    for (let p = 0; p < bytes.length / ps; p++) {
      if (bytes.subarray(p * ps, (p + 1) * ps).some((b) => b !== 0)) nonZero.push(p);
    }
    u32(nonZero.length);
    for (const p of nonZero) {
      u32(p);
      xxh.init();
      xxh.update(bytes.subarray(p * ps, (p + 1) * ps));
      parts.push(...xxh.digest("binary"));
    }
  }
  u32(1);
  str16(device.id);
  u32(device.instance);
  u32(device.version);
  parts.push(0);
  u32(0);
  u32(device.state.length);
  parts.push(...device.state);
  const reference = await createWasmBlake3();
  reference.init();
  reference.update(Uint8Array.from(parts));
  assertEquals(
    toHex(await computeContentDigest(desc, [ram, rom], [device])),
    toHex(reference.digest("binary")),
  );
});
