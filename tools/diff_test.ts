import { assert, assertEquals, assertMatch, assertRejects } from "@std/assert/mod.js";
import { encodeDeviceState } from "../format/device_state.ts";
import { ChecksumError } from "../format/errors.ts";
import { SnapshotWriter } from "../format/writer.ts";
import { makeRam, PAGE, shuffle } from "../tests/_snapshots.ts";
import { diffSnapshots } from "./diff.ts";

const CLI = new URL("./cli.ts", import.meta.url).pathname;

interface Machine {
  ram: Uint8Array;
  devices: { id: string; instance: number; version: number; state: unknown }[];
  ramBase?: number;
}

async function write(path: string, m: Machine, seed: number): Promise<void> {
  const pages = m.ram.length / PAGE;
  const w = await SnapshotWriter.createFile(path, {
    regions: [{ name: "ram", base: m.ramBase ?? 0x8000_0000, size: m.ram.length, pageSize: PAGE }],
    creator: "diff test",
    createdAt: seed,
  });
  for (const p of shuffle([...Array(pages).keys()], seed)) {
    await w.writePages(0, p, m.ram.subarray(p * PAGE, (p + 1) * PAGE));
  }
  for (const d of m.devices) {
    await w.writeDevice({
      id: d.id,
      instance: d.instance,
      version: d.version,
      state: encodeDeviceState(d.state as never),
    });
  }
  await w.close();
}

function machineA(): Machine {
  const x = Array.from({ length: 32 }, (_, i) => i);
  return {
    ram: makeRam(64, 99),
    devices: [
      { id: "hart", instance: 0, version: 1, state: { pc: 0x8000_0100, x, priv: 3 } },
      {
        id: "uart",
        instance: 0,
        version: 1,
        state: { lsr: 0x60, fifo: new Uint8Array([1, 2, 3]) },
      },
    ],
  };
}

/** The pages B changes, zeroes and fills. */
interface Chosen {
  changed: number;
  zeroed: number;
  filled: number;
}

/** B differs from A in three pages (changed, zeroed, filled) and in device fields. */
function machineB(a: Machine): { machine: Machine; chosen: Chosen } {
  const ram = a.ram.slice();
  const nonZero = (p: number) => ram.subarray(p * PAGE, (p + 1) * PAGE).some((b) => b !== 0);
  const pick = (want: boolean, not: number[]) =>
    [...Array(64).keys()].find((p) => nonZero(p) === want && !not.includes(p))!;
  const changed = pick(true, []);
  const zeroed = pick(true, [changed]);
  const filled = pick(false, []);
  ram[changed * PAGE + 17] ^= 0xff;
  ram.fill(0, zeroed * PAGE, (zeroed + 1) * PAGE);
  ram[filled * PAGE + 4000] = 1;
  const x = Array.from({ length: 32 }, (_, i) => i);
  x[10] = 42;
  return {
    machine: {
      ram,
      devices: [
        { id: "hart", instance: 0, version: 1, state: { pc: 0x8000_0104, x, priv: 3 } },
        { id: "clint", instance: 0, version: 1, state: { mtime: 5 } },
      ],
    },
    chosen: { changed, zeroed, filled },
  };
}

