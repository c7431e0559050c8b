import { assertEquals, assertNotEquals, assertRejects } from "@std/assert/mod.js";
import { computeContentDigest, ContentDigestBuilder } from "./content_digest.ts";
import { createBlake3, hashPageInto, toHex } from "./checksum.ts";
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
