/**
 * QEMU migration streams through the main commands (`inspect`, `convert`) and their old names
 * (`qemu-inspect`, `qemu-convert`), on the committed fixtures in tests/fixtures/qemu/.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert/mod.js";
import { readSnapshot } from "../format/stream_reader.ts";
import { loadFixture, loadManifest, sha256Hex } from "../qemu/_fixtures_test_util.ts";
import { readQemuSnapshot } from "../qemu/snapshot.ts";
import { main as convert } from "./convert_command.ts";
import { main as inspect } from "./inspect_command.ts";
import { main as qemuConvert } from "./qemu_convert_command.ts";
import { main as qemuInspect } from "./qemu_inspect_command.ts";

async function capture(
  fn: () => Promise<number>,
): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    return { code: await fn(), out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

async function withStream(
  kind: "paused" | "live" | "multipass" | "background",
  fn: (dir: string, path: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "livesnap-qemu-cmd-" });
  try {
    await Deno.writeFile(`${dir}/${kind}.qemu`, await loadFixture(kind));
    await fn(dir, `${dir}/${kind}.qemu`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("livesnap inspect --json summarises a QEMU stream: sections, RAM blocks, decoded devices", async () => {
  const manifest = await loadManifest();
  await withStream("live", async (_dir, path) => {
    const r = await capture(() => inspect(["--json", path]));
    assertEquals(r.code, 0, r.err);
    const s = JSON.parse(r.out);
    assertEquals([s.format, s.machine, s.devices.length], ["qemu-migration-stream", "virt", 15]);
    assertEquals(s.bytes, manifest.streams.live.size);
    const ram = s.ram.blocks.find((b: { name: string }) => b.name === manifest.ram.block);
    assertEquals(ram.pageCount, manifest.ram.size / 4096);
    // The manifest counts what QEMU reported sending, over all blocks.
    const normal = s.ram.blocks.reduce(
      (n: number, b: { normalRecords: number }) => n + b.normalRecords,
      0,
    );
    assertEquals(normal, manifest.streams.live.normalPages);
    const cpu = s.devices.find((d: { idstr: string }) => d.idstr === "cpu");
    assertEquals(cpu.decoded, true);
    assertEquals(cpu.fields["env.gpr"].length, 32);
    assert(s.sections.length > 15);
  });
});

Deno.test("livesnap inspect prints a QEMU stream's summary as text, --fields and --device", async () => {
  await withStream("paused", async (_dir, path) => {
    const text = await capture(() => inspect([path]));
    assertEquals(text.code, 0, text.err);
    assertMatch(text.out, /^QEMU migration stream, version 3, \d+ bytes\nmachine virt/);
    assertMatch(text.out, /riscv_virt_board\.ram: 64 MiB, 16384 pages; records \d+/);
    assert(!text.out.includes("env.pc = "));
    const fields = await capture(() => inspect(["--fields", path]));
    assertMatch(fields.out, /env\.pc = 0x8[0-9a-f]{7}/);
    const cpu = await capture(() => inspect(["--device", "cpu", path]));
    assertEquals(cpu.code, 0, cpu.err);
    assertEquals(JSON.parse(cpu.out).idstr, "cpu");
    const none = await capture(() => inspect(["--device", "nosuch", path]));
    assertEquals(none.code, 1);
    assertStringIncludes(none.err, "Cannot find device 'nosuch' in the stream (it has: timer");
    const pages = await capture(() => inspect(["--pages", path]));
    assertEquals(pages.code, 2);
  });
});

Deno.test("livesnap inspect reports a damaged QEMU stream with its offset and exits 1", async () => {
  await withStream("paused", async (dir, path) => {
    await Deno.writeFile(`${dir}/cut.qemu`, (await Deno.readFile(path)).subarray(0, 5000));
    const a = await capture(() => inspect([`${dir}/cut.qemu`]));
    assertEquals(a.code, 1);
    assertMatch(a.err, /^livesnap inspect: Cannot read QEMU stream at byte \d+: the stream ends/);
  });
});

Deno.test("livesnap convert --from qemu, --to qemu and --to raw --region on a QEMU stream", async () => {
  const manifest = await loadManifest();
  await withStream("multipass", async (dir, path) => {
    const a = await capture(() => convert(["--from", "qemu", path, `${dir}/m.lsnap`]));
    assertEquals(a.code, 0, a.err);
    assertMatch(a.err, /m\.lsnap: lsnap, .*, 16 devices, content [0-9a-f]{64} \(checked\)$/);
    const digest = /content ([0-9a-f]{64})/.exec(a.err)![1];
    const snap = await readSnapshot((await Deno.open(`${dir}/m.lsnap`)).readable);
    assertEquals(await sha256Hex(snap.regions[0]), manifest.streams.multipass.pmemsaveSha256);

    const b = await capture(() => convert(["--to", "qemu", `${dir}/m.lsnap`, `${dir}/back.qemu`]));
    assertEquals(b.code, 0, b.err);
    assertStringIncludes(b.err, `back.qemu: qemu, `);
    assertStringIncludes(b.err, `content ${digest} (checked)`);
    const original = await readQemuSnapshot([await Deno.readFile(path)]);
    const back = await readQemuSnapshot([await Deno.readFile(`${dir}/back.qemu`)]);
    assertEquals(back.devices, original.devices);

    // --to raw: the QEMU stream given directly (recognised), and its .lsnap.
    for (const input of [path, `${dir}/m.lsnap`]) {
      const c = await capture(() =>
        convert(["--to", "raw", "--region", manifest.ram.block, input, `${dir}/ram.raw`])
      );
      assertEquals(c.code, 0, c.err);
      assertEquals(
        await sha256Hex(await Deno.readFile(`${dir}/ram.raw`)),
        manifest.streams.multipass.pmemsaveSha256,
      );
    }
  });
});

Deno.test("livesnap convert exits 1 on a damaged QEMU stream and on --to qemu of a non-QEMU snapshot", async () => {
  await withStream("paused", async (dir, path) => {
    await Deno.writeFile(`${dir}/cut.qemu`, (await Deno.readFile(path)).subarray(0, 5000));
    const a = await capture(() => convert(["--from", "qemu", `${dir}/cut.qemu`, `${dir}/o.lsnap`]));
    assertEquals(a.code, 1);
    assertMatch(a.err, /^livesnap convert: Cannot read QEMU stream at byte \d+/);
    const fixture = new URL("../tests/fixtures/v1_basic.lsnap", import.meta.url).pathname;
    const b = await capture(() => convert(["--to", "qemu", fixture, `${dir}/o.qemu`]));
    assertEquals(b.code, 1);
    assertStringIncludes(b.err, "the snapshot was not converted from one");
    // A failed conversion leaves no output file behind.
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["cut.qemu", "paused.qemu"]);
    const c = await capture(() => convert(["--from", "qemu", "--base", "ram", path, `${dir}/o`]));
    assertEquals(c.code, 2);
    assertStringIncludes(c.err, "Cannot parse --base: 'ram' is not NAME=ADDR");
  });
});

Deno.test("qemu-inspect and qemu-convert are the inspect and convert commands", async () => {
  await withStream("background", async (dir, path) => {
    const a = await capture(() => qemuInspect(["--json", path]));
    const b = await capture(() => inspect(["--json", path]));
    assertEquals(a.code, 0, a.err);
    assertEquals(JSON.parse(a.out), JSON.parse(b.out));
    // --codec raw is the old spelling of --compress none.
    const c = await capture(() =>
      qemuConvert(["--from", "qemu", "--codec", "raw", path, `${dir}/b.lsnap`])
    );
    assertEquals(c.code, 0, c.err);
    const d = await capture(() => convert([path, `${dir}/z.lsnap`]));
    const digest = (s: string) => /content ([0-9a-f]{64})/.exec(s)?.[1];
    assertEquals(digest(c.err), digest(d.err));
    const raw = await capture(() => inspect(["--json", `${dir}/b.lsnap`]));
    assertEquals(JSON.parse(raw.out).pages.encodings.zstd, 0);
    assert((await Deno.stat(`${dir}/b.lsnap`)).size > (await Deno.stat(`${dir}/z.lsnap`)).size);
  });
});
