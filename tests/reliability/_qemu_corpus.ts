/**
 * The QEMU fuzz corpus: the four real streams of QEMU 7.2 in `tests/fixtures/qemu/` (paused,
 * live, multi-pass, background snapshot) and small streams written here that between them hold
 * what those four do not: a stated target page size (1 KiB and 64 KiB pages), the
 * `x-ignore-shared` capability (block addresses in the block list), a UUID, two RAM blocks,
 * pages resent by a later pass, ZERO pages with a non-zero fill byte, commands between device
 * sections, device data holding footer look-alikes (the reader must backtrack), a stream without
 * a JSON description, and JSON descriptions with structs, arrays and subsections.
 *
 * @module
 */
import { loadFixture } from "../../qemu/_fixtures_test_util.ts";
import { STREAM_KINDS } from "../../qemu/_make_stream.ts";
import { SectionType } from "../../qemu/constants.ts";
import type { RamBlock } from "../../qemu/model.ts";
import { readQemuSnapshot } from "../../qemu/snapshot.ts";
import { QemuStreamWriter } from "../../qemu/stream_writer.ts";

const encoder = new TextEncoder();

/** The configuration section: machine name, then subsections (as QEMU's savevm.c writes it). */
export function configurationBytes(
  machine: string,
  o: { pageBits?: number; capabilities?: string[]; uuid?: Uint8Array } = {},
): Uint8Array {
  const out: number[] = [SectionType.CONFIGURATION];
  const u32 = (v: number) => out.push(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  const name = encoder.encode(machine);
  u32(name.length);
  out.push(...name);
  const sub = (id: string) => {
    const b = encoder.encode(id);
    out.push(SectionType.SUBSECTION, b.length, ...b);
    u32(1);
  };
  if (o.pageBits !== undefined) {
    sub("configuration/target-page-bits");
    u32(o.pageBits);
  }
  if (o.capabilities !== undefined) {
    sub("configuration/capabilities");
    u32(o.capabilities.length);
    for (const c of o.capabilities) {
      const b = encoder.encode(c);
      out.push(b.length, ...b);
    }
  }
  if (o.uuid !== undefined) {
    sub("configuration/uuid");
    out.push(...o.uuid);
  }
  return new Uint8Array(out);
}

/** Deterministic bytes that are not all zero. */
function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1_103_515_245) + 12_345) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

interface Synthetic {
  configuration: Uint8Array;
  pageSize: number;
  blocks: RamBlock[];
  /** [block, page number, bytes or fill byte], in stream order (later ones win). */
  pages: [string, number, Uint8Array | number][];
  devices: { idstr: string; instance: number; version: number; data: Uint8Array }[];
  /** Commands written after the device of that index. */
  commands?: { after: number; command: number; data: Uint8Array }[];
  vmdesc?: unknown;
  pagesPerSection?: number;
}

async function write(s: Synthetic): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const w = new QemuStreamWriter({ write: (c: Uint8Array) => Promise.resolve(chunks.push(c)) }, {
    pageSize: s.pageSize,
    pagesPerSection: s.pagesPerSection,
  });
  await w.writeHeader(s.configuration);
  await w.writeRamBlocks(s.blocks, { sectionId: 2 });
  for (const [block, page, bytes] of s.pages) await w.writePage(block, page * s.pageSize, bytes);
  let id = 3;
  for (const [i, d] of s.devices.entries()) {
    await w.writeDeviceSection({
      sectionType: SectionType.FULL,
      sectionId: id++,
      idstr: d.idstr,
      instanceId: d.instance,
      versionId: d.version,
      data: d.data,
    });
    for (const c of s.commands ?? []) if (c.after === i) await w.writeCommand(c.command, c.data);
  }
  await w.close(s.vmdesc === undefined ? undefined : JSON.stringify(s.vmdesc));
  let total = 0;
  for (const c of chunks) total += c.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** A device whose data the description below decodes completely. */
function cpuDevice(): { idstr: string; instance: number; version: number; data: Uint8Array } {
  const data = new Uint8Array(4 + 2 * 8 + 1 + (1 + 1 + 7 + 4) + 1);
  const v = new DataView(data.buffer);
  v.setUint32(0, 0x8000_0010); // pc
  v.setBigUint64(4, 0x1122_3344_5566_7788n); // regs[0]
  v.setBigUint64(12, 0x7e00_0000_037e_0000n); // regs[1]: holds 0x7e and the next section id
  data[20] = 1; // on
  // subsection "cpu/fpu": marker, name length, name, version
  data.set([SectionType.SUBSECTION, 7, ...encoder.encode("cpu/fpu")], 21);
  v.setUint32(30, 1);
  data[34] = 0x7e; // fcsr low byte: a footer marker of no section
  return { idstr: "cpu", instance: 0, version: 3, data };
}

const CPU_DESC = {
  name: "cpu",
  instance_id: 0,
  vmsd_name: "cpu",
  version: 3,
  fields: [
    { name: "pc", type: "uint32", size: 4 },
    { name: "regs", type: "uint64", size: 8, array_len: 2 },
    { name: "on", type: "bool", size: 1 },
  ],
  subsections: [{
    vmsd_name: "cpu/fpu",
    version: 1,
    fields: [{ name: "fcsr", type: "uint8", size: 1 }],
  }],
};

