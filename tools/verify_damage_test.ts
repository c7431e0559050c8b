// verify's damage tables: every problem reported with its record and offset, the scan going on
// after each. Each table runs twice: pages hashed on the calling thread, and in a worker.
import { assert, assertEquals, assertMatch } from "@std/assert/mod.js";
import { FLAG_CRITICAL, RecordType } from "../format/constants.ts";
import { encodeHeader, encodePrologue } from "../format/header.ts";
import { encodePageRecord } from "../format/page_record.ts";
import { encodeRecord } from "../format/record.ts";
import { description, recordSpans } from "../tests/_snapshots.ts";
import { verifySnapshot } from "./verify.ts";

const FIXTURES = new URL("../tests/fixtures/", import.meta.url).pathname;
const EXPECTED: Record<string, { contentDigest: string }> = JSON.parse(
  await Deno.readTextFile(`${FIXTURES}expected.json`),
);
const BASIC = await Deno.readFile(`${FIXTURES}v1_basic.lsnap`);

/** Each test of the loop below runs with pages hashed inline and in a worker thread. */
const MODES = [{ workers: 0, name: "inline" }, { workers: 1, name: "one worker" }];

/** verifySnapshot() with the digests under the names the checks below use. */
async function scanWith(workers: number, bytes: Uint8Array, maxErrors?: number) {
  const r = await verifySnapshot(ReadableStream.from([bytes.slice()]), { maxErrors, workers });
  return { ...r, contentDigest: r.digests.content };
}

/** Prologue, header, a PAGES record whose zstd data does not decode (its CRC is right), then a
 * good one, and no trailer. */
function undecodable(): { bytes: Uint8Array; badAt: number } {
  // Every check before decoding passes (4096 bytes declared, one compressed block that ends
  // where the frame ends); the block itself is garbage.
  const frame = new Uint8Array(10 + 16).fill(0xff);
  frame.set([0x28, 0xb5, 0x2f, 0xfd, 0x60, 0x00, 0x0f, (16 << 3) | (2 << 1) | 1, 0, 0]);
  const parts = [
    encodePrologue(1, 0),
    encodeRecord(RecordType.HEADER, FLAG_CRITICAL, encodeHeader(description(4))),
    encodeRecord(
      RecordType.PAGES,
      FLAG_CRITICAL,
      encodePageRecord(0, "zstd", Uint32Array.of(2), frame),
    ),
    encodeRecord(
      RecordType.PAGES,
      FLAG_CRITICAL,
      encodePageRecord(0, "raw", Uint32Array.of(3), new Uint8Array(4096).fill(3)),
    ),
  ];
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  return { bytes, badAt: parts[0].length + parts[1].length };
}

