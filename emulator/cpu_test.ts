import { assertEquals } from "@std/assert/mod.js";
import { A, AMO, assemble, li, machineWith, PARK } from "./testdata/asm.ts";
import { CAUSE, INTERRUPT_BIT, MSTATUS_MIE, PRIV_M, PRIV_U } from "./hart.ts";
import { RAM_BASE, UART_BASE } from "./memory_map.ts";
import { mulh, mulhsu, mulhu } from "./cpu.ts";

const T0 = 5, T1 = 6, T2 = 7, A0 = 10, A1 = 11, A2 = 12, A3 = 13, SP = 2;
const MEPC = 0x341, MCAUSE = 0x342, MSTATUS = 0x300;

/** Run an op on two operands: li a0, a; li a1, b; op a2, a0, a1. Returns a2 (signed). */
function binop(enc: (rd: number, a: number, b: number) => number, a: number, b: number): number {
  const m = machineWith([...li(A0, a), ...li(A1, b), enc(A2, A0, A1)]);
  assertEquals(m.run(5), { reason: "budget" });
  return m.hart.x[A2];
}

/** A machine whose trap handler is an infinite loop at RAM_BASE + 0x400 (mtvec set by hand). */
function trapping(program: number[]) {
  const m = machineWith(program);
  m.hart.mtvec = RAM_BASE + 0x400;
  return m;
}

Deno.test("ALU ops compute RV32I results including wrap-around", () => {
  assertEquals(binop(A.add, 0x7fff_ffff, 1), -0x8000_0000);
  assertEquals(binop(A.sub, 0, 1), -1);
  assertEquals(binop(A.slt, -1, 0), 1);
  assertEquals(binop(A.sltu, -1, 0), 0);
  assertEquals(binop(A.sltu, 0, -1), 1);
  assertEquals(binop(A.xor, 0x0f0f, 0x00ff), 0x0ff0);
  assertEquals(binop(A.or, 0x0f00, 0x00f0), 0x0ff0);
  assertEquals(binop(A.and, 0x0ff0, 0x00ff), 0x00f0);
});

Deno.test("shifts use only the low five bits of rs2 (a shift by 32 is a shift by 0)", () => {
  assertEquals(binop(A.sll, 1, 32), 1);
  assertEquals(binop(A.sll, 1, 31), -0x8000_0000);
  assertEquals(binop(A.srl, -0x8000_0000, 33), 0x4000_0000);
  assertEquals(binop(A.sra, -0x8000_0000, 31), -1);
  assertEquals(binop(A.srl, -1, 32), -1);
  const m = machineWith([...li(A0, -16), A.srai(A1, A0, 2), A.srli(A2, A0, 28), A.slli(A3, A0, 4)]);
  m.run(5);
  assertEquals([m.hart.x[A1], m.hart.x[A2], m.hart.x[A3]], [-4, 15, -256]);
});

Deno.test("immediate ops sign-extend their 12-bit immediate", () => {
  const m = machineWith([
    A.addi(A0, 0, -1),
    A.sltiu(A1, 0, -1), // 0 < 0xFFFFFFFF
    A.slti(A2, 0, -1),
    A.xori(A3, A0, 0x7ff),
    A.andi(T0, A0, -2048),
    A.ori(T1, 0, -2048),
  ]);
  m.run(6);
  const x = m.hart.x;
  assertEquals([x[A0], x[A1], x[A2], x[A3], x[T0], x[T1]], [-1, 1, 0, ~0x7ff, -2048, -2048]);
});