/** The synthetic streams (small: each case runs in milliseconds). */
export async function syntheticStreams(): Promise<Uint8Array[]> {
  const virt = "riscv_virt_board.ram";
  const out: Uint8Array[] = [];
  // virt, 4 KiB pages, two passes, devices with footer look-alikes, a command, a description.
  out.push(
    await write({
      configuration: configurationBytes("virt"),
      pageSize: 4096,
      blocks: [{ name: virt, size: 16 * 4096 }],
      pages: [
        [virt, 0, pattern(4096, 1)],
        [virt, 3, pattern(4096, 2)],
        [virt, 5, 0],
        [virt, 3, pattern(4096, 3)],
        [virt, 0, 0],
      ],
      pagesPerSection: 2,
      devices: [
        cpuDevice(),
        {
          idstr: "serial",
          instance: 0,
          version: 4,
          data: new Uint8Array([1, 0x7e, 0, 0, 0, 4, 0x7e, 0, 0, 0, 3, 2]),
        },
        { idstr: "0000:00:00.0/gpex_root", instance: 0, version: 1, data: pattern(40, 9) },
      ],
      commands: [{ after: 0, command: 3, data: new Uint8Array([0, 0, 0, 7]) }],
      vmdesc: {
        page_size: 4096,
        devices: [
          CPU_DESC,
          {
            name: "serial",
            instance_id: 0,
            vmsd_name: "serial",
            version: 4,
            fields: [
              {
                name: "state",
                type: "struct",
                size: 12,
                struct: {
                  vmsd_name: "state",
                  fields: [{ name: "bytes", type: "buffer", size: 12 }],
                },
              },
            ],
          },
          { name: "0000:00:00.0/gpex_root", instance_id: 0, fields: [] },
        ],
      },
    }),
  );
  // pc, 4 KiB pages stated, x-ignore-shared (block addresses), a UUID, two blocks, a ZERO page
  // with fill 0x5a, CONTINUE across sections, no description.
  out.push(
    await write({
      configuration: configurationBytes("pc-q35-7.2", {
        pageBits: 12,
        capabilities: ["x-ignore-shared"],
        uuid: pattern(16, 4),
      }),
      pageSize: 4096,
      blocks: [{ name: "pc.ram", size: 8 * 4096, address: 0 }, {
        name: "vga.vram",
        size: 4 * 4096,
        address: 0xfd00_0000,
      }],
      pages: [
        ["pc.ram", 1, pattern(4096, 5)],
        ["pc.ram", 2, 0x5a],
        ["vga.vram", 0, pattern(4096, 6)],
        ["pc.ram", 7, pattern(4096, 7)],
      ],
      pagesPerSection: 3,
      devices: [{ idstr: "timer", instance: 0, version: 2, data: pattern(24, 8) }],
    }),
  );
  // 1 KiB pages (the smallest target page), RAM flags above 0x200 are page-offset bits there.
  out.push(
    await write({
      configuration: configurationBytes("virt", { pageBits: 10 }),
      pageSize: 1024,
      blocks: [{ name: virt, size: 32 * 1024 }],
      pages: [[virt, 1, pattern(1024, 10)], [virt, 31, pattern(1024, 11)]],
      devices: [cpuDevice()],
      vmdesc: { page_size: 1024, devices: [CPU_DESC] },
    }),
  );
  // 64 KiB pages (the largest).
  out.push(
    await write({
      configuration: configurationBytes("virt", { pageBits: 16 }),
      pageSize: 65536,
      blocks: [{ name: virt, size: 4 * 65536 }],
      pages: [[virt, 2, pattern(65536, 12)]],
      devices: [{ idstr: "serial", instance: 0, version: 4, data: new Uint8Array(12) }],
      vmdesc: { page_size: 65536, devices: [{ name: "serial", instance_id: 0, fields: [] }] },
    }),
  );
  return out;
}

/**
 * A real stream with its RAM cut down to the first `pages` pages of its first block: the same
 * configuration section, RAM pages, device sections, commands and JSON description as QEMU wrote
 * them, read in milliseconds instead of the second a 64 MiB guest takes.
 */
export async function trimmedStream(real: Uint8Array, pages = 64): Promise<Uint8Array> {
  const snap = await readQemuSnapshot(real);
  const block = snap.blocks[0];
  const size = Math.min(block.size, pages * snap.pageSize);
  const chunks: Uint8Array[] = [];
  const w = new QemuStreamWriter({ write: (c: Uint8Array) => Promise.resolve(chunks.push(c)) }, {
    pageSize: snap.pageSize,
  });
  await w.writeHeader(snap.configuration.bytes);
  await w.writeRamBlocks([{ ...block, size }], snap.ramSection);
  for (const [address, data] of [...snap.pages.get(block.name)!].sort((a, b) => a[0] - b[0])) {
    if (address < size) await w.writePage(block.name, address, data);
  }
  for (const c of snap.commands) if (c.afterDevice === 0) await w.writeCommand(c.command, c.data);
  for (const [i, d] of snap.devices.entries()) {
    await w.writeDeviceSection(d);
    for (const c of snap.commands) {
      if (c.afterDevice === i + 1) await w.writeCommand(c.command, c.data);
    }
  }
  await w.close(snap.vmdescText);
  let total = 0;
  for (const c of chunks) total += c.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** The corpus, in two parts: the real streams whole (a 64 MiB guest: a second per case, so
 * cases take them seldom) and small streams (each case runs in milliseconds). Equal on every
 * call. */
export async function buildQemuCorpus(): Promise<{ whole: Uint8Array[]; small: Uint8Array[] }> {
  const whole: Uint8Array[] = [];
  for (const kind of STREAM_KINDS) whole.push(await loadFixture(kind));
  const small: Uint8Array[] = [];
  for (const real of whole) small.push(await trimmedStream(real));
  small.push(...await syntheticStreams());
  return { whole, small };
}
