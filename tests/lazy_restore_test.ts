/**
 * Lazy restore (`restore --lazy`): the guest runs before its RAM is read, and computes exactly
 * what it computes after an eager restore; a damaged record it faults in stops it with an exact
 * error; a recorded working set cuts its demand faults.
 */
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "@std/assert/mod.js";
import { LiveMachine } from "../emulator/snapshot/live_machine.ts";
import {
  LazyPageError,
  loadersReady,
  restoreEagerly,
  restoreLazily,
  spawnLoaders,
} from "../emulator/snapshot/lazy_restore.ts";
import { crc32c } from "../format/checksum.ts";
import { FOOTER_SIZE, RecordType } from "../format/constants.ts";
import { decodeFooter, encodeFooter } from "../format/footer.ts";
import { decodeIndex, encodeIndex, findIndexEntry } from "../format/index_record.ts";
import { decodeRecordHead, encodeRecord } from "../format/record.ts";
import { ChecksumError } from "../format/errors.ts";
import { machineContentDigest } from "../emulator/snapshot/machine_state.ts";
import type { SnapshotMode } from "../emulator/snapshot/session.ts";
import { decodeWorkingSet, workingSetPath } from "../emulator/snapshot/working_set.ts";
import { SnapshotFileReader } from "../format/file_reader.ts";
import { restoreSnapshot } from "../tools/restore.ts";
import { warmLazyRestore } from "../emulator/snapshot/restore_warmup.ts";
import { memstressElf } from "./_guests.ts";
import { makeRestoreFixture } from "../bench/_lazy_fixture.ts";

const RAM = 8 * 1024 * 1024;
const AT = 1_000_000;
const ELF = memstressElf({ workingSetBytes: 2 * 1024 * 1024, writesPerRound: 30_000, rounds: 0 });

/** A snapshot at AT taken by the live engine in `mode`. */
async function snapshot(dir: string, mode: SnapshotMode): Promise<string> {
  const path = `${dir}/${mode}.lsnap`;
  let error: Error | undefined;
  const lm = await LiveMachine.start({
    elf: ELF,
    ramSize: RAM,
    uartSink: () => {},
    schedule: [{ at: AT, mode, cowBuffer: 64 * 1024, path }],
    stopAt: AT + 200_000,
    onScheduledError: (e) => error = e,
  });
  await lm.halted;
  await lm.quit();
  if (error !== undefined) throw error;
  return path;
}

async function run(
  path: string,
  runFor: number,
  lazy?: Parameters<typeof restoreSnapshot>[0]["lazy"],
) {
  let out = "";
  const decoder = new TextDecoder();
  const r = await restoreSnapshot({ path, runFor, sink: (b) => out += decoder.decode(b), lazy });
  const digest = await machineContentDigest(r.machine);
  const metrics = r.pager?.metrics();
  await r.pager?.finish();
  return { out, digest, retired: r.retired, metrics };
}

