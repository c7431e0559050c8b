/**
 * Builds livesnap's machine from a QEMU `virt` snapshot: a QEMU migration stream read as it
 * arrives, or an `.lsnap` file converted from one (one region per RAM block, device sections
 * kept as QEMU's bytes). Both feed one {@link VirtMachineBuilder}: RAM blocks by QEMU's names
 * (`riscv_virt_board.ram` is the machine's RAM, `riscv_virt_board.mrom` its mask ROM; the flash
 * banks must be empty: the machine has no flash), then the device sections, mapped by
 * `riscv_virt_import.ts`.
 *
 * @module
 */
import type { DeviceSection } from "../format/device_section.ts";
import { decodeDeviceState } from "../format/device_state.ts";
import type { MachineDescription } from "../format/header.ts";
import { Machine, type MachineOptions } from "../emulator/machine.ts";
import { MROM_BASE, MROM_SIZE } from "../emulator/devices/mrom.ts";
import { MAX_RAM_SIZE, PAGE_SIZE, RAM_BASE } from "../emulator/memory_map.ts";
import { SnapshotMismatchError } from "../emulator/snapshot/machine_state.ts";
import { openQemuStream, QEMU_STREAM_DEVICE_ID, qemuMachineOf } from "./convert.ts";
import type { VmDescStruct } from "./model.ts";
import {
  type FieldNote,
  Findings,
  QemuMachineRefusedError,
  type QemuSectionInput,
  VIRT_FLASH_BLOCKS,
  VIRT_MROM_BLOCK,
  VIRT_RAM_BLOCK,
} from "./riscv_virt.ts";
import { importVirtState } from "./riscv_virt_import.ts";
import type { ByteInput } from "./stream_reader.ts";

/** A machine built from a QEMU snapshot, and what the mapping noted. */
export interface VirtRestored {
  /** The machine, restored, not yet run. */
  machine: Machine;
  /** Fields ignored or approximated (`restore --verbose` lists them). */
  notes: FieldNote[];
}

type Role =
  | { kind: "ram" }
  | { kind: "mrom"; bytes: Uint8Array }
  | { kind: "flash"; name: string; nonZero: Set<number> }
  | { kind: "other" };

/**
 * Takes a QEMU snapshot's regions (RAM blocks), pages and device sections, in any order of
 * pages (the last copy of a page wins) and devices, and builds the machine.
 */
export class VirtMachineBuilder {
  readonly #machineType: string;
  readonly #findings = new Findings();
  readonly #roles: Role[];
  readonly #pageSizes: number[];
  readonly #sections = new Map<string, QemuSectionInput>();
  readonly machine: Machine;

  /**
   * Checks the regions of `description` (QEMU's RAM blocks) and creates the machine. Throws
   * {@link QemuMachineRefusedError} when the RAM does not fit or a block is of a memory the
   * machine does not have.
   */
  constructor(
    description: MachineDescription,
    machineType: string,
    options: Pick<MachineOptions, "uartSink"> = {},
  ) {
    this.#machineType = machineType;
    const f = this.#findings;
    let ramSize = -1;
    this.#pageSizes = description.regions.map((r) => r.pageSize);
    this.#roles = description.regions.map((r): Role => {
      if (r.name === VIRT_RAM_BLOCK) {
        ramSize = r.size;
        return { kind: "ram" };
      }
      if (r.name === VIRT_MROM_BLOCK) {
        if (r.size > MROM_SIZE) {
          f.refuse(r.name, `${r.size} bytes: the mask ROM has ${MROM_SIZE}`);
        }
        return { kind: "mrom", bytes: new Uint8Array(Math.max(r.size, MROM_SIZE)) };
      }
      if (VIRT_FLASH_BLOCKS.includes(r.name)) {
        return { kind: "flash", name: r.name, nonZero: new Set() };
      }
      f.refuse(
        r.name,
        `a RAM block of ${r.size} bytes of a memory livesnap's machine does not have`,
      );
      return { kind: "other" };
    });
    if (ramSize < 0) f.refuse(VIRT_RAM_BLOCK, "the snapshot has no guest RAM block");
    else if (ramSize > MAX_RAM_SIZE || ramSize % PAGE_SIZE !== 0 || ramSize === 0) {
      f.refuse(
        VIRT_RAM_BLOCK,
        `${ramSize} bytes: livesnap's machine takes a multiple of ${PAGE_SIZE} up to ${MAX_RAM_SIZE}`,
      );
    }
    for (const ps of this.#pageSizes) {
      if (ps !== PAGE_SIZE) f.refuse("page size", `${ps}: livesnap's machine uses ${PAGE_SIZE}`);
    }
    if (machineType !== "virt") {
      f.refuse(
        "configuration",
        `machine '${machineType}': livesnap restores QEMU's riscv32 'virt' board only`,
      );
    }
    if (f.refusals.length > 0) throw new QemuMachineRefusedError(f.refusals);
    this.machine = new Machine({ ramSize, uartSink: options.uartSink });
  }

  /** Pages `pages` of region `region`; `data` holds them in order, or is null for zero pages. */
  pages(region: number, pages: ArrayLike<number>, data: Uint8Array | null): void {
    const role = this.#roles[region];
    const ps = this.#pageSizes[region];
    for (let i = 0; i < pages.length; i++) {
      const page = data === null ? null : data.subarray(i * ps, (i + 1) * ps);
      const at = pages[i] * ps;
      if (role.kind === "ram") {
        // Straight into RAM: nothing runs yet (restore() drops decoded instructions).
        if (page === null) this.machine.ram.bytes.fill(0, at, at + ps);
        else this.machine.ram.bytes.set(page, at);
      } else if (role.kind === "mrom") {
        if (page === null) role.bytes.fill(0, at, at + ps);
        else role.bytes.set(page, at);
      } else if (role.kind === "flash") {
        if (page !== null && page.some((b) => b !== 0)) role.nonZero.add(pages[i]);
        else role.nonZero.delete(pages[i]);
      }
    }
  }

  /** A device section of the snapshot (a later one of the same id and instance wins). */
  device(section: QemuSectionInput): void {
    this.#sections.set(`${section.idstr}\u0000${section.instanceId}`, section);
  }

  /**
   * Maps the device state and restores the machine. Throws {@link QemuMachineRefusedError}
   * listing every field that cannot be honoured.
   */
  finish(): VirtRestored {
    const f = this.#findings;
    const mrom = this.#roles.find((r) => r.kind === "mrom");
    for (const r of this.#roles) {
      if (r.kind !== "flash") continue;
      if (r.nonZero.size > 0) {
        const first = Math.min(...r.nonZero);
        f.refuse(
          r.name,
          `holds data (${r.nonZero.size} non-zero pages, the first at offset 0x${
            (first * PAGE_SIZE).toString(16)
          }): livesnap's machine has no flash`,
        );
      } else {
        f.note(r.name, "an empty flash bank: livesnap's machine has no flash (accesses fault)");
      }
    }
    const mromBytes = mrom?.kind === "mrom" ? mrom.bytes : new Uint8Array(MROM_SIZE);
    const ram = this.machine.ram;
    const state = importVirtState({
      machine: this.#machineType,
      sections: [...this.#sections.values()],
      ramSize: ram.size,
      mrom: mromBytes,
      readWord(address) {
        const a = address >>> 0;
        if (a >= RAM_BASE && a - RAM_BASE + 4 <= ram.size) {
          return new DataView(ram.bytes.buffer, a - RAM_BASE, 4).getUint32(0, true);
        }
        if (a >= MROM_BASE && a - MROM_BASE + 4 <= MROM_SIZE) {
          return new DataView(mromBytes.buffer, a - MROM_BASE, 4).getUint32(0, true);
        }
        return null;
      },
      findings: f,
    });
    try {
      this.machine.restore(state);
    } catch (e) {
      throw new SnapshotMismatchError((e as Error).message.replace(/^Cannot restore /, ""));
    }
    this.machine.instructionsCountedFrom = "qemu-stream";
    return { machine: this.machine, notes: f.notes };
  }
}

