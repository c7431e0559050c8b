/**
 * Live migration, the sending side: moves a running {@linkcode LiveMachine} to a destination
 * (`livesnap restore --incoming HOST:PORT`) over TCP, with the protocol of docs/MIGRATION.md.
 *
 * Precopy: the handshake first (the destination refuses an incompatible machine before any page
 * moves), then the engine's precopy (dirty-log passes with auto-converge) streams the `.lsnap`
 * records straight to the socket; the guest stops for the last dirty pages and its devices and
 * stays stopped; the source sends the content digest of that state, the destination checks it
 * against what it holds, and only then does the source stop for good. A failure at any point
 * before that leaves the source's guest running on as if nothing happened.
 *
 * Post-copy and hybrid (docs/MIGRATION.md §8) take the same handshake, then go on in
 * `migrate_postcopy.ts`: the guest stops at once (hybrid: after its precopy passes) and runs at
 * the destination while its pages follow; a lost connection keeps it stopped here until
 * `migrate(vm, { resume: true })` finishes the move.
 *
 * @module
 */

import {
  connectionError,
  decodeMigrationPrologue,
  decodeRunning,
  encodeHello,
  encodeMessage,
  encodeMigrationPrologue,
  expectReply,
  messageName,
  MIGRATION_MAJOR,
  MigrationError,
  MigrationMessage,
  type MigrationMode,
  TimedByteReader,
} from "../format/migration.ts";
import type { DeviceStateValue } from "../format/device_state.ts";
import type { LiveMachine, PrecopyPassReport } from "../emulator/snapshot/live_machine.ts";
import { CURRENT_STATE_VERSIONS } from "../emulator/snapshot/machine_state.ts";
import { epochMs, type SnapshotMetrics } from "../emulator/snapshot/metrics.ts";
import { portReadable } from "../emulator/snapshot/port_stream.ts";
import { PAGE_SIZE } from "../emulator/memory_map.ts";
import {
  DEFAULT_PRECOPY_PASSES,
  interruptedPostcopy,
  postcopyPhase,
  type PostcopyResult,
} from "./migrate_postcopy.ts";

/** Options of {@linkcode migrate}. */
export interface MigrateOptions {
  /** The destination's host name or address. */
  host: string;
  /** The destination's port. */
  port: number;
  /** `precopy` (default), `postcopy` or `hybrid` (docs/MIGRATION.md §8). */
  mode?: MigrationMode;
  /** Hybrid: precopy passes while the guest runs before its post-copy (default 1). */
  precopyPasses?: number;
  /** Finish this machine's post-copy that a lost connection interrupted (docs/MIGRATION.md
   * §8.5): reconnect, send the pages the destination still lacks. */
  resume?: boolean;
  /** Target downtime: switch over once what is left can be sent in this time (default 50). */
  downtimeMs?: number;
  /** Passes after the first before switching over whatever is dirty (default 20). */
  maxPasses?: number;
  /** Cap on the bytes per second sent (default: none). */
  bandwidth?: number;
  /** The longest wait for the destination at each step, milliseconds (default 30 000). */
  timeoutMs?: number;
  /** Called as each precopy pass ends. */
  onPass?: (line: MigrationPassLine) => void;
}

/** One precopy pass as a migration reports it (a JSON line). */
export interface MigrationPassLine {
  /** The JSON line's kind. */
  type: "migration-pass";
  /** 0 for the first pass over all of RAM. */
  pass: number;
  /** Pages this pass sent. */
  pagesSent: number;
  /** Bytes on the wire while it ran (compressed). */
  bytes: number;
  /** Bytes per second on the wire during the pass. */
  bandwidth: number;
  /** Bytes per second the guest dirtied during the pass. */
  dirtyRate: number;
  /** Pages dirtied per page sent in the same time (≥ 1: the guest outruns the link). */
  dirtyToTransferRatio: number;
  /** How long a switch-over now would stop the guest, milliseconds: the dirty pages at the
   * writer's pace of the last pass, that pass's drain, and the switch-over's fixed cost
   * (docs/MIGRATION.md §6.1); the figure the decision compares with `--downtime-ms`. */
  estimatedDowntimeMs: number;
  /** The auto-converge throttle during the pass, percent. */
  throttlePct: number;
  /** How long a pass waited at its end for the destination to restore the last of it,
   * milliseconds: this one's, or the last one's big enough to time (64 pages); part of the
   * estimate, as the final pause waits so for its last pages. */
  drainMs: number;
  /** The switch-over's fixed cost in the estimate, milliseconds: {@linkcode SWITCHOVER_FIXED_MS}
   * stretched by the machine's contention as the pass measured it (docs/MIGRATION.md §6.1). */
  fixedMs: number;
  /** The switch-over comes next. */
  last: boolean;
}

