/**
 * Cross-emulator resume without QEMU: the committed streams of QEMU 7.2 (tests/fixtures/qemu-virt/,
 * made by qemu/testdata/make_virt_fixtures.ts) resume in livesnap's machine and print what QEMU's
 * uninterrupted runs printed; fields livesnap cannot honour are refused by name; livesnap's own
 * snapshots become streams whose every section decodes and maps back.
 */
import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert/mod.js";
import { zstdDecompressExact, zstdFrameContentSize } from "../format/_zstd.ts";
import { readSnapshot } from "../format/stream_reader.ts";
import { Machine } from "../emulator/machine.ts";
import { parseElf } from "../emulator/elf.ts";
import { restoreMachine } from "../emulator/snapshot/restore.ts";
import { saveMachine } from "../emulator/snapshot/save.ts";
import { describeMachine, sectionsFromState } from "../emulator/snapshot/machine_state.ts";
import { loadFixture as loadOldFixture } from "./_fixtures_test_util.ts";
import { STREAM_KINDS } from "./_make_stream.ts";
import { convertQemuToLsnap } from "./convert.ts";
import type { VmDescField, VmDescStruct } from "./model.ts";
import { type FieldRefusal, QemuMachineRefusedError } from "./riscv_virt.ts";
import { isLivesnapMachine, writeVirtStream } from "./riscv_virt_export.ts";
import { VIRT_LAYOUTS } from "./riscv_virt_layout.ts";
import { type QemuSnapshot, readQemuSnapshot, writeQemuSnapshot } from "./snapshot.ts";
import { decodeVmState, type VmStateValue } from "./vmstate_decode.ts";
import { encodeVmState } from "./vmstate_encode.ts";

const FIXTURES = new URL("../tests/fixtures/qemu-virt/", import.meta.url);
const GUESTS = new URL("../emulator/guests/build/", import.meta.url);

interface Fixture {
  file: string;
  guest: string;
  expected: string;
  txCount?: number;
  exit?: number;
  pc?: string;
}
const manifest: { streams: Record<string, Fixture> } = JSON.parse(
  await Deno.readTextFile(new URL("manifest.json", FIXTURES)),
);

async function fixture(name: string): Promise<Uint8Array> {
  const z = await Deno.readFile(new URL(manifest.streams[name].file, FIXTURES));
  const size = zstdFrameContentSize(z);
  const out = typeof size === "number" ? zstdDecompressExact(z, size) : size;
  if (typeof out === "string") throw new Error(`Cannot read fixture ${name}: ${out}`);
  return out.slice();
}

function bytesStream(b: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      for (let o = 0; o < b.length; o += 65536) c.enqueue(b.slice(o, o + 65536));
      c.close();
    },
  });
}

/** Runs a restored machine until it has printed `bytes` bytes (or stopped); its output. */
function runUntil(m: Machine, out: number[], bytes: number, limit = 400_000_000) {
  let exit = m.run(0);
  const start = m.hart.retired;
  while (out.length < bytes && m.hart.retired - start < limit) {
    exit = m.run(1_000_000);
    if (exit.reason !== "budget") break;
  }
  return { text: new TextDecoder().decode(Uint8Array.from(out)), exit };
}

async function restoreFrom(bytes: Uint8Array) {
  const out: number[] = [];
  const r = await restoreMachine(bytesStream(bytes), { uartSink: (b) => out.push(...b) });
  return { ...r, out };
}

const checkpointSymbols = parseElf(await Deno.readFile(new URL("checkpoint.elf", GUESTS))).symbols;
const txCountAt = checkpointSymbols.get("tx_count")!;
/** The guest's next timer deadline: the mtime it read at its last timer interrupt + TICK. */
const deadlineAt = checkpointSymbols.get("deadline")!;
const TICK = 10_000n;

