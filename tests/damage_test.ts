import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
} from "@std/assert/mod.js";
import { readSnapshot, SnapshotStreamReader } from "../format/stream_reader.ts";
import { SnapshotFileReader } from "../format/file_reader.ts";
import {
  ChecksumError,
  CorruptError,
  LsnapError,
  TruncatedError,
  UnsupportedError,
} from "../format/errors.ts";
import { encodePrologue } from "../format/header.ts";
import { encodeRecord } from "../format/record.ts";
import { FLAG_CRITICAL, RecordType } from "../format/constants.ts";
import { encodeHeader } from "../format/header.ts";
import { encodePageRecord } from "../format/page_record.ts";
import {
  chunked,
  description,
  makeRam,
  recordSpans,
  rng,
  shuffle,
  writeToBytes,
} from "./_snapshots.ts";

const PAGES = 24;
const base = await writeToBytes({
  description: description(PAGES),
  ram: makeRam(PAGES, 21),
  order: shuffle([...Array(PAGES).keys()], 22),
  batch: 4,
  options: { batchBytes: 16384 },
});
const spans = recordSpans(base);

async function readAll(bytes: Uint8Array): Promise<void> {
  await readSnapshot(chunked(bytes, 777));
}

Deno.test("readSnapshot() reports a file truncated at every record boundary as truncated", async (t) => {
  assert(spans.length >= 8);
  const cuts = [0, 8, 16, ...spans.map((s) => s.offset + s.length), base.length - 1];
  for (const [i, cut] of cuts.entries()) {
    await t.step(`cut at byte ${cut}`, async () => {
      const e = await assertRejects(() => readAll(base.subarray(0, cut)), TruncatedError);
      if (cut > 16 && i < cuts.length - 1) {
        // The cut is after record k-1 ends: the error names record k at byte `cut`.
        const k = spans.findIndex((s) => s.offset === cut);
        if (k >= 0) {
          assertEquals(e.recordIndex, k);
          assertEquals(e.offset, cut);
          assertStringIncludes(e.message, `record ${k} at byte ${cut}`);
        }
      }
    });
  }
});

Deno.test("readSnapshot() reports a file cut inside every record as truncated, naming the record", async (t) => {
  for (const [k, s] of spans.entries()) {
    await t.step(`cut inside record ${k}`, async () => {
      const e = await assertRejects(
        () => readAll(base.subarray(0, s.offset + s.length - 3)),
        TruncatedError,
      );
      assertEquals(e.recordIndex, k);
      assertEquals(e.offset, s.offset);
    });
  }
});

Deno.test("readSnapshot() reports a byte flipped in every record as a checksum mismatch", async (t) => {
  for (const [k, s] of spans.entries()) {
    await t.step(`flip in the payload of record ${k}`, async () => {
      const bad = base.slice();
      bad[s.offset + 8 + ((s.length - 12) >> 1)] ^= 0x10;
      const e = await assertRejects(() => readAll(bad), ChecksumError);
      assertEquals(e.recordIndex, k);
      assertEquals(e.offset, s.offset);
      assertStringIncludes(
        e.message,
        `Cannot read record ${k} at byte ${s.offset}: record CRC32C mismatch`,
      );
    });
    await t.step(`flip in the type field of record ${k}`, async () => {
      const bad = base.slice();
      bad[s.offset] ^= 0x40;
      const e = await assertRejects(() => readAll(bad), LsnapError);
      assertEquals(e.recordIndex, k);
    });
    await t.step(`flip in the CRC of record ${k}`, async () => {
      const bad = base.slice();
      bad[s.offset + s.length - 1] ^= 0x01;
      await assertRejects(() => readAll(bad), ChecksumError);
    });
  }
  await t.step("flip in the prologue", async () => {
    const bad = base.slice();
    bad[9] ^= 1;
    await assertRejects(() => readAll(bad), ChecksumError, "prologue CRC32C mismatch");
  });
  await t.step("flip in the footer", async () => {
    const bad = base.slice();
    bad[base.length - 10] ^= 1;
    await assertRejects(() => readAll(bad), ChecksumError, "footer CRC32C mismatch");
  });
  await t.step("bytes after the footer", async () => {
    const bad = new Uint8Array(base.length + 1);
    bad.set(base);
    await assertRejects(() => readAll(bad), CorruptError, "bytes follow the footer");
  });
});

Deno.test("SnapshotFileReader reports an incomplete file as incomplete and reads what is there", async () => {
  const path = await Deno.makeTempFile();
  const cut = spans[spans.length - 2].offset; // drops the index and trailer
  await Deno.writeFile(path, base.subarray(0, cut));
  const r = await SnapshotFileReader.open(path);
  assertEquals(r.complete, false);
  assertEquals(r.indexed, false);
  r.close();
  await Deno.writeFile(path, base);
  const whole = await SnapshotFileReader.open(path);
  assertEquals(whole.complete, true);
  whole.close();
  await Deno.remove(path);
});

