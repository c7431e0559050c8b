/**
 * Patching `memstress`'s config struct (emulator/guests/memstress.c, README "memstress and its
 * config") into its ELF image: the workload of the live-snapshot tests, benchmarks and demo.
 *
 * @module
 */

import { parseElf } from "../elf.ts";

/** memstress's config (a 32-byte struct at 0x8000_0040, version 1). */
export interface MemstressConfig {
  /** Bytes of the working set (a non-zero multiple of 4096). */
  workingSetBytes: number;
  /** 32-bit read-modify-write stores per round. */
  writesPerRound: number;
  /** 0: a PRNG-chosen word per store; else the cursor's step (a multiple of 4). */
  strideBytes?: number;
  /** Extra PRNG steps between stores (lowers the store rate). */
  computePerWrite?: number;
  /** 0 = forever. */
  rounds: number;
  /** PRNG seed. */
  seed?: number;
}

const CONFIG_ADDR = 0x8000_0040;
const MAGIC = 0x5254_534d;

/** Returns a copy of the memstress ELF `elf` with its config set to `c`. */
export function patchMemstressConfig(elf: Uint8Array, c: MemstressConfig): Uint8Array {
  const file = elf.slice();
  const seg = parseElf(file).segments.find((s) =>
    s.paddr <= CONFIG_ADDR && CONFIG_ADDR + 32 <= s.paddr + s.data.length
  );
  if (seg === undefined) {
    throw new Error("Cannot patch memstress: no loaded segment holds its config at 0x80000040");
  }
  const at = seg.data.byteOffset + (CONFIG_ADDR - seg.paddr);
  const dv = new DataView(file.buffer, at, 32);
  if (dv.getUint32(0, true) !== MAGIC || dv.getUint32(4, true) !== 1) {
    throw new Error("Cannot patch memstress: its config has another magic or version than 1");
  }
  dv.setUint32(8, c.workingSetBytes, true);
  dv.setUint32(12, c.writesPerRound, true);
  dv.setUint32(16, c.strideBytes ?? 0, true);
  dv.setUint32(20, c.computePerWrite ?? 0, true);
  dv.setUint32(24, c.rounds, true);
  dv.setUint32(28, c.seed ?? 1, true);
  return file;
}

/** The bundled memstress ELF with config `c`. */
export function memstressElf(c: MemstressConfig): Uint8Array {
  return patchMemstressConfig(
    Deno.readFileSync(new URL("./build/memstress.elf", import.meta.url)),
    c,
  );
}
