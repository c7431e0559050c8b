/**
 * Post-copy migration, the sending side (docs/MIGRATION.md §8): after the handshake the source
 * stops its guest, sends SWITCHOVER and the DEVICE records at once (the destination runs the
 * guest on them, every page absent), then every page of RAM as PAGES records: the pages the
 * destination asks for (PAGE_REQUEST) before its own sweep. The content digest of the stopped
 * state is computed from the pages as the sweep sends them (reading all of RAM before the
 * switch-over would put that read in the downtime) and ends the stream in COMPLETE; the
 * destination checks it against the pages it received.
 *
 * The source's guest stays stopped from the switch-over on. A connection lost before the
 * destination's READY keeps it so, with the state needed to finish: `migrate(vm, { resume: true
 * })` reconnects, learns which pages the destination still lacks (RESUME) and sends those.
 *
 * @module
 */

import { ContentDigestBuilder } from "../format/content_digest.ts";
import { FLAG_CRITICAL, RecordType } from "../format/constants.ts";
import type { DeviceStateValue } from "../format/device_state.ts";
import {
  type DeviceSection,
  encodeDeviceSection,
  normalizeDevice,
} from "../format/device_section.ts";
import { hashPageInto, toHex } from "../format/checksum.ts";
import {
  decodePageRequest,
  decodeResume,
  encodeMessage,
  expectReply,
  MigrationError,
  MigrationMessage,
  type MigrationMode,
  type ReceivedMessage,
  type TimedByteReader,
} from "../format/migration.ts";
import { encodePageRecord } from "../format/page_record.ts";
import { encodeRecord } from "../format/record.ts";
import type { LiveMachine } from "../emulator/snapshot/live_machine.ts";
import { sectionsFromState } from "../emulator/snapshot/machine_state.ts";
import { epochMs } from "../emulator/snapshot/metrics.ts";
import { PAGE_SIZE } from "../emulator/memory_map.ts";

/** Pages per PAGES record of the sweep (256 KiB). */
export const SWEEP_PAGES = 64;
/** Sweep bytes sent and not yet taken by the destination (its PROGRESS) that the sweep may have
 * in flight: a demand request waits behind at most this much (docs/MIGRATION.md §8.3). */
export const SWEEP_WINDOW = 256 * 1024;

/** The source's state of a post-copy, kept across connections until the destination's READY. */
export interface PostcopySource {
  /** The guest's stop, `epochMs()`. */
  pausedAt: number;
  /** Instructions retired at the stop. */
  atInstruction: number;
  /** The device state at the stop. */
  sections: DeviceSection[];
  /** The content digest's page half, filled as pages are sent (every page once at least). */
  digest: ContentDigestBuilder;
  /** 1 for each page hashed into `digest` so far. */
  hashed: Uint8Array;
  /** Pages hashed so far. */
  hashedCount: number;
  /** Demand pages served over all connections. */
  faults: number;
  /** Connections used (1 + resumes). */
  connections: number;
}

/** Post-copy migrations interrupted by a lost connection, by machine: `--resume` finishes them. */
const interrupted = new WeakMap<LiveMachine, PostcopySource>();

/** The interrupted post-copy of `vm`, if any. */
export function interruptedPostcopy(vm: LiveMachine): PostcopySource | null {
  return interrupted.get(vm) ?? null;
}

/** What the post-copy phase needs of the connection `migrate()` opened and shook hands on. */
export interface PostcopyLink {
  vm: LiveMachine;
  peer: string;
  mode: MigrationMode;
  reader: TimedByteReader;
  send: (bytes: Uint8Array, what: string) => Promise<void>;
  /** Bytes sent on the connection so far. */
  sent: () => number;
  ms: number;
  /** When the connection attempt started (`epochMs()`). */
  started: number;
  /** Cap on the bytes per second of pages sent (default: none). */
  bandwidth?: number;
  /** The stopped state of an interrupted post-copy this connection resumes, or null. */
  resume: PostcopySource | null;
  /** Hybrid: precopy passes before the stop (default {@linkcode DEFAULT_PRECOPY_PASSES}). */
  precopyPasses?: number;
  /** Hybrid: called as each precopy pass ends, with the pages it sent. */
  onPass?: (pass: number, pages: number) => void;
}

