/**
 * The `cow` pause against RAM size. Three measurements, in fresh processes started with the V8
 * flags of `deno task livesnap` (`--expose-gc`):
 *
 * - `instants`: the instant alone (`GuestSnapshotSide.begin()`) at 64 MiB, 2 GiB and 8 GiB in one
 *   process, interleaved round by round (`--rounds`), each snapshot abandoned at once: the sizes
 *   compared under the same conditions (see `bench/_pause_guest.ts`);
 * - `engine`: the live engine's guest side over RAM of 64 MiB, 2 GiB and 8 GiB (a stand-in guest
 *   thread storing at random into a 4 MiB hot set through the emulator's hot path; see
 *   `bench/_pause_guest.ts`) and its writer loop on another thread with a sink that drops the
 *   pages. The emulated machine cannot have more than 2 GiB of RAM; this is how 8 GiB is reached.
 * - `machine`: the emulator, `LiveMachine` running memstress (4 MiB working set) at 64 MiB and
 *   2 GiB, writing real files; `pauseUs` and `pauseCauses` from its metrics.
 *
 * Each takes `--snapshots` cow snapshots (16 MiB buffer) half a second apart and reports, per
 * RAM size, the instant (`begin()`, or the metrics' `instantUs`) and the whole pause (the longest
 * stretch without guest progress because of the snapshot), median and range, and the ratio of
 * the largest size's median to the smallest's. `engine` then takes 200 more instants one slice
 * of stores apart, abandoning each snapshot at once (no writer runs): many samples of the
 * instant alone, for a median a shared machine's noise moves less.
 *
 *   deno run -A bench/live_pause_bench.ts [--what instants,engine,machine] [--sizes 64M,2G,8G]
 *       [--machine-sizes 64M,2G] [--snapshots 7] [--rounds 1000] [--json FILE]
 *
 * The writer's sweep reads all of RAM, so the first snapshot at 8 GiB faults in 8 GiB (about a
 * minute on a machine whose fresh memory costs 3-8 s/GiB) and the process holds 8 GiB meanwhile.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse_args.js";
import { LiveMachine } from "../emulator/snapshot/live_machine.ts";
import { memstressElf } from "../emulator/guests/memstress_config.ts";
import { SnapshotWriterLoop } from "../emulator/snapshot/writer_loop.ts";
import {
  collectGarbage,
  type SlotChunkMessage,
  SlotChunks,
} from "../emulator/snapshot/slot_chunks.ts";
import type {
  InterleavedInstantsJob,
  PauseGuestEvent,
  PauseGuestJob,
  PauseGuestSample,
} from "./_pause_guest.ts";

const MIB = 1024 * 1024;
const SLOTS = 4096; // 16 MiB
/** engine: instants of abandoned snapshots taken after the complete ones. */
const QUICK_INSTANTS = 200;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Row {
  what: "engine" | "machine" | "instants";
  ramBytes: number;
  instantUs: number[];
  /** engine: the instants of abandoned snapshots, one slice apart. */
  quickInstantUs?: number[];
  pauseUs: number[];
  /** Per snapshot, what the pause was made of. */
  detail: Record<string, number>[];
  loadAverage: number;
}

