/**
 * `deno task demo`: a live snapshot, for real. Boots the bundled `memstress` guest (it rewrites an
 * 8 MiB working set as fast as it can), takes a `cow` snapshot while it runs and shows the
 * metrics, inspects and verifies the file, restores it into a fresh machine and shows the
 * restored guest carrying on exactly where the snapshot was taken: the same output, the same
 * machine state. Then it damages copies of the file and shows verify and restore refusing them.
 *
 * Each claim it shows is also checked: the demo ends with "demo: all N checks passed" and exit
 * status 0, or names every check that failed and exits with status 1.
 *
 * @module
 */

import { LiveMachine } from "../emulator/snapshot/live_machine.ts";
import type { SnapshotMetrics } from "../emulator/snapshot/metrics.ts";
import { memstressElf } from "../emulator/guests/memstress_config.ts";
import { runGuest } from "./run.ts";
import { machineContentDigest as machineDigest } from "../emulator/snapshot/machine_state.ts";
import { inspectSnapshot } from "./inspect.ts";
import { verifySnapshot } from "./verify.ts";

/** The demo's sizes: the task uses the defaults; a test runs a smaller one. */
export interface DemoOptions {
  /** Guest RAM (default 64 MiB). */
  ram?: number;
  /** The snapshot's instruction (default 12 000 000). */
  snapshotAt?: number;
  /** Where the original and the restored guest stop (default 60 000 000). */
  stopAt?: number;
  /** memstress's working set (default 8 MiB). */
  workingSet?: number;
  /** Where the demo's lines go (default console.log). */
  print?: (line: string) => void;
}

const decoder = new TextDecoder();
const lines = (s: string) => s.trimEnd().split("\n");
const guest = (s: string) => `    guest │ ${s}`;
const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

function metricLines(m: SnapshotMetrics): string[] {
  const rows: [string, string][] = [
    ["mode", `${m.mode}, buffer ${mib(m.cowBufferBytes)}`],
    ["taken at", `instruction ${m.atInstruction.toLocaleString("en")}`],
    [
      "guest pause",
      `${m.pauseUs} µs at most without guest instructions (the instant: ${m.pauseCauses.instantUs} µs)`,
    ],
    ["total", `${m.totalMs.toFixed(1)} ms to a complete file of ${m.bytesWritten} bytes`],
    [
      "meanwhile",
      `the guest retired ${m.guestInstructionsDuring.toLocaleString("en")} instructions`,
    ],
    [
      "pages",
      `${m.pagesViaBuffer} copied aside by the guest first, ${m.pagesViaSweep} by the sweep, ${m.pagesZero} zero`,
    ],
    ["buffer peak", `${mib(m.bufferPeakBytes)} (never above its ${mib(m.cowBufferBytes)})`],
    ["guest stalls", `${(m.guestStallUs / 1000).toFixed(1)} ms waiting for a slot or a page`],
  ];
  return rows.map(([k, v]) => `    ${k.padEnd(13)} ${v}`);
}

async function verifyFile(path: string) {
  return await verifySnapshot((await Deno.open(path)).readable);
}

const verdict = (r: Awaited<ReturnType<typeof verifyFile>>) =>
  r.ok ? "OK" : `refused: ${r.error?.kind}: ${r.error?.message}`;

/**
 * Runs the demo, printing as it goes, and returns how many of its claims it checked and the
 * ones that failed (none when the snapshot, the restore and the refusals did what it says).
 */
