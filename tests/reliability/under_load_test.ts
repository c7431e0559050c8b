// Live snapshots of a guest storing as fast as it can: each verifies and holds exactly the
// uninterrupted run's state, and restores to it. The long run (100 snapshots) is
// `deno task reliability:load`.
import { assert, assertEquals } from "@std/assert/mod.js";
import { summarizeLoad, underLoad } from "./under_load.ts";

Deno.test("underLoad() finds every live snapshot of memstress equal to the uninterrupted run", async () => {
  const r = await underLoad({ snapshots: 4, interval: 1_000_000, ramMiB: 8, cowBuffer: 0 });
  assertEquals(r.problems, []);
  // A scheduled snapshot waits for the one before it: none is refused, so none goes unchecked.
  // (A refused one would count as skipped, never as passed.)
  assertEquals([r.skipped, r.refused], [0, []], summarizeLoad(r));
  assert(r.passed >= 4, summarizeLoad(r));
  assertEquals([r.verified, r.failed], [r.passed, 0]);
  assertEquals([r.contentMismatches, r.restoreMismatches], [0, 0]);
});