Deno.test("M extension: multiply high parts and division edge cases", () => {
  assertEquals(binop(A.mul, 0x1234_5678, 0x9abc_def0), Math.imul(0x1234_5678, 0x9abc_def0));
  assertEquals(binop(A.mulh, -1, -1), 0);
  assertEquals(binop(A.mulhu, -1, -1), -2); // 0xFFFFFFFE
  assertEquals(binop(A.mulhsu, -1, -1), -1);
  assertEquals(binop(A.mulh, -0x8000_0000, -0x8000_0000), 0x4000_0000);
  // Division by zero (unprivileged spec table 7.1)
  assertEquals(binop(A.div, 7, 0), -1);
  assertEquals(binop(A.divu, 7, 0), -1);
  assertEquals(binop(A.rem, 7, 0), 7);
  assertEquals(binop(A.remu, -7, 0), -7);
  // Overflow
  assertEquals(binop(A.div, -0x8000_0000, -1), -0x8000_0000);
  assertEquals(binop(A.rem, -0x8000_0000, -1), 0);
  // Rounding toward zero, remainder takes the dividend's sign
  assertEquals(binop(A.div, -7, 2), -3);
  assertEquals(binop(A.rem, -7, 2), -1);
  assertEquals(binop(A.divu, -1, 2), 0x7fff_ffff);
  assertEquals(binop(A.remu, -1, 10), 5); // 4294967295 % 10
});

Deno.test("mulh helpers agree with BigInt on random operands", () => {
  let s = 12345;
  const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) | 0);
  for (let k = 0; k < 2000; k++) {
    const a = rnd(), b = rnd();
    const su = (BigInt(a >>> 0) * BigInt(b >>> 0)) >> 32n;
    const ss = (BigInt(a) * BigInt(b)) >> 32n;
    const sm = (BigInt(a) * BigInt(b >>> 0)) >> 32n;
    assertEquals(mulhu(a, b), Number(BigInt.asIntN(32, su)));
    assertEquals(mulh(a, b), Number(BigInt.asIntN(32, ss)));
    assertEquals(mulhsu(a, b), Number(BigInt.asIntN(32, sm)));
  }
});

Deno.test("writes to x0 are discarded and x0 reads as zero", () => {
  const m = machineWith([A.addi(0, 0, 5), A.lui(0, 1), A.add(A0, 0, 0), A.jal(0, 4)]);
  m.run(4);
  assertEquals(m.hart.x[0], 0);
  assertEquals(m.hart.x[A0], 0);
  assertEquals(m.hart.save().x[0], 0);
});

Deno.test("lui, auipc, jal and jalr compute addresses and link registers", () => {
  const m = machineWith([
    A.lui(A0, 0xfffff), // 0
    A.auipc(A1, 1), // 4
    A.jal(1, 8), // 8 -> 16
    0,
    A.addi(T0, 0, 25), // 16
    A.jalr(A2, T0, (RAM_BASE & 0) + 0), // jumps to 25 & ~1 = 24 (outside RAM: fault)
  ]);
  m.hart.mtvec = RAM_BASE + 0x400;
  m.run(6);
  assertEquals(m.hart.x[A0], 0xfffff000 | 0);
  assertEquals(m.hart.x[A1], (RAM_BASE + 4 + 0x1000) | 0);
  assertEquals(m.hart.x[1], (RAM_BASE + 12) | 0);
  assertEquals(m.hart.x[A2], (RAM_BASE + 24) | 0);
  // jalr cleared bit 0 of the target; fetching at 24 is an instruction access fault
  assertEquals(m.hart.mcause, CAUSE.INSTRUCTION_ACCESS_FAULT);
  assertEquals(m.hart.mepc, 24);
  assertEquals(m.hart.mtval, 24);
});

Deno.test("branches compare signed and unsigned", () => {
  // Each taken branch skips an addi that would set a3.
  const prog = [
    ...li(A0, -1),
    ...li(A1, 1),
    A.blt(A0, A1, 8),
    A.addi(A3, A3, 1),
    A.bltu(A1, A0, 8),
    A.addi(A3, A3, 2),
    A.bge(A1, A0, 8),
    A.addi(A3, A3, 4),
    A.bgeu(A0, A1, 8),
    A.addi(A3, A3, 8),
    A.beq(A0, A0, 8),
    A.addi(A3, A3, 16),
    A.bne(A0, A0, 8), // not taken
    A.addi(A3, A3, 32),
  ];
  const m = machineWith(prog);
  m.run(4 + 6 + 1);
  assertEquals(m.hart.x[A3], 32);
});

