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
 *   already warm (its RAM loaded and touched before the clock starts).
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
import { restoreEagerly } from "../emulator/snapshot/lazy_restore.ts";
import { adviseHugePages } from "../emulator/snapshot/discard_pages.ts";
import { warmLazyRestore } from "../emulator/snapshot/restore_warmup.ts";

const args = parseArgs(Deno.args, {
  string: ["sizes", "rounds", "workload", "dir", "one", "file", "size", "only"],
});

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
    await warmLazyRestore(); // the process's warm-up, as `restore` does before its clock
    const t1 = sharedClockMs(); // the loader thread's creation included
    const r = await restoreSnapshot({
      path: file,
      runFor: workload,
      sink: () => {},
      lazy: { hint: kind === "work-hint" ? "auto" : "off", warm: false },
    });
    out.ms = sharedClockMs() - t1;
    const m = r.pager!.metrics();
    out.demandFaults = m.demandFaults;
    out.prefetchHits = m.prefetchHits;
    await r.pager!.finish();
  } else if (kind === "work-warm") {
    const r = await restoreSnapshot({ path: file, runFor: 0, sink: () => {} });
    const t1 = sharedClockMs();
    r.machine.run(workload);
    out.ms = sharedClockMs() - t1;
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
  const add = (k: string, v: number) => (got[k] ??= []).push(v);
  for (let round = 0; round < rounds; round++) {
    for (const kind of ["work-warm", "work-lazy", "work-hint"]) {
      const r = await child(kind, f.path);
      add(`${kind} ms`, r.ms);
      if (r.demandFaults !== undefined) add(`${kind} faults`, r.demandFaults);
    }
  }
  console.log(
    `\n## a fixed workload: ${workload} instructions of memstress (32 MiB working set) after a restore of ${mib} MiB, load ${load()}`,
  );
  console.log(`  eager, already warm (the workload alone): ${fmt(got["work-warm ms"])} ms`);
  console.log(
    `  lazy, no hint:  ${fmt(got["work-lazy ms"])} ms, demand faults ${
      fmt(got["work-lazy faults"])
    }`,
  );
  console.log(
    `  lazy, hint:     ${fmt(got["work-hint ms"])} ms, demand faults ${
      fmt(got["work-hint faults"])
    }`,
  );
  const cut = 1 - median(got["work-hint faults"]) / median(got["work-lazy faults"]);
  console.log(`  demand faults cut by the hint: ${(cut * 100).toFixed(1)}%`);
  console.log(
    `  lazy with hint / warm eager: ${
      (median(got["work-hint ms"]) / median(got["work-warm ms"])).toFixed(2)
    }x; lazy without / warm eager: ${
      (median(got["work-lazy ms"]) / median(got["work-warm ms"])).toFixed(2)
    }x`,
  );
}
