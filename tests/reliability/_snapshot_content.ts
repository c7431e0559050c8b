/**
 * The machine state the killed-writer and full-disk trials write: deterministic for a seed, so
 * the parent knows the content digest a complete file of that trial must carry.
 *
 * @module
 */
import { computeContentDigest } from "../../format/content_digest.ts";
import type { MachineDescription } from "../../format/header.ts";
import type { DeviceSectionInput } from "../../format/device_section.ts";
import { encodeDeviceState } from "../../format/device_state.ts";
import { toHex } from "../../format/checksum.ts";
import { makeRam } from "../_snapshots.ts";

/** Description, RAM and devices of trial `seed` with `pages` 4 KiB pages. */
export function trialState(seed: number, pages: number): {
  description: MachineDescription;
  ram: Uint8Array;
  devices: DeviceSectionInput[];
} {
  return {
    description: {
      regions: [{ name: "ram", base: 0x8000_0000, size: pages * 4096, pageSize: 4096 }],
      creator: "livesnap reliability",
      createdAt: 1_700_000_000_000,
    },
    ram: makeRam(pages, seed + 1),
    devices: [{ id: "trial", instance: 0, version: 1, state: encodeDeviceState({ seed }) }],
  };
}

/** The content digest, in hex, of trial `seed`. */
export async function trialDigest(seed: number, pages: number): Promise<string> {
  const s = trialState(seed, pages);
  return toHex(await computeContentDigest(s.description, [s.ram], s.devices));
}
