/**
 * ELF core files for a 32-bit RISC-V guest, so that `gdb` (Debian's `gdb-multiarch`) can open a
 * snapshot's memory beside the guest's own ELF and read its variables.
 *
 * The file is: the ELF header, one `PT_NOTE` program header and one `PT_LOAD` per memory region,
 * the note (an `NT_PRSTATUS` holding the registers, when they are known), then each region's bytes
 * at a page-aligned file offset. Layout of the note follows what BFD expects of a Linux riscv32
 * core (`bfd/elfnn-riscv.c`, `riscv_elf_grok_prstatus`): a 204-byte `elf_prstatus` with
 * `pr_cursig` at 12, `pr_pid` at 24 and `pr_reg` at 72; `pr_reg` is gdb's riscv general register
 * set (`gdb/riscv-tdep.c`, `riscv_gregmap`): `pc`, then `x1` … `x31`, each a 32-bit word.
 *
 * Region bytes are not held here: {@linkcode layoutElfCore} returns the header bytes and the file
 * offset of each region, and the caller writes the contents (possibly streaming, possibly leaving
 * holes for zero pages). {@linkcode encodeElfCore} builds a whole file in memory for small cases.
 *
 * @module
 */

/** `e_machine` for RISC-V. */
export const EM_RISCV = 243;
/** `e_type` of a core file. */
export const ET_CORE = 4;
/** Program header types. */
export const PT_LOAD = 1;
export const PT_NOTE = 4;
/** Note type of the process status note that carries the general registers. */
export const NT_PRSTATUS = 1;
/** `sizeof(struct elf_prstatus)` for Linux riscv32, as BFD checks it. */
export const PRSTATUS_SIZE_RV32 = 204;
/** Offset of `pr_cursig` inside `elf_prstatus` (riscv32). */
export const PRSTATUS_OFFSET_CURSIG = 12;
/** Offset of `pr_pid` inside `elf_prstatus` (riscv32). */
export const PRSTATUS_OFFSET_PID = 24;
/** Offset of `pr_reg` inside `elf_prstatus` (riscv32). */
export const PRSTATUS_OFFSET_REG = 72;
/** 32 registers (pc, x1..x31) of 4 bytes. */
export const GREGSET_SIZE_RV32 = 128;

const ELF32_EHDR_SIZE = 52;
const ELF32_PHDR_SIZE = 32;
const NOTE_NAME = "CORE";
/** `SIGTRAP`: what a debugger shows as the reason the "process" stopped. */
const SIGTRAP = 5;
const PF_X = 1;
const PF_W = 2;
const PF_R = 4;

/** One memory region of the core: where it lives in the guest and how many bytes it has. */
export interface ElfCoreSegment {
  /** Guest physical address of the first byte (also used as the virtual address). */
  address: number;
  /** Size in bytes. */
  size: number;
}

/** The RV32 integer registers: `pc` and `x[0..31]` (`x[0]` is ignored, it is always zero). */
export interface Rv32Registers {
  /** Program counter, as an unsigned or signed 32-bit value. */
  pc: number;
  /** The 32 integer registers in order, 32-bit values (signed or unsigned). */
  x: ArrayLike<number>;
}

/** Options of {@linkcode layoutElfCore}. */
export interface ElfCoreOptions {
  /** `e_flags`; copy the guest ELF's flags (e.g. `1` for RVC) to be exact. Default 0. */
  flags?: number;
  /** Alignment of each region's bytes in the file; default 4096. */
  alignment?: number;
  /** `pr_pid` in the status note; default 1. */
  pid?: number;
  /**
   * File offset of the first region's bytes (default: the header's end, aligned). Lets a writer
   * fix where the data goes before it knows whether there will be a register note.
   */
  dataOffset?: number;
}

/** Where everything goes in the core file. */
export interface ElfCoreLayout {
  /** ELF header, program headers and note, to be written at offset 0. */
  header: Uint8Array;
  /** One entry per input segment, in the same order: its file offset. */
  segments: Array<ElfCoreSegment & { fileOffset: number }>;
  /** Total file size. */
  fileSize: number;
}

function align(value: number, to: number): number {
  return Math.ceil(value / to) * to;
}

function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new RangeError(`Cannot build ELF core: ${what} ${value} does not fit in 32 bits`);
  }
}

/**
 * Encodes the `NT_PRSTATUS` descriptor (204 bytes) holding `registers`.
 *
 * @example
 * ```ts
 * import { encodePrstatusRv32 } from "./elf_core.ts";
 * const desc = encodePrstatusRv32({ pc: 0x8000_0000, x: new Array(32).fill(0) });
 * desc.length; // 204
 * ```
 */
export function encodePrstatusRv32(registers: Rv32Registers, pid = 1): Uint8Array {
  if (registers.x.length < 32) {
    throw new RangeError(
      `Cannot encode prstatus: expected 32 x registers, got ${registers.x.length}`,
    );
  }
  const desc = new Uint8Array(PRSTATUS_SIZE_RV32);
  const view = new DataView(desc.buffer);
  view.setUint32(0, SIGTRAP, true); // pr_info.si_signo
  view.setUint16(PRSTATUS_OFFSET_CURSIG, SIGTRAP, true);
  view.setUint32(PRSTATUS_OFFSET_PID, pid, true);
  view.setUint32(PRSTATUS_OFFSET_REG, registers.pc >>> 0, true);
  for (let i = 1; i < 32; i++) {
    view.setUint32(PRSTATUS_OFFSET_REG + 4 * i, registers.x[i] >>> 0, true);
  }
  return desc;
}

