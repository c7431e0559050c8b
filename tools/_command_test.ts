import { assertEquals, assertMatch, assertThrows } from "@std/assert/mod.js";
import { parseCount, parseSize } from "./_args.ts";
import { EXIT_USAGE, parseCommand, UsageError } from "./_command.ts";

const SPEC = {
  name: "livesnap example",
  usage: "Usage: livesnap example [options] FILE",
  boolean: ["json", "index"],
  string: ["input", "max"],
  list: ["region"],
  negatable: { index: true },
} as const;

/** Runs `fn` with console.log and console.error captured. */
function captured<T>(fn: () => T): { value: T; out: string; err: string } {
  const { log, error } = console;
  let out = "";
  let err = "";
  console.log = (...a: unknown[]) => out += a.join(" ") + "\n";
  console.error = (...a: unknown[]) => err += a.join(" ") + "\n";
  try {
    return { value: fn(), out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("parseCommand() types options: flags, last value wins, lists, --no- forms", () => {
  const r = parseCommand(
    ["--max", "1", "--region", "a", "a.lsnap", "--max=2", "--region", "b", "--no-index"],
    SPEC,
  );
  if (typeof r === "number") throw new Error(`exit ${r}`);
  assertEquals(r.options.max, "2");
  assertEquals(r.options.region, ["a", "b"]);
  assertEquals([r.options.index, r.options.json], [false, false]);
  assertEquals(r.options.input, undefined);
  assertEquals(r.positional, ["a.lsnap"]);
  const d = parseCommand([], SPEC);
  if (typeof d === "number") throw new Error(`exit ${d}`);
  assertEquals([d.options.index, d.options.region], [true, []]);
});

Deno.test("parseCommand() keeps positional arguments as written and '-' as a value", () => {
  const r = parseCommand(["007", "1e3", "--input", "-", "-"], SPEC);
  if (typeof r === "number") throw new Error(`exit ${r}`);
  assertEquals(r.positional, ["007", "1e3", "-"]);
  assertEquals(r.options.input, "-");
});

Deno.test("parseCommand() prints the usage for --help and -h and exits 0", () => {
  for (const flag of ["--help", "-h"]) {
    const { value, out, err } = captured(() => parseCommand(["x", flag, "--bogus"], SPEC));
    assertEquals(value, 0);
    assertEquals(out, `${SPEC.usage}\n`);
    assertEquals(err, "");
  }
});

Deno.test("parseCommand() refuses an unknown option with exit status 2 and a pointer to --help", () => {
  const { value, out, err } = captured(() => parseCommand(["--frobnicate", "x"], SPEC));
  assertEquals(value, EXIT_USAGE);
  assertEquals(out, "");
  assertEquals(
    err,
    "livesnap example: unknown option --frobnicate\n\nRun 'livesnap example --help' for usage.\n",
  );
});

Deno.test("usageError() reports a UsageError and a message, and throws any other error on", () => {
  const r = parseCommand(["--max", "x"], SPEC);
  if (typeof r === "number") throw new Error(`exit ${r}`);
  const thrown = (() => {
    try {
      return parseCount(r.options.max!, "--max");
    } catch (e) {
      return e;
    }
  })();
  const { value, err } = captured(() => r.usageError(thrown));
  assertEquals(value, 2);
  assertMatch(err, /^livesnap example: Cannot parse --max: 'x' is not a whole number\n/);
  assertEquals(captured(() => r.usageError("expected one FILE")).value, 2);
  assertThrows(() => r.usageError(new TypeError("a bug")), TypeError, "a bug");
});

Deno.test("parseSize() is every command's size: binary units, decimals, zero only when allowed", () => {
  assertEquals(parseSize("4096", "--batch"), 4096);
  assertEquals(parseSize("256K", "--batch"), 256 << 10);
  assertEquals(parseSize("1MiB", "--batch"), 1 << 20);
  assertEquals(parseSize("1.5m", "--batch"), 3 << 19);
  assertEquals(parseSize("2G", "--ram"), 2 ** 31);
  assertEquals(parseSize("0", "--cow-buffer", { zero: true }), 0);
  assertThrows(() => parseSize("0", "--batch"), UsageError, "Cannot parse --batch: '0'");
  assertThrows(() => parseSize("12x", "--ram"), UsageError, "is not a size like 4096, 256K");
  assertThrows(() => parseSize("-1", "--ram"), UsageError, "is not a size");
  assertThrows(() => parseSize("1e3", "--ram"), UsageError, "is not a size");
});
