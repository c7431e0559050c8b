/**
 * Live migration over TCP on the loopback address, end to end through the command line: a
 * source (`run --migrate-to`, or `ctl migrate` on a running machine) and a destination
 * (`restore --incoming`) as separate processes. The migrated guest must print and hold exactly
 * what a run that was never interrupted prints and holds; a cut connection must lose nothing.
 */
import { assert, assertEquals, assertRejects } from "@std/assert/mod.js";
import { memstressElf } from "./_guests.ts";

const CLI = new URL("../tools/cli.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;
const decoder = new TextDecoder();

/** A guest that stores all the time, forever: 2 MiB working set, printing each round. */
const GUEST = memstressElf({ workingSetBytes: 2 << 20, writesPerRound: 20_000, rounds: 0 });
const RAM = "32M";
const END = "60000000";
/** Instructions the destination runs after the switch-over. */
const RUN_ON = "5000000";

interface Running {
  process: Deno.ChildProcess;
  /** Everything on stderr so far. */
  stderr: () => string;
  /** Resolves with the exit code and the whole stdout once the process ends. */
  done: Promise<{ code: number; stdout: string; stderr: string }>;
  /** Resolves when a stderr line matches. */
  waitFor: (re: RegExp, ms?: number) => Promise<RegExpMatchArray>;
}

function spawn(...args: string[]): Running {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", "--config", CONFIG, CLI, ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let err = "";
  const watchers: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const errDone = (async () => {
    for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
      err += chunk;
      for (const w of [...watchers]) {
        const m = err.match(w.re);
        if (m !== null) {
          watchers.splice(watchers.indexOf(w), 1);
          w.resolve(m);
        }
      }
    }
  })();
  const outText = new Response(process.stdout).arrayBuffer();
  const done = (async () => {
    const status = await process.status;
    const stdout = decoder.decode(await outText);
    await errDone;
    return { code: status.code, stdout, stderr: err };
  })();
  return {
    process,
    stderr: () => err,
    done,
    waitFor: (re, ms = 60_000) => {
      const m = err.match(re);
      if (m !== null) return Promise.resolve(m);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no stderr line ${re} within ${ms} ms; stderr:\n${err}`)),
          ms,
        );
        watchers.push({
          re,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
        });
      });
    },
  };
}

async function livesnap(...args: string[]) {
  const r = spawn(...args);
  return await r.done;
}

/** A destination on a free port of 127.0.0.1. */
async function destination(...args: string[]): Promise<Running & { port: number }> {
  const d = spawn("restore", "--incoming", "127.0.0.1:0", ...args);
  const m = await d.waitFor(/waiting for a migration on 127\.0\.0\.1:(\d+)/);
  return { ...d, port: Number(m[1]) };
}

async function withGuest(fn: (dir: string, elf: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/guest.elf`, GUEST);
    await fn(dir, `${dir}/guest.elf`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** What a run that is never interrupted prints up to `end`, its digest last. */
const reference = new Map<string, Promise<string>>();
function uninterrupted(elf: string, end: string): Promise<string> {
  const key = `${end}`;
  if (!reference.has(key)) {
    reference.set(
      key,
      livesnap("run", elf, "--ram", RAM, "--stop-at", end, "--digest").then((r) => {
        assertEquals(r.code, 0, r.stderr);
        return r.stdout;
      }),
    );
  }
  return reference.get(key)!;
}

function jsonLines(text: string): Record<string, unknown>[] {
  return text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

/** Runs one migration `run --migrate-to` → `restore --incoming` and checks it end to end. */
async function migrateAndCheck(
  dir: string,
  elf: string,
  sourceArgs: string[],
  mode: "precopy" | "postcopy" | "hybrid" = "precopy",
): Promise<{ passes: Record<string, unknown>[]; migration: Record<string, unknown> }> {
  // Where the switch-over falls is the engine's choice: the destination runs a fixed count on.
  const dst = await destination("--out", `${dir}/in.lsnap`, "--run-for", RUN_ON, "--digest");
  const src = await livesnap(
    "run",
    elf,
    "--ram",
    RAM,
    "--migrate-to",
    `127.0.0.1:${dst.port}`,
    "--migrate-at",
    "3000000",
    "--metrics",
    `${dir}/m.jsonl`,
    ...sourceArgs,
  );
  assertEquals(src.code, 0, src.stderr);
  assert(new RegExp(`migrated to 127\\.0\\.0\\.1:\\d+ \\(${mode}\\)`).test(src.stderr), src.stderr);
  const d = await dst.done;
  assertEquals(d.code, 0, d.stderr);
  const lines = jsonLines(await Deno.readTextFile(`${dir}/m.jsonl`));
  const passes = lines.filter((l) => l.type === "migration-pass");
  const migration = lines.find((l) => l.type === "migration")!;
  // The guest's output: the source's up to the switch-over, then the destination's, with the
  // destination's digest at the end: exactly an uninterrupted run's.
  const end = String((migration.atInstruction as number) + Number(RUN_ON));
  assertEquals(src.stdout + d.stdout, await uninterrupted(elf, end));
  for (const k of ["downtimeMs", "totalMs", "bytesSent", "passes", "postcopyFaults"]) {
    assertEquals(typeof migration[k], "number", k);
  }
  if (mode === "precopy") {
    assert(passes.length >= 2, JSON.stringify(passes));
    for (const k of ["pass", "bytes", "bandwidth", "dirtyRate", "estimatedDowntimeMs"]) {
      assertEquals(typeof passes[0][k], "number", k);
    }
    assertEquals(passes.at(-1)!.last, true);
  }
  // The destination's file verifies, holds the state the source handed over, and restores to
  // the same later state.
  const v = await livesnap("verify", `${dir}/in.lsnap`);
  assertEquals(v.code, 0, v.stdout + v.stderr);
  const inspect = JSON.parse((await livesnap("inspect", "--json", `${dir}/in.lsnap`)).stdout);
  assertEquals(JSON.stringify(inspect).includes(migration.contentDigest as string), true);
  const again = await livesnap("restore", `${dir}/in.lsnap`, "--stop-at", end, "--digest");
  assertEquals(again.code, 0, again.stderr);
  assertEquals(again.stdout, d.stdout);
  return { passes, migration };
}

Deno.test("run --migrate-to (precopy): the guest goes on at the destination exactly as if never moved", async () => {
  await withGuest(async (dir, elf) => {
    const { migration } = await migrateAndCheck(dir, elf, ["--downtime-ms", "50"]);
    assertEquals(migration.mode, "precopy");
  });
});

Deno.test("run --migrate-to (postcopy): the guest runs at the destination on faulted-in pages exactly as if never moved", async () => {
  await withGuest(async (dir, elf) => {
    const { migration } = await migrateAndCheck(dir, elf, [
      "--migrate-mode",
      "postcopy",
      "--bandwidth",
      "4M",
    ], "postcopy");
    assertEquals(migration.mode, "postcopy");
    assertEquals(migration.passes, 0);
    assert((migration.postcopyFaults as number) > 0, JSON.stringify(migration));
    const lat = migration.faultLatencyUs as { p50: number; p99: number };
    assert(lat.p99 >= lat.p50 && lat.p50 > 0, JSON.stringify(lat));
  });
});

Deno.test("run --migrate-to (hybrid): precopy passes, then post-copy; the guest goes on exactly as if never moved", async () => {
  await withGuest(async (dir, elf) => {
    const { passes, migration } = await migrateAndCheck(dir, elf, [
      "--migrate-mode",
      "hybrid",
      "--precopy-passes",
      "2",
      "--bandwidth",
      "8M",
    ], "hybrid");
    assertEquals(migration.mode, "hybrid");
    assertEquals(migration.passes, 2);
    assertEquals(passes.map((p) => p.pass), [0, 1]);
  });
});

Deno.test("a destination killed during post-copy: both guests hold, and --resume on both ends finishes it", async () => {
  await withGuest(async (dir, elf) => {
    const first = await destination("--run-for", RUN_ON, "--digest");
    const src = spawn("run", elf, "--ram", RAM, "--control", `${dir}/vm.sock`);
    for (let i = 0; i < 200; i++) {
      if (await Deno.stat(`${dir}/vm.sock`).then(() => true, () => false)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 500));
    // A slow link: the destination runs the guest long before its pages are all in.
    const cut = livesnap(
      "ctl",
      `${dir}/vm.sock`,
      "migrate",
      `127.0.0.1:${first.port}`,
      "--mode",
      "postcopy",
      "--bandwidth",
      "256K",
    );
    await first.waitFor(/running the guest from instruction (\d+) \(post-copy/);
    first.process.kill("SIGKILL");
    await first.done;
    const c = await cut;
    assertEquals(c.code, 1, c.stdout + c.stderr);
    assert(/--resume/.test(c.stdout), c.stdout);
    // The source's guest is held where it handed over.
    const held = JSON.parse((await livesnap("ctl", `${dir}/vm.sock`, "status")).stdout).return;
    assertEquals(held.state, "paused", JSON.stringify(held));
    const second = await destination(
      "--resume",
      "--out",
      `${dir}/in.lsnap`,
      "--run-for",
      RUN_ON,
      "--digest",
    );
    const ctl = await livesnap(
      "ctl",
      `${dir}/vm.sock`,
      "migrate",
      `127.0.0.1:${second.port}`,
      "--resume",
    );
    assertEquals(ctl.code, 0, ctl.stdout + ctl.stderr);
    const reply = JSON.parse(ctl.stdout.slice(ctl.stdout.indexOf("{\n"))).return;
    assertEquals(reply.atInstruction, held.retired);
    const s = await src.done;
    assertEquals(s.code, 0, s.stderr);
    const d = await second.done;
    assertEquals(d.code, 0, d.stderr);
    const end = String(reply.atInstruction + Number(RUN_ON));
    assertEquals(s.stdout + d.stdout, await uninterrupted(elf, end));
    const v = await livesnap("verify", `${dir}/in.lsnap`);
    assertEquals(v.code, 0, v.stdout + v.stderr);
    const again = await livesnap("restore", `${dir}/in.lsnap`, "--stop-at", end, "--digest");
    assertEquals(again.stdout, d.stdout);
  });
});

Deno.test("run --migrate-to --bandwidth: a guest that dirties faster than the link is throttled until it converges", async () => {
  await withGuest(async (dir, elf) => {
    const { passes, migration } = await migrateAndCheck(dir, elf, [
      "--bandwidth",
      "2M",
      "--precopy-max-passes",
      "10",
    ]);
    // The link is the bottleneck: some pass sent fewer pages than the guest dirtied meanwhile,
    // so auto-converge had to throttle it.
    assert(passes.some((p) => (p.dirtyToTransferRatio as number) >= 0.5), JSON.stringify(passes));
    const snapshot = migration.snapshot as { precopyThrottlePct: number };
    assert(snapshot.precopyThrottlePct > 0, JSON.stringify(snapshot));
    // The cap held: no pass went much faster than 2 MiB/s.
    for (const p of passes) assert((p.bandwidth as number) < 1.5 * (2 << 20), JSON.stringify(p));
  });
});

Deno.test("ctl PATH migrate: a running machine moves, with one JSON line per pass, and the source stops", async () => {
  await withGuest(async (dir, elf) => {
    // The switch-over instant is the engine's choice: the destination runs a fixed count on.
    const dst = await destination("--run-for", RUN_ON, "--digest");
    const src = spawn("run", elf, "--ram", RAM, "--control", `${dir}/vm.sock`);
    for (let i = 0; i < 200; i++) {
      if (await Deno.stat(`${dir}/vm.sock`).then(() => true, () => false)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const ctl = await livesnap("ctl", `${dir}/vm.sock`, "migrate", `127.0.0.1:${dst.port}`);
    assertEquals(ctl.code, 0, ctl.stdout + ctl.stderr);
    const events = ctl.stdout.split("\n").filter((l) => l.startsWith('{"event"'));
    assert(events.length >= 2, ctl.stdout);
    assertEquals(JSON.parse(events[0]).event, "MIGRATION_PASS");
    const s = await src.done;
    assertEquals(s.code, 0, s.stderr);
    const d = await dst.done;
    assertEquals(d.code, 0, d.stderr);
    const reply = JSON.parse(ctl.stdout.slice(ctl.stdout.indexOf("\n{\n") + 1)).return;
    const end = String(reply.atInstruction + Number(RUN_ON));
    assertEquals(s.stdout + d.stdout, await uninterrupted(elf, end));
  });
});

Deno.test("a destination that dies during precopy: the source's guest runs on as if nothing happened", async () => {
  await withGuest(async (dir, elf) => {
    const dst = await destination("--out", `${dir}/in.lsnap`);
    const src = spawn(
      "run",
      elf,
      "--ram",
      RAM,
      "--migrate-to",
      `127.0.0.1:${dst.port}`,
      "--migrate-at",
      "3000000",
      "--bandwidth",
      "256K",
      "--stop-at",
      END,
      "--digest",
    );
    await src.waitFor(/"migration-pass"/);
    dst.process.kill("SIGKILL");
    await dst.done;
    const s = await src.done;
    // The failure is reported (exit status 1) but the guest ran to the end undisturbed.
    assertEquals(s.code, 1, s.stderr);
    assert(/Cannot migrate/.test(s.stderr), s.stderr);
    assertEquals(s.stdout, await uninterrupted(elf, END));
    await assertRejects(() => Deno.stat(`${dir}/in.lsnap`), Deno.errors.NotFound);
  });
});

Deno.test("a source that dies during precopy: the destination discards everything", async () => {
  await withGuest(async (dir, elf) => {
    const dst = await destination("--out", `${dir}/in.lsnap`, "--digest");
    const src = spawn(
      "run",
      elf,
      "--ram",
      RAM,
      "--migrate-to",
      `127.0.0.1:${dst.port}`,
      "--migrate-at",
      "3000000",
      "--bandwidth",
      "256K",
    );
    await src.waitFor(/"migration-pass"/);
    src.process.kill("SIGKILL");
    await src.done;
    const d = await dst.done;
    assertEquals(d.code, 7, d.stderr); // the connection dropped
    assert(/closed the connection/.test(d.stderr), d.stderr);
    assertEquals(d.stdout, ""); // no guest ran
    const left = [...Deno.readDirSync(dir)].map((e) => e.name);
    assertEquals(left.filter((n) => n.startsWith("in.lsnap")), []);
  });
});

Deno.test("an incompatible destination refuses before any page moves; the source runs on", async () => {
  await withGuest(async (dir, elf) => {
    const dst = await destination("--ram", "16M", "--out", `${dir}/in.lsnap`);
    const src = await livesnap(
      "run",
      elf,
      "--ram",
      RAM,
      "--migrate-to",
      `127.0.0.1:${dst.port}`,
      "--migrate-at",
      "3000000",
      "--stop-at",
      END,
      "--digest",
    );
    assertEquals(src.code, 1, src.stderr);
    assert(
      /the destination refused: the guest has 33554432 bytes of RAM/.test(src.stderr),
      src.stderr,
    );
    // No pass ever started: nothing but the handshake crossed.
    assert(!src.stderr.includes("migration-pass"), src.stderr);
    assertEquals(src.stdout, await uninterrupted(elf, END));
    const d = await dst.done;
    assertEquals(d.code, 3, d.stderr);
    await assertRejects(() => Deno.stat(`${dir}/in.lsnap`), Deno.errors.NotFound);
  });
});
