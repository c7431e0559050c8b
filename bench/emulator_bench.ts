/**
 * Emulator speed: guest MIPS (millions of retired instructions per second) for each guest, with
 * the RAM page gate in four states, and QEMU (TCG) running the same ELFs for comparison.
 *
 *   deno run -A bench/emulator_bench.ts [--repeat 3] [--no-qemu] [--budget 200000000]
 *
 * Gate states, each measured in the same process, interleaved round by round:
 * - `no check`: a copy of the CPU with the gate check removed from the store paths (the
 *   baseline that shows what the check itself costs);
 * - `gate empty`: the shipped CPU, no snapshot running (every pageGate entry equal to `gateOpen`);
 * - `gate empty again`: the same measured a second time, to show the noise floor (an A/A test);
 * - `cow hook`: every page gated, and a hook that clears the page's gate on its first store, as
 *   the copy-on-write snapshot engine does (its page copy is not included here);
 * - `hook every store`: every page gated and never cleared: each store calls the hook (the worst
 *   case, e.g. a dirty log that never re-arms).
 *
 * Times are CPU time (user + system, every thread of the process: `process.cpuUsage()` here,
 * `getrusage(RUSAGE_CHILDREN)` for QEMU), not wall time: the machine is shared, and CPU time is
 * far less disturbed by other processes.
 *
 * QEMU: `qemu-system-riscv32 -machine virt -bios none -m 128M` runs each guest that powers off
 * to completion; its CPU time minus that of the `hello` guest (about a thousand instructions:
 * QEMU's start-up and exit) divided into the guest's instruction count (counted by our
 * emulator; both run the same instructions) gives QEMU's MIPS. Guests that never power off
 * (counter) or run under 10 M instructions are not timed on QEMU.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse_args.js";
import process from "node:process";
import { GATE_HOOK } from "../emulator/ram.ts";
import { Machine as ShippedMachine } from "../emulator/machine.ts";

/** Discards guest UART output (the default sink is stdout). */
const QUIET = (_: Uint8Array) => {};

const args = parseArgs(Deno.args, {
  string: ["repeat", "budget"],
  boolean: ["no-qemu"],
  default: { repeat: "3", budget: "200000000" },
});
const REPEAT = Number(args.repeat);
const BUDGET = Number(args.budget);
const root = new URL("../", import.meta.url);
const guestsDir = new URL("emulator/guests/build/", root);

type MachineClass = typeof ShippedMachine;

/** A copy of emulator/ whose CPU has no page-gate check on its store paths. */
async function loadUncheckedMachine(): Promise<MachineClass> {
  const dir = await Deno.makeTempDir({ prefix: "livesnap_bench_" });
  const src = new URL("emulator/", root);
  for (const sub of ["", "devices/"]) {
    await Deno.mkdir(`${dir}/${sub}`, { recursive: true });
    for (const e of Deno.readDirSync(new URL(sub, src))) {
      if (!e.isFile || !e.name.endsWith(".ts")) continue;
      let text = await Deno.readTextFile(new URL(sub + e.name, src));
      if (sub === "" && e.name === "cpu.ts") {
        const before = text;
        text = text.replaceAll(
          /if \(gate\[p\] !== open && ram\.gatedStore\(p, o\)\) limit = n \+ 1;/g,
          "",
        );
        if (text === before) {
          throw new Error("Cannot build the unchecked CPU: gate check not found");
        }
      }
      await Deno.writeTextFile(`${dir}/${sub}${e.name}`, text);
    }
  }
  const mod = await import(`file://${dir}/machine.ts`);
  return mod.Machine as MachineClass;
}

interface Guest {
  name: string;
  elf: Uint8Array;
  /** Instructions to run (the whole run for guests that power off). */
  budget: number;
  terminates: boolean;
}

function listGuests(): Guest[] {
  const out: Guest[] = [];
  for (const e of [...Deno.readDirSync(guestsDir)].sort((a, b) => a.name.localeCompare(b.name))) {
    if (!e.name.endsWith(".elf")) continue;
    const name = e.name.slice(0, -4);
    const elf = Deno.readFileSync(new URL(e.name, guestsDir));
    const m = ShippedMachine.fromElf(elf, { uartSink: QUIET });
    const r = m.run(BUDGET);
    out.push({ name, elf, budget: m.hart.retired, terminates: r.reason === "exit" });
  }
  return out;
}

type Mode = "no check" | "gate empty" | "gate empty again" | "cow hook" | "hook every store";
const MODES: Mode[] = [
  "no check",
  "gate empty",
  "gate empty again",
  "cow hook",
  "hook every store",
];

