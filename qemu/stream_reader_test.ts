import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertMatch,
  assertRejects,
} from "@std/assert/mod.js";
import { loadFixture, loadManifest, sha256Hex } from "./_fixtures_test_util.ts";
import { STREAM_KINDS } from "./_make_stream.ts";
import { RamFlag } from "./constants.ts";
import {
  QemuStreamCorruptError,
  QemuStreamError,
  QemuStreamTruncatedError,
  QemuStreamUnsupportedError,
} from "./errors.ts";
import { extractQemuRam } from "./extract_ram.ts";
import type { QemuDeviceSection, QemuStreamRecord } from "./model.ts";
import { isQemuStream, readQemuStream } from "./stream_reader.ts";
import { QemuStreamWriter } from "./stream_writer.ts";

async function records(bytes: Uint8Array): Promise<QemuStreamRecord[]> {
  const out: QemuStreamRecord[] = [];
  for await (const r of readQemuStream([bytes])) out.push(r);
  return out;
}

type RecordOf<K extends QemuStreamRecord["kind"]> = Extract<QemuStreamRecord, { kind: K }>;

/** The first record of a kind that matches `pred`; fails the test if there is none. */
function first<K extends QemuStreamRecord["kind"]>(
  rs: QemuStreamRecord[],
  kind: K,
  pred: (r: RecordOf<K>) => boolean = () => true,
): RecordOf<K> {
  const r = rs.find((r) => r.kind === kind && pred(r as RecordOf<K>));
  if (r === undefined) throw new Error(`no ${kind} record`);
  return r as RecordOf<K>;
}

/** Reads a stream to the end and returns the error it throws. */
async function readError(bytes: Uint8Array | Uint8Array[]): Promise<QemuStreamError> {
  const e = await assertRejects(async () => {
    for await (const _ of readQemuStream(Array.isArray(bytes) ? bytes : [bytes])) { /* drain */ }
  });
  assertInstanceOf(e, QemuStreamError);
  return e;
}

const VIRT_CONFIG = new Uint8Array([7, 0, 0, 0, 4, 0x76, 0x69, 0x72, 0x74]);

async function buildStream(
  devices: QemuDeviceSection[],
  pages: [string, number, Uint8Array | number][] = [],
  vmdesc = '{"page_size": 4096, "devices": []}',
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const w = new QemuStreamWriter({
    write: (c: Uint8Array) => Promise.resolve(chunks.push(c.slice())),
  });
  await w.writeHeader(VIRT_CONFIG);
  await w.writeRamBlocks([{ name: "ram", size: 4 * 4096 }], { sectionId: 2 });
  for (const [b, a, p] of pages) await w.writePage(b, a, p);
  for (const d of devices) await w.writeDeviceSection(d);
  await w.close(vmdesc);
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

function device(id: number, idstr: string, data: number[]): QemuDeviceSection {
  return {
    sectionType: 4,
    sectionId: id,
    idstr,
    instanceId: 0,
    versionId: 1,
    data: new Uint8Array(data),
  };
}

Deno.test("readQemuStream() counts the pages QEMU says it sent, for every kind of stream", async () => {
  const manifest = await loadManifest();
  for (const kind of STREAM_KINDS) {
    const facts = manifest.streams[kind];
    const bytes = await loadFixture(kind);
    assertEquals(bytes.length, facts.size, kind);
    let normal = 0;
    let zero = 0;
    for await (const r of readQemuStream([bytes])) {
      if (r.kind === "page") r.data !== undefined ? normal++ : zero++;
    }
    assertEquals({ kind, normal, zero }, {
      kind,
      normal: facts.normalPages,
      zero: facts.zeroPages,
    });
  }
});

Deno.test("extractQemuRam() equals QEMU's own pmemsave dump of guest RAM", async () => {
  const manifest = await loadManifest();
  for (const kind of ["paused", "live", "multipass"] as const) {
    const ram = await extractQemuRam([await loadFixture(kind)], manifest.ram.block);
    assertEquals(ram.length, manifest.ram.size);
    assertEquals(await sha256Hex(ram), manifest.streams[kind].pmemsaveSha256, kind);
  }
});

Deno.test("readQemuStream() reads a multi-pass stream whose later passes resend pages", async () => {
  const seen = new Map<string, number>();
  let resent = 0;
  let ramSections = 0;
  for await (const r of readQemuStream([await loadFixture("multipass")])) {
    if (r.kind === "ram-section") ramSections++;
    if (r.kind !== "page") continue;
    const key = `${r.block}@${r.address}`;
    if (seen.has(key)) resent++;
    seen.set(key, r.offset);
  }
  assert(resent > 0, "the multipass fixture resends pages");
  assert(ramSections > 3, `ram sections: ${ramSections}`);
});

Deno.test("readQemuStream() yields the sections, blocks and devices of a real stream", async () => {
  const rs = await records(await loadFixture("paused"));
  assertEquals(rs[0], { kind: "header", offset: 0, version: 3 });
  const config = first(rs, "configuration");
  assertEquals(config.configuration.machine, "virt");
  const blocks = first(rs, "ram-blocks");
  assertEquals(blocks.blocks.map((b) => [b.name, b.size]), [
    ["riscv_virt_board.ram", 64 << 20],
    ["virt.flash0", 32 << 20],
    ["virt.flash1", 32 << 20],
    ["riscv_virt_board.mrom", 0xf000],
  ]);
  const devices = rs.filter((r) => r.kind === "device").map((r) =>
    r.kind === "device" ? `${r.section.idstr}/${r.section.instanceId}` : ""
  );
  // The JSON description lists the same devices in the same order.
  const vmdesc = first(rs, "vmdesc");
  assertEquals(devices, vmdesc.description.devices.map((d) => `${d.name}/${d.instance_id}`));
  assert(devices.includes("cpu/0") && devices.includes("serial/0"));
  assertEquals(rs.at(-2)?.kind, "eof");
});

Deno.test("readQemuStream() reads the same records whatever the chunking", async () => {
  const bytes = await loadFixture("background");
  const whole = await records(bytes);
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += 997) chunks.push(bytes.subarray(i, i + 997));
  const pieces: QemuStreamRecord[] = [];
  for await (const r of readQemuStream(chunks)) pieces.push(r);
  assertEquals(pieces.length, whole.length);
  assertEquals(pieces, whole);
});

