/**
 * The `qemu` input and output formats of `convert` (QEMU migration streams), built on
 * `qemu/convert.ts`.
 *
 * @module
 */
import type { MachineDescription } from "../../format/header.ts";
import { checkQemuMetadata, openQemuStream, writeQemuStreamFrom } from "../../qemu/convert.ts";
import { isQemuStream } from "../../qemu/stream_reader.ts";
import { isLivesnapMachine, writeVirtStream } from "../../qemu/riscv_virt_export.ts";
import { countBytes } from "../_count_bytes.ts";
import { createOutput, openInput } from "../_io.ts";
import { ConvertError } from "./error.ts";
import { checkDigest, ReadBack, type ReadBackReader } from "./read_back.ts";
import type {
  ConvertContext,
  InputFormat,
  OutputFormat,
  OutputSummary,
  SnapshotSource,
} from "./types.ts";

/** True when the regular file at `path` starts with a QEMU stream's magic and version. */
async function isQemuFile(path: string): Promise<boolean> {
  let file: Deno.FsFile;
  try {
    if (!(await Deno.stat(path)).isFile) return false;
    file = await Deno.open(path, { read: true });
  } catch {
    return false; // the input format reports a missing file with its own message
  }
  try {
    const head = new Uint8Array(8);
    let n = 0;
    while (n < head.length) {
      const k = await file.read(head.subarray(n));
      if (k === null) break;
      n += k;
    }
    return isQemuStream(head.subarray(0, n));
  } finally {
    file.close();
  }
}

async function openQemu(input: string, ctx: ConvertContext): Promise<SnapshotSource> {
  const handle = await openInput(input);
  let snap;
  try {
    snap = await openQemuStream(countBytes(handle.readable, (n) => ctx.progress.add(n)), {
      bases: ctx.options.bases,
      pageSize: ctx.options.pageSize,
    });
  } catch (e) {
    handle.close();
    throw e;
  }
  let read = false;
  return {
    name: handle.name,
    description: snap.description,
    async *items() {
      yield* snap.items();
      read = true;
    },
    contentDigest: async () => (read ? await snap.contentDigest() : null),
    close: () => handle.close(),
  };
}

/**
 * Reads a QEMU stream back and computes the content digest of what it holds, with the regions
 * of `description` (so a `--base` given when the snapshot was made still applies).
 */
function qemuReader(description: MachineDescription): ReadBackReader {
  const bases = Object.fromEntries(description.regions.map((r) => [r.name, r.base]));
  return async (bytes) => {
    const snap = await openQemuStream(bytes, {
      bases,
      pageSize: description.regions[0]?.pageSize,
    });
    for await (const _ of snap.items()) { /* the digest is gathered as the items pass */ }
    return { complete: true, contentDigest: await snap.contentDigest() };
  };
}

/**
 * A snapshot livesnap's machine took, as a stream of QEMU's riscv32 `virt` board
 * (qemu/riscv_virt_export.ts; read back, mapped again and compared with the snapshot as it is
 * written).
 */
async function writeLivesnapAsQemu(
  source: SnapshotSource,
  output: string,
  ctx: ConvertContext,
): Promise<OutputSummary> {
  const out = await createOutput(output);
  try {
    const r = await writeVirtStream(source.description, source.items(), {
      write: (chunk: Uint8Array) => out.write(chunk),
    });
    for (const n of r.notes) if (n.warn) ctx.warn(`${n.field}: ${n.note}`);
    await out.commit();
    return {
      bytes: r.bytes,
      pages: r.pageRecords,
      devices: r.devices,
      contentDigest: null,
      digestChecked: false,
    };
  } catch (e) {
    await out.abort();
    throw new ConvertError(
      (e as Error).message.replace(
        /^Cannot restore snapshot: /,
        "Cannot convert to a QEMU stream: ",
      ),
      { cause: e },
    );
  }
}

async function writeQemu(
  source: SnapshotSource,
  output: string,
  ctx: ConvertContext,
): Promise<OutputSummary> {
  if (isLivesnapMachine(source.description)) return await writeLivesnapAsQemu(source, output, ctx);
  try {
    checkQemuMetadata(source.description);
  } catch (e) {
    throw new ConvertError((e as Error).message, { cause: e });
  }
  const out = await createOutput(output);
  const check = ReadBack.inThisThread(out.name, qemuReader(source.description));
  try {
    const written = await writeQemuStreamFrom(source.description, source.items(), {
      async write(chunk: Uint8Array) {
        await out.write(chunk);
        await check.push(chunk);
      },
    });
    const back = await check.finish();
    const expected = await source.contentDigest();
    checkDigest(out.name, back, expected);
    await out.commit();
    return {
      bytes: written.bytes,
      pages: written.pageRecords,
      devices: written.devices,
      contentDigest: back,
      digestChecked: expected !== null,
    };
  } catch (e) {
    check.stop();
    await out.abort();
    throw e;
  }
}

/** `--from qemu` (recognised without it, from a file). */
export const QEMU_INPUT: InputFormat = {
  summary: "a QEMU migration stream (recognised without --from); one region per RAM block",
  open: openQemu,
  recognise: isQemuFile,
};

/** `--to qemu`. */
export const QEMU_OUTPUT: OutputFormat = {
  summary:
    "a QEMU migration stream: of QEMU's riscv32 virt board for livesnap's own snapshots, or as it was for a snapshot converted from one",
  keepsState: true,
  write: writeQemu,
};
