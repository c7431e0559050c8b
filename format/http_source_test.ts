import { assert, assertEquals, assertRejects } from "@std/assert/mod.js";
import { HttpSource, openHttpStream } from "./http_source.ts";
import {
  NotRandomAccessError,
  SourceChangedError,
  SourceClosedError,
  SourceHttpError,
  sourceReadable,
  SourceTimeoutError,
} from "./random_access_source.ts";
import { SnapshotFileReader } from "./file_reader.ts";
import { readSnapshot } from "./stream_reader.ts";
import { toHex } from "./checksum.ts";
import { ChecksumError } from "./errors.ts";
import { startRangeServer } from "../tests/_range_server.ts";
import { description, makeRam, recordSpans, writeToBytes } from "../tests/_snapshots.ts";

const BODY = new Uint8Array(300_000).map((_, i) => (i * 31 + (i >> 8)) & 0xff);

/** A snapshot of 512 pages in records of 64 KiB, so that a page read is a small part of it. */
async function snapshotBytes(): Promise<Uint8Array> {
  return await writeToBytes({
    description: description(512),
    ram: makeRam(512, 5),
    batch: 16,
    options: { batchBytes: 64 * 1024, workers: 0 },
  });
}

Deno.test("HttpSource.read() returns exactly the bytes of each range", async () => {
  const server = startRangeServer({ body: BODY });
  const s = await HttpSource.open(server.url, { probeBytes: 1000 });
  try {
    assertEquals(s.size, BODY.length);
    for (const [o, n] of [[0, 10], [999, 2], [5000, 1], [123_456, 40_000], [299_990, 10]]) {
      assertEquals(await s.read(o, n), BODY.slice(o, o + n), `bytes ${o}+${n}`);
    }
    // The probe served [0, 1000) from memory: only reads past it reached the server.
    assertEquals(server.ranges, [
      "bytes=0-999",
      "bytes=999-1000",
      "bytes=5000-5000",
      "bytes=123456-163455",
      "bytes=299990-299999",
    ]);
    await assertRejects(() => s.read(299_999, 2), RangeError, "the source is 300000 bytes");
  } finally {
    s.close();
    await server.close();
  }
});

Deno.test("HttpSource.readMany() merges neighbours and keeps several requests in flight", async () => {
  const server = startRangeServer({ body: BODY, latencyMs: 20 });
  const s = await HttpSource.open(server.url, {
    probeBytes: 1,
    concurrency: 3,
    coalesce: { maxGap: 100 },
  });
  try {
    const ranges = [
      { offset: 10_050, length: 50 }, // 50 bytes after the next one: merged with it
      { offset: 10_000, length: 10 },
      ...[50_000, 90_000, 130_000, 170_000, 210_000, 250_000].map((offset) => ({
        offset,
        length: 1000,
      })),
    ];
    const got = await s.readMany(ranges);
    ranges.forEach((r, i) => assertEquals(got[i], BODY.slice(r.offset, r.offset + r.length)));
    assertEquals(server.ranges.slice(1).sort(), [
      "bytes=10000-10099",
      "bytes=130000-130999",
      "bytes=170000-170999",
      "bytes=210000-210999",
      "bytes=250000-250999",
      "bytes=50000-50999",
      "bytes=90000-90999",
    ]);
    assertEquals(server.maxInFlight, 3);
  } finally {
    s.close();
    await server.close();
  }
});

Deno.test("HttpSource serves an urgent read before the prefetches waiting for a slot", async () => {
  const server = startRangeServer({ body: BODY, latencyMs: 20 });
  const s = await HttpSource.open(server.url, { probeBytes: 1, concurrency: 1 });
  try {
    const reads = [1000, 2000, 3000].map((o) => s.read(o, 10));
    const urgent = s.read(4000, 10, { urgent: true });
    await Promise.all([...reads, urgent]);
    // The first prefetch already held the slot; the urgent read overtakes the other two.
    assertEquals(server.ranges.slice(1), [
      "bytes=1000-1009",
      "bytes=4000-4009",
      "bytes=2000-2009",
      "bytes=3000-3009",
    ]);
  } finally {
    s.close();
    await server.close();
  }
});

