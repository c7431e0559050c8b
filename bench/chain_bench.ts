/**
 * Diff snapshots and their chains (FORMAT.md §14), on a machine of the bundled emulator's kind
 * whose RAM holds the usual mix (bench/_mixed_ram.ts: 60% zero pages, 25% text, 15% random):
 *
 * 1. A diff against a full snapshot of the same state, for 1% and 10% of the pages dirtied (each
 *    dirtied page: 64 of its words rewritten, a zero page first given text): time to write each
 *    with the writer API in this process, their sizes, and the diff's size against `zstd -1` of
 *    the dirtied pages themselves (goal: at most 1.05x + 4 KiB).
 * 2. A chain of a full snapshot and `--diffs` diffs of 1% each:
 *    - `livesnap flatten` (whole process, to a new file) in GB/s of guest RAM, against `cp` of the
 *      full snapshot (the same order of bytes, no check) in the same rounds (goal: at least
 *      1 GB/s);
 *    - `livesnap restore --run-for 0` of the newest diff (the chain's links checked, its pages
 *      loaded by parallel loaders, every file digest and the final content digest proved) against
 *      the same of the flattened file (goal: at most 1.1x).
 *
 *   deno task bench:chain [--mib 1024] [--diffs 10] [--runs 5] [--also DIR]
 *
 * `--also DIR` adds the `livesnap flatten` of another checkout (for example the main branch) to the
 * same rotation.
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { Machine } from "../emulator/machine.ts";
import { describeMachine, sectionsFromState } from "../emulator/snapshot/machine_state.ts";
import { saveMachine } from "../emulator/snapshot/save.ts";
import { readDiffParent } from "../format/chain.ts";
import { type DiffParent, diffParentOf, SnapshotWriter } from "../format/writer.ts";
import { mixedRam } from "./_mixed_ram.ts";
import {
  contender,
  livesnapCommand,
  loadAverage,
  median,
  rotate,
  speedRatios,
  spread,
} from "./_whole_process.ts";

const flags = parseArgs(Deno.args, {
  string: ["mib", "runs", "diffs", "also"],
  default: { mib: "1024", runs: "5", diffs: "10" },
});
const MIB = Number(flags.mib);
const RUNS = Number(flags.runs);
const DIFFS = Number(flags.diffs);
const PAGE = 4096;
const PAGES = (MIB * 1024 * 1024) / PAGE;
const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

let seed = 0x1234_5678;
function next(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return seed >>> 0;
}

/** Dirties `count` distinct random pages of `ram`; returns them, sorted. */
function dirty(ram: Uint8Array, count: number, text: Uint8Array): number[] {
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(next() % PAGES);
  const pages = [...chosen].sort((a, b) => a - b);
  for (const p of pages) {
    const page = ram.subarray(p * PAGE, (p + 1) * PAGE);
    if (page.every((b) => b === 0)) page.set(text);
    const words = new Uint32Array(page.buffer, page.byteOffset, PAGE / 4);
    for (let i = 0; i < 64; i++) words[next() % words.length] = next();
  }
  return pages;
}

async function writeDiff(
  m: Machine,
  path: string,
  parent: DiffParent,
  pages: number[],
): Promise<{ seconds: number; summary: Awaited<ReturnType<SnapshotWriter["close"]>> }> {
  const t0 = performance.now();
  const w = await SnapshotWriter.createFile(path, describeMachine(m, 0), {
    parent,
    keepPageHashes: true,
  });
  const ram = m.ram.bytes;
  for (const p of pages) await w.writePages(0, p, ram.subarray(p * PAGE, (p + 1) * PAGE));
  for (const s of sectionsFromState(m.save())) await w.writeDevice(s);
  const summary = await w.close();
  return { seconds: (performance.now() - t0) / 1000, summary };
}

async function zstdSize(path: string): Promise<number> {
  const o = await new Deno.Command("sh", { args: ["-c", `zstd -1 -q -c '${path}' | wc -c`] })
    .output();
  return Number(new TextDecoder().decode(o.stdout).trim());
}

const kib = (n: number) => `${(n / 1024).toFixed(0)} KiB`;
const mibOf = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

