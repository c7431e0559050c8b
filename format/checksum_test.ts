import { assertEquals } from "@std/assert/mod.js";
import {
  checksumBackends,
  crc32c,
  createBlake3,
  createWasmBlake3,
  createWasmCrc32c,
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
  for (const size of [0, 1, 63, 64, 1024, 1025, 70_000, 1 << 20]) {
    const { data, cuts } = sample(size, size + 7);
    // Also from shared memory and at an odd offset, as the live engine hands pages over.
    const shared = new Uint8Array(new SharedArrayBuffer(size + 3)).subarray(3);
    shared.set(data);
    for (const bytes of [data, shared]) {
      const parts = cuts.slice(1).map((c, i) => bytes.subarray(cuts[i], c));
      assertEquals(crc32c(...parts), wasmCrc32c(bytes), `CRC32C of ${size} bytes`);
      native.init();
      wasm.init();
      for (const p of parts) native.update(p);
      wasm.update(bytes);
      assertEquals(toHex(native.digest("binary")), toHex(wasm.digest("binary")), `${size} bytes`);
    }
  }
});

Deno.test("checksums run natively where addons may load", async () => {
  const ffi = Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  const prebuilt = ["linux", "darwin", "windows"].includes(Deno.build.os) &&
    ["x86_64", "aarch64"].includes(Deno.build.arch);
  // A dependency that stopped loading would cost the writer its speed without any other sign.
  const want = ffi && prebuilt ? "native" : "wasm";
  assertEquals(await checksumBackends(), { crc32c: want, blake3: want });
});
