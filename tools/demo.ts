/**
 * `deno task demo`: writes a snapshot of a synthetic machine with its pages in random order,
 * inspects it, verifies it, then damages copies and shows verify catching each.
 *
 * @module
 */
import { SnapshotWriter } from "../format/writer.ts";
import { encodeDeviceState } from "../format/device_state.ts";
import { computeContentDigest } from "../format/content_digest.ts";
import { toHex } from "../format/checksum.ts";
import { SnapshotFileReader } from "../format/file_reader.ts";
import { inspectSnapshot } from "./inspect.ts";
import { verifySnapshot } from "./verify.ts";

const PAGE = 4096;
const RAM_PAGES = 4096; // 16 MiB

function synthesize(): Uint8Array {
  const ram = new Uint8Array(RAM_PAGES * PAGE);
  let s = 0x1234_5678;
  const next = () => (s = (Math.imul(s, 1_103_515_245) + 12_345) >>> 0);
  const text = new TextEncoder().encode("livesnap demo: a guest's text-like memory, repeated. ");
  for (let p = 0; p < RAM_PAGES; p++) {
    const kind = next() % 100;
    const page = ram.subarray(p * PAGE, (p + 1) * PAGE);
    if (kind < 60) continue;
    if (kind < 85) { for (let i = 0; i < PAGE; i++) page[i] = text[(i + p) % text.length]; }
    else for (let i = 0; i < PAGE; i++) page[i] = next() >>> 24;
  }
  return ram;
}

async function verifyFile(label: string, path: string): Promise<void> {
  const r = await verifySnapshot((await Deno.open(path)).readable);
  console.log(
    `  verify ${label.padEnd(22)} ${r.ok ? "OK" : `FAILED  ${r.error?.kind}: ${r.error?.message}`}`,
  );
}

const dir = await Deno.makeTempDir({ prefix: "livesnap-demo-" });
try {
  const ram = synthesize();
  const description = {
    regions: [{ name: "ram", base: 0x8000_0000, size: ram.length, pageSize: PAGE }],
    creator: "livesnap demo",
    createdAt: Date.now(),
  };
  const devices = [
    {
      id: "hart",
      instance: 0,
      version: 1,
      state: encodeDeviceState({ pc: 0x8000_0040, x: Array(32).fill(7) }),
    },
    {
      id: "uart",
      instance: 0,
      version: 1,
      state: encodeDeviceState({ lsr: 0x60, rx: new Uint8Array([104, 105]) }),
    },
  ];
  const order = [...Array(RAM_PAGES).keys()];
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const path = `${dir}/machine.lsnap`;
  console.log(`Writing a 16 MiB synthetic machine, ${RAM_PAGES} pages in random order, to ${path}`);
  const t0 = performance.now();
  const w = await SnapshotWriter.createFile(path, description);
  for (const [k, p] of order.entries()) {
    await w.writePages(0, p, ram.subarray(p * PAGE, (p + 1) * PAGE));
    if (k === RAM_PAGES / 2) await w.writeDevice(devices[0]);
  }
  await w.writeDevice(devices[1]);
  const summary = await w.close();
  console.log(
    `  ${summary.bytes} bytes (${(100 * summary.bytes / ram.length).toFixed(1)}% of RAM) in ${
      (performance.now() - t0).toFixed(0)
    } ms\n`,
  );

  console.log("inspect:");
  const info = await inspectSnapshot((await Deno.open(path)).readable);
  console.log(
    `  format ${info.formatVersion}, complete ${info.complete}, ${info.records} records, index ${info.indexed}`,
  );
  console.log(
    `  pages: ${info.pages.present} present, ${info.pages.zero} zero, in ${info.pages.records} records ${
      JSON.stringify(info.pages.encodings)
    }`,
  );
  console.log(
    `  devices: ${info.devices.map((d) => `${d.id}#${d.instance} v${d.version}`).join(", ")}`,
  );
  console.log(`  content digest ${info.digests.content}`);
  const fromMemory = toHex(await computeContentDigest(description, [ram], devices));
  console.log(
    `  same digest computed from the machine in memory: ${fromMemory === info.digests.content}\n`,
  );

  const reader = await SnapshotFileReader.open(path);
  const probe = order[17];
  const page = await reader.readPage(0, probe);
  reader.close();
  const same = page.every((b, i) => b === ram[probe * PAGE + i]);
  console.log(`random access: page ${probe} read through the index matches RAM: ${same}\n`);

  console.log("verify:");
  await verifyFile("intact file", path);
  const bytes = await Deno.readFile(path);
  const flipped = bytes.slice();
  flipped[Math.floor(bytes.length / 2)] ^= 0x01;
  await Deno.writeFile(`${dir}/flipped.lsnap`, flipped);
  await verifyFile("one bit flipped", `${dir}/flipped.lsnap`);
  await Deno.writeFile(`${dir}/cut.lsnap`, bytes.subarray(0, Math.floor(bytes.length * 0.7)));
  await verifyFile("cut at 70%", `${dir}/cut.lsnap`);
  await Deno.writeFile(`${dir}/nofooter.lsnap`, bytes.subarray(0, bytes.length - 32));
  await verifyFile("footer missing", `${dir}/nofooter.lsnap`);
} finally {
  await Deno.remove(dir, { recursive: true });
}
