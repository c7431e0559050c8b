/**
 * The source of a live migration against destinations that refuse or vanish at each step: its
 * guest must never lose an instruction, never run past the state it handed over, and run on when
 * the migration fails. Each destination here is a raw TCP server speaking docs/MIGRATION.md.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert/mod.js";
import { Machine } from "../emulator/machine.ts";
import { LiveMachine, type PrecopyPassReport } from "../emulator/snapshot/live_machine.ts";
import { machineContentDigest, sectionsFromState } from "../emulator/snapshot/machine_state.ts";
import {
  encodeHello,
  encodeMessage,
  encodeMigrationPrologue,
  MIGRATION_MAGIC,
  MigrationError,
  MigrationMessage,
  TimedByteReader,
} from "../format/migration.ts";
import { migrate, type MigrationPassLine, parseHostPort, SWITCHOVER_FIXED_MS } from "./migrate.ts";
import { encodeDeviceSection, normalizeDevice } from "../format/device_section.ts";
import { decodeRecordHead, encodeRecord } from "../format/record.ts";
import { decodePageRecord, encodePageRecord } from "../format/page_record.ts";
import { FLAG_CRITICAL, RecordType } from "../format/constants.ts";
import { type IncomingOptions, receiveMigration } from "./incoming.ts";
import { memstressElf } from "../emulator/guests/memstress_config.ts";
import { restoreMachine } from "../emulator/snapshot/restore.ts";
import { saveMachine } from "../emulator/snapshot/save.ts";
import { portReadable } from "../emulator/snapshot/port_stream.ts";

const ELF = await Deno.readFile(new URL("../emulator/guests/build/counter.elf", import.meta.url));
const RAM = 4 << 20;

/** What a fake destination does once the source has connected. */
type Script = (
  reader: TimedByteReader,
  w: WritableStreamDefaultWriter<Uint8Array>,
  conn: Deno.TcpConn,
) => Promise<void>;

/** A one-connection server on a free port running `script`. */
function fakeDestination(script: Script): { port: number; done: Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    const conn = await listener.accept();
    listener.close();
    const reader = new TimedByteReader(conn.readable, "the source");
    const w = conn.writable.getWriter();
    try {
      await script(reader, w, conn);
    } finally {
      stopProgress();
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  })();
  done.catch(() => {}); // awaited by the tests that care
  return { port: (listener.addr as Deno.NetAddr).port, done };
}

/** Reads the source's prologue and HELLO, answers with a prologue and ACCEPT. */
async function accept(reader: TimedByteReader, w: WritableStreamDefaultWriter<Uint8Array>) {
  await reader.exactly(16, 5000, "prologue");
  const hello = await reader.message(5000, "HELLO");
  assertEquals(hello.type, MigrationMessage.HELLO);
  await w.write(encodeMigrationPrologue());
  await w.write(encodeMessage(MigrationMessage.ACCEPT, {}));
  // As a real destination: PROGRESS with the stream bytes taken so far, until the end.
  const start = reader.offset;
  const timer = setInterval(() => {
    w.write(encodeMessage(MigrationMessage.PROGRESS, { bytes: reader.offset - start }))
      .catch(() => clearInterval(timer));
  }, 20);
  progressTimers.push(timer);
}

const progressTimers: ReturnType<typeof setInterval>[] = [];
function stopProgress(): void {
  for (const t of progressTimers.splice(0)) clearInterval(t);
}

/** Reads the whole .lsnap stream and SWITCHOVER; returns SWITCHOVER's body. */
async function takeStream(reader: TimedByteReader) {
  await reader.lsnapStream(() => Promise.resolve(), 10_000);
  const sw = await reader.message(10_000, "SWITCHOVER");
  assertEquals(sw.type, MigrationMessage.SWITCHOVER);
  return sw.body as { contentDigest: string; atInstruction: number };
}

