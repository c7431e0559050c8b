/**
 * Child process of the killed-writer and full-disk trials: writes trial SEED's snapshot of PAGES
 * pages to DEST with `SnapshotWriter.createFile`, 64 pages per call, and prints "done".
 * A write error is printed as one line on stderr and exits with status 3.
 *
 * Usage: deno run -A tests/reliability/_write_child.ts DEST PAGES SEED [HOLD_AT]
 *
 * With HOLD_AT, the child prints "holding" after writing that many pages and waits forever (so a
 * test can kill it at a known point).
 *
 * @module
 */
import { SnapshotWriter } from "../../format/writer.ts";
import { trialState } from "./_snapshot_content.ts";

const [dest, pagesArg, seedArg, holdArg] = Deno.args;
const holdAt = holdArg === undefined ? -1 : Number(holdArg);
const s = trialState(Number(seedArg), Number(pagesArg));
try {
  const w = await SnapshotWriter.createFile(dest, s.description);
  const pages = Number(pagesArg);
  for (let p = 0; p < pages; p += 64) {
    if (p === holdAt) {
      console.log("holding");
      await new Promise(() => {});
    }
    await w.writePages(0, p, s.ram.subarray(p * 4096, Math.min(pages, p + 64) * 4096));
  }
  for (const d of s.devices) await w.writeDevice(d);
  await w.close();
  console.log("done");
} catch (e) {
  console.error((e as Error).message);
  Deno.exit(3);
}