/** What a migration reports at the end (a JSON line). */
export interface MigrationMetrics {
  /** The JSON line's kind. */
  type: "migration";
  /** The mode used. */
  mode: MigrationMode;
  /** `HOST:PORT` of the destination. */
  destination: string;
  /** Instructions the guest had retired at the switch-over. */
  atInstruction: number;
  /** From the guest's last instruction here to its first at the destination (docs/MIGRATION.md
   * §6.1), milliseconds: both times are read on the guest threads, on the host's clock. */
  downtimeMs: number;
  /** What the last pass estimated the downtime would be (its `estimatedDowntimeMs`). */
  estimatedDowntimeMs: number;
  /** Where `downtimeMs` ends: the destination guest's first instruction (RUNNING), or, from a
   * destination that does not say (protocol 1.0), this side's GO. */
  downtimeEnd: "destination-running" | "go-sent";
  /** Where the downtime went: from the guest's stop to the end of the stream (the last dirty
   * pages, the devices, the trailer: `streamMs`), then until the destination had checked the
   * state and was ready (`checkMs`), then until its guest ran (GO, resume: `runMs`). */
  downtimeParts: { streamMs: number; checkMs: number; runMs: number };
  /** From the connection to the end. */
  totalMs: number;
  /** Bytes sent on the connection, handshake and control messages included. */
  bytesSent: number;
  /** Precopy passes after the first, the switch-over included. */
  passes: number;
  /** Pages the destination asked for (postcopy). */
  postcopyFaults: number;
  /** Fault latency percentiles, microseconds (postcopy; null without faults). */
  faultLatencyUs: { p50: number; p99: number } | null;
  /** The content digest of the state handed over (checked by the destination). */
  contentDigest: string;
  /** RAM of the guest, bytes. */
  ramBytes: number;
  /** The precopy snapshot's own metrics (throttle, pages resent, ...); null for post-copy. */
  snapshot: SnapshotMetrics | null;
}

/** Bytes sent and not restored that the destination may hold for the whole timeout while it
 * still sends PROGRESS before the source gives up on it. */
const STALL_SLACK = 64 * 1024;

/**
 * What a switch-over costs apart from the last dirty pages and their way to the destination,
 * milliseconds, both ends together: the device state to the writer, the trailer and content
 * digest (source); the end of the stream's checks, the devices restored, the guest thread handed
 * over (destination); SWITCHOVER → READY and GO → RUNNING. Measured on the 2-core VM of
 * BENCHMARKS.md at load 2.4-2.8 (timestamps on every thread of both ends, docs/MIGRATION.md
 * §6.1): 17-25 ms from the final pages written to the destination's first instruction. Those are
 * thread hand-offs: on a loaded machine they take several times this, which no estimate made
 * before the pause sees.
 */
export const SWITCHOVER_FIXED_MS = 20;

/** Default bound on each wait for the destination. */
export const DEFAULT_MIGRATION_TIMEOUT_MS = 30_000;

/** Parses `HOST:PORT` (`[v6]:PORT` for IPv6). */
export function parseHostPort(text: string, option: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || port > 65535) {
    throw new RangeError(`Cannot parse ${option}: '${text}' is not HOST:PORT`);
  }
  return { host: m[1] ?? m[2], port };
}

