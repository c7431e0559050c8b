/**
 * QEMU's riscv32 `virt` board, as a QEMU 7.2 migration stream records it, mapped to livesnap's
 * `livesnap-virt-rv32` machine state, field by field ({@link importVirtState}).
 *
 * Every field of every device section is either mapped, checked against what livesnap's machine
 * can honour, or ignored with a note; a field livesnap does not know holds its reset value or the
 * stream is refused, naming it. Nothing is silently dropped: the notes (`restore --verbose`) list
 * everything ignored or approximated, and a refusal (`QemuMachineRefusedError`) lists every field
 * that cannot be honoured, before the guest runs a single instruction. The fields are read by the
 * names the stream's own JSON description gives them (a stream without one is read with QEMU
 * 7.2's layouts, `riscv_virt_layout.ts`), so a later QEMU whose sections gained fields is read as
 * far as the names agree and refused by name where they do not.
 *
 * Where a mapping is decided, the comment names the QEMU file and field it follows.
 *
 * @module
 */
import {
  HART_STATE_VERSION,
  type HartState,
  MIP_MEIP,
  MIP_MSIP,
  MIP_MTIP,
  MSTATUS_MIE,
  MSTATUS_MPIE,
  MSTATUS_MPP,
  MSTATUS_MPRV,
  MSTATUS_TW,
  PRIV_M,
  PRIV_U,
} from "../emulator/hart.ts";
import type { MachineState, SavedDevice } from "../emulator/machine.ts";
import {
  CLINT_DEVICE_ID,
  CLINT_STATE_VERSION,
  type ClintState,
} from "../emulator/devices/clint.ts";
import { HTIF_DEVICE_ID, HTIF_STATE_VERSION, type HtifState } from "../emulator/devices/htif.ts";
import { MROM_DEVICE_ID, MROM_SIZE, MROM_STATE_VERSION } from "../emulator/devices/mrom.ts";
import {
  PLIC_CONTEXTS,
  PLIC_DEVICE_ID,
  PLIC_MAX_PRIORITY,
  PLIC_SOURCES,
  PLIC_STATE_VERSION,
  PLIC_WORDS,
  type PlicState,
} from "../emulator/devices/plic.ts";
import {
  SIFIVE_TEST_DEVICE_ID,
  SIFIVE_TEST_STATE_VERSION,
} from "../emulator/devices/sifive_test_device.ts";
import {
  FCR_FE,
  IIR_CTI,
  IIR_THRI,
  LSR_DR,
  LSR_ERRORS,
  LSR_TEMT,
  LSR_THRE,
  MCR_LOOP,
  MSR_DEFAULT,
  Uart,
  UART_DEVICE_ID,
  UART_STATE_VERSION,
  uartResetState,
  type UartState,
} from "../emulator/devices/uart.ts";
import { MAX_RAM_SIZE, PAGE_SIZE } from "../emulator/memory_map.ts";
import { VIRT_LAYOUTS } from "./riscv_virt_layout.ts";
import { decodeVmState, type VmStateValue } from "./vmstate_decode.ts";
import {
  type Findings,
  hex,
  NS_PER_INSTRUCTION,
  NS_PER_TICK,
  plicMeip,
  QemuMachineRefusedError,
  type QemuSectionInput,
  U32,
  VIRT_MACHINE,
  VIRT_RAM_BLOCK,
} from "./riscv_virt.ts";

/** The `wfi` instruction. */
const WFI = 0x1050_0073;

function isZero(v: VmStateValue): boolean {
  if (typeof v === "boolean") return !v;
  if (typeof v === "string") {
    if (v.startsWith("0x")) return BigInt(v) === 0n;
    return /^(00( |$))*$/.test(v) || v === "nullptr";
  }
  if (Array.isArray(v)) return v.every(isZero);
  return Object.values(v).every(isZero);
}

function show(v: VmStateValue): string {
  if (typeof v === "string" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) {
    const nz = v.map((e, i) => [i, e] as const).filter(([, e]) => !isZero(e));
    return `[${nz.slice(0, 4).map(([i, e]) => `${i}: ${show(e)}`).join(", ")}${
      nz.length > 4 ? ", …" : ""
    }]`;
  }
  return `{ ${
    Object.entries(v).filter(([, e]) => !isZero(e)).map(([k, e]) => `${k}: ${show(e)}`).join(
      ", ",
    )
  } }`;
}

/**
 * The decoded fields of one section, read by name. Every field must be used (mapped, checked
 * or ignored on purpose); {@link finish} treats the rest: zero is noted as unmodelled, anything
 * else refused.
 */
class Fields {
  readonly #used = new Set<string>();
  constructor(
    readonly section: string,
    readonly values: { [name: string]: VmStateValue },
    readonly findings: Findings,
  ) {}

  has(name: string): boolean {
    return Object.hasOwn(this.values, name);
  }