Deno.test("loads sign- or zero-extend and stores write the low bytes", () => {
  const m = machineWith([
    ...li(A0, RAM_BASE + 0x800),
    ...li(A1, 0x8081_82f3),
    A.sw(A1, A0, 0),
    A.lb(T0, A0, 0),
    A.lbu(T1, A0, 0),
    A.lh(T2, A0, 2),
    A.lhu(A2, A0, 2),
    A.sb(A1, A0, 5),
    A.sh(A1, A0, 6),
    A.lw(A3, A0, 4),
  ]);
  m.run(12);
  const x = m.hart.x;
  assertEquals([x[T0], x[T1], x[T2], x[A2]], [-13, 0xf3, -0x7f7f, 0x8081]);
  assertEquals(x[A3] >>> 0, 0x82f3_f300);
});

Deno.test("misaligned loads and stores to RAM are performed, as on QEMU", () => {
  const m = trapping([
    ...li(A0, RAM_BASE + 0xffe), // the word at 0xffe straddles two pages
    ...li(A1, 0x4433_2211),
    A.sw(A1, A0, 0),
    A.lw(T0, A0, 0),
    A.lh(T1, A0, 1), // bytes 0x22 0x33
    A.lhu(T2, A0, -1), // bytes 0x00 0x11
    A.sh(A1, A0, 3), // 0x11 0x22 at 0x1001
    A.lw(A2, A0, 2), // 0x1000: 0x33 0x11 0x22 0x00
  ]);
  assertEquals(m.run(10), { reason: "budget" });
  const x = m.hart.x;
  assertEquals([x[T0], x[T1], x[T2], x[A2]], [0x4433_2211, 0x3322, 0x1100, 0x0022_1133]);
  assertEquals(m.hart.pc >>> 0, RAM_BASE + 40, "no trap");
});

Deno.test("misaligned LR/SC and AMOs trap with the address in mtval", async (t) => {
  const cases = [
    { name: "lr.w", ins: A.lr(T0, A1), cause: CAUSE.LOAD_MISALIGNED },
    { name: "sc.w", ins: A.sc(T0, T1, A1), cause: CAUSE.STORE_MISALIGNED },
    { name: "amoadd.w", ins: A.amo(AMO.add, T0, T1, A1), cause: CAUSE.STORE_MISALIGNED },
    { name: "amoswap.w", ins: A.amo(AMO.swap, T0, T1, A1), cause: CAUSE.STORE_MISALIGNED },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const m = trapping([...li(A0, RAM_BASE + 0x800), ...li(A1, RAM_BASE + 0x802), c.ins]);
      m.run(5);
      assertEquals(m.hart.mcause, c.cause);
      assertEquals(m.hart.mtval >>> 0, RAM_BASE + 0x802);
      assertEquals(m.hart.mepc >>> 0, RAM_BASE + 16);
      assertEquals(m.hart.retired, 5, "4 retired, the trap, then one `j .` at the handler");
      assertEquals(m.hart.pc >>> 0, RAM_BASE + 0x400);
    });
  }
});

Deno.test("misaligned MMIO accesses trap; accesses running off the end of RAM fault", () => {
  const m = trapping([...li(A0, UART_BASE + 1), A.lw(T0, A0, 0)]);
  m.run(3);
  assertEquals([m.hart.mcause, m.hart.mtval >>> 0], [CAUSE.LOAD_MISALIGNED, UART_BASE + 1]);
  const e = trapping([...li(A0, RAM_BASE + (1 << 20) - 2), A.sw(T0, A0, 0)]);
  e.run(3);
  assertEquals([e.hart.mcause, e.hart.mtval >>> 0], [
    CAUSE.STORE_ACCESS_FAULT,
    RAM_BASE + (1 << 20) - 2,
  ]);
});