/** The source's guest after a failed migration: running, and where an uninterrupted run is. */
async function expectRunsOn(vm: LiveMachine): Promise<void> {
  const before = (await vm.status()).retired;
  await new Promise((r) => setTimeout(r, 200));
  const s = await vm.status();
  assertEquals(s.state, "running");
  assert(s.retired > before, `${s.retired} > ${before}`);
  await vm.pause();
  const at = (await vm.status()).retired;
  const whole = Machine.fromElf(ELF, { ramSize: RAM, uartSink: () => {} });
  whole.run(at);
  assertEquals(await vm.digest(), await machineContentDigest(whole));
  await vm.quit();
}

Deno.test("migrate() sends nothing of the guest before the destination accepts", async () => {
  let got = 0;
  const d = fakeDestination(async (reader, w) => {
    const prologue = await reader.exactly(16, 5000, "prologue");
    await reader.message(5000, "HELLO");
    got = reader.offset;
    assertEquals(prologue.subarray(0, 8), MIGRATION_MAGIC);
    await w.write(encodeMigrationPrologue());
    await w.write(encodeMessage(MigrationMessage.REFUSE, { reason: "no room for it here" }));
    // Whatever else the source sends now would be guest memory: there must be none.
    await assertRejects(() => reader.exactly(1, 2000, "anything more"), MigrationError);
  });
  const vm = await LiveMachine.start({ elf: ELF, ramSize: RAM });
  const e = await assertRejects(
    () => migrate(vm, { host: "127.0.0.1", port: d.port }),
    MigrationError,
  );
  assertEquals(e.failure, "refused");
  assert(e.message.includes("the destination refused: no room for it here"), e.message);
  await d.done;
  assert(got > 16 && got < 4096, `${got} bytes before the refusal`);
  await expectRunsOn(vm);
});

Deno.test("migrate(): a destination gone after the final pause leaves the guest running on, exactly", async (t) => {
  const endings: [string, Script, string][] = [
    [
      "closed before READY",
      async (reader, w, conn) => {
        await accept(reader, w);
        await takeStream(reader);
        conn.close();
      },
      "connection",
    ],
    [
      "REFUSE mismatch instead of READY",
      async (reader, w) => {
        await accept(reader, w);
        await takeStream(reader);
        stopProgress();
        await w.write(
          encodeMessage(MigrationMessage.REFUSE, { reason: "digests differ", failure: "mismatch" }),
        );
      },
      "mismatch",
    ],
    [
      "closed in the middle of the stream",
      async (reader, w, conn) => {
        await accept(reader, w);
        await reader.exactly(100_000, 5000, "some of the stream");
        conn.close();
      },
      "connection",
    ],
    [
      "silent after ACCEPT (bounded wait)",
      async (reader, w) => {
        await accept(reader, w);
        await takeStream(reader);
        stopProgress();
        await new Promise((r) => setTimeout(r, 1500));
      },
      "timeout",
    ],
  ];
  for (const [name, script, failure] of endings) {
    await t.step(name, async () => {
      const d = fakeDestination(script);
      const vm = await LiveMachine.start({ elf: ELF, ramSize: RAM });
      const e = await assertRejects(
        () => migrate(vm, { host: "127.0.0.1", port: d.port, timeoutMs: 1000 }),
        MigrationError,
      );
      assertEquals(e.failure, failure, e.message);
      await d.done.catch(() => {});
      await expectRunsOn(vm);
    });
  }
});

/** A guest that keeps storing over 1 MiB and prints each round. */
const STORM = memstressElf({ workingSetBytes: 1 << 20, writesPerRound: 5_000, rounds: 0 });
/** Instructions the destination runs after the switch-over before it is compared. */
const RUN_ON = 2_000_000;

/** The digest an uninterrupted run of `elf` holds after `at` instructions. */
async function digestAt(elf: Uint8Array, at: number): Promise<string> {
  const whole = Machine.fromElf(elf, { ramSize: 8 << 20, uartSink: () => {} });
  whole.run(at);
  return await machineContentDigest(whole);
}

/** Starts a destination on a free loopback port; resolves with the port and its result. */
async function realDestination(o: Partial<IncomingOptions> = {}) {
  let port!: (p: number) => void;
  const listening = new Promise<number>((r) => port = r);
  const incoming = receiveMigration({
    host: "127.0.0.1",
    port: 0,
    onListening: (a) => port(a.port),
    live: { runFor: RUN_ON },
    ...o,
  });
  incoming.catch(() => {});
  return { port: await listening, incoming };
}

