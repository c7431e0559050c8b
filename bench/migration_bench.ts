/**
 * `deno task bench:migrate [--ram 256M,1G] [--runs 2] [--downtime-ms 50,100,300]`: live migration
 * over the loopback address against its baseline, stop + copy the file + restore, at each RAM
 * size, and the downtime achieved against each `--downtime-ms` target.
 *
 * The guest is memstress with an 8 MiB working set, its RAM above 16 MiB filled with the
 * benchmarks' mixed content (bench/_mixed_ram.ts: 60% zero, 25% text, 15% random pages), so a
 * migration has real pages to move. Both ends run in this process (two guest threads, a writer
 * thread), on a machine shared with other jobs: quote the load.
 *
 * - precopy: `migrate()` to `receiveMigration()`: downtime (the guest's last instruction at the
 *   source to its first at the destination, docs/MIGRATION.md §6.1) and its ratio to the target,
 *   the last pass's estimate of it, total time, bytes sent / RAM, passes;
 * - postcopy (docs/MIGRATION.md §8): downtime (the source's stop to the destination guest's first
 *   instruction), total time (to the destination's READY: every page in and the digest checked),
 *   faults the guest took and their latency (p50/p99, from the fault to the page in);
 * - baseline: a `stop` snapshot to a file (the guest is stopped for the whole write), a copy of
 *   the file (what moving it to another host costs at disk speed), a restore of the copy up to
 *   the guest being ready to run: all of it is downtime.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse_args.js";
import { LiveMachine } from "../emulator/snapshot/live_machine.ts";
import { memstressElf } from "../emulator/guests/memstress_config.ts";
import { migrate, type MigrationMetrics } from "../tools/migrate.ts";
import { receiveMigration } from "../tools/incoming.ts";
import { mixedRam } from "./_mixed_ram.ts";

const args = parseArgs(Deno.args, { string: ["ram", "runs", "downtime-ms", "modes"] });
/** `--modes precopy,postcopy` (default both): which migrations to measure. */
const modes = String(args.modes ?? "precopy,postcopy").split(",");
const sizes = String(args.ram ?? "256M,1G").split(",").map((s: string) =>
  Number(s.slice(0, -1)) * (s.endsWith("G") ? 1 << 30 : 1 << 20)
);
const runs = Number(args.runs ?? 2);
const targets = String(args["downtime-ms"] ?? "50").split(",").map(Number);
const FILL_FROM = 16 << 20;
const ELF = memstressElf({
  workingSetBytes: 8 << 20,
  writesPerRound: 20_000,
  computePerWrite: 40,
  rounds: 0,
});

async function source(ramSize: number): Promise<LiveMachine> {
  const vm = await LiveMachine.start({ elf: ELF, ramSize, uartSink: () => {} });
  await vm.pause();
  vm.ram.set(mixedRam((ramSize - FILL_FROM) / 4096), FILL_FROM);
  await vm.resume();
  await new Promise((r) => setTimeout(r, 500));
  return vm;
}

/** One migration of a fresh source to a destination on a free loopback port; the source's result. */
async function migrateOnce(ramSize: number, options: { downtimeMs?: number; mode?: "postcopy" }) {
  const vm = await source(ramSize);
  let ready!: (p: number) => void;
  const port = new Promise<number>((r) => ready = r);
  const incoming = receiveMigration({
    host: "127.0.0.1",
    port: 0,
    onListening: (a) => ready(a.port),
    live: { uartSink: () => {} },
  });
  const m = await migrate(vm, { host: "127.0.0.1", port: await port, ...options });
  const dst = await incoming;
  await dst.machine.quit();
  return m;
}

const precopy = (ramSize: number, downtimeMs: number) => migrateOnce(ramSize, { downtimeMs });
const postcopy = (ramSize: number) => migrateOnce(ramSize, { mode: "postcopy" });

async function baseline(ramSize: number, dir: string) {
  const vm = await source(ramSize);
  const snap = await vm.snapshot({ mode: "stop", path: `${dir}/b.lsnap` });
  await vm.quit();
  const c0 = performance.now();
  await Deno.copyFile(`${dir}/b.lsnap`, `${dir}/c.lsnap`);
  const copyMs = performance.now() - c0;
  const r0 = performance.now();
  const dst = await LiveMachine.start({ restorePath: `${dir}/c.lsnap`, startPaused: true });
  const restoreMs = performance.now() - r0;
  await dst.quit();
  const bytes = (await Deno.stat(`${dir}/b.lsnap`)).size;
  await Deno.remove(`${dir}/b.lsnap`);
  await Deno.remove(`${dir}/c.lsnap`);
  return { stopMs: snap.totalMs, copyMs, restoreMs, bytes };
}

