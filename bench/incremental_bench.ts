/**
 * Incremental snapshots against full ones, on 1 GiB of guest RAM (`deno task bench:incremental`).
 *
 * The base: `memstress` booted on 1 GiB, its RAM from the heap up (all but the top 2 MiB) filled
 * with the mixed content of the format benchmarks (bench/_mixed_ram.ts: 60% zero pages, 25%
 * text-like, 15% random), saved as a full `.lsnap`. memstress then walks a working set of 1% or
 * 10% of RAM with a cursor that advances 4 KiB per store (one word changed per page, pass after
 * pass): those pages, and a few of its stack and data, are the pages dirtied.
 *
 * For each fraction and mode, two processes restore the base and snapshot at the same
 * instruction: one a full snapshot, one a diff on the base (`--incremental`). Reported: the
 * snapshot's total time (request to complete file) and file size, diff against full, as ratios
 * from the same run. Then the pages the diff holds are taken at that instant from a direct run
 * (the page numbers from the diff itself), concatenated in page order and compressed with the
 * system's `zstd -1`; the goal is a diff at most 1.05x that plus 4 KiB.
 *
 *   deno run -A bench/incremental_bench.ts [--fractions 0.01,0.1] [--modes cow,stop]
 *       [--ram 1G] [--keep DIR]
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse_args.js";
import { Machine } from "../emulator/machine.ts";
import { memstressElf } from "../emulator/guests/memstress_config.ts";
import { saveMachine } from "../emulator/snapshot/save.ts";
import { LiveMachine } from "../emulator/snapshot/live_machine.ts";
import type { SnapshotMode } from "../emulator/snapshot/session.ts";
import type { SnapshotMetrics } from "../emulator/snapshot/metrics.ts";
import { parseElf } from "../emulator/elf.ts";
import { SnapshotStreamReader } from "../format/stream_reader.ts";
import { mixedRam } from "./_mixed_ram.ts";

const PAGE = 4096;
const RAM_BASE = 0x8000_0000;
/** Instructions the guest runs from the base to the snapshot (several passes over 10%). */
const RUN = 6_000_000;

const args = parseArgs(Deno.args, { string: ["fractions", "modes", "ram", "keep", "child"] });

function elfFor(fraction: number, ramBytes: number): Uint8Array {
  const pages = Math.max(1, Math.round((ramBytes / PAGE) * fraction));
  return memstressElf({
    workingSetBytes: pages * PAGE,
    writesPerRound: 50_000,
    strideBytes: PAGE,
    rounds: 0,
  });
}

/** The child: restore `base`, snapshot at `at` (full or a diff), print the metrics as JSON. */
async function child(base: string, at: number, mode: SnapshotMode, out: string, diff: boolean) {
  let metrics = null as SnapshotMetrics | Error | null;
  const lm = await LiveMachine.start({
    restorePath: base,
    stopAt: at + 1_000,
    schedule: [{ at, mode, path: out, cowBuffer: 16 << 20, incremental: diff }],
    onScheduledSnapshot: (m) => metrics = m,
    onScheduledError: (e) => metrics = e,
  });
  await lm.halted;
  await lm.quit();
  if (metrics === null) throw new Error("Cannot measure: no snapshot was taken");
  if (metrics instanceof Error) throw metrics;
  console.log(JSON.stringify(metrics));
}

if (args.child !== undefined) {
  const [base, at, mode, out, diff] = args.child.split(",");
  await child(base, Number(at), mode as SnapshotMode, out, diff === "1");
  Deno.exit(0);
}

function parseSize(s: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(s.trim());
  if (m === null) throw new Error(`Cannot parse --ram: '${s}' is not a size like 256M or 1G`);
  return Number(m[1]) * ({ "": 1, K: 1024, M: 1 << 20, G: 1 << 30 }[m[2].toUpperCase()] ?? 1);
}

const ramBytes = parseSize(args.ram ?? "1G");
const fractions = (args.fractions ?? "0.01,0.1").split(",").map(Number);
const modes = (args.modes ?? "cow,stop").split(",") as SnapshotMode[];
const dir = args.keep ?? await Deno.makeTempDir({ prefix: "incremental-bench-" });
await Deno.mkdir(dir, { recursive: true });

