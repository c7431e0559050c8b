/**
 * The DEVICE record: one device's saved state, identified by id and instance, with its own state
 * version; CBOR or a foreign payload with a description (FORMAT.md §7).
 *
 * @module
 */
import { ByteBuilder, ByteCursor, utf8 } from "./_bytes.ts";
import { DeviceEncoding, MAX_NAME_BYTES } from "./constants.ts";

/** A device section as written and read. */
export interface DeviceSection {
  /** Device identifier, e.g. "uart" or "hart". */
  id: string;
  /** Instance number among devices with the same id. */
  instance: number;
  /** The device's own state layout version. */
  version: number;
  /** "cbor": `state` is CBOR from encodeDeviceState; "foreign": raw bytes of another format. */
  encoding: "cbor" | "foreign";
  /** The state bytes. */
  state: Uint8Array;
  /** For foreign payloads, a CBOR description of them (empty when none). */
  description: Uint8Array;
}

/** Input to the writer: `encoding` and `description` default to "cbor" and empty. */
export type DeviceSectionInput =
  & Omit<DeviceSection, "encoding" | "description">
  & Partial<Pick<DeviceSection, "encoding" | "description">>;

/** Fills defaults and checks fields (plain Error for caller mistakes). */
export function normalizeDevice(d: DeviceSectionInput): DeviceSection {
  const id = d.id;
  if (typeof id !== "string" || id.length === 0 || utf8(id).length > MAX_NAME_BYTES) {
    throw new Error(
      `Cannot write device section: id '${id}' is empty or longer than ${MAX_NAME_BYTES} bytes`,
    );
  }
  for (const [k, v] of [["instance", d.instance], ["version", d.version]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
      throw new Error(`Cannot write device section '${id}': ${k} ${v} is not a u32`);
    }
  }
  return {
    id,
    instance: d.instance,
    version: d.version,
    encoding: d.encoding ?? "cbor",
    state: d.state,
    description: d.description ?? new Uint8Array(0),
  };
}

/** Encodes a DEVICE payload. */
export function encodeDeviceSection(d: DeviceSection): Uint8Array {
  const b = new ByteBuilder(32 + d.id.length + d.description.length + d.state.length);
  b.str16(d.id).u32(d.instance).u32(d.version);
  b.u8(d.encoding === "cbor" ? DeviceEncoding.CBOR : DeviceEncoding.FOREIGN);
  b.u32(d.description.length).bytes(d.description).bytes(d.state);
  return b.finish();
}

/** Decodes a DEVICE payload (FORMAT.md §7). The state bytes are copied out of the payload. */
export function decodeDeviceSection(
  payload: Uint8Array,
  offset: number,
  recordIndex: number,
): DeviceSection {
  const c = new ByteCursor(payload, offset, recordIndex);
  const id = c.str16("device id", MAX_NAME_BYTES);
  if (id.length === 0) c.fail("device id is empty");
  const instance = c.u32("instance");
  const version = c.u32("state version");
  const enc = c.u8("state encoding");
  if (enc > 1) c.fail(`unknown device state encoding ${enc}`);
  const descLength = c.u32("description length");
  const description = c.take(descLength, "description").slice();
  const state = c.rest().slice();
  return { id, instance, version, encoding: enc === 0 ? "cbor" : "foreign", state, description };
}