Deno.test("SnapshotFileReader reads the same pages, devices and digests through HTTP as from the file", async () => {
  const bytes = await snapshotBytes();
  const path = await Deno.makeTempFile({ suffix: ".lsnap" });
  await Deno.writeFile(path, bytes);
  const server = startRangeServer({ body: bytes });
  const file = await SnapshotFileReader.open(path);
  const http = await SnapshotFileReader.open(server.url, { http: { concurrency: 3 } });
  try {
    assertEquals(http.size, file.size);
    assertEquals([http.complete, http.indexed], [true, true]);
    assertEquals(http.description, file.description);
    assertEquals(http.trailer, file.trailer);
    // A page read fetches its record alone, not the file.
    const before = http.source.stats.bytesRead;
    assertEquals(await http.readPage(0, 300), await file.readPage(0, 300));
    const oneRecord = http.source.stats.bytesRead - before;
    assert(oneRecord < bytes.length / 4, `a page read fetched ${oneRecord} bytes`);
    assertEquals(await http.readRegion(0), await file.readRegion(0));
    assertEquals(await http.readRegion(0), makeRam(512, 5));
    assertEquals(await http.devices(), await file.devices());
    assertEquals(http.pageRecordOffsets(), file.pageRecordOffsets());
    // The streaming reader over the same source checks both digests against the trailer.
    const source = await HttpSource.open(server.url);
    const streamed = await readSnapshot(sourceReadable(source, { chunkSize: 50_000 }));
    source.close();
    assertEquals(toHex(streamed.contentDigest), toHex(file.trailer!.contentDigest));
  } finally {
    http.close();
    file.close();
    await server.close();
    await Deno.remove(path);
  }
});

Deno.test("SnapshotFileReader through HTTP reports a damaged record with its byte offset", async () => {
  const bytes = await snapshotBytes();
  const victim = recordSpans(bytes).filter((r) => r.type === 2)[3];
  bytes[victim.offset + 20] ^= 0x40;
  const server = startRangeServer({ body: bytes });
  const r = await SnapshotFileReader.open(server.url);
  try {
    const e = await assertRejects(() => r.readRegion(0), ChecksumError);
    assertEquals(e.offset, victim.offset);
    assert(e.message.startsWith(`Cannot read the file at byte ${victim.offset}: `), e.message);
  } finally {
    r.close();
    await server.close();
  }
});

Deno.test("HttpSource refuses a server that ignores Range for a file over maxWholeBytes", async () => {
  const server = startRangeServer({ body: BODY, ignoreRange: true });
  try {
    const e = await assertRejects(
      () => HttpSource.open(server.url, { maxWholeBytes: 100_000 }),
      NotRandomAccessError,
    );
    assert(
      e.message.startsWith(
        `Cannot read ${server.url} at random: the server ignores HTTP Range requests ` +
          "(it answered 200 with the whole file, 300000 bytes)",
      ),
      e.message,
    );
  } finally {
    await server.close();
  }
});

Deno.test("HttpSource holds a small file whole when the server ignores Range", async () => {
  const server = startRangeServer({ body: BODY, ignoreRange: true });
  const s = await HttpSource.open(server.url, { maxWholeBytes: 1_000_000 });
  try {
    assertEquals(s.size, BODY.length);
    assertEquals(await s.read(250_000, 100), BODY.slice(250_000, 250_100));
    assertEquals(server.ranges.length, 1);
  } finally {
    s.close();
    await server.close();
  }
});

