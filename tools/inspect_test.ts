import { assert, assertEquals, assertStringIncludes } from "@std/assert/mod.js";

const cli = new URL("./cli.ts", import.meta.url).pathname;
const fixture = new URL("../tests/fixtures/v1_duplicates_noindex.lsnap", import.meta.url).pathname;

async function run(
  args: string[],
  stdin?: Uint8Array,
): Promise<{ code: number; out: string; err: string }> {
  const p = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", cli, ...args],
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const w = p.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const o = await p.output();
  return {
    code: o.code,
    out: new TextDecoder().decode(o.stdout),
    err: new TextDecoder().decode(o.stderr),
  };
}

Deno.test("livesnap inspect --json prints the documented fields, from a file and from stdin", async () => {
  const a = await run(["inspect", fixture, "--json"]);
  assertEquals(a.code, 0, a.err);
  const j = JSON.parse(a.out);
  assertEquals(j.formatVersion, "1.0");
  assertEquals(j.complete, true);
  assertEquals(j.regions, [{ name: "ram", base: 0x8000_0000, size: 32 * 4096, pageSize: 4096 }]);
  // 32 pages, page 9 resent then zeroed: 4 duplicates; the fixture's RAM has zero pages.
  assertEquals(j.pages.present, 32);
  assertEquals(j.pages.duplicates, 4);
  assertEquals(j.devices, [{ id: "clint", instance: 0, version: 1, encoding: "cbor", bytes: 8 }]);
  assert(/^[0-9a-f]{64}$/.test(j.digests.content) && /^[0-9a-f]{64}$/.test(j.digests.file));
  const b = await run(["inspect", "-", "--json"], await Deno.readFile(fixture));
  assertEquals(JSON.parse(b.out), j);
});

Deno.test("livesnap verify exits 0 intact, 1 damaged naming the record and offset, 2 on usage", async () => {
  const bytes = await Deno.readFile(fixture);
  assertEquals((await run(["verify", fixture])).code, 0);
  const bad = bytes.slice();
  bad[5000] ^= 0xff;
  const damaged = await run(["verify", "-"], bad);
  assertEquals(damaged.code, 1);
  assertStringIncludes(damaged.out, "FAILED: Cannot read record ");
  assertStringIncludes(damaged.out, "CRC32C mismatch");
  const cut = await run(["verify", "-", "--json"], bytes.subarray(0, bytes.length - 40));
  assertEquals(cut.code, 1);
  assertEquals(JSON.parse(cut.out).error.kind, "TruncatedError");
  assertEquals((await run(["verify"])).code, 2);
  assertEquals((await run(["verify", "/nonexistent/x.lsnap"])).code, 2);
  assertEquals((await run(["inspect", fixture, "--bogus"])).code, 2);
});
