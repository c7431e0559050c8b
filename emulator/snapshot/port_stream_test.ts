/** The byte streams between threads of port_stream.ts: the window, cancellation, abort. */
import { assert, assertEquals, assertRejects } from "@std/assert/mod.js";
import { portReadable, portWritable } from "./port_stream.ts";

Deno.test("portWritable() holds writes beyond its window until the reader takes bytes", async () => {
  const { port1, port2 } = new MessageChannel();
  const acked: number[] = [];
  const w = portWritable(port1, 4096, (n) => acked.push(n)).getWriter();
  const r = portReadable(port2).getReader();
  // The readable's queue takes one chunk ahead of any read (and acknowledges it): so the second
  // write gets through, the third must wait for a read.
  await w.write(new Uint8Array(4096).fill(1));
  await w.write(new Uint8Array(4096).fill(2));
  let third = false;
  const pending = w.write(new Uint8Array(4096).fill(3)).then(() => third = true);
  await new Promise((res) => setTimeout(res, 50));
  assertEquals(third, false, "a write beyond the window went through without a reader");
  assertEquals((await r.read()).value?.[0], 1);
  await pending;
  assert(third);
  assert(acked.at(-1)! >= 8192, JSON.stringify(acked));
  assertEquals((await r.read()).value?.[0], 2);
  await w.close();
  assertEquals((await r.read()).value?.[0], 3);
  assertEquals((await r.read()).done, true);
});

Deno.test("portWritable() fails once the reader cancels, with the reader's reason", async () => {
  const { port1, port2 } = new MessageChannel();
  const w = portWritable(port1, 1024).getWriter();
  const readable = portReadable(port2);
  await readable.cancel(new Error("the socket is gone"));
  await new Promise((res) => setTimeout(res, 20));
  const e = await assertRejects(() => w.write(new Uint8Array(10)));
  assertEquals((e as Error).message, "the socket is gone");
  port1.close();
});

Deno.test("portReadable() errors with the writer's reason when the writer aborts", async () => {
  const { port1, port2 } = new MessageChannel();
  const w = portWritable(port1).getWriter();
  const r = portReadable(port2).getReader();
  await w.write(new Uint8Array([7]));
  await w.abort(new Error("the engine failed"));
  assertEquals((await r.read()).value?.[0], 7);
  const e = await assertRejects(() => r.read());
  assertEquals((e as Error).message, "the engine failed");
});
