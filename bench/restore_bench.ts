/**
 * `deno task bench:restore`: restore speed, lazy against eager, in one run (BENCHMARKS.md,
 * "Restore: lazy and eager").
 *
 * Snapshots: memstress in RAM of each size, the rest of RAM mixed content (bench/_lazy_fixture.ts),
 * cached in a temporary directory between runs of this script (`--dir` to choose it). Every
 * measurement runs in its own process (`--one`), rounds interleaved, so that no restore inherits
 * another's memory or compiled code:
 *
 * - time to first instruction: eager (the streaming restore, and the parallel one) against lazy,
 *   from the restore's start (after the process has loaded its modules) to the first retired
 *   instruction; and the whole process to its exit after that one instruction. Lazy three times:
 *   `lazy` as `restore --lazy --cold` runs (no warm-up), `lazy-light` as `restore --lazy` runs by
 *   default (a light warm-up before the clock starts), and `lazy-warm` as `restore --lazy
 *   --warm-up` (the full one); a warm-up (`warmLazyRestore`) reads nothing of the file, and the
 *   whole process pays for it; for lazy, also the restoring thread's time on a CPU and waiting for one over the
 *   same span (`firstInstructionCpu`), which the machine's other jobs do not stretch;
 * - eager restore in GB/s of guest RAM, streaming against parallel, and the cost of touching that
 *   much fresh memory alone (what would remain with free decompression);
 * - with a working-set hint: demand faults and the time to finish a fixed workload (W instructions
 *   after the restore point), lazy without and with a hint, against an eager restore that was
 *   already warm (its RAM loaded and touched before the clock starts: the workload alone). Every
 *   kind's process is warmed up alike first (`warmLazyRestore`); a lazy kind's clock starts where
 *   `restore --lazy`'s own does (the zero of `firstInstructionUs`: after the warm-up and the loader
 *   thread's creation, which are per process, not per restore, and reported apart as `setupMs`)
 *   and runs to the workload's end. Also the guest thread's time on a CPU over the same span,
 *   and the first touch of the working set's fresh memory alone (`work-touch`), which the warm
 *   eager restore paid before its clock and a lazy one pays on the guest's path.
 *
 * Usage: deno task bench:restore [--sizes 64,1024,2048] [--rounds 3] [--workload 20000000]
 *   [--only sizes|lazy|hint] (lazy: the time to first instruction of lazy restores alone)
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse_args.js";
import { makeRestoreFixture } from "./_lazy_fixture.ts";
import { restoreSnapshot } from "../tools/restore.ts";
import { sharedClockMs } from "../emulator/snapshot/lazy_pages.ts";
import { loadersReady, restoreEagerly, spawnLoaders } from "../emulator/snapshot/lazy_restore.ts";
import { readThreadCpu } from "../emulator/snapshot/metrics.ts";
import { adviseHugePages } from "../emulator/snapshot/discard_pages.ts";
import { warmLazyRestore } from "../emulator/snapshot/restore_warmup.ts";

const args = parseArgs(Deno.args, {
  string: ["sizes", "rounds", "workload", "dir", "one", "file", "size", "only", "ws-bytes"],
});

/** This thread's time on a CPU (`cpuMs`) and waiting for one (`waitMs`) since `c0`. */
function threadCpu(
  out: Record<string, number | null>,
  c0: { runNs: number; waitNs: number } | null,
): void {
  const c1 = readThreadCpu();
  out.cpuMs = c0 === null || c1 === null ? null : (c1.runNs - c0.runNs) / 1e6;
  out.waitMs = c0 === null || c1 === null ? null : (c1.waitNs - c0.waitNs) / 1e6;
}

