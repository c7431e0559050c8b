/**
 * Killed writers: starts `deno run _write_child.ts` writing a snapshot to one destination, kills it
 * with SIGKILL after a random delay, and checks what is left, trial after trial in one directory:
 *
 * - the destination holds either the last snapshot that completed or this trial's, complete and
 *   verified, never a partial file;
 * - every temporary left behind reads as incomplete (`verify`: TruncatedError), except one that
 *   was killed between its fsync and its rename, which is complete (counted apart);
 * - each next run removes the temporaries of the runs killed before it: after a final
 *   uninterrupted run no temporary is left.
 *
 * With `--live` the child is `livesnap run memstress.elf --snapshot-at N --out DEST` (a live cow
 * snapshot of a guest storing as fast as it can, `--pages` of RAM).
 *
 * Usage: deno run -A tests/reliability/killed_writers.ts [--trials N] [--pages N] [--seed N]
 *          [--live] [--json]
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { verifySnapshot } from "../../tools/verify.ts";
import { Rng } from "./_mutators.ts";
import { trialDigest } from "./_snapshot_content.ts";
import { memstressElf } from "../../emulator/guests/memstress_config.ts";
import { Machine } from "../../emulator/machine.ts";
import { machineContentDigest } from "../../emulator/snapshot/machine_state.ts";

const CLI = new URL("../../tools/cli.ts", import.meta.url).pathname;
const LIVE_AT = 3_000_000;

/** A live-snapshot writer child and the digest its file must hold. */
async function liveWriter(dir: string, pages: number) {
  const elf = memstressElf({
    workingSetBytes: (pages >> 1) * 4096,
    writesPerRound: 1 << 20,
    rounds: 0,
    seed: 3,
  });
  await Deno.writeFile(`${dir}/memstress.elf`, elf);
  const m = Machine.fromElf(elf, { ramSize: pages * 4096, uartSink: () => {} });
  m.run(LIVE_AT);
  const digest = await machineContentDigest(m);
  const spawn = (dest: string) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        "--config",
        CONFIG,
        CLI,
        "run",
        `${dir}/memstress.elf`,
        "--ram",
        String(pages * 4096),
        "--snapshot-at",
        String(LIVE_AT),
        "--out",
        dest,
        "--stop-at",
        String(LIVE_AT + 1000),
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  return { spawn, digest };
}

const CONFIG = new URL("../../deno.json", import.meta.url).pathname;
const CHILD = new URL("./_write_child.ts", import.meta.url).pathname;

/** Options of {@linkcode killedWriters}. */
export interface KillOptions {
  trials: number;
  /** Pages of 4 KiB each snapshot holds. */
  pages: number;
  seed: number;
  /**
   * Kill `livesnap run memstress.elf --snapshot-at N --out DEST` (a live cow snapshot of a guest
   * storing as fast as it can) instead of the format writer; `pages` is then the RAM in pages.
   */
  live?: boolean;
  /**
   * Run further trials (up to 4 × `trials` in all) until at least this many kills landed while
   * the file was being written: trials whose kill came before or after that exercise only the
   * destination check (default 0).
   */
  atLeastWhileWriting?: number;
}

/** Figures of a run. */
export interface KillReport {
  trials: number;
  /** Killed before the child had created its temporary file. */
  killedBeforeTemp: number;
  /** Killed while its temporary existed. */
  killedWhileWriting: number;
  /** Finished (renamed) before the kill arrived. */
  finishedFirst: number;
  /** Temporaries that verified as complete (killed between fsync and rename). */
  completeTemps: number;
  /** Temporaries that verified as incomplete. */
  incompleteTemps: number;
  /** Most temporaries present at once. */
  maxTemps: number;
  /** Temporaries left after the final uninterrupted run. */
  tempsAfterNextRun: number;
  /** Trials killed while writing whose every check held. */
  passed: number;
  /** Trials with a problem. */
  failed: number;
  /**
   * Trials whose checks of a killed writer's temporary were skipped, because the kill did not
   * land while the file was being written (killed before the temporary existed, or the writer
   * finished first): only the destination was checked. Counted apart, not as passed.
   */
  skipped: number;
  problems: string[];
  seconds: number;
}

