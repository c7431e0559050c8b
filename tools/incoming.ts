/**
 * Live migration, the receiving side (`livesnap restore --incoming HOST:PORT`): waits for one
 * migration (docs/MIGRATION.md), refuses an incompatible machine before any page moves, restores
 * the guest from the `.lsnap` stream as it arrives (optionally keeping it as a file), checks the
 * state against the source's digest and runs the guest only once the source has let go of it.
 * A second migration arriving meanwhile is refused; every wait has a bound. A post-copy or
 * hybrid source is taken by `incoming_postcopy.ts` after the same handshake.
 *
 * @module
 */

import { AtomicFile } from "../format/atomic_file.ts";
import { LsnapError } from "../format/errors.ts";
import {
  decodeHello,
  decodeMigrationPrologue,
  decodeSwitchover,
  encodeMessage,
  encodeMigrationPrologue,
  type Hello,
  messageName,
  MIGRATION_MAJOR,
  MIGRATION_MINOR,
  MigrationError,
  MigrationMessage,
  TimedByteReader,
} from "../format/migration.ts";
import { LiveMachine, type LiveMachineOptions } from "../emulator/snapshot/live_machine.ts";
import {
  checkDescriptionFits,
  CURRENT_STATE_VERSIONS,
  SnapshotMismatchError,
  STATE_MIGRATIONS,
} from "../emulator/snapshot/machine_state.ts";
import { epochMs } from "../emulator/snapshot/metrics.ts";
import { portWritable } from "../emulator/snapshot/port_stream.ts";
import { DEFAULT_MIGRATION_TIMEOUT_MS } from "./migrate.ts";
import { type PostcopyConnection, receivePostcopy } from "./incoming_postcopy.ts";

/** Bytes received but not yet restored by the guest thread. Small: what is held here when the
 * source stops its guest is downtime, and the source cannot see it; a full window holds the
 * socket back, so the source's passes are timed at the rate this side restores. */
const GUEST_STREAM_WINDOW = 256 * 1024;
/** PROGRESS at most this often while the stream arrives, and at least this often (heartbeat). */
const PROGRESS_INTERVAL_MS = 10;
const PROGRESS_HEARTBEAT_MS = 1000;

/** Options of {@linkcode receiveMigration}. */
export interface IncomingOptions {
  /** The address to listen on, e.g. `127.0.0.1`. */
  host: string;
  /** 0 picks a free port (`onListening` tells which). */
  port: number;
  /** Also keep what arrived as a `.lsnap` file (written through a temporary, renamed once the
   * guest runs). */
  out?: string;
  /** Refuse a guest whose RAM is not this many bytes (as a QEMU destination started with
   * another `-m`). */
  ramSize?: number;
  /** The longest wait for the source at each step, milliseconds (default 30 000). */
  timeoutMs?: number;
  /** Post-copy: the longest wait for the source to come back after a lost connection, and
   * for each fault's page (default 60 000, docs/MIGRATION.md §8.5). */
  resumeTimeoutMs?: number;
  /** Take a source that resumes an interrupted post-copy (`restore --incoming --resume`): this
   * destination starts anew and asks for every page. */
  resume?: boolean;
  /** The machine's other options (UART sink, stop-at, snapshots...). */
  live?: Omit<LiveMachineOptions, "elf" | "restorePath" | "restoreStream" | "startPaused">;
  /** Called once listening, with the address. */
  onListening?: (addr: { hostname: string; port: number }) => void;
  /** Post-copy: called once the guest runs here, before its pages are all in. */
  onPostcopyStart?: (atInstruction: number) => void;
  /** Called for each connection refused because a migration is already running. */
  onRefusedBusy?: (peer: string) => void;
}

/** What the destination reports (a JSON line). */
export interface IncomingMetrics {
  /** The JSON line's kind. */
  type: "incoming-migration";
  /** `HOST:PORT` of the source. */
  source: string;
  /** The mode the source asked for. */
  mode: Hello["mode"];
  /** Instructions the guest had retired at the switch-over. */
  atInstruction: number;
  /** Bytes of the `.lsnap` stream received. */
  bytesReceived: number;
  /** The content digest checked against the source's. */
  contentDigest: string;
  /** From the accepted handshake to the guest running, milliseconds. */
  totalMs: number;
  /** From the source's SWITCHOVER arriving to the guest running here, milliseconds. */
  switchoverMs: number;
  /** From the source guest's last instruction (SWITCHOVER's `stoppedAtUs`) to this guest's
   * first, milliseconds; the two clocks must agree (one host, or synchronized); null from a
   * source that does not say when its guest stopped. */
  downtimeMs: number | null;
  /** The `--out` file, if any. */
  out: string | null;
  /** Post-copy: pages the guest faulted on and asked the source for. */
  postcopyFaults: number;
  /** Post-copy: fault latency percentiles (from the fault to the page in), microseconds; null
   * without faults. */
  faultLatencyUs: { p50: number; p99: number } | null;
  /** Connections the migration took (more than 1 after a resume). */
  connections: number;
}