  #take(name: string): VmStateValue | undefined {
    this.#used.add(name);
    if (!this.has(name)) {
      this.findings.refuse(`${this.section} ${name}`, "the field is missing from the section");
      return undefined;
    }
    return this.values[name];
  }

  int(name: string): bigint {
    const v = this.#take(name);
    if (typeof v === "string" && v.startsWith("0x")) return BigInt(v);
    if (typeof v === "boolean") return v ? 1n : 0n;
    if (v !== undefined) this.findings.refuse(`${this.section} ${name}`, "not an integer");
    return 0n;
  }

  ints(name: string, length?: number): bigint[] {
    const v = this.#take(name);
    const a = v === undefined ? [] : Array.isArray(v) ? v : [v];
    if (length !== undefined && v !== undefined && a.length !== length) {
      this.findings.refuse(
        `${this.section} ${name}`,
        `${a.length} entries, livesnap's machine has ${length}`,
      );
    }
    return a.map((e) => (typeof e === "string" && e.startsWith("0x") ? BigInt(e) : 0n));
  }

  bytes(name: string): Uint8Array {
    const v = this.#take(name);
    if (typeof v !== "string" || v.startsWith("0x")) return new Uint8Array(0);
    return v === "" ? new Uint8Array(0) : Uint8Array.from(v.split(" "), (h) => parseInt(h, 16));
  }

  /** A struct field or subsection as its own Fields (undefined when absent). */
  sub(name: string): Fields | undefined {
    this.#used.add(name);
    const v = this.values[name];
    if (v === undefined || typeof v !== "object" || Array.isArray(v)) return undefined;
    return new Fields(`${this.section} ${name}`, v, this.findings);
  }

  structs(name: string): Fields[] {
    this.#used.add(name);
    const v = this.values[name];
    const a = v === undefined ? [] : Array.isArray(v) ? v : [v];
    return a.map((e, i) =>
      new Fields(
        `${this.section} ${name}[${i}]`,
        typeof e === "object" && !Array.isArray(e) ? e : {},
        this.findings,
      )
    );
  }

  /** The field must be zero (or absent): otherwise it is refused with `reason`. */
  zero(name: string, reason: string): void {
    this.#used.add(name);
    if (!this.has(name)) return;
    const v = this.values[name];
    if (!isZero(v)) this.findings.refuse(`${this.section} ${name}`, `${show(v)}: ${reason}`);
  }

  /** The fields are accounted for by the caller, which notes them itself. */
  use(names: string[]): void {
    for (const n of names) this.#used.add(n);
  }

  /** The field is ignored on purpose, for the reason given (noted). */
  ignore(names: string[], note: string): void {
    const present = names.filter((n) => this.has(n));
    for (const n of names) this.#used.add(n);
    if (present.length > 0) this.findings.note(`${this.section} ${present.join(", ")}`, note);
  }

  /** Unused fields: zero ones are noted together, others refused. */
  finish(): void {
    const zero: string[] = [];
    for (const [name, v] of Object.entries(this.values)) {
      if (this.#used.has(name)) continue;
      if (isZero(v)) zero.push(name);
      else {
        this.findings.refuse(
          `${this.section} ${name}`,
          `${show(v)}: livesnap's machine has no such state`,
        );
      }
    }
    if (zero.length > 0) {
      this.findings.note(
        `${this.section} ${zero.join(", ")}`,
        "state livesnap's machine does not have; all zero, as after reset: ignored",
      );
    }
  }
}

/** mstatus bits other than the five this hart implements, by name (privileged spec 3.1.6). */
const MSTATUS_OTHER: [string, bigint][] = [
  ["SIE", 1n << 1n],
  ["SPIE", 1n << 5n],
  ["UBE", 1n << 6n],
  ["SPP", 1n << 8n],
  ["VS", 3n << 9n],
  ["FS", 3n << 13n],
  ["XS", 3n << 15n],
  ["SUM", 1n << 18n],
  ["MXR", 1n << 19n],
  ["TVM", 1n << 20n],
  ["TSR", 1n << 22n],
  ["SD", 1n << 31n],
  ["SBE", 1n << 36n],
  ["MBE", 1n << 37n],
  ["GVA", 1n << 38n],
  ["MPV", 1n << 39n],
];
const MSTATUS_MODELLED = BigInt(
  MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP | MSTATUS_MPRV | MSTATUS_TW,
);

/** Interrupt bits (mip / mie) other than MSI, MTI, MEI, by name (privileged spec 3.1.9). */
const IRQ_OTHER: [string, number][] = [
  ["SSIP", 1],
  ["VSSIP", 2],
  ["STIP", 5],
  ["VSTIP", 6],
  ["SEIP", 9],
  ["VSEIP", 10],
  ["SGEIP", 12],
  ["LCOFIP", 13],
];

function decodeSection(s: QemuSectionInput, f: Findings, label = s.idstr): Fields | null {
  const builtIn = VIRT_LAYOUTS[s.idstr];
  const desc = s.vmdesc ?? (builtIn?.version === s.versionId ? builtIn : undefined);
  if (desc === undefined) return null;
  const r = decodeVmState(s.data, desc, {
    subsections: s.vmdesc === undefined ? "as-found" : "listed",
  });
  if (!r.complete) {
    f.refuse(label, `its bytes do not fit its description: ${r.error}`);
    return null;
  }
  return new Fields(label, r.fields, f);
}

/** What {@link importVirtState} takes besides the device sections. */
export interface VirtImportInput {
  /** The configuration section's machine type. */
  machine: string;
  /** Device sections in stream order (the `ram` section excluded). */
  sections: QemuSectionInput[];
  /** Size of the RAM block (`riscv_virt_board.ram`). */
  ramSize: number;
  /** The mask ROM's contents (`riscv_virt_board.mrom`), zeros when the stream has none. */
  mrom: Uint8Array;
  /** A 32-bit word of guest memory (RAM or ROM), or null when not mapped. */
  readWord(address: number): number | null;
  /** Where notes and refusals go (the caller may already have added some, e.g. for RAM blocks). */
  findings: Findings;
}

