/**
 * The `elf-core` output format of `convert`: an ELF core file that `gdb` opens beside the
 * guest's ELF, one `PT_LOAD` per region at its guest address and the hart's registers in an
 * `NT_PRSTATUS` note (the layout is `tools/elf_core.ts`'s).
 *
 * @module
 */
import type { DeviceSection } from "../../format/device_section.ts";
import { decodeDeviceState } from "../../format/device_state.ts";
import { createOutput } from "../_io.ts";
import { PageStore } from "../_page_store.ts";
import { layoutElfCore, type Rv32Registers } from "../elf_core.ts";
import { placePages, streamRegions, writeAt, writeZeros } from "./_flat_image.ts";
import { ConvertError } from "./error.ts";
import type { ConvertContext, OutputSummary, SnapshotSource } from "./types.ts";

/** The hart's pc and x registers from its device section, or undefined (with a warning). */
function hartRegisters(
  devices: DeviceSection[],
  warn: (m: string) => void,
): Rv32Registers | undefined {
  const harts = devices.filter((d) => (d.id === "hart" || d.id === "cpu") && d.encoding === "cbor")
    .sort((a, b) => a.instance - b.instance);
  if (harts.length === 0) {
    warn("the snapshot has no hart section: the core file has no registers");
    return undefined;
  }
  if (harts.length > 1) {
    warn(`the snapshot has ${harts.length} harts: the core file holds hart ${harts[0].instance}`);
  }
  let state: unknown;
  try {
    state = decodeDeviceState(harts[0].state);
  } catch (e) {
    warn(
      `the hart section does not decode (${(e as Error).message}): the core file has no registers`,
    );
    return undefined;
  }
  const s = state as { pc?: unknown; x?: unknown };
  const x = s.x;
  if (
    typeof s.pc !== "number" || !Array.isArray(x) || x.length !== 32 ||
    !x.every((v) => typeof v === "number")
  ) {
    warn("the hart section has no pc and 32 x registers: the core file has no registers");
    return undefined;
  }
  return { pc: s.pc >>> 0, x: (x as number[]).map((v) => v >>> 0) };
}

/** `--to elf-core`: an ELF core file for gdb, one PT_LOAD per region, registers in a note. */
export async function writeElfCore(
  source: SnapshotSource,
  output: string,
  ctx: ConvertContext,
): Promise<OutputSummary> {
  const d = source.description;
  const segments = d.regions.map((r) => ({ address: r.base, size: r.size }));
  const all = d.regions.map((_, i) => i);
  let layout;
  try {
    // Reserve room for the register note, whether or not a hart section turns up.
    const withNote = layoutElfCore(segments, { pc: 0, x: new Array(32).fill(0) });
    layout = { dataOffset: withNote.segments[0].fileOffset, withNote };
  } catch (e) {
    throw new ConvertError(`Cannot convert to elf-core: ${(e as Error).message}`, { cause: e });
  }
  const devices = new Map<string, DeviceSection>();
  const onDevice = (dev: DeviceSection) => devices.set(`${dev.id}\u0000${dev.instance}`, dev);
  const out = await createOutput(output);
  try {
    let pages: number;
    const offsets = layout.withNote.segments.map((s) => s.fileOffset);
    const finalHeader = () => {
      const regs = hartRegisters([...devices.values()], ctx.warn);
      const l = layoutElfCore(segments, regs, { dataOffset: layout.dataOffset });
      return l;
    };
    if (out.file !== undefined) {
      await out.file.truncate(layout.withNote.fileSize);
      pages = await placePages(source, out.file, new Set(all), (r) => offsets[r], onDevice);
      await writeAt(out.file, 0, finalHeader().header);
    } else {
      const store = new PageStore(d);
      for await (const item of source.items()) {
        if (item.kind === "pages") store.put(item.region, item.pages, item.data);
        else if (item.kind === "device") onDevice(item.device);
      }
      const header = finalHeader().header;
      await out.write(header);
      await writeZeros(out, layout.dataOffset - header.length);
      pages = await streamRegions(store, out, all, (r) => offsets[r]);
    }
    await out.commit();
    return {
      bytes: layout.withNote.fileSize,
      pages,
      devices: 0,
      contentDigest: null,
      digestChecked: false,
    };
  } catch (e) {
    await out.abort();
    throw e;
  }
}
