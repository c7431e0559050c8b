/**
 * A small QMP client and a QEMU process wrapper, used by the fixture maker and by the tests that
 * run QEMU for real. Not part of the public API.
 *
 * @module
 */

/** A QMP reply that carried an `error` member. */
export class QmpError extends Error {
  /** The QMP error class, e.g. `GenericError`. */
  readonly errorClass: string;
  constructor(command: string, errorClass: string, desc: string) {
    super(`Cannot run QMP command '${command}': ${errorClass}: ${desc}`);
    this.name = "QmpError";
    this.errorClass = errorClass;
  }
}

/** One QMP connection over a Unix socket; commands run one at a time. */
export class QmpClient {
  #conn: Deno.UnixConn;
  #buffer = "";
  #decoder = new TextDecoder();
  #encoder = new TextEncoder();
  /** Asynchronous events received so far (e.g. `STOP`, `RESUME`). */
  readonly events: Record<string, unknown>[] = [];

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
  }

  /** Connects (retrying while QEMU creates the socket), reads the greeting, negotiates. */
  static async connect(path: string, timeoutMs = 10_000): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const conn = await Deno.connect({ transport: "unix", path });
        const client = new QmpClient(conn);
        const greeting = await client.#readMessage();
        if (!("QMP" in greeting)) {
          throw new Error(`Cannot connect to QMP at ${path}: no greeting`);
        }
        await client.execute("qmp_capabilities");
        return client;
      } catch (e) {
        if (Date.now() > deadline) {
          throw new Error(`Cannot connect to QMP at ${path}: timed out`, { cause: e });
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  async #readMessage(): Promise<Record<string, unknown>> {
    for (;;) {
      const nl = this.#buffer.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buffer.slice(0, nl).trim();
        this.#buffer = this.#buffer.slice(nl + 1);
        if (line.length > 0) return JSON.parse(line);
        continue;
      }
      const chunk = new Uint8Array(65536);
      const n = await this.#conn.read(chunk);
      if (n === null) throw new Error("Cannot read QMP reply: connection closed");
      this.#buffer += this.#decoder.decode(chunk.subarray(0, n), { stream: true });
    }
  }

  /** Runs one command and returns its `return` value; throws {@link QmpError} on an error. */
  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const request = args === undefined
      ? { execute: command }
      : { execute: command, arguments: args };
    await this.#conn.write(this.#encoder.encode(JSON.stringify(request) + "\n"));
    for (;;) {
      const msg = await this.#readMessage();
      if ("event" in msg) {
        this.events.push(msg);
        continue;
      }
      if ("error" in msg) {
        const err = msg.error as { class: string; desc: string };
        throw new QmpError(command, err.class, err.desc);
      }
      return msg.return;
    }
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed by QEMU's exit
    }
  }
}

/** Options for {@link startQemu}. */
export interface QemuOptions {
  /** The guest ELF (`-kernel`); none when QEMU loads a stream (`-incoming`). */
  kernel?: string;
  memory?: string;
  /** Extra arguments, e.g. `["-incoming", "exec:cat f"]`. */
  extra?: string[];
  /** Where the guest's serial output goes. */
  serialFile: string;
}

/** A running QEMU with its QMP connection. */
export interface QemuProcess {
  child: Deno.ChildProcess;
  qmp: QmpClient;
  socket: string;
  /** Kills QEMU (this process only) and waits for it. */
  stop(): Promise<void>;
}

/** Whether `qemu-system-riscv32` can be run here. */
export async function haveQemu(): Promise<boolean> {
  try {
    const out = await new Deno.Command("qemu-system-riscv32", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** Starts `qemu-system-riscv32 -machine virt` with QMP on a fresh Unix socket. */
export async function startQemu(options: QemuOptions): Promise<QemuProcess> {
  const dir = await Deno.makeTempDir({ prefix: "livesnap-qmp-" });
  const socket = `${dir}/qmp.sock`;
  const args = [
    "-machine",
    "virt",
    "-bios",
    "none",
    ...(options.kernel === undefined ? [] : ["-kernel", options.kernel]),
    "-m",
    options.memory ?? "64M",
    "-display",
    "none",
    "-monitor",
    "none",
    "-serial",
    `file:${options.serialFile}`,
    "-qmp",
    `unix:${socket},server=on,wait=off`,
    ...(options.extra ?? []),
  ];
  const child = new Deno.Command("qemu-system-riscv32", {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect(socket);
  } catch (e) {
    child.kill("SIGKILL");
    const out = await child.output();
    throw new Error(
      `Cannot start qemu-system-riscv32: ${new TextDecoder().decode(out.stderr).trim()}`,
      { cause: e },
    );
  }
  return {
    child,
    qmp,
    socket,
    async stop() {
      qmp.close();
      try {
        child.kill("SIGKILL");
      } catch {
        // already exited
      }
      await child.output();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Polls `query-migrate` until it reports `completed`; throws on `failed`. */
export async function waitForMigration(
  qmp: QmpClient,
  onPoll?: (info: Record<string, unknown>) => Promise<void>,
  timeoutMs = 60_000,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await qmp.execute("query-migrate") as Record<string, unknown>;
    if (info.status === "completed") return info;
    if (info.status === "failed" || info.status === "cancelled") {
      throw new Error(`Cannot finish the migration: ${info.status} ${info["error-desc"] ?? ""}`);
    }
    if (Date.now() > deadline) throw new Error("Cannot finish the migration: timed out");
    if (onPoll !== undefined) await onPoll(info);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * For test files that run QEMU: whether to run them (QEMU installed) and the suffix naming a
 * skip. Under CI (the `CI` environment variable set) a missing qemu-system-riscv32 is a failing
 * test, never a silent skip: `.ci/run` installs it.
 */
export async function qemuTestGate(): Promise<{ ignore: boolean; suffix: string }> {
  const installed = await haveQemu();
  if (!installed && (Deno.env.get("CI") ?? "") !== "") {
    Deno.test("qemu-system-riscv32 is installed (CI runs the QEMU tests, it never skips them)", () => {
      throw new Error(
        "Cannot run the QEMU tests: qemu-system-riscv32 is not installed (apt-get install qemu-system-misc)",
      );
    });
  }
  return {
    ignore: !installed,
    suffix: installed ? "" : " (skipped: qemu-system-riscv32 not installed)",
  };
}
