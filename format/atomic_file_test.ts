import { assertEquals, assertMatch, assertRejects } from "@std/assert/mod.js";
import {
  AtomicFile,
  type AtomicFs,
  DENO_FS,
  removeStaleTemporaries,
  tempPathFor,
} from "./atomic_file.ts";
import { SnapshotWriter } from "./writer.ts";

async function deadPid(): Promise<number> {
  const child = new Deno.Command("true").spawn();
  await child.status;
  return child.pid;
}

/** The real file system, logging each operation; `fail` names one to make throw. */
function watchedFs(log: string[], dir: string, fail?: keyof AtomicFs): AtomicFs {
  const short = (p: string) => p.replace(`${dir}/`, "").replace(/\.tmp-.*$/, ".tmp");
  const check = (op: keyof AtomicFs) => {
    if (op === fail) throw new Error(`injected ${op} failure`);
  };
  return {
    ...DENO_FS,
    open: (p, o) => {
      log.push(`open ${short(p)}`);
      check("open");
      return DENO_FS.open(p, o);
    },
    syncFile: async (f) => {
      log.push("fsync file");
      check("syncFile");
      await DENO_FS.syncFile(f);
    },
    rename: async (a, b) => {
      log.push(`rename ${short(a)} ${short(b)}`);
      check("rename");
      await DENO_FS.rename(a, b);
    },
    remove: async (p) => {
      log.push(`remove ${short(p)}`);
      await DENO_FS.remove(p);
    },
    syncDirectory: async (d) => {
      log.push(`fsync dir ${d === dir ? "<dir>" : d}`);
      await DENO_FS.syncDirectory(d);
    },
  };
}

const regions = [{ name: "ram", base: 0, size: 8192, pageSize: 4096 }];

Deno.test("tempPathFor() names the host, the process and a random part", () => {
  const p = tempPathFor("/x/vm.lsnap");
  assertMatch(p, new RegExp(`^/x/vm\\.lsnap\\.tmp-[0-9a-f]{8}-${Deno.pid}-[0-9a-f]{12}$`));
});

