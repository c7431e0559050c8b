/**
 * Mutators for the fuzz harness: each turns a snapshot file into a hostile variant. Byte-level
 * ones (bit flips, truncation, garbage) test the framing; structure-aware ones edit one record,
 * then fix its CRC32C and re-sign the file (file digest, trailer CRC, footer) so that the damage
 * reaches the parsers behind the checksums: huge declared lengths and counts, bogus page numbers,
 * zstd bombs and frames declaring absurd sizes, deep or enormous CBOR, spliced records.
 *
 * Everything is a pure function of the input and the random source, so a case is reproduced from
 * its seed and number alone.
 *
 * @module
 */
import { crc32c, createBlake3 } from "../../format/checksum.ts";
import {
  MAX_BATCH_BYTES,
  MAX_RECORD_PAYLOAD,
  MAX_TOTAL_PAGES,
  RecordType,
} from "../../format/constants.ts";
import { decodeHeader, encodeHeader } from "../../format/header.ts";
import {
  decodeDeviceState,
  type DeviceStateValue,
  encodeDeviceState,
} from "../../format/device_state.ts";
import { encodePageRecord } from "../../format/page_record.ts";
import { encodeIndex } from "../../format/index_record.ts";
import { SnapshotStreamReader } from "../../format/stream_reader.ts";
import { zstdCompress } from "../../format/_zstd.ts";

/** A seeded random source (a 32-bit splitmix). */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** A u32. */
  u32(): number {
    this.s = (this.s + 0x9e3779b9) >>> 0;
    let z = this.s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  }
  /** An integer in 0 ..< n (n ≥ 1). */
  int(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 2 ** 32) * n);
  }
  /** True with probability p. */
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }
  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)];
  }
  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

/** The random seed of case `index` of a run with `seed`. */
export function caseSeed(seed: number, index: number): number {
  return (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca77)) >>> 0;
}

/** A record found by a tolerant walk over the framing. */
export interface Span {
  offset: number;
  /** Head + payload + CRC. */
  length: number;
  type: number;
}

/** Walks the records of a (possibly damaged) file, stopping where framing is lost. */
export function spans(b: Uint8Array): Span[] {
  const out: Span[] = [];
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let o = 16;
  while (o + 12 <= b.length) {
    const len = v.getUint32(o + 4, true);
    if (o + 12 + len > b.length) break;
    out.push({ offset: o, length: 12 + len, type: v.getUint16(o, true) });
    o += 12 + len;
  }
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A framed record with a correct CRC. */
export function frame(type: number, flags: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + payload.length);
  const v = new DataView(out.buffer);
  v.setUint16(0, type, true);
  v.setUint16(2, flags, true);
  v.setUint32(4, payload.length, true);
  out.set(payload, 8);
  v.setUint32(8 + payload.length, crc32c(out.subarray(0, 8 + payload.length)), true);
  return out;
}

const hasher = await createBlake3();

function fixCrc(b: Uint8Array, s: Span): void {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  v.setUint32(s.offset + s.length - 4, crc32c(b.subarray(s.offset, s.offset + s.length - 4)), true);
}

/**
 * Re-signs a file after a structural edit: when it still ends in a TRAILER record and a footer,
 * recomputes the trailer's file digest and CRC and the footer's trailer offset and CRC. Counts and
 * the content digest are left as they are (the readers must catch those).
 */
export function resign(b: Uint8Array): Uint8Array {
  const list = spans(b);
  const t = list[list.length - 1];
  if (t === undefined || t.type !== RecordType.TRAILER || t.length !== 12 + 104) return b;
  if (t.offset + t.length + 32 !== b.length) return b;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  hasher.init();
  hasher.update(b.subarray(0, t.offset));
  b.set(hasher.digest("binary"), t.offset + 8 + 72);
  fixCrc(b, t);
  const f = b.length - 32;
  v.setUint32(f + 8, t.offset, true);
  v.setUint32(f + 12, 0, true);
  v.setUint32(f + 16, v.getUint32(t.offset + 8 + 32, true), true);
  v.setUint32(f + 20, v.getUint32(t.offset + 8 + 36, true), true);
  v.setUint32(f + 28, crc32c(b.subarray(f, f + 28)), true);
  return b;
}

