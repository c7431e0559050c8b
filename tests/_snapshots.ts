// Helpers shared by the format tests: build machines and write snapshots into memory.
import { SnapshotWriter, type WriterOptions } from "../format/writer.ts";
import type { MachineDescription } from "../format/header.ts";
import type { DeviceSectionInput } from "../format/device_section.ts";
import { encodeDeviceState } from "../format/device_state.ts";

export const PAGE = 4096;

/** A small deterministic pseudo-random generator (xorshift32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

export function shuffle<T>(list: T[], seed: number): T[] {
  const r = rng(seed);
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

export function description(pages = 64, extra = false): MachineDescription {
  const regions = [{ name: "ram", base: 0x8000_0000, size: pages * PAGE, pageSize: PAGE }];
  if (extra) regions.push({ name: "rom", base: 0x1000, size: 4 * 512, pageSize: 512 });
  return { regions, creator: "livesnap tests", createdAt: 1_700_000_000_000 };
}

/** RAM with zero pages, text-like pages and random pages. */
export function makeRam(pages: number, seed: number): Uint8Array {
  const r = rng(seed);
  const ram = new Uint8Array(pages * PAGE);
  const words = new TextEncoder().encode("the quick brown fox jumps over the lazy dog 0123456789 ");
  for (let p = 0; p < pages; p++) {
    const kind = r();
    const page = ram.subarray(p * PAGE, (p + 1) * PAGE);
    if (kind < 0.4) continue;
    if (kind < 0.7) { for (let i = 0; i < PAGE; i++) page[i] = words[(i * 7 + p) % words.length]; }
    else for (let i = 0; i < PAGE; i++) page[i] = (r() * 256) | 0;
  }
  return ram;
}

export function devices(): DeviceSectionInput[] {
  return [
    {
      id: "uart",
      instance: 0,
      version: 1,
      state: encodeDeviceState({ lsr: 0x60, fifo: new Uint8Array([65, 66]) }),
    },
    {
      id: "hart",
      instance: 0,
      version: 2,
      state: encodeDeviceState({ pc: 0x8000_0000, x: [0, 1, 2, 3] }),
    },
    {
      id: "clint",
      instance: 0,
      version: 1,
      state: encodeDeviceState({ mtime: 12345, mtimecmp: [99] }),
    },
  ];
}

/** Collects everything written into one array. */
export function memorySink(): { stream: WritableStream<Uint8Array>; bytes: () => Uint8Array } {
  const chunks: Uint8Array[] = [];
  const stream = new WritableStream<Uint8Array>({
    write(c) {
      chunks.push(c.slice());
    },
  });
  return {
    stream,
    bytes: () => {
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let o = 0;
      for (const c of chunks) {
        out.set(c, o);
        o += c.length;
      }
      return out;
    },
  };
}

export interface WriteSpec {
  description: MachineDescription;
  ram: Uint8Array;
  order?: number[];
  batch?: number;
  options?: WriterOptions;
  devices?: DeviceSectionInput[];
  /** Called with the writer after pages and before close. */
  extra?: (w: SnapshotWriter) => Promise<void>;
}

/** Writes RAM (region 0) in the given page order and batch size into memory. */
export async function writeToBytes(spec: WriteSpec): Promise<Uint8Array> {
  const sink = memorySink();
  const w = await SnapshotWriter.create(sink.stream, spec.description, spec.options);
  const pages = spec.ram.length / PAGE;
  const order = spec.order ?? [...Array(pages).keys()];
  const batch = spec.batch ?? 1;
  const devs = spec.devices ?? devices();
  for (let i = 0; i < order.length; i += batch) {
    const list = order.slice(i, i + batch);
    const data = new Uint8Array(list.length * PAGE);
    list.forEach((p, k) => data.set(spec.ram.subarray(p * PAGE, (p + 1) * PAGE), k * PAGE));
    await w.writePageList(0, list, data);
    if (i === 0) { for (const d of devs.slice(0, 1)) await w.writeDevice(d); }
  }
  for (const d of devs.slice(1)) await w.writeDevice(d);
  if (spec.extra) await spec.extra(w);
  await w.close();
  return sink.bytes();
}

/** A stream that hands out `bytes` in chunks of `size`. */
export function chunked(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (at >= bytes.length) {
        c.close();
        return;
      }
      c.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

/** Offsets and lengths of every record (not the prologue or footer) of a well-formed file. */
export function recordSpans(bytes: Uint8Array): { offset: number; length: number; type: number }[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [];
  let o = 16;
  while (o < bytes.length - 32) {
    const type = v.getUint16(o, true);
    const length = 8 + v.getUint32(o + 4, true) + 4;
    out.push({ offset: o, length, type });
    o += length;
  }
  return out;
}
