/**
 * livesnap's machine state as QEMU 7.2's riscv32 `virt` board, and a snapshot taken by
 * livesnap's machine written as a QEMU migration stream that `qemu-system-riscv32 -machine virt
 * -bios none -m SIZE -incoming "exec:cat FILE"` resumes: the configuration, the RAM block list
 * (`riscv_virt_board.ram` of the snapshot's RAM size and `riscv_virt_board.mrom`), every page as
 * it comes, then the device sections QEMU needs ({@link exportVirtState}: its virtual clock, the
 * hart, the ACLINT timer, the PLIC, the UART, the run state) and QEMU's JSON description of them.
 * Devices livesnap does not model (RTC, flash, PCI host, fw_cfg) are left out: QEMU keeps the
 * state it boots them with.
 *
 * What is written is checked: the stream is read back as it is written, mapped to livesnap's
 * machine again, and its RAM and machine state compared with the snapshot's (the instruction
 * count aside, which a QEMU stream does not carry). The read-back builds that machine, so it
 * holds a copy of the guest's RAM while the conversion runs.
 *
 * @module
 */
import { computeContentDigest, ContentDigestBuilder } from "../format/content_digest.ts";
import type { DeviceSection } from "../format/device_section.ts";
import type { MachineDescription } from "../format/header.ts";
import { toHex } from "../format/checksum.ts";
import type { MachineState } from "../emulator/machine.ts";
import {
  checkDescriptionFits,
  SnapshotMismatchError,
  stateFromSections,
} from "../emulator/snapshot/machine_state.ts";
import { MROM_SIZE } from "../emulator/devices/mrom.ts";
import { PAGE_SIZE } from "../emulator/memory_map.ts";
import { RAM_SECTION_VERSION } from "./constants.ts";
import {
  type FieldNote,
  Findings,
  hex,
  NS_PER_INSTRUCTION,
  NS_PER_TICK,
  plicMeip,
  plicSeip,
  QemuMachineRefusedError,
  U32,
  VIRT_MACHINE,
  VIRT_MROM_BLOCK,
  VIRT_RAM_BLOCK,
} from "./riscv_virt.ts";
import {
  QEMU_RV32_RESET,
  SERIAL,
  SERIAL_SUBSECTIONS,
  VIRT_LAYOUTS,
  VIRT_SECTION_IDS,
} from "./riscv_virt_layout.ts";
import { encodeVmState, type VmStateInput } from "./vmstate_encode.ts";
import { SectionType } from "./constants.ts";
import type { QemuDeviceSection, VmDescDevice, VmDescField, VmDescStruct } from "./model.ts";
import { MIP_MEIP, MIP_MSIP, MIP_MTIP } from "../emulator/hart.ts";
import { CLINT_DEVICE_ID, type ClintState } from "../emulator/devices/clint.ts";
import { HTIF_DEVICE_ID, type HtifState } from "../emulator/devices/htif.ts";
import { MROM_DEVICE_ID } from "../emulator/devices/mrom.ts";
import { PLIC_DEVICE_ID, type PlicState } from "../emulator/devices/plic.ts";
import {
  FCR_FE,
  FIFO_SIZE,
  IER_THRI,
  IIR_CTI,
  IIR_THRI,
  MSR_DEFAULT,
  Uart,
  UART_DEVICE_ID,
  type UartState,
} from "../emulator/devices/uart.ts";
import { restoreQemuStream } from "./riscv_virt_restore.ts";
import { type ByteSink, QemuStreamWriter } from "./stream_writer.ts";

/** An item of a snapshot, as `convert`'s sources and the `.lsnap` readers give them. */
export type SnapshotItem =
  | { kind: "pages"; region: number; pages: ArrayLike<number>; data: Uint8Array | null }
  | { kind: "device"; device: DeviceSection }
  | { kind: "extension" };

/** What {@link writeVirtStream} wrote. */
export interface VirtStreamSummary {
  /** Bytes of stream written. */
  bytes: number;
  /** Page records written. */
  pageRecords: number;
  /** Device sections written. */
  devices: number;
  /** RAM size, and QEMU's `-m` option for it. */
  ramSize: number;
  /** `-m` for QEMU, e.g. `64M`. */
  memoryOption: string;
  /** What the mapping noted (QEMU behaviours to know about before resuming). */
  notes: FieldNote[];
}

