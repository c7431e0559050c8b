/**
 * The destination of a live migration against sources that misbehave: hostile bytes, silence,
 * a second source, a digest that does not match, an incompatible machine. Each source here is a
 * raw TCP client speaking (or breaking) docs/MIGRATION.md byte by byte.
 */
import { assert, assertEquals, assertRejects } from "@std/assert/mod.js";
import { Machine } from "../emulator/machine.ts";
import {
  CURRENT_STATE_VERSIONS,
  describeMachine,
  machineContentDigest,
} from "../emulator/snapshot/machine_state.ts";
import { saveMachine } from "../emulator/snapshot/save.ts";
import { encodeRecord } from "../format/record.ts";
import {
  encodeHello,
  encodeMessage,
  encodeMigrationPrologue,
  type Hello,
  MigrationError,
  MigrationMessage,
  TimedByteReader,
} from "../format/migration.ts";
import { incompatibility, receiveMigration } from "./incoming.ts";

const ELF = new URL("../emulator/guests/build/counter.elf", import.meta.url);

async function machineAt(n: number): Promise<Machine> {
  const m = Machine.fromElf(await Deno.readFile(ELF), { ramSize: 4 << 20, uartSink: () => {} });
  m.run(n);
  return m;
}

function hello(machine: Machine, over: Partial<Hello> = {}): Hello {
  return {
    description: describeMachine(machine),
    devices: { ...CURRENT_STATE_VERSIONS },
    mode: "precopy",
    ...over,
  };
}

/** Starts a destination on a free port; resolves with the port and the migration's outcome. */
async function destination(
  options: { timeoutMs?: number; ramSize?: number; out?: string } = {},
): Promise<{ port: number; result: Promise<unknown>; busy: string[] }> {
  let ready!: (p: number) => void;
  const port = new Promise<number>((r) => ready = r);
  const busy: string[] = [];
  const result = receiveMigration({
    host: "127.0.0.1",
    port: 0,
    timeoutMs: options.timeoutMs ?? 5_000,
    ramSize: options.ramSize,
    out: options.out,
    onListening: (a) => ready(a.port),
    onRefusedBusy: (peer) => busy.push(peer),
    live: { uartSink: () => {} },
  }).then(async (r) => {
    await r.machine.quit();
    return r;
  });
  result.catch(() => {});
  return { port: await port, result, busy };
}

/** A raw source: connects, sends `bytes`, returns the connection and a reader of replies. */
async function rawSource(port: number, ...parts: Uint8Array[]) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const w = conn.writable.getWriter();
  for (const p of parts) await w.write(p);
  const reader = new TimedByteReader(conn.readable, "the destination");
  return { conn, w, reader };
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed by the destination
  }
}

async function expectFailure(result: Promise<unknown>, failure: string, text: string) {
  const e = await assertRejects(() => result, MigrationError);
  assertEquals(e.failure, failure, e.message);
  assert(e.message.includes(text), e.message);
}