Deno.test("restore --lazy gives the output and digest of an eager restore, for every mode, with and without a hint", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    for (const mode of ["cow", "stop", "precopy"] as const) {
      const path = await snapshot(dir, mode);
      // Precopy's state is at its final pause, after AT: counts from the restore point.
      for (const stopAt of [1, 150_000, 700_000]) {
        await t.step(`${mode}, ${stopAt} instructions after the restore`, async () => {
          const eager = await run(path, stopAt);
          const lazy = await run(path, stopAt, { hint: "off", loaders: 1 });
          assertEquals(lazy.out, eager.out);
          assertEquals(lazy.digest, eager.digest);
          assertEquals(lazy.retired, eager.retired);
          assert(lazy.metrics!.demandFaults > 0, "the guest faulted its pages in");
          if (stopAt === 150_000) {
            const demandOnly = await run(path, stopAt, { hint: "off", loaders: 0 });
            assertEquals([demandOnly.out, demandOnly.digest], [eager.out, eager.digest]);
          }
        });
      }
      await t.step(`${mode}, recorded hint then hinted`, async () => {
        const stopAt = 700_000;
        const eager = await run(path, stopAt);
        const rec = await run(path, stopAt, { hint: "off", recordWs: { window: 300_000 } });
        assertEquals([rec.out, rec.digest], [eager.out, eager.digest]);
        const hinted = await run(path, stopAt, { hint: "auto" });
        assertEquals([hinted.out, hinted.digest], [eager.out, eager.digest]);
        assert(hinted.metrics!.hintPages > 0);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restore --lazy with a recorded working set has at least 80% fewer demand faults", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = await snapshot(dir, "cow");
    const stopAt = 700_000;
    // loaders: 0 makes both runs deterministic: only the guest's own reads bring pages in.
    const cold = await run(path, stopAt, {
      hint: "off",
      loaders: 0,
      recordWs: { window: 900_000 },
    });
    const hinted = await run(path, stopAt, { hint: "auto", loaders: 0 });
    assertEquals([hinted.out, hinted.digest], [cold.out, cold.digest]);
    const before = cold.metrics!.demandFaults;
    const after = hinted.metrics!.demandFaults;
    assert(before >= 20, `the cold run faulted ${before} times`);
    assert(after * 5 <= before, `demand faults ${before} without the hint, ${after} with it`);
    assert(hinted.metrics!.prefetchHits > 0, "the guest touched pages the hint brought in");
    // With a loader sharing the hint (it claims records from the back while the guest's thread
    // claims them from the front, and the guest waits for one in progress rather than read it
    // again): the same results, and as few demand faults.
    const shared = await run(path, stopAt, { hint: "auto", loaders: 1 });
    assertEquals([shared.out, shared.digest], [cold.out, cold.digest]);
    const m = shared.metrics!;
    assert(
      m.demandFaults * 5 <= before,
      `demand faults ${before} without the hint, ${m.demandFaults} with it and a loader`,
    );
    assert(m.hintPrefetched > 0, "the hint's records were brought in ahead of the guest");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("with a hint, the loader brings the hint in and holds the rest back until the guest has run the hint's window", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // memstress with a 1 MiB working set in 16 MiB of RAM whose other pages hold data the guest
    // never touches: records outside the hint.
    const { path } = await makeRestoreFixture(`${dir}/mixed.lsnap`, 16 << 20, {
      workingSetBytes: 1 << 20,
      at: 500_000,
    });
    const window = 300_000;
    await run(path, window, { hint: "off", loaders: 0, recordWs: { window } });
    const r = await restoreLazily({ path, uartSink: () => {}, hint: "auto", loaders: 1 });
    try {
      const until = async (what: string, ok: () => boolean) => {
        const end = performance.now() + 20_000;
        while (!ok()) {
          if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
          await new Promise((done) => setTimeout(done, 20));
        }
      };
      assert(r.pager.metrics().hintPages > 0);
      await until("the hint's records", () => r.pager.metrics().hintPrefetched > 0);
      // Time enough for a loader that was not held to go on to the rest of the file.
      await new Promise((done) => setTimeout(done, 500));
      let m = r.pager.metrics();
      assertEquals(m.prefetchedPages, m.hintPrefetched, "only the hint's records were loaded");
      assert(!r.pager.loadersStopped(), "the loader waits with the rest");
      // The guest has run the window: the rest comes in.
      r.pager.tick(r.retired + window);
      await until("the loader's end", () => r.pager.loadersStopped());
      m = r.pager.metrics();
      assert(m.prefetchedPages > m.hintPrefetched, `${m.prefetchedPages} pages loaded in all`);
      assertEquals(m.prefetchedPages, m.pagesInFile, "every page the file holds, by the loader");
    } finally {
      await r.pager.finish();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a working-set hint for another file, or damaged, is ignored with a note", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = await snapshot(dir, "cow");
    const b = await snapshot(dir, "stop");
    await run(a, 100_000, { hint: "off", loaders: 0, recordWs: { window: 100_000 } });
    const reader = await SnapshotFileReader.open(a);
    const ws = decodeWorkingSet(await Deno.readFile(workingSetPath(a)), {
      pageSize: 4096,
      pageCount: RAM / 4096,
      fileDigest: reader.trailer!.fileDigest,
    });
    reader.close();
    assert(typeof ws !== "string" && ws.pages.length > 0);
    const notes: string[] = [];
    const onNote = (n: string) => notes.push(n);
    // a's hint given to b: another file digest.
    let r = await restoreLazily({ path: b, hint: workingSetPath(a), loaders: 0, onNote });
    assertEquals(r.pager.metrics().hintPages, 0);
    await r.pager.finish();
    assertMatch(
      notes[0],
      /^ignoring the working-set hint .*cow\.lsnap\.ws: it was recorded for another snapshot \(file digest [0-9a-f]{16}…, this file's is [0-9a-f]{16}…\)$/,
    );
    // A flipped byte.
    const bytes = await Deno.readFile(workingSetPath(a));
    bytes[70] ^= 1;
    await Deno.writeFile(workingSetPath(a), bytes);
    r = await restoreLazily({ path: a, loaders: 0, onNote });
    assertEquals(r.pager.metrics().hintIgnored, "its CRC32C does not match");
    await r.pager.finish();
    assertEquals(notes.length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The offset of the PAGES record holding the page at the snapshot's pc. */
async function recordOfPc(path: string): Promise<{ offset: number; page: number }> {
  const r = await restoreSnapshot({ path, stopAt: AT, sink: () => {} });
  const page = ((r.machine.hart.pc >>> 0) - 0x8000_0000) / 4096 | 0;
  const reader = await SnapshotFileReader.open(path);
  const offset = reader.pageRecordOffset(0, page);
  reader.close();
  return { offset, page };
}

Deno.test("a record that fails its CRC when faulted in stops the guest before the access; the command exits 1 naming it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = await snapshot(dir, "cow");
    const { offset, page } = await recordOfPc(path);
    assert(offset > 0);
    const bytes = await Deno.readFile(path);
    bytes[offset + 40] ^= 0x10; // inside the payload: the record's CRC32C no longer matches
    await Deno.writeFile(path, bytes);
    // In process: the error, and the guest stopped at the snapshot's instruction.
    const r = await restoreLazily({ path, loaders: 0, uartSink: () => {} });
    const retired = r.machine.hart.retired;
    const e = assertThrows(() => r.machine.run(10), LazyPageError);
    await r.pager.finish();
    assertEquals([e.page, e.recordOffset], [page, offset]);
    assertEquals(r.machine.hart.retired, retired, "no instruction retired on the damaged page");
    // The command: exit 1, one line naming the page, the record and its offset, no stack trace.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "tools/cli.ts", "restore", path, "--lazy", "--run-for", "1000"],
      cwd: new URL("..", import.meta.url),
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 1);
    assertMatch(
      stderr,
      new RegExp(
        `^livesnap restore: Cannot load guest page ${page} \\(address 0x[0-9a-f]+\\) on its first access from the PAGES record at byte ${offset}: record CRC32C mismatch \\(expected [0-9a-f]{8}, got [0-9a-f]{8}\\); the guest was stopped before the access\\n$`,
      ),
    );
    assertEquals(out.stdout.length, 0, "the guest printed nothing");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an INDEX entry that points past the index, found when its page is faulted in: the guest stops, the command exits 1 naming the INDEX and its offset", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = await snapshot(dir, "stop");
    const { page } = await recordOfPc(path);
    // Rewrite the INDEX with the first instruction's page pointing at the index itself (its
    // record CRC and the footer made good again): only a lookup of that page can see it.
    const bytes = await Deno.readFile(path);
    const size = bytes.length;
    const f = decodeFooter(bytes.subarray(size - FOOTER_SIZE), size - FOOTER_SIZE);
    const head = decodeRecordHead(bytes.subarray(f.indexOffset), f.indexOffset, -1);
    const payload = bytes.subarray(f.indexOffset + 8, f.indexOffset + 8 + head.length);
    const index = decodeIndex(payload, [RAM / 4096], f.indexOffset, f.indexOffset, -1);
    const entry = findIndexEntry(index, 0, page);
    assert(entry >= 0);
    index.pageOffsets[entry] = f.indexOffset;
    const rewritten = encodeRecord(RecordType.INDEX, head.flags, encodeIndex(index));
    const trailer = bytes.subarray(f.trailerOffset, size - FOOTER_SIZE);
    const trailerOffset = f.indexOffset + rewritten.length;
    const out = new Uint8Array(trailerOffset + trailer.length + FOOTER_SIZE);
    out.set(bytes.subarray(0, f.indexOffset));
    out.set(rewritten, f.indexOffset);
    out.set(trailer, trailerOffset);
    out.set(
      encodeFooter({ trailerOffset, indexOffset: f.indexOffset }),
      trailerOffset + trailer.length,
    );
    await Deno.writeFile(path, out);
    const r = await restoreLazily({ path, loaders: 0, uartSink: () => {} });
    const retired = r.machine.hart.retired;
    const e = assertThrows(() => r.machine.run(10), LazyPageError);
    await r.pager.finish();
    assertEquals(e.page, page);
    assertEquals(r.machine.hart.retired, retired, "no instruction retired");
    const cmd = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "tools/cli.ts", "restore", path, "--lazy", "--run-for", "1000"],
      cwd: new URL("..", import.meta.url),
    }).output();
    assertEquals(cmd.code, 1);
    assertMatch(
      new TextDecoder().decode(cmd.stderr),
      new RegExp(
        `^livesnap restore: Cannot load guest page ${page} \\(address 0x[0-9a-f]+\\) on its first access: the INDEX record at byte ${f.indexOffset}: index entry ${entry} points at byte ${f.indexOffset}, not before the index at ${f.indexOffset}; the guest was stopped before the access\\n$`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a snapshot file cut short during a lazy restore: a clear error, no hang", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = await snapshot(dir, "stop");
    const r = await restoreLazily({ path, loaders: 0, uartSink: () => {}, waitBoundMs: 2_000 });
    await Deno.truncate(path, 4096);
    const e = assertThrows(() => r.machine.run(1_000_000), LazyPageError);
    await r.pager.finish();
    assertMatch(e.message, /the file now ends .*(bytes into this|before this record)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restore --lazy refuses what it cannot read at random, before anything runs", async () => {
  await assertRejects(
    () => restoreLazily({ path: "/dev/stdin", loaders: 0 }),
    Error,
    "is not a regular file",
  );
  await assertRejects(
    () => restoreLazily({ path: "-", loaders: 0 }),
    Error,
    "standard input is a pipe: a lazy restore reads records by offset",
  );
});

/** The loopback Range server in a worker thread: the guest's thread blocks while it waits for a
 * page, so the server must not share its event loop. */
async function serveInWorker(path: string): Promise<{ url: string; close(): Promise<void> }> {
  const w = new Worker(new URL("../bench/_range_server_worker.ts", import.meta.url), {
    type: "module",
  });
  const next = () => new Promise<{ url?: string }>((r) => w.onmessage = (e) => r(e.data));
  w.postMessage({ path, latencyMs: 0 });
  const { url } = await next();
  return {
    url: url!,
    close: async () => {
      w.postMessage("close");
      await next();
      w.terminate();
    },
  };
}

Deno.test("restore --lazy of an http:// URL gives the output and digest of an eager restore; a server gone mid-restore is a clear error", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    for (const mode of ["cow", "precopy"] as const) {
      const path = await snapshot(dir, mode);
      const server = await serveInWorker(path);
      try {
        await t.step(`${mode}, over http`, async () => {
          const eager = await run(path, 400_000);
          const remote = await run(server.url, 400_000, { loaders: 1 });
          assertEquals([remote.out, remote.digest], [eager.out, eager.digest]);
          assert(remote.metrics!.demandFaults > 0);
          assert(remote.metrics!.bytesRead > 0);
        });
      } finally {
        await server.close();
      }
    }
    await t.step("the server goes away after the index", async () => {
      const path = await snapshot(dir, "stop");
      const server = await serveInWorker(path);
      const r = await restoreLazily({ path: server.url, uartSink: () => {}, waitBoundMs: 5_000 });
      await server.close();
      const e = assertThrows(() => r.machine.run(1_000_000), LazyPageError);
      await r.pager.finish();
      assertMatch(
        e.message,
        /^Cannot load guest page \d+ \(address 0x[0-9a-f]+\) on its first access from the PAGES record at byte \d+: .+; the guest was stopped before the access$/,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restoreEagerly() loads every page with parallel loaders before the guest runs, and refuses a state that differs from the trailer's digest", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = await snapshot(dir, "cow");
    const r = await restoreEagerly({ path, loaders: 2, uartSink: () => {} });
    const m = r.pager.metrics("eager");
    assertEquals(m.loaders, 2);
    assertEquals(m.demandFaults, 0);
    assertEquals(r.machine.ram.lazy, false, "no page is absent");
    // The digest checked is built from the entries the loaders recorded as they installed pages:
    // it is the trailer's, and the one RAM itself gives.
    const fromInstalls = await r.pager.installedContentDigest();
    assertEquals(fromInstalls, r.contentDigest);
    assertEquals(await machineContentDigest(r.machine), fromInstalls);
    const eager = await run(path, 300_000);
    const stream = await restoreSnapshot({
      path,
      runFor: 300_000,
      sink: () => {},
      parallel: false,
    });
    assertEquals(await machineContentDigest(stream.machine), eager.digest);
    // The trailer's content digest changed, its CRC recomputed: every record reads and checks,
    // but the state is not the one the trailer declares.
    const bytes = await Deno.readFile(path);
    const dv = new DataView(bytes.buffer);
    const trailerAt = Number(dv.getBigUint64(bytes.length - 32 + 8, true));
    bytes[trailerAt + 8 + 40] ^= 1;
    dv.setUint32(trailerAt + 8 + 104, crc32c(bytes.subarray(trailerAt, trailerAt + 8 + 104)), true);
    await Deno.writeFile(path, bytes);
    await assertRejects(
      () => restoreEagerly({ path, uartSink: () => {} }),
      ChecksumError,
      "the restored state does not match the trailer's content digest",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--record-ws keeps the first touches of its window only, in order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = await snapshot(dir, "cow");
    const recorded = async (window: number) => {
      const out = `${dir}/w${window}.ws`;
      await run(path, 700_000, { hint: "off", loaders: 0, recordWs: { window, path: out } });
      const reader = await SnapshotFileReader.open(path);
      const ws = decodeWorkingSet(await Deno.readFile(out), {
        pageSize: 4096,
        pageCount: RAM / 4096,
        fileDigest: reader.trailer!.fileDigest,
      });
      reader.close();
      if (typeof ws === "string") throw new Error(ws);
      return [...ws.pages];
    };
    const short = await recorded(100_000);
    const long = await recorded(700_000);
    assert(short.length > 0 && short.length < long.length, `${short.length} and ${long.length}`);
    assertEquals(long.slice(0, short.length), short, "the short window is the long one's start");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restoreLazily() with deferLoaders hands the loader its work only at the first instruction; the metrics time it on the thread's CPU", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = await snapshot(dir, "stop");
    const r = await restoreLazily({ path, uartSink: () => {}, hint: "off", deferLoaders: true });
    try {
      // A loader handed its work would have installed pages by now (it has the whole file).
      await new Promise((ok) => setTimeout(ok, 300));
      assertEquals(r.pager.metrics().prefetchedPages, 0, "no page loaded before the guest ran");
      assertEquals(await r.pager.installedContentDigest(), null, "a lazy restore records none");
      assert(!r.pager.loadersStopped(), "the loader is counted as running, to be waited for");
      r.machine.run(1);
      r.pager.markFirstInstruction();
      r.pager.waitForLoaders();
      const m = r.pager.metrics();
      assert(m.prefetchedPages > 0, "the loader ran once the first instruction retired");
      assert(m.firstInstructionUs !== null && m.firstInstructionUs > 0);
      if (Deno.build.os === "linux") {
        const cpu = m.firstInstructionCpu!;
        assert(cpu.runUs > 0, "the restore took CPU time");
        // Time on a CPU and time waiting for one both lie inside the span they divide (µs
        // rounding, and schedstat's accounting at the last tick, allowed for).
        assert(
          cpu.runUs + cpu.waitUs <= m.firstInstructionUs! + 5_000,
          `${JSON.stringify(cpu)} within ${m.firstInstructionUs} µs`,
        );
      }
    } finally {
      await r.pager.finish();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("warmLazyRestore() leaves no file behind, and the restore after it computes what one without it does", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = await snapshot(dir, "cow");
    const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
    const warmups = async () => {
      const names: string[] = [];
      for await (const e of Deno.readDir(tmp)) {
        if (e.name.startsWith("livesnap-warmup-")) names.push(e.name);
      }
      return names.sort();
    };
    const before = await warmups();
    assertEquals(await warmLazyRestore(), true, "the full warm-up ran to its end");
    assertEquals(await warmLazyRestore("light"), true, "the light warm-up ran to its end");
    assertEquals(await warmups(), before, "the warm-up's temporary snapshot was removed");
    const cold = await run(path, 150_000, { hint: "off", warm: false });
    const warm = await run(path, 150_000, { hint: "off", warm: true });
    assertEquals([warm.out, warm.digest, warm.retired], [cold.out, cold.digest, cold.retired]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadersReady() sees a loader's ready message even when it came before anyone waited", async () => {
  const workers = spawnLoaders(2);
  try {
    // Long enough for the loaders to load their code and say so while nobody listens.
    await new Promise((ok) => setTimeout(ok, 1_500));
    assertEquals(await loadersReady(workers, 30_000), true);
    assertEquals(await loadersReady([], 10), true, "no loader: nothing to wait for");
  } finally {
    for (const w of workers) w.terminate();
  }
});

Deno.test("restore --lazy with a light, a full or no warm-up prints what an eager restore prints; --warm-up and --cold need --lazy and exclude each other", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = await snapshot(dir, "cow");
    const cli = (...args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "tools/cli.ts", "restore", path, ...args],
        cwd: new URL("..", import.meta.url),
      }).output();
    const eager = await cli("--run-for", "150000", "--digest");
    assert(eager.stdout.length > 0);
    for (const how of [["--warm-up"], [], ["--cold"]]) {
      const lazy = await cli("--lazy", ...how, "--run-for", "150000", "--digest");
      assertEquals(lazy.code, 0, new TextDecoder().decode(lazy.stderr));
      assertEquals(new TextDecoder().decode(lazy.stdout), new TextDecoder().decode(eager.stdout));
    }
    for (
      const [args, why] of [
        [["--warm-up"], /--warm-up needs --lazy/],
        [["--cold"], /--cold needs --lazy/],
        [["--lazy", "--warm-up", "--cold"], /--warm-up and --cold exclude each other/],
      ] as const
    ) {
      const refused = await cli(...args, "--run-for", "1");
      assertEquals(refused.code, 2);
      assertMatch(new TextDecoder().decode(refused.stderr), why);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
