/**
 * Mutators for the QEMU stream fuzz target. A migration stream has no checksums, so every edit
 * reaches the parsers: byte-level damage (bit flips, truncation at and around record boundaries,
 * splices) and structure-aware edits found through a map of the stream's records: RAM record
 * flags and addresses, block lists declaring absurd sizes, section headers and footers, device
 * data full of footer look-alikes (the reader backtracks over them), commands, configuration
 * subsections, hostile JSON descriptions (deep nesting, huge `array_len`, fields of the wrong
 * type), and "huge machine, sparse pages": a stream declaring terabytes of RAM that sends a few
 * pages far apart.
 *
 * Every case is a pure function of the seed, its number and the corpus, as for `.lsnap` files.
 *
 * @module
 */
import { RamFlag, SectionType } from "../../qemu/constants.ts";
import { readQemuStream } from "../../qemu/stream_reader.ts";
import { caseSeed, Rng } from "./_mutators.ts";
import { configurationBytes } from "./_qemu_corpus.ts";

/** Where a record of a valid stream lies. */
export interface QemuSpan {
  kind: string;
  offset: number;
  length: number;
  /** For devices: where the section's data starts and its section id. */
  dataStart?: number;
  sectionId?: number;
}

/** The records of a valid stream, in order (the corpus files all read). */
export async function qemuSpans(bytes: Uint8Array): Promise<QemuSpan[]> {
  const out: QemuSpan[] = [];
  const encoder = new TextEncoder();
  for await (const r of readQemuStream(bytes)) {
    switch (r.kind) {
      case "header":
        out.push({ kind: "header", offset: 0, length: 8 });
        break;
      case "configuration":
        out.push({ kind: "configuration", offset: r.offset, length: r.configuration.bytes.length });
        break;
      case "ram-blocks":
      case "page":
      case "eof":
        out.push({ kind: r.kind, offset: r.offset, length: 8 });
        break;
      case "ram-section":
        out.push({ kind: "ram-section", offset: r.offset, length: r.length });
        break;
      case "device": {
        const head = 1 + 4 + 1 + encoder.encode(r.section.idstr).length + 8;
        out.push({
          kind: "device",
          offset: r.offset,
          length: head + r.section.data.length + 5,
          dataStart: r.offset + head,
          sectionId: r.section.sectionId,
        });
        break;
      }
      case "command":
        out.push({ kind: "command", offset: r.offset, length: 5 + r.data.length });
        break;
      case "vmdesc":
        out.push({ kind: "vmdesc", offset: r.offset, length: bytes.length - r.offset });
        break;
    }
  }
  return out;
}

const be = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

function splice(b: Uint8Array, at: number, remove: number, insert: Uint8Array): Uint8Array {
  const out = new Uint8Array(b.length - remove + insert.length);
  out.set(b.subarray(0, at));
  out.set(insert, at);
  out.set(b.subarray(at + remove), at + insert.length);
  return out;
}

function pick(spans: QemuSpan[], r: Rng, kind?: string): QemuSpan | undefined {
  const list = kind === undefined ? spans : spans.filter((s) => s.kind === kind);
  return list.length === 0 ? undefined : r.pick(list);
}

/** A value near a boundary a reader may mishandle. */
function hugeU32(r: Rng): number {
  return r.pick([0, 1, 0x7f, 0xff, 0x100, 0xffff, 0x1_0000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff]);
}