/** The configuration section QEMU 7.2 writes for `-machine virt` (no subsections). */
function configurationSection(): Uint8Array {
  const name = new TextEncoder().encode(VIRT_MACHINE);
  const b = new Uint8Array(5 + name.length);
  b[0] = 0x07; // QEMU_VM_CONFIGURATION
  new DataView(b.buffer).setUint32(1, name.length);
  b.set(name, 5);
  return b;
}

/**
 * True when `description` is one of livesnap's own machine's snapshots (whatever its RAM size);
 * false for anything else, a snapshot converted from QEMU included.
 */
export function isLivesnapMachine(description: MachineDescription): boolean {
  try {
    checkDescriptionFits(description);
    return true;
  } catch {
    return false;
  }
}

/** The state compared after the read-back: what a QEMU stream carries of livesnap's. */
function comparable(state: MachineState): unknown {
  const { retired, instretOffset, cycleOffset, reservation: _, ...hart } = state.hart;
  const at = (o: string) => ((BigInt(retired) + BigInt(o)) & ((1n << 64n) - 1n)).toString();
  const devices = [...state.devices].sort((a, b) => (a.id < b.id ? -1 : 1)).map((d) => {
    if (d.id !== "ns16550a") return d;
    const u = { ...(d.state as unknown as Record<string, unknown>) };
    const rx = u.rx as Uint8Array;
    // Without the FIFO, a waiting byte is in RBR: RBR's older value is gone, as on a 16550.
    if ((Number(u.fcr) & 1) === 0 && rx.length > 0) u.rbr = rx[0];
    // thr_ipending is unused while IER.THRI is off; QEMU resamples it when THRI turns on.
    if ((Number(u.ier) & 2) === 0) u.thrIpending = false;
    return { ...d, state: u };
  });
  return { hart: { ...hart, instret: at(instretOffset), cycle: at(cycleOffset) }, devices };
}

function firstDifference(a: unknown, b: unknown, path = ""): string | null {
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    return a.length === b.length && a.every((v, i) => v === b[i]) ? null : path;
  }
  if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) {
    return a === b ? null : `${path} (${String(a)} → ${String(b)})`;
  }
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    const d = firstDifference(
      (a as Record<string, unknown>)[k],
      (b as Record<string, unknown>)[k],
      path === "" ? k : `${path}.${k}`,
    );
    if (d !== null) return d;
  }
  return null;
}

/**
 * Writes the QEMU stream of a snapshot of livesnap's machine (`description` and its items, in
 * one pass; pages may come in any order, the last copy of a page wins) to `sink`, and checks it
 * by reading it back. Throws `QemuMachineRefusedError` (a `SnapshotMismatchError`) for state
 * QEMU cannot take, before or after the RAM is written; the caller discards the output then.
 */
