/**
 * Cross-emulator resume with the real qemu-system-riscv32 (7.2): the checkpoint guest
 * (emulator/guests/checkpoint.c) prints values that depend only on computation, so wherever it is
 * saved, the machine that resumes it must print exactly what an uninterrupted QEMU run prints from
 * that point on. Where that point is in its output is read from the snapshot itself: the guest
 * counts the bytes it has handed to its UART (`tx_count`), and the bytes still in its output ring
 * are in the snapshot's RAM.
 *
 * - QEMU → livesnap: streams QEMU wrote paused, live, after several dirty passes and with
 *   background-snapshot, resumed by `livesnap restore`;
 * - livesnap → QEMU: snapshots livesnap took in cow, stop and precopy modes, converted with
 *   `livesnap convert --to qemu` and resumed by `qemu-system-riscv32 -machine virt -bios none -m
 *   16M -incoming "exec:cat FILE"`;
 * - QEMU → livesnap → QEMU: the RAM QEMU holds after loading equals the first stream's.
 *
 * Under CI these tests run (qemuTestGate fails when QEMU is missing); elsewhere they are skipped
 * without QEMU, and qemu/riscv_virt_test.ts covers the same ground with committed streams.
 */
import { assert, assertEquals } from "@std/assert/mod.js";
import { readSnapshot } from "../format/stream_reader.ts";
import { parseElf } from "../emulator/elf.ts";
import { LiveMachine } from "../emulator/snapshot/live_machine.ts";
import type { SnapshotMode } from "../emulator/snapshot/session.ts";
import { main as convert } from "../tools/convert_command.ts";
import { main as restore } from "../tools/restore_command.ts";
import { restoreSnapshot } from "../tools/restore.ts";
import { qemuTestGate } from "./_qmp.ts";
import {
  makeStream,
  memoryBytes,
  resumeInQemu,
  STREAM_KINDS,
  uninterruptedOutput,
} from "./_make_stream.ts";
import { readQemuSnapshot } from "./snapshot.ts";

const { ignore, suffix } = await qemuTestGate();
const ELF = new URL("../emulator/guests/build/checkpoint.elf", import.meta.url).pathname;
const MEMORY = "16M";
/** Bytes of output compared after each restore point. */
const AFTER = 3000;
const TX_COUNT = ignore ? 0 : parseElf(await Deno.readFile(ELF)).symbols.get("tx_count")! -
  0x8000_0000;

/** What QEMU prints running the guest uninterrupted: grown on demand, shared by the tests. */
let reference = "";
async function uninterrupted(bytes: number, dir: string): Promise<string> {
  if (reference.length < bytes) {
    reference = await uninterruptedOutput(ELF, dir, bytes + 20_000, MEMORY, 120_000);
  }
  return reference;
}

const word = (ram: Uint8Array, at: number) =>
  new DataView(ram.buffer, ram.byteOffset).getUint32(at, true);

async function quietly<T>(f: () => Promise<T>): Promise<T> {
  const error = console.error;
  console.error = () => {};
  try {
    return await f();
  } finally {
    console.error = error;
  }
}

