/**
 * The commands around cross-emulator resume, without QEMU: `restore` of a QEMU stream with
 * `--run-for` and `--verbose`, `inspect` saying where an instruction count comes from, and files
 * written before the PLIC and the mask ROM existed restoring with both at reset.
 */
import { assert, assertEquals, assertStringIncludes } from "@std/assert/mod.js";
import { zstdDecompressExact, zstdFrameContentSize } from "../format/_zstd.ts";
import { decodeDeviceState, encodeDeviceState } from "../format/device_state.ts";
import { Machine } from "../emulator/machine.ts";
import { UART_DEVICE_ID } from "../emulator/devices/uart.ts";
import { PLIC_DEVICE_ID, plicResetState } from "../emulator/devices/plic.ts";
import { MROM_DEVICE_ID } from "../emulator/devices/mrom.ts";
import { restoreMachine } from "../emulator/snapshot/restore.ts";
import { saveMachine } from "../emulator/snapshot/save.ts";
import { machineContentDigest } from "../emulator/snapshot/machine_state.ts";
import { inspectSnapshot } from "../tools/inspect.ts";
import { restoreSnapshot } from "../tools/restore.ts";
import { main as restoreMain } from "../tools/restore_command.ts";
import { convertQemuToLsnap } from "../qemu/convert.ts";

const CLI = new URL("../tools/cli.ts", import.meta.url).pathname;
const FIXTURES = new URL("./fixtures/qemu-virt/", import.meta.url);
const COUNTER = Deno.readFileSync(new URL("../emulator/guests/build/counter.elf", import.meta.url));

async function withTemp<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A committed QEMU stream, decompressed to `path`. */
async function stream(name: string, path: string): Promise<void> {
  const z = await Deno.readFile(new URL(`${name}.qemu.zst`, FIXTURES));
  const size = zstdFrameContentSize(z);
  const out = typeof size === "number" ? zstdDecompressExact(z, size) : size;
  if (typeof out === "string") throw new Error(out);
  await Deno.writeFile(path, out);
}

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const d = new TextDecoder();
  return { code: o.code, out: d.decode(o.stdout), err: d.decode(o.stderr) };
}

Deno.test("livesnap restore of a QEMU stream: --run-for counts from the restore point, --verbose lists what was ignored", async () => {
  await withTemp(async (dir) => {
    await stream("checkpoint-paused", `${dir}/s.qemu`);
    const r = await cli("restore", `${dir}/s.qemu`, "--run-for", "3000000", "--verbose");
    assertEquals(r.code, 0, r.err);
    const manifest = JSON.parse(await Deno.readTextFile(new URL("manifest.json", FIXTURES)));
    const expected: string = manifest.streams["checkpoint-paused"].expected;
    assert(r.out.length > 500, "the guest printed");
    assert(expected.startsWith(r.out.slice(0, Math.min(r.out.length, expected.length))));
    assertStringIncludes(r.err, "livesnap restore: cpu env.load_val: ");
    assertStringIncludes(r.err, "livesnap restore: globalstate runstate: 'paused' in QEMU");
    // The same run through the library stops after exactly that many instructions.
    const lib = await restoreSnapshot({ path: `${dir}/s.qemu`, runFor: 3_000_000, sink: () => {} });
    assertEquals([lib.snapshotRetired, lib.retired, lib.source], [0, 3_000_000, "qemu-stream"]);
  });
});