/** Builds a file by hand: prologue, then framed records, then no trailer. */
function handmade(major: number, minor: number, extra: Uint8Array[]): Uint8Array {
  const parts = [
    encodePrologue(major, minor),
    encodeRecord(RecordType.HEADER, FLAG_CRITICAL, encodeHeader(description(4))),
    ...extra,
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

Deno.test("readSnapshot() skips an unknown optional record and refuses an unknown critical one", async () => {
  const optional = await writeToBytes({
    description: description(4),
    ram: makeRam(4, 5),
    extra: async (w) => await w.writeExtensionRecord(0x7001, new Uint8Array([1, 2, 3]), false),
  });
  const reader = new SnapshotStreamReader(chunked(optional, 50));
  const kinds: string[] = [];
  for await (const r of reader.records()) kinds.push(r.kind);
  assert(kinds.includes("extension"));
  assert(reader.complete);
  const critical = await writeToBytes({
    description: description(4),
    ram: makeRam(4, 5),
    extra: async (w) => await w.writeExtensionRecord(0x7001, new Uint8Array([1, 2, 3]), true),
  });
  const e = await assertRejects(
    () => readAll(critical),
    UnsupportedError,
    "critical record type 0x7001 is unknown",
  );
  assert(e.recordIndex > 0);
});

Deno.test("decodePrologue() accepts this and newer minors and refuses another major", async (t) => {
  await t.step("major 1 minor 0 reads", async () => {
    // Only the trailer is missing: the version was accepted.
    await assertRejects(() => readAll(handmade(1, 0, [])), TruncatedError, "without a trailer");
  });
  await t.step("major 1 minor 7 (newer) reads while its records are known", async () => {
    await assertRejects(() => readAll(handmade(1, 7, [])), TruncatedError, "without a trailer");
  });
  await t.step("major 2 is refused", async () => {
    await assertRejects(
      () => readAll(handmade(2, 0, [])),
      UnsupportedError,
      "format version 2.0 is not supported",
    );
  });
  await t.step("major 0 is refused", async () => {
    await assertRejects(
      () => readAll(handmade(0, 9, [])),
      UnsupportedError,
      "format version 0.9 is not supported",
    );
  });
});

Deno.test("readers never allocate from untrusted sizes", async (t) => {
  await t.step("a record length past the cap", async () => {
    const bad = handmade(1, 0, [new Uint8Array([2, 0, 1, 0, 0xff, 0xff, 0xff, 0x7f])]);
    await assertRejects(() => readAll(bad), CorruptError, "exceeds the cap");
  });
  await t.step("a zstd frame declaring a huge content size", async () => {
    // 4 pages declared; the frame header (8-byte Frame_Content_Size) claims 2^40 bytes.
    const frame = new Uint8Array([
      0x28,
      0xb5,
      0x2f,
      0xfd,
      0xc0,
      0,
      0,
      0,
      0,
      0,
      0,
      1,
      0,
      0,
      0,
      0,
      0,
    ]);
    const rec = encodeRecord(
      RecordType.PAGES,
      FLAG_CRITICAL,
      encodePageRecord(0, "zstd", Uint32Array.of(0, 1, 2, 3), frame),
    );
    await assertRejects(
      () => readAll(handmade(1, 0, [rec])),
      CorruptError,
      "zstd frame declares 1099511627776 bytes, the record implies 16384",
    );
  });
  await t.step("a header with a region larger than the cap", async () => {
    const d = description(4);
    const payload = encodeHeader(d);
    // Patch the region size (after createdAt u64, creator, count u16, name, base u64).
    const at = 8 + 2 + d.creator.length + 2 + 2 + 3 + 8;
    new DataView(payload.buffer).setUint32(at + 4, 0x10_0000, true);
    const bytes = [encodePrologue(1, 0), encodeRecord(RecordType.HEADER, FLAG_CRITICAL, payload)];
    const all = new Uint8Array(bytes[0].length + bytes[1].length);
    all.set(bytes[0]);
    all.set(bytes[1], bytes[0].length);
    await assertRejects(() => readAll(all), CorruptError, "more than the cap");
  });
  await t.step("a 100-byte file of noise", async () => {
    const r = rng(3);
    const noise = Uint8Array.from({ length: 100 }, () => (r() * 256) | 0);
    await assertRejects(() => readAll(noise), CorruptError, "bad magic");
  });
});

Deno.test("readSnapshot() and SnapshotFileReader raise only LsnapError on random damage", async () => {
  const r = rng(99);
  const path = await Deno.makeTempFile();
  for (let i = 0; i < 150; i++) {
    const bad = base.slice();
    const flips = 1 + ((r() * 4) | 0);
    for (let k = 0; k < flips; k++) bad[(r() * bad.length) | 0] = (r() * 256) | 0;
    const cut = r() < 0.3 ? (r() * bad.length) | 0 : bad.length;
    const input = bad.subarray(0, cut);
    try {
      await readAll(input);
    } catch (e) {
      assertInstanceOf(e, LsnapError);
    }
    await Deno.writeFile(path, input);
    try {
      const f = await SnapshotFileReader.open(path);
      try {
        for (let p = 0; p < PAGES; p++) await f.readPage(0, p);
        await f.devices();
      } finally {
        f.close();
      }
    } catch (e) {
      assertInstanceOf(e, LsnapError);
    }
  }
  await Deno.remove(path);
});

Deno.test("SnapshotFileReader.readRegion() refuses a region over its memory limit before allocating", async () => {
  const path = new URL("./fixtures/regressions/huge-region-tiny-file.lsnap", import.meta.url);
  const r = await SnapshotFileReader.open(path.pathname);
  try {
    assertEquals(r.description.regions[0].size, 2 ** 37);
    const e = await assertRejects(() => r.readRegion(0), UnsupportedError);
    assertStringIncludes(e.message, "region 'ram' is 137438953472 bytes, more than the 4294967296");
    await assertRejects(() => r.readRegion(0, { maxMemoryBytes: 2 ** 36 }), UnsupportedError);
    assertEquals((await r.readPage(0, 2 ** 25 - 1))[0], 1);
  } finally {
    r.close();
  }
});
