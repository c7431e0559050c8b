/**
 * The live migration protocol (docs/MIGRATION.md): a prologue and control messages framed as
 * `.lsnap` records (FORMAT.md §3: type, flags, length, payload, CRC32C), around the `.lsnap`
 * stream itself, which travels byte for byte as a file holds it. This module knows bytes only:
 * it reads from any `ReadableStream` and writes to any `WritableStream`, with a bound on every
 * wait and on every length before anything is allocated.
 *
 * @module
 */

import { crc32c, hex32 } from "./checksum.ts";
import {
  FLAG_CRITICAL,
  FOOTER_SIZE,
  PROLOGUE_SIZE,
  RECORD_HEAD_SIZE,
  RECORD_TAIL_SIZE,
  RecordType,
} from "./constants.ts";
import { decodeDeviceState, type DeviceStateValue, encodeDeviceState } from "./device_state.ts";
import { decodeHeader, encodeHeader, type MachineDescription } from "./header.ts";
import { decodeRecordHead, encodeRecord } from "./record.ts";

/** The prologue's magic, `\x89LSMIG\r\n` (docs/MIGRATION.md §2). */
export const MIGRATION_MAGIC: Uint8Array = new Uint8Array([
  0x89,
  0x4c,
  0x53,
  0x4d,
  0x49,
  0x47,
  0x0d,
  0x0a,
]);
/** Protocol version (docs/MIGRATION.md §2). */
export const MIGRATION_MAJOR = 1;
export const MIGRATION_MINOR = 2;

/** Message types (docs/MIGRATION.md §3): the `.lsnap` record framing, types 0x4D00-0x4DFF. */
export const MigrationMessage = {
  HELLO: 0x4d01,
  ACCEPT: 0x4d02,
  REFUSE: 0x4d03,
  PASS: 0x4d04,
  PROGRESS: 0x4d05,
  SWITCHOVER: 0x4d10,
  READY: 0x4d11,
  GO: 0x4d12,
  RUNNING: 0x4d13,
  PAGE_REQUEST: 0x4d20,
  RESUME: 0x4d21,
  COMPLETE: 0x4d22,
  CURRENT: 0x4d23,
} as const;

/** Most page numbers one PAGE_REQUEST carries (docs/MIGRATION.md §8.3). */
export const MAX_PAGE_REQUEST = 1024;

/** The largest control message payload (docs/MIGRATION.md §3); checked before allocating. */
export const MAX_MESSAGE_PAYLOAD = 1024 * 1024;

/** Why a migration failed, for exit codes and for the side that must react (never matched on
 * message text). */
export type MigrationFailure =
  /** The other side refused (incompatible machine, busy, digest mismatch). */
  | "refused"
  /** Bytes that break the protocol: a bad magic, CRC, type, length or field. */
  | "protocol"
  /** A bounded wait ran out. */
  | "timeout"
  /** The connection closed or failed. */
  | "connection"
  /** The state the destination holds is not the state the source sent. */
  | "mismatch";

/** A migration that failed; `failure` says how. */
export class MigrationError extends Error {
  /** How it failed. */
  readonly failure: MigrationFailure;
  /** A migration error of kind `failure`. */
  constructor(failure: MigrationFailure, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "MigrationError";
    this.failure = failure;
  }
}

/** Migration mode. */
export type MigrationMode = "precopy" | "postcopy" | "hybrid";

/** HELLO: what the source sends before any page (docs/MIGRATION.md §4). */
export interface Hello {
  /** The machine: the `.lsnap` HEADER the stream will carry (FORMAT.md §5). */
  description: MachineDescription;
  /** The state version of each device the source writes, by device id. */
  devices: Record<string, number>;
  /** The migration mode the source will use. */
  mode: MigrationMode;
  /** Post-copy: this connection resumes an interrupted post-copy (docs/MIGRATION.md §8.5) of
   * the guest stopped at this instruction count; absent for a new migration. */
  resumeAt?: number;
}

/** SWITCHOVER: the source's word that the stream is complete (docs/MIGRATION.md §5). */
export interface Switchover {
  /** The content digest (FORMAT.md §10) of the state at the switch-over, 32 bytes hex. */
  contentDigest: string;
  /** Instructions the guest had retired when it stopped. */
  atInstruction: number;
  /** When the source's guest ran its last instruction, microseconds since the Unix epoch on the
   * source's clock (1.1; absent from a 1.0 source). */
  stoppedAtUs?: number;
}

