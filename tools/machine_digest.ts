/**
 * The content digest of a machine's current state (hart, devices, RAM): the value a snapshot of
 * this exact state carries (FORMAT.md §10), so `run --stop-at N --digest` can be compared with a
 * snapshot taken at instruction N.
 *
 * The digest itself is defined and computed by format/ (`computeContentDigest`,
 * `encodeDeviceState`); this adapter only hands it the machine's description, RAM and device
 * sections (`deviceSections` in emulator/machine.ts, the mapping the snapshot engine uses too).
 *
 * TODO(lead): format/ was written in parallel on another branch. Once it is merged, replace the
 * dynamic imports below with static ones:
 *   import { computeContentDigest } from "../format/content_digest.ts";
 *   import { encodeDeviceState } from "../format/device_state.ts";
 * (They are dynamic so this branch type-checks without format/; behaviour is the same.)
 *
 * @module
 */

import { deviceSections, type Machine } from "../emulator/machine.ts";

interface FormatDigestApi {
  computeContentDigest(
    description: {
      regions: { name: string; base: number; size: number; pageSize: number }[];
      creator: string;
      createdAt: number;
    },
    regionBytes: Uint8Array[],
    devices: { id: string; instance: number; version: number; state: Uint8Array }[],
  ): Promise<Uint8Array>;
  encodeDeviceState(value: unknown): Uint8Array;
}

async function loadFormat(): Promise<FormatDigestApi> {
  const digestUrl = new URL("../format/content_digest.ts", import.meta.url).href;
  const stateUrl = new URL("../format/device_state.ts", import.meta.url).href;
  try {
    const [d, s] = await Promise.all([import(digestUrl), import(stateUrl)]);
    return { computeContentDigest: d.computeContentDigest, encodeDeviceState: s.encodeDeviceState };
  } catch (e) {
    throw new Error(
      "Cannot compute the machine digest: format/content_digest.ts is not available in this checkout",
      { cause: e },
    );
  }
}

/** The content digest of `machine`'s state, as lowercase hex. Call between `run()`s. */
export async function machineDigest(machine: Machine): Promise<string> {
  const f = await loadFormat();
  const description = { ...machine.machineDescription(), creator: "livesnap run", createdAt: 0 };
  const sections = deviceSections(machine.save()).map((d) => ({
    id: d.id,
    instance: d.instance,
    version: d.version,
    state: f.encodeDeviceState(d.state),
  }));
  const digest = await f.computeContentDigest(description, [machine.ram.bytes], sections);
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}