/** The QEMU device section an `.lsnap` converted from a QEMU stream keeps (null: not one). */
export function qemuSectionOf(d: DeviceSection): QemuSectionInput | null {
  if (d.encoding !== "foreign" || d.description.length === 0) return null;
  let desc: unknown;
  try {
    desc = decodeDeviceState(d.description);
  } catch {
    return null;
  }
  if (typeof desc !== "object" || desc === null || !("format" in desc)) return null;
  const meta = desc as { format: unknown; vmdesc?: unknown };
  if (meta.format !== "qemu-vmstate") return null;
  let vmdesc: VmDescStruct | undefined;
  if (typeof meta.vmdesc === "string") {
    try {
      vmdesc = JSON.parse(meta.vmdesc) as VmDescStruct;
    } catch {
      vmdesc = undefined;
    }
  }
  return { idstr: d.id, instanceId: d.instance, versionId: d.version, data: d.state, vmdesc };
}

/**
 * A builder for an `.lsnap` snapshot converted from a QEMU stream (its header carries QEMU
 * metadata), or null for any other snapshot.
 */
export function virtBuilderFor(
  description: MachineDescription,
  options: Pick<MachineOptions, "uartSink"> = {},
): VirtMachineBuilder | null {
  const machine = qemuMachineOf(description);
  return machine === null ? null : new VirtMachineBuilder(description, machine, options);
}

/** Feeds an `.lsnap` device section to a builder (sections other than QEMU's are skipped). */
export function feedLsnapDevice(builder: VirtMachineBuilder, d: DeviceSection): void {
  if (d.id === QEMU_STREAM_DEVICE_ID) return;
  const s = qemuSectionOf(d);
  if (s === null) {
    throw new SnapshotMismatchError(
      `device '${d.id}' of a snapshot converted from QEMU is not a QEMU device section`,
    );
  }
  builder.device(s);
}

/**
 * Reads a QEMU migration stream in one pass into livesnap's machine. Also returns the
 * snapshot's description (one region per RAM block, as `convert` makes it) and its content
 * digest (FORMAT.md §10, equal to that of the `.lsnap` file `convert` would write).
 */
export async function restoreQemuStream(
  input: ByteInput,
  options: Pick<MachineOptions, "uartSink"> = {},
): Promise<VirtRestored & { description: MachineDescription; contentDigest: Uint8Array }> {
  const snap = await openQemuStream(input, { creator: "livesnap restore" });
  const builder = new VirtMachineBuilder(
    snap.description,
    qemuMachineOf(snap.description) ?? "",
    options,
  );
  for await (const item of snap.items()) {
    if (item.kind === "pages") builder.pages(item.region, item.pages, item.data);
    else feedLsnapDevice(builder, item.device);
  }
  const restored = builder.finish();
  return { ...restored, description: snap.description, contentDigest: await snap.contentDigest() };
}
