import { assert, assertEquals, assertMatch, assertRejects } from "@std/assert/mod.js";
import { toHex } from "../../format/checksum.ts";
import { computeContentDigest } from "../../format/content_digest.ts";
import { encodeDeviceState } from "../../format/device_state.ts";
import { ChecksumError, TruncatedError } from "../../format/errors.ts";
import { SnapshotFileReader } from "../../format/file_reader.ts";
import { readSnapshot, SnapshotStreamReader } from "../../format/stream_reader.ts";
import { SnapshotWriter } from "../../format/writer.ts";
import {
  description,
  devices,
  makeRam,
  PAGE,
  shuffle,
  writeToBytes,
} from "../../tests/_snapshots.ts";
import { GDB_GUEST_ELF, loadGuestImage, runGdb } from "../../tests/_guest_image.ts";
import { needTool } from "../../tests/_external_tools.ts";
import { loadFixture, loadManifest, sha256Hex } from "../../qemu/_fixtures_test_util.ts";
import { readQemuSnapshot } from "../../qemu/snapshot.ts";
import { QemuStreamTruncatedError } from "../../qemu/errors.ts";
import {
  ConvertError,
  type ConvertOptions,
  convertSnapshot,
  inputFormats,
  registerInputFormat,
} from "./mod.ts";

const FIXTURES = new URL("../../tests/fixtures/", import.meta.url).pathname;
const EXPECTED: Record<string, { contentDigest: string }> = JSON.parse(
  await Deno.readTextFile(`${FIXTURES}expected.json`),
);

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "livesnap-convert-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

type PagesRecord = { region: number; encoding: string; pages: number[] };

async function readRecords(path: string) {
  const f = await Deno.open(path);
  const reader = new SnapshotStreamReader(f.readable);
  const pages: PagesRecord[] = [];
  const deviceIds: string[] = [];
  for await (const r of reader.records()) {
    if (r.kind === "pages") {
      pages.push({ region: r.region, encoding: r.encoding, pages: [...r.pages] });
    }
    if (r.kind === "device") deviceIds.push(`${r.device.id}#${r.device.instance}`);
  }
  return { reader, pages, deviceIds };
}

/** A file with duplicates, shuffled pages and two device versions. */
async function writeMessy(path: string, pages = 48): Promise<Uint8Array> {
  const ram = makeRam(pages, 7);
  const bytes = await writeToBytes({
    description: description(pages),
    ram,
    order: [...shuffle([...Array(pages).keys()], 3), 4, 9, 4],
    batch: 5,
    options: { index: false, batchBytes: 3 * PAGE },
    extra: async (w) => {
      await w.writePages(0, 11, new Uint8Array(PAGE).fill(0x11)); // a superseding occurrence
      await w.writeDevice({
        id: "uart",
        instance: 0,
        version: 1,
        state: encodeDeviceState({ lsr: 1 }),
      });
    },
  });
  await Deno.writeFile(path, bytes);
  return bytes;
}

const LSNAP_OPTIONS: [string, ConvertOptions][] = [
  ["default", {}],
  ["read back in a worker", { checkInWorker: true }],
  ["--compress none", { compress: { codec: "raw" } }],
  ["--compress zstd:9", { compress: { codec: "zstd", level: 9 } }],
  ["--batch 8K", { batchBytes: 8192 }],
  ["--address-order", { addressOrder: true }],
  ["--drop-duplicates", { dropDuplicates: true }],
  ["--no-index", { index: false }],
  ["all combined", {
    compress: { codec: "zstd", level: 3 },
    batchBytes: 65536,
    addressOrder: true,
    dropDuplicates: true,
  }],
];

Deno.test("convertSnapshot() keeps the content digest of every golden file with every option", async (t) => {
  await withDir(async (dir) => {
    for (const name of Object.keys(EXPECTED)) {
      for (const [label, options] of LSNAP_OPTIONS) {
        await t.step(`${name} ${label}`, async () => {
          const out = `${dir}/out.lsnap`;
          const r = await convertSnapshot(`${FIXTURES}${name}`, out, options);
          assertEquals(r.contentDigest, EXPECTED[name].contentDigest);
          assert(r.digestChecked);
          const snap = await readSnapshot((await Deno.open(out)).readable);
          assertEquals(toHex(snap.contentDigest), EXPECTED[name].contentDigest);
          await Deno.remove(out);
        });
      }
    }
  });
});

