/**
 * The control socket of a running machine: JSON lines over a Unix socket, in the spirit of
 * QEMU's QMP. On connect the server sends a greeting; each request is one line
 * `{"execute": "<command>", "arguments": {...}, "id": <any>}`, each reply one line, either
 * `{"return": <value>, "id": ...}` or `{"error": {"class": "...", "desc": "..."}, "id": ...}`.
 *
 * Commands: `snapshot` (arguments `path`, `mode` = cow|precopy|stop, `cowBuffer` = bytes or
 * "max", `incremental` = true for a diff on the machine's last snapshot, refused if it has none;
 * returns the snapshot's metrics once the file is complete), `migrate` (arguments `host`,
 * `port`, `mode` = precopy|postcopy|hybrid, `downtimeMs`, `maxPasses`, `bandwidth` in bytes per
 * second, `precopyPasses` (hybrid), `resume` = true to finish an interrupted post-copy; sends one
 * `{"event": "MIGRATION_PASS", "data": {...}}` line per precopy pass, then returns the
 * migration's metrics once the destination runs the guest, and the machine stops; on failure
 * the guest runs on and the reply is an error, except after a post-copy's switch-over, where it
 * stays stopped for `resume`), `pause`, `resume`, `status`,
 * `digest` (the machine's content digest now), `quit` (finishes a snapshot being written, then
 * stops the machine).
 *
 * @module
 */

import { VERSION } from "../version.ts";
import type { CowBufferSize, LiveMachine } from "../emulator/snapshot/live_machine.ts";
import type { SnapshotMode } from "../emulator/snapshot/session.ts";
import type { SnapshotMetrics } from "../emulator/snapshot/metrics.ts";
import { migrate, type MigrationMetrics } from "./migrate.ts";

/** The commands the server knows. */
export const CONTROL_COMMANDS = [
  "snapshot",
  "migrate",
  "pause",
  "resume",
  "status",
  "digest",
  "quit",
] as const;

/** One request line. */
export interface ControlRequest {
  /** The command's name (the server's greeting lists those it knows). */
  execute: string;
  /** The command's arguments by name (`snapshot`: `path`, `mode`, `cowBuffer`). */
  arguments?: Record<string, unknown>;
  /** Any JSON value; the reply carries it back unchanged. */
  id?: unknown;
}

/** An event line the server sends before a reply (QMP's events): `migrate`'s passes. */
export interface ControlEvent {
  /** Its name, e.g. `MIGRATION_PASS`. */
  event: string;
  /** What it reports (for MIGRATION_PASS, a `MigrationPassLine`). */
  data: unknown;
}

/** One reply line. */
export type ControlReply =
  | { return: unknown; id?: unknown }
  | { error: { class: string; desc: string }; id?: unknown };

/** A running control server. */
export interface ControlServer {
  /** Resolves when a client sent `quit` (the machine has quit by then). */
  readonly quitRequested: Promise<void>;
  /** Stops listening and removes the socket file. */
  close(): Promise<void>;
}

function parseCowBuffer(v: unknown): CowBufferSize | undefined {
  if (v === undefined || v === "max") return v;
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return v;
  throw new TypeError(
    `Cannot snapshot: cowBuffer ${JSON.stringify(v)} is not a byte count or "max"`,
  );
}

function optionalCount(v: unknown, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return v;
  throw new TypeError(`Cannot migrate: ${what} ${JSON.stringify(v)} is not a whole number`);
}