async function withPair(fn: (a: string, b: string, chosen: Chosen) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "livesnap-diff-" });
  try {
    const a = machineA();
    const b = machineB(a);
    await write(`${dir}/a.lsnap`, a, 1);
    await write(`${dir}/b.lsnap`, b.machine, 2);
    await fn(`${dir}/a.lsnap`, `${dir}/b.lsnap`, b.chosen);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("diffSnapshots() counts changed, zeroed and filled pages and lists them with --pages", async () => {
  await withPair(async (a, b, chosen) => {
    const d = await diffSnapshots(a, b, { pages: true });
    assertEquals(d.equal, false);
    assertEquals(d.regions.length, 1);
    const r = d.regions[0];
    assertEquals([r.changed, r.zeroed, r.filled, r.pagesCompared, r.layoutDiffers], [
      1,
      1,
      1,
      64,
      false,
    ]);
    const expected = [
      { page: chosen.changed, change: "changed" },
      { page: chosen.zeroed, change: "zeroed" },
      { page: chosen.filled, change: "filled" },
    ].sort((x, y) => x.page - y.page).map((p) => ({ ...p, address: 0x8000_0000 + p.page * PAGE }));
    assertEquals(r.pages, expected);
    const counts = await diffSnapshots(a, b);
    assertEquals(counts.regions[0].pages, undefined);
  });
});

Deno.test("diffSnapshots() names the device fields that differ and devices on one side only", async () => {
  await withPair(async (a, b) => {
    const d = await diffSnapshots(a, b);
    assertEquals(d.devices, [
      { id: "clint", instance: 0, change: "only-in-b", versionB: 1 },
      {
        id: "hart",
        instance: 0,
        change: "changed",
        versionA: 1,
        versionB: 1,
        fields: [{ path: "pc", a: 0x8000_0100, b: 0x8000_0104 }, { path: "x[10]", a: 10, b: 42 }],
      },
      { id: "uart", instance: 0, change: "only-in-a", versionA: 1 },
    ]);
  });
});

Deno.test("diffSnapshots() finds a snapshot equal to itself whatever the page order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const m = machineA();
    await write(`${dir}/x.lsnap`, m, 5);
    await write(`${dir}/y.lsnap`, m, 6); // same state, other page order and creation time
    const d = await diffSnapshots(`${dir}/x.lsnap`, `${dir}/y.lsnap`, { pages: true });
    assertEquals(d.equal, true);
    assertEquals(d.devices, []);
    assertEquals(d.regions[0].pages, []);
    assertEquals(d.contentDigests.a, d.contentDigests.b);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("diffSnapshots() reports a region whose layout differs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const m = machineA();
    await write(`${dir}/x.lsnap`, m, 5);
    await write(`${dir}/y.lsnap`, { ...m, ramBase: 0x9000_0000 }, 5);
    const d = await diffSnapshots(`${dir}/x.lsnap`, `${dir}/y.lsnap`);
    assertEquals(d.equal, false);
    assertEquals(d.regions[0].layoutDiffers, true);
    assertEquals(d.regions[0].b?.base, 0x9000_0000);
    assertEquals(d.regions[0].changed + d.regions[0].zeroed + d.regions[0].filled, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("diffSnapshots() names the damaged file, record and offset", async () => {
  await withPair(async (a, b) => {
    const bytes = await Deno.readFile(b);
    bytes[100] ^= 0x40;
    await Deno.writeFile(b, bytes);
    const e = await assertRejects(() => diffSnapshots(a, b), ChecksumError);
    assertMatch(
      e.message,
      new RegExp(`^${b.replaceAll(".", "\\.")}: Cannot read record \\d+ at byte \\d+`),
    );
  });
});

Deno.test("livesnap diff exits 0 when equal, 1 when different, 2 on error; reads - and prints JSON", async () => {
  await withPair(async (a, b) => {
    const run = async (args: string[], stdin?: Uint8Array) => {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", CLI, "diff", ...args],
        stdin: stdin ? "piped" : "null",
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).spawn();
      if (stdin) {
        const w = child.stdin.getWriter();
        await w.write(stdin);
        await w.close();
      }
      const out = await child.output();
      return {
        code: out.code,
        stdout: new TextDecoder().decode(out.stdout),
        stderr: new TextDecoder().decode(out.stderr),
      };
    };
    const same = await run(["-", a], await Deno.readFile(a));
    assertEquals(same.code, 0, same.stderr);
    assertMatch(same.stdout, /^equal\n/);
    const differ = await run([a, b, "--pages"]);
    assertEquals(differ.code, 1);
    assertMatch(
      differ.stdout,
      /region ram: 3 of 64 pages differ \(1 changed, 1 zeroed, 1 filled\)/,
    );
    assertMatch(
      differ.stdout,
      /device hart#0: 2 fields differ\n {2}pc: 2147483904 \(0x80000100\) -> 2147483908 \(0x80000104\)/,
    );
    assert(!differ.stdout.includes("\x1b["), "NO_COLOR is respected");
    const json = await run([a, b, "--json"]);
    assertEquals(json.code, 1);
    assertEquals(JSON.parse(json.stdout).regions[0].changed, 1);
    const bad = await run([a]);
    assertEquals(bad.code, 2);
    assertMatch(bad.stderr, /expected A and B, got 1 arguments/);
    const help = await run(["--help"]);
    assertEquals(help.code, 0);
    assertMatch(help.stdout, /Examples:/);
  });
});

Deno.test("livesnap diff --max-pages caps the list and counts the rest", async () => {
  await withPair(async (a, b) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", CLI, "diff", "--pages", "--max-pages", "1", a, b],
      stdout: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 1);
    assertEquals(text.split("\n").filter((l) => /^ {2}page \d+ 0x/.test(l)).length, 1);
    assertMatch(text, /\.\.\. 2 more/);
  });
});
