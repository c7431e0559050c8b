/**
 * `livesnap restore FILE [--stop-at N] [--max-instructions N] [--digest] [snapshot options]`
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse_args.js";
import { LsnapError } from "../format/errors.ts";
import { SnapshotMismatchError } from "../emulator/snapshot/machine_state.ts";
import { restoreSnapshot } from "./restore.ts";
import { machineContentDigest as machineDigest } from "../emulator/snapshot/machine_state.ts";
import {
  haltStatus,
  limitStatus,
  LIVE_STRING_OPTIONS,
  parseLiveArgs,
  runLive,
  stdoutSink,
} from "./_live_run.ts";

const USAGE = `Usage: livesnap restore FILE [--stop-at N] [--max-instructions N] [--digest]
                        [--snapshot-at N]... [--snapshot-every N] --out FILE
                        [--mode cow|precopy|stop] [--cow-buffer SIZE] [--metrics FILE]
                        [--precopy-max-passes N] [--downtime-ms MS] [--control PATH]

Rebuilds the machine a snapshot holds (RAM, hart, devices) and continues it: the guest's UART
output from the snapshot on goes to stdout, exactly what the original run printed after that
instruction. Before anything runs the whole file is checked (checksums, digests, completeness),
and a file whose machine does not fit this emulator, or whose device state version is unknown,
is refused. Older device state versions are migrated.

Options:
  --stop-at N     stop once N instructions have retired, counted from reset like 'run --stop-at'
                  (N is at least the snapshot's own instruction count)
  --max-instructions N  a guard, counted from reset like --stop-at: stop once N instructions
                  have retired without the guest finishing, exit status 124
  --digest        then print the machine's content digest (compare with 'run --stop-at N --digest')
  The snapshot options are those of 'livesnap run' (see 'livesnap run --help').

Exit status: the guest's, as for 'run' (124 when --max-instructions stopped it); 1 if the file
is damaged or does not fit.

Examples:
  livesnap run emulator/guests/build/counter.elf --snapshot-at 2000000 --out c.lsnap --stop-at 2000000
  livesnap restore c.lsnap --stop-at 5000000 --digest
  livesnap run emulator/guests/build/counter.elf --stop-at 5000000 --digest   # the same digest`;

/** Entry point: returns the process exit status. */
export async function main(args: string[]): Promise<number> {
  let unknown: string | null = null;
  const opts = parseArgs(args, {
    string: [...LIVE_STRING_OPTIONS],
    collect: ["snapshot-at"],
    boolean: ["digest", "help"],
    alias: { h: "help" },
    unknown: (a: string) => {
      if (a.startsWith("-") && a !== "-") {
        unknown ??= a;
        return false;
      }
      return true;
    },
  });
  if (unknown !== null) {
    console.error(`livesnap restore: unknown option ${unknown}\n\n${USAGE}`);
    return 2;
  }
  if (opts.help) {
    console.log(USAGE);
    return 0;
  }
  const files = opts._.map(String);
  if (files.length !== 1) {
    console.error(`livesnap restore: expected one snapshot file, got ${files.length}\n\n${USAGE}`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseLiveArgs(opts);
  } catch (e) {
    console.error(`livesnap restore: ${(e as Error).message}`);
    return 2;
  }
  const { stopAt, maxInstructions } = parsed;
  const { sink, endsLine } = stdoutSink();
  if (parsed.live !== null) {
    try {
      return await runLive({
        ...parsed.live,
        name: "livesnap restore",
        restorePath: files[0],
        print: sink,
      });
    } catch (e) {
      console.error(`livesnap restore: ${(e as Error).message}`);
      return 2;
    }
  }
  let result;
  try {
    result = await restoreSnapshot({ path: files[0], stopAt, maxInstructions, sink });
  } catch (e) {
    const err = e as Error;
    const kind = err instanceof LsnapError || err instanceof SnapshotMismatchError
      ? ""
      : err instanceof Deno.errors.NotFound
      ? "Cannot open snapshot: "
      : "";
    console.error(`livesnap restore: ${kind}${err.message}`);
    return 1;
  }
  if (opts.digest) {
    const hex = await machineDigest(result.machine);
    sink(new TextEncoder().encode(`${endsLine() ? "" : "\n"}${hex}\n`));
  }
  if (result.limitReached) return limitStatus("livesnap restore", maxInstructions!);
  return haltStatus(
    "livesnap restore",
    result.exit.reason === "budget" ? { reason: "stop-at" } : result.exit,
  );
}
