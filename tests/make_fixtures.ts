/**
 * Generates the golden files in tests/fixtures/ and their expected digests. Run only when adding
 * a fixture: `deno run -A tests/make_fixtures.ts`. The golden test never regenerates them; every
 * future version must read the committed files.
 *
 * @module
 */
import { SnapshotWriter } from "../format/writer.ts";
import { encodeDeviceState } from "../format/device_state.ts";
import { inspectSnapshot } from "../tools/inspect.ts";
import { makeRam, PAGE, shuffle } from "./_snapshots.ts";

const dir = new URL("./fixtures/", import.meta.url).pathname;
const createdAt = Date.UTC(2026, 0, 1);
const ram = makeRam(32, 2026);
for (let i = 0; i < PAGE; i++) ram[3 * PAGE + i] = (i * 2654435761) >>> 24; // a poorly compressible page

const fixtures: Record<string, (path: string) => Promise<void>> = {
  // zstd, raw (incompressible batch) and zero records; list and run addressing; CBOR devices.
  "v1_basic.lsnap": async (path) => {
    const w = await SnapshotWriter.createFile(path, {
      regions: [{ name: "ram", base: 0x8000_0000, size: 32 * PAGE, pageSize: PAGE }],
      creator: "livesnap fixtures",
      createdAt,
      metadata: encodeDeviceState({ arch: "riscv32", board: "virt" }),
    }, { batchBytes: 4 * PAGE });
    await w.writePages(0, 0, ram.subarray(0, 8 * PAGE));
    for (const p of shuffle([...Array(24).keys()].map((x) => x + 8), 1)) {
      await w.writePages(0, p, ram.subarray(p * PAGE, (p + 1) * PAGE));
    }
    await w.writeDevice({
      id: "hart",
      instance: 0,
      version: 1,
      state: encodeDeviceState({ pc: 0x8000_0000, x: [0, 1, 2] }),
    });
    await w.writeDevice({
      id: "uart",
      instance: 0,
      version: 1,
      state: encodeDeviceState({ lsr: 0x60, fifo: new Uint8Array([72, 105]) }),
    });
    await w.close();
  },
  // Pages resent (the last occurrence wins), a device resent, no index, raw codec.
  "v1_duplicates_noindex.lsnap": async (path) => {
    const w = await SnapshotWriter.createFile(path, {
      regions: [{ name: "ram", base: 0x8000_0000, size: 32 * PAGE, pageSize: PAGE }],
      creator: "livesnap fixtures",
      createdAt,
    }, { codec: "raw", index: false, batchBytes: 2 * PAGE });
    await w.writePages(0, 0, ram);
    await w.writeDevice({
      id: "clint",
      instance: 0,
      version: 1,
      state: encodeDeviceState({ mtime: 1 }),
    });
    await w.writePageList(0, [5, 2, 9], new Uint8Array(3 * PAGE).fill(0xee));
    await w.writePages(0, 9, new Uint8Array(PAGE)); // page 9 ends zero
    await w.writeDevice({
      id: "clint",
      instance: 0,
      version: 1,
      state: encodeDeviceState({ mtime: 2 }),
    });
    await w.close();
  },
  // Two regions with different page sizes, a foreign device payload, an unknown optional record.
  "v1_regions_foreign_extension.lsnap": async (path) => {
    const w = await SnapshotWriter.createFile(path, {
      regions: [
        { name: "ram", base: 0x8000_0000, size: 16 * PAGE, pageSize: PAGE },
        { name: "flash", base: 0x2000_0000, size: 8 * 512, pageSize: 512 },
      ],
      creator: "livesnap fixtures",
      createdAt,
    }, { level: 3 });
    await w.writePages(1, 2, new Uint8Array(2 * 512).fill(0x5a));
    await w.writeExtensionRecord(
      0x7f00,
      new TextEncoder().encode("optional extension payload"),
      false,
    );
    await w.writePageList(0, [15, 0, 7], ram.subarray(0, 3 * PAGE));
    await w.writeDevice({
      id: "virtio-blk",
      instance: 1,
      version: 3,
      encoding: "foreign",
      description: encodeDeviceState({ source: "qemu", vmsd: "virtio-blk", version: 2 }),
      state: new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7]),
    });
    await w.close();
  },
};

const expected: Record<string, unknown> = {};
for (const [name, make] of Object.entries(fixtures)) {
  const path = dir + name;
  await make(path);
  const r = await inspectSnapshot((await Deno.open(path)).readable);
  if (!r.complete) throw new Error(`fixture ${name} does not read back: ${r.error?.message}`);
  expected[name] = {
    contentDigest: r.digests.content,
    fileDigest: r.digests.file,
    pages: r.pages,
    devices: r.devices,
  };
  console.log(name, (await Deno.stat(path)).size, "bytes", r.digests.content);
}
await Deno.writeTextFile(dir + "expected.json", JSON.stringify(expected, null, 2) + "\n");