/** Hostile JSON descriptions (the last thing in a stream, read by inspect to decode devices). */
function hostileDescription(r: Rng, devices: { name: string; instance: number }[]): string {
  const dev = devices.length > 0 ? r.pick(devices) : { name: "cpu", instance: 0 };
  const field = (f: Record<string, unknown>) =>
    JSON.stringify({
      page_size: 4096,
      devices: devices.map((d) =>
        d === dev ? { name: d.name, instance_id: d.instance, fields: [f] } : {
          name: d.name,
          instance_id: d.instance,
        }
      ),
    });
  switch (r.int(16)) {
    case 0:
      return "[".repeat(50_000 + r.int(100_000));
    case 1:
      return `{"devices":${"[".repeat(10_000)}${"]".repeat(10_000)}}`;
    case 2:
      return JSON.stringify({ devices: r.pick([null, 5, "x", {}, [null], [5], [[1]]]) });
    case 3:
      return field({
        name: "a",
        type: "uint8",
        size: r.pick([0, 1]),
        array_len: r.pick([1e9, 2 ** 53, 2 ** 31]),
      });
    case 4:
      return field({
        name: "a",
        type: r.pick(["uint32", "buffer", "bool"]),
        size: r.pick([-1, 1.5, 2 ** 53, 1e300, "4", null]),
      });
    case 5:
      return field({
        name: "a",
        type: "struct",
        size: 4,
        struct: r.pick([null, 5, "x", { fields: 7 }, { fields: [null] }, { subsections: 3 }]),
      });
    case 6: {
      let s: Record<string, unknown> = { fields: [{ name: "x", type: "uint8", size: 1 }] };
      for (let i = 0; i < 40 + r.int(5000); i++) {
        s = { fields: [{ name: `n${i}`, type: "struct", size: 1, struct: s }] };
      }
      return field({ name: "deep", type: "struct", size: 1, struct: s });
    }
    case 7:
      return field({
        name: r.pick([null, 5, {}, "__proto__", "constructor"]),
        type: "uint8",
        size: 1,
      });
    case 8:
      return field({
        name: "a",
        type: r.pick([null, 5, [], "capability", "nullptr", "int32 le", "unknown"]),
        size: 4,
      });
    case 9:
      return JSON.stringify({
        devices: devices.map((d) => ({
          name: d.name,
          instance_id: d.instance,
          subsections: r.pick([[null], [{ vmsd_name: 5 }], "x", [{
            fields: [{ name: "s", type: "uint8", size: 1 }],
          }]]),
        })),
      });
    case 10:
      return JSON.stringify({
        devices: devices.map((d) => ({
          name: r.pick([d.name, 5, null]),
          instance_id: r.pick([d.instance, "0", null, -1, 1e300]),
        })),
      });
    case 11:
      return JSON.stringify({
        devices: Array.from(
          { length: 20_000 + r.int(200_000) },
          (_, i) => ({ name: `d${i}`, instance_id: i }),
        ),
      });
    case 12:
      return field({
        name: "a",
        type: "uint8",
        size: 1,
        array_len: r.pick([-1, 0.5, "3", null, 1e6]),
      });
    case 13:
      return "\u0000" + JSON.stringify({ devices: [] });
    case 14:
      return JSON.stringify({ devices: [], page_size: r.pick([0, -1, "x", 2 ** 60]) });
    default:
      return field({
        name: "a",
        type: "struct",
        size: 1,
        struct: { fields: [{ name: "b", type: "uint8", size: 1, array_len: 2 ** 31 }] },
      });
  }
}