Deno.test("QEMU 7.2's virt layouts in livesnap equal the descriptions real streams carry", async () => {
  const streams: Uint8Array[] = [
    await fixture("checkpoint-paused"),
    await fixture("sleeper-halted"),
  ];
  for (const kind of STREAM_KINDS) streams.push(await loadOldFixture(kind));
  const norm = (d: VmDescStruct): unknown => ({
    vmsd_name: d.vmsd_name,
    version: d.version,
    fields: (d.fields ?? []).map((f: VmDescField) =>
      f.type === "struct" ? { ...f, size: 0, struct: norm(f.struct!) } : f
    ),
  });
  let compared = 0;
  for (const bytes of streams) {
    const snap = await readQemuSnapshot([bytes]);
    for (const dev of snap.vmdesc!.devices) {
      const ours = VIRT_LAYOUTS[dev.name];
      if (ours === undefined) continue;
      assertEquals(norm(dev), norm(ours), dev.name);
      // Subsections: each one the stream sent is one livesnap knows, field for field.
      const subs = (d: VmDescStruct): VmDescStruct[] => [
        ...(d.subsections ?? []),
        ...(d.fields ?? []).flatMap((f) => (f.struct ? subs(f.struct) : [])),
      ];
      for (const s of subs(dev)) {
        const known = subs(ours).find((k) => k.vmsd_name === s.vmsd_name);
        assert(known !== undefined, `${dev.name}: subsection ${s.vmsd_name}`);
        assertEquals(norm(s), norm(known!), s.vmsd_name);
      }
      compared++;
    }
  }
  assert(compared >= 6 * 6, `compared ${compared} sections`);
});

for (const kind of STREAM_KINDS) {
  const name = `checkpoint-${kind}`;
  Deno.test(`restore of QEMU's ${kind} stream prints what QEMU's uninterrupted run printed next`, async () => {
    const f = manifest.streams[name];
    const r = await restoreFrom(await fixture(name));
    assertEquals(r.source, "qemu-stream");
    assertEquals(r.retired, 0, "QEMU records no instruction count: it starts at the restore point");
    // The guest's own count of bytes handed to the UART says where in its output it stands.
    const tx = new DataView(r.machine.ram.bytes.buffer).getUint32(txCountAt - 0x8000_0000, true);
    assertEquals(tx, f.txCount);
    // Time goes on from where QEMU's was: never before the mtime the guest last read (its
    // deadline minus one period), and not far past it.
    const dv = new DataView(r.machine.ram.bytes.buffer);
    const lastRead = dv.getBigUint64(deadlineAt - 0x8000_0000, true) - TICK;
    const mtime = r.machine.clint.mtime();
    assert(mtime >= lastRead, `mtime ${mtime} is before ${lastRead}, which the guest read`);
    assert(mtime - lastRead < 10_000_000n, `mtime ${mtime} is over a second past ${lastRead}`);
    const { text } = runUntil(r.machine, r.out, f.expected.length);
    assertEquals(text.slice(0, f.expected.length), f.expected);
  });
}

Deno.test("restore of an .lsnap converted from a QEMU stream resumes the same way", async () => {
  const f = manifest.streams["checkpoint-live"];
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const chunks: Uint8Array[] = [];
  const collect = readable.pipeTo(new WritableStream({ write: (c) => void chunks.push(c) }));
  await convertQemuToLsnap([await fixture("checkpoint-live")], writable, { createdAt: 0 });
  await collect;
  const lsnap = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  chunks.reduce((o, c) => (lsnap.set(c, o), o + c.length), 0);
  const r = await restoreFrom(lsnap);
  assertEquals(r.source, "lsnap-from-qemu");
  const { text } = runUntil(r.machine, r.out, f.expected.length);
  assertEquals(text.slice(0, f.expected.length), f.expected);
});

Deno.test("a hart QEMU saved asleep in wfi executes that wfi again and wakes on its timer", async () => {
  const f = manifest.streams["sleeper-halted"];
  const r = await restoreFrom(await fixture("sleeper-halted"));
  const pc = r.machine.hart.pc >>> 0;
  assertEquals(r.machine.ram.u16[(pc - 0x8000_0000) >>> 1], 0x0073, "pc is at a wfi");
  assertEquals(r.machine.ram.u16[((pc - 0x8000_0000) >>> 1) + 1], 0x1050);
  assert(r.notes.some((n) => n.field === "cpu_common halted"), "the note says so");
  const { text, exit } = runUntil(r.machine, r.out, 1 << 20);
  assertEquals(text, f.expected);
  assertEquals(exit, { reason: "exit", code: f.exit!, device: "sifive_test" });
});

Deno.test("a hart QEMU saved at reset runs QEMU's reset vector from the mask ROM", async () => {
  const f = manifest.streams["hello-reset"];
  const r = await restoreFrom(await fixture("hello-reset"));
  assertEquals(r.machine.hart.pc >>> 0, 0x1000);
  assertEquals(f.pc, "0x00001000");
  const { text, exit } = runUntil(r.machine, r.out, 1 << 20);
  assertEquals(text, f.expected);
  assertEquals(exit, { reason: "exit", code: 0, device: "sifive_test" });
});

