/**
 * `livesnap inspect FILE [--json]`: describe a snapshot.
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { openInput } from "./_input.ts";
import { type InspectResult, inspectSnapshot } from "./inspect.ts";

const USAGE = `Usage: livesnap inspect FILE [--json]

Reads a .lsnap snapshot (FILE, or - for standard input) and describes it: format version,
completeness, memory regions, page and device counts, digests.

Options:
  --json   print one JSON object instead of text
  --help   show this help

Examples:
  livesnap inspect vm.lsnap
  cat vm.lsnap | livesnap inspect - --json

Exit status: 0 for a complete file, 1 for a damaged or incomplete one, 2 for usage or I/O errors.`;

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function text(r: InspectResult): string {
  const lines = [
    `format     ${r.formatVersion ?? "?"}${r.complete ? "" : "  (INCOMPLETE OR DAMAGED)"}`,
    `creator    ${r.creator ?? "?"}`,
    `created    ${r.createdAt ?? "?"}`,
    `regions    ${r.regions.length}`,
    ...r.regions.map((x) =>
      `  ${x.name.padEnd(10)} base ${hex(x.base)}  size ${x.size} (${
        x.size / x.pageSize
      } pages of ${x.pageSize})`
    ),
    `pages      ${r.pages.present} present, ${r.pages.zero} zero, ${r.pages.duplicates} duplicates, in ${r.pages.records} records (zero ${r.pages.encodings.zero}, raw ${r.pages.encodings.raw}, zstd ${r.pages.encodings.zstd})`,
    `devices    ${r.devices.length}`,
    ...r.devices.map((d) => `  ${d.id}#${d.instance} v${d.version} ${d.encoding} ${d.bytes} bytes`),
    `index      ${r.indexed ? "yes" : "no"}`,
    `records    ${r.records}${r.extensions ? ` (${r.extensions} unknown optional skipped)` : ""}`,
    `content    ${r.digests.content ?? "-"}`,
    `file       ${r.digests.file ?? "-"}`,
  ];
  if (r.error) lines.push(`error      ${r.error.message}`);
  return lines.join("\n");
}

/** Entry point; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  const flags = parseArgs(args, { boolean: ["json", "help"] });
  const unknown = args.filter((a) => a.startsWith("--") && !["--json", "--help"].includes(a));
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const files = flags._.map(String);
  if (unknown.length > 0 || files.length !== 1) {
    console.error(
      `livesnap inspect: ${
        unknown.length ? `unknown option ${unknown[0]}` : "expected one FILE"
      }\n\n${USAGE}`,
    );
    return 2;
  }
  let result: InspectResult;
  try {
    const input = await openInput(files[0]);
    result = await inspectSnapshot(input.stream);
  } catch (e) {
    console.error(`livesnap inspect: Cannot read '${files[0]}': ${(e as Error).message}`);
    return 2;
  }
  console.log(flags.json ? JSON.stringify(result, null, 2) : text(result));
  return result.complete ? 0 : 1;
}