Deno.test("migrate() postcopy: the destination runs at once on faulted-in pages and goes on exactly as an uninterrupted run", async () => {
  const d = await realDestination();
  const vm = await LiveMachine.start({ elf: STORM, ramSize: 8 << 20 });
  await new Promise((r) => setTimeout(r, 200));
  // The link is slow enough that the guest needs pages before the sweep brings them.
  const m = await migrate(vm, {
    host: "127.0.0.1",
    port: d.port,
    mode: "postcopy",
    bandwidth: 2 << 20,
  });
  const { machine, metrics } = await d.incoming;
  assertEquals(m.mode, "postcopy");
  assertEquals(metrics.mode, "postcopy");
  // The state checked at the destination is the one the source stopped in.
  assertEquals(metrics.contentDigest, m.contentDigest);
  assertEquals(machine.startRetired, m.atInstruction);
  assertEquals(m.contentDigest, await digestAt(STORM, m.atInstruction));
  // The guest ran before its pages were in: it faulted on some of them.
  assert(m.postcopyFaults > 0, JSON.stringify(m));
  assertEquals(m.postcopyFaults, metrics.postcopyFaults);
  assert(m.faultLatencyUs !== null && m.faultLatencyUs.p99 >= m.faultLatencyUs.p50);
  assertEquals(m.passes, 0);
  for (const k of ["downtimeMs", "totalMs", "bytesSent"] as const) {
    assert(m[k] > 0, `${k}: ${m[k]}`);
  }
  const halt = await machine.halted;
  assertEquals(halt.retired, m.atInstruction + RUN_ON);
  assertEquals(await machine.digest(), await digestAt(STORM, m.atInstruction + RUN_ON));
  await machine.quit();
});

Deno.test("migrate() hybrid: precopy passes, then post-copy of what they did not settle; the destination goes on exactly as an uninterrupted run", async () => {
  const d = await realDestination();
  const vm = await LiveMachine.start({ elf: STORM, ramSize: 8 << 20 });
  await new Promise((r) => setTimeout(r, 200));
  const passes: number[] = [];
  const m = await migrate(vm, {
    host: "127.0.0.1",
    port: d.port,
    mode: "hybrid",
    precopyPasses: 2,
    bandwidth: 8 << 20,
    onPass: (p) => passes.push(p.pass),
  });
  const { machine, metrics } = await d.incoming;
  assertEquals(m.mode, "hybrid");
  assertEquals(m.passes, 2);
  assertEquals(passes, [0, 1]);
  assertEquals(metrics.contentDigest, m.contentDigest);
  assertEquals(machine.startRetired, m.atInstruction);
  assertEquals(m.contentDigest, await digestAt(STORM, m.atInstruction));
  const halt = await machine.halted;
  assertEquals(halt.retired, m.atInstruction + RUN_ON);
  assertEquals(await machine.digest(), await digestAt(STORM, m.atInstruction + RUN_ON));
  await machine.quit();
});

/** A TCP relay to `port` that closes both sides once `cut` bytes have gone from the client to
 * the server (a connection lost mid-stream). */
function cuttingRelay(port: number, cut: number): { port: number; cutDone: Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const cutDone = (async () => {
    const a = await listener.accept();
    listener.close();
    const b = await Deno.connect({ hostname: "127.0.0.1", port });
    const close = () => {
      for (const c of [a, b]) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
    };
    const back = b.readable.pipeTo(a.writable, { preventClose: true }).catch(() => {});
    let n = 0;
    const w = b.writable.getWriter();
    try {
      for await (const chunk of a.readable) {
        const take = Math.min(chunk.length, cut - n);
        await w.write(chunk.subarray(0, take));
        n += take;
        if (n >= cut) break;
      }
    } catch {
      // a side closed
    }
    close();
    await back;
  })();
  return { port: (listener.addr as Deno.NetAddr).port, cutDone };
}

