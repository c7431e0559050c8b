import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert/mod.js";
import { computeContentDigest, PageHashTable } from "./content_digest.ts";
import { toHex } from "./checksum.ts";
import { UnsupportedError } from "./errors.ts";
import { readSnapshot, SnapshotStreamReader } from "./stream_reader.ts";
import { diffParentOf, SnapshotWriter } from "./writer.ts";

const PS = 4096;
const description = {
  regions: [{ name: "ram", base: 0x8000_0000, size: 32 * PS, pageSize: PS }],
  creator: "diff_writer_test",
  createdAt: 0,
};
const uart = (lsr: number) => ({
  id: "uart",
  instance: 0,
  version: 1,
  state: new Uint8Array([lsr]),
});

function collect(): { sink: WritableStream<Uint8Array>; bytes: () => Uint8Array } {
  const chunks: Uint8Array[] = [];
  return {
    sink: new WritableStream({ write: (c) => void chunks.push(c) }),
    bytes: () => {
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let o = 0;
      for (const c of chunks) out.set(c, (o += c.length) - c.length);
      return out;
    },
  };
}

Deno.test("SnapshotWriter with parent declares the whole state's content digest", async () => {
  const ram = new Uint8Array(32 * PS);
  for (let p = 0; p < 16; p++) ram.fill(p + 1, p * PS, (p + 1) * PS);
  const full = collect();
  const w0 = await SnapshotWriter.create(full.sink, description, { keepPageHashes: true });
  await w0.writePages(0, 0, ram);
  await w0.writeDevice(uart(1));
  const s0 = await w0.close();
  assertEquals(s0.depth, 0);
  assert(s0.pageHashes !== undefined && s0.pageHashes.count() === 16);

  // The guest writes page 20, zeroes page 3 and rewrites page 5.
  ram.fill(0xaa, 20 * PS, 21 * PS);
  ram.fill(0, 3 * PS, 4 * PS);
  ram.fill(0xbb, 5 * PS, 6 * PS);
  const diff = collect();
  const w1 = await SnapshotWriter.create(diff.sink, description, {
    parent: diffParentOf(s0, "/some/dir/s-0.lsnap"),
    keepPageHashes: true,
  });
  await w1.writePages(0, 20, ram.subarray(20 * PS, 21 * PS));
  await w1.writeZeroPages(0, [3]);
  await w1.writePages(0, 5, ram.subarray(5 * PS, 6 * PS));
  await w1.writeDevice(uart(2));
  const s1 = await w1.close();
  const expected = await computeContentDigest(description, [ram], [uart(2)]);
  assertEquals(toHex(s1.contentDigest), toHex(expected));
  assertEquals(s1.depth, 1);
  assertEquals(toHex(s1.rootFileDigest), toHex(s0.fileDigest));
  // The parent's table is left as it was: the next diff on s0 starts from s0's state.
  assertEquals(s0.pageHashes!.count(), 16);
  assertEquals(s1.pageHashes!.count(), 16);

  // What a 1.0 reader meets as record 1: type 0x0006, unknown to it, flagged critical, so it
  // refuses the file (FORMAT.md §3.2) instead of taking the changes for a whole state.
  const bytes = diff.bytes();
  const view = new DataView(bytes.buffer);
  const second = 16 + 8 + view.getUint32(16 + 4, true) + 4;
  assertEquals([view.getUint16(second, true), view.getUint16(second + 2, true)], [0x0006, 0x0001]);
  assertEquals([view.getUint16(8, true), view.getUint16(10, true)], [1, 1], "format 1.1");

  // A reader refuses the diff by default, and checks it against the parent's pages when told.
  await assertRejects(
    () => readSnapshot(ReadableStream.from([diff.bytes()])),
    UnsupportedError,
    "Cannot read record 1 at byte ",
  );
  const r = new SnapshotStreamReader(ReadableStream.from([diff.bytes()]), {
    diffs: "read",
    parentPages: s0.pageHashes,
  });
  const zeroRecords: number[] = [];
  for await (const rec of r.records()) {
    if (rec.kind === "pages" && rec.encoding === "zero") zeroRecords.push(...rec.pages);
  }
  assertEquals(zeroRecords, [3]);
  assertEquals(r.parent?.parentName, "s-0.lsnap");
  assertEquals(toHex(r.contentDigest!), toHex(expected));
  assertEquals(r.pageHashes?.count(), 16);
});