/** Sections of the `virt` board livesnap's machine has no counterpart for, and why that is fine. */
const IGNORED_SECTIONS: Readonly<Record<string, string>> = {
  slirp: "QEMU's user-mode network backend: no network device on this machine",
  fw_cfg: "QEMU's firmware configuration device: not on this machine (reads fault)",
  PCIHost: "the PCIe host bridge: no PCI on this machine",
  "0000:00:00.0/gpex_root": "the PCIe root port's configuration space: no PCI on this machine",
};

/**
 * Maps the device sections of a QEMU `virt` stream to livesnap's machine state. Returns the
 * state (`retired` 0: the instruction count starts at the restore point) and adds notes to
 * `input.findings`; throws {@link QemuMachineRefusedError} listing every refusal (its own and
 * those already in `findings`).
 */
export function importVirtState(input: VirtImportInput): MachineState {
  const f = input.findings;
  if (input.machine !== VIRT_MACHINE) {
    f.refuse(
      "configuration",
      `machine '${input.machine}': livesnap restores QEMU's riscv32 'virt' board only`,
    );
    throw new QemuMachineRefusedError(f.refusals);
  }
  if (input.ramSize > MAX_RAM_SIZE || input.ramSize % PAGE_SIZE !== 0) {
    f.refuse(
      VIRT_RAM_BLOCK,
      `${input.ramSize} bytes: livesnap's machine takes a multiple of ${PAGE_SIZE} up to ${MAX_RAM_SIZE}`,
    );
  }
  const byId = new Map<string, QemuSectionInput[]>();
  for (const s of input.sections) {
    const list = byId.get(s.idstr) ?? [];
    list.push(s);
    byId.set(s.idstr, list);
  }
  const one = (id: string): Fields | null => {
    const list = byId.get(id) ?? [];
    if (list.length > 1) {
      f.refuse(
        id,
        `${list.length} instances: livesnap's machine has one hart and one of each device`,
      );
    }
    return list.length === 0 ? null : decodeSection(list[0], f);
  };

  for (const [id, list] of byId) {
    if (
      ["timer", "cpu_common", "cpu", "riscv_mtimer", "riscv_sifive_plic", "serial"].includes(id) ||
      ["globalstate", "goldfish_rtc", "pflash_cfi01", "PCIBUS"].includes(id)
    ) continue;
    if (Object.hasOwn(IGNORED_SECTIONS, id)) {
      f.note(id, `${IGNORED_SECTIONS[id]}: ignored`);
      continue;
    }
    f.refuse(
      `${id}${list.length > 1 ? ` (${list.length} instances)` : ""}`,
      "a device livesnap's machine does not have (added to QEMU with -device?)",
    );
  }

  const cpu = one("cpu");
  if (cpu === null) {
    f.refuse("cpu", "the stream has no readable hart section");
    throw new QemuMachineRefusedError(f.refusals);
  }
  // A RISC-V hart's section has env.gpr; others (ARM's own `virt`, x86) do not.
  if (!cpu.has("env.gpr") || !cpu.has("env.misa_mxl")) {
    f.refuse("cpu", "not a RISC-V hart (no env.gpr, env.misa_mxl): another architecture");
    throw new QemuMachineRefusedError(f.refusals);
  }
  const hart = importHart(cpu, input);
  const common = one("cpu_common");
  const timer = importTimer(one("timer"), f);
  const mtimer = one("riscv_mtimer");
  let mtimecmp = 0n;
  if (mtimer === null) f.note("riscv_mtimer", "absent: mtimecmp is 0, as after reset");
  else {
    const cmp = mtimer.ints("timecmp");
    if (cmp.length !== 1) {
      f.refuse("riscv_mtimer timecmp", `${cmp.length} harts: livesnap's machine has one`);
    }
    mtimecmp = cmp[0] ?? 0n;
    // Later QEMUs migrate the offset a guest sets by writing mtime (riscv_aclint.c
    // time_delta); QEMU 7.2 does not, and its mtime then restarts from the virtual clock.
    if (mtimer.has("time_delta")) {
      const delta = BigInt.asIntN(64, mtimer.int("time_delta"));
      timer.mtime = BigInt.asUintN(64, timer.mtime + delta);
      f.note("riscv_mtimer time_delta", `${delta}: added to mtime`);
    }
    mtimer.finish();
  }
  const plic = importPlic(one("riscv_sifive_plic"), f);
  const uart = importSerial(one("serial"), f);
  importIgnored(byId, one, f);

  // cpu_common: `halted` is QEMU's wfi sleep (target/riscv/op_helper.c helper_wfi sets it with
  // pc already past the wfi). livesnap has no sleeping state: the hart re-executes the wfi,
  // which waits the same way (and, being idempotent, changes nothing else).
  if (common !== null) {
    const halted = common.int("halted");
    common.ignore(
      ["interrupt_request"],
      "QEMU's pending-work flags; recomputed from mip, mie and the devices",
    );
    common.finish();
    if (halted !== 0n) {
      const at = (hart.pc - 4) >>> 0;
      if (input.readWord(at) === WFI) {
        hart.pc = at;
        f.note(
          "cpu_common halted",
          `the hart was asleep in the wfi at ${hex(at)}: it executes that wfi again`,
        );
      } else {
        f.refuse(
          "cpu_common halted",
          `the hart is halted at ${hex(hart.pc)} but the instruction before it is not wfi`,
        );
      }
    }
  }

  const clint: ClintState = {
    msip: hart.msip ? 1 : 0,
    mtimeLo: Number(timer.mtime & U32),
    mtimeHi: Number((timer.mtime >> 32n) & U32),
    mtimecmpLo: Number(mtimecmp & U32),
    mtimecmpHi: Number((mtimecmp >> 32n) & U32),
    tickFraction: timer.tickFraction,
  };
  // mip.MTIP and mip.MEIP are driven by devices (hw/intc/riscv_aclint.c, sifive_plic.c); here
  // they are computed from the device state, so a difference is only the moment QEMU's timer
  // callback or PLIC update would have run.
  const mtip = timer.mtime >= mtimecmp;
  if (mtip !== hart.qemuMtip) {
    f.note(
      "cpu env.mip.MTIP",
      `${hart.qemuMtip ? 1 : 0} in QEMU; mtime ${hex(timer.mtime)} and mtimecmp ${
        hex(mtimecmp)
      } make it ${mtip ? 1 : 0} here`,
    );
  }
  const meip = plicMeip(plic);
  if (meip !== hart.qemuMeip) {
    f.note(
      "cpu env.mip.MEIP",
      `${hart.qemuMeip ? 1 : 0} in QEMU; the PLIC's state makes it ${meip ? 1 : 0} here`,
    );
  }

  if (f.refusals.length > 0) throw new QemuMachineRefusedError(f.refusals);
  const mrom = input.mrom.subarray(0, MROM_SIZE);
  let end = mrom.length;
  while (end > 0 && mrom[end - 1] === 0) end--;
  const devices: SavedDevice[] = [
    { id: UART_DEVICE_ID, instance: 0, version: UART_STATE_VERSION, state: uart },
    { id: CLINT_DEVICE_ID, instance: 0, version: CLINT_STATE_VERSION, state: clint },
    { id: SIFIVE_TEST_DEVICE_ID, instance: 0, version: SIFIVE_TEST_STATE_VERSION, state: {} },
    {
      id: HTIF_DEVICE_ID,
      instance: 0,
      version: HTIF_STATE_VERSION,
      state: { tohost: -1, fromhost: -1 } satisfies HtifState,
    },
    { id: PLIC_DEVICE_ID, instance: 0, version: PLIC_STATE_VERSION, state: plic },
    {
      id: MROM_DEVICE_ID,
      instance: 0,
      version: MROM_STATE_VERSION,
      state: { bytes: mrom.slice(0, end) },
    },
  ];
  return { hart: { ...hart.state, pc: hart.pc >>> 0, version: HART_STATE_VERSION }, devices };
}