Deno.test("convertSnapshot() --compress none writes no zstd record, zstd:19 writes zstd", async () => {
  await withDir(async (dir) => {
    await convertSnapshot(`${FIXTURES}v1_basic.lsnap`, `${dir}/a.lsnap`, {
      compress: { codec: "raw" },
    });
    const a = await readRecords(`${dir}/a.lsnap`);
    assert(a.pages.every((r) => r.encoding !== "zstd"));
    assert(a.pages.some((r) => r.encoding === "raw"));
    await convertSnapshot(`${dir}/a.lsnap`, `${dir}/b.lsnap`, {
      compress: { codec: "zstd", level: 19 },
    });
    const b = await readRecords(`${dir}/b.lsnap`);
    assert(b.pages.some((r) => r.encoding === "zstd"));
    assert((await Deno.stat(`${dir}/b.lsnap`)).size < (await Deno.stat(`${dir}/a.lsnap`)).size);
  });
});

Deno.test("convertSnapshot() --batch sets the pages per record", async () => {
  await withDir(async (dir) => {
    await convertSnapshot(`${FIXTURES}v1_basic.lsnap`, `${dir}/one.lsnap`, { batchBytes: PAGE });
    const one = await readRecords(`${dir}/one.lsnap`);
    assert(one.pages.filter((r) => r.encoding !== "zero").every((r) => r.pages.length === 1));
    await convertSnapshot(`${FIXTURES}v1_basic.lsnap`, `${dir}/big.lsnap`, { batchBytes: 1 << 20 });
    const big = await readRecords(`${dir}/big.lsnap`);
    assert(big.pages.length < one.pages.length);
    assert(big.pages.some((r) => r.pages.length > 8));
  });
});

Deno.test("convertSnapshot() --address-order writes each page once in ascending order", async () => {
  await withDir(async (dir) => {
    await writeMessy(`${dir}/in.lsnap`);
    await convertSnapshot(`${dir}/in.lsnap`, `${dir}/out.lsnap`, { addressOrder: true });
    const { pages } = await readRecords(`${dir}/out.lsnap`);
    const data = pages.filter((r) => r.encoding !== "zero").flatMap((r) => r.pages);
    const zero = pages.filter((r) => r.encoding === "zero").flatMap((r) => r.pages);
    assertEquals(data, [...data].sort((a, b) => a - b));
    assertEquals(zero, [...zero].sort((a, b) => a - b));
    const all = [...data, ...zero];
    assertEquals(new Set(all).size, all.length);
  });
});

Deno.test("convertSnapshot() --drop-duplicates keeps the last occurrences in file order", async () => {
  await withDir(async (dir) => {
    await writeMessy(`${dir}/in.lsnap`);
    const before = await readRecords(`${dir}/in.lsnap`);
    const occurrences = before.pages.flatMap((r) => r.pages);
    assert(occurrences.length > new Set(occurrences).size, "the input has duplicates");
    await convertSnapshot(`${dir}/in.lsnap`, `${dir}/out.lsnap`, { dropDuplicates: true });
    const after = await readRecords(`${dir}/out.lsnap`);
    const kept = after.pages.flatMap((r) => r.pages);
    assertEquals(kept.length, new Set(occurrences).size);
    assertEquals(new Set(kept).size, kept.length);
    // Page 11 was superseded last: it comes last, as in the input.
    assertEquals(kept.at(-1), 11);
    assertEquals(after.deviceIds.filter((d) => d === "uart#0").length, 1);
    assertEquals(before.deviceIds.filter((d) => d === "uart#0").length, 2);
  });
});

Deno.test("convertSnapshot() rebuilds a missing index, and --no-index omits it", async () => {
  await withDir(async (dir) => {
    const noIndex = `${FIXTURES}v1_duplicates_noindex.lsnap`;
    const r0 = await SnapshotFileReader.open(noIndex);
    assertEquals(r0.indexed, false);
    r0.close();
    await convertSnapshot(noIndex, `${dir}/with.lsnap`);
    const r1 = await SnapshotFileReader.open(`${dir}/with.lsnap`);
    assertEquals(r1.indexed, true);
    const ram = await r1.readRegion(0);
    r1.close();
    const snap = await readSnapshot((await Deno.open(noIndex)).readable);
    assertEquals(ram, snap.regions[0]);
    await convertSnapshot(`${dir}/with.lsnap`, `${dir}/without.lsnap`, { index: false });
    const r2 = await SnapshotFileReader.open(`${dir}/without.lsnap`);
    assertEquals(r2.indexed, false);
    r2.close();
  });
});