/** A stream declaring a huge RAM block and sending a few pages far apart. */
function hugeSparseStream(r: Rng): Uint8Array {
  const parts: number[] = [0x51, 0x45, 0x56, 0x4d, 0, 0, 0, 3];
  const push = (b: Uint8Array | number[]) => parts.push(...b);
  const u32 = (v: number) => push([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
  const u64 = (v: number) => {
    u32(Math.floor(v / 2 ** 32));
    u32(v >>> 0);
  };
  const bits = r.pick([10, 12, 12, 16]);
  const pageSize = 2 ** bits;
  push(configurationBytes("virt", { pageBits: bits }));
  const size = r.pick([2 ** 40, 2 ** 44, 2 ** 48, 2 ** 52, 2 ** 53 - pageSize]);
  const name = new TextEncoder().encode("riscv_virt_board.ram");
  push([SectionType.START]);
  u32(2);
  push([3, 0x72, 0x61, 0x6d]);
  u32(0);
  u32(4);
  u64(size + RamFlag.MEM_SIZE);
  push([name.length, ...name]);
  u64(size);
  u64(RamFlag.EOS);
  push([SectionType.FOOTER]);
  u32(2);
  push([SectionType.PART]);
  u32(2);
  const pages = 1 + r.int(40);
  for (let i = 0; i < pages; i++) {
    const page = r.int(Math.floor(size / pageSize));
    const address = Math.floor(page / 64) * 64 * pageSize;
    const whole = r.chance(0.5);
    u64(address + (whole ? RamFlag.PAGE : RamFlag.ZERO) + (i > 0 ? RamFlag.CONTINUE : 0));
    if (i === 0) push([name.length, ...name]);
    if (whole) push(new Uint8Array(pageSize).fill(1 + i));
    else push([r.chance(0.8) ? 0 : 0x33]);
  }
  u64(RamFlag.EOS);
  push([SectionType.FOOTER]);
  u32(2);
  push([SectionType.END]);
  u32(2);
  u64(RamFlag.EOS);
  push([SectionType.FOOTER]);
  u32(2);
  push([SectionType.EOF]);
  return new Uint8Array(parts);
}

/** One mutator. */
export interface QemuMutator {
  name: string;
  apply(b: Uint8Array, spans: QemuSpan[], r: Rng, corpus: readonly Uint8Array[]): Uint8Array;
}

const RAM_FLAG_VALUES = [
  0,
  RamFlag.XBZRLE,
  RamFlag.COMPRESS_PAGE,
  RamFlag.HOOK,
  RamFlag.MULTIFD_FLUSH,
  0x400,
  0x800,
  RamFlag.ZERO | RamFlag.PAGE,
  RamFlag.CONTINUE,
  RamFlag.EOS,
  RamFlag.MEM_SIZE,
  RamFlag.MEM_SIZE | RamFlag.PAGE,
  RamFlag.EOS | RamFlag.PAGE,
];

export const QEMU_MUTATORS: readonly QemuMutator[] = [
  {
    name: "bit flips",
    apply(b, _s, r) {
      const out = b.slice();
      for (let n = 1 + r.int(8); n > 0; n--) out[r.int(out.length)] ^= 1 << r.int(8);
      return out;
    },
  },
  {
    name: "interesting bytes",
    apply(b, _s, r) {
      const out = b.slice();
      for (let n = 1 + r.int(4); n > 0; n--) {
        out[r.int(out.length)] = r.pick([0, 0xff, 0x7f, 0x80, 1, 0x7e, 0x05, 0x06, 0x08]);
      }
      return out;
    },
  },
  {
    name: "truncate",
    apply(b, spans, r) {
      const s = pick(spans, r);
      const at = r.chance(0.5) || s === undefined
        ? r.int(b.length)
        : Math.max(0, s.offset + r.pick([0, -1, 1, 5, s.length - 1, s.length]));
      return b.slice(0, Math.min(at, b.length));
    },
  },
  {
    name: "RAM record flags",
    apply(b, spans, r) {
      const s = pick(spans, r, r.chance(0.7) ? "page" : "ram-blocks");
      if (s === undefined) return b;
      const out = b.slice();
      const v = be(out);
      const lo = v.getUint32(s.offset + 4);
      v.setUint32(s.offset + 4, ((lo & ~0x3ff) | r.pick(RAM_FLAG_VALUES)) >>> 0);
      return out;
    },
  },
  {
    name: "RAM record address",
    apply(b, spans, r) {
      const s = pick(spans, r, "page");
      if (s === undefined) return b;
      const out = b.slice();
      const v = be(out);
      const flags = v.getUint32(s.offset + 4) & 0x3ff;
      const hi = r.pick([0, 1, 0x7fff_ffff, 0xffff_ffff, 0x20_0000]);
      const lo = r.pick([0, 0x1000, 0xffff_f000, 0x8000_0000]);
      v.setUint32(s.offset, hi);
      v.setUint32(s.offset + 4, (lo | flags) >>> 0);
      return out;
    },
  },
  {
    name: "block list sizes",
    apply(b, spans, r) {
      const s = pick(spans, r, "ram-blocks");
      if (s === undefined) return b;
      const out = b.slice();
      const v = be(out);
      const hi = r.pick([0, 1, 0x100, 0x20_0000, 0xffff_ffff]);
      if (r.chance(0.5)) {
        // The total in the MEM_SIZE word.
        v.setUint32(s.offset, hi);
        v.setUint32(s.offset + 4, ((r.u32() & ~0xfff) | RamFlag.MEM_SIZE) >>> 0);
      } else {
        // The first block's size, after its name.
        const n = out[s.offset + 8];
        const at = s.offset + 9 + n;
        if (at + 8 <= out.length) {
          v.setUint32(at, hi);
          v.setUint32(at + 4, r.pick([0, 0x1000, 0x1234, 0xffff_ffff, r.u32()]));
        }
      }
      return out;
    },
  },
  {
    name: "name lengths",
    apply(b, spans, r) {
      const s = pick(spans, r, r.pick(["ram-blocks", "device", "configuration", "page"]));
      if (s === undefined) return b;
      const out = b.slice();
      // The length byte (or u32 for the machine name) of the record's first name.
      const at = s.kind === "ram-blocks"
        ? s.offset + 8
        : s.kind === "device"
        ? s.offset + 5
        : s.kind === "page"
        ? s.offset + 8
        : s.offset + 4;
      if (at < out.length) out[at] = r.pick([0, 0xff, out[at] + 1, out[at] - 1]) & 0xff;
      return out;
    },
  },
  {
    name: "section headers and footers",
    apply(b, spans, r) {
      const s = pick(spans, r, r.pick(["device", "ram-section", "device"]));
      if (s === undefined) return b;
      const out = b.slice();
      const v = be(out);
      switch (r.int(5)) {
        case 0: // section type
          out[s.offset] = r.pick([
            0x00,
            0x01,
            0x02,
            0x03,
            0x04,
            0x05,
            0x06,
            0x07,
            0x08,
            0x09,
            0x7e,
            0xff,
          ]);
          break;
        case 1: // section id
          v.setUint32(s.offset + 1, hugeU32(r));
          break;
        case 2: // footer marker
          out[s.offset + s.length - 5] ^= 0xff;
          break;
        case 3: // footer id
          v.setUint32(s.offset + s.length - 4, hugeU32(r));
          break;
        default: // version or instance of a device
          if (s.dataStart !== undefined) v.setUint32(s.dataStart - r.pick([4, 8]), hugeU32(r));
      }
      return out;
    },
  },
  {
    name: "footer look-alikes in device data",
    apply(b, spans, r) {
      const devices = spans.filter((s) => s.kind === "device");
      const s = pick(devices, r);
      if (s === undefined || s.dataStart === undefined) return b;
      const ids = devices.map((d) => d.sectionId!);
      const pieces: number[] = [];
      for (let n = 1 + r.int(r.chance(0.2) ? 5000 : 20); n > 0; n--) {
        const id = r.pick([...ids, s.sectionId!, 0]);
        pieces.push(0x7e, id >>> 24, (id >>> 16) & 0xff, (id >>> 8) & 0xff, id & 0xff);
        if (r.chance(0.5)) pieces.push(r.pick([0x04, 0x00, 0x08, 0x06]));
      }
      const dataLength = s.length - (s.dataStart - s.offset) - 5;
      const at = s.dataStart + r.int(dataLength + 1);
      return splice(b, at, 0, new Uint8Array(pieces));
    },
  },
  {
    name: "resize device data",
    apply(b, spans, r) {
      const s = pick(spans, r, "device");
      if (s === undefined || s.dataStart === undefined) return b;
      const dataLength = s.length - (s.dataStart - s.offset) - 5;
      const at = s.dataStart + r.int(dataLength + 1);
      return r.chance(0.5)
        ? splice(b, at, Math.min(1 + r.int(16), s.dataStart + dataLength - at), new Uint8Array())
        : splice(b, at, 0, r.bytes(1 + r.int(16)));
    },
  },
  {
    name: "commands",
    apply(b, spans, r) {
      const s = pick(spans, r, r.pick(["device", "eof", "ram-section"]));
      if (s === undefined) return b;
      const length = r.pick([0, 4, 0xffff, 100]);
      const cmd = new Uint8Array(5 + Math.min(length, r.chance(0.5) ? length : 2));
      cmd[0] = SectionType.COMMAND;
      be(cmd).setUint16(1, r.pick([0, 1, 3, 0xffff]));
      be(cmd).setUint16(3, length);
      const at = s.kind === "eof" ? s.offset : s.offset + s.length;
      return splice(b, at, 0, cmd);
    },
  },
  {
    name: "configuration",
    apply(b, spans, r) {
      const s = pick(spans, r, "configuration");
      if (s === undefined) return b;
      const c = r.int(6);
      const conf = c === 0
        ? configurationBytes("virt", { pageBits: r.pick([0, 9, 10, 11, 16, 17, 31]) })
        : c === 1
        ? configurationBytes("virt", {
          capabilities: [r.pick(["mapped-ram", "x-ignore-shared", "postcopy-ram", "\u00ff"])],
        })
        : c === 2
        ? configurationBytes("x".repeat(r.pick([255, 256, 1000])))
        : c === 3
        ? configurationBytes("virt", {
          pageBits: 12,
          capabilities: Array(r.pick([256, 257])).fill("a"),
        })
        : c === 4
        ? new Uint8Array([
          ...configurationBytes("virt"),
          SectionType.SUBSECTION,
          3,
          0x61,
          0x62,
          0x63,
          0,
          0,
          0,
          1,
        ])
        : configurationBytes("virt");
      // Replace it, or (c === 5) add a second one after it.
      return c === 5
        ? splice(b, s.offset + s.length, 0, conf)
        : splice(b, s.offset, s.length, conf);
    },
  },
  {
    name: "hostile JSON description",
    apply(b, spans, r) {
      const eof = pick(spans, r, "eof");
      if (eof === undefined) return b;
      const devices: { name: string; instance: number }[] = [];
      for (const s of spans) {
        if (s.kind !== "device" || s.dataStart === undefined) continue;
        const n = b[s.offset + 5];
        if (s.offset + 6 + n + 4 > b.length) continue;
        devices.push({
          name: new TextDecoder().decode(b.subarray(s.offset + 6, s.offset + 6 + n)),
          instance: be(b).getUint32(s.offset + 6 + n),
        });
      }
      const text = new TextEncoder().encode(hostileDescription(r, devices));
      const head = new Uint8Array(5);
      head[0] = SectionType.VMDESCRIPTION;
      be(head).setUint32(1, r.chance(0.9) ? text.length : hugeU32(r));
      const tail = new Uint8Array(head.length + text.length);
      tail.set(head);
      tail.set(text, head.length);
      return splice(b, eof.offset + 1, b.length - eof.offset - 1, tail);
    },
  },
  {
    name: "records dropped or duplicated",
    apply(b, spans, r) {
      const s = pick(spans.filter((x) => x.kind !== "header"), r);
      if (s === undefined) return b;
      return r.chance(0.5)
        ? splice(b, s.offset, s.length, new Uint8Array())
        : splice(b, s.offset, 0, b.slice(s.offset, s.offset + s.length));
    },
  },
  {
    name: "splice from another stream",
    apply(b, _s, r, corpus) {
      const other = r.pick(corpus);
      const from = r.int(other.length);
      const piece = other.slice(from, from + 1 + r.int(4096));
      const at = r.int(b.length + 1);
      return splice(b, at, r.chance(0.5) ? Math.min(piece.length, b.length - at) : 0, piece);
    },
  },
  {
    name: "garbage",
    apply(b, _s, r) {
      const at = r.int(b.length + 1);
      return splice(b, at, 0, r.bytes(1 + r.int(64)));
    },
  },
  {
    name: "huge machine, sparse pages",
    apply: (_b, _s, r) => hugeSparseStream(r),
  },
];

const spanCache = new WeakMap<Uint8Array, Promise<QemuSpan[]>>();

/** The corpus {@linkcode makeQemuCase} draws from (see `buildQemuCorpus`). */
export interface QemuCorpus {
  whole: Uint8Array[];
  small: Uint8Array[];
}

/** Share of cases made from a whole real stream (64 MiB guests, about a second per case). */
const WHOLE_SHARE = 0.01;

/**
 * Builds case `index`: one to three mutations of one corpus stream. `source` numbers the whole
 * streams first, then the small ones.
 */
export async function makeQemuCase(
  seed: number,
  index: number,
  qemuCorpus: QemuCorpus,
): Promise<{ bytes: Uint8Array; source: number; mutators: string[] }> {
  const r = new Rng(caseSeed(seed, index) ^ 0x51e4d);
  const corpus = [...qemuCorpus.whole, ...qemuCorpus.small];
  const source = r.chance(WHOLE_SHARE)
    ? r.int(qemuCorpus.whole.length)
    : qemuCorpus.whole.length + r.int(qemuCorpus.small.length);
  let bytes = corpus[source];
  const mutators: string[] = [];
  for (let n = 1 + (r.chance(0.3) ? r.int(3) : 0); n > 0; n--) {
    const m = r.pick(QEMU_MUTATORS);
    mutators.push(m.name);
    // Structure-aware mutators need a map of a stream that reads; after a first mutation the
    // map of the source is used (offsets still mostly right, which is damage enough).
    let spans = spanCache.get(corpus[source]);
    if (spans === undefined) {
      spans = qemuSpans(corpus[source]);
      spanCache.set(corpus[source], spans);
    }
    const fit = (await spans).filter((s) => s.offset + s.length <= bytes.length);
    bytes = m.apply(bytes, fit, r, qemuCorpus.small);
  }
  return { bytes, source, mutators };
}
