/**
 * The guest thread: a Worker that owns the machine, runs it in slices, and takes the snapshot
 * instant between two instructions. Between slices it reads the host's mailbox, serves a
 * precopy writer's requests for the next dirty set, and notices the writer's end. It is the only
 * thread that reads CPU or device state and the only one that stores into guest RAM.
 *
 * Protocol (`protocol.ts`): `GuestBoot` is the one message it receives, `GuestEvent` what it posts
 * back.
 *
 * @module
 */

import { Machine } from "../machine.ts";
import { GuestSnapshotSide, nowUs } from "./guest_side.ts";
import type { PauseCauses } from "./metrics.ts";
import {
  CMD_PAUSE,
  CMD_QUIT,
  CMD_RESUME,
  CMD_SAVE_STATE,
  CMD_SNAPSHOT,
  CMD_STATUS,
  Mailbox,
  MODE_NAMES,
  SNAPSHOT_DIFF,
  SNAPSHOT_DIFF_IF_PARENT,
  SNAPSHOT_FULL,
} from "./mailbox.ts";
import { describeMachine } from "./machine_state.ts";
import { epochMs, readThreadCpu } from "./metrics.ts";
import type { GuestBoot, GuestEvent, GuestStatus, HaltReason } from "./protocol.ts";
import { restoreMachine, restoreMachineFromFile } from "./restore.ts";
import { postcopyMachine, settlePostcopy } from "./postcopy_pager.ts";
import { portReadable } from "./port_stream.ts";
import {
  CTRL_WRITER_STATE,
  type SnapshotMode,
  TAG_AT,
  TAG_CONTROL,
  TAG_EVERY,
  tagName,
  WRITER_DONE,
} from "./session.ts";
import { parentToTransfer, type ParentTransfer } from "./diff_parent.ts";
import { MAX_CHAIN_DEPTH } from "../../format/constants.ts";

const port = globalThis as unknown as {
  postMessage(message: GuestEvent): void;
  onmessage: ((e: MessageEvent<GuestBoot>) => void) | null;
  close(): void;
};

/** The snapshot in progress, as the guest thread tracks it. */
interface Running {
  tag: string;
  mode: SnapshotMode;
  /** A diff on the machine's last snapshot. */
  diff: boolean;
  startRetired: number;
  /** The longest stretches without instructions so far, by cause (see metrics.ts). */
  pause: PauseCauses;
  /** The thread's CPU time after the first slice (undefined: not read yet; null: unknown). */
  cpu: { runNs: number; waitNs: number } | null | undefined;
  /** Stay paused after precopy's final pause (a live migration: the host resumes the guest if
   * the migration fails, and quits it if it succeeds). */
  hold: boolean;
}

class GuestThread {
  readonly machine: Machine;
  readonly side: GuestSnapshotSide;
  readonly mailbox: Mailbox;
  readonly boot: GuestBoot;
  paused: boolean;
  halt: HaltReason | null = null;
  quit = false;
  running: Running | null = null;
  /** Messages held back from a snapshot instant until the guest has run on. */
  deferred: GuestEvent[] = [];
  /** The sequence number of a resume to reply to once the guest runs again (0: none). */
  resumeSeq = 0;
  scheduleIndex = 0;
  everyCount = 0;
  nextEvery: number;
  readonly slice: number;
  /** When the last slice of guest instructions ended (µs, monotonic), or -1 when the time since
   * is not the snapshot's doing (the guest was paused or halted). */
  lastRunEnd = -1;
  /** The chain depth of the file the next diff would be on (0: a full snapshot), or null while
   * none is: the `.lsnap` the machine was restored from, then each snapshot that completed (the
   * writer keeps that parent). */
  parentDepth: number | null;
  /** The deepest a chain may be: past it, an incremental snapshot starts a new chain. */
  readonly maxChainDepth: number;

  constructor(machine: Machine, boot: GuestBoot, parentDepth: number | null) {
    this.parentDepth = parentDepth;
    this.maxChainDepth = boot.maxChainDepth ?? MAX_CHAIN_DEPTH;
    this.machine = machine;
    this.boot = boot;
    this.mailbox = new Mailbox(boot.mailbox);
    const chunkPort = boot.chunkPort;
    this.side = new GuestSnapshotSide({
      ram: machine.ram.bytes,
      gate: machine.pageGate,
      sendChunk: (message) => chunkPort.postMessage(message),
      // The CPU loop reads it at the start of each run; the instant comes between two runs.
      onGateOpen: (value) => machine.ram.gateOpen = value,
    });
    machine.setStoreHook(this.side.onStore);
    this.warmUp();
    this.paused = boot.startPaused ?? false;
    this.slice = boot.sliceInstructions ?? 200_000;
    this.nextEvery = Infinity;
    this.startFrom();
  }

