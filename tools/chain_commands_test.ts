/** The commands on chains of diffs: flatten, inspect, verify --chain (FORMAT.md §14). */
import { assert, assertEquals, assertStringIncludes } from "@std/assert/mod.js";
import { writeChain } from "../format/_chain_test_util.ts";
import { crc32c, toHex } from "../format/checksum.ts";
import { recordSpans } from "../tests/_snapshots.ts";
import { readSnapshot } from "../format/stream_reader.ts";
import { main as flattenMain } from "./flatten_command.ts";
import { main as inspectMain } from "./inspect_command.ts";
import { main as verifyMain } from "./verify_command.ts";

const CLI = new URL("./cli.ts", import.meta.url).pathname;

/** Runs a command's main in this process; what it printed on stdout and stderr. */
async function capture(f: () => Promise<number>) {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    const code = await f();
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

async function withChain<T>(
  f: (dir: string, steps: Awaited<ReturnType<typeof writeChain>>) => Promise<T>,
) {
  const dir = await Deno.makeTempDir({ prefix: "chain_commands_" });
  try {
    return await f(dir, await writeChain(dir, 3, { pages: 32, seed: 31 }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("livesnap flatten writes the state the chain declares, and refuses its own inputs", async () => {
  await withChain(async (dir, steps) => {
    const want = toHex(steps[3].summary.contentDigest);
    const r = await capture(() => flattenMain([steps[3].path, "--out", `${dir}/flat.lsnap`]));
    assertEquals(r.code, 0, r.err);
    assertStringIncludes(r.out, `4 files flattened`);
    assertStringIncludes(r.out, `content ${want}`);
    const snap = await readSnapshot((await Deno.open(`${dir}/flat.lsnap`)).readable);
    assertEquals(toHex(snap.contentDigest), want);

    const again = await capture(() => flattenMain([steps[3].path, "--out", steps[1].path]));
    assertEquals(again.code, 1);
    assertEquals(
      again.err,
      `livesnap flatten: Cannot flatten to '${steps[1].path}': it is '${
        steps[1].path
      }', a file of the chain being flattened`,
    );
    await Deno.remove(steps[2].path);
    const missing = await capture(() => flattenMain([steps[3].path, "--out", `${dir}/x.lsnap`]));
    assertEquals(missing.code, 1);
    assertStringIncludes(missing.err, "link s-3.lsnap → s-2.lsnap (depth 3 → 2)");
    assertEquals((await capture(() => flattenMain([steps[3].path]))).code, 2);
  });
});

Deno.test("livesnap flatten --out - writes the snapshot to standard output", async () => {
  await withChain(async (_dir, steps) => {
    const o = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", CLI, "flatten", steps[2].path, "--out", "-"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(o.code, 0, new TextDecoder().decode(o.stderr));
    const snap = await readSnapshot(ReadableStream.from([o.stdout]));
    assertEquals(toHex(snap.contentDigest), toHex(steps[2].summary.contentDigest));
    assertEquals(snap.regions[0], steps[2].ram);
  });
});

Deno.test("livesnap inspect shows a diff's parent link and its chain", async () => {
  await withChain(async (dir, steps) => {
    const r = await capture(() => inspectMain([steps[2].path]));
    assertEquals(r.code, 0, r.err);
    assertStringIncludes(r.out, "parent      s-1.lsnap (this diff is at chain depth 2;");
    assertStringIncludes(r.out, `  file      ${toHex(steps[1].summary.fileDigest)}`);
    assertStringIncludes(r.out, "chain       3 files, every link checked (full snapshot first)");
    assertStringIncludes(r.out, `     0  ${steps[0].path}`);
    const j = await capture(() => inspectMain(["--json", steps[2].path]));
    const json = JSON.parse(j.out);
    assertEquals(json.parent.depth, 2);
    assertEquals(json.parent.contentDigest, toHex(steps[1].summary.contentDigest));
    assertEquals(json.chain.files.map((f: { depth: number }) => f.depth), [0, 1, 2]);
    // A full snapshot has neither.
    const full = JSON.parse((await capture(() => inspectMain(["--json", steps[0].path]))).out);
    assertEquals([full.parent, full.chain], [null, undefined]);
    // Without its parent the diff is still described, and the broken chain named (exit 1).
    await Deno.rename(steps[1].path, `${dir}/moved.lsnap`);
    const broken = await capture(() => inspectMain([steps[2].path]));
    assertEquals(broken.code, 1);
    assertStringIncludes(broken.out, "parent      s-1.lsnap");
    assertStringIncludes(broken.out, `the parent '${dir}/s-1.lsnap' does not exist`);
    const given = await capture(() =>
      inspectMain([steps[2].path, "--parent", `${dir}/moved.lsnap`])
    );
    assertEquals(given.code, 0, given.out);
  });
});

Deno.test("livesnap verify checks a diff alone, and --chain every file and link", async () => {
  await withChain(async (dir, steps) => {
    const alone = await capture(() => verifyMain([steps[3].path]));
    assertEquals(alone.code, 0, alone.out);
    assertStringIncludes(
      alone.out,
      "a diff on s-2.lsnap at depth 3: content digest not checked without its chain (--chain)",
    );
    const want = toHex(steps[3].summary.contentDigest);
    const chain = await capture(() => verifyMain(["--chain", steps[3].path, "--content", want]));
    assertEquals(chain.code, 0, chain.out);
    assertStringIncludes(
      chain.out,
      `chain of 4 files: OK, every link proved, content ${want}, the expected content`,
    );
    const json = JSON.parse(
      (await capture(() => verifyMain(["--chain", "--json", steps[3].path])))
        .out,
    );
    assert(json.ok);
    assertEquals(json.files.map((f: { diff: { contentChecked: boolean } | null }) => f.diff), [
      null,
      { parent: "s-0.lsnap", depth: 1, contentChecked: true },
      { parent: "s-1.lsnap", depth: 2, contentChecked: true },
      { parent: "s-2.lsnap", depth: 3, contentChecked: true },
    ]);
    // A diff alone cannot be checked against a content digest.
    const content = await capture(() => verifyMain([steps[3].path, "--content", want]));
    assertEquals(content.code, 1);
    assertStringIncludes(content.out, "a diff's content digest is the whole state's");
    // A byte of a parent's last page record changed and its CRC fixed: only the digests that
    // --chain recomputes can tell.
    const bytes = await Deno.readFile(steps[1].path);
    const rec = recordSpans(bytes).filter((r) => r.type === 2).at(-1)!;
    bytes[rec.offset + rec.length - 5] ^= 1;
    const crcAt = rec.offset + rec.length - 4;
    new DataView(bytes.buffer).setUint32(crcAt, crc32c(bytes.subarray(rec.offset, crcAt)), true);
    await Deno.writeFile(steps[1].path, bytes);
    const bad = await capture(() => verifyMain(["--chain", steps[3].path]));
    assertEquals(bad.code, 1);
    assertStringIncludes(
      bad.out,
      `chain: FAILED: Cannot use the chain of '${
        steps[3].path
      }': '${dir}/s-1.lsnap' does not verify`,
    );
    assertEquals((await capture(() => verifyMain(["--parent", "x", steps[3].path]))).code, 2);
  });
});
