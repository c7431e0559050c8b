/**
 * A diff restored eagerly through its chain with parallel loaders (`restoreChainEagerly`,
 * FORMAT.md §14.4) gives exactly what the single-thread chain reader and the flattened file give,
 * and refuses a damaged link naming the file and the record's offset, before the guest runs.
 */
import {
  bootMemstress,
  makeChain as makeChainIn,
  PS,
  RAM,
  withTemp as withTempIn,
} from "./_chain_fixture.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert/mod.js";
import { restoreChainEagerly } from "../emulator/snapshot/lazy_restore.ts";
import { machineContentDigest } from "../emulator/snapshot/machine_state.ts";
import { ChainError, openChain } from "../format/chain.ts";
import { crc32c } from "../format/checksum.ts";
import { restoreSnapshot } from "../tools/restore.ts";
import { flattenSnapshot } from "../tools/flatten.ts";

const STEP = 200_000;
/** Pages the guest does not use (memstress keeps to its 256 KiB and its stack): given data
 * before the full snapshot, some zeroed in each diff, so that zero records of diffs win. */
const SPARE = Array.from({ length: 24 }, (_, i) => 400 + i);
const boot = () => bootMemstress(11);
const withTemp = <T>(f: (dir: string) => Promise<T>) => withTempIn("chain_parallel_", f);

/** s-0 full, then s-1..s-n diffs, STEP instructions apart; each diff zeroes two spare pages
 * (written by the writer as a zero record) and gives data to one zeroed before. */
const makeChain = (dir: string, n: number) =>
  makeChainIn(boot().m, dir, n, {
    step: STEP,
    beforeFull: (m) => {
      for (const p of SPARE) m.ram.bytes.fill(p & 0xff, p * PS, (p + 1) * PS);
    },
    beforeDiff: (m, i) => {
      for (const p of SPARE.slice(2 * i, 2 * i + 2)) m.ram.bytes.fill(0, p * PS, (p + 1) * PS);
      if (i > 1) m.ram.bytes.fill(0x40 + i, SPARE[2 * i - 2] * PS, SPARE[2 * i - 2] * PS + 100);
    },
  });

Deno.test("restoreChainEagerly() gives the state and output of the single-thread chain path and of the flattened file", async () => {
  await withTemp(async (dir) => {
    const digests = await makeChain(dir, 5);
    const newest = `${dir}/s-5.lsnap`;
    // The parallel path itself: every page in, by the loaders, the digest from their hashes.
    const r = await restoreChainEagerly({ path: newest, loaders: 2, uartSink: () => {} });
    assertEquals(r.chain, [0, 1, 2, 3, 4, 5].map((i) => `${dir}/s-${i}.lsnap`));
    assertEquals(r.contentDigest, digests[5]);
    assertEquals(await machineContentDigest(r.machine), digests[5]);
    const m = r.pager.metrics("eager");
    assertEquals([m.loaders, m.demandFaults, m.failedRecords], [2, 0, 0]);
    assert(m.prefetchedPages > 0);
    for (const p of SPARE.slice(2, 12)) {
      assert(r.machine.ram.bytes.subarray(p * PS, (p + 1) * PS).every((b) => b === 0 || b > 0x40));
    }
    // Whole restores, run on: parallel, single-thread chain reader, flattened file.
    const flat = `${dir}/flat.lsnap`;
    await flattenSnapshot({ path: newest, out: flat });
    const runs: Record<string, { digest: string; out: string; chain: number }> = {};
    for (
      const [name, path, parallel] of [
        ["parallel", newest, "always"],
        ["one thread", newest, false],
        ["flattened", flat, "always"],
      ] as const
    ) {
      let out = "";
      const x = await restoreSnapshot({
        path,
        runFor: 3 * STEP,
        parallel,
        sink: (b) => out += new TextDecoder().decode(b),
      });
      assertEquals(x.contentDigest, digests[5], name);
      runs[name] = { digest: await machineContentDigest(x.machine), out, chain: x.chain.length };
    }
    assertEquals(runs["parallel"], runs["one thread"]);
    assertEquals(runs["parallel"].digest, runs["flattened"].digest);
    assertEquals(runs["parallel"].out, runs["flattened"].out);
    assert(runs["parallel"].out.length > 0, "the guest wrote on after the restore");
  });
});

