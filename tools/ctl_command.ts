/**
 * `livesnap ctl PATH <command> [options]`: the control socket's client.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse_args.js";
import { CONTROL_COMMANDS, type ControlRequest, controlRequest } from "./control.ts";
import { parseCowBuffer, parseMode } from "./_live_run.ts";

const USAGE = `Usage: livesnap ctl PATH <command> [options]

Talks to a machine started with 'livesnap run ... --control PATH' (JSON lines over a Unix
socket, in the spirit of QEMU's QMP) and prints the reply as JSON.

Commands:
  snapshot --out FILE [--mode cow|precopy|stop] [--cow-buffer SIZE]
                 take a snapshot now; the reply (the snapshot's metrics) comes once the file is
                 complete, while the guest keeps running
  pause          stop the guest between two instructions
  resume         let it run on
  status         running, paused or halted, and the instructions retired
  digest         the content digest of the machine's state now
  quit           finish a snapshot being written, then stop the machine

Exit status: 0 for a reply, 1 for an error reply or no connection.

Examples:
  livesnap run emulator/guests/build/memstress.elf --control /tmp/vm.sock &
  livesnap ctl /tmp/vm.sock snapshot --out /tmp/vm.lsnap --cow-buffer 0
  livesnap ctl /tmp/vm.sock status
  livesnap ctl /tmp/vm.sock quit`;

/** Entry point: returns the process exit status. */
export async function main(args: string[]): Promise<number> {
  let unknown: string | null = null;
  const opts = parseArgs(args, {
    string: ["out", "mode", "cow-buffer"],
    boolean: ["help"],
    alias: { h: "help" },
    unknown: (a: string) => {
      if (a.startsWith("-")) {
        unknown ??= a;
        return false;
      }
      return true;
    },
  });
  if (opts.help) {
    console.log(USAGE);
    return 0;
  }
  if (unknown !== null) {
    console.error(`livesnap ctl: unknown option ${unknown}\n\n${USAGE}`);
    return 2;
  }
  const [path, command, ...rest] = opts._.map(String);
  if (path === undefined || command === undefined || rest.length > 0) {
    console.error(`livesnap ctl: expected a socket path and one command\n\n${USAGE}`);
    return 2;
  }
  if (!(CONTROL_COMMANDS as readonly string[]).includes(command)) {
    console.error(
      `livesnap ctl: unknown command '${command}' (known: ${CONTROL_COMMANDS.join(", ")})`,
    );
    return 2;
  }
  const req: ControlRequest = { execute: command };
  try {
    if (command === "snapshot") {
      if (opts.out === undefined) throw new RangeError("snapshot needs --out FILE");
      req.arguments = {
        // The server resolves a relative name against its own directory; send an absolute one.
        path: opts.out.startsWith("/") ? opts.out : `${Deno.cwd()}/${opts.out}`,
        mode: parseMode(opts.mode ?? "cow"),
        cowBuffer: parseCowBuffer(opts["cow-buffer"] ?? "16M"),
      };
    } else if (
      opts.out !== undefined || opts.mode !== undefined || opts["cow-buffer"] !== undefined
    ) {
      throw new RangeError(`--out, --mode and --cow-buffer belong to the snapshot command`);
    }
  } catch (e) {
    console.error(`livesnap ctl: ${(e as Error).message}`);
    return 2;
  }
  try {
    const reply = await controlRequest(path, req);
    console.log(JSON.stringify(reply, null, 2));
    return "error" in reply ? 1 : 0;
  } catch (e) {
    console.error(`livesnap ctl: Cannot talk to ${path}: ${(e as Error).message}`);
    return 1;
  }
}