/** Region 0's page count and page size from the header record, or null if it is unreadable. */
function region0(b: Uint8Array): { pages: number; pageSize: number } | null {
  const s = spans(b)[0];
  if (s === undefined || s.type !== RecordType.HEADER) return null;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let o = s.offset + 8 + 8;
  if (o + 2 > b.length) return null;
  o += 2 + v.getUint16(o, true) + 2;
  if (o + 2 > b.length) return null;
  o += 2 + v.getUint16(o, true) + 8;
  if (o + 12 > b.length) return null;
  const size = v.getUint32(o, true) + v.getUint32(o + 4, true) * 2 ** 32;
  const pageSize = v.getUint32(o + 8, true);
  if (pageSize === 0 || size % pageSize !== 0) return null;
  return { pages: size / pageSize, pageSize };
}

/** Replaces the bytes of span `s` with `rec` (which may have another length). */
function replaceSpan(b: Uint8Array, s: Span, rec: Uint8Array): Uint8Array {
  return concat(b.subarray(0, s.offset), rec, b.subarray(s.offset + s.length));
}

function pickSpan(b: Uint8Array, r: Rng, type?: number): Span | undefined {
  const list = spans(b).filter((s) => type === undefined || s.type === type);
  return list.length === 0 ? undefined : r.pick(list);
}

/** Interesting u32 values for lengths, counts and page numbers. */
function hugeU32(r: Rng, near: number): number {
  return r.pick([
    0,
    1,
    0xffff_ffff,
    0x8000_0000,
    0x7fff_ffff,
    MAX_RECORD_PAYLOAD,
    MAX_RECORD_PAYLOAD + 1,
    65_536,
    65_537,
    16_384,
    16_385,
    Math.max(0, near - 1),
    near,
    near + 1,
    near * 2,
    r.u32(),
  ]) >>> 0;
}

/** zstd frames that are hostile to a decoder expecting `expected` bytes. */
export function hostileFrame(r: Rng, expected: number): Uint8Array {
  const kind = r.int(11);
  const zeros = () => zstdCompress(new Uint8Array(expected), 1);
  switch (kind) {
    case 0: // A bomb within the cap: a few bytes that decode to `expected` zero bytes.
      return zeros();
    case 1: { // The frame declares a 4-byte content size the record does not imply.
      const z = zstdCompress(new Uint8Array(expected + 1), 1);
      return z;
    }
    case 2: { // Content size rewritten to a 32-bit value that zstd-wasm would mistake for a size.
      const body = new Uint8Array(64);
      const hdr = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x80, 0x48, 0, 0, 0, 0]);
      new DataView(hdr.buffer).setUint32(6, r.pick([0xffff_fff0, 0x8000_0000, 0xffff_fffe]), true);
      return concat(hdr, new Uint8Array([0x01 | (64 << 3), 0, 0]), body);
    }
    case 3: { // 8-byte content size of 2^32 + expected (truncates to `expected` in 32 bits).
      const hdr = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0x48, 0, 0, 0, 0, 0, 0, 0, 0]);
      const v = new DataView(hdr.buffer);
      v.setUint32(6, expected, true);
      v.setUint32(10, 1, true);
      return concat(hdr, zeros().subarray(6));
    }
    case 4: // A frame followed by an empty frame.
      return concat(zeros(), zstdCompress(new Uint8Array(0), 1));
    case 5: // A frame followed by a skippable frame.
      return concat(zeros(), new Uint8Array([0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 9, 9]));
    case 6: { // Window of 2^41 bytes.
      const z = zeros();
      return concat(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x80, 0xf8]), z.subarray(6));
    }
    case 7: // No declared content size.
      return concat(
        new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x48]),
        new Uint8Array([1, 0, 0]),
      );
    case 8: { // A real frame with a flipped byte in its blocks.
      const data = new Uint8Array(expected);
      for (let i = 0; i < Math.min(expected, 8192); i++) data[i] = (i * 13) & 0xff;
      for (let at = 8192; at < expected; at += 8192) {
        data.copyWithin(at, 0, Math.min(8192, expected - at));
      }
      const z = zstdCompress(data, 1);
      z[6 + r.int(z.length - 6)] ^= 1 << r.int(8);
      return z;
    }
    case 9: // Legacy (v0.7) magic.
      return concat(new Uint8Array([0x27, 0xb5, 0x2f, 0xfd]), zeros().subarray(4));
    default: // The block header declares a huge block.
      return concat(zeros().subarray(0, 9), new Uint8Array([0xfc, 0xff, 0xff]));
  }
}