Deno.test("restoreSnapshot() runFor counts from a livesnap snapshot's own instruction count", async () => {
  await withTemp(async (dir) => {
    const m = Machine.fromElf(COUNTER, { ramSize: 4 << 20, uartSink: () => {} });
    m.run(123_456);
    await saveMachine(m, `${dir}/c.lsnap`);
    const r = await restoreSnapshot({ path: `${dir}/c.lsnap`, runFor: 1000, sink: () => {} });
    assertEquals([r.snapshotRetired, r.retired, r.source], [123_456, 124_456, "lsnap"]);
    const errors: string[] = [];
    const error = console.error;
    console.error = (...a: unknown[]) => errors.push(a.join(" "));
    try {
      assertEquals(
        await restoreMain([`${dir}/c.lsnap`, "--run-for", "5", "--stop-at", "200000"]),
        2,
      );
      assertEquals(await restoreMain([`${dir}/c.lsnap`, "--run-for", "x"]), 2);
    } finally {
      console.error = error;
    }
    const help = "\n\nRun 'livesnap restore --help' for usage.";
    assertEquals(errors, [
      `livesnap restore: Cannot restore: give --stop-at or --run-for, not both${help}`,
      `livesnap restore: Cannot parse --run-for: 'x' is not an instruction count${help}`,
    ]);
  });
});

Deno.test("inspect says where a snapshot's instruction count comes from", async () => {
  await withTemp(async (dir) => {
    const m = Machine.fromElf(COUNTER, { ramSize: 4 << 20, uartSink: () => {} });
    m.run(50_000);
    await saveMachine(m, `${dir}/own.lsnap`);
    const own = await inspectSnapshot((await Deno.open(`${dir}/own.lsnap`)).readable);
    assertEquals(own.instructions, { retired: 50_000, countedFrom: "reset" });

    await stream("checkpoint-paused", `${dir}/s.qemu`);
    const restored = await restoreMachine((await Deno.open(`${dir}/s.qemu`)).readable, {
      uartSink: () => {},
    });
    restored.machine.run(777);
    await saveMachine(restored.machine, `${dir}/after-qemu.lsnap`);
    const after = await inspectSnapshot((await Deno.open(`${dir}/after-qemu.lsnap`)).readable);
    assertEquals(after.instructions, { retired: 777, countedFrom: "qemu-stream" });

    await convertQemuToLsnap([await Deno.readFile(`${dir}/s.qemu`)], `${dir}/conv.lsnap`);
    const conv = await inspectSnapshot((await Deno.open(`${dir}/conv.lsnap`)).readable);
    assertEquals(conv.instructions, { retired: null, countedFrom: "not-recorded" });

    const text = await cli("inspect", `${dir}/after-qemu.lsnap`);
    assertStringIncludes(
      text.out,
      "instructions 777 retired since the restore of a QEMU stream (QEMU records no count",
    );
    const q = await cli("inspect", `${dir}/s.qemu`);
    assertStringIncludes(q.out, "instructions: not recorded (QEMU counts no retired instructions)");
  });
});

Deno.test("a file from before the PLIC and the mask ROM restores with both at reset and runs on", async () => {
  await withTemp(async (dir) => {
    const m = Machine.fromElf(COUNTER, { ramSize: 4 << 20, uartSink: () => {} });
    m.run(100_000);
    // As version 0.1 wrote it: UART state version 1, no PLIC, no mask ROM.
    await saveMachine(m, `${dir}/old.lsnap`, {
      editSections: (s) =>
        s.filter((d) => d.id !== PLIC_DEVICE_ID && d.id !== MROM_DEVICE_ID).map((d) => {
          if (d.id !== UART_DEVICE_ID) return d;
          const { rbr: _r, thrIpending: _t, lsrErrors: _l, ...v1 } = decodeDeviceState(
            d.state,
          ) as Record<string, never>;
          return { ...d, version: 1, state: encodeDeviceState(v1) };
        }),
    });
    const r = await restoreMachine((await Deno.open(`${dir}/old.lsnap`)).readable, {
      uartSink: () => {},
    });
    assertEquals(r.machine.plic.save(), plicResetState());
    assertEquals(r.machine.mrom.save().bytes.length, 0);
    assertEquals(r.machine.uart.thrIpending, true);
    r.machine.run(300_000);
    m.run(300_000);
    assertEquals(await machineContentDigest(r.machine), await machineContentDigest(m));
  });
});
