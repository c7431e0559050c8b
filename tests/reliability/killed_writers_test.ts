// Writers killed with SIGKILL: the destination is never partial, temporaries read as incomplete
// and the next run removes them. The long run (100 trials) is `deno task reliability:kill`.
import { assert, assertEquals, assertStringIncludes } from "@std/assert/mod.js";
import { killedWriters, spawnWriter, summarizeKills, temps, verifyPath } from "./killed_writers.ts";
import { trialDigest } from "./_snapshot_content.ts";

Deno.test("a writer killed mid-file leaves the old destination and an incomplete temporary that the next run removes", async () => {
  const dir = await Deno.makeTempDir();
  const dest = `${dir}/vm.lsnap`;
  try {
    assertEquals((await spawnWriter(dest, 256, 1).output()).code, 0);
    const child = spawnWriter(dest, 1024, 2, 512);
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    assertStringIncludes((await reader.read()).value ?? "", "holding");
    child.kill("SIGKILL");
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    await child.status;
    await child.stderr.cancel().catch(() => {});
    const left = temps(dir, "vm.lsnap");
    assertEquals(left.length, 1);
    const t = await verifyPath(`${dir}/${left[0]}`);
    assertEquals([t.ok, t.complete, t.error?.kind], [false, false, "TruncatedError"]);
    const d = await verifyPath(dest);
    assertEquals([d.ok, d.digests.content], [true, await trialDigest(1, 256)]);
    assertEquals((await spawnWriter(dest, 256, 3).output()).code, 0);
    assertEquals(temps(dir, "vm.lsnap"), []);
    assertEquals((await verifyPath(dest)).digests.content, await trialDigest(3, 256));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("killedWriters() finds no partial destination and no temporary after the next run", async () => {
  const r = await killedWriters({ trials: 6, pages: 1024, seed: 5, atLeastWhileWriting: 2 });
  assertEquals(r.problems, []);
  assert(r.trials >= 6, `${r.trials} trials`);
  // Trials whose kill did not land mid-write checked less: counted as skipped, not passed.
  assertEquals(r.passed, r.killedWhileWriting);
  assert(r.passed >= 2, summarizeKills(r));
  assertEquals(r.skipped, r.killedBeforeTemp + r.finishedFirst);
  assertEquals([r.failed, r.passed + r.skipped], [0, r.trials]);
  assertEquals(r.tempsAfterNextRun, 0);
  assertEquals(r.killedWhileWriting, r.incompleteTemps + r.completeTemps);
});

Deno.test("killedWriters() with live snapshots (livesnap run --snapshot-at) leaves no partial file", async () => {
  const r = await killedWriters({
    trials: 3,
    pages: 2048,
    seed: 9,
    live: true,
    atLeastWhileWriting: 1,
  });
  assertEquals(r.problems, []);
  assert(r.passed >= 1, summarizeKills(r));
  assertEquals(r.passed + r.skipped, r.trials);
  assertEquals(r.tempsAfterNextRun, 0);
});
