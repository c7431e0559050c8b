/**
 * The copy buffer's memory, seen from the operating system (VmHWM and VmRSS of
 * /proc/self/status), not from the engine's own counters: a `cow` snapshot grows the process by
 * at most its buffer, the slots the writer faults in ahead of the guest and a constant, and with
 * page discarding (Linux, FFI allowed) gives the memory back when it ends.
 */
import { assert } from "@std/assert/mod.js";
import { LiveMachine } from "./live_machine.ts";
import { readProcessMemory } from "./metrics.ts";
import { canDiscardPages } from "./discard_pages.ts";
import { PAGE_SIZE } from "./page_state.ts";
import { PREFAULT_AHEAD } from "./writer_loop.ts";
import { memstressElf } from "../guests/memstress_config.ts";

const MIB = 1024 * 1024;
const RAM = 128 * MIB;
/** memstress stores at random over this much: a buffer that ignored its size would grow to it. */
const WORKING_SET = 96 * MIB;
/** The slots the writer faults in ahead of the guest. */
const AHEAD = PREFAULT_AHEAD * PAGE_SIZE;
/** Everything else a snapshot may add: the writer's batches and records, garbage not collected
 * yet. Measured at 4-6 MiB (2 MiB buffer, load 8-12); the bound leaves room for noise, and stays
 * far below what an unbounded buffer adds here (the working set, about 90 MiB). */
const CONSTANT = 16 * MIB;
const linux = Deno.build.os === "linux";

async function withMachine(run: (m: LiveMachine, dir: string) => Promise<void>): Promise<void> {
  const m = await LiveMachine.start({
    elf: memstressElf({ workingSetBytes: WORKING_SET, writesPerRound: 1 << 18, rounds: 0 }),
    ramSize: RAM,
    uartSink: () => {},
  });
  const dir = await Deno.makeTempDir();
  try {
    // Every page of the working set written (about 8 stores per page), then one snapshot, so
    // that the writer's one-time heap growth is behind us.
    while ((await m.status()).retired < (WORKING_SET / 4096) * 8 * 30) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await m.snapshot({ mode: "stop", path: `${dir}/warm.lsnap` });
    await run(m, dir);
  } finally {
    await m.quit();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name:
    "LiveMachine cow grows the process by at most its buffer, 2 MiB of slots ahead and a constant (OS figures)",
  ignore: !linux,
  fn: () =>
    withMachine(async (m, dir) => {
      for (const buffer of [4 * MIB]) {
        const r = await m.snapshot({ mode: "cow", cowBuffer: buffer, path: `${dir}/c.lsnap` });
        const growth = r.rssPeakBytes - r.rssBeforeBytes;
        assert(r.rssBeforeBytes > 0 && r.rssPeakBytes > 0, "no figures from /proc/self/status");
        assert(r.pagesViaBuffer > buffer / 4096, "the buffer never filled: nothing was bounded");
        assert(
          growth <= buffer + AHEAD + CONSTANT,
          `resident memory grew by ${(growth / MIB).toFixed(1)} MiB with a ${buffer / MIB} MiB ` +
            `buffer (allowed: buffer + ${AHEAD / MIB} + ${CONSTANT / MIB} MiB)`,
        );
      }
    }),
});

/** Snapshots the buffer test below may take to see one whose buffer grew past 32 MiB: a guest
 * starved of a core by other processes may copy few pages aside in one snapshot. */
const FILL_ATTEMPTS = 4;

Deno.test({
  name: "LiveMachine cow with buffer max gives the buffer's memory back when it ends (OS figures)",
  // Needs page discarding; elsewhere the memory returns only with garbage collection.
  ignore: !linux || !canDiscardPages(),
  fn: () =>
    withMachine(async (m, dir) => {
      // Every snapshot must give its memory back; at least one must have had a buffer big enough
      // for that to mean something (a starved guest may not fill it: then take another).
      const peaks: number[] = [];
      for (let i = 0; i < FILL_ATTEMPTS && !peaks.some((p) => p > 32 * MIB); i++) {
        const r = await m.snapshot({ mode: "cow", cowBuffer: "max", path: `${dir}/c.lsnap` });
        const after = readProcessMemory().rss;
        peaks.push(r.bufferPeakBytes);
        assert(
          after - r.rssBeforeBytes <= CONSTANT,
          `resident memory is ${((after - r.rssBeforeBytes) / MIB).toFixed(1)} MiB above where ` +
            `it was before snapshot ${i + 1}, whose buffer peaked at ${
              (r.bufferPeakBytes / MIB).toFixed(1)
            } MiB`,
        );
        // Given back without a collection on the guest thread (it would stop the guest).
        assert(r.guestGcMs === 0, `the guest collected garbage for ${r.guestGcMs} ms`);
      }
      assert(
        peaks.some((p) => p > 32 * MIB),
        `the buffer stayed small in ${FILL_ATTEMPTS} snapshots (peaks ${
          peaks.map((p) => (p / MIB).toFixed(1)).join(", ")
        } MiB): nothing to give back`,
      );
    }),
});