Deno.test("accesses to unmapped addresses raise access faults", async (t) => {
  const cases = [
    { name: "lw", ins: A.lw(T0, A0, 0), cause: CAUSE.LOAD_ACCESS_FAULT },
    { name: "lb", ins: A.lb(T0, A0, 0), cause: CAUSE.LOAD_ACCESS_FAULT },
    { name: "sw", ins: A.sw(T0, A0, 0), cause: CAUSE.STORE_ACCESS_FAULT },
    { name: "sb", ins: A.sb(T0, A0, 0), cause: CAUSE.STORE_ACCESS_FAULT },
    { name: "amoswap.w", ins: A.amo(AMO.swap, T0, T1, A0), cause: CAUSE.STORE_ACCESS_FAULT },
    { name: "lr.w", ins: A.lr(T0, A0), cause: CAUSE.LOAD_ACCESS_FAULT },
  ];
  for (const addr of [0x4000_0000, RAM_BASE + (1 << 20)]) {
    for (const c of cases) {
      await t.step(`${c.name} at 0x${addr.toString(16)}`, () => {
        const m = trapping([...li(A0, addr), c.ins]);
        m.run(3);
        assertEquals(m.hart.mcause, c.cause);
        assertEquals(m.hart.mtval >>> 0, addr);
      });
    }
  }
});

Deno.test("illegal instructions trap with the instruction bits in mtval", async (t) => {
  const cases = [
    { name: "all zero", word: 0, tval: 0 },
    { name: "all ones", word: 0xffff_ffff, tval: 0xffff_ffff },
    { name: "sret (no S-mode)", word: 0x1020_0073, tval: 0x1020_0073 },
    { name: "flw (no F)", word: 0x0005_2007, tval: 0x0005_2007 },
    { name: "unknown CSR 0x7c0", word: A.csrrs(A0, 0x7c0, 0), tval: A.csrrs(A0, 0x7c0, 0) },
    { name: "write to read-only mhartid", word: A.csrrw(A0, 0xf14, A1), tval: -1 },
    { name: "write to cycle", word: A.csrrw(0, 0xc00, A1), tval: -1 },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const m = trapping([c.word]);
      m.run(1);
      assertEquals(m.hart.mcause, CAUSE.ILLEGAL_INSTRUCTION);
      assertEquals(m.hart.mtval >>> 0, (c.tval === -1 ? c.word : c.tval) >>> 0);
      assertEquals(m.hart.mepc >>> 0, RAM_BASE);
      assertEquals(m.hart.retired, 1, "only the `j .` at the handler retired");
    });
  }
});

Deno.test("compressed instructions execute as their expansions", () => {
  // c.li a0, 5; c.addi a0, -3; c.mv a1, a0; c.add a1, a0; c.slli a1, 3; c.srai/c.andi on s0;
  // c.lui a2, 1; c.addi16sp sp, 32; c.addi4spn a3, sp, 8; c.sw a0, 0(a3)... c.lw a4, 0(a3)
  const m = machineWith([
    ...li(SP, RAM_BASE + 0x1000),
    { c: 0x4515 }, // c.li a0, 5
    { c: 0x1575 }, // c.addi a0, -3
    { c: 0x85aa }, // c.mv a1, a0
    { c: 0x95aa }, // c.add a1, a0
    { c: 0x058e }, // c.slli a1, 3
    { c: 0x6605 }, // c.lui a2, 1
    { c: 0x6105 }, // c.addi16sp sp, 32
    { c: 0x0034 }, // c.addi4spn a3, sp, 8
    { c: 0xc288 }, // c.sw a0, 0(a3)
    { c: 0x4298 }, // c.lw a4, 0(a3)
    { c: 0x8d09 }, // c.sub a0, a0, a0 -> 0 (rd'=a0, rs2'=a0)
    { c: 0x0001 }, // c.nop
  ]);
  assertEquals(m.run(14), { reason: "budget" });
  const x = m.hart.x;
  assertEquals(x[A1], 32);
  assertEquals(x[A2], 0x1000);
  assertEquals(x[SP] >>> 0, RAM_BASE + 0x1020);
  assertEquals(x[A3] >>> 0, RAM_BASE + 0x1028);
  assertEquals(x[14], 2);
  assertEquals(x[A0], 0);
  assertEquals(m.hart.pc >>> 0, RAM_BASE + 8 + 24);
});

