/**
 * Incremental snapshots of a running machine, through LiveMachine and the file format: chains of
 * a full snapshot and 10 diffs, in each mode, on a guest that stores all the time. Every link's
 * declared content digest must be the whole state's at its instant (as `run --stop-at N --digest`
 * computes it), the chain flattened up to any link must hold that state, and the flattened chain
 * restored and run on must print and hold what an uninterrupted run does.
 */
import { assert, assertEquals, assertRejects } from "@std/assert/mod.js";
import { Machine } from "../emulator/machine.ts";
import { LiveMachine, type SnapshotRequest } from "../emulator/snapshot/live_machine.ts";
import type { SnapshotMetrics } from "../emulator/snapshot/metrics.ts";
import { machineContentDigest } from "../emulator/snapshot/machine_state.ts";
import { memstressElf } from "../emulator/guests/memstress_config.ts";
import { openChain } from "../format/chain.ts";
import { flattenChainToFile } from "../format/flatten.ts";
import { toHex } from "../format/checksum.ts";
import { SnapshotStreamReader } from "../format/stream_reader.ts";
import { controlRequest, serveControl } from "../tools/control.ts";
import type { SnapshotMode } from "../emulator/snapshot/session.ts";

const RAM = 8 * 1024 * 1024;
const PAGE = 4096;
/** A cursor that strides through 4 MiB: each stretch between two snapshots dirties a part. */
const ELF = memstressElf({
  workingSetBytes: 4 * 1024 * 1024,
  writesPerRound: 5_000,
  strideBytes: 1028,
  computePerWrite: 40,
  rounds: 0,
});
const PAGEZERO = Deno.readFileSync(
  new URL("../emulator/guests/build/pagezero.elf", import.meta.url),
);

/** A direct run on the calling thread: its output and content digest at each of `stops`. */
async function directRun(
  elf: Uint8Array,
  stops: number[],
): Promise<{ digest: Map<number, string>; output: Map<number, string> }> {
  let out = "";
  const decoder = new TextDecoder();
  const m = Machine.fromElf(elf, { ramSize: RAM, uartSink: (b) => out += decoder.decode(b) });
  const digest = new Map<number, string>();
  const output = new Map<number, string>();
  for (const n of [...stops].sort((a, b) => a - b)) {
    m.run(n - m.hart.retired);
    assertEquals(m.hart.retired, n);
    digest.set(n, await machineContentDigest(m));
    output.set(n, out);
  }
  return { digest, output };
}

