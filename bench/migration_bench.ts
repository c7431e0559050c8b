/**
 * `deno task bench:migrate [--ram 256M,1G] [--runs 2] [--downtime-ms 50]`: live migration over
 * the loopback address against its baseline, stop + copy the file + restore, at each RAM size.
 *
 * The guest is memstress with an 8 MiB working set, its RAM above 16 MiB filled with the
 * benchmarks' mixed content (bench/_mixed_ram.ts: 60% zero, 25% text, 15% random pages), so a
 * migration has real pages to move. Both ends run in this process (two guest threads, a writer
 * thread), on a machine shared with other jobs: quote the load.
 *
 * - precopy: `migrate()` to `receiveMigration()`: downtime (the guest's last instruction at the
 *   source to the destination's READY and GO), total time, bytes sent / RAM, passes;
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
const downtimeMs = Number(args["downtime-ms"] ?? 50);
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

async function precopy(ramSize: number) {
  const vm = await source(ramSize);
  let ready!: (p: number) => void;
  const port = new Promise<number>((r) => ready = r);
  const incoming = receiveMigration({
    host: "127.0.0.1",
    port: 0,
    onListening: (a) => ready(a.port),
    live: { uartSink: () => {} },
  });
  const m = await migrate(vm, { host: "127.0.0.1", port: await port, downtimeMs });
  const dst = await incoming;
  await dst.machine.quit();
  return m;
}

async function postcopy(ramSize: number) {
  const vm = await source(ramSize);
  let ready!: (p: number) => void;
  const port = new Promise<number>((r) => ready = r);
  const incoming = receiveMigration({
    host: "127.0.0.1",
    port: 0,
    onListening: (a) => ready(a.port),
    live: { uartSink: () => {} },
  });
  const m = await migrate(vm, { host: "127.0.0.1", port: await port, mode: "postcopy" });
  const dst = await incoming;
  await dst.machine.quit();
  return m;
}

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
const load = (await Deno.readTextFile("/proc/loadavg").catch(() => "?")).split(" ")[0];
console.log(
  `live migration over 127.0.0.1 vs stop + copy + restore; ${runs} runs each, worst case in ` +
    `brackets; --downtime-ms ${downtimeMs}; load average ${load} on ${navigator.hardwareConcurrency} CPUs\n`,
);
console.log(
  "| RAM | precopy downtime ms | precopy total ms | bytes sent / RAM | passes | baseline downtime = total ms (stop + copy + restore) | downtime ratio | total ratio |",
);
console.log("|---|---|---|---|---|---|---|---|");
const fmt = (x: number) => x.toFixed(1);
const postRows: string[] = [];
try {
  for (const size of sizes) {
    const p: MigrationMetrics[] = [];
    const q: MigrationMetrics[] = [];
    const b = [];
    for (let i = 0; i < runs; i++) {
      if (modes.includes("precopy")) p.push(await precopy(size));
      if (modes.includes("postcopy")) q.push(await postcopy(size));
      b.push(await baseline(size, dir));
    }
    const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)];
    const bt = b.map((x) => x.stopMs + x.copyMs + x.restoreMs);
    const bm = b[b.indexOf(b.find((x) => x.stopMs + x.copyMs + x.restoreMs === med(bt))!)];
    const base = `${fmt(med(bt))} (${fmt(bm.stopMs)} + ${fmt(bm.copyMs)} + ${fmt(bm.restoreMs)})`;
    if (p.length > 0) {
      const pd = p.map((m) => m.downtimeMs);
      const pt = p.map((m) => m.totalMs);
      const ratio = p.map((m) => m.bytesSent / m.ramBytes);
      console.log(
        `| ${size >> 20} MiB | ${fmt(med(pd))} [${fmt(Math.max(...pd))}] | ${fmt(med(pt))} [${
          fmt(Math.max(...pt))
        }] | ${med(ratio).toFixed(2)} [${Math.max(...ratio).toFixed(2)}] | ${
          p.map((m) => m.passes).join(", ")
        } | ${base} | ${(med(pd) / med(bt)).toFixed(4)} | ${(med(pt) / med(bt)).toFixed(2)} |`,
      );
    }
    if (q.length > 0) {
      const qd = q.map((m) => m.downtimeMs);
      const qt = q.map((m) => m.totalMs);
      const lat = (k: "p50" | "p99") => q.map((m) => m.faultLatencyUs?.[k] ?? 0);
      postRows.push(
        `| ${size >> 20} MiB | ${fmt(med(qd))} [${fmt(Math.max(...qd))}] | ${fmt(med(qt))} [${
          fmt(Math.max(...qt))
        }] | ${q.map((m) => m.postcopyFaults).join(", ")} | ${med(lat("p50"))} / ${
          med(lat("p99"))
        } | ${base} | ${(med(qd) / med(bt)).toFixed(4)} | ${(med(qt) / med(bt)).toFixed(2)} |`,
      );
    }
    for (const m of [...p, ...q]) {
      console.error(
        JSON.stringify({
          ramMiB: size >> 20,
          mode: m.mode,
          downtimeMs: m.downtimeMs,
          parts: m.downtimeParts,
          totalMs: m.totalMs,
          bytesSent: m.bytesSent,
          passes: m.passes,
          postcopyFaults: m.postcopyFaults,
          faultLatencyUs: m.faultLatencyUs,
          throttlePct: m.snapshot?.precopyThrottlePct,
          pagesInFinalPause: m.snapshot?.pagesInFinalPause,
        }),
      );
    }
  }
  if (postRows.length > 0) {
    console.log(
      "\n| RAM | postcopy downtime ms | postcopy total ms | faults | fault latency p50 / p99 µs | baseline downtime = total ms (stop + copy + restore) | downtime ratio | total ratio |",
    );
    console.log("|---|---|---|---|---|---|---|---|");
    for (const r of postRows) console.log(r);
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