/** The 16-byte prologue of either side (docs/MIGRATION.md §2). */
export function encodeMigrationPrologue(
  major = MIGRATION_MAJOR,
  minor = MIGRATION_MINOR,
): Uint8Array {
  const out = new Uint8Array(16);
  out.set(MIGRATION_MAGIC);
  const v = new DataView(out.buffer);
  v.setUint16(8, major, true);
  v.setUint16(10, minor, true);
  v.setUint32(12, crc32c(out.subarray(0, 12)), true);
  return out;
}

/** Checks a prologue: magic, CRC, major version; returns the versions. */
export function decodeMigrationPrologue(
  bytes: Uint8Array,
  who: string,
): { major: number; minor: number } {
  for (let i = 0; i < MIGRATION_MAGIC.length; i++) {
    if (bytes[i] !== MIGRATION_MAGIC[i]) {
      throw new MigrationError(
        "protocol",
        `Cannot migrate: the ${who} did not open with the livesnap migration magic (got ${
          [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join(" ")
        })`,
      );
    }
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, 16);
  const stored = v.getUint32(12, true);
  const actual = crc32c(bytes.subarray(0, 12));
  if (stored !== actual) {
    throw new MigrationError(
      "protocol",
      `Cannot migrate: the ${who}'s prologue CRC32C is ${hex32(stored)}, its bytes give ${
        hex32(actual)
      }`,
    );
  }
  return { major: v.getUint16(8, true), minor: v.getUint16(10, true) };
}

/** Frames a control message: CBOR `body` in a record of type `type` (critical). */
export function encodeMessage(type: number, body: Record<string, DeviceStateValue>): Uint8Array {
  return encodeRecord(type, FLAG_CRITICAL, encodeDeviceState(body));
}

/** The name of a message type, for errors. */
/**
 * Checks the type of a destination's reply on the source's side: REFUSE becomes a
 * {@linkcode MigrationError} of failure `refused` (or `mismatch`, as the destination says) with
 * its reason; any other unexpected type a `protocol` one.
 */
export function expectReply(
  type: number,
  body: DeviceStateValue,
  want: number,
  peer: string,
): void {
  if (type === want) return;
  if (type === MigrationMessage.REFUSE) {
    const m = body as Record<string, DeviceStateValue> | null;
    const reason = typeof m === "object" && m !== null && typeof m.reason === "string"
      ? m.reason
      : "(no reason given)";
    const failure = typeof m === "object" && m !== null && m.failure === "mismatch"
      ? "mismatch"
      : "refused";
    throw new MigrationError(
      failure,
      `Cannot migrate to ${peer}: the destination refused: ${reason}`,
    );
  }
  throw new MigrationError(
    "protocol",
    `Cannot migrate to ${peer}: expected ${messageName(want)}, the destination sent ${
      messageName(type)
    }`,
  );
}

export function messageName(type: number): string {
  for (const [k, v] of Object.entries(MigrationMessage)) if (v === type) return k;
  return `0x${type.toString(16).padStart(4, "0")}`;
}

/** HELLO's payload. */
export function encodeHello(h: Hello): Uint8Array {
  return encodeMessage(MigrationMessage.HELLO, {
    header: encodeHeader(h.description),
    devices: { ...h.devices },
    mode: h.mode,
    ...(h.resumeAt === undefined ? {} : { resumeAt: h.resumeAt }),
  });
}

/** Decodes HELLO's CBOR body (fields checked: a bad one is a protocol error). */
export function decodeHello(body: DeviceStateValue): Hello {
  const m = asMap(body, "HELLO");
  const header = m.header;
  if (!(header instanceof Uint8Array)) throw badField("HELLO", "header", "is not a byte string");
  let description: MachineDescription;
  try {
    description = decodeHeader(header, 0, 0);
  } catch (e) {
    throw new MigrationError(
      "protocol",
      `Cannot migrate: HELLO's machine description is not valid: ${(e as Error).message}`,
    );
  }
  const devices: Record<string, number> = {};
  const d = asMap(m.devices, "HELLO devices");
  for (const [id, v] of Object.entries(d)) {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      throw badField("HELLO", `devices.${id}`, "is not a version number");
    }
    devices[id] = v;
  }
  const mode = m.mode;
  if (mode !== "precopy" && mode !== "postcopy" && mode !== "hybrid") {
    throw badField("HELLO", "mode", `'${String(mode)}' is not precopy, postcopy or hybrid`);
  }
  const resumeAt = m.resumeAt;
  if (resumeAt !== undefined && !isCount(resumeAt)) {
    throw badField("HELLO", "resumeAt", "is not an instruction count");
  }
  return resumeAt === undefined
    ? { description, devices, mode }
    : { description, devices, mode, resumeAt: resumeAt as number };
}

