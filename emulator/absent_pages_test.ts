import { assertEquals, assertThrows } from "@std/assert/mod.js";
import { A, AMO, li, machineWith } from "./testdata/asm.ts";
import { Machine } from "./machine.ts";
import { RAM_BASE } from "./memory_map.ts";
import { type AbsentPageHandler, clearAbsent, GATE_ABSENT, type Ram } from "./ram.ts";

const A0 = 10, A1 = 11, A2 = 12;
const PAGE = 4096;

/**
 * A handler that serves pages from `backing` (the RAM the guest should see) and records the
 * order of its faults.
 */
function backedBy(ram: Ram, backing: Uint8Array): AbsentPageHandler & { faults: number[] } {
  const faults: number[] = [];
  return {
    faults,
    fault(page) {
      faults.push(page);
      ram.bytes.set(backing.subarray(page * PAGE, (page + 1) * PAGE), page * PAGE);
      clearAbsent(ram.pageGate, page, ram.absentFlip);
    },
    faultAll() {
      for (let p = 0; p < ram.pageCount; p++) if (ram.isAbsent(p)) this.fault(p);
    },
  };
}

/** A machine running `program`, whose RAM (all but the program's page) is absent, backed by
 * what `prepare` wrote. */
function lazyMachine(program: number[], prepare: (m: Machine) => void) {
  const m = machineWith(program);
  prepare(m);
  const backing = m.ram.bytes.slice();
  const h = backedBy(m.ram, backing);
  m.ram.setAbsentHandler(h);
  m.ram.markAbsent(1);
  for (let p = 1; p < m.ram.pageCount; p++) m.ram.bytes.fill(0x5a, p * PAGE, (p + 1) * PAGE);
  return { m, h };
}

Deno.test("the absent-page gate brings a page in before every kind of access", async (t) => {
  const base = RAM_BASE + 0x1000;
  const cases: { name: string; program: number[]; page: number; check: (m: Machine) => void }[] = [
    {
      name: "lw",
      program: [...li(A0, base + 0x2000), A.lw(A1, A0, 4)],
      page: 3,
      check: (m) => assertEquals(m.hart.x[A1], 0x1234_5678),
    },
    {
      name: "lh",
      program: [...li(A0, base + 0x2000), A.lh(A1, A0, 4)],
      page: 3,
      check: (m) => assertEquals(m.hart.x[A1], 0x5678),
    },
    {
      name: "lbu",
      program: [...li(A0, base + 0x2000), A.lbu(A1, A0, 7)],
      page: 3,
      check: (m) => assertEquals(m.hart.x[A1], 0x12),
    },
    {
      name: "lr.w",
      program: [...li(A0, base + 0x2004), A.lr(A1, A0)],
      page: 3,
      check: (m) => assertEquals(m.hart.x[A1], 0x1234_5678),
    },
    {
      name: "sb keeps the rest of the page",
      program: [...li(A0, base + 0x2000), ...li(A2, 0x77), A.sb(A2, A0, 4)],
      page: 3,
      check: (m) =>
        assertEquals(m.ram.read(base + 0x2004, 4), new Uint8Array([0x77, 0x56, 0x34, 0x12])),
    },
    {
      name: "amoadd.w",
      program: [...li(A0, base + 0x2004), ...li(A2, 1), A.amo(AMO.add, A1, A2, A0)],
      page: 3,
      check: (m) => {
        assertEquals(m.hart.x[A1], 0x1234_5678);
        assertEquals(m.ram.read(base + 0x2004, 4), new Uint8Array([0x79, 0x56, 0x34, 0x12]));
      },
    },
    {
      name: "misaligned lw (the slow path) across two pages",
      program: [...li(A0, base + 0x2ffe), A.lw(A1, A0, 0)],
      page: 3,
      check: (m) => assertEquals(m.hart.x[A1] >>> 0, 0xbbaa_9988),
    },
    {
      name: "instruction fetch (jump into an absent page)",
      program: [...li(A0, base + 0x2000), A.jalr(0, A0, 0x10)],
      page: 3,
      check: (m) => assertEquals(m.hart.x[A1], 42),
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const { m, h } = lazyMachine(c.program, (m) => {
        m.ram.write(base + 0x2004, new Uint8Array([0x78, 0x56, 0x34, 0x12]));
        m.ram.write(base + 0x2ffe, new Uint8Array([0x88, 0x99, 0xaa, 0xbb]));
        m.ram.write(base + 0x2010, new Uint8Array([0x93, 0x05, 0xa0, 0x02])); // addi a1, x0, 42
      });
      m.run(c.program.length + 1);
      c.check(m);
      assertEquals(h.faults[0], c.page, "the accessed page is the first brought in");
      assertEquals(m.ram.isAbsent(c.page), false);
      assertEquals(m.ram.isAbsent(7), true, "a page nobody touched stays absent");
    });
  }
});

Deno.test("Ram.markAbsent() keeps the load check off until pages are marked absent", () => {
  const m = machineWith([A.lw(A1, 0, 0)]);
  assertEquals(m.ram.lazy, false);
  assertThrows(() => m.ram.markAbsent(1), Error, "no absent-page handler is installed");
  m.ram.setAbsentHandler(backedBy(m.ram, m.ram.bytes.slice()));
  m.ram.markAbsent(1, 2);
  assertEquals([m.ram.lazy, m.ram.isAbsent(1), m.ram.isAbsent(2), m.ram.isAbsent(3)], [
    true,
    true,
    true,
    false,
  ]);
  assertEquals(m.pageGate[1] & GATE_ABSENT, GATE_ABSENT);
  m.ram.ensureAllPresent();
  assertEquals([m.ram.lazy, m.ram.isAbsent(1)], [false, false]);
});