/** Stops the guest and takes the state a post-copy sends first. */
export async function stopForPostcopy(vm: LiveMachine): Promise<PostcopySource> {
  // When the guest thread stopped running it (not when the reply got here).
  const { status, state, at: pausedAt } = await vm.pauseAndSave();
  const sections = sectionsFromState(state).map(normalizeDevice);
  const digest = new ContentDigestBuilder(vm.description);
  for (const s of sections) digest.setDevice(s);
  return {
    pausedAt,
    atInstruction: status.retired,
    sections,
    digest,
    hashed: new Uint8Array(vm.pageCount),
    hashedCount: 0,
    faults: 0,
    connections: 0,
  };
}

/** True when the 4096 bytes at `off` of `words` (a view of RAM) are all zero. */
function pageIsZero(words: Float64Array, page: number): boolean {
  // 8-byte words compared as doubles: only +0 has all bits zero (-0 compares equal, so check it).
  const base = page * (PAGE_SIZE / 8);
  for (let i = base; i < base + PAGE_SIZE / 8; i++) {
    if (words[i] !== 0 || Object.is(words[i], -0)) return false;
  }
  return true;
}

/** Precopy passes of a hybrid migration by default (docs/MIGRATION.md §8.6). */
export const DEFAULT_PRECOPY_PASSES = 1;

/** The destination's side of the connection as the source reads it: demand requests, how
 * much it has taken (PROGRESS), and the first other message (READY or REFUSE). */
interface Channel {
  demand: number[];
  taken: number;
  takenAt: number;
  streamSent: number;
  wake: (() => void) | null;
  /** Pages a demand request may name (those still to send); null before the switch-over. */
  wanted: Uint8Array | null;
  replies: Promise<ReceivedMessage>;
}

function listen(link: PostcopyLink): Channel {
  const ch: Channel = {
    demand: [],
    taken: 0,
    takenAt: performance.now(),
    streamSent: 0,
    wake: null,
    wanted: null,
    replies: null as unknown as Promise<ReceivedMessage>,
  };
  ch.replies = (async () => {
    for (;;) {
      const m = await link.reader.message(link.ms, "the destination's page requests");
      if (m.type === MigrationMessage.PAGE_REQUEST) {
        const wanted = ch.wanted;
        for (const p of decodePageRequest(m.body, link.vm.pageCount)) {
          if (wanted !== null && wanted[p] === 1) ch.demand.push(p);
        }
      } else if (m.type === MigrationMessage.PROGRESS) {
        const n = (m.body as Record<string, DeviceStateValue>).bytes;
        if (typeof n === "number" && n > ch.taken) {
          ch.taken = n;
          ch.takenAt = performance.now();
        }
      } else return m;
      ch.wake?.();
    }
  })();
  ch.replies.catch(() => {});
  return ch;
}

/** Waits (bounded) until the sweep's window has room or a demand request arrived. */
async function windowRoom(ch: Channel, ms: number, peer: string): Promise<void> {
  while (ch.streamSent - ch.taken > SWEEP_WINDOW && ch.demand.length === 0) {
    if (performance.now() - ch.takenAt > ms) {
      throw new MigrationError(
        "timeout",
        `Cannot migrate to ${peer}: the destination took no pages for ${ms} ms`,
      );
    }
    await new Promise<void>((r) => {
      ch.wake = r;
      setTimeout(r, 20);
    });
    ch.wake = null;
  }
}

/** What hybrid's precopy passes left at the destination: per page 0 (nothing), 1 (zeros) or 2
 * (the bytes whose XXH3-128 is at `hashes[16p]`). */
interface Staged {
  kind: Uint8Array;
  hashes: Uint8Array;
}

/** Sends `record` (counted in the window) at the link's pace. */
async function sendRecord(
  link: PostcopyLink,
  ch: Channel,
  pace: (n: number) => Promise<void>,
  record: Uint8Array,
): Promise<void> {
  await pace(record.length);
  await link.send(record, "sending pages");
  ch.streamSent += record.length;
}

/** A pacer for the link's `bandwidth` cap: a record leaves once the link has carried the ones
 * before it (as precopy's). */