Deno.test("HttpSource retries a body cut off mid-way, then reports it", async (t) => {
  await t.step("once: the retry succeeds", async () => {
    const server = startRangeServer({ body: BODY, misbehaveAfter: 1, dropBodies: 1 });
    const s = await HttpSource.open(server.url, { probeBytes: 10, retryDelayMs: 1 });
    try {
      assertEquals(await s.read(100_000, 50_000), BODY.slice(100_000, 150_000));
      assertEquals(s.stats.retries, 1);
      assertEquals(server.ranges.slice(1), ["bytes=100000-149999", "bytes=100000-149999"]);
    } finally {
      s.close();
      await server.close();
    }
  });
  await t.step("always: the error names the range and what arrived", async () => {
    const server = startRangeServer({ body: BODY, misbehaveAfter: 1, dropBodies: 100 });
    const s = await HttpSource.open(server.url, { probeBytes: 10, retries: 2, retryDelayMs: 1 });
    try {
      const e = await assertRejects(() => s.read(100_000, 50_000), SourceHttpError);
      assertEquals(e.status, 0);
      assert(
        e.message.startsWith(
          `Cannot read ${server.url} at byte 100000 (50000 bytes): the answer was cut off after 25000 of 50000 bytes: `,
        ),
        e.message,
      );
      assertEquals(server.ranges.length, 4);
      assertEquals(s.stats.retries, 2);
    } finally {
      s.close();
      await server.close();
    }
  });
});

Deno.test("HttpSource detects a file replaced mid-read", async (t) => {
  const changed = BODY.slice();
  changed[200_000] ^= 1;
  await t.step("by If-Range: the server sends the new file whole", async () => {
    const server = startRangeServer({ body: BODY });
    const s = await HttpSource.open(server.url, { probeBytes: 10 });
    try {
      assertEquals(await s.read(100, 10), BODY.slice(100, 110));
      server.replace(changed);
      const e = await assertRejects(() => s.read(200_000, 10), SourceChangedError);
      assertEquals(e.range, { offset: 200_000, length: 10 });
      assert(e.message.includes(`its ETag is now "v2"; it was "v1" when opened`), e.message);
      assertEquals(s.stats.retries, 0);
    } finally {
      s.close();
      await server.close();
    }
  });
  await t.step("by ETag: the server ignores If-Range", async () => {
    const server = startRangeServer({ body: BODY, ignoreIfRange: true });
    const s = await HttpSource.open(server.url, { probeBytes: 10 });
    try {
      server.replace(changed);
      await assertRejects(
        () => s.read(200_000, 10),
        SourceChangedError,
        `its ETag is now "v2"; it was "v1" when opened (the file changed)`,
      );
    } finally {
      s.close();
      await server.close();
    }
  });
  await t.step("by size: the server sends no validators", async () => {
    const server = startRangeServer({ body: BODY, noValidators: true });
    const s = await HttpSource.open(server.url, { probeBytes: 10 });
    try {
      server.replace(BODY.slice(0, 250_000));
      await assertRejects(
        () => s.read(200_000, 10),
        SourceChangedError,
        "the file is now 250000 bytes; it was 300000 when opened",
      );
    } finally {
      s.close();
      await server.close();
    }
  });
});

Deno.test("HttpSource bounds every request in time", async (t) => {
  await t.step("at open", async () => {
    const server = startRangeServer({ body: BODY, hang: true });
    try {
      const e = await assertRejects(
        () => HttpSource.open(server.url, { timeoutMs: 150, retries: 1, retryDelayMs: 1 }),
        SourceTimeoutError,
      );
      assertEquals(e.message, `Cannot open ${server.url}: no answer within the time bound`);
      assertEquals(server.ranges.length, 2);
    } finally {
      await server.close();
    }
  });
  await t.step("on a read", async () => {
    const server = startRangeServer({ body: BODY, hang: true, misbehaveAfter: 1 });
    const s = await HttpSource.open(server.url, { probeBytes: 10, timeoutMs: 150, retries: 1 });
    try {
      const e = await assertRejects(() => s.read(5000, 10), SourceTimeoutError);
      assertEquals(
        e.message,
        `Cannot read ${server.url} at byte 5000 (10 bytes): no answer within the time bound`,
      );
      assertEquals([server.ranges.length, s.stats.retries], [3, 1]);
    } finally {
      s.close();
      await server.close();
    }
  });
});

