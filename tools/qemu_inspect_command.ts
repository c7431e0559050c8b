/**
 * `livesnap qemu-inspect`: summarises a QEMU migration stream (sections, RAM blocks, page
 * counts, device fields decoded through the stream's JSON description).
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { QemuStreamError } from "../qemu/errors.ts";
import { formatQemuSummary, inspectQemuStream } from "../qemu/inspect.ts";

const USAGE = `Usage: livesnap qemu-inspect [options] STREAM

Summarises a QEMU migration stream, as QEMU writes it with
  migrate "exec:cat > STREAM"  (or savevm to a file).

Options:
  --json        print the summary as JSON (device fields included)
  --fields      also print each device's fields, decoded through the stream's JSON description
  --page-size N target page size when the stream does not state it (default 4096)
  -h, --help    show this help

Examples:
  livesnap qemu-inspect guest.qemu
  livesnap qemu-inspect --fields guest.qemu
  livesnap qemu-inspect --json guest.qemu | jq '.devices[] | select(.idstr == "cpu")'
  cat guest.qemu | livesnap qemu-inspect -`;

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const flags = parseArgs(args, {
    boolean: ["json", "fields", "help"],
    string: ["page-size"],
    alias: { h: "help" },
    unknown: (a: string) => {
      if (a.startsWith("-") && a !== "-") {
        console.error(`livesnap qemu-inspect: unknown option '${a}'\n\n${USAGE}`);
        return false;
      }
      return true;
    },
  });
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const path = flags._[0];
  if (flags._.length !== 1 || typeof path !== "string") {
    console.error(USAGE);
    return 2;
  }
  const pageSize = flags["page-size"] === undefined ? undefined : Number(flags["page-size"]);
  if (pageSize !== undefined && !(Number.isInteger(pageSize) && pageSize >= 512)) {
    console.error(`livesnap qemu-inspect: --page-size '${flags["page-size"]}' is not a page size`);
    return 2;
  }
  let file: Deno.FsFile | undefined;
  try {
    const input = path === "-" ? Deno.stdin.readable : (file = await Deno.open(path)).readable;
    const summary = await inspectQemuStream(input, { pageSize });
    console.log(
      flags.json
        ? JSON.stringify(summary, null, 2)
        : formatQemuSummary(summary, { fields: flags.fields }),
    );
    return 0;
  } catch (e) {
    if (e instanceof QemuStreamError || e instanceof Deno.errors.NotFound) {
      console.error(`livesnap qemu-inspect: ${(e as Error).message}`);
      return 1;
    }
    throw e;
  } finally {
    try {
      file?.close();
    } catch {
      // the readable closed it
    }
  }
}
