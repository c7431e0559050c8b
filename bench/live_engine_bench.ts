/**
 * Three measurements of the live snapshot engine on `memstress`, each in a fresh process (so a
 * process's first snapshot is really its first):
 *
 * - `first`: the pause of snapshots 1, 2 and 3 of one process (`cow`, 16 MiB buffer), on the
 *   hot workload (32 MiB working set);
 * - `precopy`: one `precopy` snapshot of the uniform workload (3/4 of RAM stored to at random):
 *   passes, the throttle reached, pages resent, pages in the final pause and the pause, against
 *   a `stop` snapshot of the same machine in the same process (the pause precopy is meant to beat);
 * - `rss`: the process's resident memory (VmRSS, `/proc/self/status`) before, during (its peak,
 *   VmHWM) and after a `cow` snapshot with the buffer at `max` on the uniform workload, then 1 s
 *   and 3 s later.
 *
 *   deno run -A bench/live_engine_bench.ts [--what first,precopy,rss] [--sizes 256M,1G] [--json F]
 *       [--expose-gc]
 *
 * `--expose-gc` runs each measurement with `--v8-flags=--expose-gc`, as the `livesnap` task
 * does: the engine's threads then collect dropped copy-buffer chunks at once.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse_args.js";
import { LiveMachine } from "../emulator/snapshot/live_machine.ts";
import { memstressElf } from "../emulator/guests/memstress_config.ts";
import { readProcessMemory, resetPeakMemory } from "../emulator/snapshot/metrics.ts";

const MIB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function boot(ram: number, workingSet: number): Promise<LiveMachine> {
  const m = await LiveMachine.start({
    elf: memstressElf({ workingSetBytes: workingSet, writesPerRound: 1 << 18, rounds: 0 }),
    ramSize: ram,
    uartSink: () => {},
  });
  // Let memstress touch every page of its working set first (about 8 stores per page).
  const fill = (workingSet / 4096) * 8 * 30;
  while ((await m.status()).retired < fill) await sleep(50);
  return m;
}

// deno-lint-ignore no-explicit-any
type Row = Record<string, any>;

async function first(ram: number, dir: string): Promise<Row> {
  const m = await boot(ram, 32 * MIB);
  const pauses: number[] = [];
  try {
    for (let k = 0; k < 3; k++) {
      const r = await m.snapshot({ mode: "cow", cowBuffer: 16 * MIB, path: `${dir}/f${k}.lsnap` });
      pauses.push(r.pauseUs);
      await Deno.remove(`${dir}/f${k}.lsnap`);
      await sleep(200);
    }
  } finally {
    await m.quit();
  }
  return { what: "first", ram, pauseUs: pauses, load: Deno.loadavg()[0] };
}

async function precopy(ram: number, dir: string): Promise<Row> {
  const m = await boot(ram, ram / 4 * 3);
  try {
    const stop = await m.snapshot({ mode: "stop", path: `${dir}/s.lsnap` });
    await Deno.remove(`${dir}/s.lsnap`);
    const p = await m.snapshot({ mode: "precopy", path: `${dir}/p.lsnap` });
    await Deno.remove(`${dir}/p.lsnap`);
    return {
      what: "precopy",
      ram,
      stopPauseUs: stop.pauseUs,
      pauseUs: p.pauseUs,
      totalMs: p.totalMs,
      passes: p.precopyPasses,
      throttlePct: p.precopyThrottlePct,
      pagesResent: p.pagesResent,
      pagesInFinalPause: p.pagesInFinalPause,
      guestThrottleMs: p.guestThrottleMs,
      guestInstructionsDuring: p.guestInstructionsDuring,
      guestCpuMs: p.guestCpuMs,
      bytesWritten: p.bytesWritten,
      load: Deno.loadavg()[0],
    };
  } finally {
    await m.quit();
  }
}

async function rss(ram: number, dir: string): Promise<Row> {
  const m = await boot(ram, ram / 4 * 3);
  try {
    const before = readProcessMemory().rss;
    resetPeakMemory();
    const s = await m.snapshot({ mode: "cow", cowBuffer: "max", path: `${dir}/r.lsnap` });
    const peak = readProcessMemory().peak;
    const after = readProcessMemory().rss;
    await Deno.remove(`${dir}/r.lsnap`);
    await sleep(1000);
    const after1s = readProcessMemory().rss;
    await sleep(2000);
    const after3s = readProcessMemory().rss;
    return {
      what: "rss",
      ram,
      bufferPeakBytes: s.bufferPeakBytes,
      rssBefore: before,
      rssPeak: peak,
      rssAfter: after,
      rssAfter1s: after1s,
      rssAfter3s: after3s,
      guestGcMs: s.guestGcMs,
      guestStallUs: s.guestStallUs,
      load: Deno.loadavg()[0],
    };
  } finally {
    await m.quit();
  }
}

const KINDS = { first, precopy, rss };
type Kind = keyof typeof KINDS;

const args = parseArgs(Deno.args, {
  string: ["what", "sizes", "json", "one"],
  boolean: ["expose-gc"],
});
if (args.one !== undefined) {
  const [kind, ram] = args.one.split(":");
  const dir = await Deno.makeTempDir({ prefix: "livesnap-engine-" });
  try {
    console.log(JSON.stringify(await KINDS[kind as Kind](Number(ram), dir)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
} else {
  const kinds = (args.what ?? "first,precopy,rss").split(",") as Kind[];
  const sizes = (args.sizes ?? "256M,1G").split(",").map((s: string) =>
    Number(s.slice(0, -1)) * (s.endsWith("G") ? 1024 * MIB : MIB)
  );
  const rows: Row[] = [];
  for (const kind of kinds) {
    for (const ram of sizes) {
      const o = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          ...(args["expose-gc"] ? ["--v8-flags=--expose-gc"] : []),
          new URL(import.meta.url).pathname,
          "--one",
          `${kind}:${ram}`,
        ],
        stdout: "piped",
        stderr: "inherit",
      }).output();
      if (!o.success) throw new Error(`Cannot run ${kind} at ${ram} bytes of RAM`);
      const row = JSON.parse(new TextDecoder().decode(o.stdout).trim().split("\n").at(-1)!);
      row.exposeGc = args["expose-gc"];
      rows.push(row);
      console.log(JSON.stringify(row));
    }
  }
  if (args.json !== undefined) await Deno.writeTextFile(args.json, JSON.stringify(rows, null, 2));
}
