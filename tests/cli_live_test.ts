/**
 * The command line's live snapshot options and the control socket, end to end.
 */
import { assert, assertEquals } from "@std/assert/mod.js";
import { Machine } from "../emulator/machine.ts";
import { LiveMachine } from "../emulator/snapshot/live_machine.ts";
import { machineContentDigest } from "../emulator/snapshot/machine_state.ts";
import { verifySnapshot } from "../tools/verify.ts";
import { controlRequest, serveControl } from "../tools/control.ts";
import { parseCowBuffer, snapshotPath } from "../tools/_live_run.ts";

const CLI = new URL("../tools/cli.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;
const GUESTS = new URL("../emulator/guests/build/", import.meta.url).pathname;

async function livesnap(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", CONFIG, CLI, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

const METRIC_KEYS = [
  "mode",
  "pauseUs",
  "totalMs",
  "bytesWritten",
  "pagesTotal",
  "pagesZero",
  "pagesViaBuffer",
  "pagesViaSweep",
  "pagesResent",
  "bufferPeakBytes",
  "guestInstructionsDuring",
  "guestStallUs",
];

Deno.test("run --snapshot-at N writes the state `run --stop-at N --digest` prints, and its metrics", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const elf = `${GUESTS}memstress.elf`;
    const snap = await livesnap(
      "run",
      elf,
      "--ram",
      "16M",
      "--snapshot-at",
      "2000000",
      "--out",
      `${dir}/m.lsnap`,
      "--cow-buffer",
      "64K",
      "--metrics",
      `${dir}/m.json`,
      "--stop-at",
      "3000000",
    );
    assertEquals(snap.code, 0, snap.stderr);
    const metrics = JSON.parse(await Deno.readTextFile(`${dir}/m.json`));
    for (const k of METRIC_KEYS) assert(k in metrics, `metrics lack ${k}`);
    assertEquals(metrics.mode, "cow");
    assertEquals(metrics.atInstruction, 2_000_000);
    assert(metrics.bufferPeakBytes <= 64 * 1024);
    const direct = await livesnap("run", elf, "--ram", "16M", "--stop-at", "2000000", "--digest");
    assertEquals(direct.code, 0);
    assertEquals(direct.stdout.trim().split("\n").at(-1), metrics.contentDigest);
    // And restore continues it: same output and digest as the run that was never interrupted.
    const restored = await livesnap(
      "restore",
      `${dir}/m.lsnap`,
      "--stop-at",
      "4000000",
      "--digest",
    );
    const whole = await livesnap("run", elf, "--ram", "16M", "--stop-at", "4000000", "--digest");
    assertEquals(restored.code, 0, restored.stderr);
    assertEquals(
      direct.stdout.split("\n").slice(0, -2).join("\n") + "\n" + restored.stdout,
      whole.stdout,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("run --snapshot-every N writes a file at every multiple of N, each holding its instant", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const elf = `${GUESTS}counter.elf`;
    const r = await livesnap(
      "run",
      elf,
      "--ram",
      "8M",
      "--snapshot-every",
      "700000",
      "--out",
      `${dir}/c-{n}.lsnap`,
      "--mode",
      "precopy",
      "--stop-at",
      "1500000",
      "--metrics",
      `${dir}/m.jsonl`,
    );
    assertEquals(r.code, 0, r.stderr);
    const lines = (await Deno.readTextFile(`${dir}/m.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assertEquals(lines.map((m) => m.path), [`${dir}/c-700000.lsnap`, `${dir}/c-1400000.lsnap`]);
    for (const m of lines) {
      assertEquals(m.mode, "precopy");
      // A precopy file holds the state at its final pause, which the metrics name.
      const direct = await livesnap(
        "run",
        elf,
        "--ram",
        "8M",
        "--stop-at",
        String(m.atInstruction),
        "--digest",
      );
      assertEquals(direct.stdout.trim().split("\n").at(-1), m.contentDigest);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serveControl() answers snapshot, pause, resume, status, digest and quit; bad requests get an error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const elf = await Deno.readFile(`${GUESTS}counter.elf`);
    const machine = await LiveMachine.start({ elf, ramSize: 8 * 1024 * 1024 });
    const sock = `${dir}/vm.sock`;
    const server = await serveControl(sock, machine);
    const status = await controlRequest(sock, { execute: "status", id: 1 });
    assertEquals((status as { id: number }).id, 1);
    assertEquals((status as { return: { state: string } }).return.state, "running");

    const snap = await controlRequest(sock, {
      execute: "snapshot",
      arguments: { path: `${dir}/c.lsnap`, mode: "cow", cowBuffer: 0 },
    });
    if (!("return" in snap)) throw new Error(JSON.stringify(snap));
    const m = snap.return as { mode: string; atInstruction: number; contentDigest: string };
    assertEquals(m.mode, "cow");
    // The file holds the state a direct run has at that instruction, and the reply says so.
    const v = await verifySnapshot((await Deno.open(`${dir}/c.lsnap`)).readable);
    const direct = Machine.fromElf(elf, { ramSize: 8 * 1024 * 1024, uartSink: () => {} });
    direct.run(m.atInstruction);
    const want = await machineContentDigest(direct);
    assertEquals([v.ok, v.digests.content, m.contentDigest], [true, want, want]);

    const paused = await controlRequest(sock, { execute: "pause" });
    const at = (paused as { return: { state: string; retired: number } }).return;
    assertEquals(at.state, "paused");
    const d1 = await controlRequest(sock, { execute: "digest" });
    const d2 = await controlRequest(sock, { execute: "digest" });
    assertEquals(d1, d2, "a paused machine's digest changed");
    // `digest` over the socket is the digest of a direct run to the paused instruction.
    direct.run(at.retired - direct.hart.retired);
    assertEquals(d1, { return: { contentDigest: await machineContentDigest(direct) } });
    const resumed = await controlRequest(sock, { execute: "resume" });
    assertEquals((resumed as { return: { state: string } }).return.state, "running");

    const bad = await controlRequest(sock, { execute: "reboot" });
    if (!("error" in bad)) throw new Error("no error reply to an unknown command");
    assertEquals(
      bad.error.desc,
      "Cannot execute 'reboot': unknown command (known: snapshot, migrate, pause, resume, status, digest, quit)",
    );
    const noPath = await controlRequest(sock, { execute: "snapshot", arguments: {} });
    assert("error" in noPath && noPath.error.desc.includes("'path'"));

    assertEquals(await controlRequest(sock, { execute: "quit" }), { return: {} });
    await server.quitRequested;
    await server.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseCowBuffer() and snapshotPath() read sizes and name files", () => {
  assertEquals(parseCowBuffer("0"), 0);
  assertEquals(parseCowBuffer("16M"), 16 * 1024 * 1024);
  assertEquals(parseCowBuffer("max"), "max");
  assertEquals(snapshotPath("a/s.lsnap", 5, false), "a/s.lsnap");
  assertEquals(snapshotPath("a/s.lsnap", 5, true), "a/s-5.lsnap");
  assertEquals(snapshotPath("a/s-{n}.lsnap", 5, true), "a/s-5.lsnap");
});