/** One measurement in this process; prints one JSON line. */
async function one(kind: string, file: string, workload: number): Promise<void> {
  const t0 = sharedClockMs();
  const out: Record<string, number | null> = {};
  if (kind === "touch" || kind === "touch-huge") {
    const size = Number(args.size);
    const b = new Uint8Array(new SharedArrayBuffer(size));
    if (kind === "touch-huge") adviseHugePages(b);
    for (let o = 0; o < size; o += 4096) b[o] = 1;
    out.ms = sharedClockMs() - t0;
  } else if (kind === "eager-stream") {
    const r = await restoreSnapshot({ path: file, runFor: 1, sink: () => {}, parallel: false });
    out.firstInstructionMs = sharedClockMs() - t0;
    out.ramBytes = r.machine.ram.size;
  } else if (kind === "eager-parallel") {
    // Whatever the file's size (`restore` itself takes this path from 32 MiB on).
    const r = await restoreEagerly({ path: file, uartSink: () => {} });
    r.machine.run(1);
    out.firstInstructionMs = sharedClockMs() - t0;
    out.ramBytes = r.machine.ram.size;
  } else if (kind === "lazy" || kind === "lazy-light" || kind === "lazy-warm") {
    const r = await restoreSnapshot({
      path: file,
      runFor: 1,
      sink: () => {},
      lazy: {
        hint: "off",
        warm: kind === "lazy-warm" ? true : kind === "lazy-light" ? "light" : false,
      },
    });
    const m = r.pager!.metrics();
    out.firstInstructionMs = m.firstInstructionUs! / 1000;
    out.firstCpuMs = m.firstInstructionCpu === null ? null : m.firstInstructionCpu.runUs / 1000;
    out.firstWaitMs = m.firstInstructionCpu === null ? null : m.firstInstructionCpu.waitUs / 1000;
    await r.pager!.finish();
  } else if (kind === "work-lazy" || kind === "work-hint") {
    // What `restore --lazy` does once per process before its clock: the warm-up, and the loader
    // thread made and its code loaded (`setupMs`, reported apart).
    await warmLazyRestore();
    const s0 = sharedClockMs();
    const workers = spawnLoaders(1);
    await loadersReady(workers);
    out.setupMs = sharedClockMs() - s0;
    const c0 = readThreadCpu();
    const t1 = sharedClockMs(); // the restore's start: the zero of its firstInstructionUs
    const r = await restoreSnapshot({
      path: file,
      runFor: workload,
      sink: () => {},
      lazy: { hint: kind === "work-hint" ? "auto" : "off", warm: false, workers },
    });
    out.ms = sharedClockMs() - t1;
    threadCpu(out, c0);
    const m = r.pager!.metrics();
    out.firstMs = m.firstInstructionUs! / 1000;
    out.firstCpuMs = m.firstInstructionCpu === null ? null : m.firstInstructionCpu.runUs / 1000;
    out.demandFaults = m.demandFaults;
    out.prefetchHits = m.prefetchHits;
    await r.pager!.finish();
  } else if (kind === "work-touch") {
    // What the lazy kinds pay that the warm one does not, whoever pays it: the first touch of the
    // working set's fresh memory, in RAM of the snapshot's size advised to huge pages as a
    // restore's is.
    const b = new Uint8Array(new SharedArrayBuffer(Number(args.size)));
    adviseHugePages(b);
    const t1 = sharedClockMs();
    for (let o = 0; o < Number(args["ws-bytes"]); o += 4096) b[o] = 1;
    out.ms = sharedClockMs() - t1;
  } else if (kind === "work-warm") {
    await warmLazyRestore(); // the same process warm-up as the lazy kinds
    const r = await restoreSnapshot({ path: file, runFor: 0, sink: () => {} });
    const c0 = readThreadCpu();
    const t1 = sharedClockMs();
    r.machine.run(workload);
    out.ms = sharedClockMs() - t1;
    threadCpu(out, c0);
  }
  console.log(JSON.stringify(out));
  Deno.exit(0);
}

if (args.one !== undefined) {
  await one(args.one, args.file ?? "", Number(args.workload ?? 0));
}

const sizes: number[] = (args.sizes ?? "64,1024,2048").split(",").map(Number);
const rounds = Number(args.rounds ?? 3);
const workload = Number(args.workload ?? 20_000_000);
const dir = args.dir ?? `${Deno.env.get("TMPDIR") ?? "/tmp"}/livesnap-restore-bench`;
await Deno.mkdir(dir, { recursive: true });

