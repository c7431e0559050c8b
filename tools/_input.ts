/**
 * Opens a command's input: a path, or `-` for standard input.
 *
 * @module
 */

/** A readable for `path` (`-` is standard input) and its size when it is a regular file. */
export async function openInput(
  path: string,
): Promise<{ stream: ReadableStream<Uint8Array>; size: number | null }> {
  if (path === "-") return { stream: Deno.stdin.readable, size: null };
  const file = await Deno.open(path, { read: true });
  const info = await file.stat();
  if (!info.isFile) {
    file.close();
    throw new Error(`Cannot open '${path}': not a regular file`);
  }
  return { stream: file.readable, size: info.size };
}
