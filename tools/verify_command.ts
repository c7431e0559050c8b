/**
 * `livesnap verify FILE [--json]`: check a snapshot's integrity and completeness.
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { openInput } from "./_input.ts";
import { type VerifyResult, verifySnapshot } from "./verify.ts";

const USAGE = `Usage: livesnap verify FILE [--json]

Reads every byte of a .lsnap snapshot (FILE, or - for standard input) and checks every record's
CRC32C, the file digest, the content digest, the index and that the file is complete.

Options:
  --json   print one JSON object instead of text
  --help   show this help

Examples:
  livesnap verify vm.lsnap
  ssh host cat vm.lsnap | livesnap verify -

Exit status: 0 intact, 1 damaged or incomplete (the message names the record and byte offset),
2 usage or I/O error.`;

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
      `livesnap verify: ${
        unknown.length ? `unknown option ${unknown[0]}` : "expected one FILE"
      }\n\n${USAGE}`,
    );
    return 2;
  }
  let result: VerifyResult;
  try {
    const input = await openInput(files[0]);
    result = await verifySnapshot(input.stream);
  } catch (e) {
    console.error(`livesnap verify: Cannot read '${files[0]}': ${(e as Error).message}`);
    return 2;
  }
  if (flags.json) console.log(JSON.stringify(result, null, 2));
  else if (result.ok) {
    console.log(`${files[0]}: OK (${result.records} records, content ${result.digests.content})`);
  } else console.log(`${files[0]}: FAILED: ${result.error?.message ?? "incomplete"}`);
  return result.ok ? 0 : 1;
}
