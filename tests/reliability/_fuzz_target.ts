/**
 * The fuzz targets, each a case maker over its own corpus and a case runner: `lsnap` (the
 * format's readers and the tools) and `qemu` (the QEMU stream reader and everything built on it).
 *
 * @module
 */
import { buildCorpus } from "./_corpus.ts";
import { makeCase } from "./_mutators.ts";
import { type CaseResult, runCase } from "./_targets.ts";
import { buildQemuCorpus } from "./_qemu_corpus.ts";
import { makeQemuCase } from "./_qemu_mutators.ts";
import { runQemuCase } from "./_qemu_targets.ts";

/** What a run feeds: `.lsnap` files to the format's readers and the tools, or QEMU migration
 * streams to the QEMU stream reader and everything built on it. */
export type FuzzTarget = "lsnap" | "qemu";

/** The targets, in the order `--target all` runs them. */
export const FUZZ_TARGETS: readonly FuzzTarget[] = ["lsnap", "qemu"];

/** A case: its bytes, which corpus file it came from, the mutators applied. */
export interface FuzzCase {
  bytes: Uint8Array;
  source: number;
  mutators: string[];
}

/** A target ready to make and run cases. */
export interface LoadedTarget {
  make(seed: number, index: number): Promise<FuzzCase>;
  run(bytes: Uint8Array, scratch: string, chunk: number): Promise<CaseResult>;
}

/** Builds the target's corpus once and returns its case maker and runner. */
export async function loadTarget(target: FuzzTarget): Promise<LoadedTarget> {
  if (target === "qemu") {
    const corpus = await buildQemuCorpus();
    return { make: (seed, i) => makeQemuCase(seed, i, corpus), run: runQemuCase };
  }
  const corpus = await buildCorpus();
  return { make: (seed, i) => makeCase(seed, i, corpus), run: runCase };
}