async function execute(
  machine: LiveMachine,
  req: ControlRequest,
  quit: () => void,
  emit: (event: ControlEvent) => Promise<void>,
): Promise<unknown> {
  const args = req.arguments ?? {};
  switch (req.execute) {
    case "migrate": {
      const { host, port, mode } = args;
      if (typeof host !== "string" || host === "") {
        throw new TypeError("Cannot migrate: the 'host' argument is missing");
      }
      if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
        throw new TypeError(`Cannot migrate: port ${JSON.stringify(port)} is not in 1..65535`);
      }
      if (mode !== undefined && mode !== "precopy" && mode !== "postcopy" && mode !== "hybrid") {
        throw new TypeError(`Cannot migrate: mode '${mode}' is not precopy, postcopy or hybrid`);
      }
      const bandwidth = optionalCount(args.bandwidth, "bandwidth");
      const resume = args.resume ?? false;
      if (typeof resume !== "boolean") {
        throw new TypeError(
          `Cannot migrate: resume ${JSON.stringify(resume)} is not true or false`,
        );
      }
      const metrics = await migrate(machine, {
        host,
        port,
        mode,
        resume,
        precopyPasses: optionalCount(args.precopyPasses, "precopyPasses") || undefined,
        downtimeMs: optionalCount(args.downtimeMs, "downtimeMs"),
        maxPasses: optionalCount(args.maxPasses, "maxPasses"),
        bandwidth: bandwidth === 0 ? undefined : bandwidth,
        onPass: (line) => void emit({ event: "MIGRATION_PASS", data: line }).catch(() => {}),
      });
      // The guest runs at the destination now: this machine has stopped.
      quit();
      return metrics;
    }
    case "snapshot": {
      const path = args.path;
      if (typeof path !== "string" || path === "") {
        throw new TypeError("Cannot snapshot: the 'path' argument (a file name) is missing");
      }
      const mode = (args.mode ?? "cow") as SnapshotMode;
      if (!["cow", "precopy", "stop"].includes(mode)) {
        throw new TypeError(`Cannot snapshot: mode '${mode}' is not cow, precopy or stop`);
      }
      const incremental = args.incremental ?? false;
      if (typeof incremental !== "boolean") {
        throw new TypeError(
          `Cannot snapshot: incremental ${JSON.stringify(incremental)} is not true or false`,
        );
      }
      return await machine.snapshot({
        path,
        mode,
        cowBuffer: parseCowBuffer(args.cowBuffer),
        incremental,
      });
    }
    case "pause":
      return await machine.pause();
    case "resume":
      return await machine.resume();
    case "status":
      return await machine.status();
    case "digest":
      return { contentDigest: await machine.digest() };
    case "quit":
      await machine.quit();
      quit();
      return {};
    default:
      throw new TypeError(
        `Cannot execute '${req.execute}': unknown command (known: ${CONTROL_COMMANDS.join(", ")})`,
      );
  }
}

/**
 * Listens on the Unix socket `path` (an existing socket file there is replaced) and serves
 * `machine`. Requests on one connection are answered in order; a snapshot request's reply comes
 * when the file is complete.
 */