Deno.test("convertSnapshot() writes the current minor version whatever the input's", async () => {
  await withDir(async (dir) => {
    await convertSnapshot(`${FIXTURES}v1_basic.lsnap`, `${dir}/out.lsnap`);
    const { reader } = await readRecords(`${dir}/out.lsnap`);
    const { FORMAT_MINOR } = await import("../../format/constants.ts");
    assertEquals(reader.version, { major: 1, minor: FORMAT_MINOR });
  });
});

Deno.test("convertSnapshot() --to raw writes one region as a flat image", async () => {
  await withDir(async (dir) => {
    const snap = await readSnapshot(
      (await Deno.open(`${FIXTURES}v1_regions_foreign_extension.lsnap`)).readable,
    );
    for (const [i, name] of ["ram", "flash"].entries()) {
      await convertSnapshot(`${FIXTURES}v1_regions_foreign_extension.lsnap`, `${dir}/${name}.img`, {
        to: "raw",
        region: name,
      });
      assertEquals(await Deno.readFile(`${dir}/${name}.img`), snap.regions[i]);
    }
    await assertRejects(
      () =>
        convertSnapshot(`${FIXTURES}v1_regions_foreign_extension.lsnap`, `${dir}/x.img`, {
          to: "raw",
        }),
      ConvertError,
      "Cannot convert to raw: name one region with --region (one of: ram, flash)",
    );
    await assertRejects(
      () =>
        convertSnapshot(`${FIXTURES}v1_basic.lsnap`, `${dir}/x.img`, { to: "raw", region: "rom" }),
      ConvertError,
      "no region 'rom' (regions: ram)",
    );
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["flash.img", "ram.img"]);
  });
});

Deno.test("convertSnapshot() --to raw writes zeros over a page that ends zero", async () => {
  await withDir(async (dir) => {
    // In this fixture page 9 is written with data, then again as zero.
    await convertSnapshot(`${FIXTURES}v1_duplicates_noindex.lsnap`, `${dir}/ram.img`, {
      to: "raw",
    });
    const img = await Deno.readFile(`${dir}/ram.img`);
    const snap = await readSnapshot(
      (await Deno.open(`${FIXTURES}v1_duplicates_noindex.lsnap`)).readable,
    );
    assertEquals(img, snap.regions[0]);
    assert(img.subarray(9 * PAGE, 10 * PAGE).every((b) => b === 0));
  });
});

Deno.test("convertSnapshot() --from raw builds a snapshot whose digest is that of the images", async () => {
  await withDir(async (dir) => {
    const ram = makeRam(40, 11);
    const rom = new Uint8Array(3 * PAGE + 100).fill(0x42); // not a page multiple: padded
    await Deno.writeFile(`${dir}/ram.img`, ram);
    await Deno.writeFile(`${dir}/rom.img`, rom);
    const warnings: string[] = [];
    const r = await convertSnapshot("", `${dir}/out.lsnap`, {
      from: "raw",
      rawRegions: [
        { name: "ram", base: 0x8000_0000, path: `${dir}/ram.img` },
        { name: "rom", base: 0x1000_0000, path: `${dir}/rom.img` },
      ],
      warn: (m) => warnings.push(m),
    });
    assertEquals(warnings.length, 1);
    assertMatch(
      warnings[0],
      /rom\.img: 12388 bytes is not a multiple of the page size; padded with zeros/,
    );
    const paddedRom = new Uint8Array(4 * PAGE);
    paddedRom.set(rom);
    const snap = await readSnapshot((await Deno.open(`${dir}/out.lsnap`)).readable);
    assertEquals(snap.regions, [ram, paddedRom]);
    const expected = await computeContentDigest(snap.description, [ram, paddedRom], []);
    assertEquals(r.contentDigest, toHex(expected));
    assert(r.digestChecked);
    assertEquals(snap.description.regions.map((x) => [x.name, x.base]), [["ram", 0x8000_0000], [
      "rom",
      0x1000_0000,
    ]]);
  });
});