Deno.test("migrate() postcopy cut mid-sweep: both guests hold, and resume finishes with the right digest", async () => {
  const d = await realDestination({ resumeTimeoutMs: 20_000 });
  const relay = cuttingRelay(d.port, 1 << 20);
  const vm = await LiveMachine.start({ elf: STORM, ramSize: 8 << 20 });
  await new Promise((r) => setTimeout(r, 200));
  const e = await assertRejects(
    () => migrate(vm, { host: "127.0.0.1", port: relay.port, mode: "postcopy", timeoutMs: 10_000 }),
    MigrationError,
  );
  await relay.cutDone;
  assert(/--resume/.test(e.message), e.message);
  // The source's guest stays stopped where it handed over.
  const held = await vm.status();
  assertEquals(held.state, "paused");
  const m = await migrate(vm, { host: "127.0.0.1", port: d.port, resume: true });
  assertEquals(m.atInstruction, held.retired);
  const { machine, metrics } = await d.incoming;
  assertEquals(metrics.connections, 2);
  assertEquals(metrics.contentDigest, m.contentDigest);
  assertEquals(m.contentDigest, await digestAt(STORM, m.atInstruction));
  const halt = await machine.halted;
  assertEquals(halt.retired, m.atInstruction + RUN_ON);
  assertEquals(await machine.digest(), await digestAt(STORM, m.atInstruction + RUN_ON));
  await machine.quit();
});

Deno.test("receiveMigration() postcopy: a source that never comes back after a cut ends the wait at its bound, clearly", async () => {
  const d = await realDestination({ resumeTimeoutMs: 1500 });
  const relay = cuttingRelay(d.port, 1 << 20);
  const vm = await LiveMachine.start({ elf: STORM, ramSize: 8 << 20 });
  await assertRejects(
    () => migrate(vm, { host: "127.0.0.1", port: relay.port, mode: "postcopy", timeoutMs: 10_000 }),
    MigrationError,
  );
  await relay.cutDone;
  const t0 = performance.now();
  const e = await assertRejects(() => d.incoming, MigrationError);
  assertEquals(e.failure, "timeout", e.message);
  assert(
    /no source resumed it within 1500 ms \(\d+ of 2048 pages missing\)/.test(e.message),
    e.message,
  );
  assert(performance.now() - t0 < 10_000);
  await vm.quit();
});

Deno.test("migrate() --resume without an interrupted post-copy is refused before connecting", async () => {
  const vm = await LiveMachine.start({ elf: ELF, ramSize: RAM });
  const e = await assertRejects(
    () => migrate(vm, { host: "127.0.0.1", port: 9, resume: true }),
    MigrationError,
  );
  assert(e.message.includes("no interrupted post-copy"), e.message);
  await expectRunsOn(vm);
});

