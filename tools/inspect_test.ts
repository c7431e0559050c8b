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

Deno.test("livesnap inspect shows sizes in human units, compression and an incomplete file", async () => {
  const a = await run(["inspect", fixture]);
  assertEquals(a.code, 0);
  assertStringIncludes(a.out, "128 KiB  (32 pages of 4.00 KiB)");
  assertStringIncludes(a.out, "compression ");
  assert(!a.out.includes("\x1b["), "no colour when stdout is not a terminal");
  const bytes = await Deno.readFile(fixture);
  const cut = await run(["inspect", "-"], bytes.subarray(0, 20000));
  assertEquals(cut.code, 1);
  assertStringIncludes(cut.out, "INCOMPLETE OR DAMAGED");
});

Deno.test("livesnap inspect --json counts pages and bytes by encoding and the compression ratio", async () => {
  const basic = new URL("../tests/fixtures/v1_basic.lsnap", import.meta.url).pathname;
  const j = JSON.parse((await run(["inspect", basic, "--json"])).out);
  // 32 pages: 8 + 24 written once each; the zero ones travel in zero records.
  const byEnc = j.byEncoding.pages;
  assertEquals(byEnc.zero + byEnc.raw + byEnc.zstd, 32);
  assert(byEnc.zstd > 0 && j.byEncoding.bytes.zstd > 0);
  assert(j.compression.pageData > 1, "zstd pages take less room than their data");
  assertEquals(j.bytes, (await Deno.stat(basic)).size);
  assertEquals(j.compression.file, (32 * 4096) / j.bytes);
});

Deno.test("livesnap inspect --pages maps every page to its last record and flags duplicates", async () => {
  const j = JSON.parse((await run(["inspect", fixture, "--pages", "--json"])).out);
  const runs: {
    first: number;
    count: number;
    state: string;
    occurrences: number;
    record: { index: number; offset: number };
  }[] = j.pageMap;
  const pages = runs.flatMap((r) =>
    Array.from({ length: r.count }, (_, i) => ({ ...r, page: r.first + i }))
  );
  assertEquals(pages.map((p) => p.page), [...Array(32).keys()]);
  // The fixture resends pages 5, 2, 9 and zeroes page 9 last.
  const p9 = pages.find((p) => p.page === 9)!;
  assertEquals([p9.state, p9.occurrences], ["zero", 3]);
  assertEquals(pages.find((p) => p.page === 2)!.occurrences, 2);
  assertEquals(pages.filter((p) => p.occurrences > 1).length, 3);
  assertEquals(pages.filter((p) => p.state === "zero").length, j.pages.zero);
  // Every run names a real record offset, and the text form lists it too.
  const text = await run(["inspect", fixture, "--pages"]);
  assertStringIncludes(
    text.out,
    `ram 9  0x80009000..0x80009fff  zero  record ${p9.record.index} @${p9.record.offset}  x3 (duplicated)`,
  );
});

Deno.test("livesnap inspect --device prints one device's decoded state, from a pipe too", async () => {
  const basic = new URL("../tests/fixtures/v1_basic.lsnap", import.meta.url).pathname;
  const hart = await run(["inspect", "--device", "hart", basic]);
  assertEquals(hart.code, 0, hart.err);
  assertEquals(JSON.parse(hart.out), {
    id: "hart",
    instance: 0,
    version: 1,
    encoding: "cbor",
    state: { pc: 0x8000_0000, x: [0, 1, 2] },
  });
  const uart = await run(["inspect", "--device", "uart:0", "-"], await Deno.readFile(basic));
  assertEquals(JSON.parse(uart.out).state.fifo, { $bytes: 2, hex: "4869" });
  const missing = await run(["inspect", "--device", "uart:7", basic]);
  assertEquals(missing.code, 1);
  assertStringIncludes(missing.err, "Cannot find device uart:7 (devices: hart:0, uart:0)");
});
