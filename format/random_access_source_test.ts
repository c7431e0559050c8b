import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert/mod.js";
import {
  coalesceRanges,
  NotRandomAccessError,
  SourceChangedError,
  SourceEndedError,
} from "./random_access_source.ts";
import { openSource } from "./open_source.ts";
import { startRangeServer } from "../tests/_range_server.ts";
import { FileSource } from "./file_source.ts";
import { SnapshotFileReader } from "./file_reader.ts";

Deno.test("coalesceRanges() merges within maxGap and never past maxLength", async (t) => {
  // Each result is written "offset+length:parts".
  const cases: [string, [number, number][], { maxGap?: number; maxLength?: number }, string][] = [
    ["touching", [[0, 10], [10, 10]], { maxGap: 0 }, "0+20:0,1"],
    ["a gap of one byte over maxGap", [[0, 10], [11, 10]], { maxGap: 0 }, "0+10:0 11+10:1"],
    ["overlapping and contained", [[5, 100], [0, 10], [50, 5]], { maxGap: 0 }, "0+105:1,0,2"],
    ["over maxLength", [[0, 60], [60, 60]], { maxGap: 0, maxLength: 100 }, "0+60:0 60+60:1"],
    ["a long range stays alone", [[0, 500]], { maxLength: 100 }, "0+500:0"],
  ];
  for (const [name, ranges, options, want] of cases) {
    await t.step(name, () => {
      const got = coalesceRanges(ranges.map(([offset, length]) => ({ offset, length })), options);
      assertEquals(got.map((r) => `${r.offset}+${r.length}:${r.parts}`).join(" "), want);
    });
  }
});

Deno.test("FileSource.open() refuses a pipe with a message that says what to do", async () => {
  const e = await assertRejects(() => FileSource.open("-"), NotRandomAccessError);
  assert(e.message.startsWith("Cannot read <stdin> at random: it is a pipe; "), e.message);
  const dir = await Deno.makeTempDir();
  try {
    const fifo = `${dir}/fifo`;
    const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert(made.success, "mkfifo failed");
    // Refused before it is opened: opening a FIFO would wait for a writer.
    const f = await assertRejects(() => SnapshotFileReader.open(fifo), NotRandomAccessError);
    assert(
      f.message.startsWith(`Cannot read ${fifo} at random: it is a pipe (FIFO); `) &&
        f.message.includes("read a pipe as a stream instead"),
      f.message,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileSource.read() reports a file that shrank after it was opened", async () => {
  const path = await Deno.makeTempFile();
  await Deno.writeFile(path, new Uint8Array(1000).fill(7));
  const s = await FileSource.open(path);
  try {
    assertEquals(await s.readMany([{ offset: 990, length: 10 }, { offset: 0, length: 2 }]), [
      new Uint8Array(10).fill(7),
      new Uint8Array(2).fill(7),
    ]);
    await Deno.truncate(path, 500);
    const e = await assertRejects(() => s.read(400, 200), SourceEndedError);
    assertEquals(
      e.message,
      `Cannot read ${path} at byte 400 (200 bytes): the file ends at byte 500; it was 1000 bytes when opened (truncated since?)`,
    );
  } finally {
    s.close();
    await Deno.remove(path);
  }
});

Deno.test("FileSource.readInto() fills the caller's buffer and reports a file that shrank", async () => {
  const path = await Deno.makeTempFile();
  const bytes = Uint8Array.from({ length: 1000 }, (_, i) => i % 251);
  await Deno.writeFile(path, bytes);
  const s = await FileSource.open(path);
  try {
    const into = new Uint8Array(300).fill(0xff);
    s.readInto(600, into.subarray(0, 100));
    assertEquals(into.subarray(0, 100), bytes.subarray(600, 700));
    assertEquals(into[100], 0xff, "nothing past the view is written");
    assertThrows(() => s.readInto(900, into.subarray(0, 200)), RangeError);
    await Deno.truncate(path, 500);
    const e = assertThrows(() => s.readInto(400, into.subarray(0, 200)), SourceEndedError);
    assertEquals(
      e.message,
      `Cannot read ${path} at byte 400 (200 bytes): the file ends at byte 500; it was 1000 bytes when opened (truncated since?)`,
    );
  } finally {
    s.close();
    await Deno.remove(path);
  }
});

Deno.test("openSource() with expect refuses another version of the file", async (t) => {
  await t.step("a file replaced by rename", async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/vm.lsnap`;
    try {
      await Deno.writeFile(path, new Uint8Array(100));
      const first = await openSource(path);
      const again = await openSource(path, { expect: first.identity });
      again.close();
      await Deno.writeFile(`${dir}/new`, new Uint8Array(100));
      await Deno.rename(`${dir}/new`, path);
      const e = await assertRejects(
        () => openSource(path, { expect: first.identity }),
        SourceChangedError,
      );
      assert(
        e.message.startsWith(`Cannot open ${path}: its ino is `) &&
          e.message.endsWith("expected (the file changed since it was first opened)"),
        e.message,
      );
      first.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
  await t.step("a URL whose ETag changed", async () => {
    const server = startRangeServer({ body: new Uint8Array(1000) });
    try {
      const first = await openSource(server.url);
      first.close();
      server.replace(new Uint8Array(1000));
      await assertRejects(
        () => openSource(server.url, { expect: first.identity }),
        SourceChangedError,
        `its etag is "v2", not the "v1" expected`,
      );
    } finally {
      await server.close();
    }
  });
});