Deno.test("compressed jumps and branches link pc + 2", () => {
  const m = machineWith([
    { c: 0x2011 }, // 0: c.jal +4 -> 4, ra = 2
    { c: 0x0001 }, // 2: c.nop (skipped)
    { c: 0xc111 }, // 4: c.beqz a0, +4 -> 8 (a0 = 0)
    { c: 0x0001 }, // 6
    { c: 0x9582 }, // 8: c.jalr a1 (a1 = 0 -> fault at 0; ra = 10)
  ]);
  m.hart.mtvec = RAM_BASE + 0x400;
  m.run(4);
  assertEquals(m.hart.x[1] >>> 0, RAM_BASE + 10);
  assertEquals(m.hart.mcause, CAUSE.INSTRUCTION_ACCESS_FAULT);
  assertEquals(m.hart.mtval, 0);
});

Deno.test("reserved compressed encodings are illegal", async (t) => {
  for (
    const [name, h] of [
      ["c.addi4spn with zero immediate", 0x0010],
      ["c.lwsp with rd = 0", 0x4002],
      ["c.jr with rs1 = 0", 0x8002],
      ["c.slli with shamt[5] on RV32", 0x1006],
      ["c.lui with zero immediate", 0x6501],
      ["c.fld (no D)", 0x2000 | 0x0004],
    ] as const
  ) {
    await t.step(name, () => {
      const m = trapping([]);
      m.ram.write(RAM_BASE, Uint8Array.of(h & 0xff, h >>> 8));
      m.run(1);
      assertEquals(m.hart.mcause, CAUSE.ILLEGAL_INSTRUCTION);
      assertEquals(m.hart.mtval, h);
    });
  }
});

Deno.test("AMOs return the old value and store the combined value", async (t) => {
  const cases: [string, number, number, number, number][] = [
    ["swap", AMO.swap, 5, -3, -3],
    ["add", AMO.add, 5, -3, 2],
    ["xor", AMO.xor, 6, 3, 5],
    ["and", AMO.and, 6, 3, 2],
    ["or", AMO.or, 6, 3, 7],
    ["min", AMO.min, -5, 3, -5],
    ["max", AMO.max, -5, 3, 3],
    ["minu", AMO.minu, -5, 3, 3],
    ["maxu", AMO.maxu, -5, 3, -5],
  ];
  for (const [name, f5, mem, src, stored] of cases) {
    await t.step(name, () => {
      const m = machineWith([
        ...li(A0, RAM_BASE + 0x800),
        ...li(A1, mem),
        A.sw(A1, A0, 0),
        ...li(A1, src),
        A.amo(f5, A2, A1, A0),
        A.lw(A3, A0, 0),
      ]);
      m.run(9);
      assertEquals(m.hart.x[A2], mem);
      assertEquals(m.hart.x[A3], stored);
    });
  }
  await t.step("rd = rs2 reads rs2 before writing rd", () => {
    const m = machineWith([
      ...li(A0, RAM_BASE + 0x800),
      A.addi(A1, 0, 7),
      A.sw(A1, A0, 0),
      A.addi(A1, 0, 1),
      A.amo(AMO.add, A1, A1, A0),
      A.lw(A3, A0, 0),
    ]);
    m.run(7);
    assertEquals([m.hart.x[A1], m.hart.x[A3]], [7, 8]);
  });
});

Deno.test("LR/SC: sc succeeds once on the reserved word and fails otherwise", () => {
  const m = machineWith([
    ...li(A0, RAM_BASE + 0x800),
    A.addi(A1, 0, 42),
    A.lr(T0, A0),
    A.sc(T1, A1, A0), // succeeds: t1 = 0
    A.sc(T2, A1, A0), // reservation gone: t2 = 1
    A.addi(A1, 0, 43),
    A.lr(T0, A0),
    A.addi(A0, A0, 4),
    A.sc(A2, A1, A0), // other address: fails, a2 = 1
    A.lw(A3, A0, -4),
    A.lw(T0, A0, 0),
  ]);
  m.run(12);
  const x = m.hart.x;
  assertEquals([x[T1], x[T2], x[A2], x[A3], x[T0]], [0, 1, 1, 42, 0]);
});