Deno.test("convertSnapshot() --from raw rejects missing images and overlapping regions", async () => {
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/a.img`, new Uint8Array(PAGE * 2));
    await assertRejects(
      () => convertSnapshot("", `${dir}/o.lsnap`, { from: "raw" }),
      ConvertError,
      "give at least one --region NAME:BASE:FILE",
    );
    await assertRejects(
      () =>
        convertSnapshot("", `${dir}/o.lsnap`, {
          from: "raw",
          rawRegions: [{ name: "a", base: 0, path: `${dir}/none` }],
        }),
      ConvertError,
      `Cannot open ${dir}/none`,
    );
    await assertRejects(
      () =>
        convertSnapshot("", `${dir}/o.lsnap`, {
          from: "raw",
          rawRegions: [{ name: "a", base: 0, path: `${dir}/a.img` }, {
            name: "b",
            base: PAGE,
            path: `${dir}/a.img`,
          }],
        }),
      ConvertError,
      "regions 'a' and 'b' overlap",
    );
    assertEquals([...Deno.readDirSync(dir)].length, 1);
  });
});

Deno.test("convertSnapshot() fails on a damaged input and leaves no output", async (t) => {
  await withDir(async (dir) => {
    const good = await Deno.readFile(`${FIXTURES}v1_basic.lsnap`);
    const flipped = good.slice();
    flipped[200] ^= 0xff;
    await Deno.writeFile(`${dir}/flipped.lsnap`, flipped);
    await Deno.writeFile(`${dir}/cut.lsnap`, good.subarray(0, good.length - 100));
    for (const to of ["lsnap", "raw", "elf-core"]) {
      await t.step(`bad CRC to ${to}`, async () => {
        const e = await assertRejects(
          () => convertSnapshot(`${dir}/flipped.lsnap`, `${dir}/out`, { to }),
          ChecksumError,
        );
        assertMatch(e.message, /record \d+ at byte \d+/);
      });
      await t.step(`truncated to ${to}`, async () => {
        await assertRejects(
          () => convertSnapshot(`${dir}/cut.lsnap`, `${dir}/out`, { to }),
          TruncatedError,
        );
      });
    }
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "cut.lsnap",
      "flipped.lsnap",
    ]);
  });
});

Deno.test("convertSnapshot() removes the output when the content digest does not match", async () => {
  // An input that declares a digest other than the state it yields: the check must catch it.
  const lsnap = inputFormats().get("lsnap")!;
  const unregister = registerInputFormat("lying-lsnap", {
    summary: "test",
    async open(input, ctx) {
      const s = await lsnap.open(input, ctx);
      return {
        ...s,
        items: () => s.items(),
        close: () => s.close(),
        contentDigest: () => Promise.resolve(new Uint8Array(32)),
      };
    },
  });
  try {
    await withDir(async (dir) => {
      await assertRejects(
        () =>
          convertSnapshot(`${FIXTURES}v1_basic.lsnap`, `${dir}/out.lsnap`, { from: "lying-lsnap" }),
        ConvertError,
        `differs from the input's ${"00".repeat(32)}`,
      );
      assertEquals([...Deno.readDirSync(dir)].length, 0);
    });
  } finally {
    unregister();
  }
});

Deno.test("convertSnapshot() refuses to overwrite its input and unknown formats", async () => {
  await withDir(async (dir) => {
    await Deno.copyFile(`${FIXTURES}v1_basic.lsnap`, `${dir}/a.lsnap`);
    await assertRejects(
      () => convertSnapshot(`${dir}/a.lsnap`, `${dir}/a.lsnap`),
      ConvertError,
      "is the input",
    );
    await assertRejects(
      () => convertSnapshot(`${dir}/a.lsnap`, `${dir}/b`, { to: "vmdk" }),
      ConvertError,
      "unknown output format 'vmdk' (known: lsnap, raw, elf-core",
    );
    await assertRejects(
      () => convertSnapshot(`${dir}/a.lsnap`, `${dir}/b`, { batchBytes: 32 << 20 }),
      ConvertError,
      "batch size 33554432 is not between 4 KiB and 16 MiB",
    );
    await assertRejects(
      () => convertSnapshot(`${dir}/a.lsnap`, `${dir}/b`, { from: "vmdk" }),
      ConvertError,
      "unknown input format 'vmdk'",
    );
  });
});

