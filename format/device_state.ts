/**
 * Deterministic CBOR for device state (FORMAT.md §7.1): object keys are sorted, byte arrays are
 * CBOR byte strings, numbers are integers or float64. Decoding checks sizes and nesting first.
 *
 * @module
 */
import { Decoder, Encoder } from "cbor-x";
import { MAX_CBOR_DEPTH } from "./constants.ts";
import { checkCborShape } from "./_cbor_shape.ts";

export { checkCborShape };

const OPTIONS = {
  useRecords: false,
  mapsAsObjects: true,
  tagUint8Array: false,
  pack: false,
  structuredClone: false,
  bundleStrings: false,
  variableMapSize: true,
  useFloat32: 0,
} as const;
const encoder = new Encoder(OPTIONS);
const decoder = new Decoder(OPTIONS);

/** A device state value: plain data only. */
export type DeviceStateValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | DeviceStateValue[]
  | { [key: string]: DeviceStateValue };

function canonical(v: unknown, depth: number): unknown {
  if (depth > MAX_CBOR_DEPTH) {
    throw new Error(`Cannot encode device state: nesting deeper than ${MAX_CBOR_DEPTH}`);
  }
  if (v === null || typeof v === "boolean" || typeof v === "string" || typeof v === "bigint") {
    return v;
  }
  if (typeof v === "number") return Object.is(v, -0) ? 0 : v;
  if (v instanceof Uint8Array) return v;
  if (Array.isArray(v)) return v.map((x) => canonical(x, depth + 1));
  if (typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v as object).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = canonical(x, depth + 1);
    }
    return out;
  }
  throw new Error(
    `Cannot encode device state: ${Object.prototype.toString.call(v)} is not plain data`,
  );
}

/**
 * Encodes plain data as CBOR; equal input (whatever its key order) gives equal bytes.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { decodeDeviceState, encodeDeviceState } from "./device_state.ts";
 * const a = encodeDeviceState({ x: 1, y: new Uint8Array([2]) });
 * const b = encodeDeviceState({ y: new Uint8Array([2]), x: 1 });
 * assert(a.join() === b.join());
 * assert((decodeDeviceState(a) as { x: number }).x === 1);
 * ```
 */
export function encodeDeviceState(value: DeviceStateValue): Uint8Array {
  const out = encoder.encode(canonical(value, 0));
  return new Uint8Array(out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength));
}

function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) {
    return Object.getPrototypeOf(v) === Uint8Array.prototype ? v : new Uint8Array(v);
  }
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = plain(x);
    return out;
  }
  return v;
}

/**
 * Decodes device state CBOR. Throws an Error naming the problem for malformed input, sizes that do
 * not fit, or nesting deeper than the cap; never recurses without bound.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { decodeDeviceState, encodeDeviceState } from "./device_state.ts";
 * const s = decodeDeviceState(encodeDeviceState({ regs: [1, 2, 3] }));
 * assert(JSON.stringify(s) === '{"regs":[1,2,3]}');
 * ```
 */
export function decodeDeviceState(bytes: Uint8Array): DeviceStateValue {
  const problem = checkCborShape(bytes);
  if (problem !== null) throw new Error(`Cannot decode device state: ${problem}`);
  try {
    return plain(decoder.decode(bytes)) as DeviceStateValue;
  } catch (e) {
    throw new Error(`Cannot decode device state: ${(e as Error).message}`, { cause: e });
  }
}
