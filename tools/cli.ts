/**
 * The `livesnap` command line: parses the command name and hands the rest of the arguments to
 * that command's module. Nothing imports this file.
 *
 * @module
 */

/** A command's entry point: takes its own arguments, returns the process exit code. */
type CommandMain = (args: string[]) => Promise<number>;

interface CommandEntry {
  summary: string;
  load: () => Promise<{ main: CommandMain }>;
}

// One line per command; each module lives beside this file as `<name>_command.ts`.
const COMMANDS: Record<string, CommandEntry> = {
  restore: {
    summary: "rebuild a machine from a snapshot and continue it",
    load: () => import("./restore_command.ts"),
  },
  ctl: {
    summary: "send a command to a running machine's control socket",
    load: () => import("./ctl_command.ts"),
  },
  diff: {
    summary: "compare two snapshots: differing pages per region, device fields",
    load: () => import("./diff_command.ts"),
  },
  flatten: {
    summary: "one full snapshot from a chain of diffs, every link checked",
    load: () => import("./flatten_command.ts"),
  },
  inspect: {
    summary: "describe a snapshot or a QEMU migration stream (--json for one JSON object)",
    load: () => import("./inspect_command.ts"),
  },
  convert: {
    summary: "rewrite a snapshot: recompress, reorder, raw images, ELF cores, QEMU streams",
    load: () => import("./convert_command.ts"),
  },
  report: {
    summary: "one HTML page showing what snapshots hold and how they were taken",
    load: () => import("./report_command.ts"),
  },
  verify: {
    summary: "check a snapshot's checksums, digests and completeness",
    load: () => import("./verify_command.ts"),
  },
  run: {
    summary: "run a RISC-V guest ELF on the bundled machine",
    load: () => import("./run_command.ts"),
  },
  "qemu-inspect": {
    summary: "the same as inspect (which recognises QEMU migration streams)",
    load: () => import("./qemu_inspect_command.ts"),
  },
  "qemu-convert": {
    summary: "the same as convert (--from qemu, --to qemu); --codec raw is --compress none",
    load: () => import("./qemu_convert_command.ts"),
  },
};

function usage(): string {
  const names = Object.keys(COMMANDS).sort();
  const width = Math.max(0, ...names.map((n) => n.length));
  const lines = names.map((n) => `  ${n.padEnd(width)}  ${COMMANDS[n].summary}`);
  return [
    "Usage: livesnap <command> [options]",
    "",
    "Commands:",
    ...lines,
    "",
    "Run `livesnap <command> --help` for a command's options and examples.",
  ].join("\n");
}

async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (entry === undefined) {
    console.error(`livesnap: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  const mod = await entry.load();
  return await mod.main(rest);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
