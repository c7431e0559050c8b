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
  toHex,
} from "./checksum.ts";

const ascii = (s: string) => new TextEncoder().encode(s);

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
  assertEquals(await checksumBackends(), { blake3: want, crc32c: "simd", xxh3: "simd" });
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
