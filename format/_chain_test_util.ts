/**
 * Synthetic chains for tests and benchmarks: a machine of one RAM region whose pages change,
 * become zero or stay from one snapshot to the next, written as a full snapshot and diffs with
 * the writer API (FORMAT.md §14).
 *
 * @module
 */
import type { DeviceSectionInput } from "./device_section.ts";
import { encodeDeviceState } from "./device_state.ts";
import type { MachineDescription } from "./header.ts";
import { diffParentOf, SnapshotWriter, type WriterOptions, type WriteSummary } from "./writer.ts";

/** One snapshot of a synthetic chain. */
export interface ChainStep {
  path: string;
  /** The whole RAM at this instant (a copy). */
  ram: Uint8Array;
  devices: DeviceSectionInput[];
  summary: WriteSummary;
  /** Pages the diff wrote (with data) and pages it wrote as zero. */
  written: number[];
  zeroed: number[];
}

/** A small deterministic generator (xorshift32). */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/** The machine of the synthetic chains. */
export function chainDescription(pages: number, pageSize = 4096): MachineDescription {
  return {
    regions: [{ name: "ram", base: 0x8000_0000, size: pages * pageSize, pageSize }],
    creator: "chain test",
    createdAt: 0,
  };
}

/** Fills a page with bytes that compress somewhat (a repeated random pattern). */
export function fillPage(page: Uint8Array, rnd: () => number): void {
  const pattern = new Uint8Array(64);
  for (let i = 0; i < pattern.length; i++) pattern[i] = (rnd() * 256) | 0;
  for (let i = 0; i < page.length; i += 64) page.set(pattern.subarray(0, page.length - i), i);
  page[0] = 1 + ((rnd() * 255) | 0);
}

/**
 * Writes `s-0.lsnap` (full) and `s-1.lsnap` .. `s-<diffs>.lsnap` (each a diff on the one before)
 * into `dir`. Each step rewrites about `dirty` of the pages and zeroes about `zero` of them.
 */
export async function writeChain(
  dir: string,
  diffs: number,
  options: {
    pages?: number;
    seed?: number;
    dirty?: number;
    zero?: number;
    writer?: WriterOptions;
    name?: (n: number) => string;
  } = {},
): Promise<ChainStep[]> {
  const pages = options.pages ?? 64;
  const rnd = prng(options.seed ?? 1);
  const description = chainDescription(pages);
  const ps = description.regions[0].pageSize;
  const ram = new Uint8Array(pages * ps);
  for (let p = 0; p < pages; p++) {
    if (rnd() < 0.7) fillPage(ram.subarray(p * ps, (p + 1) * ps), rnd);
  }
  const steps: ChainStep[] = [];
  const name = options.name ?? ((n: number) => `s-${n}.lsnap`);
  for (let n = 0; n <= diffs; n++) {
    const written: number[] = [];
    const zeroed: number[] = [];
    if (n > 0) {
      for (let p = 0; p < pages; p++) {
        const page = ram.subarray(p * ps, (p + 1) * ps);
        const x = rnd();
        if (x < (options.zero ?? 0.05)) {
          page.fill(0);
          zeroed.push(p);
        } else if (x < (options.zero ?? 0.05) + (options.dirty ?? 0.2)) {
          fillPage(page, rnd);
          written.push(p);
        }
      }
    }
    const devices = [
      { id: "hart", instance: 0, version: 1, state: encodeDeviceState({ pc: 0x8000_0000 + n }) },
      { id: "uart", instance: 0, version: 1, state: encodeDeviceState({ lsr: 0x60 + n }) },
    ];
    const path = `${dir}/${name(n)}`;
    const w = await SnapshotWriter.createFile(path, description, {
      ...options.writer,
      keepPageHashes: true,
      ...(n === 0 ? {} : { parent: diffParentOf(steps[n - 1].summary, steps[n - 1].path) }),
    });
    if (n === 0) {
      for (let p = 0; p < pages; p++) {
        const page = ram.subarray(p * ps, (p + 1) * ps);
        if (page.some((b) => b !== 0)) await w.writePages(0, p, page);
      }
    } else {
      for (const p of written) await w.writePages(0, p, ram.subarray(p * ps, (p + 1) * ps));
      await w.writeZeroPages(0, zeroed);
    }
    for (const d of devices) await w.writeDevice(d);
    const summary = await w.close();
    steps.push({ path, ram: ram.slice(), devices, summary, written, zeroed });
  }
  return steps;
}