interface ImportedHart {
  state: HartState;
  pc: number;
  msip: boolean;
  qemuMtip: boolean;
  qemuMeip: boolean;
}

/** target/riscv/machine.c `vmstate_riscv_cpu` (version 5 in QEMU 7.2) → livesnap's hart. */
function importHart(c: Fields, input: VirtImportInput): ImportedHart {
  const f = input.findings;
  const mxl = c.int("env.misa_mxl");
  if (mxl !== 1n) {
    f.refuse(
      "cpu env.misa_mxl",
      `${mxl} (${mxl === 2n ? "RV64" : "not RV32"}): livesnap's hart is RV32 (qemu-system-riscv32)`,
    );
  }
  const x = c.ints("env.gpr", 32).map((v) => Number(BigInt.asIntN(32, v)));
  const pc = Number(c.int("env.pc") & U32);
  const privRaw = c.int("env.priv");
  let priv = PRIV_M;
  if (privRaw === 0n) priv = PRIV_U;
  else if (privRaw !== 3n) {
    f.refuse(
      "cpu env.priv",
      `${privRaw} (${
        privRaw === 1n ? "supervisor" : "reserved"
      } mode): livesnap's hart has machine and user modes only`,
    );
  }
  c.zero("env.virt", "the hart runs a virtualized guest (H extension): not on livesnap's hart");

  const mstatus = c.int("env.mstatus");
  const mpp = (mstatus & BigInt(MSTATUS_MPP)) >> 11n;
  if (mpp === 1n) {
    f.refuse("cpu env.mstatus.MPP", "1 (supervisor): livesnap's hart has no supervisor mode");
  }
  for (const [name, mask] of MSTATUS_OTHER) {
    if ((mstatus & mask) !== 0n) {
      f.refuse(
        `cpu env.mstatus.${name}`,
        `set (mstatus ${hex(mstatus)}): ${
          name === "FS" || name === "SD"
            ? "floating-point state is on; livesnap's hart has no F/D"
            : name === "VS"
            ? "vector state is on; livesnap's hart has no V"
            : "a supervisor, hypervisor or endianness control livesnap's hart does not have"
        }`,
      );
    }
  }
  const unknownStatus = mstatus & ~MSTATUS_MODELLED &
    ~MSTATUS_OTHER.reduce((a, [, m]) => a | m, 0n);
  if (unknownStatus !== 0n) {
    f.refuse("cpu env.mstatus", `bits ${hex(unknownStatus)} set: not on livesnap's hart`);
  }

  const irqCheck = (name: string, value: bigint, what: string) => {
    for (const [bit, n] of IRQ_OTHER) {
      if ((value & (1n << BigInt(n))) !== 0n) {
        if (name === "env.mip" && bit === "SEIP") continue; // driven by the PLIC's context 1
        const field = name === "env.mie" ? bit.replace(/IP$/, "IE") : bit;
        f.refuse(`cpu ${name}.${field}`, `set: ${what}`);
      }
    }
    const known = IRQ_OTHER.reduce((a, [, n]) => a | (1n << BigInt(n)), 0n) |
      BigInt(MIP_MSIP | MIP_MTIP | MIP_MEIP);
    if ((value & ~known) !== 0n) f.refuse(`cpu ${name}`, `bits ${hex(value & ~known)} set`);
  };
  const mie = c.int("env.mie");
  irqCheck(
    "env.mie",
    mie,
    "livesnap's hart takes machine software, timer and external interrupts only",
  );
  const mip = c.int("env.mip");
  irqCheck("env.mip", mip, "a supervisor or guest interrupt is pending; livesnap's hart has none");
  if ((mip & BigInt(1 << 9)) !== 0n) {
    f.note(
      "cpu env.mip.SEIP",
      "set by the PLIC's supervisor context; livesnap's hart has no supervisor mode: kept only in the PLIC's state",
    );
  }

  const mcounteren = c.int("env.mcounteren");
  if ((mcounteren & ~7n) !== 0n) {
    f.refuse(
      "cpu env.mcounteren",
      `${
        hex(mcounteren)
      }: enables hpm counters livesnap's hart does not have (it has cycle, time, instret)`,
    );
  }

  // LR/SC: QEMU keeps the reserved address (load_res, -1 for none) and the value loaded
  // (load_val), and its SC succeeds when both still match; livesnap's SC checks the address.
  const loadRes = c.int("env.load_res") & U32;
  let reservation = -1;
  if (loadRes !== U32) {
    const a = Number(loadRes);
    if (a % 4 === 0 && a >= 0x8000_0000 && a - 0x8000_0000 < input.ramSize) reservation = a;
    else f.note("cpu env.load_res", `${hex(a)} is not a word of RAM: no reservation is kept`);
  }
  c.ignore(
    ["env.load_val"],
    "the value an LR loaded; livesnap's SC checks the reserved address only",
  );

  // Counters: QEMU 7.2 (target/riscv/csr.c, TCG without -icount) reads mcycle and minstret
  // from the host's tick counter and records only the value the guest last wrote
  // (mhpmcounter_val) and the host ticks at that write (mhpmcounter_prev); their value at the
  // snapshot cannot be known. livesnap counts on from the value last written.
  const ctrs = c.values["env.pmu_ctrs"];
  c.use(["env.pmu_ctrs"]);
  const ctr = (i: number): { [name: string]: VmStateValue } => {
    const e = Array.isArray(ctrs) ? ctrs[i] : undefined;
    return typeof e === "object" && e !== null && !Array.isArray(e) ? e : {};
  };
  const ctrInt = (i: number, name: string): bigint => {
    const v = ctr(i)[name];
    return typeof v === "string" && v.startsWith("0x") ? BigInt(v) : 0n;
  };
  const counter = (i: number) =>
    (ctrInt(i, "mhpmcounterh_val") << 32n) | ctrInt(i, "mhpmcounter_val");
  const cycle = counter(0);
  const instret = counter(2);
  if (Array.isArray(ctrs)) {
    f.note(
      "cpu env.pmu_ctrs[0], env.pmu_ctrs[2]",
      `mcycle and minstret: QEMU counts host CPU ticks (mhpmcounter_prev, started) so their value at the snapshot is unknown; livesnap counts retired instructions on from the value the guest last wrote (${
        hex(cycle)
      }, ${hex(instret)}); env.pmu_ctrs[1] is the time slot (time reads mtime)`,
    );
    const busy = ctrs.map((e, i) => [i, e] as const).filter(([i, e]) => i > 2 && !isZero(e));
    for (const [i, e] of busy) {
      f.refuse(
        `cpu env.pmu_ctrs[${i}]`,
        `${show(e)}: hpm counter ${i} holds a value; livesnap's hpm counters are hardwired zero`,
      );
    }
    if (ctrs.length > 3 && busy.length === 0) {
      f.note(
        `cpu env.pmu_ctrs[3..${ctrs.length - 1}]`,
        "hpm counters, all zero: livesnap's are hardwired zero",
      );
    }
  }
  for (const n of ["env.mhpmevent_val", "env.mhpmeventh_val"]) {
    c.zero(n, "hpm event selectors: livesnap's hpm counters are hardwired zero");
  }

  c.zero("env.fpr", "floating-point registers hold values; livesnap's hart has no F/D");
  c.zero("env.frm", "the floating-point rounding mode is set; livesnap's hart has no F/D");
  for (
    const n of ["env.satp", "env.stvec", "env.sepc", "env.scause", "env.stval", "env.sscratch"]
  ) {
    c.zero(n, "supervisor state; livesnap's hart has no supervisor mode");
  }
  for (const n of ["env.medeleg", "env.mideleg"]) {
    c.zero(n, "traps are delegated to supervisor mode; livesnap's hart has none");
  }
  c.zero("env.scounteren", "supervisor counter enables; livesnap's hart has no supervisor mode");
  c.zero("env.mcountinhibit", "inhibited counters; livesnap's counters always run");
  for (const n of ["env.miselect", "env.siselect"]) {
    c.zero(n, "AIA indirect CSR selects; livesnap's hart has no AIA");
  }
  c.zero("env.stimecmp", "a supervisor timer (Sstc) is armed; livesnap's hart has none");
  for (const n of ["env.mfromhost", "env.mtohost"]) {
    c.zero(n, "QEMU's in-hart HTIF registers are in use");
  }
  c.ignore(
    [
      "env.misa_ext",
      "env.misa_ext_mask",
      "env.misa_mxl_max",
      "env.priv_ver",
      "env.vext_ver",
      "env.features",
      "env.resetvec",
      "env.mhartid",
      "env.miclaim",
      "env.miprio",
      "env.siprio",
    ],
    "how QEMU's hart is built (extensions ACDFHIMSU, spec versions, reset vector, interrupt priorities), not guest state; livesnap's hart is RV32IMACU and none of the extra extensions' state is in use (checked field by field)",
  );
  c.ignore(
    ["env.badaddr", "env.guest_phys_fault_addr"],
    "QEMU's scratch values while it raises a trap; mtval holds what the guest sees",
  );

  const pmp = c.sub("cpu/pmp");
  if (pmp !== undefined) importPmp(pmp, f);
  const hyper = c.sub("cpu/hyper");
  if (hyper !== undefined) {
    hyper.ignore(["env.hviprio"], "the hypervisor's interrupt priorities as QEMU builds them");
    hyper.finish();
  }
  const debug = c.sub("cpu/debug");
  if (debug !== undefined) {
    const tdata1 = debug.ints("env.tdata1");
    // Reset value: type 2 (mcontrol) with no mode, action or match enabled (target/riscv/debug.c).
    const idle = tdata1.every((v) => v === 0n || v === 0x2000_0000n);
    if (!idle) {
      f.refuse(
        "cpu cpu/debug env.tdata1",
        `${tdata1.map(hex).join(", ")}: a debug trigger is set; livesnap's hart has none`,
      );
    }
    debug.ignore(
      ["env.trigger_cur", "env.tdata2", "env.tdata3"],
      "debug trigger selection and operands; no trigger is enabled",
    );
    debug.finish();
  }
  c.sub("cpu/envcfg")?.finish();
  for (const name of Object.keys(c.values)) {
    if (
      name.startsWith("cpu/") && !["cpu/pmp", "cpu/hyper", "cpu/debug", "cpu/envcfg"].includes(name)
    ) {
      c.sub(name)?.finish();
    }
  }
  const mask32 = (v: bigint) => Number(v & U32);
  const mtvec = mask32(c.int("env.mtvec"));
  const mscratch = mask32(c.int("env.mscratch"));
  const mepc = mask32(c.int("env.mepc"));
  const mcause = mask32(c.int("env.mcause"));
  const mtval = mask32(c.int("env.mtval"));
  c.finish();

  return {
    state: {
      x: [0, ...x.slice(1)],
      pc,
      priv,
      mstatus: mask32(mstatus & MSTATUS_MODELLED),
      mie: mask32(mie) & (MIP_MSIP | MIP_MTIP | MIP_MEIP),
      mtvec,
      mscratch,
      mepc,
      mcause,
      mtval,
      mcounteren: mask32(mcounteren) & 7,
      retired: 0,
      instretOffset: (instret & ((1n << 64n) - 1n)).toString(),
      cycleOffset: (cycle & ((1n << 64n) - 1n)).toString(),
      reservation,
    },
    pc,
    msip: (mip & BigInt(MIP_MSIP)) !== 0n,
    qemuMtip: (mip & BigInt(MIP_MTIP)) !== 0n,
    qemuMeip: (mip & BigInt(MIP_MEIP)) !== 0n,
  };
}

