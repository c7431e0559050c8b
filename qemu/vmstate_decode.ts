/**
 * Decodes a device section's bytes into named fields through the JSON description QEMU appends
 * to a stream (the same reading `scripts/analyze-migration.py` does): integers big-endian by
 * their declared size, structs recursively, arrays (`array_len`) as lists, then the
 * subsections the description lists, each introduced by 0x05, its name and its version.
 *
 * @module
 */
import { SectionType } from "./constants.ts";
import type { VmDescField, VmDescStruct } from "./model.ts";

/** A decoded value: integers as `0x…` hex strings (as analyze-migration.py prints them). */
export type VmStateValue =
  | string
  | boolean
  | VmStateValue[]
  | { [name: string]: VmStateValue };

/** What {@link decodeVmState} found. */
export interface VmStateDecoding {
  /** The fields decoded, by name (subsections under their own names). */
  fields: { [name: string]: VmStateValue };
  /** True when the description accounts for every byte of the section, no more and no less. */
  complete: boolean;
  /** Why decoding stopped early or did not consume every byte. */
  error?: string;
}

const INT_TYPES = new Set([
  "int8",
  "int16",
  "int32",
  "int64",
  "uint8",
  "uint16",
  "uint32",
  "uint64",
  "int32 equal",
  "uint32 equal",
  "int64 equal",
  "uint8 equal",
  "uint16 equal",
]);

class DecodeError extends Error {}

/** Options of {@link decodeVmState}. */
export interface DecodeVmStateOptions {
  /**
   * How subsections are matched. "listed" (the default): the description lists exactly the
   * subsections the section holds, in order (as the JSON description a stream carries does).
   * "as-found": the description lists every subsection the device may send; the section holds
   * any of them, each found by the name after its 0x05 marker (as QEMU's loader reads them).
   */
  subsections?: "listed" | "as-found";
}

class Cursor {
  pos = 0;
  constructor(readonly data: Uint8Array) {}
  take(n: number, what: string): Uint8Array {
    if (!Number.isInteger(n) || n < 0 || this.pos + n > this.data.length) {
      throw new DecodeError(
        `${what} needs ${n} bytes at section byte ${this.pos}, ${this.data.length - this.pos} left`,
      );
    }
    const out = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}

function hexBytes(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
}

function intValue(b: Uint8Array, littleEndian: boolean): string {
  let v = 0n;
  for (let i = 0; i < b.length; i++) v = (v << 8n) | BigInt(b[littleEndian ? b.length - 1 - i : i]);
  return "0x" + v.toString(16).padStart(b.length * 2, "0");
}

function readField(c: Cursor, f: VmDescField, depth: number, asFound: boolean): VmStateValue {
  const what = `field '${f.name}'`;
  if (f.type === "struct") {
    if (f.struct === undefined) throw new DecodeError(`${what} is a struct with no description`);
    return readStruct(c, f.struct, depth + 1, asFound);
  }
  if (f.type === "bool") return c.take(f.size, what)[0] !== 0;
  if (f.type === "capability") {
    const n = c.take(1, what)[0];
    return new TextDecoder().decode(c.take(n, what));
  }
  if (INT_TYPES.has(f.type)) return intValue(c.take(f.size, what), false);
  if (f.type === "int32 le") return intValue(c.take(f.size, what), true);
  if (f.type === "nullptr") {
    c.take(f.size, what);
    return "nullptr";
  }
  return hexBytes(c.take(f.size, what));
}

function readStruct(
  c: Cursor,
  desc: VmDescStruct,
  depth: number,
  asFound: boolean,
): { [name: string]: VmStateValue } {
  if (depth > 32) throw new DecodeError("the description nests deeper than 32 levels");
  const out: { [name: string]: VmStateValue } = {};
  for (const f of desc.fields ?? []) {
    const count = f.array_len ?? 1;
    for (let i = 0; i < count; i++) {
      const v = readField(c, f, depth, asFound);
      const prev = out[f.name];
      if (prev === undefined) out[f.name] = f.array_len !== undefined ? [v] : v;
      else if (Array.isArray(prev)) prev.push(v);
      else out[f.name] = [prev, v];
    }
  }
  if (asFound) {
    // As QEMU's vmstate_subsection_load: a 0x05 byte followed by a name that starts with this
    // description's own name is one of its subsections; anything else ends them.
    while (c.pos + 2 <= c.data.length && c.data[c.pos] === SectionType.SUBSECTION) {
      const at = c.pos;
      const n = c.data[c.pos + 1];
      if (c.pos + 2 + n > c.data.length) break;
      const name = new TextDecoder().decode(c.data.subarray(c.pos + 2, c.pos + 2 + n));
      if (desc.vmsd_name === undefined || !name.startsWith(`${desc.vmsd_name}/`)) break;
      c.take(2 + n, "a subsection header");
      c.take(4, "a subsection version");
      const sub = (desc.subsections ?? []).find((s) => s.vmsd_name === name);
      if (sub === undefined) {
        throw new DecodeError(`subsection '${name}' at section byte ${at} is not described`);
      }
      out[name] = readStruct(c, sub, depth + 1, asFound);
    }
    return out;
  }
  for (const sub of desc.subsections ?? []) {
    const at = c.pos;
    const marker = c.take(1, "a subsection marker")[0];
    if (marker !== SectionType.SUBSECTION) {
      throw new DecodeError(
        `subsection '${sub.vmsd_name}' expected at section byte ${at}, found 0x${
          marker.toString(16).padStart(2, "0")
        }`,
      );
    }
    const n = c.take(1, "a subsection name length")[0];
    const name = new TextDecoder().decode(c.take(n, "a subsection name"));
    c.take(4, "a subsection version");
    out[name] = readStruct(c, sub, depth + 1, asFound);
  }
  return out;
}

/**
 * Decodes `data` (a device section's bytes) with `desc` (that device's entry in the JSON
 * description). Never throws: a description that does not fit is reported in `error`.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { decodeVmState } from "./vmstate_decode.ts";
 * const desc = { fields: [{ name: "pc", type: "uint32", size: 4 }, { name: "on", type: "bool", size: 1 }] };
 * const r = decodeVmState(new Uint8Array([0x80, 0, 0, 0x10, 1]), desc);
 * assert(r.complete && r.fields.pc === "0x80000010" && r.fields.on === true);
 * ```
 */
export function decodeVmState(
  data: Uint8Array,
  desc: VmDescStruct,
  options: DecodeVmStateOptions = {},
): VmStateDecoding {
  const c = new Cursor(data);
  try {
    const fields = readStruct(c, desc, 0, options.subsections === "as-found");
    if (c.pos !== data.length) {
      return {
        fields,
        complete: false,
        error: `the description accounts for ${c.pos} of ${data.length} bytes`,
      };
    }
    return { fields, complete: true };
  } catch (e) {
    if (e instanceof DecodeError) return { fields: {}, complete: false, error: e.message };
    throw e;
  }
}