export async function writeVirtStream(
  description: MachineDescription,
  items: AsyncIterable<SnapshotItem>,
  sink: ByteSink,
): Promise<VirtStreamSummary> {
  const ramSize = checkDescriptionFits(description);
  if (ramSize % 8192 !== 0) {
    throw new SnapshotMismatchError(
      `RAM of ${ramSize} bytes: QEMU rounds -m up to a multiple of 8 KiB, so it cannot give this RAM size`,
    );
  }
  // The read-back: the bytes written also go to a second reader, which builds livesnap's
  // machine from them.
  const echo = new TransformStream<Uint8Array, Uint8Array>(undefined, { highWaterMark: 16 });
  const echoWriter = echo.writable.getWriter();
  const back = restoreQemuStream(echo.readable, { uartSink: () => {} });
  back.catch(() => {});
  const target = sink instanceof WritableStream ? sink.getWriter() : null;
  const writeOut = target !== null
    ? (c: Uint8Array) => target.write(c)
    : (c: Uint8Array) => (sink as { write(c: Uint8Array): Promise<unknown> }).write(c);
  const writer = new QemuStreamWriter({
    async write(chunk: Uint8Array) {
      await writeOut(chunk);
      await echoWriter.ready;
      await echoWriter.write(chunk.slice());
    },
  }, { pageSize: PAGE_SIZE });
  try {
    await writer.writeHeader(configurationSection());
    await writer.writeRamBlocks(
      [{ name: VIRT_RAM_BLOCK, size: ramSize }, { name: VIRT_MROM_BLOCK, size: MROM_SIZE }],
      { sectionId: VIRT_SECTION_IDS.ram, instanceId: 0, versionId: RAM_SECTION_VERSION },
    );
    const ramOnly: MachineDescription = { ...description, metadata: undefined };
    const ramDigest = new ContentDigestBuilder(ramOnly);
    const devices = new Map<string, DeviceSection>();
    let pageRecords = 0;
    for await (const item of items) {
      if (item.kind === "pages") {
        for (let i = 0; i < item.pages.length; i++) {
          const page = item.data === null
            ? null
            : item.data.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
          if (page === null) ramDigest.clearPage(item.region, item.pages[i]);
          else ramDigest.setPage(item.region, item.pages[i], page);
          await writer.writePage(VIRT_RAM_BLOCK, item.pages[i] * PAGE_SIZE, page ?? 0);
          pageRecords++;
        }
      } else if (item.kind === "device") {
        devices.set(`${item.device.id}\u0000${item.device.instance}`, item.device);
      }
    }
    const state = stateFromSections([...devices.values()]);
    const exported = exportVirtState(state, ramSize);
    const mrom = state.devices.find((d) => d.id === "mrom")?.state as { bytes: Uint8Array };
    for (let off = 0; off < mrom.bytes.length; off += PAGE_SIZE) {
      const page = new Uint8Array(PAGE_SIZE);
      page.set(mrom.bytes.subarray(off, off + PAGE_SIZE));
      await writer.writePage(VIRT_MROM_BLOCK, off, page);
      pageRecords++;
    }
    for (const s of exported.sections) await writer.writeDeviceSection(s);
    await writer.close(exported.vmdesc);
    await echoWriter.close();
    if (target !== null) await target.close();

    const restored = await back;
    const wantRam = toHex(await ramDigest.digest());
    const gotRam = toHex(
      await computeContentDigest(ramOnly, [restored.machine.ram.bytes], []),
    );
    if (gotRam !== wantRam) {
      throw new Error(
        `Cannot convert to a QEMU stream: the RAM read back holds content digest ${gotRam}, the snapshot's ${wantRam}`,
      );
    }
    const diff = firstDifference(comparable(state), comparable(restored.machine.save()));
    if (diff !== null) {
      throw new Error(
        `Cannot convert to a QEMU stream: the state read back differs from the snapshot's at ${diff}`,
      );
    }
    return {
      bytes: writer.bytesWritten,
      pageRecords,
      devices: exported.sections.length,
      ramSize,
      memoryOption: qemuMemoryOption(ramSize),
      notes: exported.notes,
    };
  } catch (e) {
    await echoWriter.abort(e).catch(() => {});
    if (target !== null) await target.abort(e).catch(() => {});
    throw e;
  }
}

/** What {@link exportVirtState} writes: device sections, their JSON description, notes. */
export interface VirtExport {
  /** Device sections in the order QEMU writes them. */
  sections: QemuDeviceSection[];
  /** The JSON description of those sections, as QEMU appends it to a stream. */
  vmdesc: string;
  notes: FieldNote[];
}

/** The RAM size QEMU must be started with (`-m`), as QEMU parses the option. */
export function qemuMemoryOption(ramSize: number): string {
  if (ramSize % (1 << 30) === 0) return `${ramSize / (1 << 30)}G`;
  if (ramSize % (1 << 20) === 0) return `${ramSize / (1 << 20)}M`;
  return `${ramSize / 1024}K`;
}

/**
 * The QEMU device sections for livesnap's machine state `state` with `ramSize` bytes of RAM.
 * Throws {@link QemuMachineRefusedError} for what QEMU's `virt` board cannot take (HTIF, more
 * received input than its UART holds, a RAM size `-m` cannot give).
 */