Deno.test("migrate() postcopy: a destination asking for a page outside RAM is a protocol error; the guest stays stopped, resumable", async () => {
  const d = fakeDestination(async (reader, w) => {
    await reader.exactly(16, 5000, "prologue");
    await reader.message(5000, "HELLO");
    await w.write(encodeMigrationPrologue());
    await w.write(encodeMessage(MigrationMessage.ACCEPT, {}));
    const sw = await reader.message(5000, "SWITCHOVER");
    assertEquals(sw.type, MigrationMessage.SWITCHOVER);
    await w.write(encodeMessage(MigrationMessage.PAGE_REQUEST, { pages: [1 << 30] }));
    await new Promise((r) => setTimeout(r, 500));
  });
  const vm = await LiveMachine.start({ elf: ELF, ramSize: RAM });
  const e = await assertRejects(
    () => migrate(vm, { host: "127.0.0.1", port: d.port, mode: "postcopy", timeoutMs: 2000 }),
    MigrationError,
  );
  await d.done.catch(() => {});
  assertEquals(e.failure, "protocol", e.message);
  assert(/PAGE_REQUEST's field 'pages' holds 1073741824/.test(e.message), e.message);
  assert(/--resume/.test(e.message), e.message);
  assertEquals((await vm.status()).state, "paused");
  await vm.quit();
});

Deno.test("receiveMigration() postcopy: a record longer than its cap is refused before it is read; nothing is kept", async () => {
  const dir = await Deno.makeTempDir();
  const d = await realDestination({ out: `${dir}/in.lsnap` });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: d.port });
  const w = conn.writable.getWriter();
  const reader = new TimedByteReader(conn.readable, "the destination");
  const vm = await LiveMachine.start({ elf: ELF, ramSize: RAM });
  await w.write(encodeMigrationPrologue());
  await w.write(encodeHello({ description: vm.description, devices: {}, mode: "postcopy" }));
  await vm.quit();
  await reader.exactly(16, 5000, "prologue");
  assertEquals((await reader.message(10_000, "ACCEPT")).type, MigrationMessage.ACCEPT);
  await w.write(
    encodeMessage(MigrationMessage.SWITCHOVER, { atInstruction: 0, deviceRecords: 1 }),
  );
  // A DEVICE record head declaring 8 MiB (under the format's record cap, over a message's):
  // refused from the head alone.
  const head = new Uint8Array(8);
  const v = new DataView(head.buffer);
  v.setUint16(0, 0x0003, true);
  v.setUint16(2, 1, true);
  v.setUint32(4, 8 << 20, true);
  await w.write(head);
  const e = await assertRejects(() => d.incoming, MigrationError);
  assertEquals(e.failure, "protocol", e.message);
  assert(/more than the 1048576 allowed/.test(e.message), e.message);
  conn.close();
  assertEquals([...Deno.readDirSync(dir)].length, 0);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("receiveMigration() postcopy: a state whose digest is not the source's stops the guest and fails as a mismatch", async () => {
  const d = await realDestination();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: d.port });
  const w = conn.writable.getWriter();
  const reader = new TimedByteReader(conn.readable, "the destination");
  const vm = await LiveMachine.start({ elf: ELF, ramSize: RAM });
  await vm.pause();
  const { status, state } = await vm.saveState();
  await w.write(encodeMigrationPrologue());
  await w.write(encodeHello({ description: vm.description, devices: {}, mode: "postcopy" }));
  await reader.exactly(16, 5000, "prologue");
  assertEquals((await reader.message(10_000, "ACCEPT")).type, MigrationMessage.ACCEPT);
  const sections = sectionsFromState(state).map(normalizeDevice);
  await w.write(
    encodeMessage(MigrationMessage.SWITCHOVER, {
      atInstruction: status.retired,
      deviceRecords: sections.length,
    }),
  );
  for (const sec of sections) {
    await w.write(encodeRecord(RecordType.DEVICE, FLAG_CRITICAL, encodeDeviceSection(sec)));
  }
  // Every page as zeros (not the guest's RAM), then a digest that cannot be theirs.
  const pages = Uint32Array.from({ length: vm.pageCount }, (_, i) => i);
  await w.write(
    encodeRecord(
      RecordType.PAGES,
      FLAG_CRITICAL,
      encodePageRecord(0, "zero", pages, new Uint8Array(0)),
    ),
  );
  await w.write(encodeMessage(MigrationMessage.COMPLETE, { contentDigest: "ab".repeat(32) }));
  const e = await assertRejects(() => d.incoming, MigrationError);
  assertEquals(e.failure, "mismatch", e.message);
  assert(/content digest [0-9a-f]{64}, the source's state .* has abab/.test(e.message), e.message);
  assert(/the guest was stopped/.test(e.message), e.message);
  // The source was told why.
  let refused = null;
  for (let i = 0; i < 1000 && refused === null; i++) {
    const m = await reader.message(5000, "REFUSE");
    if (m.type === MigrationMessage.REFUSE) refused = m.body as Record<string, unknown>;
  }
  assertEquals(refused?.failure, "mismatch");
  conn.close();
  await vm.quit();
});