/** Runs `--one kind` in a fresh process; its JSON line and the whole process's wall time. */
async function child(kind: string, file: string, extra: string[] = []) {
  const t0 = performance.now();
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL(import.meta.url).pathname,
      "--one",
      kind,
      "--file",
      file,
      "--workload",
      String(workload),
      ...extra,
    ],
    stderr: "inherit",
  }).output();
  const wallMs = performance.now() - t0;
  if (r.code !== 0) throw new Error(`${kind} ${file}: exit ${r.code}`);
  return { ...JSON.parse(new TextDecoder().decode(r.stdout).trim().split("\n").pop()!), wallMs };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs: number[]) =>
  `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)})`;
const load = () => Deno.loadavg()[0].toFixed(1);

console.log(`# restore benchmark, ${rounds} rounds, load ${load()} at the start`);
for (const mib of args.only === "hint" ? [] : sizes) {
  const lazyOnly = args.only === "lazy";
  const lazyKinds = lazyOnly
    ? ["lazy", "lazy-light", "lazy-warm"]
    : ["eager-stream", "eager-parallel", "lazy", "lazy-light", "lazy-warm"];
  const f = await makeRestoreFixture(`${dir}/memstress-${mib}M.lsnap`, mib * 2 ** 20);
  const fileBytes = (await Deno.stat(f.path)).size;
  const got: Record<string, number[]> = {};
  const add = (k: string, v: number) => (got[k] ??= []).push(v);
  for (let round = 0; round < rounds; round++) {
    for (const kind of lazyKinds) {
      const r = await child(kind, f.path);
      add(`${kind} first`, r.firstInstructionMs);
      add(`${kind} wall`, r.wallMs);
      if (r.firstCpuMs != null) add(`${kind} cpu`, r.firstCpuMs);
      if (r.firstWaitMs != null) add(`${kind} wait`, r.firstWaitMs);
    }
    for (const kind of lazyOnly ? [] : ["touch", "touch-huge"]) {
      add(kind, (await child(kind, f.path, ["--size", String(f.ramSize)])).ms);
    }
  }
  const gbs = (k: string) => got[k].map((ms) => f.ramSize / 1e9 / (ms / 1000));
  const fmt3 = (xs: number[]) =>
    `${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(3)}-${Math.max(...xs).toFixed(3)})`;
  console.log(
    `\n## ${mib} MiB of RAM (file ${(fileBytes / 2 ** 20).toFixed(1)} MiB), load ${load()}`,
  );
  console.log("time to first instruction, ms: median (min-max)");
  for (const k of lazyKinds) {
    console.log(
      `  ${k.padEnd(15)} ${fmt(got[`${k} first`])}   whole process ${fmt(got[`${k} wall`])}`,
    );
  }
  for (const k of ["lazy", "lazy-light", "lazy-warm"]) {
    if (got[`${k} cpu`] === undefined) continue;
    console.log(
      `  ${k}, of which the restoring thread on a CPU ${fmt(got[`${k} cpu`])}, waiting for one ${
        fmt(got[`${k} wait`])
      }`,
    );
  }
  if (lazyOnly) continue;
  console.log(
    `  lazy / eager-parallel: ${
      (median(got["lazy first"]) / median(got["eager-parallel first"])).toFixed(3)
    }x`,
  );
  console.log(
    `eager restore, GB/s of guest RAM: stream ${fmt3(gbs("eager-stream first"))}, parallel ${
      fmt3(gbs("eager-parallel first"))
    } (${(median(got["eager-stream first"]) / median(got["eager-parallel first"])).toFixed(2)}x)`,
  );
  console.log(
    `  touching ${mib} MiB of fresh memory alone: ${fmt(got.touch)} ms (${
      (median(got.touch) / median(got["eager-parallel first"]) * 100).toFixed(0)
    }% of the parallel restore); with huge pages: ${fmt(got["touch-huge"])} ms`,
  );
}

