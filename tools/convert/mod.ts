/**
 * `convert`: rewrites a snapshot. Between `.lsnap` files it recompresses, rebatches, reorders
 * pages into address order, drops superseded duplicates, rebuilds a missing index and rewrites
 * an older minor version, in any combination. It also exchanges memory with tools that only know
 * flat images (`raw`), writes ELF core files that `gdb` opens beside the guest's ELF
 * (`elf-core`), and reads and writes QEMU migration streams (`qemu`; recognised without `from`).
 *
 * Every conversion that keeps the state keeps the content digest, and {@linkcode convertSnapshot}
 * checks that before it returns: the output bytes are read back as they are written (a second,
 * independent reader recomputes the digest from the output's own records) and compared with the
 * digest of the input. On a mismatch the output is removed and a {@linkcode ConvertError} thrown.
 *
 * Other formats plug in with {@linkcode registerInputFormat} and
 * {@linkcode registerOutputFormat}: an input format opens a {@linkcode SnapshotSource}, an output
 * format consumes one.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { convertSnapshot } from "./mod.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeFile(`${dir}/ram.img`, new Uint8Array(8192).fill(1));
 * const made = await convertSnapshot("", `${dir}/vm.lsnap`, {
 *   from: "raw",
 *   rawRegions: [{ name: "ram", base: 0x8000_0000, path: `${dir}/ram.img` }],
 * });
 * const back = await convertSnapshot(`${dir}/vm.lsnap`, `${dir}/plain.lsnap`, {
 *   compress: { codec: "raw" },
 * });
 * assertEquals(back.contentDigest, made.contentDigest);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
export { convertSnapshot } from "./convert.ts";
export { ConvertError } from "./error.ts";
export {
  inputFormats,
  outputFormats,
  registerInputFormat,
  registerOutputFormat,
} from "./registry.ts";
export type {
  CompressionChoice,
  ConvertContext,
  ConvertOptions,
  ConvertResult,
  InputFormat,
  OutputFormat,
  OutputSummary,
  RawRegionSpec,
  SnapshotSource,
  SourceItem,
} from "./types.ts";