/** A running incoming migration's result. */
export interface IncomingMigration {
  /** The guest, running. */
  machine: LiveMachine;
  /** What the destination measured. */
  metrics: IncomingMetrics;
}

/**
 * Why this destination cannot take the machine HELLO describes, or null if it can (the same
 * checks a restore makes, before any page moves).
 */
export function incompatibility(hello: Hello, ramSize?: number): string | null {
  try {
    const size = checkDescriptionFits(hello.description);
    if (ramSize !== undefined && size !== ramSize) {
      return `the guest has ${size} bytes of RAM, this destination was started for ${ramSize}`;
    }
  } catch (e) {
    if (e instanceof SnapshotMismatchError) return e.reason;
    throw e;
  }
  for (const [id, version] of Object.entries(hello.devices)) {
    const current = Object.hasOwn(CURRENT_STATE_VERSIONS, id)
      ? CURRENT_STATE_VERSIONS[id]
      : undefined;
    if (current === undefined) return `device '${id}' is not part of this machine`;
    if (version > current) {
      return `device '${id}' has state version ${version}, newer than this emulator's ${current}`;
    }
    for (let v = version; v < current; v++) {
      if (STATE_MIGRATIONS[id]?.[v] === undefined) {
        return `device '${id}' state version ${version} cannot be migrated to ${current}`;
      }
    }
  }
  return null;
}

async function refuse(
  w: WritableStreamDefaultWriter<Uint8Array>,
  reason: string,
  failure?: string,
): Promise<void> {
  await w.write(
    encodeMessage(MigrationMessage.REFUSE, failure ? { reason, failure } : { reason }),
  ).catch(() => {});
}

/** Reads a second source's hello and refuses it (bounded: a silent peer is dropped). */
async function refuseBusy(conn: Deno.TcpConn, onRefused?: (peer: string) => void): Promise<void> {
  const addr = conn.remoteAddr;
  const peer = `${addr.hostname}:${addr.port}`;
  const w = conn.writable.getWriter();
  try {
    await w.write(encodeMigrationPrologue());
    await refuse(w, "another incoming migration is in progress on this destination");
    onRefused?.(peer);
  } catch {
    // The peer went away; nothing to tell it.
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

/**
 * Listens on `HOST:PORT`, takes one migration and returns the machine, paused at the source's
 * switch-over instant until this resolves, then running. Rejects with a
 * {@linkcode MigrationError} (or the restore's own error) if the migration fails; nothing is
 * kept then (no machine, no `--out` file).
 */
export async function receiveMigration(o: IncomingOptions): Promise<IncomingMigration> {
  const ms = o.timeoutMs ?? DEFAULT_MIGRATION_TIMEOUT_MS;
  const listener = Deno.listen({ hostname: o.host, port: o.port, transport: "tcp" });
  const addr = listener.addr as Deno.NetAddr;
  o.onListening?.({ hostname: addr.hostname, port: addr.port });
  // The one connection a migration waits for (the first; after a lost post-copy connection,
  // the source's resume); any other is refused as busy. During a post-copy a source that
  // resumes may connect before this side has noticed the old connection's loss: it waits here.
  let waiter: ((c: Deno.TcpConn) => void) | null = null;
  let postcopy = false;
  const early: Deno.TcpConn[] = [];
  const nextConn = () => {
    const c = early.shift();
    return c !== undefined ? Promise.resolve(c) : new Promise<Deno.TcpConn>((r) => waiter = r);
  };
  const firstConn = nextConn();
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        const take = waiter as ((c: Deno.TcpConn) => void) | null;
        if (take !== null) {
          waiter = null;
          take(conn);
        } else if (postcopy && early.length === 0) early.push(conn);
        else refuseBusy(conn, o.onRefusedBusy);
      }
    } catch {
      // the listener closed
    }
  })();
  try {
    // Waiting for a source has no bound of ours (as QEMU's -incoming); the caller may stop us.
    const conn = await firstConn;
    return await receiveOn(conn, o, ms, async (bound) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const c = await Promise.race([
        nextConn(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            waiter = null;
            reject(new MigrationError("timeout", `no source connected in ${bound} ms`));
          }, bound);
        }),
      ]).finally(() => clearTimeout(timer));
      return await handshake(c, o, ms);
    }, () => postcopy = true);
  } finally {
    listener.close();
    await accepting;
    // A connection held for a resume that never came to be used: it was a second source.
    for (const c of early.splice(0)) await refuseBusy(c, o.onRefusedBusy);
  }
}

