/**
 * Parsers for option values the commands share: sizes ("256K", "1MiB"), addresses ("0x8000_0000"),
 * compression ("zstd:3") and raw region specs ("ram:0x80000000:ram.img"). Each throws an Error
 * worded "Cannot parse <option>: ..." that the command prints as is.
 *
 * @module
 */
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
 * Parses a byte size with an optional binary unit: "4096", "256K", "1MiB", "2g".
 *
 * @example
 * ```ts
 * import { parseSize } from "./_args.ts";
 * parseSize("256K", "--batch"); // 262144
 * ```
 */
export function parseSize(text: string, option: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new Error(`Cannot parse ${option}: '${text}' is not a size like 4096, 256K or 1M`);
  }
  const value = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new Error(`Cannot parse ${option}: '${text}' is not a positive size`);
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
    throw new Error(`Cannot parse ${option}: '${text}' is not an address like 0x80000000`);
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
  throw new Error(`Cannot parse --compress: '${text}' is not none, zstd or zstd:LEVEL (1..19)`);
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
    throw new Error(`Cannot parse --region: '${text}' is not NAME:BASE:FILE`);
  }
  return {
    name: text.slice(0, first),
    base: parseAddress(text.slice(first + 1, second), "--region"),
    path: text.slice(second + 1),
  };
}

/** Returns the values of a repeatable option as a list (parseArgs gives a string or an array). */
export function listOf(value: unknown): string[] {
  if (value === undefined || value === false) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}
