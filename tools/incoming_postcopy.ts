/**
 * Post-copy migration, the receiving side (docs/MIGRATION.md §8): on the source's SWITCHOVER and
 * DEVICE records the destination starts the guest with every page absent and runs it at once; a
 * fault on an absent page asks the source for it (PAGE_REQUEST) while the source's sweep brings
 * in the rest. Each page is written into RAM once, before its absent bit is cleared, and never
 * again (the guest's own stores win from then on). Its bytes are hashed as they arrive, so the
 * content digest of the state received is known the moment the last page is in; it must equal
 * the source's (COMPLETE), or the guest is stopped and the migration fails.
 *
 * A lost connection pauses the guest (a fault then waits) and keeps every page received; the
 * source reconnects with `--resume` and this side tells it which pages it still lacks (RESUME).
 * The wait for it is bounded (`resumeTimeoutMs`).
 *
 * @module
 */

import { AtomicFile } from "../format/atomic_file.ts";
import { toHex } from "../format/checksum.ts";
import { RECORD_HEAD_SIZE, RECORD_TAIL_SIZE, RecordType } from "../format/constants.ts";
import { ContentDigestBuilder } from "../format/content_digest.ts";
import { decodeDeviceSection, type DeviceSection } from "../format/device_section.ts";
import { decodeDeviceState } from "../format/device_state.ts";
import { CorruptError, LsnapError } from "../format/errors.ts";
import {
  decodeComplete,
  decodePageRequest,
  decodePostcopySwitchover,
  encodeMessage,
  type Hello,
  MAX_MESSAGE_PAYLOAD,
  messageName,
  MigrationError,
  MigrationMessage,
  type TimedByteReader,
} from "../format/migration.ts";
import { decodePageRecord, expandPageData } from "../format/page_record.ts";
import { SnapshotWriter } from "../format/writer.ts";
import { LiveMachine, type LiveMachineOptions } from "../emulator/snapshot/live_machine.ts";
import { clearAbsent } from "../emulator/ram.ts";
import { POSTCOPY_ABANDONED, POSTCOPY_COMPLETE } from "../emulator/snapshot/postcopy_pager.ts";
import { PAGE_SIZE } from "../emulator/memory_map.ts";
import { epochMs } from "../emulator/snapshot/metrics.ts";

/** What of `receiveMigration`'s options a post-copy uses. */
export interface PostcopyIncomingOptions {
  /** Also keep the state received as a `.lsnap` file (written once the digest is checked). */
  out?: string;
  /** The bound on waiting for a source to come back after a lost connection, and on each
   * fault's wait for its page (default {@linkcode DEFAULT_RESUME_TIMEOUT_MS}). */
  resumeTimeoutMs?: number;
  /** Called once the guest runs here, before its pages are all in. */
  onPostcopyStart?: (atInstruction: number) => void;
  /** The machine's other options (UART sink, stop-at...). */
  live?: Omit<LiveMachineOptions, "elf" | "restorePath" | "restoreStream" | "startPaused">;
}

/** Default bound on the wait for a source to come back after a lost connection (and on each
 * fault's wait for its page), milliseconds. */
export const DEFAULT_RESUME_TIMEOUT_MS = 60_000;
/** The destination's heartbeat during post-copy (PROGRESS), milliseconds. */
const HEARTBEAT_MS = 1000;
/** PROGRESS every this often while pages arrive (when the count changed)... */
const PROGRESS_INTERVAL_MS = 10;
/** ...and at once whenever this many more bytes have been taken. */
const PROGRESS_STEP = 64 * 1024;
/** The largest PAGES record accepted (the source sends at most 64 pages a record). */
const MAX_PAGES_RECORD = 16 * 1024 * 1024;

/** One connection of a post-copy: its reader and writer, as `receiveMigration` set them up. */
export interface PostcopyConnection {
  conn: Deno.TcpConn;
  peer: string;
  reader: TimedByteReader;
  w: WritableStreamDefaultWriter<Uint8Array>;
  hello: Hello;
}

/** What a post-copy destination measured. */
export interface PostcopyIncomingResult {
  machine: LiveMachine;
  atInstruction: number;
  contentDigest: string;
  /** From the device state's arrival to the guest's resume here, milliseconds. */
  startMs: number;
  faults: number;
  faultLatencyUs: { p50: number; p99: number } | null;
  bytesReceived: number;
  connections: number;
}