/**
 * The handshake on a new connection (docs/MIGRATION.md §4): the prologues, HELLO and the checks
 * of a restore; refuses (and throws) an incompatible machine. Does not send ACCEPT.
 */
async function handshake(
  conn: Deno.TcpConn,
  o: IncomingOptions,
  ms: number,
): Promise<PostcopyConnection> {
  const ra = conn.remoteAddr;
  const peer = `${ra.hostname}:${ra.port}`;
  conn.setNoDelay(true);
  const reader = new TimedByteReader(conn.readable, `the source ${peer}`);
  const w = conn.writable.getWriter();
  try {
    const v = decodeMigrationPrologue(
      await reader.exactly(16, ms, "the source's prologue"),
      "source",
    );
    await w.write(encodeMigrationPrologue());
    if (v.major !== MIGRATION_MAJOR) {
      const reason =
        `the source speaks protocol ${v.major}.${v.minor}, this destination ${MIGRATION_MAJOR}.${MIGRATION_MINOR}`;
      await refuse(w, reason);
      throw new MigrationError("refused", `Cannot take the migration from ${peer}: ${reason}`);
    }
    const msg = await reader.message(ms, "HELLO");
    if (msg.type !== MigrationMessage.HELLO) {
      throw new MigrationError(
        "protocol",
        `Cannot take the migration from ${peer}: expected HELLO, got ${messageName(msg.type)}`,
      );
    }
    const hello = decodeHello(msg.body);
    const why = incompatibility(hello, o.ramSize);
    if (why !== null) {
      await refuse(w, why);
      throw new MigrationError("refused", `Cannot take the migration from ${peer}: ${why}`);
    }
    return { conn, peer, reader, w, hello };
  } catch (e) {
    try {
      conn.close();
    } catch {
      // already closed
    }
    throw e;
  }
}

