import { assertEquals, assertRejects } from "@std/assert/mod.js";
import { createOutput, openInput, readAll } from "./_io.ts";

Deno.test("createOutput() makes the file visible only on commit()", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/out.bin`;
    const out = await createOutput(path);
    await out.write(new Uint8Array([1, 2, 3]));
    await assertRejects(() => Deno.stat(path), Deno.errors.NotFound);
    await out.commit();
    assertEquals([...await Deno.readFile(path)], [1, 2, 3]);
    assertEquals([...Deno.readDirSync(dir)].length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createOutput() leaves nothing behind on abort()", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = await createOutput(`${dir}/out.bin`);
    await out.write(new Uint8Array(10));
    await out.abort();
    assertEquals([...Deno.readDirSync(dir)].length, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openInput() knows a regular file's size and reads it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/a`, new Uint8Array([9, 8, 7]));
    const input = await openInput(`${dir}/a`);
    assertEquals(input.size, 3);
    assertEquals(input.path, `${dir}/a`);
    assertEquals([...await readAll(input.readable)], [9, 8, 7]);
    input.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openInput() names the path when it cannot open it", async () => {
  await assertRejects(
    () => openInput("/nonexistent/x.lsnap"),
    Error,
    "Cannot open /nonexistent/x.lsnap",
  );
});
