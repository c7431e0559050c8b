/**
 * The prologue every `livesnap` command shares: parse its arguments, answer `--help` (or `-h`)
 * with its usage on standard output, and report a usage error the same way everywhere (the
 * message on standard error, a pointer to `--help`, exit status 2). Option values are parsed by
 * `_args.ts`'s parsers, which throw {@linkcode UsageError}; a command maps errors to exit codes
 * by their class, never by their message.
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";

/** Exit status of a usage error (an unknown option, a bad value, a missing argument). */
export const EXIT_USAGE = 2;

/** A command line that cannot be run as given. Its message is worded for the user. */
export class UsageError extends Error {
  /** Makes the error. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** What a command accepts. */
export interface CommandSpec<B extends string, S extends string, L extends string> {
  /** The command as the user types it, e.g. `livesnap verify`: the prefix of every message. */
  name: string;
  /** What `--help` prints. */
  usage: string;
  /** Flags (`--json`). `--help` and `-h` are always known. */
  boolean?: readonly B[];
  /** Options with one value (`--max-errors N`); given twice, the last one wins. */
  string?: readonly S[];
  /** Repeatable options with a value (`--region A --region B`), collected in order. */
  list?: readonly L[];
  /** Flags that also have a `--no-` form, with their default (`{ index: true }`). */
  negatable?: Partial<Record<B, boolean>>;
}

/** The options of a parsed command line, by name. */
export type CommandOptions<B extends string, S extends string, L extends string> =
  & { readonly [K in B]: boolean }
  & { readonly [K in S]: string | undefined }
  & { readonly [K in L]: string[] };

/** A parsed command line. */
export interface ParsedCommand<B extends string, S extends string, L extends string> {
  options: CommandOptions<B, S, L>;
  /** The arguments that are not options, in order (`-` is one: standard input or output). */
  positional: string[];
  /**
   * Reports a usage error and returns {@linkcode EXIT_USAGE}: a message, or a
   * {@linkcode UsageError} thrown by a value parser. Any other error is thrown on.
   */
  usageError(error: string | unknown): number;
}

/**
 * Parses `args` by `spec`. Returns the exit status when the command is done already (`--help`
 * printed the usage: 0; an unknown option: 2), else the options and the positional arguments.
 * A lone `-` after an option that takes a value is that value (`--input -`).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { parseCommand } from "./_command.ts";
 * const spec = {
 *   name: "livesnap example",
 *   usage: "Usage: livesnap example [--json] [--max N] FILE",
 *   boolean: ["json"],
 *   string: ["max"],
 * } as const;
 * const parsed = parseCommand(["--max", "3", "vm.lsnap", "--json"], spec);
 * if (typeof parsed === "number") throw new Error("not expected");
 * assertEquals(parsed.options.max, "3");
 * assertEquals(parsed.options.json, true);
 * assertEquals(parsed.positional, ["vm.lsnap"]);
 * ```
 */
export function parseCommand<
  B extends string = never,
  S extends string = never,
  L extends string = never,
>(args: readonly string[], spec: CommandSpec<B, S, L>): ParsedCommand<B, S, L> | number {
  const usageError = (error: string | unknown): number => {
    if (typeof error !== "string" && !(error instanceof UsageError)) throw error;
    const message = typeof error === "string" ? error : error.message;
    console.error(`${spec.name}: ${message}\n\nRun '${spec.name} --help' for usage.`);
    return EXIT_USAGE;
  };
  const takesValue = new Set<string>([...spec.string ?? [], ...spec.list ?? []]);
  // parseArgs reads a lone "-" as a positional argument; after an option with a value it is
  // that value.
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      joined.push(...args.slice(i));
      break;
    }
    if (a.startsWith("--") && takesValue.has(a.slice(2)) && args[i + 1] === "-") {
      joined.push(`${a}=-`);
      i++;
    } else joined.push(a);
  }
  let unknown: string | undefined;
  const negatable = Object.keys(spec.negatable ?? {});
  const flags = parseArgs(joined, {
    boolean: [...spec.boolean ?? [], "help"],
    // "_": positional arguments stay strings (a file named 007 is not the number 7).
    string: [...takesValue, "_"],
    collect: [...spec.list ?? []],
    negatable,
    default: { ...spec.negatable },
    alias: { h: "help" },
    unknown: (arg: string) => {
      if (arg.startsWith("-") && arg !== "-") {
        unknown ??= arg;
        return false;
      }
      return true;
    },
  }) as Record<string, unknown> & { _: string[] };
  if (flags.help === true) {
    console.log(spec.usage);
    return 0;
  }
  if (unknown !== undefined) return usageError(`unknown option ${unknown}`);
  const options: Record<string, unknown> = {};
  for (const name of spec.boolean ?? []) options[name] = flags[name] === true;
  for (const name of spec.string ?? []) {
    const v = flags[name];
    // Given twice, parseArgs keeps both only for a collected option; the last one wins.
    options[name] = Array.isArray(v) ? String(v[v.length - 1]) : v === undefined ? v : String(v);
  }
  for (const name of spec.list ?? []) {
    const v = flags[name];
    options[name] = v === undefined ? [] : (Array.isArray(v) ? v : [v]).map(String);
  }
  return {
    options: options as CommandOptions<B, S, L>,
    positional: flags._,
    usageError,
  };
}
