/**
 * Looking at the first bytes of an input without losing them, so that a command can tell a QEMU
 * stream from an `.lsnap` file even on standard input.
 *
 * @module
 */

/**
 * Reads at least `n` bytes (fewer only when the input is shorter) and returns them with a
 * readable that yields the whole input again, from its first byte.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { peekBytes } from "./_peek.ts";
 * const input = ReadableStream.from([new Uint8Array([0x51, 0x45]), new Uint8Array([0x56, 0x4d, 9])]);
 * const { head, readable } = await peekBytes(input, 4);
 * assertEquals(new TextDecoder().decode(head.subarray(0, 4)), "QEVM");
 * assertEquals(await new Response(readable).bytes(), new Uint8Array([0x51, 0x45, 0x56, 0x4d, 9]));
 * ```
 */
export async function peekBytes(
  input: ReadableStream<Uint8Array>,
  n: number,
): Promise<{ head: Uint8Array; readable: ReadableStream<Uint8Array> }> {
  const reader = input.getReader();
  const chunks: Uint8Array[] = [];
  let have = 0;
  let ended = false;
  while (have < n) {
    const r = await reader.read();
    if (r.done) {
      ended = true;
      break;
    }
    chunks.push(r.value);
    have += r.value.length;
  }
  const head = new Uint8Array(have);
  let at = 0;
  for (const c of chunks) {
    head.set(c, at);
    at += c.length;
  }
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(c);
      if (ended) controller.close();
    },
    async pull(controller) {
      const r = await reader.read();
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return { head, readable };
}
