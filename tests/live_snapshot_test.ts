/**
 * The live snapshot engine on the real machine: for every mode and copy-buffer size, a snapshot
 * holds exactly the state a direct run has at that instruction, and restoring it then running on
 * gives the uninterrupted run's output and state, bit for bit.
 */
import { assert, assertEquals, assertRejects } from "@std/assert/mod.js";
import { Machine } from "../emulator/machine.ts";
import { LiveMachine, type SnapshotRequest } from "../emulator/snapshot/live_machine.ts";
import { machineContentDigest } from "../emulator/snapshot/machine_state.ts";
import type { SnapshotMetrics } from "../emulator/snapshot/metrics.ts";
import { memstressElf, stormElf } from "./_guests.ts";
import { inspectSnapshot } from "../tools/inspect.ts";

const RAM = 8 * 1024 * 1024;
const MEMSTRESS = memstressElf({
  workingSetBytes: 1024 * 1024,
  writesPerRound: 20_000,
  rounds: 0,
});

function defined<T>(value: T | undefined, message: string): T {
  if (value === undefined) throw new Error(message);
  return value;
}

/** Runs a fresh machine directly (no threads, no snapshot) to `n` instructions. */
async function directRun(elf: Uint8Array, n: number) {
  let out = "";
  const decoder = new TextDecoder();
  const m = Machine.fromElf(elf, { ramSize: RAM, uartSink: (b) => out += decoder.decode(b) });
  const exit = m.run(n);
  return { out, digest: await machineContentDigest(m), retired: m.hart.retired, exit };
}

/** Starts a live machine, takes one scheduled snapshot at `at`, runs to `stopAt`. */
async function liveRun(
  elf: Uint8Array,
  at: number,
  stopAt: number,
  req: SnapshotRequest,
): Promise<{ metrics: SnapshotMetrics; out: string }> {
  let out = "";
  const decoder = new TextDecoder();
  const got: { metrics?: SnapshotMetrics; error?: Error } = {};
  const lm = await LiveMachine.start({
    elf,
    ramSize: RAM,
    uartSink: (b) => out += decoder.decode(b),
    schedule: [{ at, ...req }],
    stopAt,
    onScheduledSnapshot: (m) => got.metrics = m,
    onScheduledError: (e) => got.error = e,
  });
  await lm.halted;
  await lm.quit();
  if (got.error !== undefined) throw got.error;
  return { metrics: defined(got.metrics, "the scheduled snapshot never completed"), out };
}

/** Restores a file and runs it to `stopAt`; its output and final digest. */
async function restoreRun(path: string, stopAt: number) {
  let out = "";
  const decoder = new TextDecoder();
  const lm = await LiveMachine.start({
    restorePath: path,
    uartSink: (b) => out += decoder.decode(b),
    stopAt,
  });
  const halt = await lm.halted;
  const digest = await lm.digest();
  await lm.quit();
  return { out, digest, halt, restoredDigest: lm.restoredDigest };
}

const N = 1_500_000;
const M = 1_000_000;

const CASES: { name: string; req: Omit<SnapshotRequest, "path"> }[] = [
  { name: "stop", req: { mode: "stop" } },
  { name: "cow, buffer 0", req: { mode: "cow", cowBuffer: 0 } },
  { name: "cow, buffer 64 KiB", req: { mode: "cow", cowBuffer: 64 * 1024 } },
  { name: "cow, buffer max", req: { mode: "cow", cowBuffer: "max" } },
  { name: "precopy", req: { mode: "precopy" } },
];

