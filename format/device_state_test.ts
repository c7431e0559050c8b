import { assertEquals, assertThrows } from "@std/assert/mod.js";
import { decodeDeviceState, encodeDeviceState } from "./device_state.ts";

Deno.test("encodeDeviceState() gives equal bytes for equal input in any key order", () => {
  const a = encodeDeviceState({
    b: [1, 2.5, -3],
    a: { y: new Uint8Array([1, 2]), x: true },
    c: null,
  });
  const b = encodeDeviceState({
    c: null,
    a: { x: true, y: new Uint8Array([1, 2]) },
    b: [1, 2.5, -3],
  });
  assertEquals(a, b);
  assertEquals(Object.getPrototypeOf(a), Uint8Array.prototype);
});

Deno.test("decodeDeviceState() returns plain data with Uint8Array byte strings", () => {
  const v = decodeDeviceState(
    encodeDeviceState({ regs: new Uint8Array([7, 8]), pc: 0x8000_0000, big: 2n ** 60n }),
  );
  assertEquals(v, { big: 2n ** 60n, pc: 0x8000_0000, regs: new Uint8Array([7, 8]) });
  assertEquals(Object.getPrototypeOf((v as { regs: Uint8Array }).regs), Uint8Array.prototype);
});

Deno.test("encodeDeviceState() refuses class instances", () => {
  assertThrows(() => encodeDeviceState({ d: new Date(0) } as never), Error, "is not plain data");
});

Deno.test("decodeDeviceState() rejects absurd sizes and nesting without allocating", () => {
  // Array claiming 2^32-1 items in 5 bytes.
  assertThrows(
    () => decodeDeviceState(new Uint8Array([0x9a, 0xff, 0xff, 0xff, 0xff])),
    Error,
    "cannot fit",
  );
  // Byte string claiming 2^63 bytes.
  assertThrows(
    () => decodeDeviceState(new Uint8Array([0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])),
    Error,
    "runs past the end",
  );
  // 10 000 nested arrays.
  const deep = new Uint8Array(10_001).fill(0x81);
  deep[10_000] = 0x00;
  assertThrows(() => decodeDeviceState(deep), Error, "nests deeper than 64");
  assertThrows(() => decodeDeviceState(new Uint8Array([0xff])), Error, "stray CBOR break");
  assertThrows(() => decodeDeviceState(new Uint8Array([0x01, 0x02])), Error, "1 bytes follow");
  assertThrows(() => decodeDeviceState(new Uint8Array([])), Error, "ends inside an item");
});