Deno.test("a trap clears the LR reservation", () => {
  const m = machineWith([
    ...li(A0, RAM_BASE + 0x800),
    A.lr(T0, A0),
    A.ecall(), // handler at +0x400 returns with mepc += 4
    A.sc(T1, A1, A0),
  ]);
  m.hart.mtvec = RAM_BASE + 0x400;
  m.ram.write(
    RAM_BASE + 0x400,
    new Uint8Array(
      new Uint32Array([A.csrrs(T2, MEPC, 0), A.addi(T2, T2, 4), A.csrrw(0, MEPC, T2), A.mret()])
        .buffer,
    ),
  );
  m.run(3 + 4 + 1);
  assertEquals(m.hart.x[T1], 1);
});

Deno.test("ecall from M and U modes, mret to U and back", () => {
  // Handler at +0x400: record mcause in a3, skip the ecall, return.
  const handler = [
    A.csrrs(A3, MCAUSE, 0),
    A.csrrs(T2, MEPC, 0),
    A.addi(T2, T2, 4),
    A.csrrw(0, MEPC, T2),
    A.mret(),
  ];
  const m = machineWith([
    A.ecall(), // from M: cause 11
    A.add(A2, A3, 0),
    ...li(T0, RAM_BASE + 0x20),
    A.csrrw(0, MEPC, T0),
    A.mret(), // MPP = 0 after reset: enters U at +0x20
    0,
    0,
    A.ecall(), // +0x20 from U: cause 8
    A.csrrs(A0, MSTATUS, 0), // illegal from U: cause 2
  ]);
  m.ram.write(RAM_BASE + 0x400, new Uint8Array(new Uint32Array(handler).buffer));
  m.hart.mtvec = RAM_BASE + 0x400;
  m.run(5 + 1 + 2 + 2); // handler, add, li, csrrw, mret (the ecall does not retire)
  assertEquals(m.hart.x[A2], CAUSE.ECALL_FROM_M);
  assertEquals(m.hart.priv, PRIV_U);
  assertEquals(m.hart.pc >>> 0, RAM_BASE + 0x20);
  m.run(5);
  assertEquals(m.hart.x[A3], CAUSE.ECALL_FROM_U);
  assertEquals(m.hart.priv, PRIV_U, "mret returned to U (MPP was U)");
  m.run(1);
  assertEquals(m.hart.priv, PRIV_M);
  assertEquals(m.hart.mcause, CAUSE.ILLEGAL_INSTRUCTION);
  assertEquals((m.hart.mstatus >>> 11) & 3, PRIV_U, "MPP records U");
});

Deno.test("ebreak and c.ebreak trap with mtval = 0 (as QEMU) and do not retire", () => {
  const m = trapping([A.addi(A0, 0, 1), A.ebreak()]);
  m.run(2);
  assertEquals(m.hart.mcause, CAUSE.BREAKPOINT);
  assertEquals(m.hart.mepc >>> 0, RAM_BASE + 4);
  assertEquals(m.hart.mtval, 0);
  assertEquals(m.hart.retired, 2, "addi and the handler's `j .`; ebreak did not retire");
  const c = machineWith([{ c: 0x9002 }]); // c.ebreak
  c.hart.mtvec = PARK;
  c.run(1);
  assertEquals([c.hart.mcause, c.hart.mepc >>> 0, c.hart.retired], [3, RAM_BASE, 1]);
});

Deno.test("counters: minstret counts retired instructions; writes replace the increment", () => {
  const m = machineWith([
    A.addi(A0, 0, 1),
    A.csrrs(A1, 0xb02, 0), // minstret = 1 (one retired before it)
    A.csrrs(A2, 0xc00, 0), // cycle = 2
    A.csrrw(0, 0xb02, 0), // minstret := 0
    A.csrrs(A3, 0xb02, 0), // 0: the write replaced its own increment
    A.csrrs(T0, 0xb82, 0), // minstreth = 0
  ]);
  m.run(6);
  const x = m.hart.x;
  assertEquals([x[A1], x[A2], x[A3], x[T0]], [1, 2, 0, 0]);
  assertEquals(m.hart.retired, 6, "retired (what --stop-at counts) is not guest-writable");
});

