/**
 * Live snapshots of `memstress` at 256 MiB and 1 GiB of RAM: for `stop`, `cow` (buffer 0,
 * 16 MiB, max) and `precopy`, the guest's pause, the total time, the guest's speed during the
 * snapshot as a share of its idle speed (measured just before, in the same process), the peak of
 * extra resident memory (from /proc/self/status VmHWM, reset with clear_refs just before the
 * snapshot) and the file size.
 *
 * Each configuration runs in its own process, so that one snapshot's memory cannot hide in the
 * next one's baseline.
 *
 *   deno run -A bench/live_snapshot_bench.ts [--sizes 256M,1G] [--repeat 1] [--json FILE]
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse_args.js";
import { type CowBufferSize, LiveMachine } from "../emulator/snapshot/live_machine.ts";
import { memstressElf } from "../emulator/guests/memstress_config.ts";
import { readProcessMemory, resetPeakMemory } from "../emulator/snapshot/metrics.ts";
import type { SnapshotMode } from "../emulator/snapshot/session.ts";

interface Config {
  mode: SnapshotMode;
  cowBuffer: CowBufferSize;
  label: string;
}

const CONFIGS: Config[] = [
  { mode: "stop", cowBuffer: 0, label: "stop" },
  { mode: "cow", cowBuffer: 0, label: "cow, buffer 0" },
  { mode: "cow", cowBuffer: 16 * 1024 * 1024, label: "cow, buffer 16 MiB" },
  { mode: "cow", cowBuffer: "max", label: "cow, buffer max" },
  { mode: "precopy", cowBuffer: 0, label: "precopy" },
];

/** One measurement. */
interface Result {
  ramBytes: number;
  label: string;
  idleMips: number;
  duringMips: number;
  pauseUs: number;
  totalMs: number;
  extraPeakBytes: number;
  bufferPeakBytes: number;
  fileBytes: number;
  guestStallUs: number;
  pagesViaBuffer: number;
  pagesResent: number;
  atInstruction: number;
  /** The machine's 1-minute load average before the snapshot (it is shared: other processes
   * compete with the guest and writer threads for its cores). */
  loadAverage: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The workload: memstress rewriting 3/4 of RAM at random, forever. */
function workload(ram: number): Uint8Array {
  return memstressElf({ workingSetBytes: ram / 4 * 3, writesPerRound: 1 << 18, rounds: 0 });
}

async function measureOne(ram: number, c: Config): Promise<Result> {
  const dir = await Deno.makeTempDir({ prefix: "livesnap-bench-" });
  const machine = await LiveMachine.start({ elf: workload(ram), ramSize: ram, uartSink: () => {} });
  try {
    // Let memstress touch every page of its working set (about 8 stores per page) first.
    const fill = (ram / 4 * 3 / 4096) * 8 * 30;
    while ((await machine.status()).retired < fill) await sleep(50);
    // Idle speed over one second, just before the snapshot.
    const a = await machine.status();
    const ta = performance.now();
    await sleep(1000);
    const b = await machine.status();
    const tb = performance.now();
    const idleMips = (b.retired - a.retired) / (tb - ta) / 1000;
    const loadAverage = Deno.loadavg()[0];
    const before = readProcessMemory().rss;
    resetPeakMemory();
    const m = await machine.snapshot({
      mode: c.mode,
      cowBuffer: c.cowBuffer,
      path: `${dir}/s.lsnap`,
    });
    const peak = readProcessMemory().peak;
    return {
      ramBytes: ram,
      label: c.label,
      idleMips,
      duringMips: m.guestInstructionsDuring / (m.totalMs * 1000),
      pauseUs: m.pauseUs,
      totalMs: m.totalMs,
      extraPeakBytes: Math.max(0, peak - before),
      bufferPeakBytes: m.bufferPeakBytes,
      fileBytes: m.bytesWritten,
      guestStallUs: m.guestStallUs,
      pagesViaBuffer: m.pagesViaBuffer,
      pagesResent: m.pagesResent,
      atInstruction: m.atInstruction,
      loadAverage,
    };
  } finally {
    await machine.quit();
    await Deno.remove(dir, { recursive: true });
  }
}

const MIB = 1024 * 1024;
const fmtBytes = (n: number) =>
  n >= 1024 * MIB ? `${(n / 1024 / MIB).toFixed(2)} GiB` : `${(n / MIB).toFixed(1)} MiB`;

function table(results: Result[]): string {
  const rows = [
    "| RAM | mode | pause | total | guest speed during / idle | peak extra memory | buffer peak | file | load |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of results) {
    const share = r.label === "stop"
      ? "0% (paused)"
      : `${(100 * r.duringMips / r.idleMips).toFixed(0)}% (${r.duringMips.toFixed(1)} / ${
        r.idleMips.toFixed(1)
      } MIPS)`;
    const pause = r.pauseUs >= 10_000
      ? `${(r.pauseUs / 1000).toFixed(0)} ms`
      : `${(r.pauseUs / 1000).toFixed(2)} ms`;
    rows.push(
      `| ${fmtBytes(r.ramBytes)} | ${r.label} | ${pause} | ${
        (r.totalMs / 1000).toFixed(2)
      } s | ${share} | ${fmtBytes(r.extraPeakBytes)} | ${fmtBytes(r.bufferPeakBytes)} | ${
        fmtBytes(r.fileBytes)
      } |`,
    );
  }
  return rows.join("\n");
}

const args = parseArgs(Deno.args, { string: ["sizes", "repeat", "json", "one"] });
if (args.one !== undefined) {
  const [ram, index] = args.one.split(":").map(Number);
  console.log(JSON.stringify(await measureOne(ram, CONFIGS[index])));
} else {
  const sizes = (args.sizes ?? "256M,1G").split(",").map((s: string) =>
    Number(s.slice(0, -1)) * (s.endsWith("G") ? 1024 * MIB : MIB)
  );
  const repeat = Number(args.repeat ?? 1);
  const results: Result[] = [];
  for (const ram of sizes) {
    for (let i = 0; i < CONFIGS.length; i++) {
      for (let k = 0; k < repeat; k++) {
        const o = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", new URL(import.meta.url).pathname, "--one", `${ram}:${i}`],
          stdout: "piped",
          stderr: "inherit",
        }).output();
        if (!o.success) throw new Error(`Cannot run the benchmark for ${ram} ${CONFIGS[i].label}`);
        const r: Result = JSON.parse(new TextDecoder().decode(o.stdout).trim().split("\n").at(-1)!);
        results.push(r);
        console.error(
          `${fmtBytes(ram)} ${r.label}: pause ${r.pauseUs} µs, ${r.totalMs.toFixed(0)} ms, ${
            (100 * r.duringMips / r.idleMips).toFixed(0)
          }% speed, +${fmtBytes(r.extraPeakBytes)}`,
        );
      }
    }
  }
  console.log(table(results));
  if (args.json !== undefined) {
    await Deno.writeTextFile(args.json, JSON.stringify(results, null, 2));
  }
}
