/**
 * Writes a snapshot taken by livesnap's machine as a QEMU 7.2 migration stream of its riscv32
 * `virt` board, which `qemu-system-riscv32 -machine virt -bios none -m SIZE -incoming
 * "exec:cat FILE"` resumes: the configuration, the RAM block list (`riscv_virt_board.ram` of the
 * snapshot's RAM size and `riscv_virt_board.mrom`), every page as it comes, then the device
 * sections `riscv_virt.ts` makes from the machine state and QEMU's JSON description of them.
 *
 * What is written is checked: the stream is read back as it is written, mapped to livesnap's
 * machine again, and its RAM and machine state compared with the snapshot's (the instruction
 * count aside, which a QEMU stream does not carry).
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
  exportVirtState,
  type FieldNote,
  qemuMemoryOption,
  VIRT_MACHINE,
  VIRT_MROM_BLOCK,
  VIRT_RAM_BLOCK,
} from "./riscv_virt.ts";
import { VIRT_SECTION_IDS } from "./riscv_virt_layout.ts";
import { restoreQemuStream } from "./riscv_virt_restore.ts";
import { type ByteSink, QemuStreamWriter } from "./stream_writer.ts";

/** An item of a snapshot, as `convert`'s sources and the `.lsnap` readers give them. */
export type SnapshotItem =
  | { kind: "pages"; region: number; pages: ArrayLike<number>; data: Uint8Array | null }
  | { kind: "device"; device: DeviceSection }
  | { kind: "extension" };

/** What {@link writeVirtStream} wrote. */
export interface VirtStreamSummary {
  bytes: number;
  /** Page records written. */
  pageRecords: number;
  /** Device sections written. */
  devices: number;
  /** RAM size, and QEMU's `-m` option for it. */
  ramSize: number;
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
  const devices = state.devices.map((d) => {
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
