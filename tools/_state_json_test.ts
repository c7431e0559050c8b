import { assertEquals } from "@std/assert/mod.js";
import { diffStates, stateToJson } from "./_state_json.ts";

Deno.test("stateToJson() shows bytes as hex, bigints as strings", () => {
  assertEquals(stateToJson({ a: 1n << 70n, b: new Uint8Array([0, 171]), c: [true, null] }), {
    a: "1180591620717411303424",
    b: { $bytes: 2, hex: "00ab" },
    c: [true, null],
  });
});

Deno.test("stateToJson() cuts long byte strings and says so", () => {
  assertEquals(stateToJson(new Uint8Array(10), 4), {
    $bytes: 10,
    hex: "00000000",
    truncated: true,
  });
});

Deno.test("diffStates() names every differing field by path", () => {
  const a = { pc: 4, x: [0, 1, 2], uart: { lsr: 0x60, fifo: new Uint8Array([1, 2, 3]) }, gone: 1 };
  const b = {
    pc: 8,
    x: [0, 1, 3, 4],
    uart: { lsr: 0x60, fifo: new Uint8Array([1, 9, 3]) },
    "new-key": 2,
  };
  assertEquals(diffStates(a, b), [
    { path: "gone", a: 1 },
    { path: '["new-key"]', b: 2 },
    { path: "pc", a: 4, b: 8 },
    { path: "uart.fifo@1", a: { $bytes: 2, hex: "0203" }, b: { $bytes: 2, hex: "0903" } },
    { path: "x[2]", a: 2, b: 3 },
    { path: "x[3]", b: 4 },
  ]);
});

Deno.test("diffStates() returns nothing for equal states and stops at the limit", () => {
  assertEquals(
    diffStates({ a: [1, { b: new Uint8Array([1]) }] }, { a: [1, { b: new Uint8Array([1]) }] }),
    [],
  );
  assertEquals(diffStates([1, 2, 3], [4, 5, 6], 2).length, 2);
});

Deno.test("diffStates() reports a change of type at the field", () => {
  assertEquals(diffStates({ v: 1 }, { v: "1" }), [{ path: "v", a: 1, b: "1" }]);
});
