/**
 * `livesnap qemu-convert`: kept for scripts written before `convert` learned QEMU streams; the
 * same command as `livesnap convert` (`--from qemu`, `--to qemu`, `--to raw --region NAME`),
 * where its old option `--codec zstd|raw` still means `--compress zstd|none`.
 *
 * @module
 */
import { main as convert } from "./convert_command.ts";

/** Runs the command; returns the exit code. */
export function main(args: string[]): Promise<number> {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const m = /^--codec(?:=(.*))?$/.exec(args[i]);
    if (m === null) {
      out.push(args[i]);
      continue;
    }
    const codec = m[1] ?? args[++i];
    out.push("--compress", codec === "raw" ? "none" : String(codec));
  }
  return convert(out);
}