async function receiveOn(
  conn: Deno.TcpConn,
  o: IncomingOptions,
  ms: number,
  next: (ms: number) => Promise<PostcopyConnection>,
  onPostcopy: () => void,
): Promise<IncomingMigration> {
  const first = await handshake(conn, o, ms);
  const { peer, reader, w, hello } = first;
  if (hello.resumeAt !== undefined && !o.resume) {
    const reason =
      "the source resumes an interrupted post-copy; this destination holds none (start it with --resume to take it anew)";
    await refuse(w, reason);
    conn.close();
    throw new MigrationError("refused", `Cannot take the migration from ${peer}: ${reason}`);
  }
  if (hello.mode === "postcopy" || hello.mode === "hybrid") {
    onPostcopy();
    // receivePostcopy() accepts once its machine is ready.
    const accepted = epochMs();
    const r = await receivePostcopy(first, o, ms, next);
    const ranAt = epochMs();
    return {
      machine: r.machine,
      metrics: {
        type: "incoming-migration",
        source: peer,
        mode: hello.mode,
        atInstruction: r.atInstruction,
        bytesReceived: r.bytesReceived,
        contentDigest: r.contentDigest,
        totalMs: Math.round((ranAt - accepted) * 1000) / 1000,
        switchoverMs: r.startMs,
        // This side's part only (the source reports the whole, §8.2).
        downtimeMs: null,
        out: o.out ?? null,
        postcopyFaults: r.faults,
        faultLatencyUs: r.faultLatencyUs,
        connections: r.connections,
      },
    };
  }
  let machineStart: Promise<LiveMachine> | null = null;
  let file: AtomicFile | null = null;
  let toGuest: WritableStreamDefaultWriter<Uint8Array> | null = null;
  let progress: ReturnType<typeof setInterval> | undefined;
  try {
    await w.write(encodeMessage(MigrationMessage.ACCEPT, {}));
    const accepted = epochMs();

    // The guest thread restores from the stream as it arrives; it starts paused.
    const channel = new MessageChannel();
    // §5 PROGRESS: what the guest thread has restored, so that the source stops its guest only
    // once this side has caught up (what is still in flight at the switch-over is downtime).
    let restored = 0;
    let handed = 0;
    let reported = -1;
    let reportedAt = 0;
    const report = () => {
      reported = restored;
      reportedAt = performance.now();
      w.write(encodeMessage(MigrationMessage.PROGRESS, { bytes: restored })).catch(() => {});
    };
    progress = setInterval(() => {
      if (restored !== reported || performance.now() - reportedAt >= PROGRESS_HEARTBEAT_MS) {
        report();
      }
    }, PROGRESS_INTERVAL_MS);
    toGuest = portWritable(channel.port1, GUEST_STREAM_WINDOW, (n) => {
      restored = n;
      // Caught up with everything received: said at once, since the source ends its pass on it
      // (a pass's time runs to here).
      if (restored === handed) report();
    }).getWriter();
    machineStart = LiveMachine.start({
      ...o.live,
      restoreStream: channel.port2,
      startPaused: true,
    });
    machineStart.catch(() => {});
    if (o.out !== undefined) file = await AtomicFile.create(o.out);
    const guestFailed = machineStart.then(() => new Promise<never>(() => {}));
    guestFailed.catch(() => {}); // seen through the race below, or through machineStart
    let received: number;
    try {
      received = await reader.lsnapStream(async (b) => {
        handed += b.length;
        await Promise.race([toGuest!.write(b), guestFailed]);
        if (file !== null) await file.write(b);
      }, ms);
    } catch (e) {
      if (e instanceof LsnapError) {
        throw new MigrationError(
          "protocol",
          `Cannot take the migration from ${peer}: the snapshot stream: ${e.message}`,
        );
      }
      throw e;
    }
    await toGuest.close();
    toGuest = null;
    clearInterval(progress);
    let machine: LiveMachine;
    try {
      machine = await machineStart;
    } catch (e) {
      // A stream that does not verify (CRC, digests) or a machine that does not fit.
      await refuse(w, (e as Error).message, "mismatch");
      throw new MigrationError(
        "mismatch",
        `Cannot take the migration from ${peer}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    const swMsg = await reader.message(ms, "SWITCHOVER");
    if (swMsg.type !== MigrationMessage.SWITCHOVER) {
      throw new MigrationError(
        "protocol",
        `Cannot take the migration from ${peer}: expected SWITCHOVER, got ${
          messageName(swMsg.type)
        }`,
      );
    }
    const switchAt = epochMs();
    const sw = decodeSwitchover(swMsg.body);
    // §6: the state here must be the state the source stopped in; never run on a mismatch.
    if (machine.restoredDigest !== sw.contentDigest || machine.startRetired !== sw.atInstruction) {
      const reason =
        `the state received has content digest ${machine.restoredDigest} at instruction ${machine.startRetired}, the source stopped at ${sw.contentDigest} at ${sw.atInstruction}`;
      await refuse(w, reason, "mismatch");
      throw new MigrationError("mismatch", `Cannot take the migration from ${peer}: ${reason}`);
    }
    await w.write(encodeMessage(MigrationMessage.READY, { contentDigest: sw.contentDigest }));
    const go = await reader.message(ms, "GO (the source's release of the guest)");
    if (go.type !== MigrationMessage.GO) {
      throw new MigrationError(
        "protocol",
        `Cannot take the migration from ${peer}: expected GO, got ${messageName(go.type)}`,
      );
    }
    // §6: the downtime ends at this guest's first instruction, which the guest thread timed.
    const resumed = await machine.resume();
    const ranAt = epochMs();
    const firstAt = resumed.resumedAt ?? ranAt;
    await w.write(
      encodeMessage(MigrationMessage.RUNNING, { runningAtUs: Math.round(firstAt * 1000) }),
    ).catch(() => {}); // the source may have closed: the guest runs here all the same
    try {
      conn.close();
    } catch {
      // the source closed first
    }
    // The file is made durable after the guest runs: not part of the downtime.
    await file?.commit();
    return {
      machine,
      metrics: {
        type: "incoming-migration",
        source: peer,
        mode: hello.mode,
        atInstruction: sw.atInstruction,
        bytesReceived: received,
        contentDigest: sw.contentDigest,
        totalMs: Math.round((ranAt - accepted) * 1000) / 1000,
        switchoverMs: Math.round((ranAt - switchAt) * 1000) / 1000,
        downtimeMs: sw.stoppedAtUs === undefined
          ? null
          : Math.round(firstAt * 1000 - sw.stoppedAtUs) / 1000,
        out: o.out ?? null,
        postcopyFaults: 0,
        faultLatencyUs: null,
        connections: 1,
      },
    };
  } catch (e) {
    clearInterval(progress);
    try {
      conn.close();
    } catch {
      // already closed
    }
    await toGuest?.abort(e).catch(() => {});
    await file?.abort();
    const m = await machineStart?.catch(() => null);
    await m?.quit().catch(() => {});
    throw e;
  }
}
