/**
 * Whether a file is a QEMU migration stream, without loading the `qemu` format (which brings the
 * QEMU stream reader, writer and the riscv virt mapping): `convert` asks it of every input file
 * given without `--from`.
 *
 * @module
 */
import { isQemuStream } from "../../qemu/stream_reader.ts";

/** True when the regular file at `path` starts with a QEMU stream's magic and version. */
export async function isQemuFile(path: string): Promise<boolean> {
  let file: Deno.FsFile;
  try {
    if (!(await Deno.stat(path)).isFile) return false;
    file = await Deno.open(path, { read: true });
  } catch {
    return false; // the input format reports a missing file with its own message
  }
  try {
    const head = new Uint8Array(8);
    let n = 0;
    while (n < head.length) {
      const k = await file.read(head.subarray(n));
      if (k === null) break;
      n += k;
    }
    return isQemuStream(head.subarray(0, n));
  } finally {
    file.close();
  }
}
