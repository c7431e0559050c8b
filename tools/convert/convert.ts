/**
 * {@linkcode convertSnapshot}: picks the input and output formats, checks the options that
 * concern every format, and runs the source through the output format.
 *
 * @module
 */
import { toHex } from "../../format/_bytes.ts";
import { createProgress } from "../_term.ts";
import { inAddressOrder } from "./address_order.ts";
import { ConvertError } from "./error.ts";
import { inputFormats, outputFormats, recogniseInput } from "./registry.ts";
import type { ConvertContext, ConvertOptions, ConvertResult } from "./types.ts";

/**
 * Converts `input` to `output` (paths; `-` is standard input or output).
 *
 * Throws {@linkcode ConvertError} for a failed check or a bad combination of options, an
 * `LsnapError` or `QemuStreamError` subclass for a malformed input (naming record and offset);
 * in every failure case the output file is removed.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { convertSnapshot } from "./convert.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeFile(`${dir}/ram.img`, new Uint8Array(65536).fill(7));
 * // A flat memory image becomes a snapshot (its content digest is checked on the way)...
 * const made = await convertSnapshot("", `${dir}/vm.lsnap`, {
 *   from: "raw",
 *   rawRegions: [{ name: "ram", base: 0x8000_0000, path: `${dir}/ram.img` }],
 * });
 * assert(made.digestChecked);
 * // ...is recompressed in address order, keeping its content digest...
 * const small = await convertSnapshot(`${dir}/vm.lsnap`, `${dir}/small.lsnap`, {
 *   compress: { codec: "zstd", level: 9 },
 *   addressOrder: true,
 * });
 * assert(small.contentDigest === made.contentDigest);
 * // ...and becomes a flat image again, or an ELF core for gdb.
 * await convertSnapshot(`${dir}/small.lsnap`, `${dir}/back.img`, { to: "raw", region: "ram" });
 * await convertSnapshot(`${dir}/small.lsnap`, `${dir}/vm.core`, { to: "elf-core" });
 * assert((await Deno.readFile(`${dir}/back.img`))[100] === 7);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function convertSnapshot(
  input: string,
  output: string,
  options: ConvertOptions = {},
): Promise<ConvertResult> {
  const from = options.from ??
    (input !== "-" && input !== "" ? await recogniseInput(input) : undefined) ?? "lsnap";
  const to = options.to ?? "lsnap";
  const inputs = inputFormats();
  const outputs = outputFormats();
  const inFormat = inputs.get(from);
  const outFormat = outputs.get(to);
  if (inFormat === undefined) {
    throw new ConvertError(
      `Cannot convert: unknown input format '${from}' (known: ${[...inputs.keys()].join(", ")})`,
    );
  }
  if (outFormat === undefined) {
    throw new ConvertError(
      `Cannot convert: unknown output format '${to}' (known: ${[...outputs.keys()].join(", ")})`,
    );
  }
  const batch = options.batchBytes;
  if (batch !== undefined && (batch < 4096 || batch > 16 << 20)) {
    throw new ConvertError(`Cannot convert: batch size ${batch} is not between 4 KiB and 16 MiB`);
  }
  if (output !== "-" && input !== "-" && from !== "raw") {
    const [a, b] = await Promise.all([
      Deno.realPath(input).catch(() => input),
      Deno.realPath(output).catch(() => output),
    ]);
    if (a === b) throw new ConvertError(`Cannot convert: the output ${output} is the input`);
  }
  const warnings: string[] = [];
  let total: number | undefined;
  if (from === "raw") {
    total = 0;
    for (const s of options.rawRegions ?? []) {
      total += (await Deno.stat(s.path).catch(() => ({ size: 0 }))).size;
    }
  } else if (input !== "-") {
    total = (await Deno.stat(input).catch(() => undefined))?.size;
  }
  const progress = createProgress({ label: "convert", total, enabled: options.progress });
  const ctx: ConvertContext = {
    options,
    inputSize: total,
    progress,
    warn(message) {
      warnings.push(message);
      options.warn?.(message);
    },
  };
  let source = await inFormat.open(input, ctx);
  try {
    // Duplicates are dropped in file order only from an .lsnap file (read twice); from a pipe or
    // another format the pages are gathered and leave in address order.
    const twoPass = from === "lsnap" && input !== "-";
    if (options.addressOrder || (options.dropDuplicates && !twoPass)) {
      source = inAddressOrder(source);
    }
    const summary = await outFormat.write(source, output, ctx);
    return {
      from,
      to,
      output,
      bytesIn: progress.bytes,
      bytesOut: summary.bytes,
      pages: summary.pages,
      devices: summary.devices,
      contentDigest: summary.contentDigest === null ? null : toHex(summary.contentDigest),
      digestChecked: summary.digestChecked,
      warnings,
    };
  } finally {
    progress.done();
    source.close();
  }
}
