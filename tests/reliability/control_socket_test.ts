// The control socket: owner-only from the start; malformed, oversized and unknown requests get an
// error reply while the guest keeps running; a second snapshot while one is being written is
// refused clearly, never interleaved, and the one written holds the state a direct run has.
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert/mod.js";
import { Machine } from "../../emulator/machine.ts";
import { LiveMachine } from "../../emulator/snapshot/live_machine.ts";
import { machineContentDigest } from "../../emulator/snapshot/machine_state.ts";
import type { SnapshotMetrics } from "../../emulator/snapshot/metrics.ts";
import { saveMachine } from "../../emulator/snapshot/save.ts";
import { controlRequest, MAX_REQUEST_CHARS, serveControl } from "../../tools/control.ts";
import { restoreSnapshot } from "../../tools/restore.ts";
import { verifySnapshot } from "../../tools/verify.ts";

const GUESTS = new URL("../../emulator/guests/build/", import.meta.url).pathname;

/** Sends raw bytes after the greeting; returns the reply lines and whether the server hung up. */
async function raw(sock: string, bytes: Uint8Array, replies: number) {
  const conn = await Deno.connect({ transport: "unix", path: sock });
  const reader = conn.readable.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const lines = async (n: number) => {
    while (text.split("\n").length - 1 < n) {
      const r = await reader.read();
      if (r.done) return false;
      text += r.value;
    }
    return true;
  };
  await lines(1);
  const w = conn.writable.getWriter();
  await w.write(bytes).catch(() => {});
  const got = await lines(1 + replies);
  const out = text.split("\n").slice(1, 1 + replies).filter((l) => l !== "").map((l) =>
    JSON.parse(l)
  );
  // Did the server close the connection after that?
  let closed = false;
  await w.write(new TextEncoder().encode('{"execute":"status"}\n')).catch(() => closed = true);
  if (!closed) {
    const more = await Promise.race([
      reader.read(),
      new Promise<{ done: boolean }>((r) => setTimeout(() => r({ done: false }), 2000)),
    ]);
    closed = more.done;
  }
  try {
    conn.close();
  } catch {
    // already closed
  }
  return { got, replies: out, closed };
}

async function status(sock: string): Promise<{ state: string; retired: number }> {
  const r = await controlRequest(sock, { execute: "status" });
  if (!("return" in r)) throw new Error(JSON.stringify(r));
  return r.return as { state: string; retired: number };
}