/** Spawns the writer child; returns it. */
export function spawnWriter(
  dest: string,
  pages: number,
  seed: number,
  holdAt?: number,
): Deno.ChildProcess {
  const hold = holdAt === undefined ? [] : [String(holdAt)];
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      "--config",
      CONFIG,
      CHILD,
      dest,
      String(pages),
      String(seed),
      ...hold,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

export async function verifyPath(path: string) {
  const f = await Deno.open(path);
  return await verifySnapshot(f.readable);
}

export function temps(dir: string, base: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith(`${base}.tmp-`))
    .sort();
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until a temporary not in `seen` appears in `dir` (true), the child exits or `limitMs`
 * pass (false). Polls every 2 ms.
 */
async function appears(
  dir: string,
  seen: Set<string>,
  exited: Promise<unknown>,
  limitMs: number,
): Promise<boolean> {
  let done = false;
  exited.then(() => done = true, () => done = true);
  const until = performance.now() + limitMs;
  while (!done && performance.now() < until) {
    if (temps(dir, "vm.lsnap").some((n) => !seen.has(n))) return true;
    await sleep(2);
  }
  return false;
}

/** Runs the trials in a fresh directory and reports the figures. */
export async function killedWriters(o: KillOptions): Promise<KillReport> {
  const started = performance.now();
  const dir = await Deno.makeTempDir({ prefix: "livesnap-kill-" });
  const dest = `${dir}/vm.lsnap`;
  const r = new Rng(o.seed);
  const live = o.live ? await liveWriter(dir, o.pages) : null;
  const start = (seed: number) => live ? live.spawn(dest) : spawnWriter(dest, o.pages, seed);
  const digestOf = (seed: number) =>
    live ? Promise.resolve(live.digest) : trialDigest(seed, o.pages);
  const report: KillReport = {
    trials: 0,
    killedBeforeTemp: 0,
    killedWhileWriting: 0,
    finishedFirst: 0,
    completeTemps: 0,
    incompleteTemps: 0,
    maxTemps: 0,
    tempsAfterNextRun: 0,
    passed: 0,
    failed: 0,
    skipped: 0,
    problems: [],
    seconds: 0,
  };
  try {
    // A first complete run sets the destination and measures how long a whole write takes.
    const t0 = performance.now();
    const firstChild = start(0);
    let tempMs = -1;
    const poll = setInterval(() => {
      if (tempMs < 0 && temps(dir, "vm.lsnap").length > 0) tempMs = performance.now() - t0;
    }, 2);
    const first = await firstChild.output();
    clearInterval(poll);
    const fullMs = performance.now() - t0;
    if (first.code !== 0) throw new Error(new TextDecoder().decode(first.stderr));
    if (tempMs < 0) tempMs = fullMs / 2;
    let destDigest = await digestOf(0);
    const seenTemps = new Set<string>();
    const enough = () =>
      report.trials >= o.trials && report.killedWhileWriting >= (o.atLeastWhileWriting ?? 0);
    for (let t = 1; !enough() && t <= o.trials * 4; t++) {
      const seed = t;
      const problemsBefore = report.problems.length;
      const child = start(seed);
      // Mostly while the file is being written: timed from the moment this run's temporary
      // appears (start-up takes longer on a loaded machine, the write itself much less so),
      // a random part of the first write's length; sometimes during start-up or after the end.
      const writeMs = Math.max(1, fullMs - tempMs);
      if (r.chance(0.15)) await sleep(r.int(Math.round(tempMs)));
      else if (await appears(dir, seenTemps, child.status, fullMs * 20)) {
        await sleep(r.chance(0.1) ? writeMs * 1.5 : r.int(Math.round(writeMs * 0.9)));
      }
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      const status = await child.output();
      report.trials++;
      const finished = status.success;
      const present = temps(dir, "vm.lsnap");
      const fresh = present.filter((n) => !seenTemps.has(n));
      for (const n of present) seenTemps.add(n);
      report.maxTemps = Math.max(report.maxTemps, present.length);
      if (finished) report.finishedFirst++;
      else if (fresh.length > 0) report.killedWhileWriting++;
      else report.killedBeforeTemp++;

      const v = await verifyPath(dest);
      if (!v.ok) {
        report.problems.push(`trial ${t}: the destination does not verify: ${v.error?.message}`);
      } else {
        const want = [destDigest, await digestOf(seed)];
        if (!want.includes(v.digests.content!)) {
          report.problems.push(`trial ${t}: the destination holds content ${v.digests.content}`);
        }
        if (v.digests.content === want[1]) destDigest = want[1];
        if (finished && destDigest !== want[1]) {
          report.problems.push(
            `trial ${t}: the writer finished but the destination is the old file`,
          );
        }
      }
      for (const n of fresh) {
        const tv = await verifyPath(`${dir}/${n}`);
        if (tv.ok) report.completeTemps++;
        else if (tv.error?.kind === "TruncatedError") report.incompleteTemps++;
        else report.problems.push(`trial ${t}: temporary ${n} reads as ${tv.error?.message}`);
      }
      if (report.problems.length > problemsBefore) report.failed++;
      else if (!finished && fresh.length > 0) report.passed++;
      else report.skipped++;
    }
    if (!enough()) {
      report.problems.push(
        `only ${report.killedWhileWriting} of ${report.trials} kills landed while the file was written`,
      );
    }
    // The next run: uninterrupted; afterwards nothing but the destination may remain.
    const last = await start(report.trials + 1).output();
    if (last.code !== 0) {
      report.problems.push(`the final run failed: ${new TextDecoder().decode(last.stderr)}`);
    }
    report.tempsAfterNextRun = temps(dir, "vm.lsnap").length;
    if (report.tempsAfterNextRun !== 0) {
      report.problems.push(
        `temporaries left after the next run: ${temps(dir, "vm.lsnap").join(", ")}`,
      );
    }
    const v = await verifyPath(dest);
    if (!v.ok || v.digests.content !== await digestOf(report.trials + 1)) {
      report.problems.push("the final run's destination is not its snapshot");
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  report.seconds = Math.round((performance.now() - started) / 100) / 10;
  return report;
}

/** The summary line: trials checked in full, failed, and skipped (kill not mid-write). */
export function summarizeKills(r: KillReport): string {
  return `${r.trials} trials: ${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped ` +
    `(${r.killedBeforeTemp} killed before the temporary existed, ${r.finishedFirst} finished ` +
    `first: only the destination checked); ${r.problems.length} problems`;
}

if (import.meta.main) {
  const f = parseArgs(Deno.args, {
    string: ["trials", "pages", "seed"],
    boolean: ["json", "live"],
  });
  const report = await killedWriters({
    trials: Number(f.trials ?? 100),
    pages: Number(f.pages ?? 4096),
    seed: Number(f.seed ?? 1),
    live: f.live,
  });
  if (f.json) console.log(JSON.stringify(report, null, 2));
  else {
    console.log(summarizeKills(report));
    for (const p of report.problems) console.log(`  ${p}`);
  }
  Deno.exit(report.problems.length === 0 ? 0 : 1);
}