Deno.test("a handler that throws stops the run before the access: the guest never sees the bytes", () => {
  const m = machineWith([...li(A0, RAM_BASE + 0x3000), A.lw(A1, A0, 0), A.addi(A2, 0, 1)]);
  m.ram.setAbsentHandler({
    fault: (page) => {
      throw new Error(`Cannot load page ${page}: test`);
    },
    faultAll: () => {},
  });
  m.ram.markAbsent(3, 1);
  assertThrows(() => m.run(10), Error, "Cannot load page 3: test");
  assertEquals(m.hart.x[A1], 0);
  assertEquals(m.hart.x[A2], 0, "nothing after the faulting load ran");
});

Deno.test("a guest on absent RAM computes what it computes on present RAM (memstress)", async () => {
  const elf = await Deno.readFile(new URL("./guests/build/memstress.elf", import.meta.url));
  const direct = Machine.fromElf(elf, { ramSize: 4 << 20, uartSink: () => {} });
  direct.run(300_000);
  const state = direct.save();
  const backing = direct.ram.bytes.slice();
  const lazy = new Machine({ ramSize: 4 << 20, uartSink: () => {} });
  const h = backedBy(lazy.ram, backing);
  lazy.ram.setAbsentHandler(h);
  lazy.restore(state);
  lazy.ram.markAbsent();
  direct.run(400_000);
  lazy.run(400_000);
  assertEquals(lazy.hart.pc, direct.hart.pc);
  assertEquals(lazy.hart.retired, direct.hart.retired);
  assertEquals(new Set(h.faults).size, h.faults.length, "each page is brought in once");
  lazy.ram.ensureAllPresent();
  assertEquals(lazy.ram.bytes, direct.ram.bytes);
});

Deno.test("RAM made with absentRam starts with every page absent, the gate all zeros: every kind of access faults it in, and the store gate still opens", async (t) => {
  const base = RAM_BASE + 0x1000;
  const program = [
    ...li(A0, base + 0x2004),
    A.lw(A1, A0, 0), // page 3
    ...li(A2, 0x77),
    A.sb(A2, A0, 1), // page 3 again, a store
    A.amo(AMO.add, 13, A2, A0), // an AMO
    ...li(A0, base + 0x5000),
    A.sw(A2, A0, 0), // page 6, a store into a page that is zero in the backing
  ];
  const direct = machineWith(program);
  direct.ram.write(base + 0x2004, new Uint8Array([0x78, 0x56, 0x34, 0x12]));
  const backing = direct.ram.bytes.slice();
  const lazy = new Machine({ ramSize: 1 << 20, uartSink: () => {}, absentRam: true });
  assertEquals(lazy.pageGate.every((e) => e === 0), true, "nothing was written to the gate");
  assertEquals([lazy.ram.lazy, lazy.ram.isAbsent(0), lazy.ram.isAbsent(255)], [true, true, true]);
  const h = backedBy(lazy.ram, backing);
  lazy.ram.setAbsentHandler(h);
  lazy.hart.reset(RAM_BASE);
  direct.run(program.length + 1);
  lazy.run(program.length + 1);
  await t.step("the guest computes what it computes on present RAM", () => {
    assertEquals([lazy.hart.pc, lazy.hart.x[A1], lazy.hart.x[13]], [
      direct.hart.pc,
      direct.hart.x[A1],
      direct.hart.x[13],
    ]);
    assertEquals(h.faults, [0, 3, 6], "the program's page, then each page at its first access");
    assertEquals([lazy.ram.isAbsent(3), lazy.ram.isAbsent(7)], [false, true]);
  });
  await t.step("a present page's entry equals gateOpen, whatever the engine's generation", () => {
    assertEquals(lazy.pageGate[3], lazy.ram.gateOpen);
    lazy.ram.gateOpen = 5 << 4; // as the snapshot engine sets it
    assertEquals(lazy.ram.gateOpen, (5 << 4) | GATE_ABSENT);
    assertEquals(lazy.ram.isAbsent(3), false);
    const hooked: number[] = [];
    lazy.ram.setStoreHook((page) => hooked.push(page));
    lazy.pageGate[3] = (5 << 4) | GATE_ABSENT; // saved in generation 5: open
    assertEquals(lazy.ram.gatedStore(3, 3 * PAGE), false);
    assertEquals(hooked, [], "an open page calls no hook");
    lazy.pageGate[3] = (4 << 4) | GATE_ABSENT; // older: the engine's hook runs
    lazy.ram.gatedStore(3, 3 * PAGE);
    assertEquals(hooked, [3]);
  });
  await t.step("ensureAllPresent() brings in the rest; RAM is then the backing's", () => {
    lazy.ram.setStoreHook(null);
    lazy.ram.ensureAllPresent();
    assertEquals(lazy.ram.lazy, false);
    assertEquals(lazy.ram.bytes, direct.ram.bytes);
  });
});
