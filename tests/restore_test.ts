/**
 * Restore refuses what it cannot continue, before anything runs, and migrates older device
 * state versions.
 */
import { assertEquals, assertRejects } from "@std/assert/mod.js";
import { Machine } from "../emulator/machine.ts";
import { UART_DEVICE_ID } from "../emulator/devices/uart.ts";
import { SnapshotWriter } from "../format/writer.ts";
import { decodeDeviceState, encodeDeviceState } from "../format/device_state.ts";
import { ChecksumError, TruncatedError } from "../format/errors.ts";
import { restoreMachine } from "../emulator/snapshot/restore.ts";
import { saveMachine } from "../emulator/snapshot/save.ts";
import {
  describeMachine,
  machineContentDigest,
  SnapshotMismatchError,
  STATE_MIGRATIONS,
  type StateMigration,
} from "../emulator/snapshot/machine_state.ts";
import { restoreSnapshot } from "../tools/restore.ts";
import { main as restoreMain } from "../tools/restore_command.ts";

const ELF = Deno.readFileSync(new URL("../emulator/guests/build/counter.elf", import.meta.url));
const RAM = 4 * 1024 * 1024;

function counterAt(n: number) {
  let out = "";
  const decoder = new TextDecoder();
  const m = Machine.fromElf(ELF, { ramSize: RAM, uartSink: (b) => out += decoder.decode(b) });
  m.run(n);
  return { m, out: () => out };
}

async function withTemp<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function open(path: string) {
  return (await Deno.open(path)).readable;
}

Deno.test("restoreSnapshot() continues exactly where the snapshot was taken", async () => {
  await withTemp(async (dir) => {
    const { m, out } = counterAt(1_000_000);
    await saveMachine(m, `${dir}/c.lsnap`);
    const before = out();
    let after = "";
    const r = await restoreSnapshot({
      path: `${dir}/c.lsnap`,
      stopAt: 3_000_000,
      sink: (b) => after += new TextDecoder().decode(b),
    });
    assertEquals(r.snapshotRetired, 1_000_000);
    assertEquals(r.retired, 3_000_000);
    const direct = counterAt(3_000_000);
    assertEquals(before + after, direct.out());
    assertEquals(await machineContentDigest(r.machine), await machineContentDigest(direct.m));
  });
});

/** Writes a file with `counter`'s state at 100 000 instructions, its description and sections
 * passed through `edit`. */
async function craft(
  path: string,
  edit: {
    description?: (d: ReturnType<typeof describeMachine>) => ReturnType<typeof describeMachine>;
    sections?: Parameters<typeof saveMachine>[2] extends infer O
      ? O extends { editSections?: infer F } ? F : never
      : never;
  },
) {
  const { m } = counterAt(100_000);
  if (edit.description === undefined) {
    await saveMachine(m, path, { editSections: edit.sections });
    return;
  }
  const w = await SnapshotWriter.createFile(path, edit.description(describeMachine(m)));
  await w.writePages(0, 0, m.ram.bytes.subarray(0, 4096));
  await w.close();
}

const REFUSALS: {
  name: string;
  edit: Parameters<typeof craft>[1];
  message: string;
}[] = [
  {
    name: "another machine",
    edit: {
      description: (d) => ({
        ...d,
        metadata: encodeDeviceState({ machine: "other-board", isa: "x" }),
      }),
    },
    message: "the file is of machine 'other-board', this emulator is 'livesnap-virt-rv32'",
  },
  {
    name: "a second memory region",
    edit: {
      description: (d) => ({
        ...d,
        regions: [...d.regions, { name: "flash", base: 0x2000_0000, size: 4096, pageSize: 4096 }],
      }),
    },
    message: "the file has regions [ram, flash], this machine has exactly one, 'ram'",
  },
  {
    name: "RAM elsewhere",
    edit: {
      description: (d) => ({ ...d, regions: [{ ...d.regions[0], base: 0x4000_0000 }] }),
    },
    message: "RAM is at 0x40000000 in the file, at 0x80000000 here",
  },
  {
    name: "a newer device state version",
    edit: {
      sections: (s) => s.map((d) => d.id === UART_DEVICE_ID ? { ...d, version: 7 } : d),
    },
    message: "device 'ns16550a' has state version 7, newer than this emulator's 2",
  },
  {
    name: "an unknown device",
    edit: {
      sections: (
        s,
      ) => [...s, { id: "virtio-net", instance: 0, version: 1, state: encodeDeviceState({}) }],
    },
    message: "the file has a device 'virtio-net' this machine does not have",
  },
  {
    name: "an older version with no migration",
    edit: {
      sections: (s) => s.map((d) => d.id === UART_DEVICE_ID ? { ...d, version: 0 } : d),
    },
    message: "device 'ns16550a' has state version 0 and there is no migration from version 0 to 1",
  },
  {
    name: "no hart",
    edit: { sections: (s) => s.filter((d) => d.id !== "hart") },
    message: "the file has no 'hart' section",
  },
];