function encodeNote(type: number, name: string, desc: Uint8Array): Uint8Array {
  const nameBytes = new TextEncoder().encode(name + "\0");
  const size = 12 + align(nameBytes.length, 4) + align(desc.length, 4);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, nameBytes.length, true);
  view.setUint32(4, desc.length, true);
  view.setUint32(8, type, true);
  out.set(nameBytes, 12);
  out.set(desc, 12 + align(nameBytes.length, 4));
  return out;
}

/**
 * Lays out a core file: returns the header bytes (ELF header, program headers, register note)
 * and the file offset at which each segment's bytes must be written.
 *
 * Without `registers` the core has no `NT_PRSTATUS` note; gdb then reads memory but shows no
 * registers.
 *
 * @example
 * ```ts
 * import { layoutElfCore } from "./elf_core.ts";
 * const layout = layoutElfCore([{ address: 0x8000_0000, size: 8192 }], undefined);
 * layout.segments[0].fileOffset; // 4096
 * layout.fileSize; // 12288
 * ```
 */
export function layoutElfCore(
  segments: readonly ElfCoreSegment[],
  registers: Rv32Registers | undefined,
  options: ElfCoreOptions = {},
): ElfCoreLayout {
  const alignment = options.alignment ?? 4096;
  const note = registers === undefined
    ? new Uint8Array(0)
    : encodeNote(NT_PRSTATUS, NOTE_NAME, encodePrstatusRv32(registers, options.pid ?? 1));
  const phnum = segments.length + 1;
  if (phnum > 0xffff) throw new RangeError(`Cannot build ELF core: ${segments.length} regions`);
  const noteOffset = ELF32_EHDR_SIZE + phnum * ELF32_PHDR_SIZE;
  const headerSize = noteOffset + note.length;
  let offset = align(headerSize, alignment);
  if (options.dataOffset !== undefined) {
    if (options.dataOffset < headerSize || options.dataOffset % alignment !== 0) {
      throw new RangeError(
        `Cannot build ELF core: data offset ${options.dataOffset} is inside the ${headerSize}-byte header or not aligned to ${alignment}`,
      );
    }
    offset = options.dataOffset;
  }
  const placed = segments.map((s) => {
    checkU32(s.address, "address");
    checkU32(s.size, "size");
    checkU32(s.address + s.size - (s.size > 0 ? 1 : 0), "end address");
    const fileOffset = offset;
    offset = align(offset + s.size, alignment);
    checkU32(fileOffset + s.size, "file offset");
    return { ...s, fileOffset };
  });
  const last = placed.at(-1);
  const fileSize = last === undefined ? headerSize : last.fileOffset + last.size;

  const header = new Uint8Array(headerSize);
  const view = new DataView(header.buffer);
  header.set([0x7f, 0x45, 0x4c, 0x46, 1, /* ELFCLASS32 */ 1, /* LSB */ 1 /* EV_CURRENT */], 0);
  view.setUint16(16, ET_CORE, true);
  view.setUint16(18, EM_RISCV, true);
  view.setUint32(20, 1, true); // e_version
  view.setUint32(24, 0, true); // e_entry
  view.setUint32(28, ELF32_EHDR_SIZE, true); // e_phoff
  view.setUint32(32, 0, true); // e_shoff
  view.setUint32(36, options.flags ?? 0, true);
  view.setUint16(40, ELF32_EHDR_SIZE, true);
  view.setUint16(42, ELF32_PHDR_SIZE, true);
  view.setUint16(44, phnum, true);
  view.setUint16(46, 40, true); // e_shentsize (no sections, but the size of one)
  view.setUint16(48, 0, true);
  view.setUint16(50, 0, true);

  let ph = ELF32_EHDR_SIZE;
  const phdr = (
    type: number,
    fileOffset: number,
    address: number,
    size: number,
    flags: number,
    alignTo: number,
  ) => {
    view.setUint32(ph + 0, type, true);
    view.setUint32(ph + 4, fileOffset, true);
    view.setUint32(ph + 8, address, true);
    view.setUint32(ph + 12, address, true);
    view.setUint32(ph + 16, size, true);
    view.setUint32(ph + 20, size, true);
    view.setUint32(ph + 24, flags, true);
    view.setUint32(ph + 28, alignTo, true);
    ph += ELF32_PHDR_SIZE;
  };
  phdr(PT_NOTE, noteOffset, 0, note.length, PF_R, 4);
  for (const s of placed) {
    phdr(PT_LOAD, s.fileOffset, s.address, s.size, PF_R | PF_W | PF_X, alignment);
  }
  header.set(note, noteOffset);
  return { header, segments: placed, fileSize };
}

/**
 * Builds a whole core file in memory (for small guests and tests; large ones should use
 * {@linkcode layoutElfCore} and write the regions as they come).
 *
 * @example
 * ```ts
 * import { encodeElfCore } from "./elf_core.ts";
 * const core = encodeElfCore(
 *   [{ address: 0x8000_0000, data: new Uint8Array(4096) }],
 *   { pc: 0x8000_0000, x: new Array(32).fill(0) },
 * );
 * core[16]; // 4 (ET_CORE)
 * ```
 */
export function encodeElfCore(
  segments: ReadonlyArray<{ address: number; data: Uint8Array }>,
  registers: Rv32Registers | undefined,
  options: ElfCoreOptions = {},
): Uint8Array {
  const layout = layoutElfCore(
    segments.map((s) => ({ address: s.address, size: s.data.length })),
    registers,
    options,
  );
  const out = new Uint8Array(layout.fileSize);
  out.set(layout.header, 0);
  segments.forEach((s, i) => out.set(s.data, layout.segments[i].fileOffset));
  return out;
}
