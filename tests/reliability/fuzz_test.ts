// A short fuzz run and the replay of every case that ever failed (tests/fixtures/regressions/).
import { assert, assertEquals } from "@std/assert/mod.js";
import { fuzz } from "./fuzz.ts";
import { caseSeed, makeCase, MUTATORS, reseal, Rng, spans } from "./_mutators.ts";
import { buildCorpus } from "./_corpus.ts";
import { runCase } from "./_targets.ts";

Deno.test("fuzz() runs 600 seeded cases through every reader and tool without a failure", async () => {
  const report = await fuzz({ seed: 20261126, cases: 600, workers: 2, timeout: 60 });
  assertEquals(report.failures, []);
  assertEquals(report.cases, 600);
  // Every mutator took part, and the cases reached each kind of refusal and some successes.
  assertEquals(
    Object.keys(report.mutators).sort(),
    [...MUTATORS.map((m) => m.name), "reseal"].sort(),
  );
  for (const kind of ["CorruptError", "ChecksumError", "TruncatedError", "ok"]) {
    assert(
      (report.outcomes[kind] ?? 0) > 0,
      `no case ended in ${kind}: ${JSON.stringify(report.outcomes)}`,
    );
  }
});

Deno.test("makeCase() is a pure function of seed and index", async () => {
  const corpus = await buildCorpus();
  for (let i = 0; i < 50; i++) {
    assertEquals((await makeCase(7, i, corpus)).bytes, (await makeCase(7, i, corpus)).bytes);
  }
  assert(new Rng(caseSeed(7, 1)).u32() !== new Rng(caseSeed(7, 2)).u32());
});

Deno.test("runCase() passes every corpus file and labels a truncated one", async () => {
  const scratch = await Deno.makeTempFile({ suffix: ".lsnap" });
  try {
    for (const bytes of await buildCorpus()) {
      assertEquals(await runCase(bytes, scratch, 999), { problems: [], outcome: "ok" });
      const cut = await runCase(bytes.subarray(0, bytes.length - 40), scratch, 999);
      assertEquals(cut, { problems: [], outcome: "TruncatedError" });
    }
  } finally {
    await Deno.remove(scratch);
  }
});

const dir = new URL("../fixtures/regressions/", import.meta.url);
const fixtures = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".lsnap"))
  .sort();

Deno.test("every regression fixture now ends in its documented outcome", async (t) => {
  const scratch = await Deno.makeTempFile({ suffix: ".lsnap" });
  try {
    for (const name of fixtures) {
      await t.step(name, async () => {
        const bytes = await Deno.readFile(new URL(name, dir));
        const meta = JSON.parse(
          await Deno.readTextFile(new URL(name.replace(/\.lsnap$/, ".json"), dir)),
        );
        for (const chunk of [1, 7, 4096, 1 << 20]) {
          const r = await runCase(bytes, scratch, chunk);
          assertEquals(r.problems, [], `${name}: ${meta.found ?? ""}`);
          if (meta.expect !== undefined) assertEquals(r.outcome, meta.expect.outcome);
        }
      });
    }
  } finally {
    await Deno.remove(scratch);
  }
});

Deno.test("reseal() makes a structurally edited file verify again", async () => {
  const corpus = await buildCorpus();
  const scratch = await Deno.makeTempFile({ suffix: ".lsnap" });
  try {
    for (const [i, bytes] of corpus.entries()) {
      const list = spans(bytes);
      // Drop the last DEVICE record: counts, index and content digest all change.
      const d = list.findLast((x) => x.type === 3)!;
      const cut = new Uint8Array(bytes.length - d.length);
      cut.set(bytes.subarray(0, d.offset));
      cut.set(bytes.subarray(d.offset + d.length), d.offset);
      assertEquals((await runCase(cut, scratch, 4096)).outcome === "ok", false, `file ${i}`);
      for (const withIndex of [false, true]) {
        const r = await runCase(await reseal(cut, withIndex), scratch, 4096);
        assertEquals(r, { problems: [], outcome: "ok" }, `file ${i}`);
      }
    }
  } finally {
    await Deno.remove(scratch);
  }
});