for (const kind of STREAM_KINDS) {
  Deno.test({
    name:
      `QEMU's ${kind} stream resumes in livesnap with the checkpoints of QEMU's own run${suffix}`,
    ignore,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: `livesnap-xemu-${kind}-` });
      try {
        const made = await makeStream(kind, `${dir}/s.qemu`, dir, {
          kernel: ELF,
          lines: 20,
          memory: MEMORY,
        });
        if (kind === "multipass") assert(made.passes > 2, `passes: ${made.passes}`);
        const out: number[] = [];
        let tx = -1;
        await restoreSnapshot({
          path: `${dir}/s.qemu`,
          runFor: 0,
          sink: () => {},
        }).then((r) => (tx = word(r.machine.ram.bytes, TX_COUNT)));
        const r = await restoreSnapshot({
          path: `${dir}/s.qemu`,
          runFor: 60_000_000,
          sink: (b) => out.push(...b),
        });
        assertEquals(r.snapshotRetired, 0);
        const text = new TextDecoder().decode(Uint8Array.from(out));
        assert(text.length >= AFTER, `printed ${text.length} bytes`);
        // Paused, live and multi-pass streams end with the VM stopped: what QEMU printed before
        // is exactly the output up to the snapshot.
        if (kind !== "background") assertEquals(made.serial.length, tx);
        const ref = await uninterrupted(tx + AFTER, dir);
        assertEquals(text.slice(0, AFTER), ref.slice(tx, tx + AFTER));
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

const MODES: SnapshotMode[] = ["cow", "stop", "precopy"];
for (const mode of MODES) {
  Deno.test({
    name:
      `a livesnap ${mode} snapshot resumes in QEMU with the checkpoints of QEMU's own run${suffix}`,
    ignore,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: `livesnap-xemu-${mode}-` });
      try {
        const at = 4_567_891;
        const m = await LiveMachine.start({
          elf: await Deno.readFile(ELF),
          ramSize: memoryBytes(MEMORY),
          stopAt: at + 3_000_000,
          schedule: [{ at, mode, path: `${dir}/s.lsnap`, cowBuffer: 0 }],
        });
        await m.halted;
        await m.quit();
        assertEquals(
          await quietly(() =>
            convert(["--quiet", "--to", "qemu", `${dir}/s.lsnap`, `${dir}/s.qemu`])
          ),
          0,
        );
        const snap = await readSnapshot((await Deno.open(`${dir}/s.lsnap`)).readable);
        const tx = word(snap.regions[0], TX_COUNT);
        assert(tx > 0);
        const resumed = await resumeInQemu(`${dir}/s.qemu`, dir, {
          memory: MEMORY,
          bytes: AFTER,
        });
        const ref = await uninterrupted(tx + AFTER, dir);
        assertEquals(resumed.slice(0, AFTER), ref.slice(tx, tx + AFTER));
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: `QEMU → livesnap → QEMU: the RAM QEMU holds after loading is the first stream's${suffix}`,
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "livesnap-xemu-roundtrip-" });
    try {
      await makeStream("paused", `${dir}/first.qemu`, dir, {
        kernel: ELF,
        lines: 20,
        memory: MEMORY,
      });
      // In livesnap: restore, snapshot at the restore point itself, stop.
      const args = [`${dir}/first.qemu`, "--snapshot-at", "0", "--stop-at", "0"];
      assertEquals(await quietly(() => restore([...args, "--out", `${dir}/mid.lsnap`])), 0);
      assertEquals(
        await quietly(() =>
          convert(["--quiet", "--to", "qemu", `${dir}/mid.lsnap`, `${dir}/back.qemu`])
        ),
        0,
      );
      const size = memoryBytes(MEMORY);
      const resumed = await resumeInQemu(`${dir}/back.qemu`, dir, {
        memory: MEMORY,
        bytes: AFTER,
        ramDump: { path: `${dir}/ram.bin`, size },
      });
      const first = await readQemuSnapshot([await Deno.readFile(`${dir}/first.qemu`)]);
      const want = new Uint8Array(size);
      for (const [at, page] of first.pages.get("riscv_virt_board.ram")!) want.set(page, at);
      const got = await Deno.readFile(`${dir}/ram.bin`);
      assertEquals(got.length, want.length);
      const differs = got.findIndex((b, i) => b !== want[i]);
      assertEquals(differs, -1, `RAM differs from offset 0x${differs.toString(16)}`);
      // And the guest goes on from there.
      const tx = word(want, TX_COUNT);
      const ref = await uninterrupted(tx + AFTER, dir);
      assertEquals(resumed.slice(0, AFTER), ref.slice(tx, tx + AFTER));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
