/**
 * The bridge between the machine and the file: the machine description a snapshot carries, the
 * device sections made from `machine.save()` (and back, migrating older state versions), the
 * check that a file fits this emulator, and the machine's content digest (the value
 * `run --stop-at N --digest` prints and a snapshot of that state carries).
 *
 * The CPU and devices hand over plain data; only this module encodes it (format/'s
 * `encodeDeviceState`), so the emulator never depends on the format.
 *
 * @module
 */

import { VERSION } from "../../version.ts";
import { computeContentDigest } from "../../format/content_digest.ts";
import type { DeviceSection, DeviceSectionInput } from "../../format/device_section.ts";
import {
  decodeDeviceState,
  type DeviceStateValue,
  encodeDeviceState,
} from "../../format/device_state.ts";
import type { MachineDescription } from "../../format/header.ts";
import { toHex } from "../../format/checksum.ts";
import {
  deviceSections,
  HART_DEVICE_ID,
  type Machine,
  type MachineState,
  type SavedDevice,
} from "../machine.ts";
import { HART_STATE_VERSION, type HartState } from "../hart.ts";
import { CLINT_DEVICE_ID, CLINT_STATE_VERSION } from "../devices/clint.ts";
import { HTIF_DEVICE_ID, HTIF_STATE_VERSION } from "../devices/htif.ts";
import { SIFIVE_TEST_DEVICE_ID, SIFIVE_TEST_STATE_VERSION } from "../devices/sifive_test_device.ts";
import { UART_DEVICE_ID, UART_STATE_VERSION } from "../devices/uart.ts";
import { PLIC_DEVICE_ID, PLIC_STATE_VERSION, plicResetState } from "../devices/plic.ts";
import { MROM_DEVICE_ID, MROM_STATE_VERSION } from "../devices/mrom.ts";
import { MACHINE_NAME, MAX_RAM_SIZE, PAGE_SIZE, RAM_BASE } from "../memory_map.ts";

export { HART_DEVICE_ID };

/** The state version this emulator writes and restores, per device id. */
export const CURRENT_STATE_VERSIONS: Readonly<Record<string, number>> = {
  [HART_DEVICE_ID]: HART_STATE_VERSION,
  [UART_DEVICE_ID]: UART_STATE_VERSION,
  [CLINT_DEVICE_ID]: CLINT_STATE_VERSION,
  [SIFIVE_TEST_DEVICE_ID]: SIFIVE_TEST_STATE_VERSION,
  [HTIF_DEVICE_ID]: HTIF_STATE_VERSION,
  [PLIC_DEVICE_ID]: PLIC_STATE_VERSION,
  [MROM_DEVICE_ID]: MROM_STATE_VERSION,
};

/** Turns a device's state of version `from` into version `from + 1`. */
export type StateMigration = (state: DeviceStateValue) => DeviceStateValue;

/**
 * UART state 1 → 2 (interrupts modelled): the last byte read, "THR empty" pending (THR is always
 * empty here, and no interrupt could have been taken under version 1: there was no PLIC), no
 * line status errors.
 */
const uartV1ToV2: StateMigration = (s) => ({
  ...(s as Record<string, DeviceStateValue>),
  rbr: 0,
  thrIpending: true,
  lsrErrors: 0,
});

/**
 * Migrations per device id, by the version they start from. A layout change adds its step here
 * along with the version bump, and a file with the old version keeps restoring. A device added
 * to the machine later has a step from version 0: a file without its section (older than the
 * device) gets the device's reset state.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import type { StateMigration } from "./machine_state.ts";
 * // The step a UART layout change from version 1 to 2 would add (a new field, zero by default),
 * // as an entry `ns16550a: { 1: uartV1ToV2 }` of STATE_MIGRATIONS:
 * const uartV1ToV2: StateMigration = (s) => ({ ...(s as Record<string, number>), msrDelta: 0 });
 * assertEquals(uartV1ToV2({ lsr: 0x60 }), { lsr: 0x60, msrDelta: 0 });
 * ```
 */
export const STATE_MIGRATIONS: Readonly<Record<string, Readonly<Record<number, StateMigration>>>> =
  {
    [UART_DEVICE_ID]: { 1: uartV1ToV2 },
    // Added with cross-emulator resume: files before it have no PLIC and an empty ROM.
    [PLIC_DEVICE_ID]: { 0: () => plicResetState() as unknown as DeviceStateValue },
    [MROM_DEVICE_ID]: { 0: () => ({ bytes: new Uint8Array(0) }) },
  };

