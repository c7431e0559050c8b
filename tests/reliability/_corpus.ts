/**
 * The fuzz corpus: the golden files and a few generated snapshots that between them hold every
 * record type, encoding and addressing mode (run and list, zero/raw/zstd, index or not, two
 * regions with two page sizes, duplicates, unknown records, CBOR and foreign device state).
 *
 * @module
 */
import { encodeDeviceState } from "../../format/device_state.ts";
import { description, devices, makeRam, shuffle, writeToBytes } from "../_snapshots.ts";

const FIXTURES = new URL("../fixtures/", import.meta.url);
const GOLDEN = [
  "v1_basic.lsnap",
  "v1_duplicates_noindex.lsnap",
  "v1_regions_foreign_extension.lsnap",
];

/** Builds the corpus; equal on every call (the writer is deterministic for equal input). */
export async function buildCorpus(): Promise<Uint8Array[]> {
  const out: Uint8Array[] = GOLDEN.map((n) => Deno.readFileSync(new URL(n, FIXTURES)));
  const ram = makeRam(32, 7);
  out.push(
    await writeToBytes({ description: description(32), ram, options: { workers: 0 } }),
    await writeToBytes({
      description: description(32),
      ram,
      order: shuffle([...Array(32).keys()], 3),
      batch: 5,
      options: { workers: 0, codec: "raw", index: false, batchBytes: 16384 },
    }),
    await writeToBytes({
      description: description(16, true),
      ram: makeRam(16, 9),
      order: [...shuffle([...Array(16).keys()], 4), 3, 3, 7],
      batch: 3,
      options: { workers: 0, batchBytes: 8192 },
      devices: [
        ...devices(),
        {
          id: "virtio-blk",
          instance: 1,
          version: 2,
          encoding: "foreign",
          state: new Uint8Array([1, 2, 3, 4]),
          description: encodeDeviceState({ source: "qemu", vmsd: "virtio-blk" }),
        },
      ],
      extra: async (w) => {
        await w.writePages(1, 1, new Uint8Array(512).fill(0x5a));
        await w.writeExtensionRecord(0x0100, new Uint8Array([7, 7, 7]), false);
      },
    }),
  );
  return out;
}