  /** Sets the scheduled snapshots after the instruction the guest starts from (again after a
   * restore that finished once this thread was built). */
  startFrom(): void {
    const every = this.boot.every;
    const r = this.machine.hart.retired;
    this.nextEvery = every === null
      ? Infinity
      : (Math.floor(r / every.interval) + 1) * every.interval;
    this.scheduleIndex = 0;
    const schedule = this.boot.schedule;
    while (this.scheduleIndex < schedule.length && schedule[this.scheduleIndex].at < r) {
      this.scheduleIndex++;
    }
  }

  /** Runs the instant's code a few times with no effect (see GuestSnapshotSide.warmUp), so that
   * a snapshot does not compile it: at start, and again after a full garbage collection, which
   * can throw compiled code away. The instant saves the devices too (save() is pure). */
  warmUp(): void {
    this.side.warmUp();
    for (let i = 0; i < 4; i++) this.machine.save();
    readThreadCpu();
    nowUs();
    epochMs();
  }

  status(): GuestStatus {
    return {
      state: this.halt !== null ? "halted" : this.paused ? "paused" : "running",
      retired: this.machine.hart.retired,
      halt: this.halt,
      snapshotInProgress: this.running?.tag ?? null,
      cpuNs: readThreadCpu()?.runNs ?? 0,
    };
  }

  /** The next instruction count at which the guest must stop for something it owes. */
  nextStop(): number {
    let n = this.boot.stopAt ?? Infinity;
    const s = this.boot.schedule[this.scheduleIndex];
    if (s !== undefined) n = Math.min(n, s.at);
    return Math.min(n, this.nextEvery);
  }

  loop(): void {
    const m = this.machine;
    while (!this.quit) {
      this.handleMail();
      this.serviceSnapshot();
      if (this.quit) break;
      if (this.paused || this.halt !== null) {
        this.lastRunEnd = -1; // a pause the user asked for is not the snapshot's
        this.replyToResume();
        this.flushDeferred();
        this.mailbox.wait(this.running !== null ? 1 : 50);
        continue;
      }
      // Precopy's throttle: sleep off what the last slices owe (in steps, so the mailbox and
      // the writer's requests are served meanwhile).
      if (this.running !== null && this.side.payThrottle(20_000)) continue;
      const retired = m.hart.retired;
      if (this.scheduleDue(retired)) continue;
      if (this.boot.stopAt !== null && retired >= this.boot.stopAt) {
        this.halt = { reason: "stop-at" };
        this.flushDeferred(); // a snapshot taken at this very instruction is announced first
        port.postMessage({ type: "halted", halt: this.halt, retired, state: m.save() });
        continue;
      }
      const slice = this.running !== null ? Math.min(this.slice, 20_000) : this.slice;
      const budget = Math.min(slice, this.nextStop() - retired);
      // A resume's reply says when the guest ran again (a migration's downtime ends here); it
      // goes out after this slice, with the snapshot messages.
      if (this.resumeSeq !== 0) {
        this.deferred.push({
          type: "reply",
          seq: this.resumeSeq,
          status: { ...this.status(), resumedAt: epochMs() },
        });
        this.resumeSeq = 0;
      }
      const t0 = nowUs();
      // Everything between two slices while a snapshot runs is time the guest did not run
      // because of it: the instant, waiting for a previous snapshot, the chunks' allocation,
      // precopy's throttle and final pause.
      if (this.running !== null && this.lastRunEnd >= 0) {
        const p = this.running.pause;
        p.betweenSlicesUs = Math.max(p.betweenSlicesUs, t0 - this.lastRunEnd);
      }
      if (this.boot.postcopy !== undefined) settlePostcopy(m, this.boot.postcopy);
      const r = m.run(budget);
      const t1 = nowUs();
      this.lastRunEnd = t1;
      if (this.running !== null) {
        this.side.chargeSlice(t1 - t0);
        if (this.running.cpu === undefined) this.running.cpu = readThreadCpu();
      }
      this.flushDeferred();
      if (r.reason !== "budget" && r.reason !== "paused") {
        this.halt = r;
        port.postMessage({ type: "halted", halt: r, retired: m.hart.retired, state: m.save() });
      }
    }
  }

