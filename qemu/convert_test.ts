import { assert, assertEquals, assertRejects } from "@std/assert/mod.js";
import { decodeDeviceState } from "../format/device_state.ts";
import { readSnapshot } from "../format/stream_reader.ts";
import { SnapshotWriter } from "../format/writer.ts";
import { loadFixture, loadManifest, sha256Hex } from "./_fixtures_test_util.ts";
import { STREAM_KINDS } from "./_make_stream.ts";
import { convertLsnapToQemu, convertQemuToLsnap, QEMU_STREAM_DEVICE_ID } from "./convert.ts";
import { extractQemuRam } from "./extract_ram.ts";
import { readQemuSnapshot } from "./snapshot.ts";

async function toLsnap(stream: Uint8Array, dir: string, name: string) {
  const path = `${dir}/${name}.lsnap`;
  const summary = await convertQemuToLsnap([stream], path, { createdAt: 0 });
  return { path, summary };
}

async function toQemu(lsnap: string, dir: string, name: string): Promise<Uint8Array> {
  const out = `${dir}/${name}.qemu`;
  const file = await Deno.open(out, { write: true, create: true, truncate: true });
  await convertLsnapToQemu((await Deno.open(lsnap)).readable, file.writable);
  return await Deno.readFile(out);
}

Deno.test("convertQemuToLsnap() makes one region per RAM block holding the stream's final RAM", async () => {
  const dir = await Deno.makeTempDir();
  const manifest = await loadManifest();
  try {
    for (const kind of STREAM_KINDS) {
      const stream = await loadFixture(kind);
      const original = await readQemuSnapshot([stream]);
      const { path, summary } = await toLsnap(stream, dir, kind);
      const snap = await readSnapshot((await Deno.open(path)).readable);
      assertEquals(
        snap.description.regions.map((r) => [r.name, r.size]),
        original.blocks.map((b) => [b.name, b.size]),
      );
      assertEquals(snap.description.regions[0].base, manifest.ram.address);
      assertEquals(summary.pageRecords, original.pageRecords);
      for (let i = 0; i < original.blocks.length; i++) {
        const want = await extractQemuRam([stream], original.blocks[i].name);
        assert(
          want.every((b, j) => b === snap.regions[i][j]),
          `${kind}: ${original.blocks[i].name}`,
        );
      }
      const facts = manifest.streams[kind];
      if (facts.pmemsaveSha256 !== undefined) {
        assertEquals(await sha256Hex(snap.regions[0]), facts.pmemsaveSha256, kind);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("convertQemuToLsnap() keeps each device section byte for byte as a foreign section", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const stream = await loadFixture("live");
    const original = await readQemuSnapshot([stream]);
    const { path } = await toLsnap(stream, dir, "live");
    const snap = await readSnapshot((await Deno.open(path)).readable);
    for (const [i, d] of original.devices.entries()) {
      const kept = snap.devices.find((x) => x.id === d.idstr && x.instance === d.instanceId);
      if (kept === undefined) throw new Error(`device ${d.idstr} is missing`);
      assertEquals([kept.version, kept.encoding], [d.versionId, "foreign"]);
      assertEquals(kept.state, d.data);
      const desc = decodeDeviceState(kept.description) as Record<string, unknown>;
      assertEquals([desc.sectionId, desc.order], [d.sectionId, i]);
      const entry = JSON.parse(desc.vmdesc as string);
      assertEquals([entry.name, entry.instance_id], [d.idstr, d.instanceId]);
    }
    assert(snap.devices.some((x) => x.id === QEMU_STREAM_DEVICE_ID));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("convertLsnapToQemu() writes back the device sections, RAM and description unchanged", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const kind of STREAM_KINDS) {
      const stream = await loadFixture(kind);
      const original = await readQemuSnapshot([stream]);
      const { path } = await toLsnap(stream, dir, kind);
      const back = await readQemuSnapshot([await toQemu(path, dir, kind)]);
      assertEquals(back.configuration.bytes, original.configuration.bytes);
      assertEquals(back.ramSection, original.ramSection);
      assertEquals(back.blocks, original.blocks);
      assertEquals(back.devices, original.devices, kind);
      assertEquals(back.vmdescText, original.vmdescText);
      assertEquals(back.unsentPages.size, 0);
      // Every page occurrence travels through (a resent page stays resent, the last one wins).
      assertEquals(back.pageRecords, original.pageRecords);
      for (const b of original.blocks) {
        const want = original.pages.get(b.name)!;
        const got = back.pages.get(b.name)!;
        assertEquals([...got.keys()].sort(), [...want.keys()].sort(), b.name);
        for (const [address, page] of want) assertEquals(got.get(address), page);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("convertLsnapToQemu() refuses a snapshot that did not come from QEMU", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/plain.lsnap`;
    const w = await SnapshotWriter.createFile(path, {
      regions: [{ name: "ram", base: 0x8000_0000, size: 8192, pageSize: 4096 }],
      creator: "test",
      createdAt: 0,
    });
    await w.close();
    const out = await Deno.open(`${dir}/out.qemu`, { write: true, create: true });
    await assertRejects(
      () => convertLsnapToQemu(Deno.openSync(path).readable, out.writable),
      Error,
      "Cannot convert to a QEMU stream: the snapshot was not converted from one",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