/** A snapshot of the gdb test guest: its ELF loaded at 0x8000_0000, variables set, a hart. */
async function writeGuestSnapshot(path: string, withHart: boolean, counter = 31337) {
  const elf = await Deno.readFile(GDB_GUEST_ELF);
  const image = loadGuestImage(elf, 0x8000_0000, 256 * 1024);
  const v = new DataView(image.ram.buffer);
  v.setUint32(image.symbols.get("snap_counter")! - image.base, counter, true);
  v.setInt32(image.symbols.get("snap_point")! - image.base + 4, -777, true);
  const x = Array.from({ length: 32 }, (_, i) => i * 0x100);
  x[0] = 0;
  x[2] = 0x8003_f000 | 0; // sp, as a signed value the way the emulator saves it
  const pc = image.entry + 4;
  const w = await SnapshotWriter.createFile(path, {
    regions: [{ name: "ram", base: 0x8000_0000, size: image.ram.length, pageSize: PAGE }],
    creator: "convert test",
    createdAt: 0,
  });
  // Pages in reverse order, to show the core does not depend on file order.
  for (let p = image.ram.length / PAGE - 1; p >= 0; p--) {
    await w.writePages(0, p, image.ram.subarray(p * PAGE, (p + 1) * PAGE));
  }
  if (withHart) {
    await w.writeDevice({
      id: "hart",
      instance: 0,
      version: 1,
      state: encodeDeviceState({ pc, x, priv: 3 }),
    });
  }
  await w.writeDevice(devices()[0]);
  await w.close();
  return { image, pc };
}

const gdb = await needTool("gdb-multiarch");

Deno.test({
  name:
    `convertSnapshot() --to elf-core opens in gdb-multiarch with the guest's variables${gdb.note}`,
  ignore: gdb.ignore,
}, async (t) => {
  gdb.check();
  await withDir(async (dir) => {
    const { pc } = await writeGuestSnapshot(`${dir}/guest.lsnap`, true);
    for (const viaStdout of [false, true]) {
      await t.step(viaStdout ? "written to a pipe" : "written to a file", async () => {
        const core = `${dir}/guest.core`;
        if (viaStdout) {
          const cmd = new Deno.Command(Deno.execPath(), {
            args: [
              "run",
              "-A",
              new URL("../cli.ts", import.meta.url).pathname,
              "convert",
              "--to",
              "elf-core",
              `${dir}/guest.lsnap`,
              "-",
            ],
            stdout: "piped",
            stderr: "piped",
          });
          const out = await cmd.output();
          assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
          await Deno.writeFile(core, out.stdout);
        } else {
          const r = await convertSnapshot(`${dir}/guest.lsnap`, core, { to: "elf-core" });
          assertEquals(r.warnings, []);
        }
        const text = await runGdb(GDB_GUEST_ELF.pathname, core, [
          "print snap_counter",
          "print snap_point",
          "print/x snap_table",
          "info registers pc sp a0",
        ]);
        assertMatch(text, /\$1 = 31337/);
        assertMatch(text, /\$2 = \{x = 10, y = -777\}/);
        assertMatch(text, /\$3 = \{0x1, 0x2, 0x3, 0x4\}/);
        assertMatch(text, new RegExp(`pc\\s+0x${pc.toString(16)}`));
        assertMatch(text, /sp\s+0x8003f000/);
        assertMatch(text, /a0\s+0xa00/);
        await Deno.remove(core);
      });
    }
  });
});

Deno.test("convertSnapshot() --to elf-core without a hart section warns and omits registers", async () => {
  await withDir(async (dir) => {
    await writeGuestSnapshot(`${dir}/g.lsnap`, false, 5);
    const r = await convertSnapshot(`${dir}/g.lsnap`, `${dir}/g.core`, { to: "elf-core" });
    assertEquals(r.warnings, ["the snapshot has no hart section: the core file has no registers"]);
    const core = await Deno.readFile(`${dir}/g.core`);
    const v = new DataView(core.buffer);
    assertEquals(v.getUint32(52 + 16, true), 0); // PT_NOTE of size 0
    if (!gdb.ignore) {
      gdb.check();
      const text = await runGdb(GDB_GUEST_ELF.pathname, `${dir}/g.core`, ["print snap_counter"]);
      assertMatch(text, /\$1 = 5/);
    } else {
      console.warn("SKIPPED: gdb-multiarch is not installed; only the core's layout was checked");
    }
  });
});

Deno.test("livesnap convert works on pipes: - for input and output", async () => {
  await withDir(async (dir) => {
    const cmd = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../cli.ts", import.meta.url).pathname,
        "convert",
        "--address-order",
        "--compress",
        "none",
        "-",
        "-",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    });
    const child = cmd.spawn();
    const w = child.stdin.getWriter();
    await w.write(await Deno.readFile(`${FIXTURES}v1_duplicates_noindex.lsnap`));
    await w.close();
    const out = await child.output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    const stderr = new TextDecoder().decode(out.stderr);
    assertMatch(stderr, /<stdout>: lsnap, .* \(checked\)/);
    assert(!stderr.includes("\r"), "no progress line when standard error is not a terminal");
    await Deno.writeFile(`${dir}/o.lsnap`, out.stdout);
    const snap = await readSnapshot((await Deno.open(`${dir}/o.lsnap`)).readable);
    assertEquals(toHex(snap.contentDigest), EXPECTED["v1_duplicates_noindex.lsnap"].contentDigest);
  });
});