  /** Takes a scheduled snapshot due now; true if the guest must not run yet. */
  scheduleDue(retired: number): boolean {
    const s = this.boot.schedule[this.scheduleIndex];
    const every = this.boot.every;
    let due:
      | { kind: number; index: number; mode: SnapshotMode; slots: number; incremental: boolean }
      | null = null;
    if (s !== undefined && s.at === retired) {
      due = { kind: TAG_AT, index: this.scheduleIndex, ...s };
    } else if (every !== null && this.nextEvery === retired) {
      due = { kind: TAG_EVERY, index: this.everyCount, ...every };
    }
    if (due === null) return false;
    // A snapshot still being written: wait for it, so this one is taken at exactly `retired`.
    if (this.running !== null) {
      this.mailbox.wait(1);
      return true;
    }
    if (s !== undefined && s.at === retired) this.scheduleIndex++;
    else {
      this.everyCount++;
      this.nextEvery += every!.interval;
    }
    // Incremental: a diff on the last snapshot, or a full one if there is none yet (the first
    // of a run).
    this.begin(
      due.kind,
      due.index,
      due.mode,
      due.slots,
      due.incremental ? SNAPSHOT_DIFF_IF_PARENT : SNAPSHOT_FULL,
    );
    return true;
  }

  /**
   * The snapshot instant: arms RAM, rings the writer, saves the devices. The message telling
   * the host goes out after the next slice (see `flushDeferred`): a `postMessage` wakes the main
   * thread and can cost milliseconds on a busy machine, which the guest need not wait for, since
   * the writer needs the device state only at its end. `stop` is the exception: its guest waits.
   */
  begin(
    kind: number,
    index: number,
    mode: SnapshotMode,
    slots: number,
    kindOfFile = SNAPSHOT_FULL,
    hold = false,
  ): void {
    const m = this.machine;
    const tag = tagName(kind, index);
    if (this.running !== null) {
      port.postMessage({
        type: "snapshot-refused",
        tag,
        message: `Cannot start a snapshot: snapshot ${this.running.tag} is still being written`,
      });
      return;
    }
    const depth = this.parentDepth;
    if (kindOfFile === SNAPSHOT_DIFF && (depth === null || depth >= this.maxChainDepth)) {
      port.postMessage({
        type: "snapshot-refused",
        tag,
        message: depth === null
          ? "Cannot take an incremental snapshot: this machine has no earlier snapshot to be " +
            "its parent (take a full one first, or restore from an .lsnap file)"
          : `Cannot take an incremental snapshot: its parent is ${depth} diffs deep, the most ` +
            `a chain may be (${this.maxChainDepth}); take a full one`,
      });
      return;
    }
    // A scheduled incremental snapshot is full when there is no parent, or when the chain is as
    // deep as it may be: it starts a new chain.
    const diff = kindOfFile !== SNAPSHOT_FULL && depth !== null && depth < this.maxChainDepth;
    const startedAt = epochMs();
    const t0 = nowUs();
    try {
      // The writer reads RAM straight from memory: a lazily restored machine's absent pages
      // are brought in first (this wait is part of the instant).
      m.ram.ensureAllPresent();
      this.side.begin(mode, Math.min(slots, this.side.pageCount), kind, index, diff);
    } catch (e) {
      port.postMessage({ type: "snapshot-refused", tag, message: (e as Error).message });
      return;
    }
    const retired = m.hart.retired;
    const state = mode === "precopy" ? null : m.save();
    this.deferred.push({
      type: "snapshot-started",
      tag,
      mode,
      slots,
      state,
      atInstruction: retired,
      startedAt,
    });
    if (mode === "stop") {
      this.flushDeferred();
      this.side.waitForWriter();
    }
    this.running = {
      tag,
      mode,
      diff,
      startRetired: retired,
      pause: { ...NO_PAUSE, instantUs: nowUs() - t0 },
      // Read after the first slice (a read of /proc is a system call: not in the instant).
      cpu: undefined,
      hold,
    };
  }

  /** A resume not yet replied to (the guest did not get to run: it halted, or was paused
   * again by a snapshot's hold): replied to now, without `resumedAt`. */
  replyToResume(): void {
    if (this.resumeSeq === 0) return;
    this.deferred.push({ type: "reply", seq: this.resumeSeq, status: this.status() });
    this.resumeSeq = 0;
  }

