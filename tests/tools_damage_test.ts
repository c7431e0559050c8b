// Every tool on damaged input: inspect and verify report and never throw; convert and diff throw
// only format errors or ConvertError, and convert leaves no output behind.
import { assert, assertEquals } from "@std/assert/mod.js";
import { LsnapError } from "../format/errors.ts";
import { ConvertError, convertSnapshot } from "../tools/convert/mod.ts";
import { diffSnapshots } from "../tools/diff.ts";
import { inspectSnapshot } from "../tools/inspect.ts";
import { verifySnapshot } from "../tools/verify.ts";
import { rng } from "./_snapshots.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;

Deno.test("inspect, verify, convert and diff on randomly damaged files: clear errors, nothing left", async () => {
  const sources = await Promise.all(
    ["v1_basic.lsnap", "v1_regions_foreign_extension.lsnap", "v1_duplicates_noindex.lsnap"].map((
      n,
    ) => Deno.readFile(`${FIXTURES}${n}`)),
  );
  const r = rng(2026);
  const dir = await Deno.makeTempDir({ prefix: "livesnap-damage-" });
  const unexpected: string[] = [];
  try {
    for (let n = 0; n < 60; n++) {
      const bytes = sources[n % sources.length].slice();
      const flips = 1 + Math.floor(r() * 3);
      for (let i = 0; i < flips; i++) {
        bytes[Math.floor(r() * bytes.length)] ^= 1 + Math.floor(r() * 255);
      }
      const damaged = r() < 0.3 ? bytes.subarray(0, Math.floor(r() * bytes.length)) : bytes;
      await Deno.writeFile(`${dir}/in.lsnap`, damaged);
      const v = await verifySnapshot(ReadableStream.from([damaged.slice()]));
      const i = await inspectSnapshot(ReadableStream.from([damaged.slice()]), { pages: true });
      assertEquals(v.ok, false, `case ${n}`);
      assertEquals(i.complete, false, `case ${n}`);
      for (const p of v.problems) assert(p.message.startsWith("Cannot "), p.message);
      for (const to of ["lsnap", "raw", "elf-core"]) {
        try {
          await convertSnapshot(`${dir}/in.lsnap`, `${dir}/out`, {
            to,
            region: "ram",
            checkInWorker: false,
          });
          unexpected.push(`case ${n}: convert to ${to} succeeded on a damaged file`);
        } catch (e) {
          if (!(e instanceof LsnapError || e instanceof ConvertError)) {
            unexpected.push(`case ${n}: ${(e as Error).stack}`);
          }
        }
      }
      try {
        await diffSnapshots(`${dir}/in.lsnap`, `${FIXTURES}v1_basic.lsnap`);
        unexpected.push(`case ${n}: diff succeeded on a damaged file`);
      } catch (e) {
        if (!(e instanceof LsnapError)) unexpected.push(`case ${n}: ${(e as Error).stack}`);
      }
      assertEquals(
        [...Deno.readDirSync(dir)].map((e) => e.name),
        ["in.lsnap"],
        `case ${n}: output left behind`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assertEquals(unexpected, []);
});
