// Writing to a full filesystem (a 2 MiB tmpfs): a clear error naming the destination, nothing left
// at the destination, a previous snapshot there intact. Skipped visibly where tmpfs cannot be
// mounted (needs root).
import { assertEquals, assertRejects, assertStringIncludes } from "@std/assert/mod.js";
import { SnapshotWriter } from "../../format/writer.ts";
import { mountSmallTmpfs, unmountTmpfs } from "./_tmpfs.ts";
import { spawnWriter, verifyPath } from "./killed_writers.ts";
import { trialDigest } from "./_snapshot_content.ts";

const probe = await mountSmallTmpfs(64);
const reason = "reason" in probe ? probe.reason : null;
if ("dir" in probe) await unmountTmpfs(probe.dir);
else console.log(`full-disk tests skipped: cannot mount a tmpfs (${reason})`);

const regions = [{ name: "ram", base: 0x8000_0000, size: 1024 * 4096, pageSize: 4096 }];
const random = (n: number) => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
};

async function withFullDisk(kib: number, f: (dir: string) => Promise<void>): Promise<void> {
  const m = await mountSmallTmpfs(kib);
  if (!("dir" in m)) throw new Error(m.reason);
  try {
    await f(m.dir);
  } finally {
    await unmountTmpfs(m.dir);
  }
}

Deno.test({
  name:
    "SnapshotWriter.createFile() on a disk that fills up fails naming the file and leaves nothing",
  ignore: reason !== null,
  fn: () =>
    withFullDisk(2048, async (dir) => {
      const dest = `${dir}/vm.lsnap`;
      const w = await SnapshotWriter.createFile(dest, { regions, creator: "t", createdAt: 0 });
      const ram = random(1024 * 4096); // incompressible: 4 MiB cannot fit in 2 MiB
      const e = await assertRejects(async () => {
        for (let p = 0; p < 1024; p += 16) {
          await w.writePages(0, p, ram.subarray(p * 4096, (p + 16) * 4096));
        }
        await w.close();
      }, Error);
      assertStringIncludes(
        e.message,
        `Cannot write snapshot to '${dest}': No space left on device`,
      );
      assertEquals([...Deno.readDirSync(dir)], []);
    }),
});

Deno.test({
  name: "SnapshotWriter.createFile() on a full disk fails at once and keeps the previous snapshot",
  ignore: reason !== null,
  fn: () =>
    withFullDisk(1024, async (dir) => {
      const dest = `${dir}/vm.lsnap`;
      assertEquals((await spawnWriter(dest, 16, 1).output()).code, 0);
      // Fill the rest of the filesystem.
      const filler = await Deno.open(`${dir}/filler`, { write: true, create: true });
      await filler.write(new Uint8Array(4 << 20)).catch(() => 0);
      while (await filler.write(new Uint8Array(4096)).catch(() => 0) > 0) { /* fill */ }
      filler.close();
      const e = await assertRejects(
        () => SnapshotWriter.createFile(dest, { regions, creator: "t", createdAt: 0 }),
        Error,
      );
      assertStringIncludes(e.message, "No space left on device");
      assertEquals([...Deno.readDirSync(dir)].map((x) => x.name).sort(), ["filler", "vm.lsnap"]);
      const v = await verifyPath(dest);
      assertEquals([v.ok, v.digests.content], [true, await trialDigest(1, 16)]);
      // A child writer reports it as one line and a non-zero status.
      const out = await spawnWriter(dest, 256, 2).output();
      assertEquals(out.code, 3);
      assertStringIncludes(new TextDecoder().decode(out.stderr), "No space left on device");
      assertEquals([...Deno.readDirSync(dir)].map((x) => x.name).sort(), ["filler", "vm.lsnap"]);
    }),
});

Deno.test({
  name: "a live snapshot to a full disk fails with a clear message and the guest runs on",
  ignore: reason !== null,
  fn: () =>
    withFullDisk(1024, async (dir) => {
      const { LiveMachine } = await import("../../emulator/snapshot/live_machine.ts");
      const { memstressElf } = await import("../../emulator/guests/memstress_config.ts");
      const elf = memstressElf({ workingSetBytes: 4 << 20, writesPerRound: 1 << 16, rounds: 0 });
      const machine = await LiveMachine.start({ elf, ramSize: 8 << 20, uartSink: () => {} });
      try {
        const dest = `${dir}/vm.lsnap`;
        // Let it fill its 4 MiB working set with random words, which do not compress into 1 MiB.
        while ((await machine.status()).retired < 20_000_000) {
          await new Promise((r) => setTimeout(r, 100));
        }
        const e = await assertRejects(
          () => machine.snapshot({ path: dest, mode: "cow", cowBuffer: 0 }),
          Error,
        );
        assertStringIncludes(e.message, "No space left on device");
        assertEquals([...Deno.readDirSync(dir)], []);
        const a = await machine.status();
        await new Promise((r) => setTimeout(r, 200));
        const b = await machine.status();
        assertEquals([a.state, b.state], ["running", "running"]);
        assertEquals(b.retired > a.retired, true);
      } finally {
        await machine.quit();
      }
    }),
});