Deno.test("isQemuStream() recognises the magic and version", async () => {
  assert(isQemuStream(await loadFixture("paused")));
  assert(!isQemuStream(new TextEncoder().encode("QEVM\0\0\0\x02")));
  assert(!isQemuStream(new Uint8Array([0x89, 0x4c, 0x53, 0x4e, 0x41, 0x50, 0x0d, 0x0a])));
  assert(!isQemuStream(new Uint8Array(3)));
});

Deno.test("readQemuStream() delimits a device section whose data contains its own footer", async () => {
  // Section 5's data holds "7e 00000005" followed by what looks like the header of section 6.
  const tricky = [1, 2, 0x7e, 0, 0, 0, 5, 4, 0, 0, 0, 6, 3, 0x61, 0x62, 0x63, 9, 9];
  const devices = [device(5, "dev-a", tricky), device(6, "dev-b", [0xaa])];
  const vmdesc = JSON.stringify({
    page_size: 4096,
    devices: devices.map((d) => ({ name: d.idstr, instance_id: 0, fields: [] })),
  });
  const bytes = await buildStream(devices, [], vmdesc);
  const devs = (await records(bytes)).flatMap((r) => r.kind === "device" ? [r.section] : []);
  assertEquals(devs.map((d) => [d.idstr, [...d.data]]), [["dev-a", tricky], ["dev-b", [0xaa]]]);
});

Deno.test("readQemuStream() keeps the last copy of a page sent twice", async () => {
  const bytes = await buildStream([], [
    ["ram", 4096, new Uint8Array(4096).fill(1)],
    ["ram", 8192, new Uint8Array(4096).fill(2)],
    ["ram", 4096, new Uint8Array(4096).fill(3)],
    ["ram", 8192, 0],
  ]);
  const ram = await extractQemuRam([bytes], "ram");
  assertEquals([ram[4096], ram[8191], ram[8192], ram[12287]], [3, 3, 0, 0]);
});