const dir = await Deno.makeTempDir();
const load = () => Deno.readTextFile("/proc/loadavg").then((t) => t.split(" ")[0], () => "?");
console.log(
  `live migration over 127.0.0.1 vs stop + copy + restore; ${runs} runs each, worst case in ` +
    `brackets; load average ${await load()} at the start on ${navigator.hardwareConcurrency} CPUs\n`,
);
console.log(
  "| RAM | --downtime-ms | precopy downtime ms | downtime / target | estimate at switch-over ms | precopy total ms | bytes sent / RAM | passes | baseline downtime = total ms (stop + copy + restore) | downtime ratio | total ratio | load |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|");
const fmt = (x: number) => x.toFixed(1);
const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)];
const postRows: string[] = [];
try {
  for (const size of sizes) {
    const b = [];
    for (let i = 0; i < runs; i++) b.push(await baseline(size, dir));
    const bt = b.map((x) => x.stopMs + x.copyMs + x.restoreMs);
    const bm = b[b.indexOf(b.find((x) => x.stopMs + x.copyMs + x.restoreMs === med(bt))!)];
    const base = `${fmt(med(bt))} (${fmt(bm.stopMs)} + ${fmt(bm.copyMs)} + ${fmt(bm.restoreMs)})`;
    if (modes.includes("postcopy")) {
      const q: MigrationMetrics[] = [];
      for (let i = 0; i < runs; i++) q.push(await postcopy(size));
      const qd = q.map((m) => m.downtimeMs);
      const qt = q.map((m) => m.totalMs);
      const lat = (k: "p50" | "p99") => q.map((m) => m.faultLatencyUs?.[k] ?? 0);
      postRows.push(
        `| ${size >> 20} MiB | ${fmt(med(qd))} [${fmt(Math.max(...qd))}] | ${fmt(med(qt))} [${
          fmt(Math.max(...qt))
        }] | ${q.map((m) => m.postcopyFaults).join(", ")} | ${med(lat("p50"))} / ${
          med(lat("p99"))
        } | ${(med(q.map((m) => m.bytesSent / m.ramBytes))).toFixed(2)} | ${base} | ${
          (med(qd) / med(bt)).toFixed(4)
        } | ${(med(qt) / med(bt)).toFixed(2)} | ${await load()} |`,
      );
      for (const m of q) {
        console.error(JSON.stringify({
          ramMiB: size >> 20,
          mode: m.mode,
          downtimeMs: m.downtimeMs,
          parts: m.downtimeParts,
          totalMs: m.totalMs,
          bytesSent: m.bytesSent,
          postcopyFaults: m.postcopyFaults,
          faultLatencyUs: m.faultLatencyUs,
        }));
      }
    }
    for (const target of modes.includes("precopy") ? targets : []) {
      const p = [];
      for (let i = 0; i < runs; i++) p.push(await precopy(size, target));
      const pd = p.map((m) => m.downtimeMs);
      const pt = p.map((m) => m.totalMs);
      const ratio = p.map((m) => m.bytesSent / m.ramBytes);
      const vs = pd.map((d) => d / target);
      console.log(
        `| ${size >> 20} MiB | ${target} | ${fmt(med(pd))} [${fmt(Math.max(...pd))}] | ${
          med(vs).toFixed(2)
        } [${Math.max(...vs).toFixed(2)}] | ${
          p.map((m) => fmt(m.estimatedDowntimeMs)).join(", ")
        } | ${fmt(med(pt))} [${fmt(Math.max(...pt))}] | ${med(ratio).toFixed(2)} [${
          Math.max(...ratio).toFixed(2)
        }] | ${p.map((m) => m.passes).join(", ")} | ${fmt(med(bt))} (${fmt(bm.stopMs)} + ${
          fmt(bm.copyMs)
        } + ${fmt(bm.restoreMs)}) | ${(med(pd) / med(bt)).toFixed(4)} | ${
          (med(pt) / med(bt)).toFixed(2)
        } | ${await load()} |`,
      );
      for (const m of p) {
        console.error(
          JSON.stringify({
            ramMiB: size >> 20,
            targetMs: target,
            downtimeMs: m.downtimeMs,
            estimatedDowntimeMs: m.estimatedDowntimeMs,
            downtimeEnd: m.downtimeEnd,
            parts: m.downtimeParts,
            totalMs: m.totalMs,
            bytesSent: m.bytesSent,
            passes: m.passes,
            throttlePct: m.snapshot?.precopyThrottlePct,
            pagesInFinalPause: m.snapshot?.pagesInFinalPause,
          }),
        );
      }
    }
  }
  if (postRows.length > 0) {
    console.log(
      "\n| RAM | postcopy downtime ms | postcopy total ms | faults | fault latency p50 / p99 µs | bytes sent / RAM | baseline downtime = total ms (stop + copy + restore) | downtime ratio | total ratio | load |",
    );
    console.log("|---|---|---|---|---|---|---|---|---|---|");
    for (const r of postRows) console.log(r);
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
