/**
 * The fuzz harness. Target `lsnap` (the default) mutates the golden files and generated
 * snapshots and feeds every case to the stream reader, the file reader, `verify`, `inspect`,
 * the device state decoder, `convert` and `restore` (see `_targets.ts` for what counts as a
 * pass); target `qemu` mutates QEMU migration streams and feeds them to the QEMU stream reader
 * and everything built on it (`_qemu_targets.ts`). Cases run in Workers; a case that does not
 * finish within `--timeout` seconds is a hang: its worker is terminated and the run goes on. A
 * case with a problem fails; one with none but a check the harness could not make (over one of
 * its caps) is counted as skipped, not passed.
 *
 * Usage: deno run -A tests/reliability/fuzz.ts [--target lsnap|qemu|all] [--seed N]
 *          [--cases N] [--seconds S] [--workers N] [--timeout S] [--max-rss-mib N] [--save]
 *          [--json]
 *
 * `--save` writes every failing case to tests/fixtures/regressions/ (replayed by fuzz_test.ts).
 * Progress goes to stderr every batch. Exit status 0 when no case failed, 1 otherwise.
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { FUZZ_TARGETS, type FuzzTarget, type LoadedTarget, loadTarget } from "./_fuzz_target.ts";

export { FUZZ_TARGETS, type FuzzTarget };

/** Options of {@linkcode fuzz}. */
export interface FuzzOptions {
  /** Default "lsnap". */
  target?: FuzzTarget;
  seed: number;
  /** Number of cases to run (starting at case 0). */
  cases: number;
  /** Stop starting new batches after this many seconds (0: no limit). */
  seconds?: number;
  workers?: number;
  /** Seconds a single case may take before it counts as a hang. */
  timeout?: number;
  /** Resident memory a case may leave the process at. */
  maxRss?: number;
  /** Directory to write failing cases to, or null. */
  saveDir?: string | null;
  /** Called after every finished batch. */
  progress?: (done: number) => void;
}

/** A failing case. */
export interface FuzzFailure {
  index: number;
  mutators: string[];
  problems: string[];
}

/** The figures of a run. */
export interface FuzzReport {
  target: FuzzTarget;
  seed: number;
  cases: number;
  seconds: number;
  /** Stream reader outcome → cases. */
  outcomes: Record<string, number>;
  /** Mutator → cases it took part in. */
  mutators: Record<string, number>;
  failures: FuzzFailure[];
  /** Cases with no problem and every applicable check made. */
  passed: number;
  /** Cases with no problem but some check not made (over a harness cap): not passed. */
  skipped: number;
  /** Why checks were skipped → cases. */
  skippedChecks: Record<string, number>;
  hangs: number;
  /** Largest resident set size seen after a case, bytes. */
  peakRss: number;
  /** The process's peak resident set (VmHWM), bytes, or null where /proc is missing. */
  vmHwm: number | null;
}

const BATCH = 250;

