/**
 * Live snapshots of `memstress` at 256 MiB and 1 GiB of RAM: for `stop`, `cow` (buffer 0,
 * 16 MiB, max) and `precopy`, the guest's pause, the total time, the guest's speed during the
 * snapshot as a share of its idle speed (measured just before, in the same process), the peak of
 * extra resident memory (from /proc/self/status VmHWM, reset with clear_refs just before the
 * snapshot) and the file size.
 *
 * Each configuration runs in its own process, started with the V8 flags of `deno task livesnap`
 * (`--expose-gc`), so that one snapshot's memory cannot hide in the next one's baseline.
 *
 *   deno run -A bench/live_snapshot_bench.ts [--workloads uniform,hot] [--sizes 256M,1G]
 *       [--configs stop,cow0,cow16,cowmax,precopy] [--repeat 1] [--warm | --warm-same] [--json FILE]
 *
 * With `--repeat N` the runs of the configurations are interleaved round by round (the load of a
 * shared machine drifts), and a summary gives the median and range of the guest's speed during
 * the snapshot against idle, for each workload, size and configuration.
 *
 * `--warm` takes a `stop` snapshot first in each process and measures the second one: the
 * steady state of a machine that takes snapshots regularly. Without it, the measured snapshot is
 * the process's first (what `run --snapshot-at` sees), whose extra memory includes the writer's
 * one-time heap growth. `--warm-same` takes the first snapshot with the measured configuration
 * itself: for `cow` the copy buffer's chunks it touched are kept (their pages discarded) and
 * reused by the measured one, as in a machine that takes `cow` snapshots regularly.
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
/** `--configs` names, in CONFIGS order. */
const CONFIG_NAMES = ["stop", "cow0", "cow16", "cowmax", "precopy"];

