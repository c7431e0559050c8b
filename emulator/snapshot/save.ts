/**
 * An in-process snapshot of a machine that is not running (what `stop` does, on one thread):
 * for tools and tests that hold a `Machine` themselves.
 *
 * @module
 */

import { SnapshotWriter, type WriteSummary } from "../../format/writer.ts";
import type { DeviceSectionInput } from "../../format/device_section.ts";
import type { Machine } from "../machine.ts";
import { describeMachine, sectionsFromState } from "./machine_state.ts";
import { isZeroPage, PAGE_SIZE } from "./page_state.ts";

/** Options of {@linkcode saveMachine}. */
export interface SaveMachineOptions {
  /** Replaces the device sections the machine's state gives (tests of migration and refusal). */
  editSections?: (sections: DeviceSectionInput[]) => DeviceSectionInput[];
}

/**
 * Writes a snapshot of `machine` as it is now (call between `run()`s) to `path`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { toHex } from "../../format/checksum.ts";
 * import { readSnapshot } from "../../format/stream_reader.ts";
 * import { Machine } from "../machine.ts";
 * import { machineContentDigest } from "./machine_state.ts";
 * import { saveMachine } from "./save.ts";
 * const elf = await Deno.readFile(new URL("../guests/build/hello.elf", import.meta.url));
 * const m = Machine.fromElf(elf, { ramSize: 1 << 20, uartSink: () => {} });
 * m.run(1000);
 * const dir = await Deno.makeTempDir();
 * await saveMachine(m, `${dir}/hello.lsnap`);
 * const snap = await readSnapshot((await Deno.open(`${dir}/hello.lsnap`)).readable);
 * assertEquals(toHex(snap.contentDigest), await machineContentDigest(m));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function saveMachine(
  machine: Machine,
  path: string,
  options: SaveMachineOptions = {},
): Promise<WriteSummary> {
  const writer = await SnapshotWriter.createFile(path, describeMachine(machine), { workers: 0 });
  try {
    machine.ram.ensureAllPresent(); // a lazily restored machine's pages first
    const ram = machine.ram.bytes;
    for (let off = 0; off < ram.length; off += PAGE_SIZE) {
      if (!isZeroPage(ram, off)) {
        await writer.writePages(0, off / PAGE_SIZE, ram.subarray(off, off + PAGE_SIZE));
      }
    }
    let sections = sectionsFromState(machine.save());
    if (options.editSections !== undefined) sections = options.editSections(sections);
    for (const s of sections) await writer.writeDevice(s);
    return await writer.close();
  } catch (e) {
    await writer.abort();
    throw e;
  }
}