/** Peak resident set of this process from /proc/self/status, or null. */
export function vmHwm(): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Runs `cases` cases from `seed` and reports the figures. */
export async function fuzz(o: FuzzOptions): Promise<FuzzReport> {
  const started = performance.now();
  const deadline = o.seconds ? started + o.seconds * 1000 : Infinity;
  const timeoutMs = (o.timeout ?? 30) * 1000;
  const maxRss = o.maxRss ?? 3 * 1024 ** 3;
  const scratchDir = await Deno.makeTempDir({
    dir: (await Deno.stat("/dev/shm").catch(() => null))?.isDirectory ? "/dev/shm" : undefined,
    prefix: "livesnap-fuzz-",
  });
  const target = o.target ?? "lsnap";
  const report: FuzzReport = {
    target,
    seed: o.seed,
    cases: 0,
    seconds: 0,
    outcomes: {},
    mutators: {},
    failures: [],
    passed: 0,
    skipped: 0,
    skippedChecks: {},
    hangs: 0,
    peakRss: 0,
    vmHwm: null,
  };
  let maker: LoadedTarget | null = null;
  const fail = async (f: FuzzFailure) => {
    report.failures.push(f);
    if (!o.saveDir) return;
    maker ??= await loadTarget(target);
    let c;
    try {
      c = await maker.make(o.seed, f.index);
    } catch (e) {
      // The case maker itself failed (reported as the case's problem): nothing to save.
      f.problems.push(`the case could not be rebuilt to save it: ${String(e)}`);
      return;
    }
    const name = `fuzz-${target === "qemu" ? "qemu-" : ""}s${o.seed}-c${f.index}`;
    await Deno.mkdir(o.saveDir, { recursive: true });
    await Deno.writeFile(`${o.saveDir}/${name}.${target}`, c.bytes);
    await Deno.writeTextFile(
      `${o.saveDir}/${name}.json`,
      JSON.stringify({ seed: o.seed, case: f.index, ...f }, null, 2) + "\n",
    );
  };

  let next = 0;
  const takeBatch = (): [number, number] | null => {
    if (next >= o.cases || performance.now() > deadline) return null;
    const from = next;
    next = Math.min(o.cases, next + BATCH);
    return [from, next];
  };

  const lane = async (id: number): Promise<void> => {
    const scratch = `${scratchDir}/case-${id}.lsnap`;
    let batch = takeBatch();
    while (batch !== null) {
      // One worker per batch attempt; a hang terminates it and the rest of the batch resumes.
      const [from, to] = batch;
      const resumeAt = await new Promise<number>((resolve) => {
        const w = new Worker(new URL("./_fuzz_worker.ts", import.meta.url).href, {
          type: "module",
        });
        let current = from;
        let since = performance.now();
        let started = false;
        let finished = false;
        const pending: Promise<void>[] = [];
        const timer = setInterval(() => {
          // Before its first case the worker builds its corpus (seconds, more under load):
          // that is the harness's time, not a case's, and gets a bound of its own.
          const limit = started ? timeoutMs : timeoutMs * 4;
          if (finished || performance.now() - since < limit) return;
          finished = true;
          clearInterval(timer);
          w.terminate();
          report.hangs++;
          report.cases++;
          pending.push(
            fail({
              index: current,
              mutators: [],
              problems: [`no result within ${timeoutMs / 1000} s (hang)`],
            }),
          );
          Promise.all(pending).then(() => resolve(current + 1));
        }, 250);
        w.onerror = (e) => {
          e.preventDefault();
          if (finished) return;
          finished = true;
          clearInterval(timer);
          w.terminate();
          report.cases++;
          pending.push(
            fail({ index: current, mutators: [], problems: [`worker crashed: ${e.message}`] }),
          );
          Promise.all(pending).then(() => resolve(current + 1));
        };
        w.onmessage = (e) => {
          const m = e.data;
          if (m.ready) {
            since = performance.now();
            w.postMessage({ target, seed: o.seed, from, to, scratch, maxRss });
          } else if (m.start !== undefined) {
            current = m.start;
            started = true;
            since = performance.now();
          } else if (m.done !== undefined) {
            report.cases++;
            report.outcomes[m.outcome] = (report.outcomes[m.outcome] ?? 0) + 1;
            for (const n of new Set<string>(m.mutators)) {
              report.mutators[n] = (report.mutators[n] ?? 0) + 1;
            }
            report.peakRss = Math.max(report.peakRss, m.rss);
            if (m.problems.length > 0) {
              pending.push(fail({ index: m.done, mutators: m.mutators, problems: m.problems }));
            } else if (m.skipped.length > 0) report.skipped++;
            else report.passed++;
            for (const why of new Set<string>(m.skipped)) {
              report.skippedChecks[why] = (report.skippedChecks[why] ?? 0) + 1;
            }
          } else if (m.finished) {
            finished = true;
            clearInterval(timer);
            w.terminate();
            Promise.all(pending).then(() => resolve(to));
          }
        };
      });
      batch = resumeAt < to ? [resumeAt, to] : takeBatch();
      o.progress?.(report.cases);
    }
  };

  try {
    await Promise.all(Array.from({ length: Math.max(1, o.workers ?? 2) }, (_, i) => lane(i)));
  } finally {
    await Deno.remove(scratchDir, { recursive: true }).catch(() => {});
  }
  report.seconds = Math.round((performance.now() - started) / 100) / 10;
  report.vmHwm = vmHwm();
  report.failures.sort((a, b) => a.index - b.index);
  return report;
}

if (import.meta.main) {
  const f = parseArgs(Deno.args, {
    string: ["target", "seed", "cases", "seconds", "workers", "timeout", "max-rss-mib"],
    boolean: ["save", "json", "help"],
  });
  if (f.help) {
    console.log(
      "Usage: deno task fuzz [--target lsnap|qemu|all] [--seed N] [--cases N] [--seconds S] [--workers N] [--timeout S] [--max-rss-mib N] [--save] [--json]",
    );
    Deno.exit(0);
  }
  const targetArg = f.target ?? "lsnap";
  if (targetArg !== "all" && !FUZZ_TARGETS.includes(targetArg as FuzzTarget)) {
    console.error(`fuzz: Cannot use --target '${targetArg}': use lsnap, qemu or all`);
    Deno.exit(2);
  }
  const targets = targetArg === "all" ? FUZZ_TARGETS : [targetArg as FuzzTarget];
  const num = (v: string | undefined, d: number) => (v === undefined ? d : Number(v));
  const reports: FuzzReport[] = [];
  for (const target of targets) {
    reports.push(
      await fuzz({
        target,
        seed: num(f.seed, 1),
        cases: num(f.cases, 10_000),
        seconds: num(f.seconds, 0),
        workers: num(f.workers, 2),
        timeout: num(f.timeout, 30),
        maxRss: num(f["max-rss-mib"], 3072) * 1024 * 1024,
        saveDir: f.save ? new URL("../fixtures/regressions", import.meta.url).pathname : null,
        progress: (n) => console.error(`  ${target}: ${n} cases`),
      }),
    );
  }
  if (f.json) console.log(JSON.stringify(reports.length === 1 ? reports[0] : reports, null, 2));
  else {
    const mib = (n: number | null) => (n === null ? "?" : `${(n / 1024 ** 2).toFixed(0)} MiB`);
    for (const report of reports) {
      console.log(
        `${report.target}, seed ${report.seed}: ${report.cases} cases in ${report.seconds} s: ${report.passed} passed, ${report.failures.length} failed (${report.hangs} hangs), ${report.skipped} skipped; peak RSS ${
          mib(report.peakRss)
        } (VmHWM ${mib(report.vmHwm)})`,
      );
      if (report.skipped > 0) console.log("checks skipped:", JSON.stringify(report.skippedChecks));
      console.log("outcomes:", JSON.stringify(report.outcomes));
      for (const x of report.failures.slice(0, 50)) {
        console.log(`case ${x.index} [${x.mutators.join(" + ")}]:\n  ${x.problems.join("\n  ")}`);
      }
    }
  }
  Deno.exit(reports.every((r) => r.failures.length === 0) ? 0 : 1);
}