async function engine(ramBytes: number, snapshots: number): Promise<Row> {
  const ram = new SharedArrayBuffer(ramBytes);
  const gate = new SharedArrayBuffer((ramBytes / 4096) * 4);
  const worker = new Worker(new URL("./_pause_guest.ts", import.meta.url), { type: "module" });
  let chunks: SlotChunks | null = null;
  const early: SlotChunkMessage[] = [];
  const ramView = new Uint8Array(ram);
  const gateView = new Int32Array(gate);
  let quickInstants: number[] = [];
  const samples = await new Promise<PauseGuestSample[]>((resolve, reject) => {
    let buffers: Extract<PauseGuestEvent, { type: "ready" }>["buffers"];
    worker.onmessage = (e: MessageEvent<PauseGuestEvent | SlotChunkMessage>) => {
      const m = e.data;
      switch (m.type) {
        case "slot-chunk":
          if (chunks === null) early.push(m);
          else chunks.receive(m);
          break;
        case "ready":
          buffers = m.buffers;
          chunks = new SlotChunks(buffers.chunks);
          for (const c of early) chunks.receive(c);
          break;
        case "started": {
          // As the writer thread does: one loop per job, then a collection.
          const loop = new SnapshotWriterLoop(
            buffers,
            ramView,
            gateView,
            { writePages: () => {} },
            chunks!,
            { waitForChunks: () => new Promise<void>((r) => setTimeout(r, 0)) },
          );
          loop.run().then(() => collectGarbage(), reject);
          break;
        }
        case "done":
          quickInstants = m.instantsUs;
          resolve(m.samples);
          break;
        case "error":
          reject(new Error(m.message));
          break;
      }
    };
    const job: PauseGuestJob = {
      ram,
      gate,
      hotPages: 1024,
      snapshots,
      slots: SLOTS,
      gapMs: 500,
      sliceStores: 20_000,
      instants: QUICK_INSTANTS,
    };
    worker.postMessage(job);
  });
  worker.terminate();
  return {
    what: "engine",
    ramBytes,
    instantUs: samples.map((s) => Math.round(s.instantUs)),
    quickInstantUs: quickInstants.map((us) => Math.round(us * 10) / 10),
    pauseUs: samples.map((s) => Math.round(s.pauseUs)),
    detail: samples.map((s) =>
      Object.fromEntries(Object.entries(s).map(([k, v]) => [k, Math.round(v * 10) / 10]))
    ),
    loadAverage: Deno.loadavg()[0],
  };
}

/** `instants`: the instant alone at every size, interleaved in one process (_pause_guest.ts). */
async function instants(sizes: number[], rounds: number): Promise<Row[]> {
  const worker = new Worker(new URL("./_pause_guest.ts", import.meta.url), { type: "module" });
  const job: InterleavedInstantsJob = {
    kind: "interleaved",
    sizes,
    rounds,
    hotPages: 1024,
    slots: SLOTS,
    sliceStores: 20_000,
  };
  const got = await new Promise<number[][]>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<PauseGuestEvent>) => {
      if (e.data.type === "interleaved") resolve(e.data.instantsUs);
      else if (e.data.type === "error") reject(new Error(e.data.message));
    };
    worker.postMessage(job);
  });
  worker.terminate();
  return sizes.map((ramBytes, k) => ({
    what: "instants",
    ramBytes,
    instantUs: got[k].map((us) => Math.round(us * 10) / 10),
    pauseUs: [],
    detail: [],
    loadAverage: Deno.loadavg()[0],
  }));
}