Deno.test("user-mode counter access is gated by mcounteren", () => {
  const prog = [
    ...li(T0, RAM_BASE + 0x40),
    A.csrrw(0, MEPC, T0),
    A.mret(),
  ];
  while (prog.length < 16) prog.push(0);
  prog.push(A.csrrs(A0, 0xc02, 0)); // +0x40: rdinstret from U
  const m = trapping(prog);
  m.run(5);
  assertEquals(m.hart.mcause, CAUSE.ILLEGAL_INSTRUCTION);
  const m2 = trapping(prog);
  m2.hart.mcounteren = 4;
  m2.run(5);
  assertEquals(m2.hart.x[A0], 4);
});

Deno.test("misa, mhartid and mstatus WARL fields read back as specified", () => {
  const m = machineWith([
    A.csrrs(A0, 0x301, 0),
    A.csrrs(A1, 0xf14, 0),
    A.addi(T0, 0, -1),
    A.csrrw(0, MSTATUS, T0),
    A.csrrs(A2, MSTATUS, 0),
    ...li(T1, 0x1000), // MPP = 0b10 (S, absent)
    A.csrrw(0, MSTATUS, T1),
    A.csrrs(A3, MSTATUS, 0),
  ]);
  m.run(9);
  assertEquals(m.hart.x[A0] >>> 0, 0x4010_1105);
  assertEquals(m.hart.x[A1], 0);
  assertEquals(m.hart.x[A2] >>> 0, 0x0022_1888); // MIE MPIE MPP MPRV TW
  assertEquals(m.hart.x[A3], 0, "MPP = S is not legal and reads as U");
});

Deno.test("vectored mtvec sends interrupts to base + 4 * cause, exceptions to base", () => {
  const m = machineWith([A.csrrsi(0, MSTATUS, 8), A.ecall()]);
  m.hart.mtvec = RAM_BASE + 0x400 + 1;
  m.ram.write(PARK + 12, assemble([A.jal(0, 0)]));
  m.hart.mie = 1 << 3; // MSIE
  m.run(2); // the ecall traps (not retired) to base
  assertEquals(m.hart.pc >>> 0, RAM_BASE + 0x400);
  assertEquals(m.hart.mcause, CAUSE.ECALL_FROM_M);
  // Software interrupt through the CLINT's msip, with MIE set again.
  m.hart.mstatus |= MSTATUS_MIE;
  m.clint.msip = 1;
  m.run(1);
  assertEquals(m.hart.mcause >>> 0, (INTERRUPT_BIT | 3) >>> 0);
  assertEquals(m.hart.mepc >>> 0, RAM_BASE + 0x400, "interrupted the `j .` at base");
  assertEquals(m.hart.pc >>> 0, RAM_BASE + 0x400 + 12, "base + 4 * 3");
  assertEquals(m.hart.mstatus & MSTATUS_MIE, 0);
});

Deno.test("fetching past the end of RAM is an instruction access fault", () => {
  const m = machineWith([...li(T0, RAM_BASE + (1 << 20) - 2), A.jalr(0, T0, 0)]);
  m.hart.mtvec = RAM_BASE + 0x400;
  // A 32-bit instruction whose second half is past RAM
  m.ram.write(RAM_BASE + (1 << 20) - 2, Uint8Array.of(0x13, 0x00));
  m.run(4);
  assertEquals(m.hart.mcause, CAUSE.INSTRUCTION_ACCESS_FAULT);
  assertEquals(m.hart.mtval >>> 0, RAM_BASE + (1 << 20));
  assertEquals(m.hart.priv, PRIV_M);
});

Deno.test("self-modifying code runs the new instruction (decode cache checks the bits)", () => {
  const m = machineWith([
    ...li(A0, RAM_BASE + 16),
    ...li(A1, A.addi(A2, 0, 99)), // 8..15
    A.addi(A2, 0, 1), // 16: executed once, then overwritten
    A.sw(A1, A0, 0), // 20
    A.fenceI(), // 24
    A.jal(0, -12), // 28 -> 16
  ]);
  m.run(7);
  assertEquals(m.hart.x[A2], 1);
  m.run(2); // jal back, then the new instruction at 16
  assertEquals(m.hart.x[A2], 99);
});