/** CBOR that is hostile to a decoder: deep, wide, or declaring sizes it does not hold. */
export function hostileCbor(r: Rng): Uint8Array {
  switch (r.int(10)) {
    case 0: // 100 000 nested one-element arrays.
      return concat(new Uint8Array(100_000).fill(0x81), new Uint8Array([0]));
    case 1: // Nested indefinite maps without breaks.
      return new Uint8Array(50_000).fill(0xbf);
    case 2: // An array declaring 2^64 - 1 items.
      return new Uint8Array([0x9b, 255, 255, 255, 255, 255, 255, 255, 255, 0]);
    case 3: // A byte string declaring 4 GiB.
      return new Uint8Array([0x5a, 255, 255, 255, 255, 1, 2, 3]);
    case 4: // Tags nested 100 000 deep.
      return concat(new Uint8Array(100_000).fill(0xc6), new Uint8Array([0]));
    case 5: { // A map with 200 000 entries (valid, wide).
      const n = 200_000;
      const out = new Uint8Array(5 + n * 2);
      out.set([0xba, 0, 3, 0x0d, 0x40]);
      for (let i = 0; i < n; i++) out.set([0x00 + (i % 24), 0xf6], 5 + 2 * i);
      return out;
    }
    case 6: // A 64-deep structure (at the cap) then one more level.
      return concat(new Uint8Array(r.pick([63, 64, 65])).fill(0x81), new Uint8Array([0]));
    case 7: // Random bytes.
      return r.bytes(1 + r.int(64));
    case 8: // A float and bigint tag soup.
      return new Uint8Array([0xc2, 0x5a, 0xff, 0xff, 0xff, 0xff, 0xfb, 0, 0, 0]);
    default: // Stray break.
      return new Uint8Array([0xff]);
  }
}

/** A hostile replacement for a device state value of the same or another type. */
function hostileValue(r: Rng, v: DeviceStateValue): DeviceStateValue {
  const numbers = [
    -1,
    0,
    1,
    2 ** 31,
    2 ** 32,
    -(2 ** 31),
    2 ** 53,
    2 ** 64,
    1.5,
    -0.5,
    NaN,
    Infinity,
  ];
  switch (r.int(6)) {
    case 0:
      return r.pick(numbers);
    case 1:
      return r.pick([null, true, "x", "", new Uint8Array(0)]);
    case 2:
      return r.pick<DeviceStateValue>([[], {}, [1, 2, 3], { unknown: 1 }]);
    case 3:
      if (v instanceof Uint8Array) return new Uint8Array(r.pick([0, 1, v.length + 1, 100_000]));
      if (Array.isArray(v)) return r.chance(0.5) ? v.slice(0, r.int(v.length + 1)) : [...v, ...v];
      return r.pick(numbers);
    case 4:
      return typeof v === "number" ? v + r.pick([-1, 1, 2 ** 32]) : 2 ** 32 - 1;
    default:
      return r.pick([2 ** 63, -(2 ** 63), 0xffff_ffff]);
  }
}

