import { assertEquals } from "@std/assert/mod.js";
import type { VmDescStruct } from "./model.ts";
import { decodeVmState } from "./vmstate_decode.ts";

const DESC: VmDescStruct = {
  fields: [
    { name: "a", type: "uint16", size: 2 },
    { name: "regs", type: "uint32", size: 4, array_len: 2 },
    { name: "neg", type: "int8", size: 1 },
    { name: "le", type: "int32 le", size: 4 },
    { name: "on", type: "bool", size: 1 },
    {
      name: "s",
      type: "struct",
      size: 1,
      struct: { fields: [{ name: "x", type: "uint8", size: 1 }] },
    },
    { name: "buf", type: "buffer", size: 3 },
  ],
  subsections: [{ vmsd_name: "dev/sub", fields: [{ name: "y", type: "uint8", size: 1 }] }],
};
const SUB = [5, 7, ...new TextEncoder().encode("dev/sub"), 0, 0, 0, 1, 0x42];
const DATA = [0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xff, 4, 0, 0, 0, 1, 9, 1, 2, 3, ...SUB];

Deno.test("decodeVmState() decodes integers, arrays, structs, buffers and subsections", () => {
  const r = decodeVmState(new Uint8Array(DATA), DESC);
  assertEquals(r, {
    complete: true,
    fields: {
      a: "0x0001",
      regs: ["0x00000002", "0x00000003"],
      neg: "0xff",
      le: "0x00000004",
      on: true,
      s: { x: "0x09" },
      buf: "01 02 03",
      "dev/sub": { y: "0x42" },
    },
  });
});

Deno.test("decodeVmState() reports a description that does not fit the bytes", () => {
  const short = decodeVmState(new Uint8Array(DATA.slice(0, 5)), DESC);
  assertEquals(short.complete, false);
  assertEquals(short.error, "field 'regs' needs 4 bytes at section byte 2, 3 left");
  const long = decodeVmState(new Uint8Array([...DATA, 0]), DESC);
  assertEquals([long.complete, long.error], [
    false,
    `the description accounts for ${DATA.length} of ${DATA.length + 1} bytes`,
  ]);
  const noSub = decodeVmState(new Uint8Array([...DATA.slice(0, 20), 6]), DESC);
  assertEquals(noSub.error, "subsection 'dev/sub' expected at section byte 20, found 0x06");
});