function pacer(bandwidth: number | undefined): (n: number) => Promise<void> {
  let next = performance.now();
  return async (n) => {
    if (bandwidth === undefined) return;
    const now = performance.now();
    if (next > now + 1) await new Promise((r) => setTimeout(r, next - now));
    next = Math.max(next, now) + (n / bandwidth) * 1000;
  };
}

/**
 * Hybrid's precopy passes (docs/MIGRATION.md §8.6), while the guest runs: pass 0 sends every
 * page, each later pass the pages whose bytes changed since they were sent (told apart by their
 * hash). Each page is copied before it is hashed and sent, so what is hashed is what was sent.
 */
async function precopyPasses(
  link: PostcopyLink,
  ch: Channel,
  passes: number,
  pace: (n: number) => Promise<void>,
  onPass: (pass: number, pages: number) => void,
): Promise<Staged> {
  const pageCount = link.vm.pageCount;
  const ram = link.vm.ram;
  const staged: Staged = {
    kind: new Uint8Array(pageCount),
    hashes: new Uint8Array(pageCount * 16),
  };
  const h = new Uint8Array(16);
  for (let pass = 0; pass < passes; pass++) {
    let sent = 0;
    for (let first = 0; first < pageCount; first += SWEEP_PAGES) {
      await windowRoom(ch, link.ms, link.peer);
      const end = Math.min(pageCount, first + SWEEP_PAGES);
      const copy = ram.slice(first * PAGE_SIZE, end * PAGE_SIZE);
      const words = new Float64Array(copy.buffer);
      const zero: number[] = [];
      const data: number[] = [];
      for (let p = first; p < end; p++) {
        const i = p - first;
        if (pageIsZero(words, i)) {
          if (staged.kind[p] !== 1) zero.push(p);
          staged.kind[p] = 1;
          continue;
        }
        hashPageInto(copy.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE), h, 0);
        if (staged.kind[p] === 2 && sameHash(staged.hashes, p, h)) continue;
        staged.kind[p] = 2;
        staged.hashes.set(h, p * 16);
        data.push(p);
      }
      if (zero.length > 0) {
        await sendRecord(link, ch, pace, zeroRecord(zero));
      }
      if (data.length > 0) {
        const bytes = new Uint8Array(data.length * PAGE_SIZE);
        data.forEach((p, i) =>
          bytes.set(
            copy.subarray((p - first) * PAGE_SIZE, (p - first + 1) * PAGE_SIZE),
            i * PAGE_SIZE,
          )
        );
        await sendRecord(link, ch, pace, rawRecord(data, bytes));
      }
      sent += zero.length + data.length;
    }
    onPass(pass, sent);
  }
  return staged;
}

function sameHash(hashes: Uint8Array, p: number, h: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (hashes[p * 16 + i] !== h[i]) return false;
  return true;
}

function zeroRecord(pages: number[]): Uint8Array {
  return encodeRecord(
    RecordType.PAGES,
    FLAG_CRITICAL,
    encodePageRecord(0, "zero", Uint32Array.from(pages), new Uint8Array(0)),
  );
}

function rawRecord(pages: number[], bytes: Uint8Array): Uint8Array {
  return encodeRecord(
    RecordType.PAGES,
    FLAG_CRITICAL,
    encodePageRecord(0, "raw", Uint32Array.from(pages), bytes),
  );
}

/**
 * The post-copy phase on a connection that has been accepted: see the module doc (hybrid: its
 * precopy passes first, the guest running). Resolves with the migration's metrics once the
 * destination is READY (the source's guest has then quit); rejects with a
 * {@linkcode MigrationError}. Before the stop a failure leaves the guest running; after it, a
 * lost connection or a wait that runs out leaves the guest stopped and the migration
 * resumable; a destination's REFUSE (`mismatch`) resumes the guest here.
 */
