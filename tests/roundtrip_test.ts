import { assert, assertEquals, assertNotEquals } from "@std/assert/mod.js";
import { readSnapshot } from "../format/stream_reader.ts";
import { SnapshotFileReader } from "../format/file_reader.ts";
import { computeContentDigest } from "../format/content_digest.ts";
import { toHex } from "../format/checksum.ts";
import { SnapshotWriter } from "../format/writer.ts";
import {
  chunked,
  description,
  devices,
  makeRam,
  memorySink,
  PAGE,
  shuffle,
  writeToBytes,
} from "./_snapshots.ts";

const PAGES = 96;

async function digestOf(bytes: Uint8Array): Promise<string> {
  return toHex((await readSnapshot(chunked(bytes, 65536))).contentDigest);
}

Deno.test("SnapshotWriter round trips pages written in random order", async () => {
  const d = description(PAGES);
  const ram = makeRam(PAGES, 1);
  const bytes = await writeToBytes({
    description: d,
    ram,
    order: shuffle([...Array(PAGES).keys()], 7),
    batch: 5,
  });
  const snap = await readSnapshot(chunked(bytes, 4096));
  assertEquals(snap.regions[0], ram);
  assertEquals(snap.devices.map((x) => x.id), ["clint", "hart", "uart"]);
  assertEquals(toHex(snap.contentDigest), toHex(await computeContentDigest(d, [ram], devices())));
});

Deno.test("SnapshotWriter keeps the last occurrence of a page written twice", async () => {
  const d = description(8);
  const sink = memorySink();
  const w = await SnapshotWriter.create(sink.stream, d);
  const a = new Uint8Array(PAGE).fill(1);
  const b = new Uint8Array(PAGE).fill(2);
  await w.writePages(0, 3, a);
  await w.writePages(0, 4, a);
  await w.writePages(0, 3, b); // same batch: in-record order decides
  await w.writePages(0, 4, new Uint8Array(PAGE)); // zero after data: separate records, order kept
  await w.writePages(0, 5, new Uint8Array(PAGE));
  await w.writePages(0, 5, a); // data after zero
  await w.close();
  const snap = await readSnapshot(chunked(sink.bytes(), 100));
  assertEquals(snap.regions[0].subarray(3 * PAGE, 4 * PAGE), b);
  assertEquals(snap.regions[0].subarray(4 * PAGE, 5 * PAGE), new Uint8Array(PAGE));
  assertEquals(snap.regions[0].subarray(5 * PAGE, 6 * PAGE), a);
  const ram = new Uint8Array(8 * PAGE);
  ram.set(b, 3 * PAGE);
  ram.set(a, 5 * PAGE);
  assertEquals(toHex(snap.contentDigest), toHex(await computeContentDigest(d, [ram], [])));
  const path = await Deno.makeTempFile();
  await Deno.writeFile(path, sink.bytes());
  const r = await SnapshotFileReader.open(path);
  assertEquals(await r.readRegion(0), ram);
  r.close();
  await Deno.remove(path);
});

Deno.test("content digest is the same across orders, batch sizes, codecs and duplicates", async () => {
  const d = description(PAGES);
  const ram = makeRam(PAGES, 2);
  const all = [...Array(PAGES).keys()];
  const variants = [
    { order: all, batch: 1 },
    { order: shuffle(all, 3), batch: 7, options: { codec: "raw" as const } },
    { order: shuffle(all, 4), batch: 96, options: { batchBytes: 4096 } },
    {
      order: [...shuffle(all, 5), ...shuffle(all, 6).slice(0, 30)],
      batch: 3,
      options: { level: 5, index: false },
    },
  ];
  const digests = [];
  const sizes = [];
  for (const v of variants) {
    const bytes = await writeToBytes({ description: d, ram, ...v });
    sizes.push(bytes.length);
    digests.push(await digestOf(bytes));
  }
  assertEquals(new Set(digests).size, 1);
  assertEquals(new Set(sizes).size, 4); // really different files
  const changed = ram.slice();
  changed[PAGE * 50 + 9] ^= 1;
  assertNotEquals(await digestOf(await writeToBytes({ description: d, ram: changed })), digests[0]);
});

