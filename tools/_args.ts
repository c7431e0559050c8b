/**
 * Parsers for option values the commands share: sizes ("256K", "1MiB"), counts, addresses
 * ("0x8000_0000"), compression ("zstd:3") and raw region specs ("ram:0x80000000:ram.img"). Each
 * throws a {@linkcode UsageError} worded "Cannot parse <option>: ..." that the command prints
 * as is (exit status 2).
 *
 * @module
 */
import { UsageError } from "./_command.ts";
import type { CompressionChoice, RawRegionSpec } from "./convert/types.ts";

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/**
 * Parses a byte size with an optional binary unit: "4096", "256K", "1MiB", "2g", "1.5M" (every
 * command's sizes: `--batch`, `--page-size`, `--ram`, `--cow-buffer`). Zero is refused unless
 * `zero` allows it.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { parseSize } from "./_args.ts";
 * assertEquals(parseSize("256K", "--batch"), 262144);
 * assertEquals(parseSize("0", "--cow-buffer", { zero: true }), 0);
 * ```
 */
export function parseSize(text: string, option: string, options: { zero?: boolean } = {}): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new UsageError(`Cannot parse ${option}: '${text}' is not a size like 4096, 256K or 1M`);
  }
  const value = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(value) || value < 0 || (value === 0 && !options.zero)) {
    throw new UsageError(
      `Cannot parse ${option}: '${text}' is not a ${options.zero ? "" : "positive "}size`,
    );
  }
  return value;
}

/**
 * Parses a whole number in decimal, at least `min` (default 0); `what` names it in the message
 * ("an instruction count").
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { parseCount } from "./_args.ts";
 * assertEquals(parseCount("100", "--max-errors", { min: 1 }), 100);
 * ```
 */
export function parseCount(
  text: string,
  option: string,
  options: { min?: number; what?: string } = {},
): number {
  const min = options.min ?? 0;
  const what = options.what ?? (min > 0 ? "a positive integer" : "a whole number");
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`Cannot parse ${option}: '${text}' is not ${what}`);
  }
  return value;
}

/**
 * Parses an address or integer: decimal, or hexadecimal with `0x`; `_` separators allowed.
 *
 * @example
 * ```ts
 * import { parseAddress } from "./_args.ts";
 * parseAddress("0x8000_0000", "--region"); // 2147483648
 * ```
 */
export function parseAddress(text: string, option: string): number {
  const t = text.replaceAll("_", "").trim();
  const value = /^0x[0-9a-f]+$/i.test(t)
    ? parseInt(t.slice(2), 16)
    : /^\d+$/.test(t)
    ? Number(t)
    : NaN;
  if (!Number.isSafeInteger(value)) {
    throw new UsageError(`Cannot parse ${option}: '${text}' is not an address like 0x80000000`);
  }
  return value;
}

/**
 * Parses `none`, `zstd` or `zstd:LEVEL`.
 *
 * @example
 * ```ts
 * import { parseCompression } from "./_args.ts";
 * parseCompression("zstd:9"); // { codec: "zstd", level: 9 }
 * ```
 */
export function parseCompression(text: string): CompressionChoice {
  if (text === "none" || text === "raw") return { codec: "raw" };
  const m = /^zstd(?::(\d+))?$/.exec(text);
  if (m) {
    if (m[1] === undefined) return { codec: "zstd" };
    const level = Number(m[1]);
    if (level >= 1 && level <= 19) return { codec: "zstd", level };
  }
  throw new UsageError(
    `Cannot parse --compress: '${text}' is not none, zstd or zstd:LEVEL (1..19)`,
  );
}

/**
 * Parses `NAME:BASE:FILE` (the file may itself contain colons).
 *
 * @example
 * ```ts
 * import { parseRegionSpec } from "./_args.ts";
 * parseRegionSpec("ram:0x80000000:ram.img"); // { name: "ram", base: 2147483648, path: "ram.img" }
 * ```
 */
export function parseRegionSpec(text: string): RawRegionSpec {
  const first = text.indexOf(":");
  const second = first < 0 ? -1 : text.indexOf(":", first + 1);
  if (first <= 0 || second < 0 || second === text.length - 1) {
    throw new UsageError(`Cannot parse --region: '${text}' is not NAME:BASE:FILE`);
  }
  return {
    name: text.slice(0, first),
    base: parseAddress(text.slice(first + 1, second), "--region"),
    path: text.slice(second + 1),
  };
}
