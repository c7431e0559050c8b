/**
 * Restoring a diff goes through its chain (FORMAT.md §14): the bundled machine, stopped between
 * runs, saved full and then as diffs made with the writer API (the pages that differ from the
 * previous snapshot's RAM); restoring the newest diff and running on equals an uninterrupted run,
 * and a bad chain is refused before anything runs.
 */
import {
  bootMemstress,
  makeChain as makeChainIn,
  PS,
  RAM,
  saveDiff,
  withTemp as withTempIn,
} from "./_chain_fixture.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert/mod.js";
import { restoreMachineFromFile } from "../emulator/snapshot/restore.ts";
import { machineContentDigest } from "../emulator/snapshot/machine_state.ts";
import { ChainError } from "../format/chain.ts";
import { toHex } from "../format/checksum.ts";
import { restoreSnapshot } from "../tools/restore.ts";
import { flattenSnapshot } from "../tools/flatten.ts";
import { main as restoreMain } from "../tools/restore_command.ts";

const boot = () => bootMemstress(7);
const withTemp = <T>(f: (dir: string) => Promise<T>) => withTempIn("chain_restore_", f);

const STEP = 200_000;

/** s-0 full at STEP, then s-1..s-n diffs every STEP instructions. */
const makeChain = (dir: string, n: number) =>
  makeChainIn(boot().m, dir, n, {
    step: STEP,
    afterDiff: (i, dirty) =>
      assert(dirty > 0 && dirty < RAM / PS / 4, `diff ${i} holds ${dirty} pages`),
  });

Deno.test("restoreSnapshot() of a diff runs on exactly as an uninterrupted run", async () => {
  await withTemp(async (dir) => {
    const digests = await makeChain(dir, 10);
    const end = 13 * STEP;
    const whole = boot();
    whole.m.run(11 * STEP);
    const outAtSnapshot = whole.out().length;
    whole.m.run(2 * STEP);
    const expected = await machineContentDigest(whole.m);
    for (const n of [1, 4, 10]) {
      let out = "";
      const r = await restoreSnapshot({
        path: `${dir}/s-${n}.lsnap`,
        stopAt: (n + 1) * STEP,
        sink: (b) => out += new TextDecoder().decode(b),
      });
      assertEquals(r.contentDigest, digests[n], `restored state of s-${n}`);
      assertEquals(r.chain.length, n + 1);
      assertEquals(r.snapshotRetired, (n + 1) * STEP);
      assertEquals(await machineContentDigest(r.machine), digests[n]);
    }
    let out = "";
    const r = await restoreSnapshot({
      path: `${dir}/s-10.lsnap`,
      stopAt: end,
      sink: (b) => out += new TextDecoder().decode(b),
    });
    assertEquals(await machineContentDigest(r.machine), expected);
    assertEquals(out, whole.out().slice(outAtSnapshot));
    // The flattened chain restores to the same state.
    const flat = await flattenSnapshot({ path: `${dir}/s-10.lsnap`, out: `${dir}/flat.lsnap` });
    assertEquals(flat.contentDigestHex, digests[10]);
    const f = await restoreSnapshot({ path: `${dir}/flat.lsnap`, stopAt: end, sink: () => {} });
    assertEquals(await machineContentDigest(f.machine), expected);
  });
});

Deno.test("restore of a diff refuses a bad chain before the guest runs", async () => {
  await withTemp(async (dir) => {
    await makeChain(dir, 2);
    await Deno.rename(`${dir}/s-1.lsnap`, `${dir}/elsewhere.lsnap`);
    let ran = false;
    const e = await assertRejects(
      () =>
        restoreSnapshot({ path: `${dir}/s-2.lsnap`, stopAt: 10 * STEP, sink: () => ran = true }),
      ChainError,
    );
    assertEquals(e.problem, "missing-parent");
    assertStringIncludes(e.message, "link s-2.lsnap → s-1.lsnap (depth 2 → 1)");
    assert(!ran);
    // --parent finds it whatever its name.
    const r = await restoreSnapshot({
      path: `${dir}/s-2.lsnap`,
      parents: [`${dir}/elsewhere.lsnap`],
      stopAt: 3 * STEP,
      sink: () => {},
    });
    assertEquals(r.chain[1], `${dir}/elsewhere.lsnap`);
    // The command line: exit status 1 and the link named.
    const errors: string[] = [];
    const error = console.error;
    console.error = (m: string) => errors.push(m);
    try {
      assertEquals(await restoreMain([`${dir}/s-2.lsnap`, "--stop-at", `${4 * STEP}`]), 1);
    } finally {
      console.error = error;
    }
    assertStringIncludes(errors.join("\n"), "livesnap restore: Cannot use the chain of");
    assertStringIncludes(errors.join("\n"), `the parent '${dir}/s-1.lsnap' does not exist`);
  });
});

Deno.test("restoreMachineFromFile() gives the parent a diff of the restored machine needs", async () => {
  await withTemp(async (dir) => {
    const digests = await makeChain(dir, 3);
    for (const from of ["s-0.lsnap", "s-3.lsnap"]) {
      const r = await restoreMachineFromFile(`${dir}/${from}`, { uartSink: () => {} });
      const parent = r.diffParent;
      if (parent === null) throw new Error(`restoring ${from} gave no parent`);
      assertEquals(toHex(parent.contentDigest), r.contentDigest);
      const before = r.machine.ram.bytes.slice();
      r.machine.run(STEP);
      const out = `${dir}/after-${from}`;
      const { summary } = await saveDiff(r.machine, out, parent, before);
      assertEquals(toHex(summary.contentDigest), await machineContentDigest(r.machine));
      assertEquals(summary.depth, from === "s-0.lsnap" ? 1 : 4);
      const again = await restoreSnapshot({ path: out, stopAt: 20 * STEP, sink: () => {} });
      assertEquals(again.snapshotRetired, r.machine.hart.retired);
      assertEquals(again.contentDigest, toHex(summary.contentDigest));
    }
    assertEquals(digests.length, 4);
  });
});
