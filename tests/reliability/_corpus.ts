/**
 * The fuzz corpus: the golden files and a few generated snapshots that between them hold every
 * record type, encoding and addressing mode (run and list, zero/raw/zstd, index or not, two
 * regions with two page sizes, duplicates, unknown records, CBOR and foreign device state), and
 * snapshots of the bundled machine running real guests (for restore).
 *
 * @module
 */
import { encodeDeviceState } from "../../format/device_state.ts";
import { SnapshotWriter } from "../../format/writer.ts";
import { Machine } from "../../emulator/machine.ts";
import { describeMachine, sectionsFromState } from "../../emulator/snapshot/machine_state.ts";
import { description, devices, makeRam, memorySink, shuffle, writeToBytes } from "../_snapshots.ts";

const GUESTS = new URL("../../emulator/guests/build/", import.meta.url);

/** A snapshot of a guest of the bundled machine (1 MiB of RAM) after `steps` instructions. */
export async function machineSnapshot(guest: string, steps: number): Promise<Uint8Array> {
  const elf = await Deno.readFile(new URL(`${guest}.elf`, GUESTS));
  const m = Machine.fromElf(elf, { ramSize: 1 << 20, uartSink: () => {} });
  m.run(steps);
  const sink = memorySink();
  const w = await SnapshotWriter.create(sink.stream, describeMachine(m, 0), { workers: 0 });
  const ram = m.ram.bytes;
  for (let p = 0; p < ram.length / 4096; p++) {
    const page = ram.subarray(p * 4096, (p + 1) * 4096);
    if (page.some((b) => b !== 0)) await w.writePages(0, p, page);
  }
  for (const d of sectionsFromState(m.save())) await w.writeDevice(d);
  await w.close();
  return sink.bytes();
}

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
  out.push(
    await machineSnapshot("counter", 200_000),
    await machineSnapshot("usermode", 150_000),
    await machineSnapshot("traps", 10_000),
  );
  return out;
}
