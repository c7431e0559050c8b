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
import { restoreSnapshot, type RestoreSnapshotOptions } from "./restore.ts";
import { DEFAULT_WS_WINDOW } from "../emulator/snapshot/lazy_restore.ts";
import { parseRamSize } from "./run.ts";
import { parseHostPort } from "./migrate.ts";
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
  [--digest] [--verbose] [--parent FILE]... [--lazy [--record-ws] [--ws-window N]
  [--hint FILE|off] [--metrics FILE]]
       livesnap restore --incoming HOST:PORT [--out FILE] [--ram SIZE] [--stop-at N | --run-for N]
                        [--resume] [--resume-timeout MS]
                        [--digest] [--control PATH] [--metrics FILE]
                        [--snapshot-at N]... [--snapshot-every N] --out FILE
                        [--mode cow|precopy|stop] [--cow-buffer SIZE] [--metrics FILE]
                        [--precopy-max-passes N] [--downtime-ms MS] [--control PATH]
                        [--incremental]

Rebuilds the machine a snapshot holds (RAM, hart, devices) and continues it: the guest's UART
output from the snapshot on goes to stdout, exactly what the original run printed after that
instruction. Before anything runs the whole file is checked (every record's checksum,
completeness, and the content digest of the state), and a file whose machine does not fit this
emulator, or whose device state version is unknown, is refused. Older device state versions are
migrated. A complete, indexed local file of 32 MiB or more is loaded by parallel threads, as
many as cores (up to 4), and its content digest recomputed from the restored state; any other
input is read as a stream, which checks its file digest too ('livesnap verify' checks both).

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

