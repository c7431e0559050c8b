/**
 * Drives a real `qemu-system-riscv32` to write migration streams of the kinds the tests need,
 * and to resume guests from them. Used by the fixture maker and the tests that run QEMU.
 *
 * @module
 */
import { startQemu, waitForMigration } from "./_qmp.ts";

/** How a stream is taken. */
export type StreamKind = "paused" | "live" | "multipass" | "background";

/** Every kind, in the order fixtures are made. */
export const STREAM_KINDS: readonly StreamKind[] = ["paused", "live", "multipass", "background"];

/** The guest's RAM: the virt board's DRAM block and its address. */
export const GUEST_RAM = { block: "riscv_virt_board.ram", address: 0x8000_0000, size: 64 << 20 };

/** The ticker guest's ELF, beside this file. */
export const TICKER_ELF = new URL("./testdata/ticker.elf", import.meta.url).pathname;

/** Options of {@link makeStream}. */
export interface MakeStreamOptions {
  /** The guest ELF (default: the ticker guest). */
  kernel?: string;
  /** Lines of guest output to wait for before migrating (default 5). */
  lines?: number;
  /** Guest RAM (QEMU's -m, default 64M). */
  memory?: string;
}

/** What {@link makeStream} produced. */
export interface MadeStream {
  /** The stream file. */
  path: string;
  /** QEMU's own dump of guest RAM taken after the migration completed (paused and live only). */
  ramDump?: string;
  /** `dirty-sync-count` from `query-migrate`: how many passes over RAM QEMU made. */
  passes: number;
  /** QEMU's own count of whole pages sent (`ram.normal` from `query-migrate`). */
  normalPages: number;
  /** QEMU's own count of zero pages sent (`ram.duplicate` from `query-migrate`). */
  zeroPages: number;
  /** Everything the guest had printed when QEMU stopped (for `background`: when it ended). */
  serial: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Bytes of a QEMU `-m` value such as `64M`, `1G` or `8200K`. */
export function memoryBytes(option: string): number {
  const m = /^(\d+)([KMG])$/.exec(option);
  if (m === null) throw new Error(`Cannot read -m '${option}': expected a number and K, M or G`);
  return Number(m[1]) * { K: 1024, M: 1 << 20, G: 1 << 30 }[m[2] as "K" | "M" | "G"];
}

/** Lines of the serial output file, once it holds at least `want` complete lines. */
async function waitForLines(path: string, want: number, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await Deno.readTextFile(path).catch(() => "");
    const lines = text.split("\n");
    if (lines.length - 1 >= want) return lines.slice(0, want);
    if (Date.now() > deadline) {
      throw new Error(`Cannot collect ${want} lines of guest output: got ${lines.length - 1}`);
    }
    await sleep(20);
  }
}

/**
 * Boots the ticker guest, lets it print a few lines, then migrates it to `path` the way `kind`
 * says: `paused` stops it first; `live` migrates it running; `multipass` lowers the bandwidth
 * and downtime limit until QEMU has made several passes, then lets it finish; `background` uses
 * the `background-snapshot` capability (the guest keeps running after it).
 */
export async function makeStream(
  kind: StreamKind,
  path: string,
  dir: string,
  options: MakeStreamOptions = {},
): Promise<MadeStream> {
  const serial = `${dir}/${kind}-source.serial`;
  const q = await startQemu({
    kernel: options.kernel ?? TICKER_ELF,
    serialFile: serial,
    memory: options.memory,
  });
  try {
    await waitForLines(serial, options.lines ?? 5, 10_000);
    const uri = `exec:cat > '${path}'`;
    let passes = 0;
    const onPoll = async (info: Record<string, unknown>) => {
      const ram = info.ram as { "dirty-sync-count"?: number } | undefined;
      passes = ram?.["dirty-sync-count"] ?? passes;
      if (kind === "multipass" && passes >= 4) {
        await q.qmp.execute("migrate-set-parameters", {
          "max-bandwidth": 1 << 30,
          "downtime-limit": 2000,
        });
      }
    };
    if (kind === "paused") await q.qmp.execute("stop");
    if (kind === "multipass") {
      await q.qmp.execute("migrate-set-parameters", {
        "max-bandwidth": 256 * 1024,
        "downtime-limit": 1,
      });
    }
    if (kind === "background") {
      await q.qmp.execute("migrate-set-capabilities", {
        capabilities: [{ capability: "background-snapshot", state: true }],
      });
    }
    await q.qmp.execute("migrate", { uri });
    const info = await waitForMigration(q.qmp, onPoll);
    const ram = info.ram as Record<string, number>;
    const made: MadeStream = {
      path,
      passes: ram["dirty-sync-count"],
      normalPages: ram.normal,
      zeroPages: ram.duplicate,
      serial: "",
    };
    if (kind !== "background") {
      made.ramDump = `${dir}/${kind}.ram`;
      await q.qmp.execute("pmemsave", {
        val: GUEST_RAM.address,
        size: memoryBytes(options.memory ?? "64M"),
        filename: made.ramDump,
      });
    }
    made.serial = await Deno.readTextFile(serial);
    return made;
  } finally {
    await q.stop();
  }
}

