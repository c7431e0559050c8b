/**
 * Deterministic CBOR for device state (FORMAT.md §7.1): object keys are sorted, byte arrays are
 * CBOR byte strings, numbers are integers or float64. Decoding checks sizes and nesting first.
 *
 * @module
 */
import { Decoder, Encoder } from "cbor-x";
import { MAX_CBOR_DEPTH } from "./constants.ts";

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

/**
 * Walks CBOR structure without building values, checking that every declared length fits in the
 * bytes that remain and that nesting stays under the cap. Returns a reason or null.
 */
export function checkCborShape(b: Uint8Array): string | null {
  // Stack of remaining item counts; -1 means indefinite length.
  const stack: number[] = [];
  let pos = 0;
  let items = 0;
  const len = (info: number): number | null => {
    if (info < 24) return info;
    const n = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
    if (n === 0 || pos + n > b.length) return null;
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + b[pos + i];
    pos += n;
    return v;
  };
  do {
    if (pos >= b.length) return `CBOR ends inside an item at byte ${pos}`;
    const ib = b[pos++];
    const major = ib >> 5;
    const info = ib & 31;
    items++;
    if (ib === 0xff) {
      if (stack.length === 0 || stack[stack.length - 1] !== -1) {
        return `stray CBOR break at byte ${pos - 1}`;
      }
      stack.pop();
      items--;
    } else if (info === 31) {
      if (major < 2 || major > 5) return `bad indefinite CBOR item at byte ${pos - 1}`;
      if (major >= 4) {
        if (stack.length >= MAX_CBOR_DEPTH) return `CBOR nests deeper than ${MAX_CBOR_DEPTH}`;
        stack.push(-1);
        continue;
      }
      // Indefinite strings: chunks follow until a break; treat as a container of strings.
      stack.push(-1);
      continue;
    } else {
      const n = len(info);
      if (n === null) return `bad CBOR length at byte ${pos - 1}`;
      if (major === 2 || major === 3) {
        if (n > b.length - pos) return `CBOR string of ${n} bytes runs past the end`;
        pos += n;
      } else if (major === 4 || major === 5) {
        const count = major === 5 ? n * 2 : n;
        if (count > b.length - pos) {
          return `CBOR container of ${n} items cannot fit in ${b.length - pos} bytes`;
        }
        if (count > 0) {
          if (stack.length >= MAX_CBOR_DEPTH) return `CBOR nests deeper than ${MAX_CBOR_DEPTH}`;
          stack.push(count);
          continue;
        }
      } else if (major === 6) {
        if (stack.length >= MAX_CBOR_DEPTH) return `CBOR nests deeper than ${MAX_CBOR_DEPTH}`;
        stack.push(1);
        continue;
      }
    }
    // One item finished: pop completed containers.
    while (stack.length > 0 && stack[stack.length - 1] > 0) {
      stack[stack.length - 1]--;
      if (stack[stack.length - 1] === 0) stack.pop();
      else break;
    }
  } while (stack.length > 0);
  if (pos !== b.length) return `${b.length - pos} bytes follow the CBOR item`;
  return null;
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
