import { assertEquals, assertMatch, assertThrows } from "@std/assert/mod.js";
import {
  EM_RISCV,
  encodeElfCore,
  encodePrstatusRv32,
  ET_CORE,
  layoutElfCore,
  NT_PRSTATUS,
  PRSTATUS_OFFSET_REG,
  PRSTATUS_SIZE_RV32,
  PT_LOAD,
  PT_NOTE,
} from "./elf_core.ts";
import { GDB_GUEST_ELF, loadGuestImage, runGdb } from "../tests/_guest_image.ts";
import { needTool } from "../tests/_external_tools.ts";

const gdb = await needTool("gdb-multiarch");

function registers(pc: number): { pc: number; x: number[] } {
  const x = Array.from({ length: 32 }, (_, i) => 0x1000 + i);
  x[0] = 0;
  return { pc, x };
}

Deno.test("encodePrstatusRv32() puts pc then x1..x31 at pr_reg", () => {
  const desc = encodePrstatusRv32(registers(0x8000_0040));
  assertEquals(desc.length, PRSTATUS_SIZE_RV32);
  const v = new DataView(desc.buffer);
  assertEquals(v.getUint32(PRSTATUS_OFFSET_REG, true), 0x8000_0040);
  assertEquals(v.getUint32(PRSTATUS_OFFSET_REG + 4, true), 0x1001);
  assertEquals(v.getUint32(PRSTATUS_OFFSET_REG + 31 * 4, true), 0x1000 + 31);
});

Deno.test("encodePrstatusRv32() rejects a short register file", () => {
  assertThrows(
    () => encodePrstatusRv32({ pc: 0, x: [1, 2] }),
    RangeError,
    "Cannot encode prstatus: expected 32 x registers, got 2",
  );
});

Deno.test("layoutElfCore() writes an ET_CORE header, a PT_NOTE and one PT_LOAD per region", () => {
  const layout = layoutElfCore(
    [{ address: 0x8000_0000, size: 8192 }, { address: 0x1000_0000, size: 256 }],
    registers(0x8000_0000),
    { flags: 1 },
  );
  const v = new DataView(layout.header.buffer);
  assertEquals([...layout.header.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46]);
  assertEquals(layout.header[4], 1); // ELFCLASS32
  assertEquals(v.getUint16(16, true), ET_CORE);
  assertEquals(v.getUint16(18, true), EM_RISCV);
  assertEquals(v.getUint32(36, true), 1);
  assertEquals(v.getUint16(44, true), 3);
  assertEquals(v.getUint32(52, true), PT_NOTE);
  const noteOff = v.getUint32(56, true);
  assertEquals(v.getUint32(noteOff + 4, true), PRSTATUS_SIZE_RV32);
  assertEquals(v.getUint32(noteOff + 8, true), NT_PRSTATUS);
  assertEquals(
    new TextDecoder().decode(layout.header.subarray(noteOff + 12, noteOff + 16)),
    "CORE",
  );
  assertEquals(v.getUint32(84, true), PT_LOAD);
  assertEquals(v.getUint32(84 + 4, true), 4096);
  assertEquals(v.getUint32(84 + 8, true), 0x8000_0000);
  assertEquals(v.getUint32(84 + 16, true), 8192);
  assertEquals(layout.segments.map((s) => s.fileOffset), [4096, 12288]);
  assertEquals(layout.fileSize, 12288 + 256);
});

Deno.test("layoutElfCore() without registers has an empty note", () => {
  const layout = layoutElfCore([{ address: 0, size: 10 }], undefined);
  const v = new DataView(layout.header.buffer);
  assertEquals(v.getUint32(52 + 16, true), 0);
});

Deno.test("layoutElfCore() rejects a region past 4 GiB", () => {
  assertThrows(
    () => layoutElfCore([{ address: 0xffff_f000, size: 0x2000 }], undefined),
    RangeError,
    "Cannot build ELF core: end address",
  );
});

Deno.test({
  name: `encodeElfCore() output opens in gdb-multiarch with variables and registers${gdb.note}`,
  ignore: gdb.ignore,
}, async (t) => {
  gdb.check();
  const elf = await Deno.readFile(GDB_GUEST_ELF);
  const image = loadGuestImage(elf, 0x8000_0000, 64 * 1024);
  const counter = image.symbols.get("snap_counter")!;
  new DataView(image.ram.buffer).setUint32(counter - image.base, 424242, true);
  const regs = registers(image.entry + 4);
  regs.x[2] = 0x8000_8000;
  const dir = await Deno.makeTempDir();
  try {
    const core = `${dir}/core`;
    await Deno.writeFile(
      core,
      encodeElfCore([{ address: image.base, data: image.ram }], regs, { flags: image.flags }),
    );
    const out = await runGdb(GDB_GUEST_ELF.pathname, core, [
      "print snap_counter",
      "print snap_point",
      "info registers pc sp",
    ]);
    await t.step("variable", () => assertMatch(out, /\$1 = 424242/));
    await t.step("struct", () => assertMatch(out, /\$2 = \{x = 10, y = -20\}/));
    await t.step(
      "pc",
      () => assertMatch(out, new RegExp(`pc\\s+0x${(image.entry + 4).toString(16)}`)),
    );
    await t.step("sp", () => assertMatch(out, /sp\s+0x80008000/));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