/** A snapshot this emulator cannot restore (valid file, wrong machine or state version). */
export class SnapshotMismatchError extends Error {
  /** What does not fit, without the "Cannot restore snapshot: " prefix. */
  readonly reason: string;
  /** `reason` says what does not fit, with the values (e.g. the file's and this machine's). */
  constructor(reason: string) {
    super(`Cannot restore snapshot: ${reason}`);
    this.name = "SnapshotMismatchError";
    this.reason = reason;
  }
}

/** What the header's metadata says about the machine (CBOR in `MachineDescription.metadata`). */
export interface MachineMetadata {
  machine: string;
  isa: string;
  /**
   * Where the hart's retired-instruction count starts: "reset" (the guest's reset, counted by
   * this emulator) or "qemu-stream" (a restore of a QEMU stream, which records no count). Files
   * written before it existed count from reset.
   */
  instructionsCountedFrom?: "reset" | "qemu-stream";
}

/** The machine description a snapshot of `machine` carries. */
export function describeMachine(machine: Machine, createdAt = Date.now()): MachineDescription {
  const d = machine.machineDescription();
  const metadata: MachineMetadata = {
    machine: d.machine,
    isa: "rv32imac",
    instructionsCountedFrom: machine.instructionsCountedFrom,
  };
  return {
    regions: d.regions.map((r) => ({ ...r })),
    creator: `livesnap ${VERSION}`,
    createdAt,
    metadata: encodeDeviceState({ ...metadata }),
  };
}

function readMetadata(d: MachineDescription): Record<string, DeviceStateValue> {
  let meta: DeviceStateValue = null;
  if (d.metadata !== undefined && d.metadata.length > 0) {
    try {
      meta = decodeDeviceState(d.metadata);
    } catch (e) {
      throw new SnapshotMismatchError(
        `the machine metadata is not readable: ${(e as Error).message}`,
      );
    }
  }
  return meta !== null && typeof meta === "object" && !Array.isArray(meta) &&
      !(meta instanceof Uint8Array)
    ? meta
    : {};
}

/**
 * Where the retired-instruction count of a snapshot of this emulator starts (its metadata's
 * `instructionsCountedFrom`; "reset" for files that predate it).
 */
export function instructionsCountedFrom(d: MachineDescription): "reset" | "qemu-stream" {
  return readMetadata(d).instructionsCountedFrom === "qemu-stream" ? "qemu-stream" : "reset";
}

/**
 * Checks that a file's machine description fits this emulator and returns the RAM size to
 * build. Throws {@linkcode SnapshotMismatchError} naming what differs.
 */
export function checkDescriptionFits(d: MachineDescription): number {
  const name = readMetadata(d).machine;
  if (name !== MACHINE_NAME) {
    throw new SnapshotMismatchError(
      `the file is of machine '${String(name ?? "(none)")}', this emulator is '${MACHINE_NAME}'`,
    );
  }
  if (d.regions.length !== 1 || d.regions[0].name !== "ram") {
    throw new SnapshotMismatchError(
      `the file has regions [${
        d.regions.map((r) => r.name).join(", ")
      }], this machine has exactly one, 'ram'`,
    );
  }
  const r = d.regions[0];
  if (r.base !== RAM_BASE) {
    throw new SnapshotMismatchError(
      `RAM is at 0x${r.base.toString(16)} in the file, at 0x${RAM_BASE.toString(16)} here`,
    );
  }
  if (r.pageSize !== PAGE_SIZE) {
    throw new SnapshotMismatchError(
      `the file's page size is ${r.pageSize}, this machine's ${PAGE_SIZE}`,
    );
  }
  if (r.size > MAX_RAM_SIZE || r.size % PAGE_SIZE !== 0) {
    throw new SnapshotMismatchError(
      `RAM of ${r.size} bytes does not fit this machine (a multiple of ${PAGE_SIZE} up to ${MAX_RAM_SIZE})`,
    );
  }
  return r.size;
}

/**
 * The device sections of a saved machine, hart first: the emulator's one mapping
 * (`deviceSections` in emulator/machine.ts, which `run --digest` uses too), CBOR-encoded.
 */
export function sectionsFromState(saved: MachineState): DeviceSectionInput[] {
  return deviceSections(saved).map((d) => ({
    id: d.id,
    instance: d.instance,
    version: d.version,
    state: encodeDeviceState(d.state as unknown as DeviceStateValue),
  }));
}