Deno.test("SnapshotWriter refuses a parent of another machine", async () => {
  const other = new PageHashTable([{ name: "ram", base: 0, size: 32 * PS, pageSize: PS }]);
  await assertRejects(
    () =>
      SnapshotWriter.create(collect().sink, description, {
        parent: {
          contentDigest: new Uint8Array(32),
          fileDigest: new Uint8Array(32),
          rootFileDigest: new Uint8Array(32),
          name: "p.lsnap",
          depth: 0,
          pageHashes: other,
        },
      }),
    Error,
    "Cannot write a diff on 'p.lsnap': the parent's regions are not this machine's",
  );
  assertThrows(
    () => diffParentOf({ contentDigest: new Uint8Array(32) } as never, "x.lsnap"),
    Error,
    "did not keep its page hashes",
  );
});

Deno.test("a diff whose writer was aborted or killed leaves no file that passes as complete", async () => {
  const dir = await Deno.makeTempDir({ prefix: "diff_killed_" });
  try {
    const { writeChain } = await import("./_chain_test_util.ts");
    const steps = await writeChain(dir, 1, { pages: 64, seed: 41 });
    // Aborted: nothing at the path, no temporary.
    const machine = {
      regions: [...steps[1].summary.pageHashes!.regions],
      creator: "t",
      createdAt: 0,
    };
    const w = await SnapshotWriter.createFile(`${dir}/s-2.lsnap`, machine, {
      parent: diffParentOf(steps[1].summary, steps[1].path),
    });
    await w.writePages(0, 1, new Uint8Array(PS).fill(9));
    await w.abort();
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["s-0.lsnap", "s-1.lsnap"]);

    // Killed outright in the middle of its pages: the path never appears, and what it left is
    // an incomplete temporary that no reader takes for a diff.
    const script = `${dir}/writer.ts`;
    await Deno.writeTextFile(
      script,
      `import { readDiffParent } from ${
        JSON.stringify(new URL("./chain.ts", import.meta.url).href)
      };
import { SnapshotWriter } from ${JSON.stringify(new URL("./writer.ts", import.meta.url).href)};
const parent = await readDiffParent(${JSON.stringify(steps[1].path)});
const w = await SnapshotWriter.createFile(${JSON.stringify(`${dir}/s-2.lsnap`)},
  { regions: [...parent.pageHashes.regions], creator: "t", createdAt: 0 }, { parent, batchBytes: 4096 });
for (let p = 0; p < 32; p++) await w.writePages(0, p, new Uint8Array(4096).fill(p + 1));
await w.flush();
console.log("written");
await new Promise(() => setInterval(() => {}, 1000));
`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      // The repository's import map: the script lives in the temporary directory.
      args: ["run", "-A", "--config", new URL("../deno.json", import.meta.url).pathname, script],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.getReader();
    const first = await reader.read();
    assertEquals(new TextDecoder().decode(first.value), "written\n");
    child.kill("SIGKILL");
    await child.status;
    reader.releaseLock();
    await child.stdout.cancel();
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert(!names.includes("s-2.lsnap"), names.join());
    const temp = names.find((n) => n.startsWith("s-2.lsnap.tmp-"));
    assert(temp !== undefined, `the killed writer's temporary: ${names.join()}`);
    const { TruncatedError } = await import("./errors.ts");
    const { SnapshotFileReader } = await import("./file_reader.ts");
    // The random-access reader finds no footer; the streaming reader reports the truncation.
    const r = await SnapshotFileReader.open(`${dir}/${temp}`, { diffs: "read" });
    assert(!r.complete && r.parent !== null && r.parent.depth === 2);
    r.close();
    await assertRejects(
      async () => {
        const s = new SnapshotStreamReader((await Deno.open(`${dir}/${temp}`)).readable, {
          diffs: "read",
        });
        for await (const _ of s.records()) { /* to the end */ }
      },
      TruncatedError,
      "the file is incomplete",
    );
    const { openChain, ChainError } = await import("./chain.ts");
    const e = await assertRejects(() => openChain(`${dir}/${temp}`), ChainError);
    assertEquals(e.problem, "incomplete");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
