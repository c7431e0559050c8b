/**
 * The source of a live migration against destinations that refuse or vanish at each step: its
 * guest must never lose an instruction, never run past the state it handed over, and run on when
 * the migration fails. Each destination here is a raw TCP server speaking docs/MIGRATION.md.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert/mod.js";
import { Machine } from "../emulator/machine.ts";
import { LiveMachine } from "../emulator/snapshot/live_machine.ts";
import { machineContentDigest } from "../emulator/snapshot/machine_state.ts";
import {
  encodeMessage,
  encodeMigrationPrologue,
  MIGRATION_MAGIC,
  MigrationError,
  MigrationMessage,
  TimedByteReader,
} from "../format/migration.ts";
import { migrate, type MigrationPassLine, parseHostPort, SWITCHOVER_FIXED_MS } from "./migrate.ts";
import { receiveMigration } from "./incoming.ts";
import { restoreMachine } from "../emulator/snapshot/restore.ts";
import { saveMachine } from "../emulator/snapshot/save.ts";

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

Deno.test("migrate() refuses postcopy and hybrid by name before connecting", async () => {
  const vm = await LiveMachine.start({ elf: ELF, ramSize: RAM });
  for (const mode of ["postcopy", "hybrid"] as const) {
    const e = await assertRejects(
      () => migrate(vm, { host: "127.0.0.1", port: 9, mode }),
      MigrationError,
    );
    assert(e.message.includes(`mode ${mode} is not available`), e.message);
  }
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
    assert(l.estimatedDowntimeMs >= SWITCHOVER_FIXED_MS, JSON.stringify(l));
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