Deno.test("restore of a QEMU stream notes what it ignores and approximates", async () => {
  const r = await restoreFrom(await fixture("checkpoint-paused"));
  const fields = r.notes.map((n) => n.field);
  for (
    const want of [
      "globalstate runstate",
      "timer cpu_clock_offset",
      "cpu env.load_val",
      "cpu env.pmu_ctrs[0], env.pmu_ctrs[2]",
      "virt.flash0",
      "fw_cfg",
    ]
  ) {
    assert(fields.includes(want), `a note on ${want}: ${fields.join(" | ")}`);
  }
  assert(fields.some((f) => f.startsWith("cpu env.misa_ext")));
  // The PMP entry the guests' start-up code sets is the allow-everything livesnap has.
  assert(r.notes.some((n) => n.field.startsWith("cpu cpu/pmp env.pmp_state.pmp[0]")));
});

// ---------------------------------------------------------------------------------------------
// Refusals: the paused stream with one thing changed that livesnap's machine cannot honour.

type Fields = { [name: string]: VmStateValue };

/** The paused stream with section `idstr`'s decoded fields changed by `edit`. */
async function edited(
  edits: Record<string, (f: Fields) => void>,
  more: (s: QemuSnapshot) => void = () => {},
): Promise<Uint8Array> {
  const snap = await readQemuSnapshot([await fixture("checkpoint-paused")]);
  for (const [idstr, edit] of Object.entries(edits)) {
    const d = snap.devices.find((x) => x.idstr === idstr)!;
    const desc = snap.vmdesc!.devices.find((x) => x.name === idstr)!;
    const fields = decodeVmState(d.data, desc).fields;
    edit(fields);
    d.data = encodeVmState(fields, desc);
  }
  more(snap);
  const chunks: Uint8Array[] = [];
  await writeQemuSnapshot(snap, {
    write: (c: Uint8Array) => Promise.resolve(void chunks.push(c.slice())),
  });
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  chunks.reduce((o, c) => (out.set(c, o), o + c.length), 0);
  return out;
}

const hex = (v: bigint, bytes: number) => "0x" + v.toString(16).padStart(bytes * 2, "0");

Deno.test("restore refuses, by name, QEMU state livesnap's machine cannot honour", async (t) => {
  const cases: [string, Record<string, (f: Fields) => void>, string][] = [
    [
      "floating point on",
      { cpu: (f) => (f["env.mstatus"] = hex(3n << 13n, 8)) },
      "cpu env.mstatus.FS",
    ],
    ["supervisor mode", { cpu: (f) => (f["env.priv"] = hex(1n, 4)) }, "cpu env.priv"],
    ["an F register", {
      cpu: (f) => ((f["env.fpr"] as string[])[3] = hex(0x3ff0000000000000n, 8)),
    }, "cpu env.fpr"],
    ["an RV64 hart", { cpu: (f) => (f["env.misa_mxl"] = hex(2n, 4)) }, "cpu env.misa_mxl"],
    ["paging", { cpu: (f) => (f["env.satp"] = hex(0x8000_1234n, 4)) }, "cpu env.satp"],
    ["a supervisor interrupt enabled", {
      cpu: (f) => (f["env.mie"] = hex(1n << 9n, 8)),
    }, "cpu env.mie.SEIE"],
    ["a locked PMP entry", {
      cpu: (f) => {
        const pmp = (f["cpu/pmp"] as Fields)["env.pmp_state.pmp"] as Fields[];
        pmp[0] = { addr_reg: hex(0xffffffffn, 4), cfg_reg: hex(0x9fn, 1) };
      },
    }, "cpu cpu/pmp env.pmp_state.pmp[0]"],
    ["an hpm counter in use", {
      cpu: (f) => ((f["env.pmu_ctrs"] as Fields[])[5].mhpmcounter_val = hex(7n, 4)),
    }, "cpu env.pmu_ctrs[5]"],
    ["modem status changes", {
      serial: (f) => ((f.serial as Fields).msr = hex(0xb1n, 1)),
    }, "serial msr"],
    [
      "an RTC alarm",
      { goldfish_rtc: (f) => (f.irq_enabled = hex(1n, 4)) },
      "goldfish_rtc irq_enabled",
    ],
  ];
  for (const [what, edits, field] of cases) {
    await t.step(what, async () => {
      const e = await assertRejects(
        async () => await restoreFrom(await edited(edits)),
        QemuMachineRefusedError,
      );
      assert(e.refusals.some((r: FieldRefusal) => r.field === field), `${field} in ${e.message}`);
      assertStringIncludes(e.message, "Cannot restore snapshot: QEMU's machine state has");
    });
  }
  await t.step("a device livesnap's machine does not have", async () => {
    const bytes = await edited({}, (s) => {
      const serial = s.devices.find((d) => d.idstr === "serial")!;
      s.devices.push({ ...serial, idstr: "virtio-net-device", sectionId: 99 });
      s.vmdescText = undefined;
    });
    const e = await assertRejects(async () => await restoreFrom(bytes), QemuMachineRefusedError);
    assertEquals(e.refusals.map((r: FieldRefusal) => r.field), ["virtio-net-device"]);
  });
  await t.step("another machine", async () => {
    const bytes = await edited({}, (s) => {
      const name = new TextEncoder().encode("pc-q35-7.2");
      const b = new Uint8Array(5 + name.length);
      b[0] = 7;
      new DataView(b.buffer).setUint32(1, name.length);
      b.set(name, 5);
      s.configuration = { ...s.configuration, bytes: b, machine: "pc-q35-7.2" };
    });
    await assertRejects(
      async () => await restoreFrom(bytes),
      QemuMachineRefusedError,
      "machine 'pc-q35-7.2': livesnap restores QEMU's riscv32 'virt' board only",
    );
  });
  await t.step("another architecture's hart on a board named virt", async () => {
    // ARM's `virt` board is called virt too: its cpu section has no env.gpr.
    const bytes = await edited({}, (s) => {
      const cpu = s.vmdesc!.devices.find((d) => d.name === "cpu")!;
      cpu.fields = cpu.fields!.map((f) => (f.name === "env.gpr" ? { ...f, name: "regs" } : f));
      s.vmdescText = JSON.stringify(s.vmdesc);
    });
    await assertRejects(
      async () => await restoreFrom(bytes),
      QemuMachineRefusedError,
      "cpu: not a RISC-V hart (no env.gpr, env.misa_mxl): another architecture",
    );
  });
  await t.step("data in a flash bank", async () => {
    const bytes = await edited({}, (s) => {
      s.pages.get("virt.flash0")!.set(0x3000, new Uint8Array(4096).fill(0x5a));
    });
    await assertRejects(
      async () => await restoreFrom(bytes),
      QemuMachineRefusedError,
      "virt.flash0: holds data (1 non-zero pages, the first at offset 0x3000)",
    );
  });
  await t.step("every refusal at once", async () => {
    const e = await assertRejects(
      async () =>
        await restoreFrom(
          await edited({
            cpu: (f) => {
              f["env.priv"] = hex(1n, 4);
              f["env.satp"] = hex(1n, 4);
            },
          }),
        ),
      QemuMachineRefusedError,
    );
    assertEquals(e.refusals.map((r: FieldRefusal) => r.field).sort(), [
      "cpu env.priv",
      "cpu env.satp",
    ]);
  });
});

