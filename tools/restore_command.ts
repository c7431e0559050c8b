/**
 * `livesnap restore FILE [--stop-at N | --run-for N] [--max-instructions N] [--digest] [--verbose] [snapshot options]`
 *
 * @module
 */

import { parseCommand, UsageError } from "./_command.ts";
import { parseCount } from "./_args.ts";
import { LsnapError } from "../format/errors.ts";
import { ChainError } from "../format/chain.ts";
import { SnapshotMismatchError } from "../emulator/snapshot/machine_state.ts";
import { restoreSnapshot } from "./restore.ts";
import { isHttpUrl } from "../format/open_source.ts";
import { machineContentDigest as machineDigest } from "../emulator/snapshot/machine_state.ts";
import {
  haltStatus,
  limitStatus,
  LIVE_STRING_OPTIONS,
  parseLiveArgs,
  runLive,
  stdoutSink,
} from "./_live_run.ts";

const USAGE = `Usage: livesnap restore FILE [--stop-at N | --run-for N] [--max-instructions N]
  [--digest] [--verbose] [--parent FILE]...
                        [--snapshot-at N]... [--snapshot-every N] --out FILE
                        [--mode cow|precopy|stop] [--cow-buffer SIZE] [--metrics FILE]
                        [--precopy-max-passes N] [--downtime-ms MS] [--control PATH]
                        [--incremental]

Rebuilds the machine a snapshot holds (RAM, hart, devices) and continues it: the guest's UART
output from the snapshot on goes to stdout, exactly what the original run printed after that
instruction. Before anything runs the whole file is checked (checksums, digests, completeness),
and a file whose machine does not fit this emulator, or whose device state version is unknown,
is refused. Older device state versions are migrated.

FILE may be a path, - (standard input) or an http:// or https:// URL, read with HTTP Range
requests a few in flight (an S3-compatible object store, or any server that honours Range; a
presigned URL works). Continuing it live (--out and the snapshot options) needs a local path.

FILE may be a diff (a snapshot of the changes since a parent, written with --incremental): its
parents are found by the names it records, beside it, or among the --parent files (matched by
their file digest, whatever their name). Every link of the chain is checked (each parent's file
and content digest as the child records them, one machine, one chain, no cycle) and every file
is read and its digests proved before the guest runs; a missing or swapped parent is refused
with a message naming the link.

FILE may also be a QEMU 7.2 migration stream of qemu-system-riscv32's 'virt' board (QEMU's
'migrate "exec:cat > FILE"'), or an .lsnap converted from one: every field of QEMU's hart,
timer, PLIC, UART and RAM blocks is mapped to this machine, and a field it cannot honour (an
extension's state in use, supervisor mode, a device it lacks) is refused by name before the
guest runs. QEMU records no instruction count: the count starts at 0 at the restore point.

Options:
  --stop-at N     stop once N instructions have retired, counted like 'run --stop-at' from the
                  guest's reset (from the restore point for a QEMU snapshot; see 'livesnap
                  inspect'); N is at least the snapshot's own instruction count
  --run-for N     stop once N instructions have retired after the restore point (any snapshot)
  --max-instructions N  a guard, counted from reset like --stop-at: stop once N instructions
                  have retired without the guest finishing, exit status 124
  --digest        then print the machine's content digest (compare with 'run --stop-at N --digest')
  --verbose       list on stderr what a QEMU snapshot held that this machine ignores or
                  approximates, field by field, and the files of a diff's chain
  --parent FILE   a diff's parent file (repeatable), for parents renamed or kept elsewhere
  The snapshot options are those of 'livesnap run' (see 'livesnap run --help'); --snapshot-at
  counts like --stop-at. With --incremental the first snapshot is a diff on FILE (every page is
  clean against FILE at the restore), each later one a diff on the one before.

Exit status: the guest's, as for 'run' (124 when --max-instructions stopped it); 1 if the file
is damaged or does not fit.

Examples:
  livesnap run emulator/guests/build/counter.elf --snapshot-at 2000000 --out c.lsnap --stop-at 2000000
  livesnap restore c.lsnap --stop-at 5000000 --digest
  livesnap restore https://bucket.example.com/snaps/c.lsnap --run-for 1000000
  livesnap restore s-3.lsnap --stop-at 9000000 --digest      # a diff: s-2, s-1, s-0 beside it
  livesnap restore s-3.lsnap --parent /archive/s-0.lsnap --run-for 1000000
  livesnap run emulator/guests/build/counter.elf --stop-at 5000000 --digest   # the same digest
  (qemu) migrate "exec:cat > guest.qemu"          # in QEMU's monitor
  livesnap restore guest.qemu --run-for 1000000 --verbose
  livesnap restore guest.qemu --snapshot-at 0 --stop-at 0 --out guest.lsnap   # into .lsnap
  livesnap restore c.lsnap --snapshot-at 3000000 --out d.lsnap --incremental   # d: a diff on c`;

/** Entry point: returns the process exit status. */
export async function main(args: string[]): Promise<number> {
  const command = parseCommand(args, {
    name: "livesnap restore",
    usage: USAGE,
    boolean: ["digest", "verbose", "incremental"],
    string: [...LIVE_STRING_OPTIONS.filter((o) => o !== "snapshot-at"), "run-for"],
    list: ["snapshot-at", "parent"],
  });
  if (typeof command === "number") return command;
  const { options: opts, positional: files, usageError } = command;
  if (files.length !== 1) return usageError(`expected one snapshot file, got ${files.length}`);
  let parsed;
  let runFor: number | undefined;
  try {
    const { "run-for": runForText, parent: _parents, ...liveOpts } = opts;
    parsed = parseLiveArgs(liveOpts);
    if (runForText !== undefined) {
      runFor = parseCount(runForText, "--run-for", { what: "an instruction count" });
      if (parsed.stopAt !== undefined) {
        throw new UsageError("Cannot restore: give --stop-at or --run-for, not both");
      }
      if (parsed.live !== null) parsed.live.runFor = runFor;
    }
  } catch (e) {
    return usageError(e);
  }
  const { stopAt, maxInstructions } = parsed;
  const { sink, endsLine } = stdoutSink();
  if (parsed.live !== null) {
    if (isHttpUrl(files[0]) || files[0] === "-") {
      return usageError(
        `Cannot restore ${files[0]} with snapshot options: a live restore reads a local file; ` +
          "download it first, or restore it without --out",
      );
    }
    try {
      return await runLive({
        ...parsed.live,
        verbose: opts.verbose,
        name: "livesnap restore",
        restorePath: files[0],
        restoreParents: opts.parent,
        print: sink,
      });
    } catch (e) {
      console.error(`livesnap restore: ${(e as Error).message}`);
      return 2;
    }
  }
  let result;
  try {
    result = await restoreSnapshot({
      path: files[0],
      stopAt,
      runFor,
      maxInstructions,
      sink,
      parents: opts.parent,
      onRestored: opts.verbose
        ? (notes) => notes.forEach((n) => console.error(`livesnap restore: ${n.field}: ${n.note}`))
        : undefined,
    });
  } catch (e) {
    const err = e as Error;
    const kind =
      err instanceof LsnapError || err instanceof SnapshotMismatchError || err instanceof ChainError
        ? ""
        : err instanceof Deno.errors.NotFound
        ? "Cannot open snapshot: "
        : "";
    console.error(`livesnap restore: ${kind}${err.message}`);
    return 1;
  }
  if (opts.verbose && result.chain.length > 1) {
    console.error(`livesnap restore: chain of ${result.chain.length}: ${result.chain.join(" → ")}`);
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