/** Takes a full snapshot then `diffs` diffs, `gap` instructions apart, in `mode`. */
async function takeChain(
  elf: Uint8Array,
  dir: string,
  mode: SnapshotMode,
  diffs: number,
  gap: number,
  incremental = true,
): Promise<SnapshotMetrics[]> {
  const got: (SnapshotMetrics | Error)[] = [];
  const req: Omit<SnapshotRequest, "path"> = { mode, cowBuffer: 64 * PAGE, incremental };
  const schedule = Array.from({ length: diffs + 1 }, (_, i) => ({
    ...req,
    at: (i + 1) * gap,
    path: `${dir}/s-${i}.lsnap`,
  }));
  const lm = await LiveMachine.start({
    elf,
    ramSize: RAM,
    schedule,
    stopAt: (diffs + 2) * gap,
    onScheduledSnapshot: (m) => got.push(m),
    onScheduledError: (e) => got.push(e),
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<"hung">((r) => timer = setTimeout(() => r("hung"), 240_000));
  const done = await Promise.race([lm.halted, hung]);
  clearTimeout(timer);
  await lm.quit();
  if (done === "hung") throw new Error(`only ${got.length} snapshots after 240 s`);
  for (const g of got) if (g instanceof Error) throw g;
  const metrics = (got as SnapshotMetrics[]).sort((a, b) => a.atInstruction - b.atInstruction);
  assertEquals(metrics.length, diffs + 1);
  return metrics;
}

for (const mode of ["cow", "stop", "precopy"] as const) {
  Deno.test(`LiveMachine ${mode}: a chain of 10 diffs holds every instant; the chain and its flattened file restore to the uninterrupted run`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const chain = await takeChain(ELF, dir, mode, 10, 400_000);
      const end = chain.at(-1)!.atInstruction + 300_000;
      const direct = await directRun(ELF, [...chain.map((m) => m.atInstruction), end]);
      for (const [i, m] of chain.entries()) {
        const what = `link ${i} (${mode}${i > 0 ? " diff" : ""})`;
        assertEquals(m.incremental, i > 0, what);
        assertEquals(m.chainDepth, i, what);
        if (i > 0) {
          assertEquals(m.parentPath, chain[i - 1].path, what);
          assert(m.pagesInDiff < RAM / PAGE, `${what}: ${m.pagesInDiff} pages, all of RAM`);
        }
        if (i > 0 && mode !== "precopy") {
          assert(m.pagesInDiff > 0, `${what}: the guest stored, yet nothing is dirty`);
        }
        // The digest a diff declares is the whole state's: a full snapshot's, `run --digest`'s.
        assertEquals(m.contentDigest, direct.digest.get(m.atInstruction), `${what}: declared`);
        // The chain up to this link, flattened, holds that state (flatten reads its output back).
        const flat = `${dir}/flat-${i}.lsnap`;
        const c = await openChain(m.path);
        const summary = await flattenChainToFile(c, flat);
        c.close();
        assertEquals(toHex(summary.contentDigest), m.contentDigest, `${what}: flattened`);
      }
      // The chain (its newest diff, the parents found by the names it records) and the chain
      // flattened, restored and run on: the same output and state as a run that was never
      // interrupted.
      const last = chain.at(-1)!;
      for (const from of [last.path, `${dir}/flat-${chain.length - 1}.lsnap`]) {
        let out = "";
        const decoder = new TextDecoder();
        const restored = await LiveMachine.start({
          restorePath: from,
          stopAt: end,
          uartSink: (b) => out += decoder.decode(b),
        });
        await restored.halted;
        const digest = await restored.digest();
        await restored.quit();
        assertEquals(digest, direct.digest.get(end), `${from} restored and run on: the state`);
        assertEquals(
          direct.output.get(last.atInstruction)! + out,
          direct.output.get(end),
          `${from} restored and run on: the output`,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("LiveMachine cow: a diff declares the content digest a full snapshot of the same instant has", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/full`);
    await Deno.mkdir(`${dir}/diff`);
    const full = await takeChain(ELF, `${dir}/full`, "cow", 3, 500_000, false);
    const diff = await takeChain(ELF, `${dir}/diff`, "cow", 3, 500_000, true);
    for (let i = 0; i < full.length; i++) {
      assertEquals(diff[i].atInstruction, full[i].atInstruction);
      assertEquals(full[i].incremental, false);
      assertEquals(diff[i].incremental, i > 0);
      assertEquals(diff[i].contentDigest, full[i].contentDigest, `link ${i}`);
      if (i > 0) {
        assert(
          diff[i].bytesWritten < full[i].bytesWritten,
          `link ${i}: the diff (${diff[i].bytesWritten} bytes) is not smaller than the full ` +
            `snapshot (${full[i].bytesWritten})`,
        );
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Per page of `file`'s records, the last encoding: "zero" or "data". */
async function pageEncodings(path: string): Promise<Map<number, "zero" | "data">> {
  const file = await Deno.open(path);
  const reader = new SnapshotStreamReader(file.readable, { diffs: "read" });
  const enc = new Map<number, "zero" | "data">();
  for await (const r of reader.records()) {
    if (r.kind !== "pages") continue;
    for (let i = 0; i < r.pages.length; i++) {
      const zero = r.data === null ||
        r.data.subarray(i * PAGE, (i + 1) * PAGE).every((b) => b === 0);
      enc.set(r.pages[i], zero ? "zero" : "data");
    }
  }
  return enc;
}

for (const mode of ["cow", "stop", "precopy"] as const) {
  Deno.test(`LiveMachine ${mode}: a page that became zero is an explicit zero record in the diff, and zero through the chain`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      // pagezero rewrites its 96 pages each round (about a million instructions), zeroing a
      // different share of them: between two snapshots some pages become zero.
      const chain = await takeChain(PAGEZERO, dir, mode, 4, 1_300_000);
      const stops = chain.map((m) => m.atInstruction);
      // Which pages are zero at each instant, from a direct run.
      const ram: Uint8Array[] = [];
      const m = Machine.fromElf(PAGEZERO, { ramSize: RAM, uartSink: () => {} });
      for (const n of stops) {
        m.run(n - m.hart.retired);
        ram.push(m.ram.bytes.slice());
      }
      const isZero = (k: number, p: number) =>
        ram[k].subarray(p * PAGE, (p + 1) * PAGE).every((b) => b === 0);
      let becameZero = 0;
      for (let k = 1; k < chain.length; k++) {
        const enc = await pageEncodings(chain[k].path);
        for (let p = 0; p < RAM / PAGE; p++) {
          if (isZero(k - 1, p) || !isZero(k, p)) continue;
          becameZero++;
          // Never inferred from absence: the diff says so.
          assertEquals(enc.get(p), "zero", `link ${k}: page ${p} became zero`);
        }
        // The chain up to here holds those pages as zero: its state is the direct run's.
        const c = await openChain(chain[k].path);
        const flat = await flattenChainToFile(c, `${dir}/flat-${k}.lsnap`);
        c.close();
        const whole = Machine.fromElf(PAGEZERO, { ramSize: RAM, uartSink: () => {} });
        whole.run(stops[k]);
        assertEquals(toHex(flat.contentDigest), await machineContentDigest(whole), `link ${k}`);
      }
      assert(becameZero > 0, "no page became zero between two snapshots: the test tests nothing");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("LiveMachine.snapshot() incremental: refused with no earlier snapshot; then a diff on the last one completed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lm = await LiveMachine.start({ elf: ELF, ramSize: RAM });
    try {
      await assertRejects(
        () => lm.snapshot({ mode: "cow", path: `${dir}/d.lsnap`, incremental: true }),
        Error,
        "Cannot take an incremental snapshot: this machine has no earlier snapshot to be its parent",
      );
      await assertRejects(() => Deno.stat(`${dir}/d.lsnap`), Deno.errors.NotFound);
      const full = await lm.snapshot({ mode: "cow", path: `${dir}/f.lsnap` });
      // A snapshot that fails leaves the parent as it was.
      await assertRejects(() =>
        lm.snapshot({ mode: "cow", path: `${dir}/no/such/x.lsnap`, incremental: true })
      );
      const d = await lm.snapshot({ mode: "stop", path: `${dir}/d.lsnap`, incremental: true });
      assertEquals(d.parentPath, full.path);
      assertEquals(d.chainDepth, 1);
      const c = await openChain(d.path);
      const flat = await flattenChainToFile(c, `${dir}/flat.lsnap`);
      c.close();
      assertEquals(toHex(flat.contentDigest), d.contentDigest);
    } finally {
      await lm.quit();
    }
    // A restored machine: its first diff is on the file it was restored from.
    const again = await LiveMachine.start({ restorePath: `${dir}/flat.lsnap` });
    try {
      const d2 = await again.snapshot({
        mode: "cow",
        path: `${dir}/d2.lsnap`,
        incremental: true,
      });
      assertEquals(d2.parentPath, `${dir}/flat.lsnap`);
      const c = await openChain(d2.path);
      const flat = await flattenChainToFile(c, `${dir}/flat2.lsnap`);
      c.close();
      assertEquals(toHex(flat.contentDigest), d2.contentDigest);
    } finally {
      await again.quit();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("livesnap run --incremental: a writer killed mid-diff leaves no file that passes as a complete diff", async () => {
  const dir = await Deno.makeTempDir();
  const cli = new URL("../tools/cli.ts", import.meta.url).pathname;
  const config = new URL("../deno.json", import.meta.url).pathname;
  // 48 MiB stored to at random between the two snapshots: the diff takes a while to write,
  // with --cow-buffer 0 the guest waits for it page by page.
  const elf = `${dir}/m.elf`;
  await Deno.writeFile(
    elf,
    memstressElf({ workingSetBytes: 48 << 20, writesPerRound: 100_000, rounds: 0 }),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", "--config", config, cli, "run", elf, "--ram", "64M"]
      .concat(["--snapshot-at", "1000000", "--snapshot-at", "6000000", "--incremental"])
      .concat(["--cow-buffer", "0", "--out", `${dir}/s-{n}.lsnap`]),
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const names = () => [...Deno.readDirSync(dir)].map((e) => e.name);
    const parent = "s-1000000.lsnap";
    const diff = "s-6000000.lsnap";
    let temp: string | undefined;
    // Every wait has a bound: 120 s for the parent to complete and the diff's temporary to appear.
    for (let waited = 0; temp === undefined; waited += 5) {
      if (waited > 120_000) throw new Error(`no temporary of ${diff} after 120 s: ${names()}`);
      await new Promise((r) => setTimeout(r, 5));
      if (names().includes(parent)) temp = names().find((n) => n.startsWith(`${diff}.tmp-`));
    }
    // Kill the writer outright as soon as some of its pages have reached the temporary (a fixed
    // delay let a fast writer finish first). Bounded: 120 s.
    const tempPath = `${dir}/${temp}`;
    for (let waited = 0;; waited += 1) {
      if (waited > 120_000) throw new Error(`nothing reached ${temp} after 120 s`);
      const size = (() => {
        try {
          return Deno.statSync(tempPath).size;
        } catch {
          return -1; // renamed meanwhile: the assertion below reports it
        }
      })();
      if (size < 0 || size >= 64 * 1024) break;
      await new Promise((r) => setTimeout(r, 1));
    }
    child.kill("SIGKILL");
    await child.status;
    assert(!names().includes(diff), `${diff} exists although its writer was killed`);
    // What is left is a temporary that no reader takes for a complete diff.
    const left = names().filter((n) => n.startsWith(`${diff}.tmp-`));
    assertEquals(left.length, 1, `temporaries: ${left}`);
    await assertRejects(() => openChain(`${dir}/${left[0]}`, { parents: [`${dir}/${parent}`] }));
    const reader = new SnapshotStreamReader((await Deno.open(`${dir}/${left[0]}`)).readable, {
      diffs: "read",
    });
    await assertRejects(async () => {
      for await (const _ of reader.records()) { /* read to the end */ }
    });
    assert(!reader.complete);
    // The parent is complete and whole.
    const c = await openChain(`${dir}/${parent}`);
    c.close();
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited already */ }
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LiveMachine incremental: past maxChainDepth a scheduled snapshot starts a new chain, snapshot() is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const got: SnapshotMetrics[] = [];
    const schedule = [1, 2, 3, 4, 5].map((i) => ({
      at: i * 300_000,
      mode: "cow" as const,
      path: `${dir}/s-${i}.lsnap`,
      incremental: true,
    }));
    const lm = await LiveMachine.start({
      elf: ELF,
      ramSize: RAM,
      schedule,
      maxChainDepth: 2,
      onScheduledSnapshot: (m) => got.push(m),
    });
    try {
      const deadline = Date.now() + 120_000;
      while (got.length < schedule.length) {
        await new Promise((r) => setTimeout(r, 20));
        if (lm.haltInfo !== null) throw new Error("the guest halted");
        if (Date.now() > deadline) throw new Error(`${got.length} snapshots after 120 s`);
      }
      got.sort((a, b) => a.atInstruction - b.atInstruction);
      assertEquals(got.map((m) => m.chainDepth), [0, 1, 2, 0, 1]);
      assertEquals(got[3].parentPath, null);
      await lm.snapshot({ mode: "cow", path: `${dir}/x.lsnap`, incremental: true });
      await assertRejects(
        () => lm.snapshot({ mode: "cow", path: `${dir}/y.lsnap`, incremental: true }),
        Error,
        "its parent is 2 diffs deep, the most a chain may be (2)",
      );
    } finally {
      await lm.quit();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const CLI = new URL("../tools/cli.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

async function livesnap(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", CONFIG, CLI, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test("livesnap run/restore --incremental: a chain across a restore holds the state `run --stop-at N --digest` prints", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const elf = `${dir}/m.elf`;
    await Deno.writeFile(elf, ELF);
    const run = await livesnap(
      ...["run", elf, "--ram", "8M", "--snapshot-at", "500000", "--snapshot-at", "900000"],
      ...["--out", `${dir}/s-{n}.lsnap`, "--incremental", "--stop-at", "1000000"],
    );
    assertEquals(run.code, 0, run.stderr);
    assert(
      run.stderr.includes(`(cow diff on ${dir}/s-500000.lsnap, depth 1,`),
      `no diff reported: ${run.stderr}`,
    );
    // Restore the diff (through its chain) and take a diff on it: a chain of three files.
    const restore = await livesnap(
      ...["restore", `${dir}/s-900000.lsnap`, "--snapshot-at", "1300000", "--mode", "stop"],
      ...["--out", `${dir}/d.lsnap`, "--incremental", "--stop-at", "1400000"],
    );
    assertEquals(restore.code, 0, restore.stderr);
    assert(restore.stderr.includes("depth 2"), restore.stderr);
    const [resumed, direct] = await Promise.all([
      livesnap("restore", `${dir}/d.lsnap`, "--stop-at", "1700000", "--digest"),
      livesnap("run", elf, "--ram", "8M", "--stop-at", "1700000", "--digest"),
    ]);
    assertEquals(resumed.code, 0, resumed.stderr);
    const digest = (s: string) => s.trim().split("\n").at(-1);
    assertEquals(digest(resumed.stdout), digest(direct.stdout));
    // --incremental with nothing to make incremental is a usage error.
    const bad = await livesnap("run", elf, "--incremental");
    assertEquals(bad.code, 2);
    assert(bad.stderr.includes("--incremental needs --snapshot-at or --snapshot-every"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serveControl() snapshot with incremental: refused with no parent, then a diff on the last snapshot", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const machine = await LiveMachine.start({ elf: ELF, ramSize: RAM });
    const sock = `${dir}/vm.sock`;
    const server = await serveControl(sock, machine);
    const snapshot = (path: string, incremental: unknown) =>
      controlRequest(sock, {
        execute: "snapshot",
        arguments: { path: `${dir}/${path}`, mode: "cow", incremental },
      });
    const refused = await snapshot("d.lsnap", true);
    if (!("error" in refused)) throw new Error(JSON.stringify(refused));
    assert(refused.error.desc.includes("no earlier snapshot to be its parent"), refused.error.desc);
    const notBool = await snapshot("d.lsnap", "yes");
    assert("error" in notBool && notBool.error.desc.includes("is not true or false"));
    const full = await snapshot("f.lsnap", false);
    assert("return" in full, JSON.stringify(full));
    const diff = await snapshot("d.lsnap", true);
    if (!("return" in diff)) throw new Error(JSON.stringify(diff));
    const m = diff.return as SnapshotMetrics;
    assertEquals([m.incremental, m.parentPath, m.chainDepth], [true, `${dir}/f.lsnap`, 1]);
    const c = await openChain(m.path);
    const flat = await flattenChainToFile(c, `${dir}/flat.lsnap`);
    c.close();
    assertEquals(toHex(flat.contentDigest), m.contentDigest);
    assertEquals(await controlRequest(sock, { execute: "quit" }), { return: {} });
    await server.quitRequested;
    await server.close();
    await machine.quit();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
