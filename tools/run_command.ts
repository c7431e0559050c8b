/**
 * `livesnap run GUEST.elf [--ram SIZE] [--stop-at N] [--max-instructions N] [--digest] [--input FILE]`
 *
 * @module
 */

import { parseCommand } from "./_command.ts";
import { parseRamSize, runGuest } from "./run.ts";
import { machineContentDigest as machineDigest } from "../emulator/snapshot/machine_state.ts";
import {
  limitStatus,
  LIVE_STRING_OPTIONS,
  parseLiveArgs,
  runLive,
  stdoutSink,
} from "./_live_run.ts";

const USAGE =
  `Usage: livesnap run GUEST.elf [--ram SIZE] [--stop-at N] [--max-instructions N] [--digest]
                    [--input FILE]
                    [--snapshot-at N]... [--snapshot-every N] --out FILE
                    [--mode cow|precopy|stop] [--cow-buffer SIZE] [--metrics FILE]
                    [--precopy-max-passes N] [--downtime-ms MS] [--control PATH]
                    [--incremental]
                    [--migrate-to HOST:PORT --migrate-at N
                     [--migrate-mode precopy|postcopy|hybrid] [--precopy-passes N]
                     [--bandwidth RATE]]

Runs a statically linked RV32IMAC ELF on the bundled machine (laid out like QEMU's riscv32
'virt' board). The guest's UART output goes to stdout. The exit status is the guest's: the
SiFive test device's code, or HTIF's (tohost) code; 0 when --stop-at stopped the run; 124 (as
timeout(1)) when --max-instructions did.

Options:
  --ram SIZE     guest RAM, e.g. 64M or 1G (default 128M)
  --stop-at N    stop after exactly N retired instructions (exit status 0: a run asked for)
  --max-instructions N  a guard for a guest expected to finish by itself: stop once N
                 instructions have retired without it and exit with status 124, so a guest
                 that hangs fails instead of running forever (with --stop-at, the one reached
                 first wins; equal, --stop-at)
  --digest       then print the machine's content digest (the same one a snapshot of this
                 state carries) on a line of its own
  --input FILE   bytes the guest reads from its UART ('-' for stdin); default: none

Live snapshots (the guest runs on its own thread, the snapshot is written on another):
  --snapshot-at N     snapshot after exactly N retired instructions (repeatable)
  --snapshot-every N  snapshot at every multiple of N instructions
  --out FILE          the snapshot file; with several, {n} in the name is replaced by the
                      instruction count (else -N goes before the extension)
  --mode MODE         cow (default): pause only to save CPU and devices and write-protect RAM;
                      precopy: copy while running, resend dirtied pages, pause for the last ones;
                      stop: pause for the whole write
  --cow-buffer SIZE   cow's buffer for old page contents: 0 (a first store waits until its page
                      is written), a size like 16M (default), or max (never stalls the guest)
  --precopy-max-passes N  precopy: passes after the first before the final pause whatever is
                      still dirty (default 20)
  --downtime-ms MS    precopy: pause once the dirty pages can be written in MS at the rate of
                      the last pass (default 50); until then a guest that dirties pages faster
                      than they are sent is throttled (sleeps 20%, 80%, 95%, up to 99% of the
                      time; auto-converge, as QEMU's)
  --incremental       the first snapshot is full, each later one a diff on the one before: only
                      the pages stored to since that one's instant (pages that became zero as
                      explicit zero records) and the whole CPU and device state; its content
                      digest is the whole state's, as a full snapshot's of that instant
  --metrics FILE      each snapshot's metrics as one JSON line
  --control PATH      serve a control socket (JSON lines, like QMP) at PATH; see 'livesnap ctl'

Live migration (docs/MIGRATION.md; the destination is 'livesnap restore --incoming HOST:PORT'):
  --migrate-to HOST:PORT  migrate the guest over TCP once it has retired --migrate-at N
                      instructions (at the first slice boundary from N on): precopy passes while
                      it runs (throttled as above until the rest fits --downtime-ms at the
                      bandwidth measured), then it stops, the destination checks the state's
                      content digest and runs it, and this run ends (exit status 0). One JSON
                      line per pass on stderr (and in --metrics): pass, pages, bytes, bandwidth,
                      dirty rate, dirty/transfer ratio, estimated downtime; then the migration's
                      metrics (downtimeMs, totalMs, bytesSent, passes, ...). If the migration
                      fails the guest runs on as if nothing happened and the exit status is 1
  --migrate-at N      the instruction count to start at
  --migrate-mode MODE precopy (above, the default); postcopy: the guest stops at once and runs
                      at the destination, which fetches each page as the guest needs it while
                      the rest follow (metrics add postcopyFaults and faultLatencyUs {p50,p99}
                      in µs; downtimeMs is from the stop here to the first instruction there);
                      hybrid: --precopy-passes passes while it runs, then postcopy. If a
                      postcopy loses its connection the guest stays stopped here with its state
                      and the run retries (once a second, for 60 s) until the destination, or a
                      new one started with 'restore --incoming HOST:PORT --resume', takes it
  --precopy-passes N  hybrid: precopy passes before the postcopy (default 1)
  --bandwidth RATE    cap the bytes per second sent, e.g. 500K or 32M

Time is deterministic: mtime advances one tick per 10 retired instructions, so a run depends
only on the ELF and its input.

Examples:
  livesnap run emulator/guests/build/hello.elf
  livesnap run emulator/guests/build/counter.elf --stop-at 5000000 --digest
  livesnap run emulator/guests/build/hello.elf --max-instructions 10000000 || echo failed
  livesnap run emulator/guests/build/memstress.elf --snapshot-at 5000000 --out m.lsnap \
      --cow-buffer 0 --metrics m.json
  livesnap run emulator/guests/build/memstress.elf --snapshot-every 10000000 \
      --out 's-{n}.lsnap' --incremental
  livesnap run emulator/guests/build/counter.elf --control /tmp/vm.sock &
  livesnap ctl /tmp/vm.sock snapshot --out /tmp/vm.lsnap
  livesnap restore --incoming 127.0.0.1:7000 --run-for 5000000 --digest &
  livesnap run emulator/guests/build/memstress.elf --migrate-to 127.0.0.1:7000 \
      --migrate-at 20000000 --downtime-ms 50 --bandwidth 64M`;