export async function postcopyPhase(link: PostcopyLink): Promise<PostcopyResult> {
  const { vm, peer, reader, ms } = link;
  let missing: Uint8Array | null = null;
  if (link.resume !== null) {
    // §8.5: the destination says first which pages it still lacks.
    const m = await reader.message(ms, "RESUME");
    expectReply(m.type, m.body, MigrationMessage.RESUME, peer);
    missing = decodeResume(m.body, vm.pageCount);
  }
  const ch = listen(link);
  const pace = pacer(link.bandwidth);
  let staged: Staged | null = null;
  let passes = 0;
  if (link.mode === "hybrid" && link.resume === null) {
    passes = link.precopyPasses ?? DEFAULT_PRECOPY_PASSES;
    const early = ch.replies.then((m) => {
      expectReply(m.type, m.body, MigrationMessage.READY, peer);
      throw new MigrationError("protocol", `Cannot migrate to ${peer}: READY before COMPLETE`);
    });
    early.catch(() => {});
    // The guest runs on during the passes: a failure here leaves it running, as precopy's.
    staged = await Promise.race([
      precopyPasses(link, ch, passes, pace, (pass, pages) => link.onPass?.(pass, pages)),
      early,
    ]);
  }
  const s = link.resume ?? await stopForPostcopy(vm);
  interrupted.set(vm, s);
  s.connections++;
  try {
    return { ...await serve(link, s, missing, ch, staged, pace), passes };
  } catch (e) {
    if (e instanceof MigrationError && (e.failure === "mismatch" || e.failure === "refused")) {
      // The destination refused the state: it does not run the guest; this side does again.
      interrupted.delete(vm);
      await vm.resume().catch(() => {});
      throw e;
    }
    const err = e instanceof MigrationError ? e : new MigrationError(
      "connection",
      `Cannot migrate to ${peer}: ${(e as Error).message}`,
      { cause: e },
    );
    throw new MigrationError(
      err.failure,
      `${err.message}; the guest stays stopped at instruction ${s.atInstruction} with its state: finish the post-copy with --resume`,
      { cause: err },
    );
  }
}

/** What {@linkcode postcopyPhase} measured. */
export interface PostcopyResult {
  atInstruction: number;
  contentDigest: string;
  downtimeMs: number;
  downtimeParts: { streamMs: number; checkMs: number };
  totalMs: number;
  postcopyFaults: number;
  faultLatencyUs: { p50: number; p99: number } | null;
  pagesSent: number;
  /** Hybrid's precopy passes (0 for post-copy). */
  passes: number;
}