Deno.test("the control socket is owner-only, answers bad requests with errors and the guest runs on", async (t) => {
  const dir = await Deno.makeTempDir();
  const machine = await LiveMachine.start({
    elf: await Deno.readFile(`${GUESTS}counter.elf`),
    ramSize: 8 << 20,
    uartSink: () => {},
  });
  const sock = `${dir}/vm.sock`;
  const server = await serveControl(sock, machine);
  try {
    await t.step("owner-only permissions, nothing else left in the directory", async () => {
      const st = await Deno.lstat(sock);
      assert(st.isSocket);
      assertEquals((st.mode ?? 0) & 0o777, 0o600);
      assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["vm.sock"]);
    });
    const enc = (s: string) => new TextEncoder().encode(s);
    const bad: [string, Uint8Array, string][] = [
      ["not JSON", enc("hello\n"), "Cannot parse request"],
      ["JSON that is not an object", enc("[1,2]\nnull\n"), "Cannot parse request"],
      ["execute not a string", enc('{"execute": 5}\n'), "Cannot parse request"],
      ["invalid UTF-8", new Uint8Array([0xff, 0xfe, 0x7b, 0x0a]), "Cannot parse request"],
      ["nesting 60 000 deep", enc("[".repeat(60_000) + "\n"), "Cannot parse request"],
      ["an unknown command", enc('{"execute": "format-disk"}\n'), "unknown command"],
      ["snapshot without a path", enc('{"execute": "snapshot", "arguments": 7}\n'), "'path'"],
      [
        "snapshot with a bad mode",
        enc('{"execute": "snapshot", "arguments": {"path": "x", "mode": "fork"}}\n'),
        "mode 'fork'",
      ],
      [
        "snapshot with a bad buffer",
        enc('{"execute": "snapshot", "arguments": {"path": "x", "cowBuffer": -3}}\n'),
        "cowBuffer -3",
      ],
    ];
    for (const [name, bytes, desc] of bad) {
      await t.step(name, async () => {
        const r = await raw(sock, bytes, 1);
        assert(r.got, `no reply to ${name}`);
        assert("error" in r.replies[0], JSON.stringify(r.replies[0]));
        assertStringIncludes(r.replies[0].error.desc, desc);
        assertEquals(r.closed, false, "the server hung up after an answerable request");
      });
    }
    await t.step(
      `a request over ${MAX_REQUEST_CHARS} characters: an error, then the server hangs up`,
      async () => {
        const r = await raw(sock, enc(`{"execute":"status","pad":"${"x".repeat(4 << 20)}"}\n`), 1);
        assertStringIncludes(
          r.replies[0].error.desc,
          `longer than ${MAX_REQUEST_CHARS} characters`,
        );
        assertEquals(r.closed, true);
      },
    );
    await t.step("the guest kept running", async () => {
      const a = await status(sock);
      await new Promise((r) => setTimeout(r, 200));
      const b = await status(sock);
      assertEquals([a.state, b.state], ["running", "running"]);
      assert(b.retired > a.retired, `retired ${a.retired} then ${b.retired}`);
    });
  } finally {
    await controlRequest(sock, { execute: "quit" }).catch(() => {});
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * A snapshot file of `counter` at 100 000 instructions with 30 MiB of its 64 MiB of RAM (from
 * 4 MiB on: above the guest's code, data and stack, which it never touches) full of random
 * bytes: restored, its live snapshot keeps the writer busy for seconds (1.9 to 2.8 s here under
 * load), while the second request reaches the guest within a slice of 20 000 instructions.
 */
async function busyMachineFile(path: string): Promise<void> {
  const m = Machine.fromElf(await Deno.readFile(`${GUESTS}counter.elf`), {
    ramSize: 64 << 20,
    uartSink: () => {},
  });
  m.run(100_000);
  const words = new Uint32Array(m.ram.bytes.buffer, m.ram.bytes.byteOffset + (4 << 20), 30 << 18);
  let x = 0x9e37_79b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  await saveMachine(m, path);
}

Deno.test("two snapshots asked for at once over the socket: one written (the state a direct run has there), the other refused", async () => {
  const dir = await Deno.makeTempDir();
  const start = `${dir}/start.lsnap`;
  await busyMachineFile(start);
  const machine = await LiveMachine.start({ restorePath: start, uartSink: () => {} });
  const sock = `${dir}/vm.sock`;
  const server = await serveControl(sock, machine);
  try {
    const req = (p: string) =>
      controlRequest(sock, {
        execute: "snapshot",
        arguments: { path: `${dir}/${p}`, mode: "cow", cowBuffer: 0 },
      });
    const replies = await Promise.all([req("a.lsnap"), req("b.lsnap")]);
    const ok = replies.filter((r) => "return" in r);
    const refused = replies.filter((r) => "error" in r);
    assertEquals([ok.length, refused.length], [1, 1], JSON.stringify(replies));
    const err = refused[0] as { error: { class: string; desc: string } };
    assertMatch(
      err.error.desc,
      /^Cannot start a snapshot: snapshot ctl:\d+ is still being written$/,
    );
    // The refused request left no file; the written one verifies and holds exactly the state
    // a machine restored from the same file and run straight to that instruction has.
    const metrics = (ok[0] as { return: SnapshotMetrics }).return;
    const written = metrics.path.endsWith("a.lsnap") ? "a.lsnap" : "b.lsnap";
    const other = written === "a.lsnap" ? "b.lsnap" : "a.lsnap";
    assertEquals(await Deno.stat(`${dir}/${other}`).then(() => true, () => false), false);
    const v = await verifySnapshot((await Deno.open(`${dir}/${written}`)).readable);
    assert(v.ok, v.error?.message);
    const direct = await restoreSnapshot({
      path: start,
      stopAt: metrics.atInstruction,
      sink: () => {},
    });
    const want = await machineContentDigest(direct.machine);
    assertEquals([v.digests.content, metrics.contentDigest], [want, want]);
    assertEquals((await status(sock)).state, "running");
  } finally {
    await controlRequest(sock, { execute: "quit" }).catch(() => {});
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serveControl() refuses to replace a file that is not a socket", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/vm.sock`, "precious");
    const machine = null as unknown as LiveMachine;
    let message = "";
    await serveControl(`${dir}/vm.sock`, machine).catch((e) => message = e.message);
    assertStringIncludes(message, "exists and is not a socket");
    assertEquals(await Deno.readTextFile(`${dir}/vm.sock`), "precious");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
