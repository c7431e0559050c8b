/**
 * The input and output formats of `convert` by name: the built-in ones and those added with
 * {@linkcode registerInputFormat} and {@linkcode registerOutputFormat}. The only module that
 * imports the format modules, and it loads each one only when a conversion uses it: `convert
 * --from raw` never loads the QEMU stream code, `convert --help` no format at all.
 *
 * @module
 */
import type { InputFormat, OutputFormat } from "./types.ts";

const INPUTS = new Map<string, InputFormat>([
  ["lsnap", {
    summary: "a livesnap .lsnap file (default)",
    open: async (input, ctx) => (await import("./lsnap.ts")).openLsnap(input, ctx),
  }],
  ["raw", {
    summary: "flat memory images, one per --region NAME:BASE:FILE",
    open: async (input, ctx) => (await import("./raw.ts")).openRaw(input, ctx),
  }],
  ["qemu", {
    summary: "a QEMU migration stream (recognised without --from); one region per RAM block",
    open: async (input, ctx) => (await import("./qemu.ts")).openQemu(input, ctx),
    recognise: async (path) => (await import("./_qemu_magic.ts")).isQemuFile(path),
  }],
]);

const OUTPUTS = new Map<string, OutputFormat>([
  ["lsnap", {
    summary: "a livesnap .lsnap file (default)",
    keepsState: true,
    write: async (source, output, ctx) =>
      (await import("./lsnap.ts")).writeLsnap(source, output, ctx),
  }],
  ["raw", {
    summary: "one region as a flat image (--region NAME)",
    keepsState: false,
    write: async (source, output, ctx) =>
      (await import("./raw.ts")).writeRawImage(source, output, ctx),
  }],
  ["elf-core", {
    summary: "an ELF core file for gdb: one PT_LOAD per region, registers in a note",
    keepsState: false,
    write: async (source, output, ctx) =>
      (await import("./elf_core.ts")).writeElfCore(source, output, ctx),
  }],
  ["qemu", {
    summary:
      "a QEMU migration stream: of QEMU's riscv32 virt board for livesnap's own snapshots, or as it was for a snapshot converted from one",
    keepsState: true,
    write: async (source, output, ctx) =>
      (await import("./qemu.ts")).writeQemu(source, output, ctx),
  }],
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