/** Replaces one value somewhere in `v` (or deletes or adds a key); returns the new tree. */
function mutateState(v: DeviceStateValue, r: Rng, depth = 0): DeviceStateValue {
  const isMap = v !== null && typeof v === "object" && !Array.isArray(v) &&
    !(v instanceof Uint8Array);
  if (Array.isArray(v) && v.length > 0 && r.chance(0.8)) {
    const out = [...v];
    const i = r.int(out.length);
    out[i] = mutateState(out[i], r, depth + 1);
    return out;
  }
  if (isMap) {
    const out = { ...(v as Record<string, DeviceStateValue>) };
    const keys = Object.keys(out);
    if (keys.length > 0 && r.chance(0.85)) {
      const k = r.pick(keys);
      if (r.chance(0.1)) delete out[k];
      else out[k] = mutateState(out[k], r, depth + 1);
    } else out[r.pick(["extra", "x", "__proto__", "constructor"])] = hostileValue(r, null);
    return out;
  }
  return hostileValue(r, v);
}

/** One mutator. */
export interface Mutator {
  name: string;
  apply(b: Uint8Array, r: Rng, corpus: readonly Uint8Array[]): Uint8Array;
}

const u32At = (b: Uint8Array, at: number, value: number) =>
  new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(at, value >>> 0, true);

/** Edits a payload field of one record, fixes the CRC and re-signs. */
function editRecord(
  b: Uint8Array,
  r: Rng,
  type: number | undefined,
  edit: (payload: Uint8Array, r: Rng) => Uint8Array | void,
): Uint8Array {
  const s = pickSpan(b, r, type);
  if (s === undefined) return b;
  const payload = b.slice(s.offset + 8, s.offset + s.length - 4);
  const edited = edit(payload, r) ?? payload;
  const flags = new DataView(b.buffer, b.byteOffset).getUint16(s.offset + 2, true);
  return resign(replaceSpan(b, s, frame(s.type, flags, edited)));
}