Deno.test("restoreMachine() refuses a file that does not fit, naming what", async (t) => {
  for (const c of REFUSALS) {
    await t.step(c.name, async () => {
      await withTemp(async (dir) => {
        await craft(`${dir}/x.lsnap`, c.edit);
        const e = await assertRejects(
          async () => await restoreMachine(await open(`${dir}/x.lsnap`)),
          SnapshotMismatchError,
        );
        assertEquals(e.message, `Cannot restore snapshot: ${c.message}`);
      });
    });
  }
});

Deno.test("restoreMachine() migrates an older device state version step by step", async () => {
  await withTemp(async (dir) => {
    // A synthetic version 0 of the UART's state: before the scratch register was saved, and
    // with the divisor latch as one number. Its migration to version 1 rebuilds both.
    const path = `${dir}/old.lsnap`;
    await craft(path, {
      sections: (s) =>
        s.map((d) => {
          if (d.id !== UART_DEVICE_ID) return d;
          const v1 = decodeDeviceState(d.state) as Record<string, unknown>;
          const { scr: _scr, dll, dlm, ...rest } = v1;
          return {
            ...d,
            version: 0,
            state: encodeDeviceState(
              { ...rest, divisor: (dlm as number) * 256 + (dll as number) } as never,
            ),
          };
        }),
    });
    let calls = 0;
    const migrations: Record<string, Record<number, StateMigration>> = {
      ...STATE_MIGRATIONS,
      [UART_DEVICE_ID]: {
        ...STATE_MIGRATIONS[UART_DEVICE_ID],
        0: (s) => {
          calls++;
          const { divisor, ...rest } = s as Record<string, number>;
          return { ...rest, scr: 0, dll: divisor & 0xff, dlm: divisor >> 8 };
        },
      },
    };
    const restored = await restoreMachine(await open(path), { migrations });
    assertEquals(calls, 1);
    const direct = counterAt(100_000);
    assertEquals(restored.machine.uart.save(), direct.m.uart.save());
    restored.machine.run(200_000);
    direct.m.run(200_000);
    assertEquals(
      await machineContentDigest(restored.machine),
      await machineContentDigest(direct.m),
    );
  });
});

Deno.test("restoreMachine() refuses a damaged or cut file with the format's error", async () => {
  await withTemp(async (dir) => {
    const { m } = counterAt(100_000);
    const path = `${dir}/c.lsnap`;
    await saveMachine(m, path);
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(`${dir}/cut.lsnap`, bytes.subarray(0, bytes.length - 40));
    await assertRejects(
      async () => await restoreMachine(await open(`${dir}/cut.lsnap`)),
      TruncatedError,
    );
    const flipped = bytes.slice();
    flipped[200] ^= 0xff;
    await Deno.writeFile(`${dir}/flip.lsnap`, flipped);
    await assertRejects(
      async () => await restoreMachine(await open(`${dir}/flip.lsnap`)),
      ChecksumError,
    );
  });
});

Deno.test("restore command refuses a mismatching file with exit status 1 and the reason", async () => {
  await withTemp(async (dir) => {
    await craft(`${dir}/x.lsnap`, {
      sections: (s) => s.map((d) => d.id === UART_DEVICE_ID ? { ...d, version: 9 } : d),
    });
    const errors: string[] = [];
    const original = console.error;
    console.error = (...a: unknown[]) => errors.push(a.join(" "));
    try {
      assertEquals(await restoreMain([`${dir}/x.lsnap`]), 1);
    } finally {
      console.error = original;
    }
    assertEquals(errors, [
      "livesnap restore: Cannot restore snapshot: device 'ns16550a' has state version 9, newer than this emulator's 2",
    ]);
  });
});