/** Entry point: returns the process exit status. */
export async function main(args: string[]): Promise<number> {
  const command = parseCommand(args, {
    name: "livesnap run",
    usage: USAGE,
    boolean: ["digest", "incremental"],
    string: ["ram", "input", ...LIVE_STRING_OPTIONS.filter((o) => o !== "snapshot-at")],
    list: ["snapshot-at"],
  });
  if (typeof command === "number") return command;
  const { options: opts, positional: files, usageError } = command;
  if (files.length !== 1) return usageError(`expected one ELF file, got ${files.length}`);
  let ramSize: number | undefined;
  let parsed;
  try {
    if (opts.ram !== undefined) ramSize = parseRamSize(opts.ram);
    parsed = parseLiveArgs(opts);
  } catch (e) {
    return usageError(e);
  }
  const { stopAt, maxInstructions, live } = parsed;
  if (opts.digest && stopAt === undefined && live === null) {
    return usageError("--digest needs --stop-at N (the state after N instructions)");
  }
  let elf: Uint8Array;
  let input: Uint8Array | undefined;
  let reading = files[0];
  try {
    elf = await Deno.readFile(files[0]);
    if (opts.input !== undefined) {
      reading = opts.input === "-" ? "stdin" : opts.input;
      input = opts.input === "-"
        ? new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer())
        : await Deno.readFile(opts.input);
    }
  } catch (e) {
    console.error(`livesnap run: Cannot read ${reading}: ${(e as Error).message}`);
    return 1;
  }
  const { sink, endsLine } = stdoutSink();
  if (live !== null) {
    return await runLive({ ...live, name: "livesnap run", elf, ramSize, input, print: sink });
  }
  let result;
  try {
    result = runGuest({ elf, ramSize, stopAt, maxInstructions, input, sink });
  } catch (e) {
    console.error(`livesnap run: ${(e as Error).message}`);
    return 1;
  }
  const { exit, machine } = result;
  if (opts.digest) {
    let hex: string;
    try {
      hex = await machineDigest(machine);
    } catch (e) {
      console.error(`livesnap run: ${(e as Error).message}`);
      return 1;
    }
    sink(new TextEncoder().encode(`${endsLine() ? "" : "\n"}${hex}\n`));
  }
  if (result.limitReached) return limitStatus("livesnap run", maxInstructions!);
  switch (exit.reason) {
    case "exit":
      return exit.code & 0xff;
    case "budget":
      return 0;
    case "reset":
      console.error("livesnap run: the guest asked for a reset; stopping");
      return 0;
    case "idle":
      console.error(
        `livesnap run: the guest waits (wfi at pc 0x${
          exit.pc.toString(16)
        }) with no interrupt enabled that could wake it`,
      );
      return 1;
    case "lockup":
      console.error(
        `livesnap run: the guest keeps trapping without progress (mcause ${exit.cause}, pc 0x${
          exit.pc.toString(16)
        })`,
      );
      return 1;
    case "paused":
      return 0;
  }
}