  /** Posts the messages held back from a snapshot instant. */
  flushDeferred(): void {
    this.side.ringWriter();
    if (this.deferred.length === 0) return;
    for (const ev of this.deferred) port.postMessage(ev);
    this.deferred = [];
  }

  /** Between slices: precopy requests, the final pause, the writer's end. */
  serviceSnapshot(): void {
    const run = this.running;
    if (run === null) return;
    const side = this.side;
    side.servicePass();
    side.serviceChunks();
    if (side.finalRequested()) {
      const t0 = nowUs();
      const pausedAt = epochMs();
      side.beginFinal();
      const m = this.machine;
      port.postMessage({
        type: "snapshot-final",
        tag: run.tag,
        state: m.save(),
        atInstruction: m.hart.retired,
        pausedAt,
      });
      side.waitForFinalPages();
      run.pause.finalPauseUs = Math.max(run.pause.finalPauseUs, nowUs() - t0);
      // A migration's guest stays where the destination takes over, until the host decides.
      if (run.hold) this.paused = true;
    }
    if (side.writerFinished()) {
      const t0 = nowUs();
      this.flushDeferred();
      // The writer marks a job done only once its file is complete (and then keeps it as the
      // parent of the next diff); a failed one leaves the parent as it was.
      if (Atomics.load(side.session!.ctrl, CTRL_WRITER_STATE) === WRITER_DONE) {
        this.parentDepth = run.diff ? this.parentDepth! + 1 : 0;
      }
      const guest = side.end();
      if (guest.gcUs > 0) {
        const w0 = nowUs();
        this.warmUp();
        guest.gcUs += nowUs() - w0;
      }
      this.running = null;
      const cpu = readThreadCpu();
      const p = run.pause;
      // The end, from the last instruction before it if the guest was running.
      p.endUs = nowUs() - (this.lastRunEnd >= 0 ? Math.min(this.lastRunEnd, t0) : t0);
      p.gcUs = guest.gcUs;
      p.storeHookUs = guest.storeHookMaxUs;
      p.slotWaitUs = guest.slotWaitMaxUs;
      p.pageWaitUs = guest.pageWaitMaxUs;
      p.throttleUs = guest.throttleMaxUs;
      port.postMessage({
        type: "snapshot-guest-done",
        tag: run.tag,
        guest,
        pauseUs: longestPause(p),
        pauseCauses: p,
        instructionsDuring: this.machine.hart.retired - run.startRetired,
        cpuNs: cpu !== null && run.cpu != null ? cpu.runNs - run.cpu.runNs : 0,
        runQueueNs: cpu !== null && run.cpu != null ? cpu.waitNs - run.cpu.waitNs : 0,
      });
    }
  }

  handleMail(): void {
    const cmd = this.mailbox.take();
    if (cmd === null) return;
    const m = this.machine;
    switch (cmd.kind) {
      case CMD_SNAPSHOT: {
        this.begin(
          TAG_CONTROL,
          cmd.seq,
          MODE_NAMES[cmd.args[0]],
          cmd.args[1],
          cmd.args[2],
          cmd.args[3] === 1,
        );
        // The reply waits with the started message, after the guest has run on.
        this.deferred.push({ type: "reply", seq: cmd.seq, status: this.status() });
        if (this.paused || this.halt !== null) this.flushDeferred();
        return;
      }
      case CMD_PAUSE:
        this.paused = true;
        break;
      case CMD_RESUME:
        // Replied to as the guest runs again (see loop), or at once if it cannot.
        if (this.paused && this.halt === null) {
          this.paused = false;
          this.resumeSeq = cmd.seq;
          return;
        }
        this.paused = false;
        break;
      case CMD_QUIT:
        // A snapshot being written is finished first: its writer reads this RAM.
        while (this.running !== null) {
          this.flushDeferred();
          this.serviceSnapshot();
          if (this.running !== null) this.mailbox.wait(1);
        }
        this.quit = true;
        break;
      case CMD_STATUS:
        break;
      case CMD_SAVE_STATE:
        // Argument 1: pause first (a post-copy's stop: one round trip instead of two).
        if (cmd.args[0] === 1) this.paused = true;
        port.postMessage({
          type: "reply",
          seq: cmd.seq,
          status: this.status(),
          state: m.save(),
          at: epochMs(),
        });
        return;
    }
    port.postMessage({ type: "reply", seq: cmd.seq, status: this.status(), at: epochMs() });
  }
}

