// Known answers from the published specifications, not from this code: CRC-32C (the catalogue
// check value and RFC 3720 appendix B.4, iSCSI), XXH3-128 (xxHash's sanity vectors), BLAKE3 (the
// BLAKE3 team's test_vectors.json). The golden files' digests were produced by the code under
// test; these pin the three functions the format names (FORMAT.md §1) to everyone else's.
import { assertEquals, assertThrows } from "@std/assert/mod.js";
import {
  checksumBackends,
  crc32c,
  createBlake3,
  createWasmBlake3,
  createWasmCrc32c,
  createWasmPageHasher,
  digestPages,
  hashPageInto,
  hashPagesInto,
  loadNativeChecksums,
  toHex,
} from "./checksum.ts";
import { crc32cParts } from "./_wasm_hashes.ts";
import { xxhashSanityBuffer } from "./_known_answers_test_util.ts";

const ascii = (s: string) => new TextEncoder().encode(s);

Deno.test("crc32c() gives the published CRC-32C check value and RFC 3720's iSCSI examples", () => {
  assertEquals(crc32c(ascii("123456789")), 0xe306_9283);
  assertEquals(crc32c(new Uint8Array(0)), 0);
  // RFC 3720 appendix B.4 lists the CRC bytes as sent (least significant first):
  // 32 bytes of zeros give aa 36 91 8a, that is 0x8a9136aa.
  assertEquals(crc32c(new Uint8Array(32)), 0x8a91_36aa);
  assertEquals(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8_ab43);
  assertEquals(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd_794e);
  assertEquals(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113f_db5c);
  // An iSCSI SCSI Read (10) command PDU, the appendix's last example.
  const pdu = new Uint8Array(48);
  pdu.set([0x01, 0xc0], 0);
  pdu.set([0x14], 16);
  pdu.set([0x04], 22);
  pdu.set([0x14], 27);
  pdu.set([0x18], 31);
  pdu.set([0x28], 32);
  pdu.set([0x02], 40);
  assertEquals(crc32c(pdu), 0xd996_3a56);
  // The same value over the bytes in several parts, as records are checked.
  assertEquals(crc32c(pdu.subarray(0, 5), pdu.subarray(5, 31), pdu.subarray(31)), 0xd996_3a56);
});

Deno.test("hashPageInto() and the reference hasher give xxHash's published XXH3-128 values (seed 0)", async () => {
  // XSUM_XXH128_testdata, seed 0: { low64, high64 }; the canonical form (FORMAT.md §1) is
  // high64 then low64, big-endian.
  const vectors: [number, string, string][] = [
    [0, "6001C324468D497F", "99AA06D3014798D8"],
    [1, "C44BDFF4074EECDB", "A6CD5E9392000F6A"],
    [6, "3E7039BDDA43CFC6", "082AFE0B8162D12A"],
    [12, "061A192713F69AD9", "6E3EFD8FC7802B18"],
    [24, "1E7044D28B1B901D", "0CE966E4678D3761"],
    [48, "F942219AED80F67B", "A002AC4E5478227E"],
    [81, "5E8BAFB9F95FB803", "4952F58181AB0042"],
    [222, "F1AEBD597CEC6B3A", "337E09641B948717"],
    [403, "CDEB804D65C6DEA4", "1B6DE21E332DD73D"],
    [512, "617E49599013CB6B", "18D2D110DCC9BCA1"],
    [2048, "DD59E2C3A5F038E0", "F736557FD47073A5"],
    [2240, "6E73A90539CF2948", "CCB134FBFA7CE49D"],
    [2367, "CB37AEB9E5D361ED", "E89C0F6FF369B427"],
  ];
  const buffer = xxhashSanityBuffer(2367);
  const reference = await createWasmPageHasher();
  for (const [length, low, high] of vectors) {
    const want = (high + low).toLowerCase();
    reference.init();
    reference.update(buffer.subarray(0, length));
    assertEquals(toHex(reference.digest("binary")), want, `reference, length ${length}`);
    // The page hasher takes pages only (FORMAT.md §5: at least 512 bytes); it has no short-input
    // path, so the vectors longer than XXH3's 240-byte mid-size path are the ones it must match.
    if (length <= 240) continue;
    const out = new Uint8Array(20);
    hashPageInto(buffer.subarray(0, length), out, 2);
    assertEquals(toHex(out.subarray(2, 18)), want, `length ${length}`);
    assertEquals([out[0], out[1], out[18], out[19]], [0, 0, 0, 0], "wrote outside its 16 bytes");
  }
});