Deno.test("migrate(): the downtime ends at the destination guest's first instruction, and each pass's estimate holds the switch-over's fixed cost", async () => {
  let ready!: (p: number) => void;
  const port = new Promise<number>((r) => ready = r);
  const incoming = receiveMigration({
    host: "127.0.0.1",
    port: 0,
    onListening: (a) => ready(a.port),
    live: { uartSink: () => {} },
  });
  const vm = await LiveMachine.start({ elf: ELF, ramSize: RAM, uartSink: () => {} });
  const lines: MigrationPassLine[] = [];
  const m = await migrate(vm, {
    host: "127.0.0.1",
    port: await port,
    onPass: (l) => lines.push(l),
  });
  const dst = await incoming;
  await dst.machine.quit();
  // RUNNING came back: both ends computed the downtime from the same two instants (the source
  // guest's last instruction, the destination guest's first), to the microsecond.
  assertEquals(m.downtimeEnd, "destination-running");
  const atDestination = dst.metrics.downtimeMs ?? NaN; // NaN (null) fails the comparison
  assert(Math.abs(m.downtimeMs - atDestination) < 0.01, `${m.downtimeMs} ${atDestination}`);
  assert(m.downtimeMs >= m.downtimeParts.streamMs + m.downtimeParts.checkMs);
  // The switch-over's decision compares the target with the pages' time plus the fixed cost.
  assert(lines.length >= 2 && lines.at(-1)!.last);
  for (const l of lines) {
    // The fixed cost, stretched by the machine's contention (never below the constant), and the
    // pass's drain are both in the estimate.
    assert(l.fixedMs >= SWITCHOVER_FIXED_MS, JSON.stringify(l));
    assert(l.estimatedDowntimeMs >= l.fixedMs + l.drainMs - 0.01, JSON.stringify(l));
  }
  assertEquals(m.estimatedDowntimeMs, lines.at(-1)!.estimatedDowntimeMs);
});

Deno.test("restoreMachine() hands over the machine at the stream's HEADER, before its pages arrive (a destination builds its guest thread meanwhile)", async () => {
  const original = Machine.fromElf(ELF, { ramSize: RAM, uartSink: () => {} });
  original.run(100_000);
  const dir = await Deno.makeTempDir();
  try {
    await saveMachine(original, `${dir}/s.lsnap`);
    const bytes = await Deno.readFile(`${dir}/s.lsnap`);
    let feed!: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>({ start: (c) => feed = c });
    let early: Machine | null = null;
    let seen!: () => void;
    const machineSeen = new Promise<void>((r) => seen = r);
    let done = false;
    const restoring = restoreMachine(stream, {
      uartSink: () => {},
      onMachine: (m) => {
        early = m;
        seen();
      },
    }).finally(() => done = true);
    // The prologue and HEADER only (a few hundred bytes); the pages are held back.
    feed.enqueue(bytes.slice(0, 512));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      machineSeen,
      new Promise((_, reject) => timer = setTimeout(() => reject(new Error("no machine")), 5000)),
    ]);
    clearTimeout(timer);
    assert(early !== null && !done, "the machine exists while the stream is incomplete");
    feed.enqueue(bytes.slice(512));
    feed.close();
    const r = await restoring;
    assert(r.machine === early, "the machine restored is the one handed over early");
    assertEquals(await machineContentDigest(r.machine), await machineContentDigest(original));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseHostPort() reads HOST:PORT and [v6]:PORT, and refuses the rest", () => {
  assertEquals(parseHostPort("127.0.0.1:7000", "x"), { host: "127.0.0.1", port: 7000 });
  assertEquals(parseHostPort("[::1]:0", "x"), { host: "::1", port: 0 });
  for (const bad of ["7000", "host:", "host:99999", ":80"]) {
    assertThrows(() => parseHostPort(bad, "--incoming"), RangeError, "is not HOST:PORT");
  }
});

