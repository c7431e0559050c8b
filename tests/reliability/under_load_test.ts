// Live snapshots of a guest storing as fast as it can: each verifies and holds exactly the
// uninterrupted run's state, and restores to it. The long run (100 snapshots) is
// `deno task reliability:load`.
import { assertEquals } from "@std/assert/mod.js";
import { underLoad } from "./under_load.ts";

Deno.test("underLoad() finds every live snapshot of memstress equal to the uninterrupted run", async () => {
  const r = await underLoad({ snapshots: 4, interval: 1_000_000, ramMiB: 8, cowBuffer: 0 });
  assertEquals(r.problems, []);
  assertEquals(r.verified, r.snapshots);
  assertEquals(r.snapshots + r.refused.length >= 4, true);
  assertEquals([r.contentMismatches, r.restoreMismatches], [0, 0]);
});
