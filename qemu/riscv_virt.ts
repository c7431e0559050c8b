/**
 * What the two directions of the mapping between QEMU's riscv32 `virt` board and livesnap's
 * `livesnap-virt-rv32` machine share: the board's names (machine type, RAM blocks), the unit of
 * time, the findings a mapping reports (notes on what it ignored or approximated, refusals of
 * what it cannot honour) and the error that lists the refusals.
 *
 * QEMU → livesnap: `riscv_virt_import.ts` (`restore` of a QEMU stream, through
 * `riscv_virt_restore.ts`). livesnap → QEMU: `riscv_virt_export.ts` (`convert --to qemu`).
 *
 * @module
 */
import { SnapshotMismatchError } from "../emulator/snapshot/machine_state.ts";
import { INSTRUCTIONS_PER_TICK } from "../emulator/memory_map.ts";
import { PLIC_SOURCES, PLIC_WORDS, type PlicState } from "../emulator/devices/plic.ts";
import type { VmDescStruct } from "./model.ts";

/** QEMU's machine type name of the board. */
export const VIRT_MACHINE = "virt";
/** QEMU's RAM block of guest DRAM (at 0x8000_0000). */
export const VIRT_RAM_BLOCK = "riscv_virt_board.ram";
/** QEMU's RAM block of the mask ROM (at 0x1000). */
export const VIRT_MROM_BLOCK = "riscv_virt_board.mrom";
/** QEMU's RAM blocks of the two CFI flash banks (at 0x2000_0000, 0x2200_0000). */
export const VIRT_FLASH_BLOCKS: readonly string[] = ["virt.flash0", "virt.flash1"];
/** QEMU's virtual clock runs in nanoseconds; its `virt` timebase is 10 MHz: 100 ns a tick. */
export const NS_PER_TICK = 100n;
/** livesnap's nominal instruction time: a tick is INSTRUCTIONS_PER_TICK instructions. */
export const NS_PER_INSTRUCTION = NS_PER_TICK / BigInt(INSTRUCTIONS_PER_TICK);
export const U32 = 0xffff_ffffn;

/** A field livesnap ignored or approximated, and why. */
export interface FieldNote {
  /** Section and field, e.g. `cpu env.misa_ext` or `serial`. */
  field: string;
  /** What was ignored or approximated, and why. */
  note: string;
  /** Set when the guest may behave differently because of it (worth a warning). */
  warn?: boolean;
}

/** A field livesnap cannot honour, and why. */
export interface FieldRefusal {
  /** Section and field, e.g. `cpu env.mstatus.FS`. */
  field: string;
  /** Its value and why livesnap's machine (or QEMU's board) cannot honour it. */
  reason: string;
}

/** What a mapping found: notes (ignored or approximated fields) and refusals. */
export class Findings {
  readonly notes: FieldNote[] = [];
  readonly refusals: FieldRefusal[] = [];
  note(field: string, note: string, warn = false): void {
    this.notes.push(warn ? { field, note, warn } : { field, note });
  }
  refuse(field: string, reason: string): void {
    this.refusals.push({ field, reason });
  }
}

/**
 * A QEMU state livesnap's machine cannot honour; `refusals` names every field, and the message
 * lists them.
 */
export class QemuMachineRefusedError extends SnapshotMismatchError {
  /** Every field refused. */
  readonly refusals: FieldRefusal[];
  /** Makes the error; `direction` words the message for a restore or an export to QEMU. */
  constructor(refusals: FieldRefusal[], direction: "restore" | "export" = "restore") {
    const list = refusals.map((r) => `${r.field}: ${r.reason}`).join("; ");
    super(
      direction === "restore"
        ? `QEMU's machine state has ${refusals.length} field(s) livesnap's machine cannot honour: ${list}`
        : `QEMU cannot take ${refusals.length} part(s) of this machine: ${list}`,
    );
    this.name = "QemuMachineRefusedError";
    this.refusals = refusals;
  }
}

/** One device section of a QEMU `virt` snapshot, as the import takes it. */
export interface QemuSectionInput {
  idstr: string;
  instanceId: number;
  versionId: number;
  data: Uint8Array;
  /** The device's entry of the stream's JSON description, when the stream has one. */
  vmdesc?: VmDescStruct;
}

/** A number in hex, for messages. */
export const hex = (v: bigint | number): string => `0x${BigInt(v).toString(16)}`;

/** Whether the PLIC's context `ctx` has an interrupt to deliver (QEMU: sifive_plic_claimed). */
export function plicPending(s: PlicState, ctx: number): boolean {
  for (let w = 0; w < PLIC_WORDS; w++) {
    const ready = s.pending[w] & ~s.claimed[w] & s.enable[ctx * PLIC_WORDS + w];
    for (let b = 0; b < 32; b++) {
      const irq = w * 32 + b;
      if ((ready & (1 << b)) !== 0 && irq < PLIC_SOURCES && s.priority[irq] > s.threshold[ctx]) {
        return true;
      }
    }
  }
  return false;
}

/** mip.MEIP as the PLIC drives it (context 0). */
export function plicMeip(s: PlicState): boolean {
  return plicPending(s, 0);
}

/** mip.SEIP as the PLIC drives it (context 1). */
export function plicSeip(s: PlicState): boolean {
  return plicPending(s, 1);
}
