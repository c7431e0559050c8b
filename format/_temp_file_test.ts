import { assertEquals, assertMatch } from "@std/assert/mod.js";
import { removeStaleTemporaries, tempPathFor } from "./_temp_file.ts";
import { SnapshotWriter } from "./writer.ts";

async function deadPid(): Promise<number> {
  const child = new Deno.Command("true").spawn();
  await child.status;
  return child.pid;
}

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

Deno.test("SnapshotWriter.createFile() clears a killed writer's temporary and leaves only the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const dest = `${dir}/vm.lsnap`;
    const stale = tempPathFor(dest).replace(`-${Deno.pid}-`, `-${await deadPid()}-`);
    await Deno.writeFile(stale, new Uint8Array(100));
    const regions = [{ name: "ram", base: 0, size: 8192, pageSize: 4096 }];
    const w = await SnapshotWriter.createFile(dest, { regions, creator: "t", createdAt: 0 });
    await w.writePages(0, 1, new Uint8Array(4096).fill(1));
    await w.close();
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["vm.lsnap"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
