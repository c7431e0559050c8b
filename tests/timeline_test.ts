/**
 * The live engine's timeline (`SnapshotMetrics.timeline`, what `livesnap report --metrics`
 * draws) agrees with the snapshot's own totals: every page saved, the guest's stalls, the pause,
 * precopy's passes and their pages.
 */
import { assert, assertEquals } from "@std/assert/mod.js";
import { LiveMachine, type SnapshotRequest } from "../emulator/snapshot/live_machine.ts";
import { MAX_TIMELINE_SAMPLES, type SnapshotMetrics } from "../emulator/snapshot/metrics.ts";
import { memstressElf } from "./_guests.ts";

const RAM = 8 * 1024 * 1024;
const PAGES = RAM / 4096;
const MEMSTRESS = memstressElf({ workingSetBytes: 1024 * 1024, writesPerRound: 20_000, rounds: 0 });

async function snapshot(req: Omit<SnapshotRequest, "path">): Promise<SnapshotMetrics> {
  const dir = await Deno.makeTempDir();
  const got: { metrics?: SnapshotMetrics; error?: Error } = {};
  const lm = await LiveMachine.start({
    elf: MEMSTRESS,
    ramSize: RAM,
    uartSink: () => {},
    schedule: [{ at: 1_500_000, ...req, path: `${dir}/s.lsnap` }],
    stopAt: 12_000_000,
    onScheduledSnapshot: (m) => got.metrics = m,
    onScheduledError: (e) => got.error = e,
  });
  try {
    await lm.halted;
  } finally {
    await lm.quit();
    await Deno.remove(dir, { recursive: true });
  }
  if (got.error !== undefined) throw got.error;
  if (got.metrics === undefined) throw new Error("the snapshot never completed");
  return got.metrics;
}

function checkSamples(m: SnapshotMetrics): NonNullable<SnapshotMetrics["timeline"]> {
  const t = m.timeline;
  if (t === undefined) throw new Error("no timeline in the metrics");
  const n = t.ms.length;
  assert(n >= 1 && n <= MAX_TIMELINE_SAMPLES, `${n} samples`);
  for (const col of [t.pagesWritten, t.bufferBytes, t.guestStallUs]) assertEquals(col.length, n);
  for (let i = 1; i < n; i++) {
    assert(t.ms[i] > t.ms[i - 1], `sample times increase (${t.ms[i - 1]}, ${t.ms[i]})`);
    assert(t.pagesWritten[i] >= t.pagesWritten[i - 1]);
    assert(t.guestStallUs[i] >= t.guestStallUs[i - 1]);
  }
  assert(t.ms[n - 1] <= m.totalMs + 1, `the last sample (${t.ms[n - 1]}) is within the snapshot`);
  return t;
}

Deno.test("cow timeline: every page saved once, the guest's stalls and the instant as the metrics say", async () => {
  const m = await snapshot({ mode: "cow", cowBuffer: 64 * 1024 });
  const t = checkSamples(m);
  assertEquals(t.pagesWritten.at(-1), PAGES, "every page saved (written or left out as zero)");
  // Each wait is added to the shared counter rounded to a microsecond.
  const stalls = t.guestStallUs.at(-1)!;
  assert(
    Math.abs(stalls - m.guestStallUs) <= 0.01 * m.guestStallUs + 50,
    `${stalls} µs against ${m.guestStallUs}`,
  );
  assert(Math.max(...t.bufferBytes) <= m.cowBufferBytes);
  assertEquals(t.pauses.length, 1);
  assertEquals(t.pauses[0].reason, "instant");
  assertEquals(Math.round(t.pauses[0].endMs * 1000), m.pauseUs);
  assertEquals(t.passes, []);
});

Deno.test("precopy timeline: a pass per pass, the pages each sent, and the final pause", async () => {
  const m = await snapshot({ mode: "precopy" });
  const t = checkSamples(m);
  assertEquals(t.passes.length, m.precopyPasses, "pass 0 and the passes before the final pause");
  assertEquals(t.passes[0].pass, 0);
  assertEquals(t.passes[0].pagesSent, PAGES);
  const resentInPasses = t.passes.slice(1).reduce((n, p) => n + p.pagesSent, 0);
  assertEquals(resentInPasses + m.pagesInFinalPause, m.pagesResent);
  assertEquals(t.pagesWritten.at(-1), PAGES + m.pagesResent);
  for (let i = 1; i < t.passes.length; i++) {
    // What was dirty when a pass ended is sent by the next, with what the guest dirtied since.
    assert(t.passes[i].pagesSent >= t.passes[i - 1].dirtyPages, `pass ${i}`);
    assert(t.passes[i].startMs >= t.passes[i - 1].endMs);
  }
  const final = t.pauses.find((p) => p.reason === "final");
  if (final === undefined) throw new Error("the final pause is not on the timeline");
  const pausedUs = (final.endMs - final.startMs) * 1000;
  assert(pausedUs >= m.pauseUs - 2, `${pausedUs} µs against ${m.pauseUs} µs`);
});
