/**
 * What the chain tests share: the bundled memstress guest booted in 4 MiB of RAM, a diff written
 * with the writer API (the pages that differ from a copy of RAM taken at the parent's instant),
 * and a temporary directory removed afterwards.
 *
 * @module
 */
import { Machine } from "../emulator/machine.ts";
import { patchMemstressConfig } from "../emulator/guests/memstress_config.ts";
import { describeMachine, sectionsFromState } from "../emulator/snapshot/machine_state.ts";
import { type DiffParent, SnapshotWriter } from "../format/writer.ts";

export const PS = 4096;
export const RAM = 4 << 20;

/** memstress (256 KiB working set, 2000 writes a round, endless) in RAM bytes, its output kept. */
export function bootMemstress(seed: number): { m: Machine; out: () => string } {
  const elf = patchMemstressConfig(
    Deno.readFileSync(new URL("../emulator/guests/build/memstress.elf", import.meta.url)),
    { workingSetBytes: 256 * 1024, writesPerRound: 2000, rounds: 0, seed },
  );
  let out = "";
  const decoder = new TextDecoder();
  const m = Machine.fromElf(elf, { ramSize: RAM, uartSink: (b) => out += decoder.decode(b) });
  return { m, out: () => out };
}

/** Writes a diff of `m` on `parent`: the pages that differ from `before` (a page that became zero
 * goes out as a zero record). */
export async function saveDiff(
  m: Machine,
  path: string,
  parent: DiffParent,
  before: Uint8Array,
): Promise<{ summary: Awaited<ReturnType<SnapshotWriter["close"]>>; dirty: number }> {
  const w = await SnapshotWriter.createFile(path, describeMachine(m), {
    parent,
    keepPageHashes: true,
  });
  const ram = m.ram.bytes;
  let dirty = 0;
  for (let off = 0; off < ram.length; off += PS) {
    const a = ram.subarray(off, off + PS);
    const b = before.subarray(off, off + PS);
    if (a.some((x, i) => x !== b[i])) {
      dirty++;
      await w.writePages(0, off / PS, a);
    }
  }
  for (const s of sectionsFromState(m.save())) await w.writeDevice(s);
  return { summary: await w.close(), dirty };
}

/** Runs `f` in a new temporary directory, removed afterwards. */
export async function withTemp<T>(prefix: string, f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
