/**
 * Test helper: loads the PT_LOAD segments of a small RISC-V ELF into a flat RAM image, the way a
 * loader would, so tests can build snapshots of a known guest without the emulator.
 *
 * @module
 */

/** The test guest: a tiny bare-metal program with globals (see fixtures/gdb_guest/guest.c). */
export const GDB_GUEST_ELF = new URL("./fixtures/gdb_guest/guest.elf", import.meta.url);

/** Global symbols of the test guest and their addresses (from its symbol table). */
export interface GuestImage {
  ram: Uint8Array;
  base: number;
  entry: number;
  flags: number;
  symbols: Map<string, number>;
}

/** Loads `elf`'s PT_LOAD segments into a zeroed image of `size` bytes at `base`. */
export function loadGuestImage(elf: Uint8Array, base: number, size: number): GuestImage {
  const v = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  const phoff = v.getUint32(28, true);
  const phnum = v.getUint16(44, true);
  const ram = new Uint8Array(size);
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * 32;
    if (v.getUint32(p, true) !== 1) continue;
    const off = v.getUint32(p + 4, true);
    const addr = v.getUint32(p + 12, true);
    const filesz = v.getUint32(p + 16, true);
    ram.set(elf.subarray(off, off + filesz), addr - base);
  }
  const symbols = new Map<string, number>();
  const shoff = v.getUint32(32, true);
  const shnum = v.getUint16(48, true);
  for (let i = 0; i < shnum; i++) {
    const sh = shoff + i * 40;
    if (v.getUint32(sh + 4, true) !== 2 /* SHT_SYMTAB */) continue;
    const symOff = v.getUint32(sh + 16, true);
    const symSize = v.getUint32(sh + 20, true);
    const strSh = shoff + v.getUint32(sh + 24, true) * 40;
    const strOff = v.getUint32(strSh + 16, true);
    for (let s = symOff; s < symOff + symSize; s += 16) {
      const nameOff = v.getUint32(s, true);
      let end = strOff + nameOff;
      while (elf[end] !== 0) end++;
      const name = new TextDecoder().decode(elf.subarray(strOff + nameOff, end));
      if (name !== "") symbols.set(name, v.getUint32(s + 4, true));
    }
  }
  return { ram, base, entry: v.getUint32(24, true), flags: v.getUint32(36, true), symbols };
}

/** Runs `gdb-multiarch -batch` on `elf` and `core` with `commands`; returns its stdout. */
export async function runGdb(elf: string, core: string, commands: string[]): Promise<string> {
  const args = ["-nx", "-batch", ...commands.flatMap((c) => ["-ex", c]), elf, core];
  const out = await new Deno.Command("gdb-multiarch", { args, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`gdb-multiarch failed (${out.code}):\n${text}`);
  return text;
}