/** One measurement. */
interface Result {
  /** Guest instructions per µs of its thread's CPU time, idle and during (stalls counted). */
  idleCpuMips: number;
  duringCpuMips: number;
  /** Share of the snapshot's time the guest thread was runnable but had no core. */
  runQueueShare: number;
  workload: Workload;
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
  /** The guest thread's time in the store hook (copies, their page faults, waits), ms; and the
   * copies into buffer memory nobody had written yet. Absent from older metrics. */
  guestHookMs?: number;
  pagesCopiedCold?: number;
  /** What the pause was made of (absent from older metrics). */
  pauseCauses?: Record<string, number>;
  atInstruction: number;
  /** The machine's 1-minute load average before the snapshot (it is shared: other processes
   * compete with the guest and writer threads for its cores). */
  loadAverage: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The workloads, both memstress storing at random forever (about one store per 26
 * instructions): "uniform" over 3/4 of RAM, the worst case for `cow` (nearly every store during
 * the snapshot is a first one to a page not yet saved); "hot" over a 32 MiB working set while the
 * rest of RAM holds data the guest does not touch (loaded with the ELF), closer to a real VM. */
type Workload = "uniform" | "hot";

const HOT_SET = 32 * 1024 * 1024;
const FILLER_BASE = 0x8000_0000 + 48 * 1024 * 1024;

function workingSet(w: Workload, ram: number): number {
  return w === "uniform" ? ram / 4 * 3 : HOT_SET;
}

function workload(w: Workload, ram: number): Uint8Array {
  const elf = memstressElf({
    workingSetBytes: workingSet(w, ram),
    writesPerRound: 1 << 18,
    rounds: 0,
  });
  return w === "uniform" ? elf : withFiller(elf, FILLER_BASE, 0x8000_0000 + ram - FILLER_BASE);
}

/**
 * Adds a PT_LOAD segment of `size` bytes at `base` holding data that compresses about 2:1 (each
 * page: half pseudo-random bytes, half a repeated text), by appending a new program header table.
 */
function withFiller(elf: Uint8Array, base: number, size: number): Uint8Array {
  const dv = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  const phoff = dv.getUint32(28, true);
  const phentsize = dv.getUint16(42, true);
  const phnum = dv.getUint16(44, true);
  const tableAt = Math.ceil(elf.length / 8) * 8;
  const dataAt = Math.ceil((tableAt + (phnum + 1) * phentsize) / 4096) * 4096;
  const out = new Uint8Array(dataAt + size);
  out.set(elf);
  out.set(elf.subarray(phoff, phoff + phnum * phentsize), tableAt);
  const o = new DataView(out.buffer);
  o.setUint32(28, tableAt, true);
  o.setUint16(44, phnum + 1, true);
  const ph = tableAt + phnum * phentsize;
  o.setUint32(ph, 1, true); // PT_LOAD
  o.setUint32(ph + 4, dataAt, true);
  o.setUint32(ph + 8, base, true);
  o.setUint32(ph + 12, base, true);
  o.setUint32(ph + 16, size, true);
  o.setUint32(ph + 20, size, true);
  o.setUint32(ph + 24, 6, true); // RW
  o.setUint32(ph + 28, 4096, true);
  const text = new TextEncoder().encode("the quick brown fox jumps over the lazy dog; ");
  let x = 0x1234_5678;
  for (let p = dataAt; p < out.length; p += 4096) {
    for (let i = 0; i < 2048; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      o.setUint32(p + i, x, true);
    }
    for (let i = 2048; i < 4096; i++) out[p + i] = text[i % text.length];
  }
  return out;
}

async function measureOne(
  w: Workload,
  ram: number,
  c: Config,
  warm: "no" | "stop" | "same",
): Promise<Result> {
  const dir = await Deno.makeTempDir({ prefix: "livesnap-bench-" });
  const machine = await LiveMachine.start({
    elf: workload(w, ram),
    ramSize: ram,
    uartSink: () => {},
  });
  try {
    // Let memstress touch every page of its working set (about 8 stores per page) first.
    const fill = (workingSet(w, ram) / 4096) * 8 * 30;
    while ((await machine.status()).retired < fill) await sleep(50);
    if (warm !== "no") {
      // A first snapshot grows the writer's heaps (zstd and hash WebAssembly memory, JIT code)
      // once per process; measure the next one.
      await machine.snapshot(
        warm === "stop"
          ? { mode: "stop", path: `${dir}/warmup.lsnap` }
          : { mode: c.mode, cowBuffer: c.cowBuffer, path: `${dir}/warmup.lsnap` },
      );
      await Deno.remove(`${dir}/warmup.lsnap`);
    }
    // Idle speed over one second, just before the snapshot.
    const a = await machine.status();
    const ta = performance.now();
    await sleep(1000);
    const b = await machine.status();
    const tb = performance.now();
    const idleMips = (b.retired - a.retired) / (tb - ta) / 1000;
    const idleCpuMips = (b.retired - a.retired) / ((b.cpuNs - a.cpuNs) / 1000);
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
      workload: w,
      ramBytes: ram,
      label: c.label,
      idleMips,
      duringMips: m.guestInstructionsDuring / (m.totalMs * 1000),
      idleCpuMips,
      // On-CPU time plus stalls: what the guest would have taken on a core of its own.
      duringCpuMips: m.guestInstructionsDuring / (m.guestCpuMs * 1000 + m.guestStallUs),
      runQueueShare: m.guestRunQueueMs / m.totalMs,
      pauseUs: m.pauseUs,
      totalMs: m.totalMs,
      extraPeakBytes: Math.max(0, peak - before),
      bufferPeakBytes: m.bufferPeakBytes,
      fileBytes: m.bytesWritten,
      guestStallUs: m.guestStallUs,
      pagesViaBuffer: m.pagesViaBuffer,
      pagesResent: m.pagesResent,
      guestHookMs: m.guestHookMs,
      pagesCopiedCold: m.pagesCopiedCold,
      pauseCauses: m.pauseCauses as unknown as Record<string, number>,
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
    "| workload | RAM | mode | pause | total | guest speed during / idle | same, per guest CPU time | guest waiting for a core | peak extra memory | buffer peak | file | load |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of results) {
    const share = r.label === "stop"
      ? "0% (paused)"
      : `${(100 * r.duringMips / r.idleMips).toFixed(0)}% (${r.duringMips.toFixed(1)} / ${
        r.idleMips.toFixed(1)
      } MIPS)`;
    const cpuShare = r.label === "stop"
      ? "-"
      : `${(100 * r.duringCpuMips / r.idleCpuMips).toFixed(0)}%`;
    const queued = r.label === "stop" ? "-" : `${(100 * r.runQueueShare).toFixed(0)}%`;
    const pause = r.pauseUs >= 10_000
      ? `${(r.pauseUs / 1000).toFixed(0)} ms`
      : `${(r.pauseUs / 1000).toFixed(2)} ms`;
    rows.push(
      `| ${r.workload} | ${fmtBytes(r.ramBytes)} | ${r.label} | ${pause} | ${
        (r.totalMs / 1000).toFixed(2)
      } s | ${share} | ${cpuShare} | ${queued} | ${fmtBytes(r.extraPeakBytes)} | ${
        fmtBytes(r.bufferPeakBytes)
      } | ${fmtBytes(r.fileBytes)} | ${r.loadAverage.toFixed(1)} |`,
    );
  }
  return rows.join("\n");
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Per workload, size and configuration: the guest's speed during / idle, wall clock and per
 * CPU time, median (range), and the engine's cost to the guest. */
function summary(results: Result[]): string {
  const rows = [
    "| workload | RAM | mode | runs | guest speed during / idle, median (range) | per guest CPU time | guest in the store hook | copies into cold memory | load |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|",
  ];
  const keys = [...new Set(results.map((r) => `${r.workload}|${r.ramBytes}|${r.label}`))];
  const pct = (xs: number[]) =>
    `${(100 * median(xs)).toFixed(0)}% (${(100 * Math.min(...xs)).toFixed(0)}-${
      (100 * Math.max(...xs)).toFixed(0)
    }%)`;
  for (const key of keys) {
    const rs = results.filter((r) => `${r.workload}|${r.ramBytes}|${r.label}` === key);
    if (rs[0].label === "stop") continue;
    const hook = rs.filter((r) => r.guestHookMs !== undefined).map((r) => r.guestHookMs!);
    const cold = rs.filter((r) => r.pagesCopiedCold !== undefined);
    rows.push(
      `| ${rs[0].workload} | ${fmtBytes(rs[0].ramBytes)} | ${rs[0].label} | ${rs.length} | ${
        pct(rs.map((r) => r.duringMips / r.idleMips))
      } | ${pct(rs.map((r) => r.duringCpuMips / r.idleCpuMips))} | ${
        hook.length > 0 ? `${median(hook).toFixed(0)} ms` : "-"
      } | ${
        cold.length > 0
          ? `${median(cold.map((r) => r.pagesCopiedCold!))} of ${
            median(cold.map((r) => r.pagesViaBuffer))
          }`
          : "-"
      } | ${Math.min(...rs.map((r) => r.loadAverage)).toFixed(1)}-${
        Math.max(...rs.map((r) => r.loadAverage)).toFixed(1)
      } |`,
    );
  }
  return rows.join("\n");
}

const args = parseArgs(Deno.args, {
  string: ["sizes", "repeat", "json", "one", "workloads", "configs"],
  boolean: ["warm", "warm-same"],
});
const warmKind = args["warm-same"] ? "same" : args.warm ? "stop" : "no";
if (args.one !== undefined) {
  const [w, ram, index] = args.one.split(":");
  console.log(
    JSON.stringify(
      await measureOne(w as Workload, Number(ram), CONFIGS[Number(index)], warmKind),
    ),
  );
} else {
  const workloads = (args.workloads ?? "uniform,hot").split(",") as Workload[];
  const sizes = (args.sizes ?? "256M,1G").split(",").map((s: string) =>
    Number(s.slice(0, -1)) * (s.endsWith("G") ? 1024 * MIB : MIB)
  );
  const repeat = Number(args.repeat ?? 1);
  const configs = (args.configs ?? CONFIG_NAMES.join(",")).split(",").map((name: string) => {
    const i = CONFIG_NAMES.indexOf(name);
    if (i < 0) throw new Error(`Cannot run configuration '${name}': one of ${CONFIG_NAMES}`);
    return i;
  });
  const results: Result[] = [];
  for (let k = 0; k < repeat; k++) {
    for (const w of workloads) {
      for (const ram of sizes) {
        for (const i of configs) {
          const o = await new Deno.Command(Deno.execPath(), {
            args: [
              "run",
              "-A",
              // As `deno task livesnap` runs the engine.
              "--v8-flags=--expose-gc",
              new URL(import.meta.url).pathname,
              "--one",
              `${w}:${ram}:${i}`,
              ...(warmKind === "same" ? ["--warm-same"] : warmKind === "stop" ? ["--warm"] : []),
            ],
            stdout: "piped",
            stderr: "inherit",
          }).output();
          if (!o.success) {
            throw new Error(`Cannot run the benchmark for ${ram} ${CONFIGS[i].label}`);
          }
          const r: Result = JSON.parse(
            new TextDecoder().decode(o.stdout).trim().split("\n").at(-1)!,
          );
          results.push(r);
          console.error(
            `${w} ` +
              `${fmtBytes(ram)} ${r.label}: pause ${r.pauseUs} µs, ${r.totalMs.toFixed(0)} ms, ${
                (100 * r.duringMips / r.idleMips).toFixed(0)
              }% speed, +${fmtBytes(r.extraPeakBytes)}`,
          );
        }
      }
    }
  }
  console.log(table(results));
  if (repeat > 1) console.log("\n" + summary(results));
  if (args.json !== undefined) {
    await Deno.writeTextFile(args.json, JSON.stringify(results, null, 2));
  }
}
