/**
 * ELF32 loader for statically linked little-endian RISC-V executables (System V gABI, "ELF-64
 * Object File Format" for field layouts; RISC-V psABI for e_machine 243). Only PT_LOAD segments
 * are loaded; the symbol table is read to find HTIF's `tohost` / `fromhost`.
 *
 * @module
 */

/** A loadable segment. */
export interface ElfSegment {
  /** Physical load address (p_paddr, as QEMU's loader uses it). */
  paddr: number;
  /** Bytes from the file (p_filesz of them). */
  data: Uint8Array;
  /** Size in memory; the part past `data` is zero (p_memsz). */
  memSize: number;
}

/** A parsed executable. */
export interface ElfImage {
  entry: number;
  segments: ElfSegment[];
  /** Symbol name to value, for defined symbols. */
  symbols: Map<string, number>;
}

/** Why an ELF could not be loaded, with the offending file offset when one applies. */
export class ElfError extends Error {
  /** "ElfError", so that `e.name` tells it from other errors in logs. */
  override name = "ElfError";
  /** `offset` is the byte offset in the ELF file where the problem is, when one applies. */
  constructor(message: string, readonly offset?: number) {
    super(message);
  }
}

const EM_RISCV = 243;
const PT_LOAD = 1;
const SHT_SYMTAB = 2;

/** Parse an ELF32 RISC-V executable. Throws {@linkcode ElfError} with the reason. */
export function parseElf(file: Uint8Array): ElfImage {
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const need = (off: number, len: number, what: string) => {
    if (off < 0 || len < 0 || off + len > file.length) {
      throw new ElfError(
        `Cannot load ELF: ${what} at offset ${off} (${len} bytes) is past the end of the ${file.length}-byte file`,
        off,
      );
    }
  };
  need(0, 52, "the ELF header");
  if (dv.getUint32(0, false) !== 0x7f45_4c46) throw new ElfError("Cannot load ELF: bad magic", 0);
  if (file[4] !== 1) {
    throw new ElfError(`Cannot load ELF: class ${file[4]} is not ELFCLASS32 (a 64-bit ELF?)`, 4);
  }
  if (file[5] !== 1) throw new ElfError("Cannot load ELF: not little-endian", 5);
  const type = dv.getUint16(16, true);
  if (type !== 2) {
    throw new ElfError(`Cannot load ELF: e_type ${type} is not ET_EXEC (statically linked)`, 16);
  }
  const machine = dv.getUint16(18, true);
  if (machine !== EM_RISCV) {
    throw new ElfError(`Cannot load ELF: e_machine ${machine} is not RISC-V (243)`, 18);
  }
  const entry = dv.getUint32(24, true);
  const phoff = dv.getUint32(28, true);
  const shoff = dv.getUint32(32, true);
  const phentsize = dv.getUint16(42, true);
  const phnum = dv.getUint16(44, true);
  const shentsize = dv.getUint16(46, true);
  const shnum = dv.getUint16(48, true);

  const segments: ElfSegment[] = [];
  if (phnum > 0 && phentsize < 32) {
    throw new ElfError(`Cannot load ELF: e_phentsize ${phentsize} is below 32`, 42);
  }
  need(phoff, phnum * phentsize, "the program header table");
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (dv.getUint32(p, true) !== PT_LOAD) continue;
    const offset = dv.getUint32(p + 4, true);
    const paddr = dv.getUint32(p + 12, true);
    const filesz = dv.getUint32(p + 16, true);
    const memsz = dv.getUint32(p + 20, true);
    if (filesz > memsz) {
      throw new ElfError(
        `Cannot load ELF: segment ${i} has p_filesz ${filesz} > p_memsz ${memsz}`,
        p + 16,
      );
    }
    need(offset, filesz, `segment ${i}`);
    if (memsz === 0) continue;
    segments.push({ paddr, data: file.subarray(offset, offset + filesz), memSize: memsz });
  }

  const symbols = new Map<string, number>();
  if (shoff !== 0 && shnum > 0) {
    if (shentsize < 40) {
      throw new ElfError(`Cannot load ELF: e_shentsize ${shentsize} is below 40`, 46);
    }
    need(shoff, shnum * shentsize, "the section header table");
    for (let i = 0; i < shnum; i++) {
      const s = shoff + i * shentsize;
      if (dv.getUint32(s + 4, true) !== SHT_SYMTAB) continue;
      const symOff = dv.getUint32(s + 16, true);
      const symSize = dv.getUint32(s + 20, true);
      const link = dv.getUint32(s + 24, true);
      const entSize = dv.getUint32(s + 36, true) || 16;
      need(symOff, symSize, "the symbol table");
      if (link >= shnum) throw new ElfError(`Cannot load ELF: symtab sh_link ${link}`, s + 24);
      const strHdr = shoff + link * shentsize;
      const strOff = dv.getUint32(strHdr + 16, true);
      const strSize = dv.getUint32(strHdr + 20, true);
      need(strOff, strSize, "the string table");
      for (let e = symOff; e + 16 <= symOff + symSize; e += entSize) {
        const nameOff = dv.getUint32(e, true);
        const shndx = dv.getUint16(e + 14, true);
        if (nameOff === 0 || shndx === 0 || nameOff >= strSize) continue;
        let end = strOff + nameOff;
        while (end < strOff + strSize && file[end] !== 0) end++;
        const name = new TextDecoder().decode(file.subarray(strOff + nameOff, end));
        symbols.set(name, dv.getUint32(e + 4, true));
      }
    }
  }
  return { entry, segments, symbols };
}