Deno.test("receiveMigration() refuses hostile bytes with a clear error, before any allocation", async (t) => {
  const prologue = encodeMigrationPrologue();
  const badCrc = prologue.slice();
  badCrc[12] ^= 0xff;
  const huge = new Uint8Array(16);
  new DataView(huge.buffer).setUint16(0, MigrationMessage.HELLO, true);
  new DataView(huge.buffer).setUint32(4, 0x7fff_ffff, true);
  const helloBody = encodeHello(hello(await machineAt(1000)));
  const flipped = helloBody.slice();
  flipped[20] ^= 0x01;
  const cases: [string, Uint8Array[], string, string][] = [
    ["a bad magic", [new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n")], "protocol", "magic"],
    ["a prologue with a bad CRC", [badCrc], "protocol", "CRC32C"],
    ["a message longer than the cap", [prologue, huge], "protocol", "exceeds the cap"],
    ["a HELLO with a flipped bit", [prologue, flipped], "protocol", "CRC32C"],
    [
      "a HELLO that is not a CBOR map",
      [prologue, encodeRecord(MigrationMessage.HELLO, 1, new Uint8Array([0x01]))],
      "protocol",
      "not a CBOR map",
    ],
    [
      "another message instead of HELLO",
      [prologue, encodeMessage(MigrationMessage.GO, {})],
      "protocol",
      "expected HELLO",
    ],
    ["a stream cut inside the prologue", [prologue.subarray(0, 9)], "connection", "closed"],
  ];
  for (const [name, parts, failure, text] of cases) {
    await t.step(name, async () => {
      const d = await destination();
      const s = await rawSource(d.port, ...parts);
      if (failure === "connection") await s.w.close();
      await expectFailure(d.result, failure, text);
      close(s.conn);
    });
  }
});

Deno.test("receiveMigration() bounds every wait: a silent source times out", async () => {
  const d = await destination({ timeoutMs: 300 });
  const s = await rawSource(d.port, encodeMigrationPrologue());
  await expectFailure(d.result, "timeout", "nothing from the source");
  close(s.conn);
});

Deno.test("receiveMigration() refuses an incompatible machine before any page moves, with the reason", async () => {
  const m = await machineAt(1000);
  const d = await destination({ ramSize: 8 << 20 });
  const s = await rawSource(d.port, encodeMigrationPrologue(), encodeHello(hello(m)));
  await s.reader.exactly(16, 2000, "prologue");
  const reply = await s.reader.message(2000, "reply");
  assertEquals(reply.type, MigrationMessage.REFUSE);
  const reason = (reply.body as { reason: string }).reason;
  assert(reason.includes("4194304 bytes of RAM") && reason.includes("8388608"), reason);
  await expectFailure(d.result, "refused", "4194304 bytes of RAM");
  close(s.conn);
});

Deno.test("incompatibility() names a newer device version, an unknown device, another machine", async () => {
  const m = await machineAt(1000);
  assertEquals(incompatibility(hello(m)), null);
  const newer = incompatibility(
    hello(m, { devices: { ...CURRENT_STATE_VERSIONS, ns16550a: 99 } }),
  );
  assert(newer?.includes("state version 99, newer"), String(newer));
  assert(
    incompatibility(hello(m, { devices: { virtio: 1 } }))?.includes("'virtio' is not part"),
  );
  const d = describeMachine(m);
  const other = incompatibility(
    hello(m, { description: { ...d, regions: [{ ...d.regions[0], pageSize: 8192 }] } }),
  );
  assert(other?.includes("page size is 8192"), String(other));
});

Deno.test("receiveMigration() refuses a second source while one migration runs", async () => {
  const m = await machineAt(1000);
  const d = await destination();
  const first = await rawSource(d.port, encodeMigrationPrologue(), encodeHello(hello(m)));
  await first.reader.exactly(16, 2000, "prologue");
  assertEquals((await first.reader.message(2000, "accept")).type, MigrationMessage.ACCEPT);
  const second = await rawSource(d.port, encodeMigrationPrologue(), encodeHello(hello(m)));
  await second.reader.exactly(16, 2000, "prologue");
  const reply = await second.reader.message(2000, "reply");
  assertEquals(reply.type, MigrationMessage.REFUSE);
  assert((reply.body as { reason: string }).reason.includes("in progress"));
  assertEquals(d.busy.length, 1);
  close(second.conn);
  // The first source goes away mid-stream: everything received is dropped.
  close(first.conn);
  await expectFailure(d.result, "connection", "closed the connection");
});

Deno.test("receiveMigration() never runs a state whose digest is not the source's", async (t) => {
  const m = await machineAt(200_000);
  const dir = await Deno.makeTempDir();
  try {
    await saveMachine(m, `${dir}/s.lsnap`);
    const stream = await Deno.readFile(`${dir}/s.lsnap`);
    const digest = await machineContentDigest(m);
    const cases: [string, string, number, string, string][] = [
      ["the right state", digest, m.hart.retired, "", ""],
      ["another digest", "ab".repeat(32), m.hart.retired, "mismatch", "content digest"],
      ["another instruction count", digest, m.hart.retired + 1, "mismatch", "at instruction"],
    ];
    for (const [name, sent, at, failure, text] of cases) {
      await t.step(name, async () => {
        const out = `${dir}/in-${failure || "ok"}.lsnap`;
        const d = await destination({ out });
        const s = await rawSource(
          d.port,
          encodeMigrationPrologue(),
          encodeHello(hello(m)),
          stream,
          encodeMessage(MigrationMessage.SWITCHOVER, { contentDigest: sent, atInstruction: at }),
        );
        await s.reader.exactly(16, 5000, "prologue");
        assertEquals((await s.reader.message(5000, "accept")).type, MigrationMessage.ACCEPT);
        let reply = await s.reader.message(10_000, "READY or REFUSE");
        // The destination reports its progress while the stream arrives.
        while (reply.type === MigrationMessage.PROGRESS) {
          reply = await s.reader.message(10_000, "READY or REFUSE");
        }
        if (failure === "") {
          assertEquals(reply.type, MigrationMessage.READY);
          await s.w.write(encodeMessage(MigrationMessage.GO, {}));
          await d.result;
          // What arrived is kept as a file, byte for byte the stream.
          assertEquals(await Deno.readFile(out), stream);
        } else {
          assertEquals(reply.type, MigrationMessage.REFUSE);
          assertEquals((reply.body as { failure: string }).failure, "mismatch");
          await expectFailure(d.result, failure, text);
          await assertRejects(() => Deno.stat(out), Deno.errors.NotFound);
        }
        close(s.conn);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
