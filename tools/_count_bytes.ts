/**
 * Counting the bytes of a stream as they pass, for progress displays and byte totals.
 *
 * @module
 */

/**
 * A readable that yields `readable`'s chunks unchanged and calls `onBytes` with each chunk's
 * length as it passes.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { countBytes } from "./_count_bytes.ts";
 * let total = 0;
 * const input = ReadableStream.from([new Uint8Array(3), new Uint8Array(5)]);
 * const bytes = await new Response(countBytes(input, (n) => total += n)).bytes();
 * assertEquals([bytes.length, total], [8, 8]);
 * ```
 */
export function countBytes(
  readable: ReadableStream<Uint8Array>,
  onBytes: (n: number) => void,
): ReadableStream<Uint8Array> {
  return readable.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        onBytes(chunk.length);
        controller.enqueue(chunk);
      },
    }),
  );
}