export async function serveControl(
  path: string,
  machine: LiveMachine,
  options: {
    onSnapshot?: (metrics: SnapshotMetrics) => void;
    onMigrated?: (metrics: MigrationMetrics) => void;
  } = {},
): Promise<ControlServer> {
  try {
    const st = await Deno.lstat(path);
    if (!st.isSocket) {
      throw new Error(`Cannot listen on '${path}': it exists and is not a socket`);
    }
    await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const listener = await listenOwnerOnly(path);
  let resolveQuit!: () => void;
  const quitRequested = new Promise<void>((r) => resolveQuit = r);
  const connections = new Set<Deno.Conn>();
  const encoder = new TextEncoder();

  const serve = async (conn: Deno.Conn) => {
    connections.add(conn);
    const writer = conn.writable.getWriter();
    const send = (v: unknown) => writer.write(encoder.encode(JSON.stringify(v) + "\n"));
    try {
      await send({ livesnap: { version: VERSION, commands: CONTROL_COMMANDS } });
      const lines = conn.readable.pipeThrough(new TextDecoderStream()).pipeThrough(
        lineSplitter(MAX_REQUEST_CHARS),
      );
      for await (const line of lines) {
        if (line === TOO_LONG) {
          // The rest of that line cannot be told from a next request: answer and hang up.
          await send({
            error: {
              class: "GenericError",
              desc: `Cannot parse request: longer than ${MAX_REQUEST_CHARS} characters`,
            },
          });
          break;
        }
        if (line.trim() === "") continue;
        let req: ControlRequest;
        try {
          req = JSON.parse(line);
          if (typeof req !== "object" || req === null || typeof req.execute !== "string") {
            throw new SyntaxError("a request is an object with a string 'execute'");
          }
        } catch (e) {
          await send({
            error: { class: "GenericError", desc: `Cannot parse request: ${(e as Error).message}` },
          });
          continue;
        }
        try {
          const value = await execute(machine, req, resolveQuit, send);
          if (req.execute === "snapshot") options.onSnapshot?.(value as SnapshotMetrics);
          if (req.execute === "migrate") options.onMigrated?.(value as MigrationMetrics);
          await send({ return: value, id: req.id });
        } catch (e) {
          await send({
            error: { class: (e as Error).name, desc: (e as Error).message },
            id: req.id,
          });
        }
      }
    } catch {
      // The client went away; nothing to answer.
    } finally {
      connections.delete(conn);
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  };

  (async () => {
    try {
      for await (const conn of listener) serve(conn);
    } catch {
      // closed
    }
  })();

  return {
    quitRequested,
    async close() {
      listener.close();
      for (const c of connections) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
      await Deno.remove(path).catch(() => {});
    },
  };
}

/** The longest request line the server reads; a longer one gets an error and the connection ends. */
export const MAX_REQUEST_CHARS = 65_536;
const TOO_LONG = "\u0000too long";

/**
 * Listens on the Unix socket `path` with owner-only permissions from the first instant: the
 * socket is bound inside a fresh directory of mode 0700, made 0600, then renamed to `path`, so
 * no other user can connect between the bind and the chmod.
 */
async function listenOwnerOnly(path: string): Promise<Deno.UnixListener> {
  const slash = path.lastIndexOf("/");
  const dir = await Deno.makeTempDir({
    dir: slash < 0 ? "." : path.slice(0, slash) || "/",
    prefix: ".livesnap-sock-",
  });
  try {
    await Deno.chmod(dir, 0o700);
    const listener = Deno.listen({ transport: "unix", path: `${dir}/s` });
    try {
      await Deno.chmod(`${dir}/s`, 0o600);
      await Deno.rename(`${dir}/s`, path);
    } catch (e) {
      listener.close();
      throw e;
    }
    return listener;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Splits a text stream into lines (without their newline). A line longer than `max` characters
 * is replaced by one {@linkcode TOO_LONG} marker and the stream ends there.
 */
function lineSplitter(max = Infinity): TransformStream<string, string> {
  let rest = "";
  let over = false;
  return new TransformStream({
    transform(chunk, controller) {
      if (over) return;
      rest += chunk;
      let i: number;
      while ((i = rest.indexOf("\n")) >= 0) {
        if (i > max) break;
        controller.enqueue(rest.slice(0, i));
        rest = rest.slice(i + 1);
      }
      if (rest.length > max) {
        over = true;
        rest = "";
        controller.enqueue(TOO_LONG);
      }
    },
    flush(controller) {
      if (rest !== "") controller.enqueue(rest);
    },
  });
}

/**
 * The client: connects to `path`, sends one request, returns the reply (after reading the
 * greeting).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { LiveMachine } from "../emulator/snapshot/live_machine.ts";
 * import { controlRequest, serveControl } from "./control.ts";
 * const elf = await Deno.readFile(new URL("../emulator/guests/build/counter.elf", import.meta.url));
 * const dir = await Deno.makeTempDir();
 * const vm = await LiveMachine.start({ elf, ramSize: 4 << 20 });
 * const server = await serveControl(`${dir}/vm.sock`, vm);
 * const reply = await controlRequest(`${dir}/vm.sock`, { execute: "status" });
 * assert("return" in reply, JSON.stringify(reply));
 * await controlRequest(`${dir}/vm.sock`, { execute: "quit" });
 * await server.quitRequested;
 * await server.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function controlRequest(
  path: string,
  req: ControlRequest,
  onEvent?: (event: ControlEvent) => void,
): Promise<ControlReply> {
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    const lines = conn.readable.pipeThrough(new TextDecoderStream()).pipeThrough(lineSplitter());
    const reader = lines.getReader();
    const greeting = await reader.read();
    if (greeting.done) throw new Error(`Cannot talk to ${path}: the server closed the connection`);
    const writer = conn.writable.getWriter();
    await writer.write(new TextEncoder().encode(JSON.stringify(req) + "\n"));
    for (;;) {
      const reply = await reader.read();
      if (reply.done) throw new Error(`Cannot talk to ${path}: no reply to '${req.execute}'`);
      const value = JSON.parse(reply.value) as ControlReply | ControlEvent;
      if ("event" in value) {
        onEvent?.(value);
        continue;
      }
      reader.releaseLock();
      return value;
    }
  } finally {
    try {
      conn.close();
    } catch {
      // the server closed it (after quit)
    }
  }
}