Deno.test("restore adds a later QEMU's mtimer time_delta to mtime, and ignores unknown zero fields", async () => {
  const plain = await restoreFrom(await fixture("checkpoint-paused"));
  const bytes = await edited({}, (s) => {
    const mt = s.vmdesc!.devices.find((d) => d.name === "riscv_mtimer")!;
    mt.fields = [...mt.fields!, { name: "time_delta", type: "uint64", size: 8 }];
    const dev = s.devices.find((d) => d.idstr === "riscv_mtimer")!;
    dev.data = Uint8Array.from([...dev.data, 0, 0, 0, 0, 0, 0, 0x10, 0]);
    const cpu = s.vmdesc!.devices.find((d) => d.name === "cpu_common")!;
    cpu.fields = [...cpu.fields!, { name: "new_in_qemu_99", type: "uint32", size: 4 }];
    const common = s.devices.find((d) => d.idstr === "cpu_common")!;
    common.data = Uint8Array.from([...common.data, 0, 0, 0, 0]);
    s.vmdescText = JSON.stringify(s.vmdesc);
  });
  const r = await restoreFrom(bytes);
  assertEquals(r.machine.clint.mtime() - plain.machine.clint.mtime(), 0x1000n);
  assert(r.notes.some((n) => n.field === "cpu_common new_in_qemu_99"));
});

// ---------------------------------------------------------------------------------------------
// livesnap → QEMU

async function* toAsync<T>(it: Iterable<T>): AsyncGenerator<T> {
  yield* it;
}

/** A snapshot read into memory as `convert`'s items: its non-zero pages, then its devices. */
function* itemsOf(snap: Awaited<ReturnType<typeof readSnapshot>>) {
  const ps = 4096;
  for (let p = 0; p < snap.regions[0].length / ps; p++) {
    const data = snap.regions[0].subarray(p * ps, (p + 1) * ps);
    if (data.some((b) => b !== 0)) yield { kind: "pages" as const, region: 0, pages: [p], data };
  }
  for (const d of snap.devices) yield { kind: "device" as const, device: d };
}