/**
 * PMP (privileged spec 3.7): livesnap's hart has no PMP entries and checks no access, so a
 * QEMU hart's PMP state is honoured when it has the same effect: no entry locked (a locked
 * entry binds machine mode too), and either no entry active (machine mode is unaffected; QEMU
 * denies user mode everything until an entry is set, livesnap nothing) or the first active one
 * granting read, write and execute over the whole 32-bit address space, as the guests'
 * start-up code sets it (NAPOT, pmpaddr 0xffffffff, pmpcfg 0x1f).
 */
function importPmp(pmp: Fields, f: Findings): void {
  const entries = pmp.structs("env.pmp_state.pmp").map((e) => {
    const addr = e.int("addr_reg") & U32;
    const cfg = Number(e.int("cfg_reg") & 0xffn);
    e.finish();
    return { addr, cfg };
  });
  const locked = entries.findIndex((e) => (e.cfg & 0x80) !== 0);
  if (locked >= 0) {
    f.refuse(
      `cpu cpu/pmp env.pmp_state.pmp[${locked}]`,
      `pmpcfg ${
        hex(entries[locked].cfg)
      } is locked: it binds machine mode, which livesnap does not check`,
    );
    return;
  }
  const first = entries.findIndex((e) => ((e.cfg >> 3) & 3) !== 0);
  if (first < 0) {
    f.note(
      "cpu cpu/pmp",
      "no PMP entry set: QEMU denies user mode every access until one is; livesnap, with no PMP, allows them",
    );
    return;
  }
  const { addr, cfg } = entries[first];
  const a = (cfg >> 3) & 3;
  let all = false;
  if (a === 1) all = addr >= 0x4000_0000n; // TOR from 0 up to addr << 2 >= 4 GiB
  if (a === 3) {
    let ones = 0;
    while (ones < 32 && ((addr >> BigInt(ones)) & 1n) === 1n) ones++;
    all = ones >= 29; // a NAPOT range of 2^(ones + 3) bytes from 0
  }
  if (all && (cfg & 7) === 7) {
    f.note(
      `cpu cpu/pmp env.pmp_state.pmp[${first}]`,
      `pmpcfg ${hex(cfg)}, pmpaddr ${
        hex(addr)
      }: grants every access, which is what livesnap (no PMP) does`,
    );
  } else {
    f.refuse(
      `cpu cpu/pmp env.pmp_state.pmp[${first}]`,
      `pmpcfg ${hex(cfg)}, pmpaddr ${
        hex(addr)
      }: user-mode access rules livesnap's hart, which has no PMP, cannot enforce`,
    );
  }
}