/** No pause yet, of any kind. */
const NO_PAUSE: PauseCauses = {
  instantUs: 0,
  betweenSlicesUs: 0,
  endUs: 0,
  gcUs: 0,
  storeHookUs: 0,
  slotWaitUs: 0,
  pageWaitUs: 0,
  throttleUs: 0,
  finalPauseUs: 0,
};

/** The longest stretch without instructions: each cause is inside one of these three (the
 * instant, the final pause and the throttle's sleeps between slices; the collection at the end;
 * the waits inside the store hook). */
function longestPause(p: PauseCauses): number {
  return Math.max(p.instantUs, p.betweenSlicesUs, p.endUs, p.storeHookUs);
}

async function start(boot: GuestBoot): Promise<void> {
  const uartSink = (bytes: Uint8Array) => port.postMessage({ type: "uart", bytes: bytes.slice() });
  let machine: Machine;
  let restoredDigest: string | null = null;
  let restoredNotes: { field: string; note: string }[] = [];
  let parent: ParentTransfer | null = null;
  // A stream's (a live migration's) guest thread is built as soon as its machine exists, while
  // the pages still arrive: its snapshot engine and warm-up are then not part of the downtime.
  let early: GuestThread | null = null;
  // A post-copy's machine is described while it waits for its state (its regions and counting
  // origin are set by then): encoding the description (CBOR) cost 2-5 ms that the downtime paid.
  let described: ReturnType<typeof describeMachine> | null = null;
  try {
    if (boot.restoreStream !== undefined) {
      const restored = await restoreMachine(portReadable(boot.restoreStream), {
        uartSink,
        onMachine: (m) => {
          early = new GuestThread(m, boot, null);
          // Its regions and counting origin are set: described now, not in the downtime.
          described = describeMachine(m);
        },
      });
      machine = restored.machine;
      restoredDigest = restored.contentDigest;
      restoredNotes = restored.notes;
    } else if (boot.postcopy !== undefined) {
      machine = await postcopyMachine(
        boot.postcopy,
        uartSink,
        (page) => port.postMessage({ type: "page-fault", page }),
        (built) => {
          // The thread's buffers and warm-up before the state arrives: not in the downtime.
          early = new GuestThread(built, boot, null);
          described = describeMachine(built);
          port.postMessage({
            type: "postcopy-ready",
            ram: built.ram.bytes.buffer as SharedArrayBuffer,
          });
        },
      );
    } else if (boot.restorePath !== undefined) {
      // A diff is restored through its chain (every link checked before the guest runs).
      const restored = await restoreMachineFromFile(boot.restorePath, {
        uartSink,
        parents: boot.restoreParents,
      });
      machine = restored.machine;
      restoredDigest = restored.contentDigest;
      restoredNotes = restored.notes;
      // Right after the restore every page is clean against the file: the next diff's parent.
      if (restored.diffParent !== null) parent = parentToTransfer(restored.diffParent);
    } else {
      machine = Machine.fromElf(boot.elf!, { ramSize: boot.ramSize, uartSink });
    }
  } catch (e) {
    const err = e as Error;
    port.postMessage({ type: "boot-failed", name: err.name, message: err.message });
    port.close();
    return;
  }
  if (boot.input !== undefined) machine.uart.pushInput(boot.input);
  if (boot.runFor != null) {
    // --run-for counts from the restored instant; a --max-instructions guard (counted from
    // reset) may still come first.
    const at = machine.hart.retired + boot.runFor;
    boot.stopAt = boot.stopAt == null ? at : Math.min(boot.stopAt, at);
  }
  const built = early as GuestThread | null;
  let thread: GuestThread;
  if (built !== null && built.machine === machine) {
    thread = built;
    thread.startFrom();
  } else thread = new GuestThread(machine, boot, parent === null ? null : parent.depth);
  port.postMessage({
    type: "booted",
    ram: machine.ram.bytes.buffer as SharedArrayBuffer,
    gate: machine.pageGate.buffer as SharedArrayBuffer,
    buffers: thread.side.buffers,
    description: described ?? describeMachine(machine),
    retired: machine.hart.retired,
    restoredDigest,
    restoredNotes,
    bootedAt: epochMs(),
    parent,
  });
  thread.loop();
  port.postMessage({ type: "quit" });
  port.close();
}

port.onmessage = (e) => {
  port.onmessage = null;
  start(e.data);
};
// Messages posted to a Worker while its module graph is still evaluating (format/ awaits the
// zstd WebAssembly module at top level) can be lost: the host waits for this before booting.
port.postMessage({ type: "ready" });
