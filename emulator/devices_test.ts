import { assertEquals } from "@std/assert/mod.js";
import { A, assemble, li, machineWith, PARK } from "./testdata/asm.ts";
import { Machine } from "./machine.ts";
import { parseElf } from "./elf.ts";
import { INTERRUPT_BIT, MIP_MEIP, MIP_MTIP, MSTATUS_MIE } from "./hart.ts";
import { CLINT_BASE, RAM_BASE, SIFIVE_TEST_BASE, UART_BASE } from "./memory_map.ts";
import { Uart } from "./devices/uart.ts";
import { Plic } from "./devices/plic.ts";

/** Discards guest UART output (the default sink is stdout). */
const QUIET = (_: Uint8Array) => {};

const T0 = 5, T1 = 6, A0 = 10, A1 = 11, A2 = 12, A3 = 13;

function collect(m: Machine): () => string {
  const chunks: Uint8Array[] = [];
  m.uart.setSink((b) => chunks.push(b.slice()));
  return () => new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}

Deno.test("UART: THR writes reach the sink in order; LSR reports THRE and TEMT", () => {
  const prog = [...li(A0, UART_BASE)];
  for (const ch of "ok\n") prog.push(A.addi(T0, 0, ch.charCodeAt(0)), A.sb(T0, A0, 0));
  prog.push(A.lbu(A1, A0, 5));
  const m = machineWith(prog);
  const out = collect(m);
  m.run(prog.length);
  assertEquals(out(), "ok\n");
  assertEquals(m.hart.x[A1], 0x60);
});

Deno.test("UART: DLAB switches offsets 0 and 1 to the divisor latch", () => {
  const m = machineWith([
    ...li(A0, UART_BASE),
    A.addi(T0, 0, 0x80),
    A.sb(T0, A0, 3), // LCR.DLAB = 1
    A.addi(T0, 0, 3),
    A.sb(T0, A0, 0), // DLL = 3 (not output)
    A.sb(T0, A0, 1), // DLM = 3
    A.lbu(A1, A0, 0),
    A.sb(0, A0, 3), // DLAB = 0
    A.addi(T0, 0, 0x0f),
    A.sb(T0, A0, 1), // IER
    A.lbu(A2, A0, 1),
    A.lbu(A3, A0, 2), // IIR: THR empty (QEMU raises it as IER.THRI turns on with THR empty)
  ]);
  const out = collect(m);
  m.run(13);
  assertEquals(out(), "");
  assertEquals([m.hart.x[A1], m.hart.x[A2], m.hart.x[A3]], [3, 0x0f, 0x02]);
  assertEquals([m.uart.dll, m.uart.dlm], [3, 3]);
});

Deno.test("UART: input bytes are read through RBR while LSR.DR is set, and saved", () => {
  const m = machineWith([
    ...li(A0, UART_BASE),
    A.lbu(A1, A0, 5), // LSR: DR set
    A.lbu(A2, A0, 0), // 'x'
  ]);
  m.uart.pushInput(new TextEncoder().encode("xy"));
  m.run(4);
  assertEquals(m.hart.x[A1] & 1, 1);
  assertEquals(m.hart.x[A2], 0x78);
  const s = m.uart.save();
  assertEquals(s.rx, Uint8Array.of(0x79));
  const u = new Uart(() => {});
  u.restore(s);
  assertEquals(u.load(5, 1) & 1, 1);
  assertEquals(u.load(0, 1), 0x79);
  assertEquals(u.load(5, 1) & 1, 0);
});

Deno.test("CLINT: mtime advances one tick per 10 retired instructions", () => {
  const prog = [...li(A0, CLINT_BASE + 0xbff8)];
  for (let i = 0; i < 40; i++) prog.push(A.addi(0, 0, 0));
  prog.push(A.lw(A1, A0, 0), A.lw(A2, A0, 4));
  const m = machineWith(prog);
  m.run(prog.length);
  // 42 instructions retired before the load of mtime
  assertEquals([m.hart.x[A1], m.hart.x[A2]], [4, 0]);
  assertEquals(m.clint.tickFraction, 4); // 44 retired
});