Deno.test("createBlake3() gives the BLAKE3 team's published hashes (input byte i = i % 251)", async () => {
  // test_vectors.json of the BLAKE3 repository, "hash", its first 32 bytes (the default output).
  const vectors: [number, string][] = [
    [0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"],
    [1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"],
    [1023, "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11"],
    [1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7"],
    [1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444"],
    [2048, "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a"],
    [4096, "015094013f57a5277b59d8475c0501042c0b642e531b0a1c8f58d2163229e969"],
    [8192, "aae792484c8efe4f19e2ca7d371d8c467ffb10748d8a5a1ae579948f718a2a63"],
    [102400, "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085"],
  ];
  const input = Uint8Array.from({ length: 102400 }, (_, i) => i % 251);
  const h = await createBlake3();
  for (const [length, hex] of vectors) {
    h.init();
    h.update(input.subarray(0, length));
    assertEquals(toHex(h.digest("binary")), hex, `length ${length}`);
    // Fed in uneven pieces, as the writer and readers feed it.
    h.init();
    for (let at = 0; at < length; at += 1000) {
      h.update(input.subarray(at, Math.min(at + 1000, length)));
    }
    assertEquals(toHex(h.digest("binary")), hex, `length ${length} in pieces`);
  }
});

/** Deterministic bytes, and cut points that include empty parts and odd offsets. */
function sample(n: number, seed: number): { data: Uint8Array; cuts: number[] } {
  let s = seed;
  const next = () => (s = (Math.imul(s, 1_103_515_245) + 12_345) >>> 0);
  const data = new Uint8Array(n).map(() => next() >>> 24);
  const cuts = [0, 0, 1, 1];
  while (cuts.length < 12) cuts.push(next() % (n + 1));
  cuts.push(n, n);
  return { data, cuts: cuts.sort((a, b) => a - b) };
}

Deno.test("crc32c() and BLAKE3 give the known answers", async () => {
  const wasmCrc32c = await createWasmCrc32c();
  assertEquals(crc32c(ascii("123456789")), 0xe3069283);
  // With the addon, where it loads (crc32c() switches to it).
  await loadNativeChecksums();
  assertEquals(crc32c(ascii("123456789")), 0xe3069283);
  assertEquals(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8_ab43);
  assertEquals(wasmCrc32c(ascii("123456789")), 0xe3069283);
  assertEquals(crc32c(), 0);
  const expected: [string, string][] = [
    ["", "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"],
    ["abc", "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"],
  ];
  for (const h of [await createBlake3(), await createWasmBlake3()]) {
    for (const [text, hex] of expected) {
      h.init();
      h.update(ascii(text));
      assertEquals(toHex(h.digest("binary")), hex);
    }
  }
});

Deno.test("crc32c() and BLAKE3 give the same values in this thread's backend and in WebAssembly", async () => {
  const wasmCrc32c = await createWasmCrc32c();
  const native = await createBlake3();
  const wasm = await createWasmBlake3();
  // Around the braided loop's 32-byte steps, which need two of them.
  const braid = [65, 95, 96, 97, 127, 128, 129, 200];
  for (const size of [0, 1, 63, 64, ...braid, 1024, 1025, 70_000, 1 << 20, (3 << 20) + 4097]) {
    const { data, cuts } = sample(size, size + 7);
    // Also from shared memory and at an odd offset, as the live engine hands pages over.
    const shared = new Uint8Array(new SharedArrayBuffer(size + 3)).subarray(3);
    shared.set(data);
    for (const bytes of [data, shared]) {
      const parts = cuts.slice(1).map((c, i) => bytes.subarray(cuts[i], c));
      assertEquals(crc32c(...parts), wasmCrc32c(bytes), `CRC32C of ${size} bytes in parts`);
      assertEquals(crc32c(bytes), wasmCrc32c(bytes), `CRC32C of ${size} bytes`);
      // This library's module, which crc32c() no longer uses once the addon has loaded.
      assertEquals(crc32cParts(parts), wasmCrc32c(bytes), `SIMD CRC32C of ${size} bytes`);
      native.init();
      wasm.init();
      for (const p of parts) native.update(p);
      wasm.update(bytes);
      assertEquals(toHex(native.digest("binary")), toHex(wasm.digest("binary")), `${size} bytes`);
    }
  }
});

Deno.test("checksums run natively or in this library's SIMD module where they can", async () => {
  const ffi = Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  const prebuilt = ["linux", "darwin", "windows"].includes(Deno.build.os) &&
    ["x86_64", "aarch64"].includes(Deno.build.arch);
  // A dependency or a module that stopped loading would cost the writer its speed and show
  // nowhere else.
  const want = ffi && prebuilt ? "native" : "wasm";
  assertEquals(await checksumBackends(), {
    blake3: want,
    crc32c: want === "native" ? "native" : "simd",
    xxh3: "simd",
  });
});

Deno.test("hashPagesInto() gives hash-wasm's XXH3-128 for every page size and content", async () => {
  const reference = await createWasmPageHasher();
  const expect = (page: Uint8Array) => {
    reference.init();
    reference.update(page);
    return toHex(reference.digest("binary"));
  };
  // Around XXH3's block (1024) and stripe (64) boundaries, and the format's page sizes; the
  // batch API copies at most 1 MiB at a time, so 4 MiB of 4 KiB pages crosses that too.
  const sizes = [241, 255, 256, 319, 320, 512, 1023, 1024, 1025, 1088, 2047, 2048, 4096, 16384];
  for (const size of [...sizes, 1 << 21]) {
    const count = size === 1 << 21 ? 2 : 3;
    const { data } = sample(size * count, size);
    if (size === 4096) data.fill(0, 0, 4096); // an all-zero page too
    const out = new Uint8Array(8 + count * 16);
    hashPagesInto(data, size, out, 8);
    for (let k = 0; k < count; k++) {
      const page = data.subarray(k * size, (k + 1) * size);
      assertEquals(toHex(out.subarray(8 + k * 16, 24 + k * 16)), expect(page), `${size} bytes`);
      const one = new Uint8Array(16);
      hashPageInto(page, one, 0);
      assertEquals(toHex(one), expect(page));
    }
  }
  const many = sample(1024 * 4096, 99).data;
  const out = new Uint8Array(1024 * 16);
  hashPagesInto(many, 4096, out, 0);
  for (const k of [0, 255, 256, 257, 511, 1023]) {
    assertEquals(
      toHex(out.subarray(k * 16, k * 16 + 16)),
      expect(many.subarray(k * 4096, (k + 1) * 4096)),
    );
  }
  assertThrows(() => hashPageInto(new Uint8Array(240), new Uint8Array(16), 0), RangeError, "240");
});

Deno.test("digestPages() tells zero pages apart and gives hash-wasm's XXH3-128 of the others", async () => {
  const reference = await createWasmPageHasher();
  const expect = (page: Uint8Array) => {
    reference.init();
    reference.update(page);
    return toHex(reference.digest("binary"));
  };
  // 241 and 1000 are no multiple of 64: the path without the page area.
  for (const size of [241, 256, 320, 1000, 4096, 65536]) {
    const count = 7;
    const { data } = sample(size * count, size + 1);
    data.fill(0, 0, size); // zero
    data.fill(0, size, 2 * size).fill(1, 2 * size - 1, 2 * size); // only its last byte set
    data.fill(0, 3 * size, 4 * size).fill(9, 3 * size, 3 * size + 1); // only its first byte set
    data.fill(0, 5 * size, 6 * size); // zero again
    const d = digestPages(count, size, (area) => {
      assertEquals(area.length, count * size);
      area.set(data);
      return null;
    });
    if (typeof d === "string") throw new Error(d);
    assertEquals([...d.zero], [1, 0, 0, 0, 0, 1, 0], `${size}-byte pages`);
    for (let k = 0; k < count; k++) {
      if (d.zero[k] === 1) continue;
      const page = data.subarray(k * size, (k + 1) * size);
      assertEquals(toHex(d.hashes.subarray(k * 16, k * 16 + 16)), expect(page), `${size}, ${k}`);
    }
  }
  assertEquals(digestPages(2, 4096, () => "no data"), "no data");
});
