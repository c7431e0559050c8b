/**
 * What the chain tests share: the bundled memstress guest booted in 4 MiB of RAM, a diff written
 * with the writer API (the pages that differ from a copy of RAM taken at the parent's instant),
 * and a temporary directory removed afterwards.
 *
 * @module
 */
import { Machine } from "../emulator/machine.ts";
import { patchMemstressConfig } from "../emulator/guests/memstress_config.ts";
import {
  describeMachine,
  machineContentDigest,
  sectionsFromState,
} from "../emulator/snapshot/machine_state.ts";
import { saveMachine } from "../emulator/snapshot/save.ts";
import { readDiffParent } from "../format/chain.ts";
import { toHex } from "../format/checksum.ts";
import { type DiffParent, diffParentOf, SnapshotWriter } from "../format/writer.ts";

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

/** What {@linkcode makeChain} lets a test do to the machine or check on each diff. */
export interface ChainSteps {
  /** Instructions between two snapshots. */
  step: number;
  /** Before the full snapshot, after its first step. */
  beforeFull?: (m: Machine) => void;
  /** Before diff `i` (1..n) is saved, after its step. */
  beforeDiff?: (m: Machine, i: number) => void;
  /** Diff `i` was saved with `dirty` pages. */
  afterDiff?: (i: number, dirty: number) => void;
}

/**
 * `dir`/s-0.lsnap full after `step` instructions of `m`, then s-1..s-n diffs `step` instructions
 * apart, each on the one before; checks that each diff declares the content digest of the machine's
 * state. Returns those digests (index i: s-i).
 */
export async function makeChain(
  m: Machine,
  dir: string,
  n: number,
  o: ChainSteps,
): Promise<string[]> {
  m.run(o.step);
  o.beforeFull?.(m);
  await saveMachine(m, `${dir}/s-0.lsnap`);
  let parent = await readDiffParent(`${dir}/s-0.lsnap`);
  const digests = [await machineContentDigest(m)];
  let before = m.ram.bytes.slice();
  for (let i = 1; i <= n; i++) {
    m.run(o.step);
    o.beforeDiff?.(m, i);
    const { summary, dirty } = await saveDiff(m, `${dir}/s-${i}.lsnap`, parent, before);
    o.afterDiff?.(i, dirty);
    digests.push(await machineContentDigest(m));
    if (toHex(summary.contentDigest) !== digests[i]) {
      throw new Error(
        `diff ${i} declares ${toHex(summary.contentDigest)}, not its state ${digests[i]}`,
      );
    }
    parent = diffParentOf(summary, `${dir}/s-${i}.lsnap`);
    before = m.ram.bytes.slice();
  }
  return digests;
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
