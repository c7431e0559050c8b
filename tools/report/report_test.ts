import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert/mod.js";
import { SnapshotWriter } from "../../format/writer.ts";
import { writeChain } from "../../format/_chain_test_util.ts";
import {
  PROLOGUE_SIZE,
  RECORD_HEAD_SIZE,
  RECORD_TAIL_SIZE,
  RecordType,
} from "../../format/constants.ts";
import { TimelineSampler } from "../../emulator/snapshot/metrics.ts";
import { loadFixture } from "../../qemu/_fixtures_test_util.ts";
import { inspectSnapshot } from "../inspect.ts";
import { packArray, PageKind, type ReportData, unpackArray } from "./data.ts";
import { gatherReport } from "./gather.ts";
import { renderReport } from "./html.ts";
import { gatherFile } from "./gather.ts";
import { MetricsError, parseMetrics } from "./metrics_data.ts";
import { main as reportMain } from "../report_command.ts";

const PAGE = 4096;

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

/** A snapshot of two regions written in a shuffled order, with repeats and zero pages. */
async function writeMessy(path: string, seed: number): Promise<void> {
  const r = rng(seed);
  const regions = [
    { name: "ram", base: 0x8000_0000, size: 512 * PAGE, pageSize: PAGE },
    { name: "rom", base: 0x1000, size: 8 * 512, pageSize: 512 },
  ];
  const w = await SnapshotWriter.createFile(path, { regions, creator: "test", createdAt: 0 });
  for (let i = 0; i < 900; i++) {
    const page = Math.floor(r() * 512);
    const data = new Uint8Array(PAGE);
    if (r() < 0.8) data.fill(1 + Math.floor(r() * 200), 0, 1 + Math.floor(r() * PAGE));
    await w.writePages(0, page, data);
  }
  await w.writePages(1, 2, new Uint8Array(3 * 512).fill(9));
  await w.close();
}

/** Expands a region's runs to one entry per page: kind, copies, record. */
async function expand(region: ReportData["files"][0]["regions"][0]) {
  const count = await unpackArray(region.runs.count);
  const kind = await unpackArray(region.runs.kind);
  const copies = await unpackArray(region.runs.copies);
  const record = await unpackArray(region.runs.record);
  const out: [number, number, number][] = [];
  for (let i = 0; i < count.length; i++) {
    for (let k = 0; k < count[i]; k++) out.push([kind[i], copies[i], record[i]]);
  }
  return out;
}

