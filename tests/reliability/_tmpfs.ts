/**
 * A size-limited tmpfs for the full-disk tests (`mount -t tmpfs -o size=…`), which needs root:
 * where mounting fails the caller skips its test visibly.
 *
 * @module
 */

/** Mounts a tmpfs of `kib` KiB on a fresh directory; returns it, or the reason it cannot. */
export async function mountSmallTmpfs(kib: number): Promise<{ dir: string } | { reason: string }> {
  const dir = await Deno.makeTempDir({ prefix: "livesnap-full-" });
  try {
    const out = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", `size=${kib}k,mode=0700`, "tmpfs", dir],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (out.success) return { dir };
    await Deno.remove(dir);
    return { reason: new TextDecoder().decode(out.stderr).trim() || `mount exited ${out.code}` };
  } catch (e) {
    await Deno.remove(dir).catch(() => {});
    return { reason: (e as Error).message };
  }
}

/** Unmounts and removes a directory from {@linkcode mountSmallTmpfs}. */
export async function unmountTmpfs(dir: string): Promise<void> {
  await new Deno.Command("umount", { args: [dir], stdout: "null", stderr: "null" }).output();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