Deno.test("precopy into a stream: each pass's pages are all in the stream when it drains, and the pass is reported only once the drain is over", async () => {
  const vm = await LiveMachine.start({ elf: ELF, ramSize: RAM, uartSink: () => {} });
  const channel = new MessageChannel();
  const chunks: Uint8Array[] = [];
  let received = 0;
  const reading = (async () => {
    for await (const c of portReadable(channel.port2)) {
      chunks.push(c);
      received += c.length;
    }
  })();
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const events: string[] = [];
  // For each drain: the bytes it names, what had arrived by then, what arrived while it waited.
  const drains: { bytes: number; arrived: number; after: number }[] = [];
  const sent: number[] = [];
  let metrics;
  try {
    metrics = await vm.snapshot({
      mode: "precopy",
      path: "stream://test",
      stream: channel.port1,
      drain: async (bytes) => {
        events.push("drain");
        const until = performance.now() + 10_000;
        while (received < bytes && performance.now() < until) await sleep(2);
        const arrived = received;
        // The writer waits for this hook: nothing more comes meanwhile.
        await sleep(30);
        drains.push({ bytes, arrived, after: received });
        events.push("drained");
      },
      onPass: (p) => {
        sent.push(p.pagesSent);
        events.push("pass");
      },
    });
  } finally {
    await vm.quit();
  }
  await reading;
  const passes = sent.length;
  assert(passes >= 2, `${passes} passes`);
  assertEquals(events, Array.from({ length: passes }, () => ["drain", "drained", "pass"]).flat());
  // Up to each drain's byte, the stream holds exactly the pages of the passes so far (pass 0's
  // non-zero ones, then every page resent): none left in the writer's batch.
  const all = new Uint8Array(received);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  let expected = metrics.pagesTotal - metrics.pagesZero;
  for (let i = 0; i < passes; i++) {
    if (i > 0) expected += sent[i];
    assertEquals(pagesIn(all.subarray(0, drains[i].bytes), vm.description.regions), expected);
  }
  for (const d of drains) {
    assertEquals(d.arrived, d.bytes, "the pass's records were flushed into the stream");
    assertEquals(d.after, d.bytes, "the writer held back while the pass drained");
  }
  for (let i = 1; i < drains.length; i++) assert(drains[i].bytes >= drains[i - 1].bytes);
  // The final pause, the devices and the trailer follow the last drain; the stream restores.
  assert(received > drains.at(-1)!.bytes);
  const r = await restoreMachine(ReadableStream.from(chunks), { uartSink: () => {} });
  assertEquals(r.contentDigest, metrics.contentDigest);
});

/** The number of page entries in the PAGES records of a stream's prefix that ends on a record. */
function pagesIn(stream: Uint8Array, regions: typeof LiveMachine.prototype.description.regions) {
  let n = 0;
  let at = 16; // the prologue
  let index = 0;
  while (at < stream.length) {
    const head = decodeRecordHead(stream.subarray(at, at + 8), at, index);
    const payload = stream.subarray(at + 8, at + 8 + head.length);
    if (head.type === RecordType.PAGES) {
      n += decodePageRecord(payload, regions, at, index).pages.length;
    }
    at += 8 + head.length + 4;
    index++;
  }
  assertEquals(at, stream.length, "the prefix ends on a record's end");
  return n;
}

Deno.test("precopy into a stream: the estimate holds the pass's drain, and when the drain alone exceeds the target a few dirty pages end the passes", async () => {
  const vm = await LiveMachine.start({ elf: ELF, ramSize: RAM, uartSink: () => {} });
  const channel = new MessageChannel();
  const reading = (async () => {
    for await (const _ of portReadable(channel.port2)) {
      // taken at once: the drain below is what makes the pass end late
    }
  })();
  const passes: PrecopyPassReport[] = [];
  try {
    await vm.snapshot({
      mode: "precopy",
      path: "stream://test",
      stream: channel.port1,
      precopy: { downtimeMs: 50, fixedMs: 5 },
      // Far longer than the target: no pass can bring a switch-over under it.
      drain: () => new Promise((r) => setTimeout(r, 200)),
      onPass: (p) => passes.push(p),
    });
  } finally {
    await vm.quit();
  }
  await reading;
  for (const p of passes) {
    assert(p.drainMs >= 150, JSON.stringify(p));
    assert(p.fixedMs >= 5 && p.estimatedMs >= p.drainMs + p.fixedMs, JSON.stringify(p));
  }
  // The counter guest dirties a few pages: pass 1 is the last, over the target all the same.
  assertEquals(passes.length, 2, JSON.stringify(passes));
  assert(passes[1].last && passes[1].dirtyPages <= 256 && passes[1].estimatedMs > 50);
});