Deno.test("livesnap convert exits 1 on a damaged input, 2 on a usage error", async () => {
  await withDir(async (dir) => {
    const good = await Deno.readFile(`${FIXTURES}v1_basic.lsnap`);
    good[300] ^= 1;
    await Deno.writeFile(`${dir}/bad.lsnap`, good);
    const run = (args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL("../cli.ts", import.meta.url).pathname, "convert", ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
    const bad = await run([`${dir}/bad.lsnap`, `${dir}/out.lsnap`]);
    assertEquals(bad.code, 1);
    assertMatch(new TextDecoder().decode(bad.stderr), /Cannot read record \d+ at byte \d+/);
    const usage = await run(["--compress", "lz4", `${dir}/bad.lsnap`, `${dir}/out.lsnap`]);
    assertEquals(usage.code, 2);
    assertMatch(new TextDecoder().decode(usage.stderr), /Cannot parse --compress: 'lz4'/);
    const unknown = await run(["--frobnicate", "a", "b"]);
    assertEquals(unknown.code, 2);
    assertMatch(new TextDecoder().decode(unknown.stderr), /unknown option --frobnicate/);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["bad.lsnap"]);
    const help = await run(["--help"]);
    assertEquals(help.code, 0);
    assertMatch(new TextDecoder().decode(help.stdout), /Examples:\n {2}livesnap convert/);
  });
});

Deno.test("livesnap convert --from raw --page-size and --quiet", async () => {
  await withDir(async (dir) => {
    const img = new Uint8Array(4096).fill(3);
    img.fill(0, 512, 1024); // one zero 512-byte page
    await Deno.writeFile(`${dir}/rom.img`, img);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../cli.ts", import.meta.url).pathname,
        "convert",
        "--quiet",
        "--from",
        "raw",
        "--page-size",
        "512",
        "--region",
        "rom:0x1000:" + `${dir}/rom.img`,
        `${dir}/rom.lsnap`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    assertEquals(out.stderr.length, 0, "--quiet prints nothing");
    const snap = await readSnapshot((await Deno.open(`${dir}/rom.lsnap`)).readable);
    assertEquals(snap.description.regions, [{
      name: "rom",
      base: 0x1000,
      size: 4096,
      pageSize: 512,
    }]);
    assertEquals(snap.regions[0], img);
    const { reader, pages } = await readRecords(`${dir}/rom.lsnap`);
    assert(reader.complete);
    assertEquals(pages.flatMap((r) => r.pages).sort((a, b) => a - b), [0, 2, 3, 4, 5, 6, 7]);
  });
});

Deno.test("livesnap convert --drop-duplicates from a pipe writes each page once", async () => {
  await withDir(async (dir) => {
    await writeMessy(`${dir}/in.lsnap`);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../cli.ts", import.meta.url).pathname,
        "convert",
        "--drop-duplicates",
        "-",
        `${dir}/out.lsnap`,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(await Deno.readFile(`${dir}/in.lsnap`));
    await w.close();
    const out = await child.output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    const before = await readRecords(`${dir}/in.lsnap`);
    const after = await readRecords(`${dir}/out.lsnap`);
    const kept = after.pages.flatMap((r) => r.pages);
    assertEquals(kept.length, new Set(before.pages.flatMap((r) => r.pages)).size);
    assertEquals(toHex(after.reader.contentDigest!), toHex(before.reader.contentDigest!));
  });
});

Deno.test("livesnap convert --from raw reads an image from standard input with FILE -", async () => {
  await withDir(async (dir) => {
    const ram = makeRam(16, 5);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../cli.ts", import.meta.url).pathname,
        "convert",
        "--from",
        "raw",
        "--region",
        "ram:0x80000000:-",
        "-",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(ram);
    await w.close();
    const out = await child.output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    await Deno.writeFile(`${dir}/o.lsnap`, out.stdout);
    const snap = await readSnapshot((await Deno.open(`${dir}/o.lsnap`)).readable);
    assertEquals(snap.regions[0], ram);
  });
});