async function machine(ramBytes: number, snapshots: number): Promise<Row> {
  const dir = await Deno.makeTempDir({ prefix: "livesnap-pause-" });
  const workingSet = 4 * MIB;
  const m = await LiveMachine.start({
    elf: memstressElf({ workingSetBytes: workingSet, writesPerRound: 1 << 18, rounds: 0 }),
    ramSize: ramBytes,
    uartSink: () => {},
  });
  const instantUs: number[] = [];
  const pauseUs: number[] = [];
  const detail: Record<string, number>[] = [];
  try {
    while ((await m.status()).retired < (workingSet / 4096) * 8 * 30) await sleep(50);
    for (let k = 0; k < snapshots; k++) {
      await sleep(500);
      const r = await m.snapshot({ mode: "cow", cowBuffer: SLOTS * 4096, path: `${dir}/p.lsnap` });
      // Main's metrics (before pauseCauses) reported the instant as pauseUs.
      const causes = (r as unknown as { pauseCauses?: Record<string, number> }).pauseCauses;
      instantUs.push(causes?.instantUs ?? r.pauseUs);
      pauseUs.push(r.pauseUs);
      detail.push({ ...causes, totalMs: r.totalMs, guestGcMs: r.guestGcMs });
      await Deno.remove(`${dir}/p.lsnap`);
    }
  } finally {
    await m.quit();
    await Deno.remove(dir, { recursive: true });
  }
  return { what: "machine", ramBytes, instantUs, pauseUs, detail, loadAverage: Deno.loadavg()[0] };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function parseSize(s: string): number {
  return Number(s.slice(0, -1)) * (s.endsWith("G") ? 1024 * MIB : MIB);
}

const size = (n: number) => n >= 1024 * MIB ? `${n / 1024 / MIB} GiB` : `${n / MIB} MiB`;

const args = parseArgs(Deno.args, {
  string: ["what", "sizes", "machine-sizes", "snapshots", "json", "one", "rounds"],
});
const snapshots = Number(args.snapshots ?? 7);
if (args.one !== undefined) {
  const [what, ram] = args.one.split(":");
  const rows = what === "instants"
    ? await instants(ram.split(",").map(Number), Number(args.rounds ?? 1000))
    : [
      what === "engine"
        ? await engine(Number(ram), snapshots)
        : await machine(Number(ram), snapshots),
    ];
  for (const row of rows) console.log(JSON.stringify(row));
} else {
  const kinds = (args.what ?? "instants,engine,machine").split(",");
  // One process per (kind, size); `instants` measures all its sizes in one process.
  const plan: [string, string][] = [];
  for (const kind of kinds) {
    const sizes =
      (kind === "machine" ? (args["machine-sizes"] ?? "64M,2G") : (args.sizes ?? "64M,2G,8G"))
        .split(",").map(parseSize);
    if (kind === "instants") plan.push([kind, sizes.join(",")]);
    else for (const size of sizes) plan.push([kind, String(size)]);
  }
  const rows: Row[] = [];
  for (const [kind, ram] of plan) {
    const o = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        // As `deno task livesnap` runs the engine.
        "--v8-flags=--expose-gc",
        new URL(import.meta.url).pathname,
        "--one",
        `${kind}:${ram}`,
        "--snapshots",
        String(snapshots),
        "--rounds",
        String(args.rounds ?? 1000),
      ],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    if (!o.success) throw new Error(`Cannot measure ${kind} at ${ram} bytes of RAM`);
    for (const line of new TextDecoder().decode(o.stdout).trim().split("\n")) {
      if (!line.startsWith("{")) continue;
      const row: Row = JSON.parse(line);
      rows.push(row);
      console.error(JSON.stringify({ ...row, detail: undefined }));
    }
  }
  const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)];
  const range = (xs: number[]) =>
    xs.length === 0
      ? "-"
      : `${Math.round(median(xs) * 10) / 10} µs (${Math.min(...xs)}-${Math.max(...xs)})`;
  const lines = [
    "| measurement | RAM | instant, median (range) | 90th percentile | pause, median (range) | load |",
    "|---|---|---:|---:|---:|---:|",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.what} | ${size(r.ramBytes)} | ${range(r.instantUs)} | ${p90(r.instantUs)} µs | ${
        range(r.pauseUs)
      } | ${r.loadAverage.toFixed(1)} |`,
    );
    if (r.quickInstantUs !== undefined) {
      lines.push(
        `| ${r.what}, abandoned | ${size(r.ramBytes)} | ${range(r.quickInstantUs)} | ${
          p90(r.quickInstantUs)
        } µs | - | ${r.loadAverage.toFixed(1)} |`,
      );
    }
  }
  for (const kind of kinds) {
    const mine = rows.filter((r) => r.what === kind);
    if (mine.length < 2) continue;
    const small = mine[0];
    const big = mine[mine.length - 1];
    const ratio = (a: number[], b: number[]) => (median(a) / median(b)).toFixed(2);
    lines.push(
      "",
      `${kind}: ${size(big.ramBytes)} / ${size(small.ramBytes)}: instant ${
        ratio(big.instantUs, small.instantUs)
      }x${big.pauseUs.length > 0 ? `, pause ${ratio(big.pauseUs, small.pauseUs)}x` : ""}${
        big.quickInstantUs !== undefined && small.quickInstantUs !== undefined
          ? `, abandoned snapshots' instant ${ratio(big.quickInstantUs, small.quickInstantUs)}x`
          : ""
      } (medians)`,
    );
  }
  console.log(lines.join("\n"));
  if (args.json !== undefined) await Deno.writeTextFile(args.json, JSON.stringify(rows, null, 2));
}