Deno.test("CLINT: mtimecmp and msip drive mip; rdtime reads mtime", () => {
  const m = machineWith([
    ...li(A0, CLINT_BASE),
    A.addi(T0, 0, 1),
    A.sw(T0, A0, 0), // msip = 1
    A.csrrs(A1, 0x344, 0), // mip
    A.addi(T0, 0, -1),
    ...li(A0, CLINT_BASE + 0x4000),
    A.sw(T0, A0, 0), // mtimecmp = 0xFFFFFFFF_FFFFFFFF
    A.sw(T0, A0, 4),
    A.csrrs(A2, 0x344, 0),
    A.csrrs(A3, 0xc01, 0), // time
  ]);
  m.run(12);
  assertEquals(m.hart.x[A1], (1 << 3) | MIP_MTIP, "mtimecmp 0 <= mtime: MTIP; msip: MSIP");
  assertEquals(m.hart.x[A2], 1 << 3);
  assertEquals(m.hart.x[A3], 1, "11 instructions retired before rdtime");
  assertEquals([m.clint.mtimecmpLo, m.clint.mtimecmpHi], [0xffff_ffff, 0xffff_ffff]);
});

/** mtimecmp = `cmp`, MTIE and MIE on, then a counting loop; the handler (at PARK) spins. */
function timerMachine(cmp: number) {
  const m = machineWith([
    ...li(A0, CLINT_BASE + 0x4000),
    A.addi(T0, 0, cmp),
    A.sw(T0, A0, 0),
    ...li(T0, MIP_MTIP),
    A.csrrw(0, 0x304, T0), // mie.MTIE
    A.csrrsi(0, 0x300, MSTATUS_MIE), // mstatus.MIE
    A.addi(A1, A1, 1), // loop: a1 counts iterations
    A.jal(0, -4),
  ]);
  m.hart.mtvec = PARK;
  return m;
}

Deno.test("timer interrupt is taken exactly when mtime reaches mtimecmp", () => {
  const m = timerMachine(50); // 500 retired instructions
  m.run(600);
  assertEquals(m.hart.mcause >>> 0, (INTERRUPT_BIT | 7) >>> 0);
  // 8 set-up instructions, then the loop until 500 retired: interrupt before instruction 501.
  assertEquals(m.hart.x[A1], (500 - 8) / 2);
  assertEquals(m.hart.mepc >>> 0, RAM_BASE + 8 * 4, "interrupted at the loop's addi");
  assertEquals((m.hart.mstatus & MSTATUS_MIE) !== 0, false);
  // Same result whatever the budget of each run() call.
  const split = timerMachine(50);
  for (let i = 0; i < 600; i += 7) split.run(Math.min(7, 600 - i));
  assertEquals(split.hart.save(), m.hart.save());
  assertEquals(split.clint.save(), m.clint.save());
});

Deno.test("wfi fast-forwards mtime to mtimecmp when only the timer can wake the hart", () => {
  const m = machineWith([
    ...li(A0, CLINT_BASE + 0x4000),
    ...li(T0, 100_000),
    A.sw(T0, A0, 0),
    ...li(T0, MIP_MTIP),
    A.csrrw(0, 0x304, T0), // MTIE, but mstatus.MIE off: wfi wakes, no trap
    A.wfi(),
    ...li(A0, CLINT_BASE + 0xbff8),
    A.lw(A1, A0, 0),
  ]);
  assertEquals(m.run(12), { reason: "budget" });
  assertEquals(m.hart.x[A1], 100_000);
  assertEquals(m.hart.retired, 12);
});

Deno.test("wfi with no enabled interrupt source stops the run as idle, without retiring", () => {
  const m = machineWith([A.addi(A0, 0, 1), A.wfi(), A.addi(A0, 0, 2)]);
  assertEquals(m.run(10), { reason: "idle", pc: RAM_BASE + 4 });
  assertEquals(m.hart.retired, 1);
  assertEquals(m.run(10), { reason: "idle", pc: RAM_BASE + 4 });
});

Deno.test("SiFive test device: 0x5555 passes, (code << 16) | 0x3333 fails, 0x7777 resets", async (t) => {
  const cases = [
    { value: 0x5555, want: { reason: "exit", code: 0, device: "sifive_test" } },
    { value: (42 << 16) | 0x3333, want: { reason: "exit", code: 42, device: "sifive_test" } },
    { value: 0x7777, want: { reason: "reset" } },
  ];
  for (const c of cases) {
    await t.step(`0x${c.value.toString(16)}`, () => {
      const m = machineWith([
        ...li(A0, SIFIVE_TEST_BASE),
        ...li(T0, c.value),
        A.sw(T0, A0, 0),
        A.addi(T1, 0, 1),
      ]);
      assertEquals(m.run(100), c.want);
      assertEquals(m.hart.retired, 5, "the store retires, nothing after it runs");
    });
  }
  await t.step("other values do nothing", () => {
    const m = machineWith([...li(A0, SIFIVE_TEST_BASE), A.addi(T0, 0, 0x123), A.sw(T0, A0, 0)]);
    assertEquals(m.run(4), { reason: "budget" });
  });
});