function isCount(v: DeviceStateValue | undefined): boolean {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Post-copy's SWITCHOVER (docs/MIGRATION.md §8.2): where the guest stopped, and how many DEVICE
 * records follow it. */
export interface PostcopySwitchover {
  /** Instructions the guest had retired when it stopped. */
  atInstruction: number;
  /** DEVICE records that follow (FORMAT.md §7). */
  deviceRecords: number;
}

/** Decodes post-copy's SWITCHOVER body. */
export function decodePostcopySwitchover(body: DeviceStateValue): PostcopySwitchover {
  const m = asMap(body, "SWITCHOVER");
  if (!isCount(m.atInstruction)) {
    throw badField("SWITCHOVER", "atInstruction", "is not an instruction count");
  }
  const n = m.deviceRecords;
  if (!isCount(n) || (n as number) > 1024) {
    throw badField("SWITCHOVER", "deviceRecords", "is not a count of at most 1024");
  }
  return { atInstruction: m.atInstruction as number, deviceRecords: n as number };
}

/** Decodes PAGE_REQUEST's (or hybrid's CURRENT's) body: page numbers, each below
 * `pageCount`, at most {@linkcode MAX_PAGE_REQUEST}. */
export function decodePageRequest(
  body: DeviceStateValue,
  pageCount: number,
  what = "PAGE_REQUEST",
): number[] {
  const pages = asMap(body, what).pages;
  if (!Array.isArray(pages) || pages.length > MAX_PAGE_REQUEST) {
    throw badField(what, "pages", `is not an array of at most ${MAX_PAGE_REQUEST}`);
  }
  for (const p of pages) {
    if (!isCount(p) || (p as number) >= pageCount) {
      throw badField(what, "pages", `holds ${String(p)}, not a page below ${pageCount}`);
    }
  }
  return pages as number[];
}

/** Decodes RESUME's body: the bitmap of the pages the destination lacks (bit `p % 8` of byte
 * `p / 8` set: page `p` is missing). */
export function decodeResume(body: DeviceStateValue, pageCount: number): Uint8Array {
  const missing = asMap(body, "RESUME").missing;
  const want = Math.ceil(pageCount / 8);
  if (!(missing instanceof Uint8Array) || missing.length !== want) {
    throw badField("RESUME", "missing", `is not a bitmap of ${want} bytes`);
  }
  return missing;
}

/** Decodes COMPLETE's body: the content digest of the state at the switch-over. */
export function decodeComplete(body: DeviceStateValue): { contentDigest: string } {
  const digest = asMap(body, "COMPLETE").contentDigest;
  if (typeof digest !== "string" || !/^[0-9a-f]{64}$/.test(digest)) {
    throw badField("COMPLETE", "contentDigest", "is not 64 hex digits");
  }
  return { contentDigest: digest };
}

/** Decodes SWITCHOVER's body. */
export function decodeSwitchover(body: DeviceStateValue): Switchover {
  const m = asMap(body, "SWITCHOVER");
  const digest = m.contentDigest;
  if (typeof digest !== "string" || !/^[0-9a-f]{64}$/.test(digest)) {
    throw badField("SWITCHOVER", "contentDigest", "is not 64 hex digits");
  }
  const at = m.atInstruction;
  if (typeof at !== "number" || !Number.isSafeInteger(at) || at < 0) {
    throw badField("SWITCHOVER", "atInstruction", "is not an instruction count");
  }
  const stopped = m.stoppedAtUs;
  if (stopped !== undefined && !isTimeUs(stopped)) {
    throw badField("SWITCHOVER", "stoppedAtUs", "is not a time in microseconds");
  }
  return {
    contentDigest: digest,
    atInstruction: at,
    ...(stopped === undefined ? {} : { stoppedAtUs: stopped }),
  };
}

/** Decodes RUNNING's body: when the destination's guest ran its first instruction, microseconds
 * since the Unix epoch on the destination's clock (docs/MIGRATION.md §6). */
export function decodeRunning(body: DeviceStateValue): number {
  const at = asMap(body, "RUNNING").runningAtUs;
  if (!isTimeUs(at)) throw badField("RUNNING", "runningAtUs", "is not a time in microseconds");
  return at;
}

function isTimeUs(v: DeviceStateValue | undefined): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** A CBOR body as a map, or a protocol error. */
export function asMap(v: DeviceStateValue, what: string): Record<string, DeviceStateValue> {
  if (v === null || typeof v !== "object" || Array.isArray(v) || v instanceof Uint8Array) {
    throw new MigrationError("protocol", `Cannot migrate: ${what} is not a CBOR map`);
  }
  return v;
}

function badField(what: string, field: string, problem: string): MigrationError {
  return new MigrationError("protocol", `Cannot migrate: ${what}'s field '${field}' ${problem}`);
}

/** A received control message. */
export interface ReceivedMessage {
  type: number;
  body: DeviceStateValue;
}

/**
 * Reads a byte stream with a bound on each wait: `exactly(n, ms)` resolves with `n` bytes or
 * throws a {@linkcode MigrationError} (`timeout`, or `connection` at the end of the stream).
 */
export class TimedByteReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #peer: string;
  #buf: Uint8Array = new Uint8Array(0);
  /** Bytes read so far (for offsets in messages). */
  offset = 0;

  constructor(stream: ReadableStream<Uint8Array>, peer: string) {
    this.#reader = stream.getReader();
    this.#peer = peer;
  }

  /** The next chunk from the stream, or null at its end; waits at most `ms`. */
  async #more(ms: number, what: string): Promise<Uint8Array | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new MigrationError(
              "timeout",
              `Cannot migrate: nothing from ${this.#peer} for ${ms} ms while waiting for ${what}`,
            ),
          ),
        ms,
      );
    });
    try {
      const r = await Promise.race([this.#reader.read(), timeout]);
      return r.done ? null : r.value;
    } catch (e) {
      if (e instanceof MigrationError) throw e;
      throw new MigrationError(
        "connection",
        `Cannot migrate: the connection to ${this.#peer} failed while waiting for ${what}: ${
          (e as Error).message
        }`,
        { cause: e },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** Up to `max` bytes (at least one), waiting at most `ms` for any. */
  async some(max: number, ms: number, what: string): Promise<Uint8Array> {
    if (this.#buf.length === 0) {
      const c = await this.#more(ms, what);
      if (c === null) throw this.#ended(what);
      this.#buf = c;
    }
    const n = Math.min(max, this.#buf.length);
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    this.offset += n;
    return out;
  }

  /** Exactly `n` bytes; each wait for more lasts at most `ms`. */
  async exactly(n: number, ms: number, what: string): Promise<Uint8Array> {
    if (this.#buf.length >= n) {
      const out = this.#buf.subarray(0, n);
      this.#buf = this.#buf.subarray(n);
      this.offset += n;
      return out;
    }
    const out = new Uint8Array(n);
    let have = 0;
    while (have < n) {
      const part = await this.some(n - have, ms, what);
      out.set(part, have);
      have += part.length;
    }
    return out;
  }

  #ended(what: string): MigrationError {
    return new MigrationError(
      "connection",
      `Cannot migrate: ${this.#peer} closed the connection at byte ${this.offset} while sending ${what}`,
    );
  }

  /** A record head, its length checked against the cap (FORMAT.md §3.1). */
  #head(head: Uint8Array, at: number, index: number): { type: number; length: number } {
    try {
      return decodeRecordHead(head, at, index);
    } catch (e) {
      throw new MigrationError(
        "protocol",
        `Cannot migrate: ${this.#peer} sent ${(e as Error).message.replace(/^Cannot read /, "")}`,
      );
    }
  }

  /** Reads one control message; refuses lengths above {@linkcode MAX_MESSAGE_PAYLOAD}, bad
   * CRCs and bad CBOR. */
  async message(ms: number, what: string): Promise<ReceivedMessage> {
    const at = this.offset;
    const head = await this.exactly(RECORD_HEAD_SIZE, ms, what);
    const { type, length } = this.#head(head, at, -1);
    if (length > MAX_MESSAGE_PAYLOAD) {
      throw new MigrationError(
        "protocol",
        `Cannot migrate: ${this.#peer} sent a message (type ${
          messageName(type)
        }) of ${length} bytes at byte ${at}, more than the ${MAX_MESSAGE_PAYLOAD} allowed`,
      );
    }
    const rest = await this.exactly(length + RECORD_TAIL_SIZE, ms, what);
    const v = new DataView(rest.buffer, rest.byteOffset + length, 4);
    const stored = v.getUint32(0, true);
    const payload = rest.subarray(0, length);
    const actual = crc32c(head, payload);
    if (stored !== actual) {
      throw new MigrationError(
        "protocol",
        `Cannot migrate: the message at byte ${at} from ${this.#peer} has CRC32C ${
          hex32(stored)
        }, its bytes give ${hex32(actual)}`,
      );
    }
    let body: DeviceStateValue;
    try {
      body = length === 0 ? {} : decodeDeviceState(payload);
    } catch (e) {
      throw new MigrationError(
        "protocol",
        `Cannot migrate: the ${messageName(type)} message at byte ${at} from ${this.#peer}: ${
          (e as Error).message
        }`,
      );
    }
    return { type, body };
  }

  /**
   * Reads one record of any type (a control message or a `.lsnap` record): its length checked
   * against `cap` before anything is allocated, then its CRC. Returns the type and payload.
   */
  async record(
    ms: number,
    what: string,
    cap: number,
  ): Promise<{ type: number; payload: Uint8Array; at: number }> {
    const at = this.offset;
    const head = await this.exactly(RECORD_HEAD_SIZE, ms, what);
    const { type, length } = this.#head(head, at, -1);
    if (length > cap) {
      throw new MigrationError(
        "protocol",
        `Cannot migrate: ${this.#peer} sent a record (type ${
          messageName(type)
        }) of ${length} bytes at byte ${at}, more than the ${cap} allowed`,
      );
    }
    const rest = await this.exactly(length + RECORD_TAIL_SIZE, ms, what);
    const payload = rest.subarray(0, length);
    const stored = new DataView(rest.buffer, rest.byteOffset + length, 4).getUint32(0, true);
    const actual = crc32c(head, payload);
    if (stored !== actual) {
      throw new MigrationError(
        "protocol",
        `Cannot migrate: the record at byte ${at} from ${this.#peer} has CRC32C ${
          hex32(stored)
        }, its bytes give ${hex32(actual)}`,
      );
    }
    return { type, payload, at };
  }

  /**
   * Passes one whole `.lsnap` stream (FORMAT.md: prologue, records up to the TRAILER, footer) to
   * `sink` as it arrives, without holding more than one piece of at most `piece` bytes: record
   * lengths are checked against the cap (FORMAT.md §3.1) from their heads; the reader of the
   * bytes checks everything else. Returns the byte count.
   */
  async lsnapStream(
    sink: (bytes: Uint8Array) => Promise<void>,
    ms: number,
    piece = 1 << 20,
  ): Promise<number> {
    let total = 0;
    const pass = async (n: number, what: string) => {
      while (n > 0) {
        const part = await this.some(Math.min(n, piece), ms, what);
        await sink(part.slice());
        n -= part.length;
        total += part.length;
      }
    };
    const prologue = await this.exactly(PROLOGUE_SIZE, ms, "the snapshot stream's prologue");
    await sink(prologue.slice());
    total += PROLOGUE_SIZE;
    for (let index = 0;; index++) {
      const head = await this.exactly(RECORD_HEAD_SIZE, ms, `snapshot record ${index}`);
      const { type, length } = this.#head(head, total, index);
      await sink(head.slice());
      total += RECORD_HEAD_SIZE;
      await pass(length + RECORD_TAIL_SIZE, `snapshot record ${index}`);
      if (type === RecordType.TRAILER) break;
    }
    await pass(FOOTER_SIZE, "the snapshot stream's footer");
    return total;
  }

  /** Gives the stream back (cancels reading). */
  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

/** Wraps a failed write as a `connection` {@linkcode MigrationError}. */
export function connectionError(peer: string, e: unknown, what: string): MigrationError {
  if (e instanceof MigrationError) return e;
  return new MigrationError(
    "connection",
    `Cannot migrate: the connection to ${peer} failed while ${what}: ${(e as Error).message}`,
    { cause: e },
  );
}
