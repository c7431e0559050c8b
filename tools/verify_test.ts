import { assert, assertEquals, assertMatch, assertRejects } from "@std/assert/mod.js";
import { recordSpans } from "../tests/_snapshots.ts";
import { verifySnapshot } from "./verify.ts";

const CLI = new URL("./cli.ts", import.meta.url).pathname;
const FIXTURES = new URL("../tests/fixtures/", import.meta.url).pathname;
const EXPECTED: Record<string, { contentDigest: string; fileDigest: string }> = JSON.parse(
  await Deno.readTextFile(`${FIXTURES}expected.json`),
);
const BASIC = await Deno.readFile(`${FIXTURES}v1_basic.lsnap`);

async function run(args: string[], stdin?: Uint8Array) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "verify", ...args],
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  if (stdin) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const o = await child.output();
  return {
    code: o.code,
    out: new TextDecoder().decode(o.stdout),
    err: new TextDecoder().decode(o.stderr),
  };
}

Deno.test("verifySnapshot() passes the golden files and returns their digests", async () => {
  for (const [name, e] of Object.entries(EXPECTED)) {
    const r = await verifySnapshot(
      ReadableStream.from([await Deno.readFile(`${FIXTURES}${name}`)]),
    );
    assert(r.ok, name);
    assertEquals(r.digests, { content: e.contentDigest, file: e.fileDigest });
    assertEquals(r.problems, []);
  }
});

Deno.test("verifySnapshot() lists every damaged record with its offset; error is the first", async () => {
  const spans = recordSpans(BASIC);
  const bytes = BASIC.slice();
  for (const i of [2, 4]) bytes[spans[i].offset + 30] ^= 0x01;
  const r = await verifySnapshot(ReadableStream.from([bytes]));
  assertEquals(r.ok, false);
  const crc = r.problems.filter((p) => p.message.includes("CRC32C mismatch"));
  assertEquals(crc.map((p) => [p.recordIndex, p.offset]), [[2, spans[2].offset], [
    4,
    spans[4].offset,
  ]]);
  assertEquals(r.error, r.problems[0]);
  assertEquals(r.digests, { content: null, file: null });
});

Deno.test("verifySnapshot() with content checks the state the file holds", async () => {
  const good = EXPECTED["v1_basic.lsnap"].contentDigest;
  const yes = await verifySnapshot(ReadableStream.from([BASIC]), { content: good.toUpperCase() });
  assertEquals([yes.ok, yes.content], [true, { expected: good, matches: true }]);
  const other = EXPECTED["v1_duplicates_noindex.lsnap"].contentDigest;
  const no = await verifySnapshot(ReadableStream.from([BASIC]), { content: other });
  assertEquals(no.ok, false);
  assertEquals(no.content, { expected: other, matches: false });
  assertEquals(
    no.error?.message,
    `Cannot check content: the file holds content ${good}, expected ${other}`,
  );
  await assertRejects(
    () => verifySnapshot(ReadableStream.from([BASIC]), { content: "abc" }),
    Error,
    "Cannot verify: --content 'abc' is not 64 hex digits",
  );
});

Deno.test("livesnap verify --max-errors limits the list and says more may follow", async () => {
  const spans = recordSpans(BASIC);
  const bytes = BASIC.slice();
  for (const i of [1, 2, 3, 4]) bytes[spans[i].offset + 30] ^= 0x01;
  const all = await run(["-", "--json"], bytes);
  assertEquals(all.code, 1);
  assert(JSON.parse(all.out).problems.length >= 4);
  const two = await run(["-", "--max-errors", "2"], bytes);
  assertEquals(two.code, 1);
  assertMatch(two.out, /2 problems \(stopped there; raise --max-errors to see more\)/);
  assertEquals(two.out.split("\n").filter((l) => l.includes("CRC32C mismatch")).length, 2);
  const bad = await run(["-", "--max-errors", "0"], bytes);
  assertEquals(bad.code, 2);
  assertMatch(bad.err, /Cannot parse --max-errors: '0'/);
});

Deno.test("livesnap verify --content exits 0 for the expected state, 1 for another", async () => {
  const path = `${FIXTURES}v1_basic.lsnap`;
  const ok = await run(["--content", EXPECTED["v1_basic.lsnap"].contentDigest, path]);
  assertEquals(ok.code, 0, ok.out + ok.err);
  assertMatch(ok.out, /OK \(12 records, .* the expected content\)/);
  const no = await run([
    "--content",
    EXPECTED["v1_regions_foreign_extension.lsnap"].contentDigest,
    path,
  ]);
  assertEquals(no.code, 1);
  assertMatch(no.out, /FAILED: Cannot check content/);
  const usage = await run(["--content", "xyz", path]);
  assertEquals(usage.code, 2);
  const help = await run(["--help"]);
  assertEquals(help.code, 0);
  assertMatch(help.out, /Examples:\n {2}livesnap verify/);
});