const HTIF_ELF = Deno.readFileSync(new URL("./testdata/htif.elf", import.meta.url));

Deno.test("HTIF: console writes and the tohost pass code (QEMU's spike machine: 'hi\\n', exit 0)", () => {
  const m = Machine.fromElf(HTIF_ELF, { ramSize: 1 << 20, uartSink: QUIET });
  const out = collect(m);
  assertEquals(m.run(10_000), { reason: "exit", code: 0, device: "htif" });
  assertEquals(out(), "hi\n");
});

Deno.test("HTIF: a failing test number is the exit code (QEMU's spike machine: exit 5)", () => {
  const testnum = parseElf(HTIF_ELF).symbols.get("testnum")!;
  const m = Machine.fromElf(HTIF_ELF, { ramSize: 1 << 20, uartSink: QUIET });
  m.ram.write(testnum, Uint8Array.of(5, 0, 0, 0));
  assertEquals(m.run(10_000), { reason: "exit", code: 5, device: "htif" });
});

Deno.test("HTIF survives save() and restore() into a fresh machine", () => {
  const a = Machine.fromElf(HTIF_ELF, { ramSize: 1 << 20, uartSink: QUIET });
  a.run(20);
  const b = new Machine({ ramSize: 1 << 20, uartSink: QUIET });
  b.ram.bytes.set(a.ram.bytes);
  b.restore(a.save());
  const out = collect(b);
  assertEquals(b.run(10_000), { reason: "exit", code: 0, device: "htif" });
  assertEquals(out().endsWith("\n"), true);
});

Deno.test("wfi with MTIE but mtimecmp = 2^64 - 1 (timer off) is idle", () => {
  const m = machineWith([
    ...li(A0, CLINT_BASE + 0x4000),
    A.addi(T0, 0, -1),
    A.sw(T0, A0, 0),
    A.sw(T0, A0, 4),
    ...li(T0, MIP_MTIP),
    A.csrrw(0, 0x304, T0),
    A.wfi(),
  ]);
  assertEquals(m.run(100), { reason: "idle", pc: RAM_BASE + 32 });
  assertEquals(m.clint.mtimeHi, 0);
});

Deno.test("PLIC: the highest-priority enabled source above the threshold is claimed first, the lower number on a tie", () => {
  const p = new Plic();
  const claim = () => p.load(0x20_0004, 4);
  p.store(4 * 10, 4, 2);
  p.store(4 * 11, 4, 5);
  p.store(4 * 12, 4, 5);
  p.store(0x2000, 4, (1 << 10) | (1 << 11) | (1 << 12));
  for (const irq of [10, 11, 12]) p.setSource(irq, true);
  assertEquals(p.mip, MIP_MEIP);
  assertEquals([claim(), claim(), claim(), claim()], [11, 12, 10, 0]);
  assertEquals(p.mip, 0, "all claimed");
  p.store(0x20_0004, 4, 12); // complete 12; its line is not driven again: nothing pending
  assertEquals(p.mip, 0);
  p.setSource(12, true);
  p.store(0x20_0000, 4, 5); // threshold 5: priority 5 is not above it
  assertEquals(p.mip, 0);
  p.store(0x20_0000, 4, 12); // WARL: 12 % 8 = 4
  assertEquals([p.load(0x20_0000, 4), p.mip], [4, MIP_MEIP]);
  assertEquals(p.load(0x20_1000 + 4, 4), 0, "context 1 (S-mode) has nothing enabled");
});

Deno.test("mask ROM: the hart runs QEMU-style reset code at 0x1000, loads from it, cannot write it", () => {
  const m = machineWith([A.addi(A2, 0, 7), A.jal(0, 0)]);
  const rom = assemble([
    A.auipc(T0, 0), // t0 = 0x1000
    A.lw(A1, T0, 16), // the start address stored at 0x1010
    A.sw(A1, T0, 16), // ignored: ROM
    A.jalr(0, A1, 0),
    RAM_BASE, // 0x1010: data
  ]);
  m.mrom.bytes.set(rom);
  m.hart.pc = 0x1000;
  assertEquals(m.run(5), { reason: "budget" });
  assertEquals([m.hart.x[A1] >>> 0, m.hart.x[A2], m.mrom.load(16, 4) >>> 0], [
    RAM_BASE,
    7,
    RAM_BASE,
  ]);
  // Outside the ROM and RAM: an instruction access fault.
  const n = machineWith([]);
  n.hart.mtvec = PARK;
  n.hart.pc = 0x1000 + 0xf000;
  n.run(1);
  assertEquals([n.hart.mcause, n.hart.mtval >>> 0], [1, 0x1_0000]);
});