Deno.test("removeStaleTemporaries() removes only this host's temporaries of dead writers", async () => {
  const dir = await Deno.makeTempDir();
  const live = new Deno.Command("sleep", { args: ["30"] }).spawn();
  try {
    const dest = `${dir}/vm.lsnap`;
    const tag = tempPathFor(dest).split(".tmp-")[1].split("-")[0];
    const other = tag === "00000000" ? "11111111" : "00000000";
    const dead = await deadPid();
    const names = {
      dead: `vm.lsnap.tmp-${tag}-${dead}-0123456789ab`,
      live: `vm.lsnap.tmp-${tag}-${live.pid}-0123456789ab`,
      self: `vm.lsnap.tmp-${tag}-${Deno.pid}-0123456789ab`,
      otherHost: `vm.lsnap.tmp-${other}-${dead}-0123456789ab`,
      otherDest: `vm2.lsnap.tmp-${tag}-${dead}-0123456789ab`,
      oldStyle: `vm.lsnap.tmp-0123456789ab`,
      dest: "vm.lsnap",
    };
    for (const n of Object.values(names)) await Deno.writeFile(`${dir}/${n}`, new Uint8Array(3));
    assertEquals(await removeStaleTemporaries(dest), [`${dir}/${names.dead}`]);
    const left = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assertEquals(left, Object.values(names).filter((n) => n !== names.dead).sort());
  } finally {
    live.kill("SIGKILL");
    await live.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AtomicFile.commit() fsyncs the file, renames it, then fsyncs the directory", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const log: string[] = [];
    const out = await AtomicFile.create(`${dir}/out.bin`, { fs: watchedFs(log, dir) });
    await out.write(new Uint8Array([1, 2, 3]));
    await assertRejects(() => Deno.stat(`${dir}/out.bin`), Deno.errors.NotFound);
    await out.commit();
    assertEquals(log, [
      "open out.bin.tmp",
      "fsync file",
      "rename out.bin.tmp out.bin",
      "fsync dir <dir>",
    ]);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["out.bin"]);
    assertEquals([...await Deno.readFile(`${dir}/out.bin`)], [1, 2, 3]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AtomicFile.commit() that fails leaves nothing and keeps the old file", async (t) => {
  for (const fail of ["syncFile", "rename"] as const) {
    await t.step(`${fail} fails`, async () => {
      const dir = await Deno.makeTempDir();
      try {
        await Deno.writeFile(`${dir}/out.bin`, new Uint8Array([7]));
        const log: string[] = [];
        const out = await AtomicFile.create(`${dir}/out.bin`, { fs: watchedFs(log, dir, fail) });
        await out.write(new Uint8Array(100));
        await assertRejects(
          () => out.commit(),
          Error,
          `Cannot write '${dir}/out.bin': injected ${fail} failure`,
        );
        await out.abort();
        assertEquals(log.at(-1), "remove out.bin.tmp");
        assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["out.bin"]);
        assertEquals([...await Deno.readFile(`${dir}/out.bin`)], [7]);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("AtomicFile.create() clears a dead writer's temporary and names the path it cannot create", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const dest = `${dir}/vm.lsnap`;
    const stale = tempPathFor(dest).replace(`-${Deno.pid}-`, `-${await deadPid()}-`);
    await Deno.writeFile(stale, new Uint8Array(100));
    const out = await AtomicFile.create(dest);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), [
      out.tempPath.slice(dir.length + 1),
    ]);
    await out.abort();
    assertEquals([...Deno.readDirSync(dir)], []);
    await assertRejects(
      () => AtomicFile.create(`${dir}/no/such/dir/x`),
      Error,
      `Cannot create '${dir}/no/such/dir/x': `,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SnapshotWriter.createFile() clears a killed writer's temporary and leaves only the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const dest = `${dir}/vm.lsnap`;
    const stale = tempPathFor(dest).replace(`-${Deno.pid}-`, `-${await deadPid()}-`);
    await Deno.writeFile(stale, new Uint8Array(100));
    const log: string[] = [];
    const w = await SnapshotWriter.createFile(dest, { regions, creator: "t", createdAt: 0 }, {
      fs: watchedFs(log, dir),
    });
    await w.writePages(0, 1, new Uint8Array(4096).fill(1));
    await w.close();
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["vm.lsnap"]);
    // The footer is written after an fsync, so a killed writer's temporary lacks it (FORMAT.md §9).
    assertEquals(log, [
      "remove vm.lsnap.tmp",
      "open vm.lsnap.tmp",
      "fsync file",
      "fsync file",
      "rename vm.lsnap.tmp vm.lsnap",
      "fsync dir <dir>",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SnapshotWriter.createFile() whose rename fails leaves nothing behind", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const w = await SnapshotWriter.createFile(
      `${dir}/vm.lsnap`,
      { regions, creator: "t", createdAt: 0 },
      { fs: watchedFs([], dir, "rename") },
    );
    await w.writePages(0, 0, new Uint8Array(4096).fill(2));
    await assertRejects(() => w.close(), Error, "injected rename failure");
    assertEquals([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tempPathFor() tags the host with CRC32C of its name, as FORMAT.md §9 says", async () => {
  const { crc32c } = await import("./checksum.ts");
  const fs = { ...DENO_FS, hostname: () => "123456789" };
  // CRC32C("123456789") = e3069283 (FORMAT.md §1).
  assertMatch(tempPathFor("/x/vm.lsnap", fs), /^\/x\/vm\.lsnap\.tmp-e3069283-/);
  const name = { ...DENO_FS, hostname: () => "build-host-7" };
  const tag = crc32c(new TextEncoder().encode("build-host-7")).toString(16).padStart(8, "0");
  assertMatch(tempPathFor("/x/vm.lsnap", name), new RegExp(`\\.tmp-${tag}-`));
});