/**
 * `timer` (softmmu/cpu-timers.c): with the VM stopped, cpu_clock_offset is QEMU_CLOCK_VIRTUAL
 * in nanoseconds. The ACLINT's mtime is that clock at 10 MHz plus a `time_delta` the guest sets
 * by writing mtime, which QEMU 7.2 does not migrate (hw/intc/riscv_aclint.c): mtime continues
 * from virtual_ns / 100, and the rest of the tick becomes the fraction of instructions done.
 */
function importTimer(t: Fields | null, f: Findings): { mtime: bigint; tickFraction: number } {
  if (t === null) {
    f.note("timer", "absent: mtime starts at 0");
    return { mtime: 0n, tickFraction: 0 };
  }
  const ns = t.int("cpu_clock_offset");
  t.ignore(["cpu_ticks_offset", "unused"], "QEMU's host-tick offset (not a RISC-V clock)");
  if (t.has("timer/icount")) {
    f.refuse(
      "timer timer/icount",
      "QEMU ran with -icount: its virtual clock is not cpu_clock_offset",
    );
    t.sub("timer/icount");
  }
  t.finish();
  if (ns < 0n) {
    f.refuse("timer cpu_clock_offset", `${ns}: a negative virtual clock`);
    return { mtime: 0n, tickFraction: 0 };
  }
  f.note(
    "timer cpu_clock_offset",
    `QEMU's virtual clock ${ns} ns: mtime goes on from ${
      hex(ns / NS_PER_TICK)
    } (10 MHz); a time_delta the guest set by writing mtime is not in QEMU 7.2's stream`,
  );
  return {
    mtime: ns / NS_PER_TICK,
    tickFraction: Number((ns % NS_PER_TICK) / NS_PER_INSTRUCTION),
  };
}

