/**
 * Restore refuses what it cannot continue, before anything runs, and migrates older device
 * state versions.
 */
import { assertEquals, assertRejects, assertStringIncludes } from "@std/assert/mod.js";
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
import { LIMIT_EXIT_STATUS } from "../tools/run.ts";
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
  const d = edit.description(describeMachine(m));
  const w = await SnapshotWriter.createFile(path, d);
  await w.writePages(0, 0, m.ram.bytes.subarray(0, d.regions[0].pageSize));
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
  {
    name: "another page size",
    edit: {
      description: (d) => ({ ...d, regions: [{ ...d.regions[0], pageSize: 8192 }] }),
    },
    message: "the file's page size is 8192, this machine's 4096",
  },
  {
    name: "more RAM than the machine can have",
    edit: {
      description: (d) => ({ ...d, regions: [{ ...d.regions[0], size: 4 * 1024 ** 3 }] }),
    },
    message:
      "RAM of 4294967296 bytes does not fit this machine (a multiple of 4096 up to 2147483648)",
  },
  {
    name: "no machine named",
    edit: { description: (d) => ({ ...d, metadata: undefined }) },
    message: "the file is of machine '(none)', this emulator is 'livesnap-virt-rv32'",
  },
  {
    name: "device state as foreign bytes",
    edit: {
      sections: (s) =>
        s.map((d) => d.id === UART_DEVICE_ID ? { ...d, encoding: "foreign" as const } : d),
    },
    message: "device 'ns16550a' is stored as foreign bytes, not CBOR state",
  },
  {
    name: "device state that is not CBOR",
    edit: {
      sections: (s) =>
        s.map((d) => d.id === UART_DEVICE_ID ? { ...d, state: new Uint8Array([0xff]) } : d),
    },
    message: "device 'ns16550a': Cannot decode device state: ",
  },
  {
    name: "a hart state no hart can have",
    edit: {
      sections: (s) =>
        s.map((d) => {
          if (d.id !== "hart") return d;
          const st = decodeDeviceState(d.state) as Record<string, unknown>;
          return { ...d, state: encodeDeviceState({ ...st, retired: "x" } as never) };
        }),
    },
    message: "hart: retired x is not an instruction count",
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
        // A message ending in a space is a prefix (the rest quotes the decoder).
        if (c.message.endsWith(" ")) {
          assertStringIncludes(e.message, `Cannot restore snapshot: ${c.message}`);
          assertEquals(e.message.indexOf("Cannot restore snapshot: "), 0);
        } else assertEquals(e.message, `Cannot restore snapshot: ${c.message}`);
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

Deno.test("a replay that would run forever stops at --max-instructions with status 124", async () => {
  await withTemp(async (dir) => {
    // counter never ends by itself: without a bound, restoring it runs forever.
    const { m } = counterAt(100_000);
    await saveMachine(m, `${dir}/c.lsnap`);
    const r = await restoreSnapshot({
      path: `${dir}/c.lsnap`,
      maxInstructions: 400_000,
      sink: () => {},
    });
    assertEquals([r.exit, r.limitReached, r.retired], [{ reason: "budget" }, true, 400_000]);
    const direct = counterAt(400_000);
    assertEquals(await machineContentDigest(r.machine), await machineContentDigest(direct.m));

    const errors: string[] = [];
    const original = console.error;
    console.error = (...a: unknown[]) => errors.push(a.join(" "));
    try {
      assertEquals(
        await restoreMain([`${dir}/c.lsnap`, "--max-instructions", "400000"]),
        LIMIT_EXIT_STATUS,
      );
      // A bound below the snapshot's own count is refused before anything runs.
      assertEquals(await restoreMain([`${dir}/c.lsnap`, "--max-instructions", "5"]), 1);
    } finally {
      console.error = original;
    }
    assertEquals(errors, [
      "livesnap restore: the guest did not finish within --max-instructions 400000; stopped (exit status 124)",
      "livesnap restore: Cannot restore to --max-instructions 5: the snapshot was taken at instruction 100000",
    ]);
  });
});
