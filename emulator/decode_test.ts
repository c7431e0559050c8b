import { assertEquals } from "@std/assert/mod.js";
import * as D from "./decode.ts";
import { A } from "./testdata/asm.ts";

Deno.test("cpu.ts case literals match the operation numbers in decode.ts", async () => {
  const src = await Deno.readTextFile(new URL("./cpu.ts", import.meta.url));
  const seen = new Set<string>();
  for (const m of src.matchAll(/(\d+) \/\* (\w+) \*\//g)) {
    const name = `OP_${m[2]}`;
    const value = (D as unknown as Record<string, number>)[name];
    assertEquals(Number(m[1]), value, `${name} is ${value} in decode.ts, ${m[1]} in cpu.ts`);
    seen.add(name);
  }
  // Every operation except OP_ILLEGAL (the switch's default) has a case.
  const all = Object.keys(D).filter((k) => k.startsWith("OP_") && k !== "OP_LAST");
  for (const k of all) if (k !== "OP_ILLEGAL") assertEquals(seen.has(k), true, `${k} has no case`);
});

Deno.test("decode() extracts fields and immediates of each format", () => {
  assertEquals(D.decode(A.addi(5, 6, -2048)), {
    op: D.OP_ADDI,
    rd: 5,
    rs1: 6,
    rs2: 0,
    imm: -2048,
    length: 4,
  });
  assertEquals(D.decode(A.sw(7, 8, -4)).imm, -4);
  assertEquals(D.decode(A.beq(1, 2, -4096)).imm, -4096);
  assertEquals(D.decode(A.bne(1, 2, 4094)).imm, 4094);
  assertEquals(D.decode(A.jal(1, -0x10_0000)).imm, -0x10_0000);
  assertEquals(D.decode(A.jal(1, 0xf_fffe)).imm, 0xf_fffe);
  assertEquals(D.decode(A.lui(3, 0xfffff)).imm, 0xfffff000 | 0);
  assertEquals(D.decode(A.csrrw(1, 0xfff, 2)).imm, 0xfff);
  assertEquals(D.decode(A.srai(1, 2, 31)), {
    op: D.OP_SRAI,
    rd: 1,
    rs1: 2,
    rs2: 0,
    imm: 31,
    length: 4,
  });
});

Deno.test("decode() expands compressed forms with their immediates", () => {
  // c.j -2048 (0xb001), c.beqz s0, -256 (0xd001 | rs1' = s0), c.lwsp a0, 252(sp)
  assertEquals(D.decode(0xb001), { op: D.OP_JAL, rd: 0, rs1: 0, rs2: 0, imm: -2048, length: 2 });
  assertEquals(D.decode(0xd001).imm, -256);
  assertEquals(D.decode(0x557e), {
    op: D.OP_LW,
    rd: 10,
    rs1: 2,
    rs2: 0,
    imm: 252,
    length: 2,
  });
  assertEquals(D.decode(0x7101).imm, -512); // c.addi16sp sp, -512
  assertEquals(D.decode(0x1ffc).imm, 1020); // c.addi4spn s7? rd' = x15, nzuimm 1020
  assertEquals(D.decode(0xdffe).imm, 252); // c.swsp s7? uimm 252
  assertEquals(D.decode(0x0000).op, D.OP_ILLEGAL);
});

Deno.test("decode() rejects reserved 32-bit encodings", () => {
  for (
    const w of [
      0x0000_2063, // branch funct3 2
      0x0000_3003, // ld (RV64)
      0x0000_3023, // sd (RV64)
      0x4000_1013, // slli with funct7 0x20
      0x0200_50b3 | (0x20 << 25), // funct7 0x22
      0x0000_302f, // AMO funct3 3 (.d)
      0x1000_202f | (1 << 20), // lr.w with rs2 != 0
    ]
  ) {
    assertEquals(D.decode(w).op, D.OP_ILLEGAL, `0x${w.toString(16)}`);
  }
});
