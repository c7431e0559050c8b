/**
 * The input and output formats of `convert` by name: the built-in ones and those added with
 * {@linkcode registerInputFormat} and {@linkcode registerOutputFormat}. The only module that
 * imports the format modules.
 *
 * @module
 */
import { ELF_CORE_OUTPUT } from "./elf_core.ts";
import { LSNAP_INPUT, LSNAP_OUTPUT } from "./lsnap.ts";
import { QEMU_INPUT, QEMU_OUTPUT } from "./qemu.ts";
import { RAW_INPUT, RAW_OUTPUT } from "./raw.ts";
import type { InputFormat, OutputFormat } from "./types.ts";

const INPUTS = new Map<string, InputFormat>([
  ["lsnap", LSNAP_INPUT],
  ["raw", RAW_INPUT],
  ["qemu", QEMU_INPUT],
]);

const OUTPUTS = new Map<string, OutputFormat>([
  ["lsnap", LSNAP_OUTPUT],
  ["raw", RAW_OUTPUT],
  ["elf-core", ELF_CORE_OUTPUT],
  ["qemu", QEMU_OUTPUT],
]);

/**
 * Adds an input format (`--from NAME`), or replaces the one of that name. Returns a function
 * that removes it again (restoring nothing it replaced).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { inputFormats, registerInputFormat } from "./registry.ts";
 * const lsnap = inputFormats().get("lsnap")!;
 * const unregister = registerInputFormat("my-lsnap", { summary: "the same", open: lsnap.open });
 * assert(inputFormats().has("my-lsnap"));
 * unregister();
 * assert(!inputFormats().has("my-lsnap"));
 * ```
 */
export function registerInputFormat(name: string, format: InputFormat): () => void {
  INPUTS.set(name, format);
  return () => {
    if (INPUTS.get(name) === format) INPUTS.delete(name);
  };
}

/**
 * Adds an output format (`--to NAME`), or replaces the one of that name. Returns a function
 * that removes it again.
 */
export function registerOutputFormat(name: string, format: OutputFormat): () => void {
  OUTPUTS.set(name, format);
  return () => {
    if (OUTPUTS.get(name) === format) OUTPUTS.delete(name);
  };
}

/** The input formats by name, as they are now (a copy). */
export function inputFormats(): ReadonlyMap<string, InputFormat> {
  return new Map(INPUTS);
}

/** The output formats by name, as they are now (a copy). */
export function outputFormats(): ReadonlyMap<string, OutputFormat> {
  return new Map(OUTPUTS);
}

/** The name of the first input format that recognises the regular file at `path`, if any. */
export async function recogniseInput(path: string): Promise<string | undefined> {
  for (const [name, format] of INPUTS) {
    if (await format.recognise?.(path)) return name;
  }
  return undefined;
}