/** Flips a bit of `at` in `path` (and, with `crcOf`, recomputes the CRC32C of the record at
 * `crcOf` so that only a digest can tell). */
async function damage(path: string, at: number, crcOf?: number): Promise<void> {
  const bytes = await Deno.readFile(path);
  bytes[at] ^= 0x10;
  if (crcOf !== undefined) {
    const dv = new DataView(bytes.buffer);
    const len = dv.getUint32(crcOf + 4, true);
    dv.setUint32(crcOf + 8 + len, crc32c(bytes.subarray(crcOf, crcOf + 8 + len)), true);
  }
  await Deno.writeFile(path, bytes);
}

Deno.test("restoreChainEagerly() refuses a damaged link naming the file and the record's offset, before the guest runs", async (t) => {
  await withTemp(async (dir) => {
    await makeChain(dir, 3);
    const newest = `${dir}/s-3.lsnap`;
    const pristine = await Deno.readFile(`${dir}/s-1.lsnap`);
    // A page whose newest copy is in s-1, and the record that holds it.
    const chain = await openChain(newest);
    let page = -1;
    for (let p = 0; p < RAM / PS && page < 0; p++) if (chain.pageSource(0, p) === 1) page = p;
    const at = chain.files[1].reader.pageRecordOffset(0, page);
    chain.close();
    assert(page >= 0 && at > 0);

    await t.step("a record that fails its CRC32C", async () => {
      // The record's last payload byte (its page data, or its page list for a zero record).
      const length = new DataView(pristine.buffer).getUint32(at + 4, true);
      await damage(`${dir}/s-1.lsnap`, at + 8 + length - 1);
      let ran = false;
      for (
        const run of [
          () => restoreChainEagerly({ path: newest, uartSink: () => ran = true }),
          () => restoreSnapshot({ path: newest, parallel: "always", sink: () => ran = true }),
        ]
      ) {
        const e = await assertRejects(run, ChainError);
        assertEquals(e.problem, "damaged-record");
        assertEquals(e.parent, `${dir}/s-1.lsnap`);
        assertStringIncludes(
          e.message,
          `'${dir}/s-1.lsnap' (depth 1): its PAGES record at byte ${at}`,
        );
        assertStringIncludes(e.message, "CRC32C");
        assert(!ran);
      }
      await Deno.writeFile(`${dir}/s-1.lsnap`, pristine);
    });

    await t.step("bytes changed with their CRC32C kept right: the file digest", async () => {
      // The HEADER's creator: only the file digest covers it (the newest file's header is used).
      const text = new TextEncoder().encode("livesnap ");
      const i = pristine.findIndex((_, k) => text.every((b, j) => pristine[k + j] === b));
      assert(i > 16);
      await damage(`${dir}/s-1.lsnap`, i + 1, 16);
      const e = await assertRejects(
        () => restoreChainEagerly({ path: newest, uartSink: () => {} }),
        ChainError,
      );
      assertEquals(e.problem, "digest-mismatch");
      assertStringIncludes(e.message, `'${dir}/s-1.lsnap': its bytes give file digest`);
      assertStringIncludes(e.message, `the PARENT record of '${dir}/s-2.lsnap'`);
      await Deno.writeFile(`${dir}/s-1.lsnap`, pristine);
    });

    await t.step("a missing parent: the same refusal as the single-thread path", async () => {
      await Deno.rename(`${dir}/s-1.lsnap`, `${dir}/gone.lsnap`);
      const e = await assertRejects(
        () => restoreChainEagerly({ path: newest, uartSink: () => {} }),
        ChainError,
      );
      assertEquals(e.problem, "missing-parent");
      assertStringIncludes(e.message, "link s-2.lsnap → s-1.lsnap (depth 2 → 1)");
      await Deno.rename(`${dir}/gone.lsnap`, `${dir}/s-1.lsnap`);
      const r = await restoreChainEagerly({ path: newest, uartSink: () => {} });
      assertEquals(r.chain.length, 4);
    });
  });
});