export const MUTATORS: readonly Mutator[] = [
  {
    name: "bit flips",
    apply(b, r) {
      const out = b.slice();
      for (let n = 1 + r.int(8); n > 0; n--) out[r.int(out.length)] ^= 1 << r.int(8);
      return out;
    },
  },
  {
    name: "interesting bytes",
    apply(b, r) {
      const out = b.slice();
      for (let n = 1 + r.int(4); n > 0; n--) {
        out[r.int(out.length)] = r.pick([0, 0xff, 0x7f, 0x80, 1]);
      }
      return out;
    },
  },
  {
    name: "truncate",
    apply(b, r) {
      const list = spans(b);
      const at = r.chance(0.5) || list.length === 0
        ? r.int(b.length)
        : Math.max(0, r.pick(list).offset + r.pick([0, 0, -1, 1, 8, 12]));
      return b.slice(0, Math.min(at, b.length));
    },
  },
  {
    name: "bit flips behind a fixed CRC",
    apply: (b, r) =>
      editRecord(b, r, undefined, (p) => {
        for (let n = 1 + r.int(4); n > 0 && p.length > 0; n--) p[r.int(p.length)] ^= 1 << r.int(8);
      }),
  },
  {
    name: "huge record length",
    apply(b, r) {
      const s = pickSpan(b, r);
      if (s === undefined) return b;
      const out = b.slice();
      u32At(out, s.offset + 4, hugeU32(r, out.length - s.offset - 12));
      return out;
    },
  },
  {
    name: "huge page count",
    apply: (b, r) =>
      editRecord(b, r, RecordType.PAGES, (p) => {
        if (p.length >= 8) {
          const v = new DataView(p.buffer, p.byteOffset);
          u32At(p, 4, hugeU32(r, v.getUint32(4, true)));
        }
      }),
  },
  {
    name: "bogus page numbers",
    apply: (b, r) => {
      const reg = region0(b);
      return editRecord(b, r, RecordType.PAGES, (p) => {
        if (p.length < 12) return;
        const v = new DataView(p.buffer, p.byteOffset);
        const what = r.int(5);
        if (what === 0) u32At(p, 8, hugeU32(r, reg?.pages ?? 0)); // run start or first varints
        else if (what === 1) p[0] = r.pick([1, 2, 0xff]); // region index
        else if (what === 2) p[2] = r.pick([0, 1, 2, 3, 0xff]); // encoding
        else if (what === 3) p[3] = r.pick([0, 1, 2]); // addressing
        else if (v.getUint8(3) === 1) {
          // A list: make one varint huge or non-minimal.
          const at = 8 + r.int(Math.max(1, Math.min(p.length - 8, 64)));
          p.set(
            r.pick([[0xff, 0xff, 0xff, 0xff, 0x0f], [0x80, 0x00], [
              0x81,
              0x80,
              0x80,
              0x80,
              0x80,
              0x01,
            ]]).slice(0, p.length - at),
            at,
          );
        }
      });
    },
  },
  {
    name: "zstd bomb or absurd frame",
    apply(b, r) {
      const reg = region0(b);
      if (reg === null) return b;
      const cap = Math.max(1, Math.floor(MAX_BATCH_BYTES / reg.pageSize));
      const count = Math.max(1, Math.min(reg.pages, cap, r.pick([1, 4, 64, reg.pages, cap])));
      const payload = new Uint8Array(12);
      const v = new DataView(payload.buffer);
      v.setUint16(0, 0, true);
      payload[2] = 2;
      payload[3] = 0;
      v.setUint32(4, count, true);
      v.setUint32(8, 0, true);
      const rec = frame(
        RecordType.PAGES,
        1,
        concat(payload, hostileFrame(r, count * reg.pageSize)),
      );
      const s = pickSpan(b, r, RecordType.PAGES) ?? spans(b)[1];
      if (s === undefined) return b;
      return resign(
        r.chance(0.5)
          ? replaceSpan(b, s, rec)
          : concat(b.subarray(0, s.offset), rec, b.subarray(s.offset)),
      );
    },
  },
  {
    name: "hostile index",
    apply: (b, r) =>
      editRecord(b, r, RecordType.INDEX, (p) => {
        const what = r.int(4);
        if (what === 0 && p.length >= 5) u32At(p, 1, hugeU32(r, p.length));
        else if (what === 1) {
          const n = hugeU32(r, 10);
          const body = new Uint8Array(8 + 14 * Math.min(n, 4));
          u32At(body, 0, n);
          const hdr = new Uint8Array(5);
          u32At(hdr, 1, body.length);
          return concat(hdr, body);
        } else if (what === 2) {
          const len = 8 + 14 * 1000;
          const hdr = new Uint8Array(5);
          hdr[0] = 1;
          u32At(hdr, 1, len);
          return concat(hdr, hostileFrame(r, len));
        } else if (p.length > 13) {
          // Point an offset somewhere else (the last 8 bytes are an offset in an uncompressed body).
          u32At(p, p.length - 8, r.int(b.length));
        }
        return p;
      }),
  },
  {
    name: "hostile CBOR device state",
    apply: (b, r) =>
      editRecord(b, r, RecordType.DEVICE, (p) => {
        if (p.length < 2) return;
        const idLen = p[0] | (p[1] << 8);
        const stateAt = 2 + idLen + 4 + 4 + 1;
        if (stateAt + 4 > p.length) return;
        p[stateAt - 1] = 0; // CBOR
        const descLen = new DataView(p.buffer, p.byteOffset).getUint32(stateAt, true);
        const keep = Math.min(p.length, stateAt + 4 + descLen);
        return concat(p.subarray(0, keep), hostileCbor(r));
      }),
  },
  {
    name: "device state values of the wrong type or size",
    apply: (b, r) =>
      editRecord(b, r, RecordType.DEVICE, (p) => {
        if (p.length < 2) return p;
        const idLen = p[0] | (p[1] << 8);
        const descAt = 2 + idLen + 9;
        if (descAt + 4 > p.length || p[descAt - 1] !== 0) return p;
        const stateAt = descAt + 4 + new DataView(p.buffer, p.byteOffset).getUint32(descAt, true);
        if (stateAt > p.length) return p;
        let state: DeviceStateValue;
        try {
          state = decodeDeviceState(p.subarray(stateAt));
        } catch {
          return p;
        }
        for (let n = 1 + r.int(2); n > 0; n--) state = mutateState(state, r);
        let encoded: Uint8Array;
        try {
          encoded = encodeDeviceState(state);
        } catch {
          return p;
        }
        return concat(p.subarray(0, stateAt), encoded);
      }),
  },
  {
    name: "hostile device fields",
    apply: (b, r) =>
      editRecord(b, r, RecordType.DEVICE, (p) => {
        if (p.length < 2) return;
        const what = r.int(3);
        if (what === 0) u32At(p, 0, hugeU32(r, 4) & 0xffff | (p[2] << 16) | (p[3] << 24)); // id length
        else if (what === 1) {
          const idLen = p[0] | (p[1] << 8);
          if (2 + idLen + 9 + 4 <= p.length) u32At(p, 2 + idLen + 9, hugeU32(r, p.length)); // description length
        } else p.set(r.bytes(Math.min(4, p.length - 2)), 2); // id bytes: maybe bad UTF-8
      }),
  },
  {
    name: "hostile header",
    apply: (b, r) =>
      editRecord(b, r, RecordType.HEADER, (p) => {
        if (p.length < 12) return;
        const creatorLen = p[8] | (p[9] << 8);
        const countAt = 10 + creatorLen;
        if (countAt + 2 > p.length) return;
        const what = r.int(4);
        if (what === 0) p.set([r.int(256), r.pick([0, 1, 0xff])], countAt); // region count
        else {
          const nameAt = countAt + 2;
          const nameLen = p[nameAt] | (p[nameAt + 1] << 8);
          const baseAt = nameAt + 2 + nameLen;
          if (baseAt + 20 > p.length) return;
          if (what === 1) u32At(p, baseAt + 8 + r.pick([0, 4]), hugeU32(r, 0)); // size lo/hi
          else if (what === 2) {
            u32At(p, baseAt + 16, r.pick([0, 1, 511, 4095, 4097, 1 << 22, 0xffff_ffff])); // page size
          } else u32At(p, baseAt + r.pick([0, 4]), hugeU32(r, 0)); // base
        }
      }),
  },
  {
    name: "hostile trailer or footer",
    apply(b, r) {
      if (r.chance(0.5)) {
        return editRecord(b, r, RecordType.TRAILER, (p) => {
          if (p.length >= 40) u32At(p, 8 * r.int(5) + r.pick([0, 4]), hugeU32(r, 3));
        });
      }
      const out = b.slice();
      if (out.length < 48) return out;
      const f = out.length - 32;
      u32At(
        out,
        f + r.pick([8, 12, 16, 20, 24]),
        r.chance(0.5) ? r.int(out.length) : hugeU32(r, f),
      );
      u32At(out, f + 28, crc32c(out.subarray(f, f + 28)));
      return out;
    },
  },
  {
    name: "huge machine, sparse pages",
    apply(b, r) {
      // A valid header whose first region takes what the page cap leaves, then records naming
      // pages spread over it (one per 4096-page chunk): the readers' per-chunk tables are the cost.
      const s = spans(b)[0];
      if (s === undefined || s.type !== RecordType.HEADER) return b;
      let d;
      try {
        d = decodeHeader(b.subarray(s.offset + 8, s.offset + s.length - 4), s.offset, 0);
      } catch {
        return b;
      }
      const others = d.regions.slice(1).reduce((n, x) => n + x.size / x.pageSize, 0);
      const reg = d.regions[0];
      const top = Math.max(1, MAX_TOTAL_PAGES - others);
      const pages = r.pick([top, Math.min(top, 1 << 20), Math.min(top, (1 << 20) + 1)]);
      const last = d.regions.slice(1).reduce((m, x) => Math.max(m, x.base + x.size), 0);
      reg.base = Math.ceil(last / reg.pageSize) * reg.pageSize;
      reg.size = pages * reg.pageSize;
      if (!Number.isSafeInteger(reg.base + reg.size)) return b;
      let header: Uint8Array;
      try {
        header = frame(RecordType.HEADER, 1, encodeHeader(d));
      } catch {
        return b;
      }
      const stride = r.pick([4096, 4097, 65_536]);
      const n = Math.min(
        r.pick([1, 64, 2048, 8192]),
        Math.floor((pages - 1) / stride) + 1,
        Math.max(1, Math.floor((8 << 20) / reg.pageSize)),
      );
      const list = Uint32Array.from({ length: n }, (_, i) => i * stride);
      const encoding = r.pick(["zero", "zstd"] as const);
      const data = encoding === "zero"
        ? new Uint8Array(0)
        : zstdCompress(new Uint8Array(n * reg.pageSize).fill(1), 1);
      const rec = frame(RecordType.PAGES, 1, encodePageRecord(0, encoding, list, data));
      const rest = spans(b)[1]?.offset ?? s.offset + s.length;
      return resign(concat(b.subarray(0, s.offset), header, rec, b.subarray(rest)));
    },
  },
  {
    name: "splice a record from another file",
    apply(b, r, corpus) {
      const other = r.pick(corpus);
      const from = pickSpan(other, r);
      const list = spans(b);
      if (from === undefined || list.length === 0) return b;
      const at = r.pick(list).offset;
      const rec = other.subarray(from.offset, from.offset + from.length);
      return resign(concat(b.subarray(0, at), rec, b.subarray(at)));
    },
  },
  {
    name: "duplicate, drop or swap records",
    apply(b, r) {
      const list = spans(b);
      if (list.length < 3) return b;
      const i = 1 + r.int(list.length - 1);
      const j = 1 + r.int(list.length - 1);
      const s = list[i];
      const bytes = (x: Span) => b.subarray(x.offset, x.offset + x.length);
      const what = r.int(3);
      if (what === 0) {
        return resign(concat(b.subarray(0, s.offset), bytes(s), b.subarray(s.offset)));
      }
      if (what === 1) {
        return resign(concat(b.subarray(0, s.offset), b.subarray(s.offset + s.length)));
      }
      const [x, y] = i < j ? [list[i], list[j]] : [list[j], list[i]];
      if (x === y) return b;
      return resign(concat(
        b.subarray(0, x.offset),
        bytes(y),
        b.subarray(x.offset + x.length, y.offset),
        bytes(x),
        b.subarray(y.offset + y.length),
      ));
    },
  },
  {
    name: "unknown record types",
    apply(b, r) {
      const list = spans(b);
      if (list.length === 0) return b;
      const type = r.pick([0, 6, 0x7fff, 0xffff]);
      const rec = frame(type, r.pick([0, 1, 0xfffe]), r.bytes(r.int(32)));
      const at = r.pick(list).offset;
      return resign(concat(b.subarray(0, at), rec, b.subarray(at)));
    },
  },
  {
    name: "garbage",
    apply(b, r) {
      const what = r.int(3);
      const junk = r.bytes(r.int(4096));
      if (what === 0) return junk;
      if (what === 1) return concat(b.subarray(0, 16 + r.int(64)), junk);
      return concat(b, junk.subarray(0, 1 + r.int(64)));
    },
  },
];