/** Bit `p` of a page bitmap. */
function bit(map: Uint8Array, p: number): boolean {
  return (map[p >> 3] & (1 << (p & 7))) !== 0;
}

function pct(xs: number[], f: number): number {
  return xs.length === 0 ? 0 : xs[Math.min(xs.length - 1, Math.floor(f * xs.length))];
}

/**
 * Runs a post-copy on `first` (accepted already) and on each connection `next` gives after a
 * lost one, until the state is complete and checked. Rejects with a {@linkcode MigrationError};
 * the guest is then stopped (quit).
 */
export async function receivePostcopy(
  first: PostcopyConnection,
  o: PostcopyIncomingOptions,
  ms: number,
  next: (ms: number) => Promise<PostcopyConnection>,
): Promise<PostcopyIncomingResult> {
  const resumeMs = o.resumeTimeoutMs ?? DEFAULT_RESUME_TIMEOUT_MS;
  const description = first.hello.description;
  const pageCount = description.regions[0].size / PAGE_SIZE;
  const have = new Uint8Array(Math.ceil(pageCount / 8));
  let haveCount = 0;
  const digest = new ContentDigestBuilder(description);
  const requested = new Map<number, number>();
  const latencies: number[] = [];
  // Set by serveConnection (a closure): typed so that TypeScript does not narrow them to null.
  let machine = null as LiveMachine | null;
  let atInstruction = -1;
  let startMs = 0;
  let bytesReceived = 0;
  let connections = 0;
  let file = null as AtomicFile | null;
  let writer = null as SnapshotWriter | null;
  let current: PostcopyConnection | null = first;
  let checkedDigest = "";
  const ask = (pages: number[]) => {
    const w = current?.w;
    if (w === undefined || pages.length === 0) return;
    w.write(encodeMessage(MigrationMessage.PAGE_REQUEST, { pages })).catch(() => {});
  };
  const onPageFault = (page: number) => {
    if (page < 0 || page >= pageCount || bit(have, page) || requested.has(page)) return;
    requested.set(page, performance.now());
    ask([page]);
  };
  // The guest's thread and machine are made now, while the source still runs its guest: only
  // the device state's restore is left for the switch-over (a thread takes tens of ms to start).
  const stateChannel = new MessageChannel();
  const complete = new SharedArrayBuffer(4);
  let ready!: () => void;
  const readied = new Promise<void>((r) => ready = r);
  /** The prepared machine's RAM (hybrid's passes write there, every page still absent). */
  let prepared: Uint8Array | null = null;
  const staged = new Uint8Array(have.length);
  const stage = (payload: Uint8Array, at: number, ram: Uint8Array) => {
    const head = decodePageRecord(payload, description.regions, at, -1);
    const data = expandPageData(head, PAGE_SIZE, at, -1, (reason, off, i) => {
      throw new CorruptError(reason, { offset: off, recordIndex: i });
    });
    for (let i = 0; i < head.pages.length; i++) {
      const p = head.pages[i];
      if (data === null) ram.fill(0, p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
      else ram.set(data.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE), p * PAGE_SIZE);
      staged[p >> 3] |= 1 << (p & 7);
    }
  };
  const machineStart = LiveMachine.start({
    ...o.live,
    // A fault waits as long as the source may stay silent plus the time for a resume.
    postcopy: { description, state: stateChannel.port2, waitBoundMs: ms + resumeMs, complete },
    onPageFault,
    onPostcopyReady: (ram) => {
      prepared = new Uint8Array(ram);
      ready();
    },
  });
  machineStart.catch(() => {});
  try {
    // §8.1: ACCEPT once the machine is ready for its state: the source stops its guest on it.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      readied,
      machineStart.then(() => {}),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new MigrationError("timeout", `Cannot prepare the guest: not ready within ${ms} ms`),
            ),
          ms,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    await first.w.write(encodeMessage(MigrationMessage.ACCEPT, {}));
    for (let c: PostcopyConnection = first;;) {
      connections++;
      current = c;
      const r = await serveConnection(c);
      if (r === "done") break;
      // The connection is gone: hold the guest, keep the pages, wait (bounded) for the source.
      current = null;
      try {
        c.conn.close();
      } catch {
        // already closed
      }
      if (machine === null) throw r;
      // Not awaited: a guest waiting in a fault takes the command only once its page is in.
      machine.pause().catch(() => {});
      try {
        c = await next(resumeMs);
      } catch (e) {
        throw new MigrationError(
          "timeout",
          `Cannot finish the post-copy migration: the connection to the source was lost (${r.message}) and no source resumed it within ${resumeMs} ms (${
            pageCount - haveCount
          } of ${pageCount} pages missing); the guest was stopped`,
          { cause: e },
        );
      }
      if (c.hello.resumeAt !== atInstruction) {
        const reason = c.hello.resumeAt === undefined
          ? "this destination holds an interrupted post-copy: the source must resume it (--resume)"
          : `the source resumes a post-copy at instruction ${c.hello.resumeAt}, this destination holds one at ${atInstruction}`;
        await c.w.write(encodeMessage(MigrationMessage.REFUSE, { reason })).catch(() => {});
        throw new MigrationError("refused", `Cannot resume the post-copy: ${reason}`);
      }
      await c.w.write(encodeMessage(MigrationMessage.ACCEPT, {}));
    }
    const m = machine as LiveMachine | null;
    if (m === null) throw new Error("unreachable: post-copy ended without a machine");
    const sorted = [...latencies].sort((a, b) => a - b);
    const faultLatencyUs = sorted.length === 0 ? null : {
      p50: Math.round(pct(sorted, 0.5) * 1000),
      p99: Math.round(pct(sorted, 0.99) * 1000),
    };
    if (writer !== null) {
      await (writer as SnapshotWriter).close();
      await file!.commit();
    }
    return {
      machine: m,
      atInstruction,
      contentDigest: checkedDigest,
      startMs,
      faults: latencies.length,
      faultLatencyUs,
      bytesReceived,
      connections,
    };
  } catch (e) {
    // A guest waiting in a fault gives up now instead of at its bound: nothing will come.
    Atomics.store(new Int32Array(complete), 0, POSTCOPY_ABANDONED);
    if (machine === null) {
      stateChannel.port1.postMessage(null);
      await machineStart.then((m) => m.quit(), () => {});
    }
    await writer?.abort().catch(() => {});
    await file?.abort().catch(() => {});
    await machine?.quit().catch(() => {});
    throw e;
  }

  /** One connection: "done" once the state is complete and checked, or the error that ended
   * it when the connection failed (to wait for a resume); throws for anything else. */
  async function serveConnection(c: PostcopyConnection): Promise<"done" | MigrationError> {
    const { reader, w, peer } = c;
    let heartbeat: ReturnType<typeof setInterval> | undefined;
    // §8.3 PROGRESS: the bytes of this connection taken so far, as soon as another 64 KiB are
    // (the source keeps its sweep within a window of them, so that a demand request never waits
    // behind much of it), else every 10 ms when they changed, and at least every second (a
    // heartbeat).
    const base = bytesReceived;
    let reported = -1;
    let reportedAt = 0;
    const report = () => {
      reported = bytesReceived - base;
      reportedAt = performance.now();
      w.write(encodeMessage(MigrationMessage.PROGRESS, { bytes: reported })).catch(() => {});
    };
    const progressed = () => {
      if (bytesReceived - base - reported >= PROGRESS_STEP) report();
    };
    const startProgress = () => {
      heartbeat = setInterval(() => {
        const n = bytesReceived - base;
        if (n === reported && performance.now() - reportedAt < HEARTBEAT_MS) return;
        report();
      }, PROGRESS_INTERVAL_MS);
    };
    try {
      if (machine !== null || c.hello.resumeAt !== undefined) {
        // §8.5: which pages are still missing (all of them on a destination started anew).
        const missing = new Uint8Array(have.length);
        for (let i = 0; i < have.length; i++) missing[i] = ~have[i] & 0xff;
        await w.write(encodeMessage(MigrationMessage.RESUME, { missing }));
      }
      startProgress();
      // Hybrid's precopy passes (§8.6): pages into the prepared RAM, still absent, until the
      // source's SWITCHOVER.
      let swBody;
      for (;;) {
        const r = await reader.record(ms, "SWITCHOVER", MAX_PAGES_RECORD);
        bytesReceived += r.payload.length + RECORD_HEAD_SIZE + RECORD_TAIL_SIZE;
        if (r.type === MigrationMessage.SWITCHOVER) {
          swBody = messageBody(r.payload, peer, "SWITCHOVER");
          break;
        }
        if (
          r.type === RecordType.PAGES && machine === null && c.hello.mode === "hybrid" &&
          prepared !== null
        ) {
          stage(r.payload, r.at, prepared);
          progressed();
          continue;
        }
        throw new MigrationError(
          "protocol",
          `Cannot take the migration from ${peer}: expected SWITCHOVER at byte ${r.at}, got ${
            messageName(r.type)
          }`,
        );
      }
      const sw = decodePostcopySwitchover(swBody);
      const arrived = epochMs();
      const sections: DeviceSection[] = [];
      for (let i = 0; i < sw.deviceRecords; i++) {
        const r = await reader.record(ms, `DEVICE record ${i}`, MAX_MESSAGE_PAYLOAD);
        if (r.type !== RecordType.DEVICE) {
          throw new MigrationError(
            "protocol",
            `Cannot take the migration from ${peer}: expected DEVICE record ${i} at byte ${r.at}, got ${
              messageName(r.type)
            }`,
          );
        }
        sections.push(decodeDeviceSection(r.payload, r.at, -1));
      }
      if (machine === null) {
        atInstruction = sw.atInstruction;
        for (const s of sections) digest.setDevice(s);
        // The guest thread restores the state and runs it at once (not started paused: a
        // resume would cost two more handoffs between threads in the downtime).
        stateChannel.port1.postMessage({ sections, atInstruction: sw.atInstruction });
        try {
          machine = await machineStart;
        } catch (e) {
          const reason = (e as Error).message;
          await w.write(encodeMessage(MigrationMessage.REFUSE, { reason, failure: "mismatch" }))
            .catch(() => {});
          throw new MigrationError(
            "mismatch",
            `Cannot take the migration from ${peer}: ${reason}`,
            { cause: e },
          );
        }
        // To the guest thread's word that it runs (its first slice follows at once).
        startMs = Math.round((machine.bootedAt - arrived) * 1000) / 1000;
        o.onPostcopyStart?.(atInstruction);
        if (o.out !== undefined) {
          const f = await AtomicFile.create(o.out);
          file = f;
          writer = await SnapshotWriter.create(
            new WritableStream({ write: (b) => f.write(b) }),
            description,
            { workers: 0 },
          );
          for (const s of sections) await writer.writeDevice(s);
        }
      } else {
        if (sw.atInstruction !== atInstruction) {
          throw new MigrationError(
            "mismatch",
            `Cannot resume the migration from ${peer}: its SWITCHOVER is at instruction ${sw.atInstruction}, this destination's at ${atInstruction}`,
          );
        }
        // Faults the lost connection left unanswered, then the guest again.
        ask([...requested.keys()].filter((p) => !bit(have, p)).slice(0, 1024));
        // Not awaited, as the pause: it follows the pause, which may wait for a page.
        machine.resume().catch(() => {});
      }
      const gate = machine.pageGate;
      const ram = machine.ram;
      for (;;) {
        // Bounded: the source's sweep sends without pause; a silent source is a lost one.
        const r = await reader.record(ms, "pages", MAX_PAGES_RECORD);
        bytesReceived += r.payload.length + RECORD_HEAD_SIZE + RECORD_TAIL_SIZE;
        progressed();
        if (r.type === RecordType.PAGES) {
          const head = decodePageRecord(r.payload, description.regions, r.at, -1);
          const data = expandPageData(head, PAGE_SIZE, r.at, -1, (reason, at, i) => {
            throw new CorruptError(reason, { offset: at, recordIndex: i });
          });
          const fresh: number[] = [];
          const now = performance.now();
          for (let i = 0; i < head.pages.length; i++) {
            const p = head.pages[i];
            if (bit(have, p)) continue; // a resend: the guest's stores since win
            if (data !== null) {
              ram.set(data.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE), p * PAGE_SIZE);
            }
            have[p >> 3] |= 1 << (p & 7);
            haveCount++;
            clearAbsent(gate, p);
            Atomics.notify(gate, p);
            fresh.push(p);
            const t = requested.get(p);
            if (t !== undefined) {
              latencies.push(now - t);
              requested.delete(p);
            }
          }
          if (data !== null && fresh.length > 0) {
            const list = Uint32Array.from(fresh);
            const bytes = new Uint8Array(fresh.length * PAGE_SIZE);
            let k = 0;
            for (let i = 0; i < head.pages.length && k < fresh.length; i++) {
              if (head.pages[i] !== fresh[k]) continue;
              bytes.set(data.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE), k * PAGE_SIZE);
              k++;
            }
            digest.setPageData(0, list, bytes);
            await writer?.writePageList(0, list, bytes);
          }
        } else if (r.type === MigrationMessage.CURRENT) {
          // Hybrid: the precopied copies of these pages are their bytes at the stop.
          const pages = decodePageRequest(
            messageBody(r.payload, peer, "CURRENT"),
            pageCount,
            "CURRENT",
          );
          const now = performance.now();
          const fresh: number[] = [];
          for (const p of pages) {
            if (!bit(staged, p)) {
              throw new MigrationError(
                "protocol",
                `Cannot take the migration from ${peer}: CURRENT at byte ${r.at} names page ${p}, which no precopy pass sent`,
              );
            }
            if (bit(have, p)) continue;
            fresh.push(p);
          }
          if (fresh.length > 0) {
            const list = Uint32Array.from(fresh);
            const bytes = new Uint8Array(fresh.length * PAGE_SIZE);
            fresh.forEach((p, i) =>
              bytes.set(ram.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE), i * PAGE_SIZE)
            );
            digest.setPageData(0, list, bytes);
            await writer?.writePageList(0, list, bytes);
          }
          for (const p of fresh) {
            have[p >> 3] |= 1 << (p & 7);
            haveCount++;
            clearAbsent(gate, p);
            Atomics.notify(gate, p);
            const t = requested.get(p);
            if (t !== undefined) {
              latencies.push(now - t);
              requested.delete(p);
            }
          }
        } else if (r.type === MigrationMessage.COMPLETE) {
          const { contentDigest } = decodeComplete(messageBody(r.payload, peer, "COMPLETE"));
          if (haveCount !== pageCount) {
            throw new MigrationError(
              "protocol",
              `Cannot take the migration from ${peer}: COMPLETE arrived with ${
                pageCount - haveCount
              } of ${pageCount} pages never sent`,
            );
          }
          const mine = toHex(await digest.digest());
          if (mine !== contentDigest) {
            await machine.pause().catch(() => {});
            const reason =
              `the pages and devices received have content digest ${mine}, the source's state at instruction ${atInstruction} has ${contentDigest}`;
            await w.write(
              encodeMessage(MigrationMessage.REFUSE, { reason, failure: "mismatch" }),
            ).catch(() => {});
            throw new MigrationError(
              "mismatch",
              `Cannot take the migration from ${peer}: ${reason}; the guest was stopped`,
            );
          }
          // Every page is present: the guest's loads need no test any more.
          Atomics.store(new Int32Array(complete), 0, POSTCOPY_COMPLETE);
          const sorted = [...latencies].sort((a, b) => a - b);
          await w.write(encodeMessage(MigrationMessage.READY, {
            contentDigest,
            faults: latencies.length,
            faultP50Us: Math.round(pct(sorted, 0.5) * 1000),
            faultP99Us: Math.round(pct(sorted, 0.99) * 1000),
            startMs,
          }));
          checkedDigest = contentDigest;
          try {
            c.conn.close();
          } catch {
            // the source closed first
          }
          return "done";
        } else {
          throw new MigrationError(
            "protocol",
            `Cannot take the migration from ${peer}: unexpected ${
              messageName(r.type)
            } at byte ${r.at} during post-copy`,
          );
        }
      }
    } catch (e) {
      if (
        e instanceof MigrationError && (e.failure === "connection" || e.failure === "timeout") &&
        machine !== null
      ) return e;
      if (e instanceof LsnapError) {
        throw new MigrationError(
          "protocol",
          `Cannot take the migration from ${peer}: ${e.message}`,
          { cause: e },
        );
      }
      throw e;
    } finally {
      clearInterval(heartbeat);
    }
  }
}

/** A control message's CBOR body from a raw record's payload (at most the message cap). */
function messageBody(payload: Uint8Array, peer: string, what: string) {
  if (payload.length > MAX_MESSAGE_PAYLOAD) {
    throw new MigrationError(
      "protocol",
      `Cannot take the migration from ${peer}: ${what} has ${payload.length} bytes, more than the ${MAX_MESSAGE_PAYLOAD} allowed`,
    );
  }
  try {
    return payload.length === 0 ? {} : decodeDeviceState(payload);
  } catch (e) {
    throw new MigrationError(
      "protocol",
      `Cannot take the migration from ${peer}: ${what}: ${(e as Error).message}`,
    );
  }
}
