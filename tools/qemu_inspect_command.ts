/**
 * `livesnap qemu-inspect`: kept for scripts written before `inspect` learned QEMU streams; the
 * same command as `livesnap inspect`, which recognises a QEMU migration stream by its first
 * bytes.
 *
 * @module
 */
export { main } from "./inspect_command.ts";