const dir = await Deno.makeTempDir({ prefix: "livesnap-chain-bench-" });
try {
  const m = new Machine({ ramSize: MIB * 1024 * 1024, uartSink: () => {} });
  m.ram.bytes.set(mixedRam(PAGES));
  const text = (() => {
    const sample = mixedRam(64);
    for (let p = 0; p < 64; p++) {
      const page = sample.subarray(p * PAGE, (p + 1) * PAGE);
      // A text page: printable bytes only.
      if (page[0] !== 0 && page.every((b) => b === 0 || (b >= 32 && b < 127))) return page.slice();
    }
    throw new Error("Cannot find a text page in the sample");
  })();
  const t0 = performance.now();
  const s0 = await saveMachine(m, `${dir}/s-0.lsnap`);
  const fullSeconds0 = (performance.now() - t0) / 1000;
  const base = await readDiffParent(`${dir}/s-0.lsnap`);
  const saved = m.ram.bytes.slice();

  // 1. One diff of 1% and of 10% against a full snapshot of the same state.
  console.log(
    `\n### A diff against a full snapshot (${MIB} MiB of guest RAM, writer API in one process)\n`,
  );
  console.log(
    "| dirtied | diff: write s | diff size | full: write s | full size | `zstd -1` of the dirtied pages | diff / zstd |",
  );
  console.log("|---:|---:|---:|---:|---:|---:|---:|");
  for (const percent of [1, 10]) {
    m.ram.bytes.set(saved);
    const pages = dirty(m.ram.bytes, Math.round(PAGES * percent / 100), text);
    const d = await writeDiff(m, `${dir}/d-${percent}.lsnap`, base, pages);
    const tf = performance.now();
    await saveMachine(m, `${dir}/f-${percent}.lsnap`);
    const fullSeconds = (performance.now() - tf) / 1000;
    const raw = new Uint8Array(pages.length * PAGE);
    pages.forEach((p, i) => raw.set(m.ram.bytes.subarray(p * PAGE, (p + 1) * PAGE), i * PAGE));
    await Deno.writeFile(`${dir}/dirtied.raw`, raw);
    const z = await zstdSize(`${dir}/dirtied.raw`);
    const diffSize = (await Deno.stat(`${dir}/d-${percent}.lsnap`)).size;
    const fullSize = (await Deno.stat(`${dir}/f-${percent}.lsnap`)).size;
    console.log(
      `| ${percent}% (${pages.length} pages) | ${d.seconds.toFixed(2)} | ${kib(diffSize)} | ${
        fullSeconds.toFixed(2)
      } | ${mibOf(fullSize)} | ${kib(z)} | ${(diffSize / z).toFixed(3)}x (+${kib(diffSize - z)}) |`,
    );
  }
  console.log(`\n(The first full snapshot took ${fullSeconds0.toFixed(2)} s, ${s0.bytes} bytes.)`);

  // 2. A chain of DIFFS diffs of 1% each.
  m.ram.bytes.set(saved);
  let parent = diffParentOf({ ...s0, pageHashes: base.pageHashes }, `${dir}/s-0.lsnap`);
  const ratios: number[] = [];
  for (let i = 1; i <= DIFFS; i++) {
    const pages = dirty(m.ram.bytes, Math.round(PAGES / 100), text);
    const d = await writeDiff(m, `${dir}/s-${i}.lsnap`, parent, pages);
    parent = diffParentOf(d.summary, `${dir}/s-${i}.lsnap`);
    const raw = new Uint8Array(pages.length * PAGE);
    pages.forEach((p, k) => raw.set(m.ram.bytes.subarray(p * PAGE, (p + 1) * PAGE), k * PAGE));
    await Deno.writeFile(`${dir}/dirtied.raw`, raw);
    ratios.push(d.summary.bytes / await zstdSize(`${dir}/dirtied.raw`));
  }
  console.log(
    `\nThe ${DIFFS} diffs of 1% each: diff size / \`zstd -1\` of its dirtied pages, median ${
      median(ratios).toFixed(3)
    }x (${Math.min(...ratios).toFixed(3)}-${Math.max(...ratios).toFixed(3)}).`,
  );
  const newest = `${dir}/s-${DIFFS}.lsnap`;
  const flat = `${dir}/flat.lsnap`;
  const flatten = await new Deno.Command(`${ROOT}/bin/livesnap`, {
    args: ["flatten", newest, "--out", flat],
    stdout: "null",
  }).output();
  if (!flatten.success) throw new Error("Cannot flatten the chain");
  await new Deno.Command("sh", { args: ["-c", `cat '${dir}'/*.lsnap > /dev/null`] }).output();

  // Each run writes a new file: the previous run's output is removed before the clock starts
  // (freeing a 253 MiB file took 0.06-0.19 s here, inside a rename over it or cp's truncation).
  const fresh = (path: string) => `rm -f '${path}'`;
  const flattening = [
    contender(
      "`cp` of the full snapshot (baseline)",
      `exec cp '${dir}/s-0.lsnap' '${dir}/cp.out'`,
      fresh(`${dir}/cp.out`),
    ),
    contender(
      `\`livesnap flatten\` of the ${DIFFS + 1}-file chain`,
      livesnapCommand(ROOT, `flatten '${newest}' --out '${dir}/flat-again.lsnap'`),
      fresh(`${dir}/flat-again.lsnap`),
    ),
  ];
  if (flags.also !== undefined) {
    flattening.push(
      contender(
        `\`livesnap flatten\` of the ${DIFFS + 1}-file chain, ${flags.also}`,
        livesnapCommand(flags.also, `flatten '${newest}' --out '${dir}/flat-also.lsnap'`),
        fresh(`${dir}/flat-also.lsnap`),
      ),
    );
  }
  const restoring = [
    contender(
      "`livesnap restore --run-for 0` of the flattened file (baseline)",
      livesnapCommand(ROOT, `restore '${flat}' --run-for 0`),
    ),
    contender(
      `\`livesnap restore --run-for 0\` of the ${DIFFS}-deep diff`,
      livesnapCommand(ROOT, `restore '${newest}' --run-for 0`),
    ),
  ];
  const loadBefore = await loadAverage();
  await rotate(flattening, RUNS);
  await rotate(restoring, RUNS);
  const sizes = await Promise.all(
    [0, ...Array.from({ length: DIFFS }, (_, i) => i + 1)].map(async (i) =>
      (await Deno.stat(`${dir}/s-${i}.lsnap`)).size
    ),
  );
  const chainBytes = sizes.reduce((a, b) => a + b, 0);
  console.log(
    `\n### A chain of a full snapshot and ${DIFFS} diffs of 1% (${MIB} MiB of guest RAM)\n\n` +
      `Full snapshot ${mibOf(sizes[0])}, diffs ${kib(median(sizes.slice(1)))} each (median), ` +
      `chain ${mibOf(chainBytes)}, flattened ${mibOf((await Deno.stat(flat)).size)}; ${RUNS} ` +
      `rounds, contenders in turn; load average ${loadBefore} before, ${await loadAverage()} ` +
      `after; ${navigator.hardwareConcurrency} CPUs; ${new Date().toISOString().slice(0, 16)}Z.\n`,
  );
  console.log(
    "| command | wall s, median (min-max) | CPU s, median (min-max) | guest RAM GB/s by wall, median | wall / the baseline's, median (min-max) | CPU / the baseline's, median (min-max) |",
  );
  console.log("|---|---:|---:|---:|---:|---:|");
  for (const group of [flattening, restoring]) {
    for (const c of group) {
      const r = speedRatios(group[0], c);
      const gbs = c.wall.map((w) => MIB * 1024 * 1024 / 1e9 / w);
      console.log(
        `| ${c.name} | ${spread(c.wall, 2)} | ${spread(c.cpu, 2)} | ${median(gbs).toFixed(2)} | ${
          spread(r.wall, 2, "x")
        } | ${spread(r.cpu, 2, "x")} |`,
      );
    }
  }
  if (flags.also !== undefined) {
    const r = speedRatios(flattening[2], flattening[1]);
    console.log(
      `\nThis checkout's flatten / ${flags.also}'s, round by round: ${
        spread(r.wall, 2, "x")
      } by the wall clock, ${spread(r.cpu, 2, "x")} by CPU time.`,
    );
  }
  // The figure of the goal: guest RAM over the whole process's wall time (Deno's start-up, opening
  // and checking the chain, the copy, the read-back and the output's fsync and rename included).
  const flatGbs = median(flattening[1].wall.map((w) => MIB * 1024 * 1024 / 1e9 / w));
  console.log(
    `\nFlatten: ${flatGbs.toFixed(2)} GB/s of guest RAM (${MIB} MiB = ${
      (MIB * 1024 * 1024 / 1e9).toFixed(3)
    } GB over the median wall time of the whole \`livesnap flatten\` process); goal at least 1 GB/s: ${
      flatGbs >= 1 ? "met" : "not met"
    }.`,
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}
