import { assert, assertEquals, assertRejects } from "@std/assert/mod.js";
import { chainDescription, writeChain } from "./_chain_test_util.ts";
import { openChain } from "./chain.ts";
import { crc32c, toHex } from "./checksum.ts";
import { type AtomicFs, DENO_FS } from "./atomic_file.ts";
import { computeContentDigest, PageHashTable } from "./content_digest.ts";
import { flattenChain, flattenChainToFile, FlattenError } from "./flatten.ts";
import { SnapshotFileReader } from "./file_reader.ts";
import { decodePageRecord } from "./page_record.ts";
import { digestPageData } from "./_page_digest.ts";
import { readSnapshot, SnapshotStreamReader } from "./stream_reader.ts";
import { SnapshotWriter } from "./writer.ts";

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "flatten_test_" });
}

Deno.test("flattenChainToFile() gives a full snapshot with the content digest of the same state saved full", async () => {
  const dir = await tempDir();
  try {
    const pages = 40;
    const steps = await writeChain(dir, 10, { pages, seed: 21, zero: 0.1 });
    const d = chainDescription(pages);
    for (let n = 1; n <= 10; n++) {
      const step = steps[n];
      // The same instant saved full, by the writer.
      const w = await SnapshotWriter.createFile(`${dir}/full-${n}.lsnap`, d);
      await w.writePages(0, 0, step.ram);
      for (const dev of step.devices) await w.writeDevice(dev);
      const full = await w.close();
      const chain = await openChain(step.path);
      const out = `${dir}/flat-${n}.lsnap`;
      try {
        const s = await flattenChainToFile(chain, out, { workers: n % 2 });
        assertEquals(toHex(s.contentDigest), toHex(full.contentDigest), `depth ${n}`);
        assert(s.copiedRecords > 0);
      } finally {
        chain.close();
      }
      const file = await Deno.open(out);
      const snap = await readSnapshot(file.readable);
      assertEquals(snap.regions[0], step.ram, `flattened RAM at depth ${n}`);
      assertEquals(toHex(snap.contentDigest), toHex(full.contentDigest));
      assertEquals(
        toHex(snap.contentDigest),
        toHex(await computeContentDigest(d, [step.ram], step.devices)),
      );
      assertEquals(snap.devices.map((x) => x.state), step.devices.map((x) => x.state));
      const r = await SnapshotFileReader.open(out);
      assert(r.indexed && r.parent === null, "a full snapshot with an index");
      r.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("flattenChainToFile() never overwrites one of its inputs", async () => {
  const dir = await tempDir();
  try {
    const steps = await writeChain(dir, 2, { seed: 22 });
    const before = await Deno.readFile(steps[1].path);
    await Deno.link(steps[1].path, `${dir}/alias.lsnap`);
    await Deno.symlink(steps[2].path, `${dir}/sym.lsnap`);
    const chain = await openChain(steps[2].path);
    try {
      for (
        const [out, input] of [
          [steps[1].path, steps[1].path],
          [`${dir}/alias.lsnap`, steps[1].path],
          [`${dir}/sym.lsnap`, steps[2].path],
          [`${dir}/./s-0.lsnap`, steps[0].path],
        ]
      ) {
        await assertRejects(
          () => flattenChainToFile(chain, out),
          FlattenError,
          `Cannot flatten to '${out}': it is '${input}', a file of the chain being flattened`,
        );
      }
    } finally {
      chain.close();
    }
    assertEquals(await Deno.readFile(steps[1].path), before);
    assertEquals(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["alias.lsnap", "s-0.lsnap", "s-1.lsnap", "s-2.lsnap", "sym.lsnap"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("flattenChainToFile() leaves nothing when the output does not hold the declared state", async () => {
  const dir = await tempDir();
  try {
    const steps = await writeChain(dir, 1, { seed: 23 });
    const d = chainDescription(64);
    // A diff whose writer was given wrong parent page hashes: its links are right, the state it
    // declares is not what parent and changes make.
    const w = await SnapshotWriter.createFile(`${dir}/bad.lsnap`, d, {
      parent: {
        ...steps[1].summary,
        name: "s-1.lsnap",
        pageHashes: new PageHashTable(d.regions),
      },
    });
    await w.writePages(0, 3, new Uint8Array(4096).fill(3));
    for (const dev of steps[1].devices) await w.writeDevice(dev);
    await w.close();
    await Deno.writeFile(`${dir}/out.lsnap`, new Uint8Array([1, 2, 3]));
    const chain = await openChain(`${dir}/bad.lsnap`);
    try {
      // Read back in this thread, and in a worker.
      for (const workers of [0, 1]) {
        await assertRejects(
          () => flattenChainToFile(chain, `${dir}/out.lsnap`, { workers }),
          FlattenError,
          "content digest mismatch (expected ",
        );
      }
    } finally {
      chain.close();
    }
    // The old file stays, and no temporary is left.
    assertEquals(await Deno.readFile(`${dir}/out.lsnap`), new Uint8Array([1, 2, 3]));
    assertEquals(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["bad.lsnap", "out.lsnap", "s-0.lsnap", "s-1.lsnap"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("flattenChainToFile() of a full snapshot (a chain of one) keeps its state", async () => {
  const dir = await tempDir();
  try {
    const steps = await writeChain(dir, 0, { pages: 16, seed: 24 });
    const chain = await openChain(steps[0].path);
    try {
      assertEquals(chain.files.length, 1);
      const s = await flattenChainToFile(chain, `${dir}/copy.lsnap`);
      assertEquals(toHex(s.contentDigest), toHex(steps[0].summary.contentDigest));
      assertEquals(s.skippedRecords, 0);
    } finally {
      chain.close();
    }
    const snap = await readSnapshot((await Deno.open(`${dir}/copy.lsnap`)).readable);
    assertEquals(snap.regions[0], steps[0].ram);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The real file system, but the output's bytes pass through `damage` on their way to the file. */
function damagingFs(damage: (bytes: Uint8Array, at: number) => Uint8Array): AtomicFs {
  return {
    ...DENO_FS,
    async open(path, options) {
      const file = await Deno.open(path, options);
      const writeSync = file.writeSync.bind(file);
      let at = 0;
      file.writeSync = (p: Uint8Array) => {
        const n = writeSync(damage(p, at));
        at += n;
        return n;
      };
      return file;
    },
  };
}

/** Flips a bit in the middle of the first chunk of `min` bytes or more (a PAGES record). */
function flipInRecord(min: number, fixCrc: boolean) {
  let done = false;
  return (bytes: Uint8Array): Uint8Array => {
    if (done || bytes.length < min) return bytes;
    done = true;
    const bad = bytes.slice();
    bad[bad.length >> 1] ^= 0x10;
    if (fixCrc) {
      // A damage the record's own check cannot see: only the file digest can.
      const end = bad.length - 4;
      new DataView(bad.buffer).setUint32(end, crc32c(bad.subarray(0, end)), true);
    }
    return bad;
  };
}

Deno.test("flattenChainToFile() refuses an output damaged on its way to the file, and leaves nothing", async (t) => {
  const dir = await tempDir();
  try {
    const steps = await writeChain(dir, 3, { pages: 64, seed: 25, zero: 0.1 });
    const chain = await openChain(steps[3].path);
    // With the share "all" the writing thread reads every PAGES record back itself: the worker
    // does not compute their CRC32Cs.
    const cases: [string, boolean, number, "all" | "none", string][] = [
      ["a flipped bit", false, 0, "none", "record CRC32C mismatch"],
      ["a flipped bit", false, 1, "none", "record CRC32C mismatch"],
      ["a flipped bit", false, 1, "all", "record CRC32C mismatch (expected "],
      ["a flipped bit with its CRC32C made to match", true, 0, "none", "file digest mismatch"],
      ["a flipped bit with its CRC32C made to match", true, 1, "none", "file digest mismatch"],
      ["a flipped bit with its CRC32C made to match", true, 1, "all", "file digest mismatch"],
    ];
    try {
      for (const [what, fixCrc, workers, share, message] of cases) {
        await t.step(`${what}, ${workers} workers, read-back share ${share}`, async () => {
          const e = await assertRejects(
            () =>
              flattenChainToFile(chain, `${dir}/out.lsnap`, {
                workers,
                readBackShare: share,
                fs: damagingFs(flipInRecord(1000, fixCrc)),
              }),
            FlattenError,
            "Cannot flatten: the output does not read back: ",
          );
          assert(e.message.includes(message), e.message);
          assertEquals(
            [...Deno.readDirSync(dir)].map((x) => x.name).sort(),
            ["s-0.lsnap", "s-1.lsnap", "s-2.lsnap", "s-3.lsnap"],
          );
        });
      }
      // The same chain through the same (undamaging) path is fine.
      const s = await flattenChainToFile(chain, `${dir}/out.lsnap`, {
        fs: damagingFs((b) => b),
      });
      assertEquals(toHex(s.contentDigest), toHex(steps[3].summary.contentDigest));
    } finally {
      chain.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("flattenChainToFile() refuses a damaged input record and names it", async () => {
  const dir = await tempDir();
  try {
    const steps = await writeChain(dir, 2, { pages: 64, seed: 26, zero: 0.1 });
    // A byte in the middle of the full snapshot's first PAGES record: the chain still opens (its
    // links are in the trailers), the copy of that record does not read back.
    const r = await SnapshotFileReader.open(steps[0].path);
    let first = Infinity;
    r.forEachPage((_region, _page, at) => (first = Math.min(first, at)));
    r.close();
    const bytes = await Deno.readFile(steps[0].path);
    bytes[first + 40] ^= 0x01;
    await Deno.writeFile(steps[0].path, bytes);
    const chain = await openChain(steps[2].path);
    try {
      for (const workers of [0, 1]) {
        const e = await assertRejects(
          () => flattenChainToFile(chain, `${dir}/out.lsnap`, { workers }),
          FlattenError,
          "Cannot flatten: the output does not read back: ",
        );
        assert(e.message.includes("record CRC32C mismatch (expected "), e.message);
        assert(
          e.message.endsWith(`(in the record copied from byte ${first} of '${steps[0].path}')`),
          e.message,
        );
      }
    } finally {
      chain.close();
    }
    assertEquals(
      [...Deno.readDirSync(dir)].map((x) => x.name).sort(),
      ["s-0.lsnap", "s-1.lsnap", "s-2.lsnap"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Output offsets of the PAGES records of `path` that are not zero records. */
async function dataRecords(path: string): Promise<number[]> {
  const file = await Deno.open(path);
  const reader = new SnapshotStreamReader(file.readable, { decodePages: false, diffs: "read" });
  const at: number[] = [];
  for await (const r of reader.records()) {
    if (r.kind === "pages" && r.encoding !== "zero") at.push(r.offset);
  }
  return at;
}

Deno.test("flattenChainToFile() gives the same state whichever thread reads each record back", async () => {
  const dir = await tempDir();
  try {
    // Records of 4 pages: many records, so that both threads get some with the share "auto".
    const steps = await writeChain(dir, 4, {
      pages: 512,
      seed: 28,
      zero: 0.1,
      writer: { batchBytes: 4 * 4096 },
    });
    const chain = await openChain(steps[4].path);
    try {
      for (const share of ["all", "auto", "none"] as const) {
        const out = `${dir}/flat-${share}.lsnap`;
        const s = await flattenChainToFile(chain, out, { workers: 1, readBackShare: share });
        assertEquals(toHex(s.contentDigest), toHex(steps[4].summary.contentDigest), share);
        const records = (await dataRecords(out)).length;
        assert(records > 50, `${records} records`);
        if (share === "all") assertEquals(s.sharedRecords, records);
        else if (share === "none") assertEquals(s.sharedRecords, 0);
        else assert(s.sharedRecords <= records, `${s.sharedRecords} of ${records}`);
        const snap = await readSnapshot((await Deno.open(out)).readable);
        assertEquals(snap.regions[0], steps[4].ram, share);
      }
      // No worker: this thread reads everything back, nothing is shared.
      const s = await flattenChainToFile(chain, `${dir}/flat-0.lsnap`, { workers: 0 });
      assertEquals(s.sharedRecords, 0);
      assertEquals(toHex(s.contentDigest), toHex(steps[4].summary.contentDigest));
    } finally {
      chain.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("flattenChainToFile() names a copied record whose pages do not decompress, whichever thread reads it back", async (t) => {
  const dir = await tempDir();
  try {
    const steps = await writeChain(dir, 2, {
      pages: 64,
      seed: 29,
      dirty: 0.5,
      writer: { batchBytes: 4 * 4096 },
    });
    // The newest file's last PAGES record (the output's last) with the first byte of its zstd
    // frame that, flipped, leaves the record's framing whole but its pages undecompressable; its
    // CRC32C made to match, so that only decompressing it finds the damage.
    const path = steps[2].path;
    const last = Math.max(...await dataRecords(path));
    const bytes = await Deno.readFile(path);
    const v = new DataView(bytes.buffer);
    const length = v.getUint32(last + 4, true);
    const payload = bytes.subarray(last + 8, last + 8 + length);
    const regions = chainDescription(64).regions;
    const p = decodePageRecord(payload, regions, last, -1);
    assertEquals(p.encoding, "zstd");
    const job = { encoding: "zstd" as const, count: p.pages.length, pageSize: 4096 };
    let flipped = -1;
    let reason = "";
    for (let i = 0; i < p.data.length && flipped < 0; i++) {
      p.data[i] ^= 0xff;
      try {
        decodePageRecord(payload, regions, last, -1);
        const r = digestPageData({ ...job, data: p.data });
        if ("error" in r) [flipped, reason] = [i, r.error];
      } catch {
        // The decoder sees this one: not what the test is after.
      }
      if (flipped < 0) p.data[i] ^= 0xff;
    }
    assert(flipped >= 0, "no byte of the frame breaks only its decompression");
    v.setUint32(last + 8 + length, crc32c(bytes.subarray(last, last + 8 + length)), true);
    await Deno.writeFile(path, bytes);
    const chain = await openChain(path);
    try {
      for (const [workers, share] of [[1, "all"], [1, "none"], [0, "auto"]] as const) {
        await t.step(`${workers} workers, read-back share ${share}`, async () => {
          const e = await assertRejects(
            () => flattenChainToFile(chain, `${dir}/out.lsnap`, { workers, readBackShare: share }),
            FlattenError,
            "Cannot flatten: the output does not read back: Cannot read record ",
          );
          assert(/ at byte \d+: /.test(e.message) && e.message.includes(reason), e.message);
          assert(
            e.message.endsWith(`(in the record copied from byte ${last} of '${path}')`),
            e.message,
          );
          assertEquals(
            [...Deno.readDirSync(dir)].map((x) => x.name).sort(),
            ["s-0.lsnap", "s-1.lsnap", "s-2.lsnap"],
          );
        });
      }
    } finally {
      chain.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("flattenChain() leaves a sink the chunks it kept, read back in a worker or not", async () => {
  const dir = await tempDir();
  try {
    const steps = await writeChain(dir, 2, { pages: 64, seed: 27, zero: 0.1 });
    const chain = await openChain(steps[2].path);
    try {
      const file = await flattenChainToFile(chain, `${dir}/flat.lsnap`, { workers: 0 });
      const expected = await Deno.readFile(`${dir}/flat.lsnap`);
      for (const workers of [0, 1]) {
        const kept: Uint8Array[] = [];
        const s = await flattenChain(
          chain,
          new WritableStream({ write: (chunk) => void kept.push(chunk) }),
          { workers },
        );
        assertEquals(toHex(s.contentDigest), toHex(file.contentDigest));
        const all = new Uint8Array(kept.reduce((n, c) => n + c.length, 0));
        let at = 0;
        for (const c of kept) {
          all.set(c, at);
          at += c.length;
        }
        assertEquals(all, expected, `${workers} workers`);
      }
    } finally {
      chain.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