Lazy restore (--lazy): the guest starts before its RAM is read. Only the header, footer, trailer,
index and device sections are read first; every page the file holds starts absent, and the
guest's first access to one (instruction fetch, load, store, atomic, a device) reads the record
holding it through the index, checks that record's CRC32C right then, decompresses it, and the
access goes on. A background thread loads the rest meanwhile (a working-set hint's pages first)
and then stops. The guest computes exactly what it computes after an eager restore. Digests are
not checked before the guest runs (each record's CRC is, when it is read: use 'livesnap verify'
for the rest). A record that fails its check when the guest needs it stops the guest before the
access and the command exits 1 naming the page, the record and its byte offset. FILE must be a
complete .lsnap in a regular file or at an http(s) URL (not a pipe, not a QEMU stream or a file
converted from one). --lazy does not combine with the snapshot options or --control yet (the
live engine restores eagerly): it says so.

With --incoming, the machine comes from a live migration instead of a file: it waits for one
source ('livesnap ctl PATH migrate HOST:PORT' or 'livesnap run ... --migrate-to HOST:PORT'),
refuses a machine it cannot run before any page moves (the reason goes back to the source),
restores the guest from the stream as it arrives, checks the state against the content digest
the source sends at the switch-over, and runs the guest once the source has let go of it. A
second migration arriving meanwhile is refused. If the connection drops or anything fails,
everything received is discarded and the source's guest runs on. A postcopy or hybrid source
hands the guest over first: it runs here at once and each page comes as the guest needs it (the
rest follow); the content digest is checked once every page is in, and a mismatch stops the guest
(exit status 4). If that connection drops, the guest is paused with the pages it has and this
side waits (--resume-timeout) for the source to resume. Protocol: docs/MIGRATION.md.

Options:
  --lazy          restore lazily (above)
  --record-ws     with --lazy: record the pages the guest touches in its first --ws-window
                  instructions, in first-touch order, to FILE.ws (a sidecar carrying its own
                  CRC and FILE's file digest); later lazy restores of FILE prefetch them first
  --ws-window N   the window of --record-ws, in instructions after the restore point
                  (default 10000000)
  --hint FILE|off with --lazy: the working-set hint to prefetch first (default FILE.ws when it
                  exists); a hint recorded for another file, or damaged, is ignored with a note
  --warm-up       with --lazy: before the clock starts, warm the process up in full by restoring
                  a small snapshot it writes itself three times (reads nothing of FILE; the
                  process as a whole takes longer, so it pays where a process is started ahead).
                  Without it, --lazy warms up lightly (one restore of a smaller one: what a cold
                  restore would pay for anyway, so the whole process takes about as long)
  --cold          with --lazy: no warm-up at all
  --metrics FILE  with --lazy: write one JSON object: firstInstructionUs, demandFaults,
                  prefetchedPages, prefetchHits, bytesRead, faultLatencyUs {p50,p99,max},
                  loaderDoneMs and more (see emulator/snapshot/README.md)
  --incoming HOST:PORT  wait for a live migration on this address (port 0: any free port; the
                  address is printed on stderr)
  --out FILE      with --incoming: also keep what arrived as an .lsnap file (the same bytes a
                  snapshot file holds; written only if the migration succeeds)
  --ram SIZE      with --incoming: refuse a guest whose RAM is not SIZE (like a QEMU
                  destination started with another -m)
  --resume        with --incoming: take a source that resumes an interrupted postcopy whose
                  first destination died ('ctl PATH migrate HOST:PORT --resume'): every page is
                  fetched again from the source's stopped state
  --resume-timeout MS  with --incoming: after a postcopy's connection drops, wait at most MS
                  for the source to resume it (default 60000), then stop with exit status 6
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
is damaged or does not fit. A failed incoming migration: 3 refused (incompatible, or busy),
4 the state did not match the source's digest or did not verify, 5 bytes that break the
protocol, 6 a wait ran out, 7 the connection dropped.

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
  livesnap restore c.lsnap --snapshot-at 3000000 --out d.lsnap --incremental   # d: a diff on c

  livesnap restore c.lsnap --lazy --record-ws --run-for 1000000       # writes c.lsnap.ws
  livesnap restore c.lsnap --lazy --run-for 1000000 --metrics m.json  # prefetches c.lsnap.ws first
  livesnap restore --incoming 127.0.0.1:7000 --out arrived.lsnap --stop-at 90000000 --digest &
  livesnap run emulator/guests/build/memstress.elf --migrate-to 127.0.0.1:7000 --migrate-at 20000000`;

/** Entry point: returns the process exit status. */
export async function main(args: string[]): Promise<number> {
  const command = parseCommand(args, {
    name: "livesnap restore",
    usage: USAGE,
    boolean: [
      "digest",
      "verbose",
      "lazy",
      "record-ws",
      "incremental",
      "resume",
      "warm-up",
      "cold",
    ],
    string: [
      ...LIVE_STRING_OPTIONS.filter((o) => o !== "snapshot-at"),
      "run-for",
      "ws-window",
      "hint",
      "incoming",
      "ram",
      "resume-timeout",
    ],
    list: ["snapshot-at", "parent"],
  });
  if (typeof command === "number") return command;
  const { options: opts, positional: files, usageError } = command;
  if (opts.incoming !== undefined) {
    if (opts.lazy) return usageError("--lazy does not combine with --incoming");
    return await incoming(opts, files, usageError);
  }
  if (opts.ram !== undefined) return usageError("--ram belongs to --incoming");
  if (opts.resume || opts["resume-timeout"] !== undefined) {
    return usageError("--resume and --resume-timeout belong to --incoming");
  }
  if (files.length !== 1) return usageError(`expected one snapshot file, got ${files.length}`);
  let parsed;
  let runFor: number | undefined;
  let lazy: RestoreSnapshotOptions["lazy"];
  let lazyMetrics: string | undefined;
  try {
    const {
      "run-for": runForText,
      lazy: lazyFlag,
      "record-ws": recordWs,
      "warm-up": warmUp,
      cold,
      "ws-window": windowText,
      hint,
      parent: _parents,
      incoming: _i,
      ram: _r,
      ...liveOpts
    } = opts;
    if (!lazyFlag) {
      for (
        const [name, v] of [
          ["--record-ws", recordWs],
          ["--warm-up", warmUp],
          ["--cold", cold],
          ["--ws-window", windowText],
          ["--hint", hint],
        ]
      ) {
        if (v !== undefined && v !== false) throw new UsageError(`${name} needs --lazy`);
      }
    } else {
      if (windowText !== undefined && !recordWs) {
        throw new UsageError("--ws-window needs --record-ws");
      }
      if (warmUp && cold) throw new UsageError("--warm-up and --cold exclude each other");
      const window = windowText === undefined
        ? DEFAULT_WS_WINDOW
        : parseCount(windowText, "--ws-window", { what: "an instruction count" });
      lazy = {
        recordWs: recordWs ? { window } : null,
        hint: hint ?? "auto",
        warm: warmUp ? true : cold ? false : "light",
        onNote: (text) => console.error(`livesnap restore: ${text}`),
      };
      // --metrics belongs to the restore when nothing else asks for live mode.
      const live = liveOpts["snapshot-at"].length > 0 || liveOpts["snapshot-every"] !== undefined ||
        liveOpts.control !== undefined;
      if (live) {
        // The live engine's guest thread restores eagerly: refused rather than half done.
        throw new UsageError(
          "Cannot restore lazily with --snapshot-at, --snapshot-every or --control: a live restore loads the whole file first (restore without --lazy)",
        );
      }
      lazyMetrics = liveOpts.metrics;
      delete (liveOpts as { metrics?: string }).metrics;
    }
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
  const fail = (e: unknown): number => {
    const err = e as Error;
    const kind =
      err instanceof LsnapError || err instanceof SnapshotMismatchError || err instanceof ChainError
        ? ""
        : err instanceof Deno.errors.NotFound
        ? "Cannot open snapshot: "
        : "";
    console.error(`livesnap restore: ${kind}${err.message}`);
    return 1;
  };
  try {
    result = await restoreSnapshot({
      path: files[0],
      stopAt,
      runFor,
      maxInstructions,
      sink,
      parents: opts.parent,
      lazy,
      onRestored: opts.verbose
        ? (notes) => notes.forEach((n) => console.error(`livesnap restore: ${n.field}: ${n.note}`))
        : undefined,
    });
  } catch (e) {
    return fail(e);
  }
  if (opts.verbose && result.chain.length > 1) {
    console.error(`livesnap restore: chain of ${result.chain.length}: ${result.chain.join(" → ")}`);
  }
  try {
    if (opts.digest) {
      const hex = await machineDigest(result.machine);
      sink(new TextEncoder().encode(`${endsLine() ? "" : "\n"}${hex}\n`));
    }
    if (result.pager !== undefined) {
      const metrics = result.pager.metrics();
      const note = await result.pager.finish();
      if (note !== null) console.error(`livesnap restore: ${note}`);
      if (lazyMetrics !== undefined) {
        await Deno.writeTextFile(lazyMetrics, JSON.stringify(metrics) + "\n");
      }
    }
  } catch (e) {
    await result.pager?.finish().catch(() => {});
    return fail(e);
  }
  if (result.limitReached) return limitStatus("livesnap restore", maxInstructions!);
  return haltStatus(
    "livesnap restore",
    result.exit.reason === "budget" ? { reason: "stop-at" } : result.exit,
  );
}

/** `restore --incoming HOST:PORT`: the machine comes from a live migration. */
async function incoming(
  opts: Record<string, string | string[] | boolean | undefined>,
  files: string[],
  usageError: (e: unknown) => number,
): Promise<number> {
  let live;
  let target;
  let ramSize: number | undefined;
  const {
    incoming: at,
    out,
    ram,
    "run-for": runFor,
    resume,
    "resume-timeout": resumeTimeout,
    ...rest
  } = opts;
  let resumeTimeoutMs: number | undefined;
  try {
    if (files.length > 0) throw new UsageError("give a snapshot FILE or --incoming, not both");
    if (rest["snapshot-at"] !== undefined && (rest["snapshot-at"] as string[]).length > 0) {
      throw new UsageError(
        "--snapshot-at is not available with --incoming (--out names the received file); " +
          "snapshot the migrated guest with --control and 'livesnap ctl PATH snapshot'",
      );
    }
    if (rest["snapshot-every"] !== undefined) {
      throw new UsageError("--snapshot-every is not available with --incoming");
    }
    try {
      target = parseHostPort(at as string, "--incoming");
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    if (ram !== undefined) ramSize = parseRamSize(ram as string);
    if (resumeTimeout !== undefined) {
      resumeTimeoutMs = parseCount(resumeTimeout as string, "--resume-timeout", {
        what: "a time in milliseconds",
      });
    }
    live = parseLiveArgs(rest as Parameters<typeof parseLiveArgs>[0], true).live!;
    if (runFor !== undefined) {
      if (live.stopAt !== undefined) {
        throw new UsageError("Cannot restore: give --stop-at or --run-for, not both");
      }
      live.runFor = parseCount(runFor as string, "--run-for", { what: "an instruction count" });
    }
  } catch (e) {
    return usageError(e);
  }
  const { sink } = stdoutSink();
  try {
    return await runLive({
      ...live,
      verbose: opts.verbose as boolean | undefined,
      name: "livesnap restore",
      incoming: {
        ...target,
        out: out as string | undefined,
        ramSize,
        resume: resume as boolean | undefined,
        resumeTimeoutMs,
      },
      print: sink,
    });
  } catch (e) {
    console.error(`livesnap restore: ${(e as Error).message}`);
    return 2;
  }
}
