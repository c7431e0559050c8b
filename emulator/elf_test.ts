import { assertEquals, assertThrows } from "@std/assert/mod.js";
import { ElfError, parseElf } from "./elf.ts";
import { Machine } from "./machine.ts";

/** Discards guest UART output (the default sink is stdout). */
const QUIET = (_: Uint8Array) => {};

const HELLO = Deno.readFileSync(new URL("./guests/build/hello.elf", import.meta.url));
const HTIF = Deno.readFileSync(new URL("./testdata/htif.elf", import.meta.url));

function patched(f: (dv: DataView, b: Uint8Array) => void, base = HELLO): Uint8Array {
  const b = base.slice();
  f(new DataView(b.buffer), b);
  return b;
}

Deno.test("parseElf() reads the entry, PT_LOAD segments and symbols", () => {
  const img = parseElf(HTIF);
  assertEquals(img.entry, 0x8000_0000);
  assertEquals(img.segments.map((s) => s.paddr), [0x8000_0000, 0x8000_1000, 0x8000_2000]);
  assertEquals(img.symbols.get("tohost"), 0x8000_1000);
  assertEquals(img.symbols.get("fromhost"), 0x8000_1040);
});

Deno.test("parseElf() rejects what is not a static RV32 little-endian executable", async (t) => {
  const cases: [string, Uint8Array, string, number | undefined][] = [
    ["truncated header", HELLO.slice(0, 40), "the ELF header at offset 0 (52 bytes)", 0],
    ["bad magic", patched((_, b) => (b[0] = 0)), "bad magic", 0],
    ["64-bit", patched((_, b) => (b[4] = 2)), "class 2 is not ELFCLASS32", 4],
    ["big-endian", patched((_, b) => (b[5] = 2)), "not little-endian", 5],
    ["shared object", patched((dv) => dv.setUint16(16, 3, true)), "e_type 3 is not ET_EXEC", 16],
    ["x86", patched((dv) => dv.setUint16(18, 62, true)), "e_machine 62 is not RISC-V", 18],
    [
      "program headers past the end",
      patched((dv) => dv.setUint32(28, HELLO.length - 8, true)),
      "the program header table",
      HELLO.length - 8,
    ],
    [
      "segment past the end",
      patched((dv) => {
        const ph = dv.getUint32(28, true);
        dv.setUint32(ph + 16, 0x100_0000, true); // p_filesz
        dv.setUint32(ph + 20, 0x100_0000, true);
      }),
      "segment 0",
      undefined,
    ],
    [
      "filesz > memsz",
      patched((dv) => {
        const ph = dv.getUint32(28, true);
        dv.setUint32(ph + 20, 0, true);
      }),
      "p_filesz",
      undefined,
    ],
  ];
  for (const [name, bytes, message, offset] of cases) {
    await t.step(name, () => {
      const e = assertThrows(() => parseElf(bytes), ElfError, message);
      if (offset !== undefined) assertEquals(e.offset, offset);
    });
  }
});

Deno.test("Machine.loadElf() refuses segments outside RAM", () => {
  assertThrows(
    () => Machine.fromElf(HELLO, { ramSize: 4096, uartSink: QUIET }),
    ElfError,
    "is outside RAM 0x80000000..0x80001000",
  );
});