// ---------------------------------------------------------------------------------------------
// QEMU migration streams (the committed fixtures in tests/fixtures/qemu/, made by QEMU 7.2)

Deno.test("convertSnapshot() --from qemu keeps every fixture's RAM and devices and checks the digest", async () => {
  const manifest = await loadManifest();
  await withDir(async (dir) => {
    for (const kind of ["paused", "live", "multipass", "background"] as const) {
      const stream = await loadFixture(kind);
      await Deno.writeFile(`${dir}/${kind}.qemu`, stream);
      const original = await readQemuSnapshot([stream]);
      // Recognised by its magic without --from; explicit --from qemu gives the same state.
      const r = await convertSnapshot(`${dir}/${kind}.qemu`, `${dir}/${kind}.lsnap`);
      assertEquals([r.from, r.digestChecked], ["qemu", true], kind);
      const explicit = await convertSnapshot(`${dir}/${kind}.qemu`, `${dir}/${kind}-2.lsnap`, {
        from: "qemu",
        addressOrder: true,
        compress: { codec: "raw" },
      });
      assertEquals(explicit.contentDigest, r.contentDigest, kind);
      const snap = await readSnapshot((await Deno.open(`${dir}/${kind}.lsnap`)).readable);
      assertEquals(toHex(snap.contentDigest), r.contentDigest);
      assertEquals(
        snap.description.regions.map((x) => [x.name, x.size]),
        original.blocks.map((b) => [b.name, b.size]),
      );
      assertEquals(snap.description.regions[0].base, manifest.ram.address);
      const facts = manifest.streams[kind];
      if (facts.pmemsaveSha256 !== undefined) {
        // QEMU's own pmemsave of the guest's RAM at the same instant.
        assertEquals(await sha256Hex(snap.regions[0]), facts.pmemsaveSha256, kind);
      }
      for (const d of original.devices) {
        const kept = snap.devices.find((x) => x.id === d.idstr && x.instance === d.instanceId);
        assertEquals(kept?.state, d.data, `${kind}: ${d.idstr}`);
      }
    }
  });
});

Deno.test("convertSnapshot() --to qemu writes back the stream's RAM and devices, re-read and checked", async () => {
  await withDir(async (dir) => {
    const stream = await loadFixture("multipass");
    await Deno.writeFile(`${dir}/in.qemu`, stream);
    const lsnap = await convertSnapshot(`${dir}/in.qemu`, `${dir}/in.lsnap`);
    const back = await convertSnapshot(`${dir}/in.lsnap`, `${dir}/back.qemu`, { to: "qemu" });
    assertEquals([back.to, back.digestChecked], ["qemu", true]);
    assertEquals(back.contentDigest, lsnap.contentDigest);
    const original = await readQemuSnapshot([stream]);
    const written = await readQemuSnapshot([await Deno.readFile(`${dir}/back.qemu`)]);
    assertEquals(written.devices, original.devices);
    assertEquals(written.vmdescText, original.vmdescText);
    assertEquals(written.pages, original.pages);
    // QEMU stream to QEMU stream: the one-pass rewrite of a six-pass stream.
    const again = await convertSnapshot(`${dir}/in.qemu`, `${dir}/again.qemu`, { to: "qemu" });
    assertEquals(again.contentDigest, lsnap.contentDigest);
    const direct = await readQemuSnapshot([await Deno.readFile(`${dir}/again.qemu`)]);
    assertEquals(direct.pages, original.pages);
    assertEquals(direct.devices, original.devices);
  });
});