for (const c of CASES) {
  Deno.test(`LiveMachine ${c.name} on memstress: the file holds the state at its instant; restore + M equals the uninterrupted run`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const path = `${dir}/snap.lsnap`;
      const live = await liveRun(MEMSTRESS, N, N + 2 * M, { ...c.req, path });
      const m = live.metrics;
      // cow and stop hold the instant they were requested; precopy its final pause.
      if (c.req.mode !== "precopy") assertEquals(m.atInstruction, N);
      else assert(m.atInstruction >= N);
      const atSnapshot = await directRun(MEMSTRESS, m.atInstruction);
      assertEquals(m.contentDigest, atSnapshot.digest, "snapshot digest ≠ direct run's digest");

      assert(m.bufferPeakBytes <= m.cowBufferBytes, "the buffer held more than its size");
      assertEquals(m.pagesTotal, RAM / 4096);
      if (c.req.mode === "cow") {
        assertEquals(m.pagesViaBuffer + m.pagesViaSweep, m.pagesTotal);
        assert(m.guestInstructionsDuring > 0, "the guest did not run during a cow snapshot");
        if (c.req.cowBuffer === 0) assertEquals(m.pagesViaBuffer, 0);
        else {
          assert(m.pagesViaBuffer > 0, "memstress stored during the snapshot, no page was copied");
          // With slots the guest waits for a freed slot, never for its page alone.
          assertEquals(m.pagesOnRequest, 0);
        }
      }
      if (c.req.mode === "stop") assertEquals(m.guestInstructionsDuring, 0);
      // Every page saved exactly once: cow and stop files hold no page twice, and every non-zero
      // page (the digest above says the contents are right) once.
      const info = await inspectSnapshot((await Deno.open(path)).readable);
      if (c.req.mode !== "precopy") {
        assertEquals(info.pages.duplicates, 0, "a page was written twice");
        assertEquals(info.pages.present, m.pagesTotal - m.pagesZero);
      } else {
        assert(info.pages.duplicates <= m.pagesResent, "more copies than pages resent");
      }

      const end = m.atInstruction + M;
      const restored = await restoreRun(path, end);
      assertEquals(restored.restoredDigest, m.contentDigest);
      assertEquals(restored.halt.retired, end);
      const uninterrupted = await directRun(MEMSTRESS, end);
      assertEquals(atSnapshot.out + restored.out, uninterrupted.out, "restored output differs");
      assertEquals(restored.digest, uninterrupted.digest, "restored state differs");
      assert(restored.out.length > 0, "memstress printed nothing after the restore");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("LiveMachine cow with buffer 0 lets a guest that stores on almost every instruction finish", async () => {
  const elf = stormElf({ spanBytes: 27 * 4096 * 16, blocks: 1500 });
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/storm.lsnap`;
    const got: { metrics?: SnapshotMetrics } = {};
    const lm = await LiveMachine.start({
      elf,
      ramSize: RAM,
      schedule: [{ at: 300_000, mode: "cow", cowBuffer: 0, path }],
      onScheduledSnapshot: (m) => got.metrics = m,
    });
    const halt = await lm.halted;
    const digest = await lm.digest();
    await lm.quit();
    assertEquals(halt.halt, { reason: "exit", code: 0, device: "sifive_test" });
    const direct = await directRun(elf, 10_000_000);
    assertEquals(halt.retired, direct.retired);
    assertEquals(digest, direct.digest);
    const m = defined(got.metrics, "the snapshot never completed");
    assertEquals(m.contentDigest, (await directRun(elf, 300_000)).digest);
    assert(m.pagesOnRequest > 0, "the guest never waited on a page");
    assert(m.guestStallUs > 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LiveMachine.start() refuses a snapshot file that is not there, before running", async () => {
  await assertRejects(
    () => LiveMachine.start({ restorePath: "/nonexistent/x.lsnap" }),
    Error,
    "No such file",
  );
});

Deno.test("LiveMachine.snapshot() rejects when its file cannot be written, and the guest runs on", async () => {
  const elf = Deno.readFileSync(new URL("../emulator/guests/build/counter.elf", import.meta.url));
  const lm = await LiveMachine.start({ elf, ramSize: RAM });
  try {
    for (const cowBuffer of [0, "max"] as const) {
      const e = await assertRejects(() =>
        lm.snapshot({ mode: "cow", cowBuffer, path: "/nonexistent/dir/x.lsnap" })
      );
      assert(
        (e as Error).message.startsWith("Cannot write snapshot '/nonexistent/dir/x.lsnap': "),
        (e as Error).message,
      );
    }
    const before = (await lm.status()).retired;
    const dir = await Deno.makeTempDir();
    try {
      const m = await lm.snapshot({ mode: "cow", cowBuffer: 0, path: `${dir}/ok.lsnap` });
      assert(m.atInstruction >= before, "the guest did not run on after the failures");
      assertEquals(m.contentDigest.length, 64);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  } finally {
    await lm.quit();
  }
});
