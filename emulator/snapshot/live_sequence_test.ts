/**
 * Many snapshots of one running machine, in every mode and buffer size, one after the other:
 * each moves RAM to a new page generation (page_state.ts) over what the previous one left (pages
 * precopy left armed, pages a failed snapshot never saved, copy-buffer chunks kept and their
 * pages discarded). Each file must hold exactly the state a direct run has at its instruction,
 * with no page twice, and the last one restored and run on must match an uninterrupted run.
 */
import { assert, assertEquals } from "@std/assert/mod.js";
import { Machine } from "../machine.ts";
import { LiveMachine, type SnapshotRequest } from "./live_machine.ts";
import type { SnapshotMetrics } from "./metrics.ts";
import { machineContentDigest } from "./machine_state.ts";
import { memstressElf } from "../guests/memstress_config.ts";
import { inspectSnapshot } from "../../tools/inspect.ts";

const RAM = 8 * 1024 * 1024;
const ELF = memstressElf({ workingSetBytes: 6 * 1024 * 1024, writesPerRound: 20_000, rounds: 0 });

async function directDigest(n: number): Promise<string> {
  const m = Machine.fromElf(ELF, { ramSize: RAM, uartSink: () => {} });
  m.run(n);
  assertEquals(m.hart.retired, n);
  return await machineContentDigest(m);
}

const SEQUENCE: (Omit<SnapshotRequest, "path"> | "fail")[] = [
  { mode: "cow", cowBuffer: "max" },
  { mode: "precopy" },
  { mode: "cow", cowBuffer: 0 },
  "fail",
  { mode: "cow", cowBuffer: 64 * 1024 },
  { mode: "stop" },
  { mode: "precopy" },
  { mode: "cow", cowBuffer: "max" },
  { mode: "cow", cowBuffer: "max" },
];

Deno.test("LiveMachine snapshots one after another, in every mode, each hold their instant; the last restores to the uninterrupted run", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Scheduled, so each is taken at an exact instruction (a snapshot waits for the one before
    // it to be written) and the direct runs to compare with stay short.
    const got: (SnapshotMetrics | Error)[] = [];
    // After the failing one the guest runs longer, with no snapshot running: it stores into
    // pages that generation never saved, which its store hook opens as it meets them.
    const at = (i: number) => (i + 1) * 1_500_000 + (i > SEQUENCE.indexOf("fail") ? 4_000_000 : 0);
    const schedule = SEQUENCE.map((req, i) => ({
      ...(req === "fail" ? { mode: "cow" as const, cowBuffer: "max" as const } : req),
      at: at(i),
      // The instant happens, the writer cannot create this file: the generation is abandoned
      // with most pages unsaved.
      path: req === "fail" ? `${dir}/no/such/dir.lsnap` : `${dir}/s${i}.lsnap`,
    }));
    const stopAt = at(SEQUENCE.length);
    const lm = await LiveMachine.start({
      elf: ELF,
      ramSize: RAM,
      schedule,
      stopAt,
      onScheduledSnapshot: (m) => got.push(m),
      onScheduledError: (e) => got.push(e),
    });
    // A page a snapshot never saves would keep its writer waiting: report it within a bound.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hung = new Promise<"hung">((r) => timer = setTimeout(() => r("hung"), 180_000));
    const done = await Promise.race([lm.halted, hung]);
    clearTimeout(timer);
    if (done === "hung") {
      throw new Error(`only ${got.length} of ${SEQUENCE.length} snapshots done after 180 s`);
    }
    await lm.quit();
    assertEquals(got.length, SEQUENCE.length, "a snapshot never completed");
    for (const [i, req] of SEQUENCE.entries()) {
      const what = `snapshot ${i} (${req === "fail" ? "failing" : req.mode})`;
      const path = schedule[i].path;
      const m = got.find((g) =>
        g instanceof Error ? g.message.includes(`'${path}'`) : g.path === path
      );
      if (req === "fail") {
        assert(m instanceof Error, `${what}: it did not fail`);
        continue;
      }
      if (m === undefined) throw new Error(`${what}: no metrics`);
      if (m instanceof Error) throw new Error(`${what}: ${m.message}`);
      if (req.mode !== "precopy") assertEquals(m.atInstruction, schedule[i].at, what);
      assertEquals(m.contentDigest, await directDigest(m.atInstruction), `${what}: wrong contents`);
      const info = await inspectSnapshot((await Deno.open(m.path)).readable);
      if (req.mode !== "precopy") {
        assertEquals(info.pages.duplicates, 0, `${what}: a page written twice`);
        assertEquals(info.pages.present, m.pagesTotal - m.pagesZero, `${what}: a page missing`);
      }
      if (req.mode === "cow") {
        assertEquals(m.pagesViaBuffer + m.pagesViaSweep, m.pagesTotal, what);
        assert(m.guestInstructionsDuring > 0, `${what}: the guest did not run meanwhile`);
      }
    }
    const last = got.at(-1) as SnapshotMetrics;
    const end = last.atInstruction + 1_000_000;
    const restored = await LiveMachine.start({ restorePath: last.path, stopAt: end });
    const halt = await restored.halted;
    assertEquals(halt.retired, end);
    const digest = await restored.digest();
    await restored.quit();
    assertEquals(digest, await directDigest(end), "restored and run on, the state differs");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