async function serve(
  link: PostcopyLink,
  s: PostcopySource,
  missing: Uint8Array | null,
  ch: Channel,
  staged: Staged | null,
  pace: (n: number) => Promise<void>,
): Promise<Omit<PostcopyResult, "passes">> {
  const { vm, peer, send, ms } = link;
  const pageCount = vm.pageCount;
  // Pages still to send on this connection: all, or the ones the destination lacks.
  const toSend = new Uint8Array(pageCount);
  let left = 0;
  for (let p = 0; p < pageCount; p++) {
    if (missing === null || (missing[p >> 3] & (1 << (p & 7))) !== 0) {
      toSend[p] = 1;
      left++;
    }
  }
  ch.wanted = toSend;
  // §8.2: SWITCHOVER and the device state first: the destination runs the guest on them.
  await send(
    encodeMessage(MigrationMessage.SWITCHOVER, {
      atInstruction: s.atInstruction,
      deviceRecords: s.sections.length,
    }),
    "sending SWITCHOVER",
  );
  for (const d of s.sections) {
    await send(
      encodeRecord(RecordType.DEVICE, FLAG_CRITICAL, encodeDeviceSection(d)),
      "sending the device state",
    );
  }
  const switchedAt = epochMs();
  const early = ch.replies.then((m) => {
    expectReply(m.type, m.body, MigrationMessage.READY, peer);
    throw new MigrationError(
      "protocol",
      `Cannot migrate to ${peer}: the destination sent READY before COMPLETE`,
    );
  });
  early.catch(() => {});

  const ram = vm.ram;
  const words = new Float64Array(ram.buffer, ram.byteOffset, ram.length / 8);
  const h = new Uint8Array(16);
  let served = 0;
  let pagesSent = 0;
  const sendPages = async (pages: number[]) => {
    const zero: number[] = [];
    const data: number[] = [];
    const current: number[] = [];
    for (const p of pages) {
      toSend[p] = 0;
      left--;
      const isZero = pageIsZero(words, p);
      const had = staged?.kind[p] ?? 0;
      if (isZero) {
        (had === 1 ? current : zero).push(p);
        continue;
      }
      if (had === 2) {
        // Hybrid: the copy the passes left is still the page's bytes: say so, send nothing.
        hashPageInto(ram.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE), h, 0);
        if (sameHash(staged!.hashes, p, h)) {
          current.push(p);
          s.digest.setPageHash(0, p, h);
          continue;
        }
      }
      data.push(p);
    }
    if (current.length > 0) {
      const m = encodeMessage(MigrationMessage.CURRENT, { pages: current });
      await send(m, "sending pages");
      ch.streamSent += m.length;
    }
    if (zero.length > 0) await sendRecord(link, ch, pace, zeroRecord(zero));
    if (data.length > 0) {
      const bytes = new Uint8Array(data.length * PAGE_SIZE);
      data.forEach((p, i) =>
        bytes.set(ram.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE), i * PAGE_SIZE)
      );
      await sendRecord(link, ch, pace, rawRecord(data, bytes));
      // Hashing a page again (a resend) records the same bytes: the state never changed.
      s.digest.setPageData(0, Uint32Array.from(data), bytes);
    }
    for (const p of pages) hash(s, p);
    pagesSent += zero.length + data.length;
  };

  let cursor = 0;
  const sweep = (async () => {
    while (left > 0) {
      if (ch.demand.length > 0) {
        // Demand first (§8.3): what the destination's guest is waiting for.
        const batch = ch.demand.splice(0, SWEEP_PAGES).filter((p) => toSend[p] === 1);
        served += batch.length;
        if (batch.length > 0) await sendPages([...new Set(batch)]);
        continue;
      }
      await windowRoom(ch, ms, peer);
      if (ch.demand.length > 0) continue;
      const batch: number[] = [];
      while (cursor < pageCount && batch.length < SWEEP_PAGES) {
        if (toSend[cursor] === 1) batch.push(cursor);
        cursor++;
      }
      if (batch.length === 0) cursor = 0; // only demand can be left, sent above
      else await sendPages(batch);
    }
  })();
  sweep.catch(() => {});
  await Promise.race([sweep, early]);
  s.faults += served;
  // Every page has now been hashed (on this connection or an earlier one): the digest of the
  // stopped state, which the destination checks against what it received.
  if (s.hashedCount !== pageCount) {
    throw new Error(
      `Cannot finish the post-copy: ${
        pageCount - s.hashedCount
      } pages were never sent (internal error)`,
    );
  }
  const contentDigest = toHex(await s.digest.digest());
  await send(encodeMessage(MigrationMessage.COMPLETE, { contentDigest }), "sending COMPLETE");
  const ready = await ch.replies;
  expectReply(ready.type, ready.body, MigrationMessage.READY, peer);
  const r = ready.body as Record<string, DeviceStateValue>;
  if (r.contentDigest !== contentDigest) {
    throw new MigrationError(
      "protocol",
      `Cannot migrate to ${peer}: READY names content digest ${
        String(r.contentDigest)
      }, the source's is ${contentDigest}`,
    );
  }
  interrupted.delete(vm);
  await vm.quit();
  const doneAt = epochMs();
  const num = (k: string) => (typeof r[k] === "number" ? r[k] as number : 0);
  const faults = num("faults");
  return {
    atInstruction: s.atInstruction,
    contentDigest,
    // §8.4: from the stop here to the destination's first instruction: this side's part (the
    // state taken and sent) plus the destination's (from the state's arrival to its resume).
    downtimeMs: round3(switchedAt - s.pausedAt + num("startMs")),
    downtimeParts: { streamMs: round3(switchedAt - s.pausedAt), checkMs: round3(num("startMs")) },
    totalMs: round3(doneAt - link.started),
    postcopyFaults: faults,
    faultLatencyUs: faults === 0 ? null : { p50: num("faultP50Us"), p99: num("faultP99Us") },
    pagesSent,
  };
}

/** Counts `page` as hashed (a zero page has nothing to record: the table starts empty). */
function hash(s: PostcopySource, page: number): void {
  if (s.hashed[page] === 1) return;
  s.hashed[page] = 1;
  s.hashedCount++;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
