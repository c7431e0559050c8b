import { assertEquals, assertNotEquals, assertRejects } from "@std/assert/mod.js";
import { computeContentDigest, ContentDigestBuilder } from "./content_digest.ts";
import {
  createBlake3,
  createWasmBlake3,
  createWasmPageHasher,
  hashPageInto,
  toHex,
} from "./checksum.ts";
import { decodeDeviceState } from "./device_state.ts";
import { xxhashSanityBuffer } from "./_known_answers_test_util.ts";

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

/** The worked example of FORMAT.md §10.1: the bytes listed there and the digest it states. */
async function workedExample(): Promise<{ bytes: Uint8Array; digest: string; pageHash: string }> {
  const text = await Deno.readTextFile(new URL("./FORMAT.md", import.meta.url));
  const section = text.slice(text.indexOf("### §10.1"));
  const block = /```text\n([\s\S]*?)```/.exec(section)![1];
  const bytes: number[] = [];
  for (const line of block.split("\n")) {
    for (const token of line.replace(/#.*/, "").trim().split(/\s+/).filter((t) => t !== "")) {
      if (!/^[0-9a-f]{2}$/.test(token)) {
        throw new Error(`FORMAT.md §10.1: '${token}' is not a byte`);
      }
      bytes.push(parseInt(token, 16));
    }
  }
  const digest = /hash to the content digest\s+`([0-9a-f]{64})`/.exec(section)![1];
  const pageHash = /^((?:[0-9a-f]{2} ){15}[0-9a-f]{2}) +# +XXH3-128 of page 1/m.exec(block)![1];
  return { bytes: Uint8Array.from(bytes), digest, pageHash: pageHash.replaceAll(" ", "") };
}

Deno.test("the content digest worked by hand in FORMAT.md §10.1 is what the bytes listed there and computeContentDigest() give", async () => {
  const { bytes, digest, pageHash } = await workedExample();
  assertEquals(bytes.length, 111);
  // From the listed bytes alone: BLAKE3 (pinned to the published vectors in checksum_test.ts).
  const h = await createBlake3();
  h.init();
  h.update(bytes);
  assertEquals(toHex(h.digest("binary")), digest);
  // From the state, through the format's code: the same value.
  const page = xxhashSanityBuffer(512);
  const hash = new Uint8Array(16);
  hashPageInto(page, hash, 0);
  assertEquals(toHex(hash), pageHash);
  const ram = new Uint8Array(1024);
  ram.set(page, 512);
  const description = {
    regions: [{ name: "ram", base: 0x8000_0000, size: 1024, pageSize: 512 }],
    creator: "FORMAT.md §10.1",
    createdAt: 0,
  };
  const state = new Uint8Array([0xa1, 0x63, 0x6c, 0x73, 0x72, 0x18, 0x60]);
  assertEquals(decodeDeviceState(state), { lsr: 96 });
  const device = { id: "uart", instance: 0, version: 1, state };
  assertEquals(toHex(await computeContentDigest(description, [ram], [device])), digest);
  // Page order and duplicates do not change it (the builder, fed out of order, twice).
  const b = new ContentDigestBuilder(description);
  b.setPage(0, 1, new Uint8Array(512).fill(1));
  b.setDevice({ ...device, encoding: "cbor", description: new Uint8Array() });
  b.setPage(0, 0, new Uint8Array(512));
  b.setPage(0, 1, page);
  assertEquals(toHex(await b.digest()), digest);
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

Deno.test("ContentDigestBuilder gives the same digest whether it keeps its entries up to date or not", async () => {
  // 3 chunks of 4096 pages; pages set, overwritten and cleared in an order that crosses chunks,
  // more than 4096 of them so that the kept-up builder rebuilds entries between changes.
  const many = {
    regions: [{ name: "ram", base: 0, size: 3 * 4096 * 4096, pageSize: 4096 }],
    creator: "t",
    createdAt: 0,
  };
  const digests: string[] = [];
  for (const keepUp of [true, false]) {
    const b = new ContentDigestBuilder(many, undefined, { keepUp });
    let x = 7;
    for (let i = 0; i < 20_000; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      const page = x % (3 * 4096);
      if (i % 5 === 4) b.clearPage(0, page);
      else b.setPageHash(0, page, new Uint8Array(16).fill((x >>> 8) & 0xff));
      // A digest in the middle: the kept-up builder's entries are then partly built.
      if (i === 10_000) digests.push(`${keepUp} middle ${toHex(await b.digest())}`);
    }
    digests.push(`${keepUp} end ${toHex(await b.digest())}`);
  }
  assertEquals(digests[0].replace("true", "false"), digests[2]);
  assertEquals(digests[1].replace("true", "false"), digests[3]);
  assertNotEquals(digests[0].split(" ")[2], digests[1].split(" ")[2]);
});