Deno.test("readQemuStream() rejects damaged and unsupported input with the offset", async (t) => {
  const good = await loadFixture("paused");
  const rs = await records(good);
  const firstPage = first(rs, "page", (r) => r.data !== undefined);
  const firstZero = first(rs, "page", (r) => r.data === undefined);
  const firstDevice = first(rs, "device");
  const ramSection = first(rs, "ram-section", (r) => r.sectionType === 2);
  const patched = (at: number, ...bytes: number[]) => {
    const b = good.slice();
    b.set(bytes, at);
    return b;
  };
  const orFlags = (at: number, flags: number) => {
    const b = good.slice();
    b[at + 6] |= flags >> 8;
    b[at + 7] |= flags & 0xff;
    return b;
  };
  const cases: [string, Uint8Array, typeof QemuStreamError, number, RegExp][] = [
    ["bad magic", patched(0, 0x51, 0x45, 0x56, 0x4e), QemuStreamCorruptError, 0, /bad magic/],
    ["version 2", patched(4, 0, 0, 0, 2), QemuStreamUnsupportedError, 4, /version 2/],
    [
      "unknown section type",
      patched(ramSection.offset, 0x09),
      QemuStreamCorruptError,
      ramSection.offset,
      /unknown section type 0x09/,
    ],
    [
      "an XBZRLE page",
      orFlags(firstPage.offset, RamFlag.XBZRLE),
      QemuStreamUnsupportedError,
      firstPage.offset,
      /XBZRLE/,
    ],
    [
      "a compressed page",
      orFlags(firstZero.offset, RamFlag.COMPRESS_PAGE),
      QemuStreamUnsupportedError,
      firstZero.offset,
      /compressed page/,
    ],
    [
      "a multifd flush",
      orFlags(firstZero.offset, RamFlag.MULTIFD_FLUSH),
      QemuStreamUnsupportedError,
      firstZero.offset,
      /multifd/,
    ],
    [
      "an unknown RAM flag",
      orFlags(firstZero.offset, 0x400),
      QemuStreamCorruptError,
      firstZero.offset,
      /unknown RAM flags 0x422/,
    ],
    [
      "a page past its block",
      patched(firstPage.offset, 0, 0, 0, 1),
      QemuStreamCorruptError,
      firstPage.offset,
      /past the end of block 'riscv_virt_board.ram'/,
    ],
    [
      "an unknown block name",
      patched(firstPage.offset + 9, 0x78),
      QemuStreamCorruptError,
      firstPage.offset,
      /unknown RAM block 'xiscv_virt_board.ram'/,
    ],
    [
      "a wrong RAM footer",
      patched(ramSection.offset + ramSection.length - 1, 9),
      QemuStreamCorruptError,
      ramSection.offset + ramSection.length - 5,
      /expected the footer of section 2/,
    ],
    [
      "a device section without its footer",
      patched(firstDevice.offset + 14 + 5 + 24, 0x7f),
      QemuStreamCorruptError,
      firstDevice.offset,
      /section 0 \('timer'\) has no footer/,
    ],
    [
      "bytes after the JSON description",
      new Uint8Array([...good, 0]),
      QemuStreamCorruptError,
      good.length,
      /1 stray byte\(s\) follow the JSON description/,
    ],
  ];
  for (const [name, bytes, Class, offset, message] of cases) {
    await t.step(name, async () => {
      const e = await readError(bytes);
      assertInstanceOf(e, Class);
      assertEquals(e.offset, offset);
      assertMatch(e.message, message);
      assertMatch(e.message, new RegExp(`^Cannot read QEMU stream at byte ${offset}: `));
    });
  }
});

Deno.test("readQemuStream() reports a stream cut at any section boundary as truncated", async (t) => {
  const good = await loadFixture("paused");
  const rs = await records(good);
  const cuts = new Set<number>();
  // Every record start but the JSON description's: a stream may end right after EOF.
  for (const r of rs) {
    if (r.kind !== "page" && r.kind !== "vmdesc" && r.offset > 0) cuts.add(r.offset);
  }
  cuts.add(first(rs, "vmdesc").offset + 3);
  cuts.add(first(rs, "vmdesc").offset + 100);
  const firstPage = first(rs, "page", (r) => r.data !== undefined);
  cuts.add(firstPage.offset + 3);
  cuts.add(firstPage.offset + 100);
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    await t.step(`cut at ${cut}`, async () => {
      const e = await readError(good.subarray(0, cut));
      assert(
        e instanceof QemuStreamTruncatedError ||
          (e instanceof QemuStreamCorruptError && /has no footer/.test(e.message)),
        `${e.name}: ${e.message}`,
      );
      assert(e.offset <= cut, `offset ${e.offset} within the ${cut} bytes`);
    });
  }
});