function runOnce(M: MachineClass, g: Guest, mode: Mode): { mips: number; hooks: number } {
  const m = M.fromElf(g.elf, { uartSink: QUIET });
  let hooks = 0;
  if (mode === "cow hook" || mode === "hook every store") {
    const gate = m.pageGate;
    for (let p = 0; p < gate.length; p++) Atomics.or(gate, p, GATE_HOOK);
    m.setStoreHook(
      mode === "cow hook"
        ? (p) => {
          hooks++;
          Atomics.and(gate, p, ~GATE_HOOK);
        }
        : () => {
          hooks++;
        },
    );
  }
  const c0 = process.cpuUsage();
  m.run(g.budget);
  const c = process.cpuUsage(c0);
  return { mips: m.hart.retired / (c.user + c.system), hooks };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** CPU seconds (user + system, all threads) QEMU spends running `elf` to power-off. */
async function qemuSeconds(elf: URL): Promise<number | null> {
  const script = "import resource, subprocess, sys\n" +
    "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n" +
    "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n" +
    "print(r.ru_utime + r.ru_stime)\n";
  const qemuArgs = ["qemu-system-riscv32", "-machine", "virt", "-bios", "none", "-m", "128M"];
  qemuArgs.push("-nographic", "-monitor", "none", "-serial", "null", "-kernel", elf.pathname);
  try {
    const o = await new Deno.Command("python3", {
      args: ["-c", script, ...qemuArgs],
      stdout: "piped",
      stderr: "null",
    }).output();
    const s = Number(new TextDecoder().decode(o.stdout).trim());
    return o.success && Number.isFinite(s) ? s : null;
  } catch {
    return null;
  }
}

// Below this, QEMU's run is mostly its start-up and the difference is noise.
const QEMU_MIN_INSTRUCTIONS = 10_000_000;

const Unchecked = await loadUncheckedMachine();
const guests = listGuests();
const results = new Map<string, Map<Mode, number[]>>();
const hookCounts = new Map<string, Map<Mode, number>>();
for (const g of guests) {
  results.set(g.name, new Map(MODES.map((m) => [m, []])));
  hookCounts.set(g.name, new Map());
}
// Warm up both CPUs' JIT on the largest guest first.
const warm = guests.reduce((a, b) => (a.budget > b.budget ? a : b));
runOnce(Unchecked, { ...warm, budget: Math.min(warm.budget, 20_000_000) }, "no check");
runOnce(ShippedMachine, { ...warm, budget: Math.min(warm.budget, 20_000_000) }, "gate empty");
for (let round = 0; round < REPEAT; round++) {
  for (const g of guests) {
    // Rotate the order of the modes each round so none always runs first.
    for (let k = 0; k < MODES.length; k++) {
      const mode = MODES[(k + round) % MODES.length];
      const r = runOnce(mode === "no check" ? Unchecked : ShippedMachine, g, mode);
      results.get(g.name)!.get(mode)!.push(r.mips);
      hookCounts.get(g.name)!.set(mode, r.hooks);
    }
  }
}

const qemu = new Map<string, number>();
if (!args["no-qemu"]) {
  const base: number[] = [];
  const hello = new URL("hello.elf", guestsDir);
  for (let i = 0; i < REPEAT; i++) {
    const s = await qemuSeconds(hello);
    if (s !== null) base.push(s);
  }
  if (base.length > 0) {
    const startup = median(base);
    for (const g of guests) {
      if (!g.terminates || g.budget < QEMU_MIN_INSTRUCTIONS) continue;
      const times: number[] = [];
      for (let i = 0; i < REPEAT; i++) {
        const s = await qemuSeconds(new URL(`${g.name}.elf`, guestsDir));
        if (s !== null) times.push(s - startup);
      }
      if (times.length > 0) qemu.set(g.name, g.budget / median(times) / 1e6);
    }
    console.log(`QEMU start-up + exit (hello guest): ${(startup * 1000).toFixed(0)} ms CPU`);
  } else {
    console.log("qemu-system-riscv32 not found: QEMU columns omitted");
  }
}

const f = (x: number) => x.toFixed(1);
console.log(
  `\nMedian of ${REPEAT} runs; MIPS = retired guest instructions per microsecond of CPU time ` +
    "(user + system, all threads of the process), which other processes on a shared machine " +
    "disturb far less than wall time.\n",
);
console.log(
  "| guest | instructions | no check | gate empty | gate empty again | cow hook | hook every store | QEMU TCG | emulator / QEMU |",
);
console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const g of guests) {
  const r = results.get(g.name)!;
  const med = (m: Mode) => median(r.get(m)!);
  const q = qemu.get(g.name);
  const every = hookCounts.get(g.name)!.get("hook every store")!;
  const cow = hookCounts.get(g.name)!.get("cow hook")!;
  console.log(
    `| ${g.name} | ${g.budget.toLocaleString("en")} | ${f(med("no check"))} | ${
      f(med("gate empty"))
    } | ${f(med("gate empty again"))} | ${f(med("cow hook"))} (${cow} pages) | ${
      f(med("hook every store"))
    } (${every} calls) | ${q === undefined ? "n/a" : f(q)} | ${
      q === undefined ? "n/a" : (med("gate empty") / q).toFixed(2)
    } |`,
  );
}
