/**
 * Live snapshots under load: memstress (stores to random words of its working set as fast as it
 * can) runs on the live machine, which takes a cow snapshot every `interval` instructions. Each
 * file is verified, its content digest compared with an uninterrupted run's state at that
 * instruction, and it is restored and run on for `interval / 2` more instructions, whose state
 * must again equal the uninterrupted run's. Scheduled snapshots the engine refuses (one still
 * being written) are counted; they must be refused with a message, never interleaved.
 *
 * Usage: deno run -A tests/reliability/under_load.ts [--snapshots N] [--interval N]
 *          [--ram-mib N] [--buffer BYTES|max] [--json]
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { Machine } from "../../emulator/machine.ts";
import { memstressElf } from "../../emulator/guests/memstress_config.ts";
import { LiveMachine } from "../../emulator/snapshot/live_machine.ts";
import { machineContentDigest } from "../../emulator/snapshot/machine_state.ts";
import type { SnapshotMetrics } from "../../emulator/snapshot/metrics.ts";
import { restoreSnapshot } from "../../tools/restore.ts";
import { verifySnapshot } from "../../tools/verify.ts";

/** Options of {@linkcode underLoad}. */
export interface LoadOptions {
  snapshots: number;
  interval: number;
  ramMiB: number;
  /** Copy-aside buffer: bytes or "max". */
  cowBuffer: number | "max";
}

/** Figures of a run. */
export interface LoadReport {
  snapshots: number;
  verified: number;
  /** Snapshots whose every check held (verified, content and restore equal). */
  passed: number;
  /** Snapshots with a problem. */
  failed: number;
  /**
   * Snapshots due whose checks were skipped: refused by the engine (one still being written),
   * so there was no file to check. Counted apart, not as passed.
   */
  skipped: number;
  /** Files whose content differs from the uninterrupted run at their instruction. */
  contentMismatches: number;
  /** Restored files whose state after running on differs from the uninterrupted run. */
  restoreMismatches: number;
  /** Scheduled snapshots refused (with their messages). */
  refused: string[];
  /** The guest's longest pause and the slowest snapshot, microseconds. */
  maxPauseUs: number;
  maxTotalMs: number;
  problems: string[];
  seconds: number;
}

/** Runs the trial in a fresh directory. */
export async function underLoad(o: LoadOptions): Promise<LoadReport> {
  const started = performance.now();
  const dir = await Deno.makeTempDir({ prefix: "livesnap-load-" });
  const ramSize = o.ramMiB << 20;
  const elf = memstressElf({
    workingSetBytes: (o.ramMiB >> 1) << 20,
    writesPerRound: 1 << 20,
    rounds: 0,
    seed: 7,
  });
  const report: LoadReport = {
    snapshots: 0,
    verified: 0,
    passed: 0,
    failed: 0,
    skipped: 0,
    contentMismatches: 0,
    restoreMismatches: 0,
    refused: [],
    maxPauseUs: 0,
    maxTotalMs: 0,
    problems: [],
    seconds: 0,
  };
  const metrics: SnapshotMetrics[] = [];
  try {
    const machine = await LiveMachine.start({
      elf,
      ramSize,
      uartSink: () => {},
      stopAt: o.interval * (o.snapshots + 1),
      every: {
        interval: o.interval,
        mode: "cow",
        cowBuffer: o.cowBuffer,
        path: (k) => `${dir}/s-${k}.lsnap`,
      },
      onScheduledSnapshot: (m) => metrics.push(m),
      onScheduledError: (e) => report.refused.push(e.message),
    });
    await machine.halted;
    await machine.quit();
    report.snapshots = metrics.length;
    const byInstruction = [...metrics].sort((a, b) => a.atInstruction - b.atInstruction);
    // The uninterrupted run, stepped to each instant and to each restore's end.
    const ref = Machine.fromElf(elf, { ramSize, uartSink: () => {} });
    const half = Math.floor(o.interval / 2);
    for (const m of byInstruction) {
      const p = m;
      const problemsBefore = report.problems.length;
      const settle = () => {
        if (report.problems.length > problemsBefore) report.failed++;
        else report.passed++;
      };
      ref.run(m.atInstruction - ref.hart.retired);
      const want = await machineContentDigest(ref);
      const v = await verifySnapshot((await Deno.open(p.path)).readable);
      if (!v.ok) {
        report.problems.push(`${p.path} does not verify: ${v.error?.message}`);
        settle();
        continue;
      }
      report.verified++;
      if (v.digests.content !== want || m.contentDigest !== want) {
        report.contentMismatches++;
        report.problems.push(
          `${p.path}: content differs from the uninterrupted run at ${m.atInstruction}`,
        );
      }
      ref.run(m.atInstruction + half - ref.hart.retired);
      const wantLater = await machineContentDigest(ref);
      const r = await restoreSnapshot({
        path: p.path,
        stopAt: m.atInstruction + half,
        sink: () => {},
      });
      if (await machineContentDigest(r.machine) !== wantLater) {
        report.restoreMismatches++;
        report.problems.push(
          `${p.path}: restored and run on, it differs from the uninterrupted run`,
        );
      }
      report.maxPauseUs = Math.max(report.maxPauseUs, m.pauseUs);
      report.maxTotalMs = Math.max(report.maxTotalMs, m.totalMs);
      await Deno.remove(p.path);
      settle();
    }
    report.skipped = report.refused.length;
    for (const msg of report.refused) {
      if (!/still being written|Cannot snapshot/.test(msg)) {
        report.problems.push(`unclear refusal: ${msg}`);
      }
    }
    if (report.snapshots + report.refused.length < o.snapshots) {
      report.problems.push(
        `${o.snapshots} snapshots were due, ${report.snapshots} written and ${report.refused.length} refused`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  report.seconds = Math.round((performance.now() - started) / 100) / 10;
  return report;
}

/** The summary line: snapshots checked, failed, and skipped (refused, so not checked). */
export function summarizeLoad(r: LoadReport): string {
  return `${r.snapshots + r.refused.length} snapshots: ${r.passed} passed, ${r.failed} failed, ` +
    `${r.skipped} skipped (refused while another was written); longest pause ${r.maxPauseUs} µs, ` +
    `slowest snapshot ${r.maxTotalMs} ms`;
}

if (import.meta.main) {
  const f = parseArgs(Deno.args, {
    string: ["snapshots", "interval", "ram-mib", "buffer"],
    boolean: ["json"],
  });
  const buffer = f.buffer ?? "0";
  const report = await underLoad({
    snapshots: Number(f.snapshots ?? 100),
    interval: Number(f.interval ?? 2_000_000),
    ramMiB: Number(f["ram-mib"] ?? 16),
    cowBuffer: buffer === "max" ? "max" : Number(buffer),
  });
  if (f.json) console.log(JSON.stringify(report, null, 2));
  else {
    console.log(summarizeLoad(report));
    for (const p of report.problems) console.log(`  ${p}`);
  }
  Deno.exit(report.problems.length === 0 ? 0 : 1);
}