for (const mode of MODES) {
  const scan = (bytes: Uint8Array, maxErrors?: number) => scanWith(mode.workers, bytes, maxErrors);
  Deno.test(`verifySnapshot() reports page data that does not decode at its record and goes on (${mode.name})`, async () => {
    const { bytes, badAt } = undecodable();
    const r = await scan(bytes);
    assertEquals(
      r.problems.map((p) => [p.kind, p.recordIndex, p.offset]),
      [["CorruptError", 1, badAt], ["TruncatedError", 3, bytes.length]],
    );
    assertMatch(
      r.problems[0].message,
      new RegExp(`^Cannot read record 1 at byte ${badAt}: zstd data is invalid`),
    );
    assertEquals([r.complete, r.contentDigest], [false, null]);
  });
  Deno.test(`verifySnapshot() finds no problem in the golden files and recomputes their digests (${mode.name})`, async () => {
    for (const [name, e] of Object.entries(EXPECTED)) {
      const r = await scan(await Deno.readFile(`${FIXTURES}${name}`));
      assertEquals(r.problems, [], name);
      assert(r.complete);
      assertEquals(r.contentDigest, e.contentDigest);
    }
  });

  Deno.test(`verifySnapshot() reports every damaged record, not only the first (${mode.name})`, async () => {
    const spans = recordSpans(BASIC);
    const bytes = BASIC.slice();
    const hit = [1, 3, 5];
    for (const i of hit) bytes[spans[i].offset + 20] ^= 0xff;
    const r = await scan(bytes);
    const crc = r.problems.filter((p) => p.message.includes("record CRC32C mismatch"));
    assertEquals(crc.map((p) => p.recordIndex), hit);
    assertEquals(crc.map((p) => p.offset), hit.map((i) => spans[i].offset));
    assert(r.problems.some((p) => p.message.includes("file digest mismatch")));
    assert(r.complete, "the scan still reaches the trailer and footer");
  });

  Deno.test(`verifySnapshot() stops at maxErrors and says so (${mode.name})`, async () => {
    const spans = recordSpans(BASIC);
    const bytes = BASIC.slice();
    for (const i of [1, 2, 3]) bytes[spans[i].offset + 20] ^= 0xff;
    const r = await scan(bytes, 2);
    assertEquals(r.problems.length, 2);
    assertEquals(r.stoppedEarly, true);
    assertEquals((await scan(BASIC, 2)).stoppedEarly, false);
  });

  Deno.test(`verifySnapshot() finds its way back after a damaged length and checks what follows (${mode.name})`, async () => {
    const spans = recordSpans(BASIC);
    const bytes = BASIC.slice();
    bytes[spans[2].offset + 7] = 0x03; // length of record 2 now ~50 MiB: past the end
    bytes[spans[5].offset + 20] ^= 0xff; // and a later record is damaged too
    const r = await scan(bytes);
    assertMatch(
      r.problems[0].message,
      /^Cannot read record 2 at byte \d+: record declares \d+ payload bytes but the input ends \d+ bytes later; framing lost: skipped \d+ bytes to the next valid record at byte \d+$/,
    );
    assertEquals(r.problems[0].offset, spans[2].offset);
    const later = r.problems.find((p) => p.message.includes("record CRC32C mismatch"));
    assertEquals(later?.offset, spans[5].offset);
    assert(r.complete);
  });

  Deno.test(`verifySnapshot() reports bytes after the footer and a bad magic (${mode.name})`, async () => {
    const extra = new Uint8Array(BASIC.length + 3);
    extra.set(BASIC);
    assertMatch((await scan(extra)).problems[0].message, /bytes follow the footer/);
    const text = new TextEncoder().encode("this is not a snapshot at all, but it is long enough");
    const bad = await scan(text);
    assertEquals(bad.problems.length, 1);
    assertMatch(bad.problems[0].message, /bad magic/);
  });
}

// The step tables run on the calling thread only: a worker per step would cost seconds.
const scan = (bytes: Uint8Array) => scanWith(0, bytes);

Deno.test(`verifySnapshot() names the record and offset of a flipped byte in every record`, async (t) => {
  for (const [i, span] of recordSpans(BASIC).entries()) {
    await t.step(`record ${i} (type ${span.type}) at byte ${span.offset}`, async () => {
      const bytes = BASIC.slice();
      bytes[span.offset + span.length - 6] ^= 0x10; // inside the payload (or the head of an empty one)
      const r = await scan(bytes);
      assert(r.problems.length >= 1);
      assertEquals(r.problems[0].offset, span.offset);
      assertEquals(r.problems[0].recordIndex, i);
      assertMatch(
        r.problems[0].message,
        new RegExp(`^Cannot read record ${i} at byte ${span.offset}: record CRC32C mismatch`),
      );
    });
  }
});

Deno.test(`verifySnapshot() reports a file cut at every record boundary as incomplete`, async (t) => {
  for (const span of recordSpans(BASIC)) {
    await t.step(`cut at byte ${span.offset}`, async () => {
      const r = await scan(BASIC.subarray(0, span.offset));
      assertEquals(r.complete, false);
      assertEquals(r.problems.at(-1)?.kind, "TruncatedError");
      assertMatch(r.problems.at(-1)!.message, /without a trailer: the file is incomplete/);
    });
  }
  const r = await scan(BASIC.subarray(0, BASIC.length - 10));
  assertMatch(r.problems[0].message, /footer/);
});
