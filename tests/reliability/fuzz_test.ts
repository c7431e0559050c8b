// A short fuzz run and the replay of every case that ever failed (tests/fixtures/regressions/).
import { assert, assertEquals } from "@std/assert/mod.js";
import { fuzz } from "./fuzz.ts";
import { caseSeed, makeCase, MUTATORS, reseal, Rng, spans } from "./_mutators.ts";
import { buildCorpus } from "./_corpus.ts";
import { runCase } from "./_targets.ts";
import { QEMU_MUTATORS } from "./_qemu_mutators.ts";
import { buildQemuCorpus } from "./_qemu_corpus.ts";
import { runQemuCase } from "./_qemu_targets.ts";

Deno.test("fuzz() runs 600 seeded cases through every reader and tool without a failure", async () => {
  const report = await fuzz({ seed: 20261126, cases: 600, workers: 2, timeout: 60 });
  assertEquals(report.failures, []);
  assertEquals(report.cases, 600);
  assertEquals(report.passed + report.skipped, 600);
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

Deno.test("fuzz() runs 600 seeded QEMU stream cases through every reader and tool without a failure", async () => {
  const report = await fuzz({
    target: "qemu",
    seed: 20261126,
    cases: 600,
    workers: 2,
    timeout: 60,
  });
  assertEquals(report.failures, []);
  assertEquals(report.cases, 600);
  assertEquals(report.passed + report.skipped, 600);
  assertEquals(Object.keys(report.mutators).sort(), QEMU_MUTATORS.map((m) => m.name).sort());
  for (
    const kind of [
      "QemuStreamCorruptError",
      "QemuStreamTruncatedError",
      "QemuStreamUnsupportedError",
      "ok",
    ]
  ) {
    assert(
      (report.outcomes[kind] ?? 0) > 0,
      `no case ended in ${kind}: ${JSON.stringify(report.outcomes)}`,
    );
  }
});

Deno.test("runQemuCase() passes every QEMU corpus stream and labels a truncated one", async () => {
  const scratch = await Deno.makeTempFile();
  try {
    const { whole, small } = await buildQemuCorpus();
    for (const bytes of [...whole.slice(0, 1), ...small]) {
      assertEquals(await runQemuCase(bytes, scratch, 4096), {
        problems: [],
        skipped: [],
        outcome: "ok",
      });
      const cut = await runQemuCase(bytes.subarray(0, bytes.length - 40), scratch, 999);
      assertEquals(cut, { problems: [], skipped: [], outcome: "QemuStreamTruncatedError" });
    }
  } finally {
    await Deno.remove(scratch);
  }
});

Deno.test("runCase() counts the checks it cannot make as skipped, not passed", async () => {
  // A valid 2 GiB machine: over the harness's 256 MiB cap for whole-machine reads.
  const bytes = await Deno.readFile(
    new URL("../fixtures/regressions/fuzz-s1-c3954.lsnap", import.meta.url),
  );
  const scratch = await Deno.makeTempFile({ suffix: ".lsnap" });
  try {
    const r = await runCase(bytes, scratch, 4096);
    assertEquals(r.problems, []);
    assertEquals(r.skipped, [
      "verify against readSnapshot: the machine is over the harness's cap",
      "convert against readSnapshot: the machine is over the harness's cap",
      "restored RAM against the file: the machine is over the harness's cap",
    ]);
  } finally {
    await Deno.remove(scratch);
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
      assertEquals(await runCase(bytes, scratch, 999), {
        problems: [],
        skipped: [],
        outcome: "ok",
      });
      const cut = await runCase(bytes.subarray(0, bytes.length - 40), scratch, 999);
      assertEquals(cut, { problems: [], skipped: [], outcome: "TruncatedError" });
    }
  } finally {
    await Deno.remove(scratch);
  }
});

const dir = new URL("../fixtures/regressions/", import.meta.url);
const fixtures = [...Deno.readDirSync(dir)].map((e) => e.name)
  .filter((n) => n.endsWith(".lsnap") || n.endsWith(".qemu")).sort();

Deno.test("every regression fixture now ends in its documented outcome", async (t) => {
  const scratch = await Deno.makeTempFile({ suffix: ".lsnap" });
  try {
    for (const name of fixtures) {
      await t.step(name, async () => {
        const bytes = await Deno.readFile(new URL(name, dir));
        const meta = JSON.parse(
          await Deno.readTextFile(new URL(name.replace(/\.(lsnap|qemu)$/, ".json"), dir)),
        );
        const run = name.endsWith(".qemu") ? runQemuCase : runCase;
        for (const chunk of [1, 7, 4096, 1 << 20]) {
          const r = await run(bytes, scratch, chunk);
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
        assertEquals(r, { problems: [], skipped: [], outcome: "ok" }, `file ${i}`);
      }
    }
  } finally {
    await Deno.remove(scratch);
  }
});
