/**
 * Encodes a device's fields into the bytes of a QEMU device section, through a vmstate
 * description of the JSON form QEMU appends to its streams: the inverse of
 * {@link decodeVmState}. Integers are written big-endian in their declared size, `int32 le`
 * little-endian, arrays element by element, structs recursively, then every subsection the
 * description lists (0x05, name length, name, version u32, its fields).
 *
 * @module
 */
import { SectionType } from "./constants.ts";
import type { VmDescField, VmDescStruct } from "./model.ts";
import type { VmStateValue } from "./vmstate_decode.ts";

/** A value to encode: as {@link decodeVmState} returns it, or with integers as numbers and
 * bigints and byte fields as `Uint8Array`. */
export type VmStateInput =
  | string
  | number
  | bigint
  | boolean
  | Uint8Array
  | VmStateInput[]
  | { [name: string]: VmStateInput };

/** A description and the values it was given do not fit together. */
export class VmStateEncodeError extends Error {
  constructor(reason: string) {
    super(`Cannot encode device state: ${reason}`);
    this.name = "VmStateEncodeError";
  }
}

const INT_SIGNED = new Set(["int8", "int16", "int32", "int64", "int32 equal", "int64 equal"]);
const INT_UNSIGNED = new Set([
  "uint8",
  "uint16",
  "uint32",
  "uint64",
  "uint32 equal",
  "uint8 equal",
  "uint16 equal",
]);

class Out {
  parts: number[] = [];
  bytes(b: ArrayLike<number>): void {
    for (let i = 0; i < b.length; i++) this.parts.push(b[i]);
  }
}

function toBigInt(v: VmStateInput, what: string): bigint {
  if (typeof v === "bigint") return v;
  if (typeof v === "number" && Number.isInteger(v)) return BigInt(v);
  if (typeof v === "boolean") return v ? 1n : 0n;
  if (typeof v === "string" && /^0x[0-9a-f]+$/i.test(v)) return BigInt(v);
  throw new VmStateEncodeError(`${what} is not an integer: ${String(v)}`);
}

function writeInt(out: Out, v: bigint, size: number, signed: boolean, le: boolean, what: string) {
  const bits = BigInt(size * 8);
  const min = signed ? -(1n << (bits - 1n)) : 0n;
  const max = signed ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
  // A value given in hex as the decoder prints it is the unsigned bit pattern, also for signed
  // fields: accept it whole.
  if (v < min || v > (signed ? (1n << bits) - 1n : max)) {
    throw new VmStateEncodeError(`${what} ${v} does not fit in ${size} bytes`);
  }
  let u = v < 0n ? v + (1n << bits) : v;
  const b = new Array<number>(size);
  for (let i = size - 1; i >= 0; i--) {
    b[le ? size - 1 - i : i] = Number(u & 0xffn);
    u >>= 8n;
  }
  out.bytes(b);
}

function toBytes(v: VmStateInput, size: number, what: string): ArrayLike<number> {
  let b: ArrayLike<number>;
  if (v instanceof Uint8Array) b = v;
  else if (typeof v === "string" && /^([0-9a-f]{2}( [0-9a-f]{2})*)?$/i.test(v)) {
    b = v === "" ? [] : v.split(" ").map((h) => parseInt(h, 16));
  } else throw new VmStateEncodeError(`${what} is not bytes`);
  if (b.length !== size) {
    throw new VmStateEncodeError(`${what} has ${b.length} bytes, its field ${size}`);
  }
  return b;
}

function writeField(out: Out, f: VmDescField, v: VmStateInput, depth: number, what: string) {
  if (f.type === "struct") {
    if (f.struct === undefined) throw new VmStateEncodeError(`${what} has no struct description`);
    if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Uint8Array) {
      throw new VmStateEncodeError(`${what} is not a struct`);
    }
    writeStruct(out, f.struct, v as { [name: string]: VmStateInput }, depth + 1, what);
  } else if (f.type === "bool") {
    if (typeof v !== "boolean") throw new VmStateEncodeError(`${what} is not true or false`);
    const b = new Array<number>(f.size).fill(0);
    b[0] = v ? 1 : 0;
    out.bytes(b);
  } else if (INT_SIGNED.has(f.type) || INT_UNSIGNED.has(f.type)) {
    writeInt(out, toBigInt(v, what), f.size, INT_SIGNED.has(f.type), false, what);
  } else if (f.type === "int32 le") {
    writeInt(out, toBigInt(v, what), f.size, true, true, what);
  } else {
    out.bytes(toBytes(v, f.size, what));
  }
}

function writeStruct(
  out: Out,
  desc: VmDescStruct,
  values: { [name: string]: VmStateInput },
  depth: number,
  where: string,
): void {
  if (depth > 32) throw new VmStateEncodeError("the description nests deeper than 32 levels");
  for (const f of desc.fields ?? []) {
    const what = where === "" ? `field '${f.name}'` : `${where}.${f.name}`;
    if (!Object.hasOwn(values, f.name)) throw new VmStateEncodeError(`${what} has no value`);
    const v = values[f.name];
    if (f.array_len !== undefined) {
      if (!Array.isArray(v) || v.length !== f.array_len) {
        throw new VmStateEncodeError(`${what} is not an array of ${f.array_len}`);
      }
      v.forEach((e, i) => writeField(out, f, e, depth, `${what}[${i}]`));
    } else {
      writeField(out, f, v, depth, what);
    }
  }
  for (const sub of desc.subsections ?? []) {
    const name = sub.vmsd_name ?? "";
    const v = values[name];
    if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Uint8Array) {
      throw new VmStateEncodeError(`subsection '${name}' has no values`);
    }
    const n = new TextEncoder().encode(name);
    out.bytes([SectionType.SUBSECTION, n.length]);
    out.bytes(n);
    writeInt(out, BigInt(sub.version ?? 0), 4, false, false, `subsection '${name}' version`);
    writeStruct(out, sub, v as { [name: string]: VmStateInput }, depth + 1, name);
  }
}

/**
 * Encodes `values` (field name → value, subsections under their names) with `desc`. Throws
 * {@link VmStateEncodeError} naming the field when a value is missing or does not fit.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { encodeVmState } from "./vmstate_encode.ts";
 * import { decodeVmState } from "./vmstate_decode.ts";
 * const desc = { fields: [{ name: "pc", type: "uint32", size: 4 }, { name: "on", type: "bool", size: 1 }] };
 * const bytes = encodeVmState({ pc: 0x8000_0010, on: true }, desc);
 * assertEquals(bytes, new Uint8Array([0x80, 0, 0, 0x10, 1]));
 * assertEquals(decodeVmState(bytes, desc).fields, { pc: "0x80000010", on: true });
 * ```
 */
export function encodeVmState(
  values: { [name: string]: VmStateInput | VmStateValue },
  desc: VmDescStruct,
): Uint8Array {
  const out = new Out();
  writeStruct(out, desc, values as { [name: string]: VmStateInput }, 0, "");
  return Uint8Array.from(out.parts);
}