Deno.test("a lockup (trap loop without progress) stops the run", () => {
  const m = machineWith([0]);
  m.hart.mtvec = 0x4000_0000; // unmapped: every fetch faults
  const r = m.run(1000);
  assertEquals(r.reason, "lockup");
  assertEquals(m.hart.retired, 0);
});

Deno.test("hart save() is plain data and restore() round-trips it", () => {
  const m = machineWith([...li(A0, 0xdead_beef), A.ecall()]);
  m.hart.mtvec = RAM_BASE + 0x400;
  m.run(3);
  const s = m.hart.save();
  assertEquals(JSON.parse(JSON.stringify(s)), s);
  const m2 = machineWith([]);
  m2.hart.restore(s);
  assertEquals(m2.hart.save(), s);
  assertEquals(m2.hart.priv, PRIV_M);
});

Deno.test("CSR instructions: read-modify-write forms and WARL masks", () => {
  const m = machineWith([
    ...li(T0, 0x1234_5678),
    A.csrrw(A0, 0x340, T0), // mscratch: old 0
    A.csrrsi(A1, 0x340, 0x7), // read 0x12345678, set low bits
    A.csrrci(A2, 0x340, 0x1), // read ...7f, clear bit 0
    A.csrrc(A3, 0x340, T0), // read ...7e, clear the original bits -> 0x6
    A.csrrs(T1, 0x340, 0), // 0x6, no write
    A.addi(T0, 0, -1),
    A.csrrw(0, MEPC, T0),
    A.csrrs(T2, MEPC, 0), // bit 0 is hardwired 0
    A.csrrw(0, 0x304, T0), // mie: only MSIE, MTIE, MEIE stick
    A.csrrs(14, 0x304, 0),
    A.csrrw(0, 0x344, T0), // mip: writes ignored, not illegal
    A.csrrwi(0, 0x305, 3), // mtvec mode 3 is reserved: keeps mode 0
    A.csrrs(15, 0x305, 0),
  ]);
  assertEquals(m.run(15), { reason: "budget" });
  const x = m.hart.x;
  assertEquals(x[A0], 0);
  assertEquals(x[A1], 0x1234_5678);
  assertEquals(x[A2], 0x1234_567f);
  assertEquals(x[A3], 0x1234_567e);
  assertEquals(x[T1], 0x6);
  assertEquals(x[T2], -2);
  assertEquals(x[14], 0x888);
  assertEquals(x[15], 0);
  assertEquals(m.hart.mcause, 0, "nothing trapped");
});

Deno.test("decode cache: writes through ram.write and restore() are seen; stale without", () => {
  const m = machineWith([A.addi(A0, 0, 1), A.jal(0, -4)]);
  m.run(2);
  assertEquals(m.hart.x[A0], 1);
  // Through the gate (loader, devices): picked up at once.
  m.ram.write(RAM_BASE, assemble([A.addi(A0, 0, 2)]));
  m.run(2);
  assertEquals(m.hart.x[A0], 2);
  // Straight into ram.bytes: invisible until invalidateDecodeCache() (restore() calls it).
  m.ram.bytes.set(assemble([A.addi(A0, 0, 3)]), 0);
  m.run(2);
  assertEquals(m.hart.x[A0], 2, "the cached instruction still runs");
  m.restore(m.save());
  m.run(2);
  assertEquals(m.hart.x[A0], 3);
});

Deno.test("decode cache: a store into the second half of a 32-bit instruction invalidates it", () => {
  // The addi at +8 straddles the word at +10; the store changes only its upper half.
  const m = machineWith([
    { c: 0x0001 }, // c.nop at 0, so the 32-bit instructions below sit at 2 mod 4
    ...li(A1, RAM_BASE + 12), // 2, 6
    A.addi(A0, 0, 1), // 10: immediate in the upper halfword (12..13)
    A.sh(A2, A1, 0), // 14: rewrites bytes 12..13 with a2's low half
    A.jal(0, -8), // 18 -> 10
  ]);
  m.hart.x[A2] = A.addi(A0, 0, 7) >>> 16; // upper half of "addi a0, x0, 7"
  m.run(6);
  assertEquals(m.hart.x[A0], 1);
  m.run(1);
  assertEquals(m.hart.x[A0], 7);
});