Deno.test("SnapshotWriter writes zero pages with no payload and uses every encoding", async () => {
  const d = description(PAGES);
  const ram = makeRam(PAGES, 9);
  const random = new Uint8Array(PAGE);
  crypto.getRandomValues(random);
  ram.set(random, 0); // incompressible: its batch alone falls back to raw
  for (const codec of ["zstd", "raw"] as const) {
    const sink = memorySink();
    const w = await SnapshotWriter.create(sink.stream, d, { codec, batchBytes: PAGE });
    await w.writePages(0, 0, ram);
    await w.close();
    const bytes = sink.bytes();
    const encodings = new Set<string>();
    let zeroBytes = -1;
    const { SnapshotStreamReader } = await import("../format/stream_reader.ts");
    const reader = new SnapshotStreamReader(chunked(bytes, 999));
    for await (const r of reader.records()) {
      if (r.kind === "pages") {
        encodings.add(r.encoding);
        if (r.encoding === "zero") zeroBytes = r.data === null ? 0 : r.data.length;
      }
    }
    assertEquals(zeroBytes, 0);
    assertEquals(
      [...encodings].sort(),
      codec === "zstd" ? ["raw", "zero", "zstd"] : ["raw", "zero"],
    );
    assertEquals((await readSnapshot(chunked(bytes, 4096))).regions[0], ram);
  }
});

Deno.test("SnapshotFileReader reads the same state with and without an index", async () => {
  const d = description(PAGES, true);
  const ram = makeRam(PAGES, 11);
  const rom = new Uint8Array(4 * 512).fill(0xaa);
  const results = [];
  for (const index of [true, false]) {
    const bytes = await writeToBytes({
      description: d,
      ram,
      order: shuffle([...Array(PAGES).keys()], 12),
      batch: 4,
      options: { index },
      extra: async (w) => await w.writePages(1, 0, rom),
    });
    const path = await Deno.makeTempFile();
    await Deno.writeFile(path, bytes);
    const r = await SnapshotFileReader.open(path);
    assertEquals(r.indexed, index);
    assert(r.complete);
    assertEquals(await r.readRegion(0), ram);
    assertEquals(await r.readRegion(1), rom);
    assertEquals(await r.readPage(0, 17), ram.slice(17 * PAGE, 18 * PAGE));
    const devs = await r.devices();
    results.push(devs);
    assertEquals(toHex((await r.readDevice("hart", 0))!.state), toHex(devices()[1].state));
    r.close();
    const snap = await readSnapshot(chunked(bytes, 65536));
    assertEquals(snap.devices, devs);
    await Deno.remove(path);
  }
  assertEquals(results[0], results[1]);
});

Deno.test("SnapshotStreamReader reads through an OS pipe in small chunks", async () => {
  const d = description(PAGES);
  const ram = makeRam(PAGES, 13);
  const bytes = await writeToBytes({
    description: d,
    ram,
    order: shuffle([...Array(PAGES).keys()], 14),
    batch: 9,
  });
  const cat = new Deno.Command("cat", { stdin: "piped", stdout: "piped" }).spawn();
  const feeding = (async () => {
    const w = cat.stdin.getWriter();
    for (let i = 0; i < bytes.length; i += 333) await w.write(bytes.slice(i, i + 333));
    await w.close();
  })();
  const snap = await readSnapshot(cat.stdout);
  await feeding;
  await cat.status;
  assertEquals(snap.regions[0], ram);
  const tiny = await readSnapshot(chunked(bytes, 17));
  assertEquals(toHex(tiny.contentDigest), toHex(snap.contentDigest));
});

Deno.test("SnapshotWriter.createFile renames only after the footer and cleans up on abort", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/snap.lsnap`;
  const w = await SnapshotWriter.createFile(path, description(4));
  await w.writePages(0, 0, new Uint8Array(PAGE).fill(1));
  const during = [...Deno.readDirSync(dir)].map((e) => e.name);
  assertEquals(during.length, 1);
  assert(during[0].startsWith("snap.lsnap.tmp-"));
  await w.close();
  assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["snap.lsnap"]);
  const w2 = await SnapshotWriter.createFile(`${dir}/other.lsnap`, description(4));
  await w2.writePages(0, 1, new Uint8Array(PAGE).fill(1));
  await w2.abort();
  assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["snap.lsnap"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("SnapshotWriter writes the same bytes with 0, 1 and 3 compression workers", async () => {
  const d = description(PAGES);
  const ram = makeRam(PAGES, 15);
  const order = [...shuffle([...Array(PAGES).keys()], 16), 3, 5, 3];
  const outputs = [];
  for (const workers of [0, 1, 3]) {
    outputs.push(
      await writeToBytes({
        description: d,
        ram,
        order,
        batch: 2,
        options: { workers, batchBytes: 8 * PAGE },
      }),
    );
  }
  assertEquals(outputs[1], outputs[0]);
  assertEquals(outputs[2], outputs[0]);
  assertEquals((await readSnapshot(chunked(outputs[2], 5000))).regions[0], ram);
});