Deno.test("HttpSource refuses a Content-Range that is not the range asked for", async () => {
  const server = startRangeServer({ body: BODY, shiftContentRange: 1, misbehaveAfter: 1 });
  const s = await HttpSource.open(server.url, { probeBytes: 10 });
  try {
    const e = await assertRejects(() => s.read(5000, 100), SourceHttpError);
    assertEquals(
      e.message,
      `Cannot read ${server.url} at byte 5000 (100 bytes): the server sent bytes 5001-5100 for a request of bytes 5000-5099`,
    );
    assertEquals(e.status, 206);
  } finally {
    s.close();
    await server.close();
  }
});

Deno.test("HttpSource follows a redirect and reports an error status without retrying it", async () => {
  const server = startRangeServer({ body: BODY, redirect: true });
  try {
    const s = await HttpSource.open(server.url, { probeBytes: 10 });
    assertEquals(await s.read(77_777, 3), BODY.slice(77_777, 77_780));
    s.close();
    const missing = server.url.replace("/redirect", "/nothing");
    const e = await assertRejects(() => HttpSource.open(missing), SourceHttpError);
    assertEquals(e.message, `Cannot open ${missing}: the server answered 404 Not Found`);
    assertEquals(e.status, 404);
  } finally {
    await server.close();
  }
});

Deno.test("HttpSource.close() refuses later reads", async () => {
  const server = startRangeServer({ body: BODY });
  const s = await HttpSource.open(server.url, { probeBytes: 10 });
  s.close();
  try {
    await assertRejects(() => s.read(1000, 10), SourceClosedError, "the source is closed");
  } finally {
    await server.close();
  }
});

Deno.test("HttpSource names a URL without its query string or credentials", async () => {
  const server = startRangeServer({ body: BODY });
  const url = server.url.replace("http://", "http://user:secret@") + "?X-Amz-Signature=abc";
  const s = await HttpSource.open(url, { probeBytes: 10 });
  try {
    assertEquals(s.name, server.url);
  } finally {
    s.close();
    await server.close();
  }
});

Deno.test("openHttpStream() bounds the wait for each chunk of a body that stalls", async () => {
  const stop = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {}, signal: stop.signal },
    () =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(c) {
            c.enqueue(new Uint8Array(5));
          },
          async pull() {
            // Stalls until the server stops.
            await new Promise((r) => stop.signal.addEventListener("abort", r, { once: true }));
          },
        }),
      ),
  );
  const url = `http://127.0.0.1:${server.addr.port}/vm.lsnap`;
  try {
    const { readable } = await openHttpStream(url, { timeoutMs: 150 });
    const e = await assertRejects(() => new Response(readable).bytes(), SourceTimeoutError);
    assertEquals(
      e.message,
      `Cannot read ${url} at byte 5 (0 bytes): the answer stopped after 5 bytes within the time bound`,
    );
  } finally {
    stop.abort();
    await server.finished;
  }
});

Deno.test("SnapshotFileReader through HTTP reads files with stale records and without an index", async (t) => {
  const ram = makeRam(256, 9);
  const order = [...Array(256).keys()];
  const cases: [string, Uint8Array][] = [
    // Pages written twice: the first records hold no last occurrence, yet lie between the
    // records the index names, so a record's span to the next named one holds stale bytes.
    [
      "stale records",
      await writeToBytes({
        description: description(256),
        ram,
        order: [...order, ...order.filter((p) => p % 3 === 0)],
        batch: 8,
        options: { batchBytes: 32 * 1024, workers: 0 },
      }),
    ],
    [
      "no index",
      await writeToBytes({ description: description(256), ram, options: { index: false } }),
    ],
  ];
  for (const [name, bytes] of cases) {
    await t.step(name, async () => {
      const path = await Deno.makeTempFile();
      await Deno.writeFile(path, bytes);
      const server = startRangeServer({ body: bytes });
      const file = await SnapshotFileReader.open(path);
      const http = await SnapshotFileReader.open(server.url);
      try {
        assertEquals(http.indexed, name !== "no index");
        assertEquals(await http.readRegion(0), ram);
        assertEquals(await http.readRegion(0), await file.readRegion(0));
        assertEquals(await http.devices(), await file.devices());
      } finally {
        http.close();
        file.close();
        await server.close();
        await Deno.remove(path);
      }
    });
  }
});
