/**
 * Extracts one RAM block of a QEMU stream as a raw image (what QEMU's `pmemsave` writes for the
 * same guest memory), reading the stream once, in order: a page sent again by a later pass
 * overwrites the earlier copy.
 *
 * @module
 */
import { AtomicFile } from "../format/atomic_file.ts";
import { QemuStreamCorruptError } from "./errors.ts";
import { type ByteInput, readQemuStream, type ReadQemuStreamOptions } from "./stream_reader.ts";

/** Where extracted pages go: positional writes into something `size` bytes long. */
interface PageTarget {
  begin(size: number): Promise<void>;
  writeAt(offset: number, bytes: Uint8Array): Promise<void>;
}

async function extractInto(
  input: ByteInput,
  blockName: string,
  target: PageTarget,
  options: ReadQemuStreamOptions,
): Promise<{ size: number; pageRecords: number }> {
  let size = -1;
  let pageSize = options.pageSize ?? 4096;
  let nonZero = new Uint8Array(0);
  let pageRecords = 0;
  let zeros = new Uint8Array(0);
  let known: string[] = [];
  for await (const r of readQemuStream(input, options)) {
    if (r.kind === "configuration" && r.configuration.targetPageBits !== undefined) {
      pageSize = 2 ** r.configuration.targetPageBits;
    } else if (r.kind === "ram-blocks") {
      known = r.blocks.map((b) => b.name);
      const block = r.blocks.find((b) => b.name === blockName);
      if (block === undefined) continue;
      size = block.size;
      nonZero = new Uint8Array(size / pageSize);
      zeros = new Uint8Array(pageSize);
      await target.begin(size);
    } else if (r.kind === "page" && r.block === blockName) {
      pageRecords++;
      const index = r.address / pageSize;
      if (r.data !== undefined) {
        await target.writeAt(r.address, r.data);
        nonZero[index] = 1;
      } else if (r.fill !== 0) {
        await target.writeAt(r.address, new Uint8Array(pageSize).fill(r.fill!));
        nonZero[index] = 1;
      } else if (nonZero[index] === 1) {
        // A later pass found the page zeroed: overwrite the earlier copy.
        await target.writeAt(r.address, zeros);
        nonZero[index] = 0;
      }
    }
  }
  if (size < 0) {
    throw new QemuStreamCorruptError(
      `the stream has no RAM block '${blockName}' (it has: ${known.join(", ") || "none"})`,
      0,
    );
  }
  return { size, pageRecords };
}

/**
 * Reads a QEMU stream and returns the final contents of RAM block `blockName`.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { extractQemuRam } from "./extract_ram.ts";
 * import { QemuStreamWriter } from "./stream_writer.ts";
 * const chunks: Uint8Array[] = [];
 * const w = new QemuStreamWriter({ write: async (c: Uint8Array) => { chunks.push(c.slice()); } });
 * await w.writeHeader(new Uint8Array([7, 0, 0, 0, 4, 0x76, 0x69, 0x72, 0x74]));
 * await w.writeRamBlocks([{ name: "ram", size: 8192 }], { sectionId: 2 });
 * await w.writePage("ram", 4096, new Uint8Array(4096).fill(3));
 * await w.close();
 * const ram = await extractQemuRam(chunks, "ram");
 * assert(ram.length === 8192 && ram[0] === 0 && ram[4096] === 3);
 * ```
 */
export async function extractQemuRam(
  input: ByteInput,
  blockName: string,
  options: ReadQemuStreamOptions = {},
): Promise<Uint8Array> {
  let out = new Uint8Array(0);
  await extractInto(input, blockName, {
    begin(size) {
      out = new Uint8Array(size);
      return Promise.resolve();
    },
    writeAt(offset, bytes) {
      out.set(bytes, offset);
      return Promise.resolve();
    },
  }, options);
  return out;
}

/**
 * Reads a QEMU stream and writes RAM block `blockName` to the file `path` as a raw image of the
 * block's size (sparse where the guest's pages are zero). Memory use is one byte per page.
 * Returns the block size and the number of page records of that block in the stream.
 */
export async function extractQemuRamToFile(
  input: ByteInput,
  blockName: string,
  path: string,
  options: ReadQemuStreamOptions = {},
): Promise<{ size: number; pageRecords: number }> {
  // Written through the format's atomic file (FORMAT.md §9): a failure leaves nothing behind.
  const out = await AtomicFile.create(path);
  const file = out.file;
  try {
    const result = await extractInto(input, blockName, {
      async begin(size) {
        await file.truncate(size);
      },
      async writeAt(offset, bytes) {
        await file.seek(offset, Deno.SeekMode.Start);
        await out.write(bytes);
      },
    }, options);
    await out.commit();
    return result;
  } catch (e) {
    await out.abort();
    throw e;
  }
}