async function toQemu(m: Machine): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir();
  try {
    await saveMachine(m, `${dir}/m.lsnap`);
    const snap = await readSnapshot((await Deno.open(`${dir}/m.lsnap`)).readable);
    assert(isLivesnapMachine(snap.description));
    const chunks: Uint8Array[] = [];
    await writeVirtStream(snap.description, toAsync(itemsOf(snap)), {
      write: (c: Uint8Array) => Promise.resolve(void chunks.push(c.slice())),
    });
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    chunks.reduce((o, c) => (out.set(c, o), o + c.length), 0);
    return out;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a livesnap snapshot as a QEMU stream: QEMU's sections, each decodable, mapping back to the same guest", async () => {
  const elf = await Deno.readFile(new URL("checkpoint.elf", GUESTS));
  const outA: number[] = [];
  const a = Machine.fromElf(elf, { ramSize: 16 << 20, uartSink: (b) => outA.push(...b) });
  a.run(3_123_457);
  const stream = await toQemu(a);
  const snap = await readQemuSnapshot([stream]);
  assertEquals(snap.configuration.machine, "virt");
  assertEquals(snap.blocks.map((b) => [b.name, b.size]), [
    ["riscv_virt_board.ram", 16 << 20],
    ["riscv_virt_board.mrom", 0xf000],
  ]);
  assertEquals(snap.devices.map((d) => d.idstr), [
    "timer",
    "cpu_common",
    "cpu",
    "riscv_mtimer",
    "riscv_sifive_plic",
    "serial",
    "globalstate",
  ]);
  for (const d of snap.devices) {
    const desc = snap.vmdesc!.devices.find((v) => v.name === d.idstr)!;
    assert(decodeVmState(d.data, desc).complete, `${d.idstr} with its description`);
    assert(
      decodeVmState(d.data, VIRT_LAYOUTS[d.idstr], { subsections: "as-found" }).complete,
      `${d.idstr} with QEMU 7.2's layout`,
    );
  }
  // QEMU's virtual clock carries mtime and the instructions into the current tick.
  const timer = decodeVmState(snap.devices[0].data, VIRT_LAYOUTS.timer).fields;
  assertEquals(
    BigInt(timer.cpu_clock_offset as string),
    a.clint.mtime() * 100n + BigInt(a.clint.tickFraction) * 10n,
  );
  // Back into livesnap: the guest goes on as the original does.
  const r = await restoreFrom(stream);
  const before = outA.length;
  a.run(2_000_000);
  r.machine.run(2_000_000);
  assert(outA.length - before > 100, "the guest printed something meanwhile");
  assertEquals(
    new TextDecoder().decode(Uint8Array.from(r.out)),
    new TextDecoder().decode(Uint8Array.from(outA.slice(before))),
  );
  assertEquals(r.machine.hart.save().pc, a.hart.save().pc);
});

Deno.test("convert to QEMU refuses what QEMU's virt board cannot take, by name", async (t) => {
  await t.step("HTIF", async () => {
    const elf = await Deno.readFile(new URL("../emulator/testdata/htif.elf", import.meta.url));
    const m = Machine.fromElf(elf, { ramSize: 1 << 20, uartSink: () => {} });
    await assertRejects(() => toQemu(m), QemuMachineRefusedError, "htif: the guest uses HTIF");
  });
  await t.step("a RAM size -m cannot give", async () => {
    const m = new Machine({ ramSize: 12 << 10, uartSink: () => {} });
    await assertRejects(() => toQemu(m), Error, "QEMU rounds -m up to a multiple of 8 KiB");
  });
  await t.step("more input than the UART holds", async () => {
    const m = new Machine({ ramSize: 1 << 20, uartSink: () => {} });
    m.uart.pushInput(new TextEncoder().encode("twenty bytes of text"));
    await assertRejects(
      () => toQemu(m),
      QemuMachineRefusedError,
      "ns16550a rx: 20 received bytes wait; QEMU's UART holds 1 (RBR, FIFO off)",
    );
  });
});

Deno.test("the machine description a livesnap snapshot carries names where its count starts", () => {
  const m = new Machine({ ramSize: 1 << 20, uartSink: () => {} });
  const fresh = describeMachine(m, 0);
  m.instructionsCountedFrom = "qemu-stream";
  const after = describeMachine(m, 0);
  assert(isLivesnapMachine(fresh) && isLivesnapMachine(after));
  assert(sectionsFromState(m.save()).some((s) => s.id === "plic"));
});
