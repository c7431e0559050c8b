/**
 * End to end, across the parts, through the `livesnap` command as a user runs it: a live `cow`
 * snapshot of a bundled guest taken by the real engine, then every tool on it.
 *
 * - `verify --content` with the digest `run --stop-at N --digest` prints;
 * - `inspect --json` shows the hart and the devices;
 * - `convert --compress none --address-order` keeps the content digest, and `restore` of the
 *   converted file runs on exactly as the original file and the uninterrupted run do;
 * - `diff` of the snapshots at N and N+K lists differing pages and exits 1, of a file and its
 *   conversion exits 0;
 * - `convert --to elf-core` opens in gdb-multiarch with the hart's pc (skipped, visibly, when
 *   gdb-multiarch is not installed; a failure in CI).
 */
import { assert, assertEquals, assertMatch } from "@std/assert/mod.js";
import { runGdb } from "./_guest_image.ts";
import { needTool } from "./_external_tools.ts";

const CLI = new URL("../tools/cli.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;
const GUEST = new URL("../emulator/guests/build/counter.elf", import.meta.url).pathname;

/** Small enough to be quick: 4 MiB of RAM, a few hundred thousand instructions. */
const RAM = "4M";
const N = 300_000;
const K = 200_000;
const M = 400_000;

async function livesnap(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", CONFIG, CLI, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** The digest `run`/`restore --digest` prints on its last line. */
function lastLine(stdout: string): string {
  return stdout.trim().split("\n").at(-1)!;
}

const gdb = await needTool("gdb-multiarch");

Deno.test("a live cow snapshot of a guest goes through verify, inspect, convert, restore, diff and gdb", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "livesnap-e2e-" });
  try {
    const at = (n: number) => `${dir}/c-${n}.lsnap`;
    const converted = `${dir}/c-${N}-plain.lsnap`;
    let digestN = "";

    await t.step("run --snapshot-at N and N+K --mode cow writes both files", async () => {
      const r = await livesnap(
        "run",
        GUEST,
        "--ram",
        RAM,
        "--snapshot-at",
        String(N),
        "--snapshot-at",
        String(N + K),
        "--out",
        `${dir}/c-{n}.lsnap`,
        "--mode",
        "cow",
        "--stop-at",
        String(N + K),
      );
      assertEquals(r.code, 0, r.stderr);
      assertMatch(
        r.stderr,
        new RegExp(`snapshot at instruction ${N} → .*c-${N}\\.lsnap \\(cow\\)`),
      );
      for (const n of [N, N + K]) assert((await Deno.stat(at(n))).size > 0);
    });

    await t.step(
      "verify --content passes with the digest of run --stop-at N --digest",
      async () => {
        const [direct, later] = await Promise.all([
          livesnap("run", GUEST, "--ram", RAM, "--stop-at", String(N), "--digest"),
          livesnap("run", GUEST, "--ram", RAM, "--stop-at", String(N + K), "--digest"),
        ]);
        assertEquals(direct.code, 0, direct.stderr);
        digestN = lastLine(direct.stdout);
        assertMatch(digestN, /^[0-9a-f]{64}$/);
        const [ok, wrong] = await Promise.all([
          livesnap("verify", "--content", digestN, at(N)),
          // The state N+K instructions in is another content: verify must say so.
          livesnap("verify", "--content", lastLine(later.stdout), at(N)),
        ]);
        assertEquals(ok.code, 0, ok.stdout + ok.stderr);
        assertEquals(wrong.code, 1, wrong.stdout);
      },
    );

    await t.step("inspect --json shows the hart and the devices", async () => {
      const [r, hart] = await Promise.all([
        livesnap("inspect", "--json", at(N)),
        livesnap("inspect", "--device", "hart", at(N)),
      ]);
      assertEquals(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assertEquals(j.complete, true);
      assertEquals(j.digests.content, digestN);
      assertEquals(j.regions, [{ name: "ram", base: 0x8000_0000, size: 4 << 20, pageSize: 4096 }]);
      const ids = j.devices.map((d: { id: string }) => d.id);
      for (const id of ["hart", "clint", "ns16550a"]) assert(ids.includes(id), ids.join(", "));
      const state = JSON.parse(hart.stdout).state;
      assert(state.pc >= 0x8000_0000 && state.pc < 0x8000_0000 + (4 << 20), `pc ${state.pc}`);
      assertEquals(state.x.length, 32);
    });

    await t.step("convert --compress none --address-order keeps the content digest", async () => {
      const r = await livesnap(
        "convert",
        "--compress",
        "none",
        "--address-order",
        at(N),
        converted,
      );
      assertEquals(r.code, 0, r.stderr);
      assert(r.stderr.includes(`content ${digestN} (checked)`), r.stderr);
      const j = JSON.parse((await livesnap("inspect", "--json", converted)).stdout);
      assertEquals([j.pages.encodings.zstd, j.pages.duplicates], [0, 0]);
      assertEquals(j.digests.content, digestN);
    });

    await t.step(
      "restore of the converted file runs on as the original and the whole run",
      async () => {
        const stop = String(N + M);
        const [fromConverted, fromOriginal, whole] = await Promise.all([
          livesnap("restore", converted, "--stop-at", stop, "--digest"),
          livesnap("restore", at(N), "--stop-at", stop, "--digest"),
          livesnap("run", GUEST, "--ram", RAM, "--stop-at", stop, "--digest"),
        ]);
        assertEquals(fromConverted.code, 0, fromConverted.stderr);
        assertEquals(fromConverted.stdout, fromOriginal.stdout);
        assertEquals(lastLine(fromConverted.stdout), lastLine(whole.stdout));
        // The guest printed something after the snapshot, the same as the uninterrupted run.
        const after = fromConverted.stdout.trim().split("\n").slice(0, -1);
        assert(after.length > 0, "the restored guest printed nothing in M instructions");
        assert(whole.stdout.includes(after.join("\n")), fromConverted.stdout);
      },
    );

    await t.step(
      "diff of the snapshots at N and N+K lists pages and exits 1; of a conversion 0",
      async () => {
        const [differ, same] = await Promise.all([
          livesnap("diff", "--json", "--pages", at(N), at(N + K)),
          livesnap("diff", "--json", at(N), converted),
        ]);
        assertEquals(differ.code, 1, differ.stderr);
        const d = JSON.parse(differ.stdout);
        assertEquals(d.equal, false);
        assertEquals(d.contentDigests.a, digestN);
        const ram = d.regions[0];
        assert(ram.changed + ram.zeroed + ram.filled > 0, JSON.stringify(ram));
        assertEquals(ram.pages.length, ram.changed + ram.zeroed + ram.filled);
        assert(d.devices.some((x: { id: string }) => x.id === "hart"), "the hart moved on");
        assertEquals(same.code, 0, same.stdout + same.stderr);
        assertEquals(JSON.parse(same.stdout).equal, true);
      },
    );

    await t.step({
      name: `convert --to elf-core opens in gdb-multiarch at the hart's pc${gdb.note}`,
      ignore: gdb.ignore,
      fn: async () => {
        gdb.check();
        const core = `${dir}/c.core`;
        const r = await livesnap("convert", "--to", "elf-core", at(N), core);
        assertEquals(r.code, 0, r.stderr);
        const pc = JSON.parse((await livesnap("inspect", "--device", "hart", at(N))).stdout).state
          .pc as number;
        const text = await runGdb(GUEST, core, ["info registers pc"]);
        assertMatch(text, new RegExp(`pc\\s+0x${pc.toString(16)}\\b`));
      },
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