export async function demo(o: DemoOptions = {}): Promise<{ checks: number; failed: string[] }> {
  const ram = o.ram ?? 64 * 1024 * 1024;
  const snapshotAt = o.snapshotAt ?? 12_000_000;
  const stopAt = o.stopAt ?? 60_000_000;
  const elf = memstressElf({
    workingSetBytes: o.workingSet ?? 8 * 1024 * 1024,
    writesPerRound: 40_000,
    rounds: 0,
  });
  const log = o.print ?? ((line: string) => console.log(line));
  let checks = 0;
  const failed: string[] = [];
  /** One claim of the demo: counted, and kept when it does not hold. */
  const check = (ok: boolean, claim: string): boolean => {
    checks++;
    if (!ok) failed.push(claim);
    return ok;
  };
  const n = (x: number) => x.toLocaleString("en");

  const dir = await Deno.makeTempDir({ prefix: "livesnap-demo-" });
  try {
    const path = `${dir}/memstress.lsnap`;
    log(
      `1. Boot memstress (${mib(ram)} of RAM) on its own thread; at instruction ${
        n(snapshotAt)
      } take a live cow snapshot\n   while it keeps running, and let it run on to ${n(stopAt)}.\n`,
    );
    let original = "";
    let metrics: SnapshotMetrics | null = null;
    const machine = await LiveMachine.start({
      elf,
      ramSize: ram,
      uartSink: (b) => original += decoder.decode(b),
      schedule: [{ at: snapshotAt, mode: "cow", cowBuffer: 16 * 1024 * 1024, path }],
      stopAt,
      onScheduledSnapshot: (m) => metrics = m,
    });
    await machine.halted;
    const originalDigest = await machine.digest();
    await machine.quit();
    if (!check(metrics !== null, "the snapshot completed")) return { checks, failed };
    const m: SnapshotMetrics = metrics!;
    for (const l of lines(original).slice(0, 3)) log(guest(l));
    log(guest("…"));
    log("\n   The snapshot's metrics:");
    for (const l of metricLines(m)) log(l);

    log("\n2. Inspect and verify the file.\n");
    const info = await inspectSnapshot((await Deno.open(path)).readable);
    log(
      `    ${info.pages.present} pages present in ${info.pages.records} records (the pages the guest copied aside come first);`,
    );
    log(`    devices ${info.devices.map((d) => `${d.id} v${d.version}`).join(", ")}`);
    log(`    content digest ${info.digests.content}`);
    const v = await verifyFile(path);
    check(v.ok, "the snapshot verifies");
    log(`    ${"verify:".padEnd(18)} ${verdict(v)}`);
    const direct = runGuest({ elf, ramSize: ram, stopAt: snapshotAt, sink: () => {} });
    const atN = await machineDigest(direct.machine);
    const same = check(
      atN === info.digests.content && atN === m.contentDigest,
      `the snapshot holds the state of a machine run straight to instruction ${n(snapshotAt)}`,
    );
    log(`    a machine run straight to instruction ${n(snapshotAt)} has the same digest: ${same}`);

    log(`\n3. Restore the file in a fresh machine and run it to ${n(stopAt)}.\n`);
    let restored = "";
    const again = await LiveMachine.start({
      restorePath: path,
      uartSink: (b) => restored += decoder.decode(b),
      stopAt,
    });
    await again.halted;
    const restoredDigest = await again.digest();
    await again.quit();
    const before = original.slice(0, original.length - restored.length);
    for (const l of lines(before).slice(-2)) log(guest(l));
    log("    ──────┼─ snapshot ─ the lines below come from the restored machine");
    for (const l of lines(restored).slice(0, 3)) log(guest(l));
    log(guest("…"));
    const output = check(
      restored.length > 0 && original.endsWith(restored),
      "the restored guest prints what the original printed after the snapshot",
    );
    log(`\n    restored output = the original's output after the snapshot: ${output}`);
    const state = check(
      restoredDigest === originalDigest,
      `the restored machine's state at ${n(stopAt)} is the original's`,
    );
    log(
      `    machine state at ${n(stopAt)}, restored vs original: ${
        state ? "identical" : "DIFFERENT"
      } (${restoredDigest.slice(0, 16)}…)`,
    );

    log("\n4. Damaged copies are refused, with the record and byte offset.\n");
    const bytes = await Deno.readFile(path);
    const flipped = bytes.slice();
    flipped[Math.floor(bytes.length / 2)] ^= 0x01;
    await Deno.writeFile(`${dir}/flipped.lsnap`, flipped);
    const vf = await verifyFile(`${dir}/flipped.lsnap`);
    check(!vf.ok, "a copy with one bit flipped is refused");
    log(`    ${"one bit flipped:".padEnd(18)} ${verdict(vf)}`);
    await Deno.writeFile(`${dir}/cut.lsnap`, bytes.subarray(0, Math.floor(bytes.length * 0.7)));
    const vc = await verifyFile(`${dir}/cut.lsnap`);
    check(!vc.ok, "a copy cut at 70% is refused");
    log(`    ${"cut at 70%:".padEnd(18)} ${verdict(vc)}`);
    try {
      const started = await LiveMachine.start({ restorePath: `${dir}/cut.lsnap` });
      await started.quit();
      check(false, "restore refuses the cut copy");
      log("    restore of the cut copy: started (unexpected)");
    } catch (e) {
      check(true, "restore refuses the cut copy");
      log(`    restore, cut copy: refused before running: ${(e as Error).message}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return { checks, failed };
}

if (import.meta.main) {
  const { checks, failed } = await demo();
  if (failed.length === 0) {
    console.log(`\ndemo: all ${checks} checks passed`);
  } else {
    console.error(`\ndemo: ${failed.length} of ${checks} checks FAILED:`);
    for (const f of failed) console.error(`  - ${f}`);
    Deno.exit(1);
  }
}