Deno.test("gatherReport() page runs give each page's state, copies and last record as inspect's page map", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/m.lsnap`;
    await writeMessy(path, 7);
    const data = await gatherReport([path]);
    const f = data.files[0];
    const inspect = await inspectSnapshot((await Deno.open(path)).readable, { pages: true });
    for (const [ri, region] of f.regions.entries()) {
      const pages = await expand(region);
      assertEquals(pages.length, region.pages);
      const want: [number, number, number][] = Array.from(
        { length: region.pages },
        () => [PageKind.ABSENT, 0, -1],
      );
      for (const run of inspect.pageMap!) {
        if (run.region !== inspect.regions[ri].name) continue;
        for (let p = run.first; p < run.first + run.count; p++) {
          want[p] = [
            run.state === "zero" ? PageKind.ZERO : PageKind.DATA,
            run.occurrences,
            run.record.index,
          ];
        }
      }
      assertEquals(pages, want, `region ${region.name}`);
    }
    const { pageMap: _, ...plain } = inspect;
    assertEquals(f.inspect, plain);
    const offsets = await unpackArray(f.records.offset);
    const bytes = await unpackArray(f.records.bytes);
    assertEquals(offsets.length, inspect.records);
    for (let i = 0; i + 1 < offsets.length; i++) {
      assertEquals(offsets[i] + bytes[i], offsets[i + 1]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gatherFile() segments hold each record's pages exactly, and within the cap a sample of single pages", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/m.lsnap`;
    await writeMessy(path, 11);
    // Every (record, page) occurrence, from the reader itself.
    const occurrences = new Set<string>();
    const reader = (await import("../../format/stream_reader.ts")).SnapshotStreamReader;
    const rd = new reader((await Deno.open(path)).readable);
    for await (const r of rd.records()) {
      if (r.kind === "pages") {
        for (const p of r.pages) occurrences.add(`${r.recordIndex}:${r.region}:${p}`);
      }
    }
    const exact = (await gatherFile(path)).report.segments;
    assertEquals(exact.gap, 1);
    const seen = new Set<string>();
    const rec = await unpackArray(exact.record);
    const reg = await unpackArray(exact.region);
    const first = await unpackArray(exact.first);
    const count = await unpackArray(exact.count);
    for (let s = 0; s < rec.length; s++) {
      for (let p = first[s]; p < first[s] + count[s]; p++) seen.add(`${rec[s]}:${reg[s]}:${p}`);
    }
    assertEquals(seen, occurrences);
    // Over the cap, single pages are sampled evenly; runs of several pages all stay.
    const capped = (await gatherFile(path, { maxSegments: 40 })).report.segments;
    assert(capped.sampled > 1 || capped.gap > 1);
    const n = capped.record.length;
    assert(n <= 40, `${n} segments`);
    const crec = await unpackArray(capped.record);
    const creg = await unpackArray(capped.region);
    const cfirst = await unpackArray(capped.first);
    const ccount = await unpackArray(capped.count);
    const kept = new Set<string>();
    for (let s = 0; s < n; s++) {
      for (let p = cfirst[s]; p < cfirst[s] + ccount[s]; p++) {
        kept.add(`${crec[s]}:${creg[s]}:${p}`);
      }
    }
    if (capped.gap === 1) {
      for (const k of kept) assert(occurrences.has(k), `${k} is a page of that record`);
      for (let s = 0; s < rec.length; s++) {
        if (count[s] > 1) assert(kept.has(`${rec[s]}:${reg[s]}:${first[s]}`), `run ${s} is kept`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gatherFile() a QEMU batch's page i is the page record at offset + i × stride", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bytes = await loadFixture("multipass");
    const path = `${dir}/m.qemu`;
    await Deno.writeFile(path, bytes);
    const f = (await gatherFile(path)).report;
    assertEquals(f.kind, "qemu");
    const kinds = f.records.kinds;
    const offset = await unpackArray(f.records.offset);
    const kind = await unpackArray(f.records.kind);
    const stride = await unpackArray(f.records.stride);
    const pages = await unpackArray(f.records.pages);
    const segRec = await unpackArray(f.segments.record);
    const segFirst = await unpackArray(f.segments.first);
    const firstOf = new Map<number, number>();
    for (let s = 0; s < segRec.length; s++) {
      if (!firstOf.has(segRec[s])) firstOf.set(segRec[s], segFirst[s]);
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let checked = 0;
    for (let r = 0; r < offset.length; r++) {
      if (kinds[kind[r]] !== "pages") continue;
      for (let i = 0; i < pages[r]; i++) {
        // A RAM record starts with a big-endian u64: the page's address in its block | flags.
        const at = offset[r] + i * stride[r];
        const word = view.getBigUint64(at);
        assertEquals(Number(word & ~0xfffn), (firstOf.get(r)! + i) * PAGE, `record ${r} page ${i}`);
        checked++;
      }
    }
    assert(checked > 1000, `${checked} page records checked`);
    // Runs of consecutive page records are batched (zero pages come in long runs): a batch of
    // one page each would make the check above hold whatever the stride.
    const encoding = await unpackArray(f.records.encoding);
    for (const name of ["raw", "zero"]) {
      const e = f.records.encodings.indexOf(name);
      let batches = 0;
      let records = 0;
      for (let r = 0; r < kind.length; r++) {
        if (kinds[kind[r]] !== "pages" || encoding[r] !== e) continue;
        batches++;
        records += pages[r];
      }
      assert(batches < records, `${name}: ${batches} batches for ${records} page records`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gatherReport() diffs regions matched by layout when their names differ", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const write = async (path: string, name: string, fill: (p: number) => number) => {
      const regions = [{ name, base: 0x8000_0000, size: 16 * PAGE, pageSize: PAGE }];
      const w = await SnapshotWriter.createFile(path, { regions, creator: "t", createdAt: 0 });
      for (let p = 0; p < 16; p++) await w.writePages(0, p, new Uint8Array(PAGE).fill(fill(p)));
      await w.close();
    };
    await write(`${dir}/a.lsnap`, "ram", (p) => p < 8 ? p + 1 : 0);
    // Pages 0-1 same, 2-3 changed, 4 zeroed, 9 filled.
    await write(
      `${dir}/b.lsnap`,
      "memory",
      (p) => p < 2 ? p + 1 : p < 4 ? 99 : p === 4 ? 0 : p < 8 ? p + 1 : p === 9 ? 5 : 0,
    );
    const d = (await gatherReport([`${dir}/a.lsnap`, `${dir}/b.lsnap`])).diffs[0];
    assertEquals(d.regions.length, 1);
    assertEquals([d.regions[0].changed, d.regions[0].zeroed, d.regions[0].filled], [2, 1, 1]);
    assertEquals(d.unmatched, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("packArray() round trips every type; unpackArray() refuses a length that does not match", async () => {
  for (
    const [type, values] of [
      ["u8", [0, 255]],
      ["u16", [1, 65535]],
      ["u32", [0, 4294967295]],
      ["i32", [-1, 2147483647]],
      ["f64", [0.5, 2 ** 52]],
    ] as const
  ) {
    const p = await packArray(type, values);
    assertEquals(Array.from(await unpackArray(p)), [...values]);
  }
  const p = await packArray("u32", [1, 2, 3]);
  await assertRejects(
    () => unpackArray({ ...p, length: 4 }),
    Error,
    "12 bytes for 4 elements of u32",
  );
});

Deno.test("parseMetrics() names the line that is not JSON and the timeline field that is wrong", () => {
  assertThrows(
    () => parseMetrics('{"a":1}\n{"b":\n', "m.json"),
    MetricsError,
    "m.json: line 2 is not JSON",
  );
  const timeline = {
    intervalMs: 2,
    ms: [0, 2],
    pagesWritten: [0, 1],
    bufferBytes: [0],
    guestStallUs: [0, 0],
    pauses: [],
    passes: [],
  };
  assertThrows(
    () => parseMetrics(JSON.stringify({ timeline })),
    MetricsError,
    "snapshot 1: timeline.bufferBytes has 1 samples, timeline.ms 2",
  );
  const good = { ...timeline, bufferBytes: [0, 0] };
  assertEquals(parseMetrics(`[${JSON.stringify({ timeline: good })}]`)[0].timeline, good);
});

Deno.test("TimelineSampler keeps at most maxSamples, spans the whole snapshot and keeps the buffer's peak", () => {
  const s = new TimelineSampler(1000, { intervalMs: 1, maxSamples: 16 });
  for (let t = 0; t <= 500; t++) {
    s.sample(1000 + t, {
      pagesWritten: t,
      bufferBytes: t === 333 ? 1_000_000 : t,
      guestStallUs: t * 2,
    });
  }
  s.pause("instant", 1000, 1000.2);
  const tl = s.finish(1501, {
    pagesWritten: 501,
    bufferBytes: 0,
    guestStallUs: 1002,
  });
  assert(tl.ms.length <= 16, `${tl.ms.length} samples`);
  assertEquals(tl.ms[tl.ms.length - 1], 501);
  assertEquals(tl.pagesWritten[tl.pagesWritten.length - 1], 501);
  assertEquals(Math.max(...tl.bufferBytes), 1_000_000, "the peak survives thinning");
  assert(tl.intervalMs >= 32, `interval ${tl.intervalMs}`);
  for (let i = 1; i < tl.ms.length; i++) assert(tl.ms[i] > tl.ms[i - 1]);
  assertEquals(tl.pauses, [{ reason: "instant", startMs: 0, endMs: 0.2 }]);
  // A peak in whichever sample thinning drops still shows in the one that stays.
  for (let spike = 0; spike < 12; spike++) {
    const t = new TimelineSampler(0, { intervalMs: 1, maxSamples: 4 });
    for (let ms = 0; ms < 12; ms++) {
      t.sample(ms, { pagesWritten: ms, bufferBytes: ms === spike ? 100 : 0, guestStallUs: 0 });
    }
    const got = t.finish(12, { pagesWritten: 12, bufferBytes: 0, guestStallUs: 0 });
    assertEquals(Math.max(...got.bufferBytes), 100, `spike at ${spike}: ${got.bufferBytes}`);
  }
});

Deno.test("renderReport() keeps a file name holding </script> inside the embedded JSON", () => {
  const path = "x</script><script>alert(1)</script><!--.lsnap";
  const html = renderReport({
    format: "livesnap-report",
    version: 2,
    generator: "test",
    createdAt: "2025-01-01T00:00:00.000Z",
    damaged: false,
    files: [],
    chains: [],
    diffs: [],
    metricsPath: path,
    timelines: [],
  });
  const m = /<script type="application\/json" id="livesnap-data">(.*?)<\/script>/s.exec(html);
  if (m === null) throw new Error("no data set in the page");
  assertEquals(JSON.parse(m[1]).metricsPath, path);
  assert(!html.includes("<script>alert(1)"));
});

/** Byte offset of the first PAGES record of an .lsnap file (FORMAT.md §3). */
function firstPagesRecordOffset(bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = PROLOGUE_SIZE;
  while (at + RECORD_HEAD_SIZE <= bytes.length) {
    if (view.getUint16(at, true) === RecordType.PAGES) return at;
    at += RECORD_HEAD_SIZE + view.getUint32(at + 4, true) + RECORD_TAIL_SIZE;
  }
  throw new Error("no PAGES record");
}

/** Pages whose bytes differ between two RAM images, split as `diffFiles` counts them. */
function ramDiff(a: Uint8Array, b: Uint8Array) {
  const out = { changed: 0, zeroed: 0, filled: 0 };
  for (let at = 0; at < a.length; at += PAGE) {
    const x = a.subarray(at, at + PAGE);
    const y = b.subarray(at, at + PAGE);
    if (x.every((v, i) => v === y[i])) continue;
    const zx = x.every((v) => v === 0);
    const zy = y.every((v) => v === 0);
    if (zy) out.zeroed++;
    else if (zx) out.filled++;
    else out.changed++;
  }
  return out;
}

Deno.test("gatherReport() a chain given in any order, or its newest diff alone: links in chain order with each file's digests, parent link and pages as inspect says", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const steps = await writeChain(dir, 2, { pages: 96, seed: 5, dirty: 0.2, zero: 0.08 });
    const inspects = [];
    for (const s of steps) {
      using f = await Deno.open(s.path);
      inspects.push(await inspectSnapshot(f.readable));
    }
    const paths = steps.map((s) => s.path);
    for (const order of [[2], [1, 0, 2], [0, 1, 2]]) {
      const what = `inputs s-${order.join(", s-")}`;
      const data = await gatherReport(order.map((k) => paths[k]));
      assertEquals(data.damaged, false, what);
      assertEquals(data.chains.length, 1, what);
      const c = data.chains[0];
      assertEquals([c.ok, c.problem, c.head], [true, null, order.indexOf(2)], what);
      assertEquals(c.links.map((l) => l.path), paths, what);
      assertEquals(c.links.map((l) => l.file), [0, 1, 2].map((k) => order.indexOf(k)), what);
      for (const [k, l] of c.links.entries()) {
        const want = inspects[k];
        assertEquals(l.depth, k, what);
        assertEquals(l.parent, want.parent, `${what}: link ${k}'s PARENT record`);
        assertEquals([l.contentDigest, l.fileDigest], [want.digests.content, want.digests.file]);
        assertEquals(l.bytes, want.bytes);
        assertEquals(l.pages, {
          present: want.pages.present,
          zero: want.pages.zero,
          data: want.pages.present - want.pages.zero,
        });
        assertEquals(l.broken, null);
        if (k > 0) {
          // What each diff changed: the pages its writer wrote, explicit zero pages apart.
          assertEquals(l.pages!.present, steps[k].written.length + steps[k].zeroed.length);
          assertEquals(l.pages!.zero, steps[k].zeroed.length);
        }
      }
      for (const [i, k] of order.entries()) {
        const f = data.files[i];
        assertEquals(f.parent, inspects[k].parent, `${what}: file ${i}'s parent`);
        const chain = (f.inspect as { chain?: { ok: boolean; files: unknown[] } }).chain;
        if (k === 0) assertEquals(chain, undefined);
        else assertEquals([chain?.ok, chain?.files.length], [true, k + 1], "as inspect --json");
      }
      // The diff map between two files of the chain compares the states they stand for.
      for (const d of data.diffs) {
        const [ka, kb] = [order[d.a], order[d.b]];
        assertEquals(d.unmatched, [], what);
        const { changed, zeroed, filled } = d.regions[0];
        assertEquals(
          { changed, zeroed, filled },
          ramDiff(steps[ka].ram, steps[kb].ram),
          `${what}: s-${ka} against s-${kb}`,
        );
      }
    }
    // The parents given as inputs where no name hint leads (the newest diff moved away).
    await Deno.mkdir(`${dir}/away`);
    await Deno.rename(paths[2], `${dir}/away/newest.lsnap`);
    const away = await gatherReport([`${dir}/away/newest.lsnap`, paths[1], paths[0]]);
    assertEquals([away.chains[0].ok, away.chains[0].links.map((l) => l.file)], [true, [2, 1, 0]]);
    assertEquals(away.diffs.map((d) => d.unmatched), [[], []]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gatherReport() a chain whose parent was replaced by another file, or is missing: the refused link marked, exit 1", async () => {
  const dir = await Deno.makeTempDir();
  const quiet = console.error;
  console.error = () => {};
  try {
    const steps = await writeChain(dir, 2, { pages: 64, seed: 5 });
    await Deno.mkdir(`${dir}/other`);
    const other = await writeChain(`${dir}/other`, 1, { pages: 64, seed: 9 });
    await Deno.copyFile(steps[1].path, `${dir}/s-1.good`);
    await Deno.copyFile(other[1].path, steps[1].path);
    const data = await gatherReport([steps[2].path]);
    assertEquals(data.damaged, true);
    const c = data.chains[0];
    assertEquals([c.ok, c.problem, c.head], [false, "other-chain", 0]);
    assert(c.message!.includes("link s-2.lsnap → s-1.lsnap"), c.message!);
    assertEquals(c.links.map((l) => [l.path, l.broken === null]), [[steps[2].path, false]]);
    assertEquals(await reportMain([steps[2].path, "--out", `${dir}/r.html`]), 1);
    const html = await Deno.readTextFile(`${dir}/r.html`);
    assert(html.includes("other-chain"), "the page holds the refused link");
    // The diff map does not take the unchanged pages of a diff with no usable chain for zero.
    const all = await gatherReport(steps.map((s) => s.path));
    assertEquals(all.diffs.map((d) => d.regions.length), [0, 0]);
    assert(all.diffs[0].unmatched.some((u) => u.file === "b" && u.reason.includes("chain")));
    // A parent found by its name whose trailer holds but whose pages are damaged.
    await Deno.copyFile(`${dir}/s-1.good`, steps[1].path);
    const bytes = await Deno.readFile(steps[1].path);
    const at = firstPagesRecordOffset(bytes);
    bytes[at + 40] ^= 0xff;
    await Deno.writeFile(steps[1].path, bytes);
    const hurt = await gatherReport([steps[2].path]);
    assertEquals([hurt.damaged, hurt.chains[0].ok, hurt.chains[0].problem], [
      true,
      false,
      "damaged-file",
    ]);
    assertEquals(hurt.chains[0].links.map((l) => l.broken !== null), [false, true, false]);
    assertEquals(await reportMain([steps[2].path, "--out", `${dir}/r.html`]), 1);
    await Deno.remove(steps[1].path);
    const missing = await gatherReport([steps[2].path]);
    assertEquals([missing.chains[0].ok, missing.chains[0].problem], [false, "missing-parent"]);
    assertEquals(await reportMain([steps[2].path, "--out", `${dir}/r.html`]), 1);
  } finally {
    console.error = quiet;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("livesnap report exits 2 without --out or with a bad metrics file, 1 for a damaged file, 0 else", async () => {
  const dir = await Deno.makeTempDir();
  const quiet = console.error;
  console.error = () => {};
  try {
    const path = `${dir}/m.lsnap`;
    await writeMessy(path, 3);
    assertEquals(await reportMain([path]), 2);
    await Deno.writeTextFile(`${dir}/bad.json`, "{nope\n");
    assertEquals(
      await reportMain([path, "--metrics", `${dir}/bad.json`, "--out", `${dir}/a.html`]),
      2,
    );
    await assertRejects(() => Deno.stat(`${dir}/a.html`), Deno.errors.NotFound);
    assertEquals(await reportMain([path, "--out", `${dir}/ok.html`]), 0);
    const bytes = await Deno.readFile(path);
    bytes[bytes.length >> 1] ^= 0x55;
    await Deno.writeFile(`${dir}/broken.lsnap`, bytes);
    assertEquals(await reportMain([`${dir}/broken.lsnap`, "--out", `${dir}/broken.html`]), 1);
    const html = await Deno.readTextFile(`${dir}/broken.html`);
    assert(
      html.includes('id="damaged-static"'),
      "the page says so at the top, even without script",
    );
    assertEquals(
      (await Array.fromAsync(Deno.readDir(dir))).filter((e) => e.name.includes(".tmp-")),
      [],
      "no temporary file is left",
    );
  } finally {
    console.error = quiet;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PAGE_FUNCTIONS lists every function the page's parts export, each under its own name", async () => {
  const { PAGE_FUNCTIONS } = await import("./page_script.ts");
  const listed = new Set(PAGE_FUNCTIONS.map((f) => f.name));
  for (
    const part of [
      "page_common",
      "page_header",
      "page_chain",
      "page_map",
      "page_order",
      "page_timeline",
    ]
  ) {
    const mod = await import(`./${part}.ts`);
    for (const [name, value] of Object.entries(mod)) {
      if (typeof value !== "function") continue;
      assert(listed.has(name), `${part}.ts exports ${name}, which the page would not have`);
      // The page calls it by this name: its source must declare that name.
      assert((value as () => void).toString().includes(`function ${name}(`), name);
    }
  }
  const { pageScript } = await import("./html.ts");
  // The script parses as JavaScript (types removed) and calls reportMain.
  new Function(pageScript().replace(/reportMain\(\);\n\}\)\(\);\n$/, "})();"));
});
