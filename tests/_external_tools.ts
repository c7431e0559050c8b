/**
 * The programs some tests drive (QEMU, gdb, native zstd), and what a test does when one is
 * missing: outside CI it is reported as ignored, with the reason in its name; in CI (the `CI`
 * environment variable set, as `.ci/run` sets it) it runs and fails, so a missing install step
 * can never pass as a green run. `.ci/run` installs these packages when they are missing.
 *
 * @module
 */

/** Each program and the Debian package that provides it (keep in step with `.ci/run`). */
export const EXTERNAL_TOOLS = {
  "qemu-system-riscv32": "qemu-system-misc",
  "gdb-multiarch": "gdb-multiarch",
  zstd: "zstd",
} as const;

/** A program a test may drive. */
export type ExternalTool = keyof typeof EXTERNAL_TOOLS;

/** Whether CI is asking (the `CI` variable set to anything but "", "0" or "false"). */
export function inCi(): boolean {
  const v = Deno.env.get("CI");
  return v !== undefined && !["", "0", "false"].includes(v.toLowerCase());
}

/** Whether `tool --version` runs here. */
export async function haveTool(tool: ExternalTool): Promise<boolean> {
  try {
    const out = await new Deno.Command(tool, {
      args: ["--version"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** What a test needing a program does. */
export interface ToolNeed {
  tool: ExternalTool;
  present: boolean;
  /** For `Deno.test({ ignore })`: missing and not in CI. */
  ignore: boolean;
  /** Appended to the test's name when it is ignored: " (skipped: ... not installed)". */
  note: string;
  /** Throws when the program is missing (the first line of such a test). */
  check(): void;
}

/** Looks `tool` up once, for tests that need it. */
export async function needTool(tool: ExternalTool): Promise<ToolNeed> {
  const present = await haveTool(tool);
  const ignore = !present && !inCi();
  return {
    tool,
    present,
    ignore,
    note: ignore ? ` (skipped: ${tool} not installed)` : "",
    check() {
      if (!present) {
        throw new Error(
          `Cannot run this test: ${tool} is not installed (apt-get install ${
            EXTERNAL_TOOLS[tool]
          })`,
        );
      }
    },
  };
}
