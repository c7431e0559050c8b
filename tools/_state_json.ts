/**
 * Decoded device state made printable and comparable: a JSON-safe view of CBOR values (byte
 * strings as hex, big integers as decimal strings) and a field-by-field comparison that names the
 * path of every difference.
 *
 * @module
 */

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Byte strings longer than this are shown by length and a prefix in JSON. */
export const MAX_HEX_BYTES = 4096;

function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/**
 * Turns decoded device state into JSON: `Uint8Array` becomes `{ "$bytes": length, "hex": ... }`
 * (the hex cut at {@linkcode MAX_HEX_BYTES} with `"truncated": true`), `bigint` a decimal string,
 * `Map` an object.
 *
 * @example
 * ```ts
 * import { stateToJson } from "./_state_json.ts";
 * stateToJson({ pc: 4, buf: new Uint8Array([1, 255]) });
 * // { pc: 4, buf: { $bytes: 2, hex: "01ff" } }
 * ```
 */
export function stateToJson(value: unknown, maxHexBytes = MAX_HEX_BYTES): Json {
  if (value === null || value === undefined) return null;
  if (typeof value === "boolean" || typeof value === "string") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Uint8Array) {
    const out: { [key: string]: Json } = { $bytes: value.length };
    out.hex = hex(value.length > maxHexBytes ? value.subarray(0, maxHexBytes) : value);
    if (value.length > maxHexBytes) out.truncated = true;
    return out;
  }
  if (ArrayBuffer.isView(value)) {
    return stateToJson(
      new Uint8Array(value.buffer, value.byteOffset, value.byteLength),
      maxHexBytes,
    );
  }
  if (Array.isArray(value)) return value.map((v) => stateToJson(v, maxHexBytes));
  if (value instanceof Map) {
    const out: { [key: string]: Json } = {};
    for (const [k, v] of value) out[String(k)] = stateToJson(v, maxHexBytes);
    return out;
  }
  if (typeof value === "object") {
    const out: { [key: string]: Json } = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      out[k] = stateToJson(v, maxHexBytes);
    }
    return out;
  }
  return String(value);
}

/** One difference between two decoded states. */
export interface FieldDifference {
  /** Path of the field, e.g. "x[5]" or "regs.lsr"; "" for the whole value. */
  path: string;
  /** The value in A (JSON view), or undefined when the field is absent in A. */
  a?: Json;
  /** The value in B (JSON view), or undefined when the field is absent in B. */
  b?: Json;
}

function kind(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (v instanceof Uint8Array) return "bytes";
  if (Array.isArray(v)) return "array";
  if (v instanceof Map) return "map";
  return typeof v;
}

function join(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  return /^[A-Za-z_$][\w$]*$/.test(key)
    ? (path === "" ? key : `${path}.${key}`)
    : `${path}[${JSON.stringify(key)}]`;
}

function entriesOf(v: unknown): Map<string, unknown> {
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [String(k), x]));
  return new Map(Object.entries(v as Record<string, unknown>));
}

/**
 * Lists the fields that differ between two decoded states, depth first, at most `limit` of them.
 * Byte strings are compared as a whole and reported with the offset of their first difference.
 *
 * @example
 * ```ts
 * import { diffStates } from "./_state_json.ts";
 * diffStates({ pc: 4, x: [0, 1] }, { pc: 8, x: [0, 2] });
 * // [{ path: "pc", a: 4, b: 8 }, { path: "x[1]", a: 1, b: 2 }]
 * ```
 */
export function diffStates(a: unknown, b: unknown, limit = 1000): FieldDifference[] {
  const out: FieldDifference[] = [];
  const walk = (x: unknown, y: unknown, path: string) => {
    if (out.length >= limit) return;
    const kx = kind(x);
    const ky = kind(y);
    if (kx !== ky) {
      out.push({ path, a: stateToJson(x, 64), b: stateToJson(y, 64) });
      return;
    }
    if (kx === "bytes") {
      const bx = x as Uint8Array;
      const by = y as Uint8Array;
      const n = Math.min(bx.length, by.length);
      let i = 0;
      while (i < n && bx[i] === by[i]) i++;
      if (i === n && bx.length === by.length) return;
      out.push({
        path: `${path}@${i}`,
        a: stateToJson(bx.subarray(i, i + 16)),
        b: stateToJson(by.subarray(i, i + 16)),
      });
      return;
    }
    if (kx === "array") {
      const ax = x as unknown[];
      const ay = y as unknown[];
      for (let i = 0; i < Math.max(ax.length, ay.length); i++) {
        if (i >= ax.length) out.push({ path: join(path, i), b: stateToJson(ay[i], 64) });
        else if (i >= ay.length) out.push({ path: join(path, i), a: stateToJson(ax[i], 64) });
        else walk(ax[i], ay[i], join(path, i));
        if (out.length >= limit) return;
      }
      return;
    }
    if (kx === "object" || kx === "map") {
      const ex = entriesOf(x);
      const ey = entriesOf(y);
      const keys = [...new Set([...ex.keys(), ...ey.keys()])].sort();
      for (const k of keys) {
        if (!ex.has(k)) out.push({ path: join(path, k), b: stateToJson(ey.get(k), 64) });
        else if (!ey.has(k)) out.push({ path: join(path, k), a: stateToJson(ex.get(k), 64) });
        else walk(ex.get(k), ey.get(k), join(path, k));
        if (out.length >= limit) return;
      }
      return;
    }
    if (!Object.is(x, y) && !(kx === "number" && x === y)) {
      out.push({ path, a: stateToJson(x, 64), b: stateToJson(y, 64) });
    }
  };
  walk(a, b, "");
  return out;
}