/**
 * Starts a fresh QEMU that loads `stream` with `-incoming "exec:cat FILE"`, resumes the guest
 * (with `cont` if the stream was of a paused guest) and returns the first `lines` lines it
 * prints.
 */
export async function resumeStream(stream: string, dir: string, lines = 20): Promise<string[]> {
  const serial = `${dir}/resume-${crypto.randomUUID()}.serial`;
  const q = await startQemu({
    kernel: TICKER_ELF,
    serialFile: serial,
    extra: ["-incoming", `exec:cat '${stream}'`],
  });
  try {
    await waitForMigration(q.qmp);
    const status = await q.qmp.execute("query-status") as { running: boolean; status: string };
    if (!status.running) await q.qmp.execute("cont");
    return await waitForLines(serial, lines, 15_000);
  } finally {
    await q.stop();
  }
}

/** Waits (bounded) until `path` holds at least `bytes` bytes; returns its text. */
export async function waitForBytes(
  path: string,
  bytes: number,
  timeoutMs: number,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await Deno.readTextFile(path).catch(() => "");
    if (text.length >= bytes) return text;
    if (Date.now() > deadline) {
      throw new Error(`Cannot collect ${bytes} bytes of guest output: got ${text.length}`);
    }
    await sleep(20);
  }
}

/**
 * What a guest prints on QEMU when nothing interrupts it: its first `bytes` bytes (at least),
 * from a fresh `qemu-system-riscv32 -machine virt -bios none -kernel ELF`.
 */
export async function uninterruptedOutput(
  kernel: string,
  dir: string,
  bytes: number,
  memory = "64M",
  timeoutMs = 60_000,
): Promise<string> {
  const serial = `${dir}/uninterrupted-${crypto.randomUUID()}.serial`;
  const q = await startQemu({ kernel, serialFile: serial, memory });
  try {
    return await waitForBytes(serial, bytes, timeoutMs);
  } finally {
    await q.stop();
  }
}

/** Options of {@link resumeInQemu}. */
export interface ResumeOptions {
  /** QEMU's -m. */
  memory: string;
  /** Bytes of output to wait for after the resume. */
  bytes: number;
  /** Keep QEMU paused after loading (-S) and dump guest RAM to this file first. */
  ramDump?: { path: string; size: number };
  timeoutMs?: number;
}

/**
 * Resumes a stream in a fresh `qemu-system-riscv32 -machine virt -bios none -m SIZE -incoming
 * "exec:cat STREAM"` (no -kernel: all of RAM comes from the stream) and returns what the guest
 * prints from then on (at least `bytes` bytes).
 */
export async function resumeInQemu(stream: string, dir: string, o: ResumeOptions): Promise<string> {
  const serial = `${dir}/resumed-${crypto.randomUUID()}.serial`;
  const q = await startQemu({
    serialFile: serial,
    memory: o.memory,
    extra: [...(o.ramDump !== undefined ? ["-S"] : []), "-incoming", `exec:cat '${stream}'`],
  });
  try {
    await waitForMigration(q.qmp);
    if (o.ramDump !== undefined) {
      await q.qmp.execute("pmemsave", {
        val: GUEST_RAM.address,
        size: o.ramDump.size,
        filename: o.ramDump.path,
      });
    }
    const status = await q.qmp.execute("query-status") as { running: boolean };
    if (!status.running) await q.qmp.execute("cont");
    return await waitForBytes(serial, o.bytes, o.timeoutMs ?? 20_000);
  } finally {
    await q.stop();
  }
}