/** The pages a diff holds (page numbers of its PAGES records). */
async function diffPages(path: string): Promise<number[]> {
  const reader = new SnapshotStreamReader((await Deno.open(path)).readable, { diffs: "read" });
  const pages = new Set<number>();
  for await (const r of reader.records()) {
    if (r.kind === "pages") { for (const p of r.pages) pages.add(p); }
  }
  return [...pages].sort((a, b) => a - b);
}

/** Size of `bytes` compressed by the system's `zstd -1` (through a file: a pipe both ways
 * would need both ends served at once). */
async function zstdSize(bytes: Uint8Array): Promise<number> {
  const raw = `${dir}/dirtied.raw`;
  await Deno.writeFile(raw, bytes);
  const o = await new Deno.Command("zstd", { args: ["-1", "-q", "-c", raw], stdout: "piped" })
    .output();
  await Deno.remove(raw);
  if (!o.success) throw new Error("Cannot run zstd -1");
  return o.stdout.length;
}

async function runChild(base: string, at: number, mode: SnapshotMode, out: string, diff: boolean) {
  const o = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL(import.meta.url).pathname,
      `--child=${[base, at, mode, out, diff ? 1 : 0].join(",")}`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!o.success) throw new Error(`Cannot measure ${mode} ${diff ? "diff" : "full"}`);
  return JSON.parse(
    new TextDecoder().decode(o.stdout).trim().split("\n").at(-1)!,
  ) as SnapshotMetrics;
}

const rows: string[] = [];
for (const fraction of fractions) {
  const elf = elfFor(fraction, ramBytes);
  // The base: the guest's RAM from the heap up filled with mixed content, at its first instruction.
  const machine = Machine.fromElf(elf, { ramSize: ramBytes, uartSink: () => {} });
  const heap = parseElf(elf).symbols.get("__heap_start")! - RAM_BASE;
  const top = ramBytes - (2 << 20);
  machine.ram.bytes.set(mixedRam((top - heap) / PAGE), heap);
  const base = `${dir}/base-${fraction}.lsnap`;
  await saveMachine(machine, base);
  const at = machine.hart.retired + RUN;
  // The state at `at`, from a direct run, for the pages the diff holds.
  machine.run(RUN);
  const ram = machine.ram.bytes;
  for (const mode of modes) {
    const full = await runChild(base, at, mode, `${dir}/full-${fraction}-${mode}.lsnap`, false);
    const diff = await runChild(base, at, mode, `${dir}/diff-${fraction}-${mode}.lsnap`, true);
    if (diff.contentDigest !== full.contentDigest) {
      throw new Error(`${mode} ${fraction}: the diff's content digest is not the full one's`);
    }
    const pages = await diffPages(diff.path);
    const raw = new Uint8Array(pages.length * PAGE);
    pages.forEach((p, i) => raw.set(ram.subarray(p * PAGE, (p + 1) * PAGE), i * PAGE));
    const z = await zstdSize(raw);
    const goal = 1.05 * z + 4096;
    rows.push(
      `| ${(fraction * 100).toFixed(0)}% | ${mode} | ${diff.pagesInDiff} | ` +
        `${full.totalMs.toFixed(0)} ms | ${diff.totalMs.toFixed(0)} ms | ` +
        `${(diff.totalMs / full.totalMs).toFixed(3)}x | ${full.bytesWritten} | ` +
        `${diff.bytesWritten} | ${(diff.bytesWritten / full.bytesWritten).toFixed(4)}x | ` +
        `${z} | ${(diff.bytesWritten / z).toFixed(3)}x (goal ≤ ${(goal / z).toFixed(3)}x) ` +
        `${diff.bytesWritten <= goal ? "met" : "NOT met"} |`,
    );
    console.error(rows.at(-1));
  }
}
console.log(
  `RAM ${ramBytes >> 20} MiB; memstress walking ${
    fractions.map((f: number) => `${f * 100}%`)
  } of it\n`,
);
console.log(
  "| dirty | mode | pages in diff | full time | diff time | diff/full time | full bytes | " +
    "diff bytes | diff/full size | zstd -1 of those pages | diff/zstd |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
for (const r of rows) console.log(r);
if (args.keep === undefined) await Deno.remove(dir, { recursive: true });