// The hint: a fixed workload after the restore point, on the largest size's snapshot.
if (args.only !== "sizes" && args.only !== "lazy") {
  const mib = Math.min(...sizes.filter((s: number) => s >= 256), Math.max(...sizes));
  const f = await makeRestoreFixture(`${dir}/memstress-ws32M-${mib}M.lsnap`, mib * 2 ** 20, {
    workingSetBytes: 32 << 20,
  });
  await Deno.remove(`${f.path}.ws`).catch(() => {});
  // Record the hint once (not timed).
  const rec = await restoreSnapshot({
    path: f.path,
    runFor: workload,
    sink: () => {},
    lazy: { hint: "off", recordWs: { window: workload } },
  });
  await rec.pager!.finish();
  const got: Record<string, number[]> = {};
  const add = (k: string, v: number | null | undefined) => {
    if (v != null) (got[k] ??= []).push(v);
  };
  const kinds = ["work-warm", "work-lazy", "work-hint"];
  const loads: number[] = [];
  for (let round = 0; round < rounds; round++) {
    loads.push(Deno.loadavg()[0]);
    add(
      "work-touch ms",
      (await child("work-touch", f.path, [
        "--size",
        String(f.ramSize),
        "--ws-bytes",
        String(f.workingSetBytes),
      ])).ms,
    );
    for (const kind of kinds) {
      const r = await child(kind, f.path);
      for (
        const k of ["ms", "cpuMs", "waitMs", "setupMs", "firstMs", "firstCpuMs", "demandFaults"]
      ) {
        add(`${kind} ${k}`, r[k]);
      }
    }
  }
  loads.push(Deno.loadavg()[0]);
  console.log(
    `\n## a fixed workload: ${workload} instructions of memstress (32 MiB working set) after a restore of ${mib} MiB, load ${
      Math.min(...loads).toFixed(1)
    }-${Math.max(...loads).toFixed(1)}`,
  );
  console.log(
    "time, ms: median (min-max); lazy from the restore's start (the zero of firstInstructionUs) to the workload's end; the warm eager restore: the workload alone",
  );
  const cpu = (k: string) =>
    got[`${k} cpuMs`] === undefined
      ? ""
      : `, guest thread on a CPU ${fmt(got[`${k} cpuMs`])}, waiting ${fmt(got[`${k} waitMs`])}`;
  console.log(`  eager, already warm:  ${fmt(got["work-warm ms"])}${cpu("work-warm")}`);
  for (const [k, name] of [["work-lazy", "lazy, no hint:"], ["work-hint", "lazy, hint:   "]]) {
    console.log(
      `  ${name}        ${fmt(got[`${k} ms`])}${cpu(k)}; first instruction ${
        fmt(got[`${k} firstMs`])
      } (on a CPU ${fmt(got[`${k} firstCpuMs`] ?? [NaN])}); demand faults ${
        fmt(got[`${k} demandFaults`])
      }; before the clock, the loader thread made and ready ${fmt(got[`${k} setupMs`])}`,
    );
  }
  console.log(
    `  touching the working set's ${
      f.workingSetBytes >> 20
    } MiB of fresh memory alone (huge pages, RAM of ${mib} MiB): ${
      fmt(got["work-touch ms"])
    } ms, which a lazy restore pays on the guest's path and the warm eager one before its clock`,
  );
  const cut = 1 - median(got["work-hint demandFaults"]) / median(got["work-lazy demandFaults"]);
  console.log(`  demand faults cut by the hint: ${(cut * 100).toFixed(1)}%`);
  // Ratios against the warm eager restore: of the medians, and round by round (each round's
  // three runs are next to each other in time), median and worst.
  const ratios = (k: string, what: string, extra = "") => {
    const a = got[`${k} ${what}`];
    const w = got[`work-warm ${what}`];
    if (a === undefined || w === undefined) return "n/a";
    const e = extra === "" ? a.map(() => 0) : got[`${k} ${extra}`];
    const pairs = a.map((x, i) => (x + e[i]) / w[i]);
    const med = (median(a.map((x, i) => x + e[i])) / median(w)).toFixed(2);
    return `${med}x (round by round: median ${median(pairs).toFixed(2)}x, worst ${
      Math.max(...pairs).toFixed(2)
    }x)`;
  };
  for (const [k, name] of [["work-hint", "lazy with hint"], ["work-lazy", "lazy without"]]) {
    console.log(`  ${name} / warm eager: ${ratios(k, "ms")}`);
    console.log(`    by the guest thread's CPU time: ${ratios(k, "cpuMs")}`);
    console.log(
      `    with the loader thread's making before the clock: ${ratios(k, "ms", "setupMs")}`,
    );
  }
}
