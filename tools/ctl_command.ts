/**
 * `livesnap ctl PATH <command> [options]`: the control socket's client.
 *
 * @module
 */

import { parseCommand, UsageError } from "./_command.ts";
import { CONTROL_COMMANDS, type ControlRequest, controlRequest } from "./control.ts";
import {
  parseBandwidth,
  parseCowBuffer,
  parseMigrationMode,
  parseMode,
  parsePrecopyOptions,
  parsePrecopyPasses,
} from "./_live_run.ts";
import { parseHostPort } from "./migrate.ts";

const USAGE = `Usage: livesnap ctl PATH <command> [options]

Talks to a machine started with 'livesnap run ... --control PATH' (JSON lines over a Unix
socket, in the spirit of QEMU's QMP) and prints the reply as JSON.

Commands:
  snapshot --out FILE [--mode cow|precopy|stop] [--cow-buffer SIZE] [--incremental]
                 take a snapshot now; the reply (the snapshot's metrics) comes once the file is
                 complete, while the guest keeps running. --incremental: a diff on the
                 machine's last snapshot (the last one completed, or the file it was restored
                 from): refused if it has none
  migrate HOST:PORT [--mode precopy|postcopy|hybrid] [--downtime-ms MS] [--bandwidth RATE]
                 [--precopy-max-passes N] [--precopy-passes N] [--resume]
                 migrate the guest live to 'livesnap restore --incoming HOST:PORT' (see
                 docs/MIGRATION.md): one JSON line per precopy pass (pages, bytes, bandwidth,
                 dirty rate, dirty/transfer ratio, estimated downtime), then the migration's
                 metrics (downtimeMs, totalMs, bytesSent, passes, postcopyFaults,
                 faultLatencyUs) once the destination runs the guest; this machine then stops.
                 --bandwidth caps the bytes per second sent (e.g. 32M). postcopy: the guest
                 stops at once and runs at the destination, which fetches its pages as it
                 needs them while the rest follow. hybrid: --precopy-passes N passes (default
                 1) while it runs, then postcopy. If a precopy fails, the guest runs on here;
                 if a postcopy loses its connection, the guest stays stopped here with its
                 state and the reply is an error: --resume (to the same or a new destination,
                 'restore --incoming HOST:PORT --resume') finishes it
  pause          stop the guest between two instructions
  resume         let it run on
  status         running, paused or halted, and the instructions retired
  digest         the content digest of the machine's state now
  quit           finish a snapshot being written, then stop the machine

Exit status: 0 for a reply, 1 for an error reply or no connection.

Examples:
  livesnap run emulator/guests/build/memstress.elf --control /tmp/vm.sock &
  livesnap ctl /tmp/vm.sock snapshot --out /tmp/vm.lsnap --cow-buffer 0
  livesnap ctl /tmp/vm.sock snapshot --out /tmp/vm-1.lsnap --incremental   # a diff on vm.lsnap
  livesnap restore --incoming 127.0.0.1:7000 --digest &     # the destination
  livesnap ctl /tmp/vm.sock migrate 127.0.0.1:7000 --downtime-ms 30 --bandwidth 64M
  livesnap ctl /tmp/vm.sock migrate 127.0.0.1:7000 --mode postcopy
  livesnap ctl /tmp/vm.sock migrate 127.0.0.1:7000 --resume     # after a lost connection
  livesnap ctl /tmp/vm.sock status
  livesnap ctl /tmp/vm.sock quit`;

/** Entry point: returns the process exit status. */
export async function main(args: string[]): Promise<number> {
  const command = parseCommand(args, {
    name: "livesnap ctl",
    usage: USAGE,
    string: [
      "out",
      "mode",
      "cow-buffer",
      "downtime-ms",
      "bandwidth",
      "precopy-max-passes",
      "precopy-passes",
    ],
    boolean: ["incremental", "resume"],
  });
  if (typeof command === "number") return command;
  const { options: opts, positional, usageError } = command;
  const [path, name, ...rest] = positional;
  if (path === undefined || name === undefined || rest.length > (name === "migrate" ? 1 : 0)) {
    return usageError("expected a socket path and one command");
  }
  if (!(CONTROL_COMMANDS as readonly string[]).includes(name)) {
    return usageError(`unknown command '${name}' (known: ${CONTROL_COMMANDS.join(", ")})`);
  }
  const req: ControlRequest = { execute: name };
  try {
    if (name === "snapshot") {
      if (opts.out === undefined) throw new UsageError("snapshot needs --out FILE");
      req.arguments = {
        // The server resolves a relative name against its own directory; send an absolute one.
        path: opts.out.startsWith("/") ? opts.out : `${Deno.cwd()}/${opts.out}`,
        mode: parseMode(opts.mode ?? "cow"),
        cowBuffer: parseCowBuffer(opts["cow-buffer"] ?? "16M"),
        incremental: opts.incremental,
      };
    } else if (name === "migrate") {
      if (rest.length !== 1) throw new UsageError("migrate needs HOST:PORT");
      let target;
      try {
        target = parseHostPort(rest[0], "migrate");
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      const precopy = parsePrecopyOptions(opts["precopy-max-passes"], opts["downtime-ms"]);
      req.arguments = {
        ...target,
        mode: parseMigrationMode(opts.mode ?? "precopy", "--mode"),
        downtimeMs: precopy.downtimeMs,
        maxPasses: precopy.maxPasses,
        bandwidth: opts.bandwidth === undefined ? undefined : parseBandwidth(opts.bandwidth),
        resume: opts.resume,
        precopyPasses: opts["precopy-passes"] === undefined
          ? undefined
          : parsePrecopyPasses(opts["precopy-passes"]),
      };
    } else if (
      opts.out !== undefined || opts.mode !== undefined || opts["cow-buffer"] !== undefined ||
      opts.incremental
    ) {
      throw new UsageError(
        `--out, --mode, --cow-buffer and --incremental belong to the snapshot command`,
      );
    }
  } catch (e) {
    return usageError(e);
  }
  try {
    // migrate's progress events, one JSON line each, before the reply.
    const reply = await controlRequest(path, req, (e) => console.log(JSON.stringify(e)));
    console.log(JSON.stringify(reply, null, 2));
    return "error" in reply ? 1 : 0;
  } catch (e) {
    console.error(`livesnap ctl: Cannot talk to ${path}: ${(e as Error).message}`);
    return 1;
  }
}
