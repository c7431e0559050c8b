/**
 * `deno task demo`: a live snapshot, for real. Boots the bundled `memstress` guest (it rewrites an
 * 8 MiB working set as fast as it can), takes a `cow` snapshot while it runs and shows the
 * metrics, inspects and verifies the file, restores it into a fresh machine and shows the
 * restored guest carrying on exactly where the snapshot was taken: the same output, the same
 * machine state. Then it damages copies of the file and shows verify and restore refusing them.
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

const RAM = 64 * 1024 * 1024;
const SNAPSHOT_AT = 12_000_000;
const STOP_AT = 60_000_000;
const ELF = memstressElf({ workingSetBytes: 8 * 1024 * 1024, writesPerRound: 40_000, rounds: 0 });

const decoder = new TextDecoder();
const lines = (s: string) => s.trimEnd().split("\n");
const guest = (s: string) => `    guest │ ${s}`;
const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

function showMetrics(m: SnapshotMetrics): void {
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
  for (const [k, v] of rows) console.log(`    ${k.padEnd(13)} ${v}`);
}

async function verifyFile(label: string, path: string): Promise<void> {
  const r = await verifySnapshot((await Deno.open(path)).readable);
  console.log(
    `    ${label.padEnd(18)} ${r.ok ? "OK" : `refused: ${r.error?.kind}: ${r.error?.message}`}`,
  );
}

const dir = await Deno.makeTempDir({ prefix: "livesnap-demo-" });
try {
  const path = `${dir}/memstress.lsnap`;
  console.log(
    `1. Boot memstress (${mib(RAM)} of RAM) on its own thread; at instruction ${
      SNAPSHOT_AT.toLocaleString("en")
    } take a live cow snapshot\n   while it keeps running, and let it run on to ${
      STOP_AT.toLocaleString("en")
    }.\n`,
  );
  let original = "";
  let metrics: SnapshotMetrics | null = null;
  const machine = await LiveMachine.start({
    elf: ELF,
    ramSize: RAM,
    uartSink: (b) => original += decoder.decode(b),
    schedule: [{ at: SNAPSHOT_AT, mode: "cow", cowBuffer: 16 * 1024 * 1024, path }],
    stopAt: STOP_AT,
    onScheduledSnapshot: (m) => metrics = m,
  });
  await machine.halted;
  const originalDigest = await machine.digest();
  await machine.quit();
  if (metrics === null) throw new Error("Cannot run the demo: the snapshot did not complete");
  const m: SnapshotMetrics = metrics;
  for (const l of lines(original).slice(0, 3)) console.log(guest(l));
  console.log(guest("…"));
  console.log("\n   The snapshot's metrics:");
  showMetrics(m);

  console.log("\n2. Inspect and verify the file.\n");
  const info = await inspectSnapshot((await Deno.open(path)).readable);
  console.log(
    `    ${info.pages.present} pages present in ${info.pages.records} records (the pages the guest copied aside come first);`,
  );
  console.log(`    devices ${info.devices.map((d) => `${d.id} v${d.version}`).join(", ")}`);
  console.log(`    content digest ${info.digests.content}`);
  await verifyFile("verify:", path);
  let atN = "";
  const direct = runGuest({ elf: ELF, ramSize: RAM, stopAt: SNAPSHOT_AT, sink: () => {} });
  atN = await machineDigest(direct.machine);
  console.log(
    `    a machine run straight to instruction ${
      SNAPSHOT_AT.toLocaleString("en")
    } has the same digest: ${atN === info.digests.content}`,
  );

  console.log(
    `\n3. Restore the file in a fresh machine and run it to ${STOP_AT.toLocaleString("en")}.\n`,
  );
  let restored = "";
  const again = await LiveMachine.start({
    restorePath: path,
    uartSink: (b) => restored += decoder.decode(b),
    stopAt: STOP_AT,
  });
  await again.halted;
  const restoredDigest = await again.digest();
  await again.quit();
  const before = original.slice(0, original.length - restored.length);
  for (const l of lines(before).slice(-2)) console.log(guest(l));
  console.log("    ──────┼─ snapshot ─ the lines below come from the restored machine");
  for (const l of lines(restored).slice(0, 3)) console.log(guest(l));
  console.log(guest("…"));
  console.log(
    `\n    restored output = the original's output after the snapshot: ${
      original.endsWith(restored)
    }`,
  );
  console.log(
    `    machine state at ${STOP_AT.toLocaleString("en")}, restored vs original: ${
      restoredDigest === originalDigest ? "identical" : "DIFFERENT"
    } (${restoredDigest.slice(0, 16)}…)`,
  );

  console.log("\n4. Damaged copies are refused, with the record and byte offset.\n");
  const bytes = await Deno.readFile(path);
  const flipped = bytes.slice();
  flipped[Math.floor(bytes.length / 2)] ^= 0x01;
  await Deno.writeFile(`${dir}/flipped.lsnap`, flipped);
  await verifyFile("one bit flipped:", `${dir}/flipped.lsnap`);
  await Deno.writeFile(`${dir}/cut.lsnap`, bytes.subarray(0, Math.floor(bytes.length * 0.7)));
  await verifyFile("cut at 70%:", `${dir}/cut.lsnap`);
  try {
    await LiveMachine.start({ restorePath: `${dir}/cut.lsnap` });
    console.log("    restore of the cut copy: started (unexpected)");
  } catch (e) {
    console.log(`    restore, cut copy: refused before running: ${(e as Error).message}`);
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