export function exportVirtState(state: MachineState, ramSize: number): VirtExport {
  const f = new Findings();
  const dev = <T>(id: string): T => {
    const d = state.devices.find((x) => x.id === id);
    if (d === undefined) throw new Error(`Cannot export to QEMU: the state has no device '${id}'`);
    return d.state as T;
  };
  const h = state.hart;
  const uart = dev<UartState>(UART_DEVICE_ID);
  const clint = dev<ClintState>(CLINT_DEVICE_ID);
  const plic = dev<PlicState>(PLIC_DEVICE_ID);
  const htif = dev<HtifState>(HTIF_DEVICE_ID);
  const mrom = dev<{ bytes: Uint8Array }>(MROM_DEVICE_ID);

  if (ramSize % 8192 !== 0) {
    f.refuse(
      "ram",
      `${ramSize} bytes: QEMU rounds -m up to a multiple of 8 KiB, so it cannot give this RAM size`,
    );
  }
  if (htif.tohost !== -1) {
    f.refuse(
      "htif",
      `the guest uses HTIF (tohost at ${hex(htif.tohost)}), which QEMU's virt board does not have`,
    );
  }
  const fifo = (uart.fcr & FCR_FE) !== 0;
  const room = fifo ? FIFO_SIZE : 1;
  if (uart.rx.length > room) {
    f.refuse(
      "ns16550a rx",
      `${uart.rx.length} received bytes wait; QEMU's UART holds ${room} (${
        fifo ? "its FIFO" : "RBR, FIFO off"
      }) and the rest would be lost`,
    );
  }
  const mtime = (BigInt(clint.mtimeHi) << 32n) | BigInt(clint.mtimeLo);
  const ns = mtime * NS_PER_TICK + BigInt(clint.tickFraction) * NS_PER_INSTRUCTION;
  if (ns > (1n << 63n) - 1n) {
    f.refuse("clint mtime", `${hex(mtime)}: beyond QEMU's 63-bit virtual clock in nanoseconds`);
  }
  if (f.refusals.length > 0) throw new QemuMachineRefusedError(f.refusals, "export");

  const mtimecmp = (BigInt(clint.mtimecmpHi) << 32n) | BigInt(clint.mtimecmpLo);
  const mip = ((clint.msip & 1) !== 0 ? MIP_MSIP : 0) | (mtime >= mtimecmp ? MIP_MTIP : 0) |
    (plicMeip(plic) ? MIP_MEIP : 0) | (plicSeip(plic) ? 1 << 9 : 0);
  if ((h.mie & MIP_MTIP) !== 0 && mtime < mtimecmp) {
    f.note(
      "clint mtimecmp",
      `the timer is armed (${hex(mtimecmp)}, mtime ${
        hex(mtime)
      }): QEMU 7.2 does not re-arm its ACLINT timer when it loads a stream (riscv_mtimer has no post_load), so the interrupt comes only after the guest writes mtimecmp or mtime again; QEMU's own migrations lose it the same way`,
      true,
    );
  }
  if (h.reservation !== -1) {
    f.note(
      "hart reservation",
      `LR/SC reservation at ${
        hex(h.reservation)
      } dropped: QEMU's SC also compares the word loaded, which a snapshot does not record; the SC fails once and the guest's LR/SC loop retries`,
    );
  }
  const cycle = (BigInt(h.retired) + BigInt(h.cycleOffset)) & ((1n << 64n) - 1n);
  const instret = (BigInt(h.retired) + BigInt(h.instretOffset)) & ((1n << 64n) - 1n);
  f.note(
    "hart mcycle, minstret",
    "QEMU 7.2 counts them in host CPU ticks from the value written here: they will not continue from livesnap's counts",
  );

  const reset = QEMU_RV32_RESET;
  const zeros = (n: number) => new Array(n).fill(0);
  const pmuCtr = (v: bigint) => ({
    mhpmcounter_val: v & U32,
    mhpmcounterh_val: v >> 32n,
    mhpmcounter_prev: 0,
    mhpmcounterh_prev: 0,
    started: false,
  });
  const cpu: Record<string, VmStateInput> = {
    "env.gpr": h.x.map((v) => v >>> 0),
    "env.fpr": zeros(32),
    "env.miprio": reset["env.miprio"],
    "env.siprio": reset["env.siprio"],
    "env.pc": h.pc >>> 0,
    "env.load_res": 0xffff_ffff,
    "env.load_val": 0,
    "env.frm": 0,
    "env.badaddr": 0,
    "env.guest_phys_fault_addr": 0,
    "env.priv_ver": reset["env.priv_ver"],
    "env.vext_ver": 0,
    "env.misa_mxl": reset["env.misa_mxl"],
    "env.misa_ext": reset["env.misa_ext"],
    "env.misa_mxl_max": reset["env.misa_mxl_max"],
    "env.misa_ext_mask": reset["env.misa_ext_mask"],
    "env.features": reset["env.features"],
    "env.priv": h.priv,
    "env.virt": 0,
    "env.resetvec": reset["env.resetvec"],
    "env.mhartid": 0,
    "env.mstatus": h.mstatus >>> 0,
    "env.mip": mip,
    "env.miclaim": reset["env.miclaim"],
    "env.mie": h.mie >>> 0,
    "env.mideleg": 0,
    "env.satp": 0,
    "env.stval": 0,
    "env.medeleg": 0,
    "env.stvec": 0,
    "env.sepc": 0,
    "env.scause": 0,
    "env.mtvec": h.mtvec >>> 0,
    "env.mepc": h.mepc >>> 0,
    "env.mcause": h.mcause >>> 0,
    "env.mtval": h.mtval >>> 0,
    "env.miselect": 0,
    "env.siselect": 0,
    "env.scounteren": 0,
    "env.mcounteren": h.mcounteren >>> 0,
    "env.mcountinhibit": 0,
    "env.pmu_ctrs": Array.from(
      { length: 32 },
      (_, i) => pmuCtr(i === 0 ? cycle : i === 2 ? instret : 0n),
    ),
    "env.mhpmevent_val": zeros(32),
    "env.mhpmeventh_val": zeros(32),
    "env.sscratch": 0,
    "env.mscratch": h.mscratch >>> 0,
    "env.mfromhost": 0,
    "env.mtohost": 0,
    "env.stimecmp": 0,
    // livesnap's hart checks no access; QEMU's denies user mode everything without a PMP entry,
    // so entry 0 grants every access (NAPOT over the whole space, RWX), as the guests' start-up
    // code sets it.
    "cpu/pmp": {
      "env.pmp_state.pmp": Array.from(
        { length: 16 },
        (
          _,
          i,
        ) => (i === 0 ? { addr_reg: 0xffff_ffff, cfg_reg: 0x1f } : { addr_reg: 0, cfg_reg: 0 }),
      ),
    },
    "cpu/hyper": Object.fromEntries(
      fieldsOf(VIRT_LAYOUTS.cpu, "cpu/hyper").map((fd) => [
        fd.name,
        fd.name === "env.hviprio" ? reset["env.hviprio"] : fd.array_len ? zeros(fd.array_len) : 0,
      ]),
    ),
    "cpu/envcfg": { "env.menvcfg": 0, "env.senvcfg": 0, "env.henvcfg": 0 },
    "cpu/debug": {
      "env.trigger_cur": 0,
      "env.tdata1": reset["env.tdata1"],
      "env.tdata2": zeros(2),
      "env.tdata3": zeros(2),
    },
  };
  f.note(
    "cpu cpu/pmp",
    "entry 0 grants every access (pmpaddr 0xffffffff, pmpcfg 0x1f): livesnap checks none, QEMU denies user mode everything without an entry",
  );

  // The UART: the bytes in it go to RBR or the FIFO; IIR as serial_update_irq computes it.
  const u = new Uart(() => {});
  u.restore(uart);
  const id = u.interruptId();
  const iir = id | (fifo ? 0xc0 : 0);
  const serial: Record<string, VmStateInput> = {
    divider: uart.dll | (uart.dlm << 8),
    rbr: !fifo && uart.rx.length > 0 ? uart.rx[0] : uart.rbr,
    ier: uart.ier,
    iir,
    lcr: uart.lcr,
    mcr: uart.mcr,
    lsr: u.lsr(),
    msr: MSR_DEFAULT, // QEMU keeps 0xb0 in msr; in loopback its reads compute MSR from MCR
    scr: uart.scr,
    fcr_vmstate: uart.fcr,
  };
  const serialSubs: VmDescStruct[] = [];
  // serial_thr_ipending_needed: sent when IER.THRI is on and thr_ipending differs from what
  // serial_post_load would derive from IIR.
  if ((uart.ier & IER_THRI) !== 0 && uart.thrIpending !== ((iir & 0x06) === IIR_THRI)) {
    serialSubs.push(SERIAL_SUBSECTIONS["serial/thr_ipending"]);
    serial["serial/thr_ipending"] = { thr_ipending: uart.thrIpending ? 1 : 0 };
  }
  if (fifo && uart.rx.length > 0) {
    const data = new Uint8Array(FIFO_SIZE);
    data.set(uart.rx);
    serialSubs.push(SERIAL_SUBSECTIONS["serial/recv_fifo"]);
    serial["serial/recv_fifo"] = { recv_fifo: { data, head: 0, num: uart.rx.length } };
  }
  if (id === IIR_CTI) {
    serialSubs.push(SERIAL_SUBSECTIONS["serial/timeout_ipending"]);
    serial["serial/timeout_ipending"] = { timeout_ipending: 1 };
  }

  const runstate = new Uint8Array(100);
  runstate.set(new TextEncoder().encode("running"));
  const mromBytes = mrom.bytes;
  if (mromBytes.length === 0) {
    f.note(
      VIRT_MROM_BLOCK,
      "empty (the guest was booted from an ELF by livesnap): a guest reset in QEMU finds no reset vector",
    );
  }

  const serialDesc: VmDescStruct = {
    ...SERIAL,
    fields: [{
      ...SERIAL.fields![0],
      struct: { ...SERIAL.fields![0].struct!, subsections: serialSubs },
    }],
  };
  const parts: [string, VmDescStruct, Record<string, VmStateInput>][] = [
    ["timer", VIRT_LAYOUTS.timer, {
      cpu_ticks_offset: 0,
      unused: new Uint8Array(8),
      cpu_clock_offset: ns,
    }],
    ["cpu_common", VIRT_LAYOUTS.cpu_common, {
      halted: 0,
      // CPU_INTERRUPT_HARD while any mip bit is set (riscv_cpu_update_mip).
      interrupt_request: mip !== 0 ? 2 : 0,
    }],
    ["cpu", VIRT_LAYOUTS.cpu, cpu],
    ["riscv_mtimer", VIRT_LAYOUTS.riscv_mtimer, { timecmp: mtimecmp }],
    ["riscv_sifive_plic", VIRT_LAYOUTS.riscv_sifive_plic, {
      source_priority: plic.priority,
      target_priority: plic.threshold,
      pending: plic.pending,
      claimed: plic.claimed,
      enable: plic.enable,
    }],
    ["serial", serialDesc, { serial }],
    ["globalstate", VIRT_LAYOUTS.globalstate, { size: 8, runstate }],
  ];
  const sections: QemuDeviceSection[] = [];
  const devices: VmDescDevice[] = [];
  for (const [idstr, desc, values] of parts) {
    const data = encodeVmState(values, desc);
    sections.push({
      sectionType: SectionType.FULL,
      sectionId: VIRT_SECTION_IDS[idstr],
      idstr,
      instanceId: 0,
      versionId: desc.version ?? 0,
      data,
    });
    devices.push({ name: idstr, instance_id: 0, ...withSizes(desc, values) });
  }
  return {
    sections,
    vmdesc: JSON.stringify({ page_size: PAGE_SIZE, devices }),
    notes: f.notes,
  };
}

function fieldsOf(desc: VmDescStruct, subsection: string): VmDescField[] {
  return desc.subsections?.find((s) => s.vmsd_name === subsection)?.fields ?? [];
}

/** The description with struct sizes filled in as QEMU reports them (bytes per element). */
function withSizes(desc: VmDescStruct, values: Record<string, VmStateInput>): VmDescStruct {
  const fields = (desc.fields ?? []).map((fd) => {
    if (fd.type !== "struct" || fd.struct === undefined) return fd;
    const v = values[fd.name];
    const first = (Array.isArray(v) ? v[0] : v) as Record<string, VmStateInput>;
    const struct = withSizes(fd.struct, first);
    return { ...fd, struct, size: encodeVmState(first, struct).length };
  });
  const subsections = desc.subsections?.map((s) =>
    withSizes(s, values[s.vmsd_name ?? ""] as Record<string, VmStateInput>)
  );
  return subsections === undefined ? { ...desc, fields } : { ...desc, fields, subsections };
}