/** Connects with a bound on the wait. */
async function connect(host: string, port: number, ms: number): Promise<Deno.TcpConn> {
  const peer = `${host}:${port}`;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const attempt = Deno.connect({ hostname: host, port });
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      attempt.then((c) => c.close(), () => {});
      reject(new MigrationError("timeout", `Cannot migrate: no connection to ${peer} in ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([attempt, timeout]);
  } catch (e) {
    throw connectionError(peer, e, "connecting");
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Migrates `vm` to `HOST:PORT`. Resolves once the destination runs the guest (the source's guest
 * has then quit); rejects with a {@linkcode MigrationError} if it failed, and the source's guest
 * then runs on where it was.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { LiveMachine } from "../emulator/snapshot/live_machine.ts";
 * import { migrate } from "./migrate.ts";
 * import { receiveMigration } from "./incoming.ts";
 * const elf = await Deno.readFile(new URL("../emulator/guests/build/counter.elf", import.meta.url));
 * let port!: (p: number) => void;
 * const listening = new Promise<number>((r) => port = r);
 * // The destination: waits for one migration on a free port of the loopback address.
 * const incoming = receiveMigration({ host: "127.0.0.1", port: 0, onListening: (a) => port(a.port) });
 * const vm = await LiveMachine.start({ elf, ramSize: 4 << 20 });
 * const m = await migrate(vm, { host: "127.0.0.1", port: await listening });
 * const { machine } = await incoming;
 * // The destination holds exactly the state the source stopped in, and runs it.
 * assertEquals(machine.startRetired, m.atInstruction);
 * assertEquals(machine.restoredDigest, m.contentDigest);
 * await machine.quit();
 * ```
 */
export async function migrate(vm: LiveMachine, o: MigrateOptions): Promise<MigrationMetrics> {
  const peer = `${o.host}:${o.port}`;
  const resuming = o.resume ? interruptedPostcopy(vm) : null;
  if (o.resume && resuming === null) {
    throw new MigrationError(
      "refused",
      `Cannot resume the migration to ${peer}: this guest has no interrupted post-copy migration`,
    );
  }
  const mode = resuming !== null ? "postcopy" : o.mode ?? "precopy";
  const ms = o.timeoutMs ?? DEFAULT_MIGRATION_TIMEOUT_MS;
  const started = epochMs();
  const conn = await connect(o.host, o.port, ms);
  conn.setNoDelay(true);
  const out = conn.writable.getWriter();
  const reader = new TimedByteReader(conn.readable, `the destination ${peer}`);
  let bytesSent = 0;
  const send = async (bytes: Uint8Array, what: string) => {
    try {
      await out.write(bytes);
    } catch (e) {
      throw connectionError(peer, e, what);
    }
    bytesSent += bytes.length;
  };
  /** Set once the guest stopped for the switch-over: it stays stopped until we decide. */
  let final: { atInstruction: number; pausedAt: number } | null = null;
  let snapshot: Promise<SnapshotMetrics> | null = null;
  let pump: Promise<void> | null = null;
  /** Set once the migration failed: a pass waiting for the destination stops waiting. */
  let failed = false;
  let caughtUp: (() => void) | null = null;
  try {
    // §4 handshake: nothing of the guest's memory moves before the destination accepts.
    await send(encodeMigrationPrologue(), "sending the prologue");
    await send(
      encodeHello({
        description: vm.description,
        devices: { ...CURRENT_STATE_VERSIONS },
        mode,
        ...(resuming === null ? {} : { resumeAt: resuming.atInstruction }),
      }),
      "sending HELLO",
    );
    const v = decodeMigrationPrologue(
      await reader.exactly(16, ms, "the destination's prologue"),
      "destination",
    );
    if (v.major !== MIGRATION_MAJOR) {
      throw new MigrationError(
        "refused",
        `Cannot migrate to ${peer}: it speaks protocol ${v.major}.${v.minor}, this source ${MIGRATION_MAJOR}.x`,
      );
    }
    const reply = await reader.message(ms, "the reply to HELLO");
    expectReply(reply.type, reply.body, MigrationMessage.ACCEPT, peer);
    if (mode === "postcopy" || mode === "hybrid") {
      // Hybrid's passes report what crossed the wire meanwhile (the dirty rate is not measured:
      // the passes tell changed pages by their hash, not by a dirty log).
      let passBytes = bytesSent;
      let passAt = epochMs();
      const r = await postcopyPhase({
        vm,
        peer,
        mode,
        reader,
        send,
        sent: () => bytesSent,
        ms,
        started,
        resume: resuming,
        bandwidth: o.bandwidth,
        precopyPasses: o.precopyPasses,
        onPass: (pass, pages) => {
          const now = epochMs();
          const bytes = bytesSent - passBytes;
          const s = Math.max(now - passAt, 1e-3) / 1000;
          passBytes = bytesSent;
          passAt = now;
          o.onPass?.({
            type: "migration-pass",
            pass,
            pagesSent: pages,
            bytes,
            bandwidth: Math.round(bytes / s),
            dirtyRate: 0,
            dirtyToTransferRatio: 0,
            estimatedDowntimeMs: 0,
            throttlePct: 0,
            drainMs: 0,
            fixedMs: 0,
            last: pass + 1 === (o.precopyPasses ?? DEFAULT_PRECOPY_PASSES),
          });
        },
      });
      await out.close().catch(() => {});
      return postcopyMetrics(mode, peer, vm, r, bytesSent, r.passes, null);
    }

    // From here on the destination sends PROGRESS (stream bytes it has restored) until its
    // reply to SWITCHOVER: one reader for all of them.
    let restored = 0;
    let streamSent = 0;
    let advancedAt = performance.now();
    const replies = (async () => {
      for (;;) {
        const m = await reader.message(ms, "the destination's progress");
        if (m.type !== MigrationMessage.PROGRESS) return m;
        const n = (m.body as Record<string, DeviceStateValue>).bytes;
        const now = performance.now();
        if (typeof n === "number" && n > restored) {
          restored = n;
          advancedAt = now;
        } else if (streamSent > restored + STALL_SLACK && now - advancedAt > ms) {
          // A destination that keeps talking but takes nothing would hold our writes forever.
          throw new MigrationError(
            "timeout",
            `Cannot migrate: the destination ${peer} restored nothing for ${ms} ms (${
              streamSent - restored
            } bytes sent and not taken)`,
          );
        }
        (caughtUp as (() => void) | null)?.();
      }
    })();
    replies.catch(() => {});
    let streaming = true;
    const tooEarly = replies.then((m) => {
      if (!streaming) return new Promise<never>(() => {});
      expectReply(m.type, m.body, MigrationMessage.READY, peer);
      throw new MigrationError(
        "protocol",
        `Cannot migrate to ${peer}: the destination sent ${
          messageName(m.type)
        } before the stream ended`,
      );
    });
    tooEarly.catch(() => {});

    // §5 the .lsnap stream: the engine's precopy writes it into a port; this thread sends it.
    const channel = new MessageChannel();
    const stream = portReadable(channel.port2);
    let passBytes = 0;
    let estimatedMs = 0;
    let lastPassEnd = epochMs();
    snapshot = vm.snapshot({
      mode: "precopy",
      path: `tcp://${peer}`,
      stream: channel.port1,
      holdAfterFinal: true,
      // The switch-over's cost apart from the last dirty pages counts against the target.
      precopy: { downtimeMs: o.downtimeMs, maxPasses: o.maxPasses, fixedMs: SWITCHOVER_FIXED_MS },
      onFinal: (atInstruction, pausedAt) => final = { atInstruction, pausedAt },
      // Each pass ends once the destination has restored the stream up to its last page
      // (bounded): the pass is timed to there, so its rate is the rate the destination takes
      // pages at, and the guest stops with nothing in flight (a backlog at the switch-over would
      // be downtime that no estimate counted).
      drain: async (bytes) => {
        const until = performance.now() + ms;
        while (restored < bytes && !failed && performance.now() < until) {
          await new Promise<void>((r) => {
            caughtUp = r;
            setTimeout(r, 20);
          });
        }
        caughtUp = null;
      },
      onPass: (p) => {
        const now = epochMs();
        // Bytes and time as this thread saw them between two passes' ends: the wire's rate.
        estimatedMs = p.estimatedMs;
        o.onPass?.(passLine(p, bytesSent - passBytes, now - lastPassEnd));
        passBytes = bytesSent;
        lastPassEnd = now;
      },
    });
    snapshot.catch(() => {});
    pump = (async () => {
      // The cap: each chunk may leave only when the link, at `bandwidth`, has finished the
      // previous ones; time the stream sat idle earns no credit (no bursts above the cap).
      let next = performance.now();
      for await (const chunk of stream) {
        if (o.bandwidth !== undefined) {
          const now = performance.now();
          if (next > now + 1) await new Promise((r) => setTimeout(r, next - now));
          next = Math.max(next, now) + (chunk.length / o.bandwidth) * 1000;
        }
        await send(chunk, "sending the snapshot stream");
        streamSent += chunk.length;
      }
    })();
    pump.catch(() => {});
    // Whichever fails first: a broken connection stops the pump (and cancels the stream, which
    // fails the engine's writer), a failed snapshot errors the stream.
    const [metrics] = await Promise.race([Promise.all([snapshot, pump]), tooEarly]);
    streaming = false;

    const streamedAt = epochMs();
    // §6 switch-over: the digest of the state the guest stopped in, checked at the far end.
    await send(
      encodeMessage(MigrationMessage.SWITCHOVER, {
        contentDigest: metrics.contentDigest,
        atInstruction: metrics.atInstruction,
        ...(final === null ? {} : {
          stoppedAtUs: Math.round((final as { pausedAt: number }).pausedAt * 1000),
        }),
      }),
      "sending SWITCHOVER",
    );
    const ready = await replies;
    const readyAt = epochMs();
    expectReply(ready.type, ready.body, MigrationMessage.READY, peer);
    await send(encodeMessage(MigrationMessage.GO, {}), "sending GO");
    const wentAt = epochMs();
    // §6: the downtime ends at the destination guest's first instruction, which RUNNING tells
    // (a 1.0 destination does not send it: the downtime then ends at GO, as this side saw it).
    let runningAt: number | null = null;
    if (v.minor >= 1) {
      const m = await reader.message(ms, "RUNNING").catch(() => null);
      if (m?.type === MigrationMessage.RUNNING) {
        try {
          runningAt = decodeRunning(m.body) / 1000;
        } catch {
          // a malformed time: the guest runs there all the same; the downtime ends at GO
        }
      }
    }
    const endAt = runningAt ?? wentAt;
    await out.close().catch(() => {});
    await vm.quit();
    const f = final as { atInstruction: number; pausedAt: number } | null;
    return {
      type: "migration",
      mode,
      destination: peer,
      atInstruction: metrics.atInstruction,
      downtimeMs: round3(endAt - (f?.pausedAt ?? endAt)),
      downtimeEnd: runningAt === null ? "go-sent" : "destination-running",
      estimatedDowntimeMs: round3(estimatedMs),
      downtimeParts: {
        streamMs: round3(streamedAt - (f?.pausedAt ?? streamedAt)),
        checkMs: round3(readyAt - streamedAt),
        runMs: round3(endAt - readyAt),
      },
      totalMs: round3(wentAt - started),
      bytesSent,
      passes: metrics.precopyPasses,
      postcopyFaults: 0,
      faultLatencyUs: null,
      contentDigest: metrics.contentDigest,
      ramBytes: vm.pageCount * PAGE_SIZE,
      snapshot: metrics,
    };
  } catch (e) {
    const err = e instanceof MigrationError ? e : connectionError(peer, e, "migrating");
    failed = true;
    (caughtUp as (() => void) | null)?.();
    try {
      conn.close();
    } catch {
      // already closed
    }
    // The engine's writer fails once its stream is gone; wait for it so that the guest is
    // released before it is resumed.
    await snapshot?.catch(() => {});
    await pump?.catch(() => {});
    if (final !== null) await vm.resume().catch(() => {});
    throw err;
  }
}

/** The migration's report of a post-copy (or hybrid) phase. */
function postcopyMetrics(
  mode: MigrationMode,
  peer: string,
  vm: LiveMachine,
  r: PostcopyResult,
  bytesSent: number,
  passes: number,
  snapshot: SnapshotMetrics | null,
): MigrationMetrics {
  return {
    type: "migration",
    mode,
    destination: peer,
    atInstruction: r.atInstruction,
    downtimeMs: r.downtimeMs,
    // Post-copy's downtime ends at the destination guest's start (docs/MIGRATION.md §8.2); it
    // has no estimate (nothing proportional to RAM is in it) and no GO.
    downtimeEnd: "destination-running",
    estimatedDowntimeMs: 0,
    downtimeParts: { ...r.downtimeParts, runMs: 0 },
    totalMs: r.totalMs,
    bytesSent,
    passes,
    postcopyFaults: r.postcopyFaults,
    faultLatencyUs: r.faultLatencyUs,
    contentDigest: r.contentDigest,
    ramBytes: vm.pageCount * PAGE_SIZE,
    snapshot,
  };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** A pass report as the migration's JSON line. */
function passLine(p: PrecopyPassReport, bytes: number, ms: number): MigrationPassLine {
  const s = Math.max(ms, 1e-3) / 1000;
  return {
    type: "migration-pass",
    pass: p.pass,
    pagesSent: p.pagesSent,
    bytes,
    bandwidth: Math.round(bytes / s),
    dirtyRate: Math.round((p.dirtyPages * PAGE_SIZE) / s),
    dirtyToTransferRatio: p.pagesSent === 0 ? 0 : round3(p.dirtyPages / p.pagesSent),
    estimatedDowntimeMs: round3(p.estimatedMs),
    throttlePct: p.throttlePct,
    drainMs: round3(p.drainMs),
    fixedMs: round3(p.fixedMs),
    last: p.last,
  };
}