Deno.test("convertSnapshot() --to qemu keeps --base addresses and refuses a snapshot not from QEMU", async () => {
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/in.qemu`, await loadFixture("paused"));
    const moved = await convertSnapshot(`${dir}/in.qemu`, `${dir}/moved.lsnap`, {
      bases: { "virt.flash0": 0x4000_0000 },
    });
    const snap = await readSnapshot((await Deno.open(`${dir}/moved.lsnap`)).readable);
    assertEquals(snap.description.regions.find((x) => x.name === "virt.flash0")?.base, 0x4000_0000);
    const back = await convertSnapshot(`${dir}/moved.lsnap`, `${dir}/back.qemu`, { to: "qemu" });
    assertEquals([back.contentDigest, back.digestChecked], [moved.contentDigest, true]);
    await assertRejects(
      () => convertSnapshot(`${FIXTURES}v1_basic.lsnap`, `${dir}/x.qemu`, { to: "qemu" }),
      ConvertError,
      "Cannot convert to a QEMU stream: the snapshot was not converted from one",
    );
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "back.qemu",
      "in.qemu",
      "moved.lsnap",
    ]);
  });
});

Deno.test("convertSnapshot() --to qemu removes the stream when its digest is not the input's", async () => {
  const qemu = inputFormats().get("qemu")!;
  const unregister = registerInputFormat("lying-qemu", {
    summary: "test",
    async open(input, ctx) {
      const s = await qemu.open(input, ctx);
      return { ...s, contentDigest: () => Promise.resolve(new Uint8Array(32)) };
    },
  });
  try {
    await withDir(async (dir) => {
      await Deno.writeFile(`${dir}/in.qemu`, await loadFixture("paused"));
      await assertRejects(
        () =>
          convertSnapshot(`${dir}/in.qemu`, `${dir}/out.qemu`, { from: "lying-qemu", to: "qemu" }),
        ConvertError,
        `differs from the input's ${"00".repeat(32)}`,
      );
      assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["in.qemu"]);
    });
  } finally {
    unregister();
  }
});

Deno.test("convertSnapshot() --to raw --region of a QEMU stream is QEMU's pmemsave image", async () => {
  const manifest = await loadManifest();
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/in.qemu`, await loadFixture("live"));
    const r = await convertSnapshot(`${dir}/in.qemu`, `${dir}/ram.raw`, {
      to: "raw",
      region: manifest.ram.block,
    });
    assertEquals([r.from, r.bytesOut], ["qemu", manifest.ram.size]);
    assertEquals(
      await sha256Hex(await Deno.readFile(`${dir}/ram.raw`)),
      manifest.streams.live.pmemsaveSha256,
    );
  });
});

Deno.test("convertSnapshot() --from qemu fails on a cut stream with its offset and leaves no output", async () => {
  await withDir(async (dir) => {
    const stream = await loadFixture("live");
    for (const cut of [5000, stream.length - 10]) {
      await Deno.writeFile(`${dir}/cut.qemu`, stream.subarray(0, cut));
      const e = await assertRejects(
        () => convertSnapshot(`${dir}/cut.qemu`, `${dir}/out.lsnap`),
        QemuStreamTruncatedError,
      );
      assertMatch(e.message, /^Cannot read QEMU stream at byte \d+: /);
      assertEquals([...Deno.readDirSync(dir)].map((x) => x.name), ["cut.qemu"], `cut at ${cut}`);
    }
  });
});

Deno.test("livesnap convert reads a QEMU stream from a pipe with --from qemu, and says so without", async () => {
  const stream = await loadFixture("paused");
  const convertFromPipe = async (...args: string[]) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../cli.ts", import.meta.url).pathname, "convert", ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(stream).catch(() => {}); // the command may stop reading early
    await w.close().catch(() => {});
    const out = await child.output();
    return { code: out.code, stdout: out.stdout, err: new TextDecoder().decode(out.stderr) };
  };
  const ok = await convertFromPipe("--from", "qemu", "-", "-");
  assertEquals(ok.code, 0, ok.err);
  assertMatch(ok.err, /<stdout>: lsnap, .* \(checked\)/);
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/p.lsnap`, ok.stdout);
    await Deno.writeFile(`${dir}/p.qemu`, stream);
    const fromFile = await convertSnapshot(`${dir}/p.qemu`, `${dir}/f.lsnap`);
    const snap = await readSnapshot((await Deno.open(`${dir}/p.lsnap`)).readable);
    assertEquals(toHex(snap.contentDigest), fromFile.contentDigest);
  });
  const bare = await convertFromPipe("-", "-");
  assertEquals(bare.code, 1);
  assertMatch(
    bare.err,
    /bad magic: not an \.lsnap file \(a QEMU stream on standard input needs --from qemu\)/,
  );
});
Deno.test("convertSnapshot() carries over an optional record of type 0", async () => {
  await withDir(async (dir) => {
    const input =
      new URL("../../tests/fixtures/regressions/optional-record-type-0.lsnap", import.meta.url)
        .pathname;
    const r = await convertSnapshot(input, `${dir}/out.lsnap`);
    assert(r.digestChecked);
    const types: number[] = [];
    const reader = new SnapshotStreamReader((await Deno.open(`${dir}/out.lsnap`)).readable);
    for await (const x of reader.records()) if (x.kind === "extension") types.push(x.type);
    assertEquals(types, [0]);
  });
});
