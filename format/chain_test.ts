import { assert, assertEquals, assertRejects } from "@std/assert/mod.js";
import { chainDescription, writeChain } from "./_chain_test_util.ts";
import { ChainError, ChainReader, openChain, readDiffParent } from "./chain.ts";
import { toHex } from "./checksum.ts";
import { computeContentDigest, PageHashTable } from "./content_digest.ts";
import { SnapshotWriter } from "./writer.ts";

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "chain_test_" });
}

Deno.test("openChain() and ChainReader read chains of 1 to 10 diffs as the state they stand for", async () => {
  const dir = await tempDir();
  try {
    const steps = await writeChain(dir, 10, { pages: 48, seed: 7 });
    const d = chainDescription(48);
    for (let n = 1; n <= 10; n++) {
      const step = steps[n];
      const expected = await computeContentDigest(d, [step.ram], step.devices);
      // The writer declares the whole state's digest: the same as a full snapshot's.
      assertEquals(toHex(step.summary.contentDigest), toHex(expected), `diff ${n} declares`);
      const chain = await openChain(step.path);
      try {
        assertEquals(chain.files.length, n + 1);
        assertEquals(chain.files.map((f) => f.depth), [...Array(n + 1).keys()]);
        for (let p = 0; p < 48; p++) {
          assertEquals(
            await chain.readPage(0, p),
            step.ram.subarray(p * 4096, (p + 1) * 4096),
            `page ${p} at depth ${n}`,
          );
        }
        const reader = new ChainReader(chain);
        const ram = new Uint8Array(48 * 4096);
        const devices = [];
        for await (const r of reader.records()) {
          if (r.kind === "pages") {
            r.pages.forEach((p, i) => {
              if (r.data === null) ram.fill(0, p * 4096, (p + 1) * 4096);
              else ram.set(r.data.subarray(i * 4096, (i + 1) * 4096), p * 4096);
            });
          } else if (r.kind === "device") devices.push(r.device);
        }
        assertEquals(ram, step.ram, `state through ChainReader at depth ${n}`);
        assertEquals(devices.length, 2);
        assertEquals(toHex(reader.contentDigest!), toHex(expected));
      } finally {
        chain.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a page that became zero is an explicit zero record and reads as zero through the chain", async () => {
  const dir = await tempDir();
  try {
    const steps = await writeChain(dir, 3, { pages: 32, seed: 3, zero: 0.3 });
    const zeroedOnce = steps[2].zeroed.filter((p) =>
      steps[1].ram.subarray(p * 4096, (p + 1) * 4096).some((b) => b !== 0)
    );
    assert(zeroedOnce.length > 0, "the seed zeroes a page that held data");
    const chain = await openChain(steps[2].path);
    try {
      for (const p of zeroedOnce) {
        assertEquals(chain.pageSource(0, p), 2, `page ${p} comes from the diff's zero record`);
        assert((await chain.readPage(0, p)).every((b) => b === 0), `page ${p} reads as zero`);
      }
    } finally {
      chain.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readDiffParent() proves a chain and gives the page hashes a next diff needs", async () => {
  const dir = await tempDir();
  try {
    const steps = await writeChain(dir, 4, { pages: 32, seed: 5 });
    const p = await readDiffParent(steps[4].path);
    assertEquals(p.depth, 4);
    assertEquals(toHex(p.contentDigest), toHex(steps[4].summary.contentDigest));
    assertEquals(toHex(p.rootFileDigest), toHex(steps[0].summary.fileDigest));
    assertEquals(p.pageHashes.count(), steps[4].summary.pageHashes!.count());
    // A diff written from what was read declares the same state as the in-memory chain.
    const w = await SnapshotWriter.createFile(`${dir}/s-5.lsnap`, chainDescription(32), {
      parent: p,
    });
    for (const d of steps[4].devices) await w.writeDevice(d);
    const s5 = await w.close();
    assertEquals(toHex(s5.contentDigest), toHex(steps[4].summary.contentDigest));
    assertEquals(s5.depth, 5);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openChain() refuses a chain that cannot be trusted, naming the file and the link", async (t) => {
  const dir = await tempDir();
  try {
    await t.step("a missing parent", async () => {
      const steps = await writeChain(`${dir}`, 2, { seed: 11, name: (n) => `m-${n}.lsnap` });
      await Deno.remove(steps[1].path);
      const e = await assertRejects(() => openChain(steps[2].path), ChainError);
      assertEquals(e.problem, "missing-parent");
      assertEquals(
        e.message,
        `Cannot use the chain of '${dir}/m-2.lsnap': link m-2.lsnap → m-1.lsnap (depth 2 → 1): ` +
          `the parent '${dir}/m-1.lsnap' does not exist`,
      );
    });
    await t.step("a parent swapped for another file under the same name", async () => {
      const a = await writeChain(dir, 2, { seed: 12, name: (n) => `w-${n}.lsnap` });
      const b = await writeChain(`${dir}`, 0, { seed: 13, name: () => "other.lsnap" });
      await Deno.rename(b[0].path, a[1].path.replace("w-1", "w-1"));
      const e = await assertRejects(() => openChain(a[2].path), ChainError);
      assertEquals(e.problem, "other-chain");
      assert(e.message.includes("link w-2.lsnap → w-1.lsnap (depth 2 → 1)"), e.message);
      // The same chain's full snapshot put in place of its diff: same root, another file.
      await Deno.copyFile(a[0].path, a[1].path);
      const e2 = await assertRejects(() => openChain(a[2].path), ChainError);
      assertEquals(e2.problem, "wrong-parent");
      assert(e2.message.includes("(another file under the parent's name)"), e2.message);
      assert(e2.message.includes(`the parent '${dir}/w-1.lsnap' has file digest`), e2.message);
    });
    await t.step("--parent files are matched by file digest, not name", async () => {
      const a = await writeChain(dir, 2, { seed: 14, name: (n) => `p-${n}.lsnap` });
      await Deno.rename(a[1].path, `${dir}/renamed.lsnap`);
      await assertRejects(() => openChain(a[2].path), ChainError, "does not exist");
      const chain = await openChain(a[2].path, { parents: [`${dir}/renamed.lsnap`] });
      assertEquals(chain.files.map((f) => f.path), [a[0].path, `${dir}/renamed.lsnap`, a[2].path]);
      chain.close();
      const e = await assertRejects(
        () => openChain(a[2].path, { parents: [a[0].path] }),
        ChainError,
        "and none of the 1 --parent files has file digest",
      );
      assertEquals(e.problem, "missing-parent");
    });
    await t.step("a cycle", async () => {
      const description = chainDescription(16);
      // b.lsnap claims a parent named a.lsnap; a.lsnap is then written as a diff on b.lsnap.
      const pages = new PageHashTable(description.regions);
      const wb = await SnapshotWriter.createFile(`${dir}/b.lsnap`, description, {
        parent: {
          contentDigest: new Uint8Array(32),
          fileDigest: new Uint8Array(32).fill(1),
          rootFileDigest: new Uint8Array(32).fill(1),
          name: "a.lsnap",
          depth: 0,
          pageHashes: pages,
        },
        keepPageHashes: true,
      });
      const sb = await wb.close();
      const wa = await SnapshotWriter.createFile(`${dir}/a.lsnap`, description, {
        parent: { ...sb, name: "b.lsnap", pageHashes: sb.pageHashes! },
      });
      await wa.close();
      const e = await assertRejects(() => openChain(`${dir}/a.lsnap`), ChainError);
      assertEquals(e.problem, "cycle");
      assertEquals(
        e.message,
        `Cannot use the chain of '${dir}/b.lsnap': link b.lsnap → a.lsnap (depth 1 → 0): ` +
          `the parent '${dir}/a.lsnap' is '${dir}/a.lsnap', already in the chain (a cycle)`,
      );
    });
    await t.step("a chain that mixes machines", async () => {
      const a = await writeChain(dir, 0, { seed: 15, name: () => "mx-0.lsnap" });
      const other = chainDescription(128);
      const w = await SnapshotWriter.createFile(`${dir}/mx-1.lsnap`, other, {
        // A writer that lies about its parent's regions (the library's writer checks them).
        parent: {
          ...a[0].summary,
          name: "mx-0.lsnap",
          pageHashes: new PageHashTable(other.regions),
        },
      });
      await w.close();
      const e = await assertRejects(() => openChain(`${dir}/mx-1.lsnap`), ChainError);
      assertEquals(e.problem, "mixed-machines");
      assert(
        e.message.includes(
          "the chain mixes machines: 'mx-1.lsnap' has regions ram@0x80000000+0x80000/4096, " +
            `its parent '${dir}/mx-0.lsnap' ram@0x80000000+0x40000/4096`,
        ),
        e.message,
      );
    });
    await t.step("a diff whose parent is a diff of another chain", async () => {
      const a = await writeChain(dir, 2, { seed: 16, name: (n) => `x-${n}.lsnap` });
      const b = await writeChain(dir, 1, { seed: 17, name: (n) => `y-${n}.lsnap` });
      await Deno.copyFile(b[1].path, a[1].path);
      const e = await assertRejects(() => openChain(a[2].path), ChainError);
      assertEquals(e.problem, "other-chain");
      assert(
        e.message.includes(`the parent '${dir}/x-1.lsnap' belongs to another chain`),
        e.message,
      );
    });
    await t.step("an incomplete parent", async () => {
      const a = await writeChain(dir, 2, { seed: 18, name: (n) => `t-${n}.lsnap` });
      const bytes = await Deno.readFile(a[1].path);
      await Deno.writeFile(a[1].path, bytes.subarray(0, bytes.length - 40));
      const e = await assertRejects(() => openChain(a[2].path), ChainError);
      assertEquals(e.problem, "incomplete");
      assert(e.message.includes(`the parent '${dir}/t-1.lsnap' is incomplete`), e.message);
    });
    await t.step(
      "a parent whose bytes changed after its trailer (file digest not proved)",
      async () => {
        const a = await writeChain(dir, 1, { seed: 19, name: (n) => `c-${n}.lsnap` });
        // Flip a byte of the full snapshot's HEADER creation time and fix its CRC: the trailer
        // still names the old file digest, which only reading every byte disproves.
        const bytes = await Deno.readFile(a[0].path);
        const { crc32c } = await import("./checksum.ts");
        bytes[16 + 8] ^= 1;
        const len = new DataView(bytes.buffer).getUint32(16 + 4, true);
        new DataView(bytes.buffer).setUint32(
          16 + 8 + len,
          crc32c(bytes.subarray(16, 16 + 8 + len)),
          true,
        );
        await Deno.writeFile(a[0].path, bytes);
        const chain = await openChain(a[1].path);
        try {
          const reader = new ChainReader(chain, { decodePages: "digest" });
          await assertRejects(
            async () => {
              for await (const _ of reader.records()) { /* reads every file */ }
            },
            Error,
            "file digest mismatch",
          );
        } finally {
          chain.close();
        }
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
