// The committed golden files must read, with these digests, in every future version.
import { assert, assertEquals } from "@std/assert/mod.js";
import { readSnapshot } from "../format/stream_reader.ts";
import { SnapshotFileReader } from "../format/file_reader.ts";
import { computeContentDigest } from "../format/content_digest.ts";
import { toHex } from "../format/checksum.ts";
import { inspectSnapshot } from "../tools/inspect.ts";
import { verifySnapshot } from "../tools/verify.ts";

const dir = new URL("./fixtures/", import.meta.url).pathname;
const expected: Record<
  string,
  { contentDigest: string; fileDigest: string; pages: unknown; devices: unknown }
> = JSON
  .parse(await Deno.readTextFile(dir + "expected.json"));

Deno.test("golden files read with their expected digests through both readers", async (t) => {
  const encodings = new Set<string>();
  for (const [name, want] of Object.entries(expected)) {
    await t.step(name, async () => {
      const path = dir + name;
      const v = await verifySnapshot((await Deno.open(path)).readable);
      assert(v.ok, v.error?.message);
      assertEquals(v.digests, { content: want.contentDigest, file: want.fileDigest });
      const info = await inspectSnapshot((await Deno.open(path)).readable);
      assertEquals(info.formatVersion, "1.0");
      assertEquals(info.pages, want.pages);
      assertEquals(info.devices, want.devices);
      for (const [k, n] of Object.entries(info.pages.encodings)) if (n > 0) encodings.add(k);
      const snap = await readSnapshot((await Deno.open(path)).readable);
      const file = await SnapshotFileReader.open(path);
      const regions = [];
      for (let i = 0; i < file.description.regions.length; i++) {
        regions.push(await file.readRegion(i));
      }
      const devices = await file.devices();
      file.close();
      assertEquals(regions, snap.regions);
      assertEquals(devices, snap.devices);
      assertEquals(
        toHex(await computeContentDigest(file.description, regions, devices)),
        want.contentDigest,
      );
    });
  }
  assertEquals([...encodings].sort(), ["raw", "zero", "zstd"]);
});