/** hw/intc/sifive_plic.c `vmstate_sifive_plic` → livesnap's PLIC, same layout. */
function importPlic(p: Fields | null, f: Findings): PlicState {
  const state: PlicState = {
    priority: new Array(PLIC_SOURCES).fill(0),
    threshold: new Array(PLIC_CONTEXTS).fill(0),
    pending: new Array(PLIC_WORDS).fill(0),
    claimed: new Array(PLIC_WORDS).fill(0),
    enable: new Array(PLIC_WORDS * PLIC_CONTEXTS).fill(0),
  };
  if (p === null) {
    f.note("riscv_sifive_plic", "absent: the PLIC is as after reset");
    return state;
  }
  const take = (name: string, into: number[], max: bigint) => {
    const v = p.ints(name, into.length);
    if (v.length !== into.length) return;
    v.forEach((e, i) => {
      if (e > max) f.refuse(`riscv_sifive_plic ${name}[${i}]`, `${hex(e)} is above ${hex(max)}`);
      into[i] = Number(e & U32);
    });
  };
  take("source_priority", state.priority, BigInt(PLIC_MAX_PRIORITY));
  take("target_priority", state.threshold, BigInt(PLIC_MAX_PRIORITY));
  take("pending", state.pending, U32);
  take("claimed", state.claimed, U32);
  take("enable", state.enable, U32);
  p.finish();
  return state;
}

/**
 * hw/char/serial.c `vmstate_serial` (inside `serial_mm`'s struct field) → livesnap's UART.
 * The interrupt identification is recomputed from the registers as QEMU's serial_update_irq
 * does; thr_ipending comes from its subsection, or, as QEMU's serial_post_load derives it
 * without one, from IIR.
 */