/**
 * Rebuilds `machine.save()`'s value from a file's device sections, migrating older state
 * versions step by step. Refuses (with {@linkcode SnapshotMismatchError}) an unknown device, a
 * version newer than this emulator's, one with no migration path, or a foreign encoding.
 */
export function stateFromSections(
  sections: readonly DeviceSection[],
  migrations: Readonly<Record<string, Readonly<Record<number, StateMigration>>>> = STATE_MIGRATIONS,
): MachineState {
  let hart: (HartState & { version: number }) | null = null;
  const devices: SavedDevice[] = [];
  for (const s of sections) {
    const current = Object.hasOwn(CURRENT_STATE_VERSIONS, s.id)
      ? CURRENT_STATE_VERSIONS[s.id]
      : undefined;
    if (current === undefined) {
      throw new SnapshotMismatchError(`the file has a device '${s.id}' this machine does not have`);
    }
    if (s.encoding !== "cbor") {
      throw new SnapshotMismatchError(
        `device '${s.id}' is stored as foreign bytes, not CBOR state`,
      );
    }
    if (s.version > current) {
      throw new SnapshotMismatchError(
        `device '${s.id}' has state version ${s.version}, newer than this emulator's ${current}`,
      );
    }
    let state: DeviceStateValue;
    try {
      state = decodeDeviceState(s.state);
    } catch (e) {
      throw new SnapshotMismatchError(`device '${s.id}': ${(e as Error).message}`);
    }
    for (let v = s.version; v < current; v++) {
      const step = migrations[s.id]?.[v];
      if (step === undefined) {
        throw new SnapshotMismatchError(
          `device '${s.id}' has state version ${s.version} and there is no migration from version ${v} to ${
            v + 1
          }`,
        );
      }
      state = step(state);
    }
    if (s.id === HART_DEVICE_ID) {
      hart = { ...(state as unknown as HartState), version: current };
    } else {
      devices.push({
        id: s.id,
        instance: s.instance,
        version: current,
        state: state as unknown as SavedDevice["state"],
      });
    }
  }
  if (hart === null) throw new SnapshotMismatchError("the file has no 'hart' section");
  // Devices the machine gained after the file was written: their migration from version 0
  // gives their reset state.
  const present = new Set(devices.map((d) => d.id));
  for (const [id, current] of Object.entries(CURRENT_STATE_VERSIONS)) {
    const fromNothing = migrations[id]?.[0];
    if (id === HART_DEVICE_ID || present.has(id) || fromNothing === undefined) continue;
    let state = fromNothing(null);
    for (let v = 1; v < current; v++) {
      const step = migrations[id]?.[v];
      if (step === undefined) {
        throw new SnapshotMismatchError(
          `device '${id}' is missing and there is no migration from version ${v} to ${v + 1}`,
        );
      }
      state = step(state);
    }
    devices.push({
      id,
      instance: 0,
      version: current,
      state: state as unknown as SavedDevice["state"],
    });
  }
  return { hart, devices };
}

/**
 * The content digest of the machine's current state (FORMAT.md §10), as lowercase hex: equal to
 * the content digest of a snapshot of this exact state. Call between `run()`s.
 *
 * @example
 * ```ts
 * import { assertEquals, assertNotEquals } from "@std/assert/mod.js";
 * import { Machine } from "../machine.ts";
 * import { machineContentDigest } from "./machine_state.ts";
 * const elf = await Deno.readFile(new URL("../guests/build/counter.elf", import.meta.url));
 * const boot = () => Machine.fromElf(elf, { ramSize: 4 << 20, uartSink: () => {} });
 * const [a, b] = [boot(), boot()];
 * a.run(100_000);
 * b.run(100_000);
 * // = `livesnap run counter.elf --ram 4M --stop-at 100000 --digest`: time is deterministic.
 * const digest = await machineContentDigest(a);
 * assertEquals(await machineContentDigest(b), digest);
 * b.run(1);
 * assertNotEquals(await machineContentDigest(b), digest);
 * ```
 */
export async function machineContentDigest(machine: Machine): Promise<string> {
  return await contentDigestOf(describeMachine(machine, 0), machine.ram.bytes, machine.save());
}

/** The content digest of a machine given as its description, RAM and saved state. */
export async function contentDigestOf(
  description: MachineDescription,
  ram: Uint8Array,
  state: MachineState,
): Promise<string> {
  return toHex(await computeContentDigest(description, [ram], sectionsFromState(state)));
}