function setU64(b: Uint8Array, at: number, value: number): void {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  v.setUint32(at, value % 2 ** 32, true);
  v.setUint32(at + 4, Math.floor(value / 2 ** 32), true);
}

/**
 * Makes a structurally edited file self-consistent again, as a writer would have written it:
 * drops INDEX records, sets the trailer's counts, recomputes the content digest with the stream
 * reader (when the records still read) and, for small machines, writes a fresh index. What is
 * left for the readers to find is only what the edit did to the records themselves, so hostile
 * but well-formed content reaches the "accepted" path (where the readers must agree).
 */
export async function reseal(b: Uint8Array, withIndex: boolean): Promise<Uint8Array> {
  const list = spans(b);
  const t = list[list.length - 1];
  if (t === undefined || t.type !== RecordType.TRAILER || t.length !== 12 + 104) return b;
  if (t.offset + t.length + 32 !== b.length) return b;
  const keep = list.slice(0, -1).filter((x) => x.type !== RecordType.INDEX);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let pages = 0;
  for (const x of keep) {
    if (x.type === RecordType.PAGES && x.length >= 20) pages += v.getUint32(x.offset + 12, true);
  }
  const counts = [
    keep.length,
    keep.filter((x) => x.type === RecordType.PAGES).length,
    pages,
    keep.filter((x) => x.type === RecordType.DEVICE).length,
    0,
  ];
  const trailer = b.slice(t.offset, t.offset + t.length);
  counts.forEach((c, i) => setU64(trailer, 8 + 8 * i, c));
  const build = (records: Uint8Array[], tr: Uint8Array) =>
    resign(concat(b.subarray(0, 16), ...records, tr, b.subarray(b.length - 32)));
  const records = keep.map((x) => b.subarray(x.offset, x.offset + x.length));
  let out = build(records, trailer);
  // Read it: the content digest is computed just before it is compared with the trailer's.
  const reader = new SnapshotStreamReader(ReadableStream.from([out]), { checkIndex: false });
  try {
    for await (const _ of reader.records()) { /* read to the end */ }
  } catch {
    // Most likely the content digest; anything else stays for the readers under test to find.
  }
  if (reader.contentDigest === null || reader.description === null) return out;
  trailer.set(reader.contentDigest, 8 + 40);
  const regionPages = reader.description.regions.map((x) => x.size / x.pageSize);
  if (withIndex && regionPages.reduce((n, x) => n + x, 0) <= 1 << 16 && reader.pageOffsets) {
    const entries: [number, number, number][] = [];
    regionPages.forEach((n, region) => {
      for (let p = 0; p < n; p++) {
        const o = reader.pageOffsets!.get(region, p);
        if (o >= 0) entries.push([region, p, o]);
      }
    });
    const index = frame(
      RecordType.INDEX,
      0,
      encodeIndex({
        regions: Uint16Array.from(entries, (e) => e[0]),
        pages: Uint32Array.from(entries, (e) => e[1]),
        pageOffsets: Float64Array.from(entries, (e) => e[2]),
        deviceOffsets: Float64Array.from(reader.deviceOffsets.values()).sort(),
      }),
    );
    setU64(trailer, 8 + 32, 16 + records.reduce((n, x) => n + x.length, 0));
    setU64(trailer, 8, records.length + 1);
    records.push(index);
  }
  out = build(records, trailer);
  return out;
}

/** Builds case `index`: one to three mutations of one corpus file, sometimes resealed. */
export async function makeCase(
  seed: number,
  index: number,
  corpus: readonly Uint8Array[],
): Promise<{ bytes: Uint8Array; source: number; mutators: string[] }> {
  const r = new Rng(caseSeed(seed, index));
  const source = r.int(corpus.length);
  let bytes = corpus[source];
  const mutators: string[] = [];
  for (let n = 1 + (r.chance(0.3) ? r.int(3) : 0); n > 0; n--) {
    const m = r.pick(MUTATORS);
    mutators.push(m.name);
    bytes = m.apply(bytes, r, corpus);
  }
  if (r.chance(mutators.includes("device state values of the wrong type or size") ? 0.9 : 0.35)) {
    mutators.push("reseal");
    bytes = await reseal(bytes, r.chance(0.5));
  }
  return { bytes, source, mutators };
}