function importSerial(outer: Fields | null, f: Findings): UartState {
  const state: UartState = uartResetState();
  if (outer === null) {
    f.note("serial", "absent: the UART is as after reset");
    return state;
  }
  const s = outer.sub("serial") ?? outer; // QEMU's serial_mm wraps the 16550's vmstate
  outer.finish();
  const divider = Number(s.int("divider") & 0xffffn);
  state.dll = divider & 0xff;
  state.dlm = divider >> 8;
  state.rbr = Number(s.int("rbr") & 0xffn);
  state.ier = Number(s.int("ier") & 0x0fn);
  const iir = Number(s.int("iir") & 0xffn);
  state.lcr = Number(s.int("lcr") & 0xffn);
  state.mcr = Number(s.int("mcr") & 0x1fn);
  const lsr = Number(s.int("lsr") & 0xffn);
  const msr = Number(s.int("msr") & 0xffn);
  state.scr = Number(s.int("scr") & 0xffn);
  state.fcr = Number(s.int("fcr_vmstate") & 0xc9n);
  const fifo = (state.fcr & FCR_FE) !== 0;
  state.lsrErrors = lsr & LSR_ERRORS;
  if ((lsr & (LSR_THRE | LSR_TEMT)) !== (LSR_THRE | LSR_TEMT)) {
    f.refuse(
      "serial lsr",
      `${hex(lsr)}: the transmitter is busy (a byte waits for QEMU's backend)`,
    );
  }
  if ((state.mcr & MCR_LOOP) === 0 && msr !== MSR_DEFAULT) {
    f.refuse(
      "serial msr",
      `${hex(msr)}: modem lines or their change bits livesnap's UART (MSR ${
        hex(MSR_DEFAULT)
      }) does not model`,
    );
  }
  const thr = s.sub("serial/thr_ipending");
  state.thrIpending = thr !== undefined
    ? thr.int("thr_ipending") !== 0n
    : (iir & 0x06) === IIR_THRI;
  thr?.finish();
  const tsr = s.sub("serial/tsr");
  if (tsr !== undefined) {
    if (tsr.int("tsr_retry") !== 0n) {
      f.refuse("serial serial/tsr tsr_retry", "a byte waits to be retried on QEMU's backend");
    }
    tsr.ignore(["thr", "tsr"], "the transmit registers' last byte, already sent");
    tsr.finish();
  }
  const xmit = s.sub("serial/xmit_fifo");
  if (xmit !== undefined) {
    const q = xmit.sub("xmit_fifo");
    const num = q?.int("num") ?? 0n;
    q?.ignore(["data", "head"], "the transmit FIFO's storage");
    q?.finish();
    if (num !== 0n) {
      f.refuse("serial serial/xmit_fifo", `${num} byte(s) accepted but not yet sent by QEMU`);
    }
    xmit.finish();
  }
  // Received bytes: in the FIFO (subsection recv_fifo) with FCR.FE, in RBR (LSR.DR) without.
  const recv = s.sub("serial/recv_fifo");
  let rx: number[] = [];
  if (recv !== undefined) {
    const q = recv.sub("recv_fifo");
    if (q !== undefined) {
      const data = q.bytes("data");
      const head = Number(q.int("head"));
      const num = Number(q.int("num"));
      for (let i = 0; i < num && data.length > 0; i++) rx.push(data[(head + i) % data.length]);
      q.finish();
    }
    recv.finish();
  }
  if (!fifo) {
    if (rx.length > 0) {
      f.note(
        "serial serial/recv_fifo",
        `${rx.length} byte(s) in the disabled FIFO: unreadable, dropped`,
      );
    }
    rx = (lsr & LSR_DR) !== 0 ? [state.rbr] : [];
  } else if (((lsr & LSR_DR) !== 0) !== rx.length > 0) {
    f.note(
      "serial lsr.DR",
      `${lsr & LSR_DR} with ${rx.length} byte(s) in the FIFO: livesnap's DR follows the FIFO`,
    );
  }
  state.rx = Uint8Array.from(rx);
  const timerSub = s.sub("serial/fifo_timeout_timer");
  const timeout = s.sub("serial/timeout_ipending");
  if (timerSub !== undefined || timeout !== undefined) {
    f.note(
      "serial serial/fifo_timeout_timer, serial/timeout_ipending",
      "the receive FIFO's character timeout: livesnap's elapses at once (IIR 0xC while fewer bytes than the trigger level wait)",
    );
    timerSub?.ignore(["fifo_timeout_timer"], "the timeout's deadline");
    timerSub?.finish();
    timeout?.ignore(["timeout_ipending"], "recomputed");
    timeout?.finish();
  }
  const poll = s.sub("serial/poll");
  poll?.ignore(["poll_msl", "modem_status_poll"], "modem line polling of a host serial port");
  poll?.finish();
  s.finish();
  // The identification QEMU last computed; livesnap recomputes it and says so if it differs.
  const u = new Uart(() => {});
  u.restore(state);
  const ours = u.interruptId();
  const theirs = iir & 0x0f;
  if (ours !== theirs && !(theirs === 0x01 && ours === IIR_CTI)) {
    f.note("serial iir", `${hex(iir)} in QEMU; livesnap computes ${hex(ours)} from the registers`);
  }
  return state;
}

/** Sections checked for state livesnap cannot have, then ignored. */
function importIgnored(
  byId: Map<string, QemuSectionInput[]>,
  one: (id: string) => Fields | null,
  f: Findings,
): void {
  const g = byId.has("globalstate") ? one("globalstate") : null;
  if (g !== null) {
    const runstate = new TextDecoder().decode(g.bytes("runstate")).replace(/\0.*$/s, "");
    g.use(["size"]);
    f.note("globalstate runstate", `'${runstate}' in QEMU; livesnap runs the guest on`);
    g.finish();
  }
  if (byId.has("goldfish_rtc")) {
    const r = one("goldfish_rtc");
    if (r === null) f.note("goldfish_rtc", "not decoded (no description): ignored");
    else {
      for (const n of ["alarm_running", "irq_pending", "irq_enabled"]) {
        r.zero(n, "the RTC's alarm interrupt is in use; livesnap's machine has no RTC");
      }
      r.ignore(
        ["tick_offset_vmstate", "tick_offset", "alarm_next", "time_high"],
        "the Goldfish RTC's clock (host time): livesnap's machine has no RTC at 0x101000 (reads fault)",
      );
      r.finish();
    }
  }
  for (const s of byId.get("pflash_cfi01") ?? []) {
    const name = `pflash_cfi01 instance ${s.instanceId}`;
    const p = decodeSection(s, f, name);
    if (p === null) {
      f.note(name, "not decoded (no description): ignored");
      continue;
    }
    // hw/block/pflash_cfi01.c: read-array mode (cmd 0x00 or 0xff, no write cycle) is the idle state.
    const cmd = p.int("cmd");
    const wcycle = p.int("wcycle");
    if (wcycle !== 0n || (cmd !== 0n && cmd !== 0xffn)) {
      f.refuse(
        name,
        `a flash command is in progress (cmd ${
          hex(cmd)
        }, wcycle ${wcycle}); livesnap's machine has no flash`,
      );
    }
    p.ignore(
      ["status", "counter"],
      "the flash bank is idle in read-array mode; livesnap's machine has no flash",
    );
    p.finish();
  }
  if (byId.has("PCIBUS")) {
    const b = one("PCIBUS");
    if (b !== null) {
      b.zero("irq_count", "PCI interrupts are asserted; livesnap's machine has no PCI");
      b.ignore(["nirq"], "the PCI bus's interrupt count: no PCI on livesnap's machine");
      b.finish();
    }
  }
}
