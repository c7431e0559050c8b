/**
 * The writer thread: a Worker that writes one snapshot file at a time while the guest runs. It
 * reads guest RAM and the copy buffer through shared memory, compresses pages (format/'s writer,
 * zstd) and writes them.
 *
 * It is attached once to a machine's shared buffers, then waits on the job doorbell: the guest
 * rings it at a snapshot instant, so a snapshot needs no message to start. The host tells it
 * beforehand where each snapshot goes (the file is created then, so the writer starts at once),
 * and hands it the device state the guest saved (the writer needs it only at the end).
 *
 * @module
 */

import { type DiffParent, diffParentOf, SnapshotWriter } from "../../format/writer.ts";
import { toHex } from "../../format/checksum.ts";
import type { MachineState } from "../machine.ts";
import { FormatPageSink } from "./file_sink.ts";
import { portWritable } from "./port_stream.ts";
import { sectionsFromState } from "./machine_state.ts";
import { CTRL_JOB_DIFF, CTRL_JOB_SEQ, CTRL_KEPT_CHUNKS, jobTag } from "./session.ts";
import { abandonSession, releaseTouchedChunks, SnapshotWriterLoop } from "./writer_loop.ts";
import { collectGarbage, type SlotChunkMessage, SlotChunks } from "./slot_chunks.ts";
import { epochMs } from "./metrics.ts";
import type { PrecopyOptions, WriterCommand, WriterEvent } from "./protocol.ts";
import { parentFromTransfer } from "./diff_parent.ts";

const port = globalThis as unknown as {
  postMessage(message: WriterEvent): void;
  onmessage: ((e: MessageEvent<WriterCommand>) => void) | null;
};

interface Target {
  path: string;
  /** The snapshot goes to a port, not a file: the bytes written to it so far (else null). */
  stream: { bytes: number } | null;
  precopy: PrecopyOptions;
  /** The file, created when the path arrived; null for an incremental snapshot, whose file is
   * created when its job starts (a diff's PARENT record names the last snapshot completed,
   * which may still be being written when the path arrives). */
  writer: Promise<SnapshotWriter> | null;
}

/** The machine's last snapshot completed (or the file it was restored from): the parent of the
 * next diff. Replaced only once a file is complete, so a failed snapshot leaves it as it was. */
let parent: DiffParent | null = null;

/** Creates snapshot file `path` (a diff on `on`, if given), keeping its page hashes for the next
 * diff. */
function createFile(path: string, on: DiffParent | null): Promise<SnapshotWriter> {
  const description = { ...attached!.description, createdAt: Date.now() };
  // Compression stays on this thread (no extra workers): the guest thread needs the other
  // core. 64 KiB records: one queue drain fills one, and each stays below V8's large-object
  // size, so the young generation collects it. A diff holds few pages, scattered: 1 MiB records
  // give zstd the context that keeps it within a few percent of compressing those pages as one
  // stream (BENCHMARKS.md, "Incremental snapshots"); a flush still ends a record early.
  return SnapshotWriter.createFile(path, description, {
    batchBytes: on === null ? 64 * 1024 : 1024 * 1024,
    workers: 0,
    keepPageHashes: true,
    parent: on ?? undefined,
  });
}

/** Bytes a stream target (a live migration's socket) may hold unsent: small, so that a pass ends
 * when its pages are on the wire and precopy measures the link's rate, not this buffer's. */
const STREAM_WINDOW = 256 * 1024;

let attached: Extract<WriterCommand, { type: "attach" }> | null = null;
let chunks: SlotChunks | null = null;
let closing = false;
const targets = new Map<string, Target>();
const states = new Map<string, MachineState>();
const stateWaiters = new Map<string, (s: MachineState) => void>();
const drained = new Map<string, () => void>();

/** `inner`, counting in `count.bytes` the bytes written to it. */
function countedWritable(
  inner: WritableStream<Uint8Array>,
  count: { bytes: number },
): WritableStream<Uint8Array> {
  const w = inner.getWriter();
  return new WritableStream<Uint8Array>({
    async write(chunk) {
      count.bytes += chunk.length;
      await w.write(chunk);
    },
    close: () => w.close(),
    abort: (reason) => w.abort(reason),
  });
}

/** Lets queued messages run (a MessageChannel round trip: no timer clamping). */
const yieldChannel = new MessageChannel();
function yieldToEvents(): Promise<void> {
  return new Promise((resolve) => {
    yieldChannel.port1.onmessage = () => resolve();
    yieldChannel.port2.postMessage(0);
  });
}

function deviceState(tag: string): Promise<MachineState> {
  const s = states.get(tag);
  if (s !== undefined) {
    states.delete(tag);
    return Promise.resolve(s);
  }
  return new Promise((resolve) => stateWaiters.set(tag, resolve));
}

async function target(tag: string): Promise<Target> {
  for (let waited = 0;; waited++) {
    const t = targets.get(tag);
    if (t !== undefined) {
      targets.delete(tag);
      return t;
    }
    // The host registers every path before the guest can take that snapshot; a job can still
    // beat the message here, so let it arrive.
    if (waited === 10_000) throw new Error(`Cannot write snapshot ${tag}: no file name was given`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

async function runJob(a: NonNullable<typeof attached>): Promise<void> {
  const tag = jobTag(a.buffers);
  let writer: SnapshotWriter | null = null;
  let path = "";
  try {
    const t = await target(tag);
    path = t.path;
    const diff = Atomics.load(new Int32Array(a.buffers.control), CTRL_JOB_DIFF) === 1;
    const on = diff ? parent : null;
    if (diff && on === null) {
      throw new Error(
        "Cannot write an incremental snapshot: this machine has no earlier snapshot to be its parent",
      );
    }
    if (t.writer === null) writer = await createFile(path, on);
    else {
      writer = await t.writer;
      if (diff) throw new Error("Cannot write a diff into a file created as a full snapshot");
    }
    const file = writer;
    let summary: Awaited<ReturnType<SnapshotWriter["close"]>> | null = null;
    const loop = new SnapshotWriterLoop(
      a.buffers,
      new Uint8Array(a.ram),
      new Int32Array(a.gate),
      new FormatPageSink(file, 0, on === null ? null : (p) => on.pageHashes.has(0, p)),
      chunks!,
      {
        precopyMaxPasses: t.precopy.maxPasses,
        precopyDowntimeMs: t.precopy.downtimeMs,
        precopyFixedMs: t.precopy.fixedMs,
        precopyMaxThrottlePct: t.precopy.maxThrottlePct,
        onPass: (pass) => port.postMessage({ type: "pass", tag, pass }),
        // A stream's host may hold each pass's end back until the stream's consumer caught up
        // (a migration's destination: the pass is timed to there).
        drain: t.stream !== null
          ? () =>
            new Promise<void>((resolve) => {
              drained.set(tag, resolve);
              port.postMessage({ type: "drain", tag, bytes: t.stream!.bytes });
            })
          : undefined,
        // The file is complete, and the next diff's parent, before the guest sees the job end:
        // it then drops the job's dirty set, which a failed file would have needed.
        beforeDone: async () => {
          const state = await deviceState(tag);
          // A diff holds the whole device state too (FORMAT.md §14).
          for (const section of sectionsFromState(state)) await file.writeDevice(section);
          summary = await file.close();
          // A stream (a migration) is no file a later diff could name as its parent.
          if (t.stream === null) parent = diffParentOf(summary, path);
        },
      },
    );
    const metrics = await loop.run();
    const s = summary! as Awaited<ReturnType<SnapshotWriter["close"]>>;
    port.postMessage({
      type: "done",
      tag,
      writer: metrics,
      bytesWritten: s.bytes,
      contentDigest: toHex(s.contentDigest),
      finishedAt: epochMs(),
      depth: s.depth,
      parentPath: on === null ? null : on.name,
    });
  } catch (e) {
    // Release a guest that may wait on this writer (the loop does so itself if it ran), and
    // remove the temporary file.
    releaseTouchedChunks(chunks!, new Int32Array(a.buffers.control));
    abandonSession(a.buffers);
    if (writer !== null) await writer.abort().catch(() => {});
    const reason = (e as Error).message.replace(/^Cannot (write snapshot|create '[^']*'): /, "");
    port.postMessage({
      type: "failed",
      tag,
      message: `Cannot write snapshot ${path === "" ? tag : `'${path}'`}: ${reason}`,
    });
  }
}

async function serve(a: NonNullable<typeof attached>): Promise<void> {
  const ctrl = new Int32Array(a.buffers.control);
  // Start from the doorbell's initial value, not from what it reads now: the host does not wait
  // for this attach, so the guest may already have rung for its first snapshot, and that job
  // would be missed (its guest then waits for the writer forever). The session buffers are
  // allocated once per machine with the doorbell at 0, and this writer is their only one.
  let seen = 0;
  while (!closing) {
    // Block briefly on the doorbell (a job starts within microseconds of the instant), then
    // let messages in (paths, device states).
    Atomics.wait(ctrl, CTRL_JOB_SEQ, seen, 5);
    const now = Atomics.load(ctrl, CTRL_JOB_SEQ);
    if (now !== seen) {
      seen = now;
      await runJob(a);
      // If the job let go of the copy buffer's chunks (it could not discard their pages), give
      // their memory back now if we may.
      if (Atomics.load(ctrl, CTRL_KEPT_CHUNKS) !== 1) collectGarbage();
    } else {
      await yieldToEvents();
    }
  }
  for (const [tag, t] of targets) {
    targets.delete(tag);
    await t.writer?.then((w) => w.abort()).catch(() => {});
  }
  port.postMessage({ type: "closed" });
}

port.onmessage = (e) => {
  const msg = e.data;
  switch (msg.type) {
    case "attach": {
      attached = msg;
      if (msg.parent !== null) parent = parentFromTransfer(msg.parent);
      const table = new SlotChunks(msg.buffers.chunks);
      chunks = table;
      msg.chunkPort.onmessage = (e: MessageEvent<SlotChunkMessage>) => {
        table.receive(e.data);
      };
      serve(msg);
      break;
    }
    case "path": {
      // A stream (a live migration) has no INDEX: it is read front to back, and the index's
      // encoding, sending and checking would all fall in the guest's downtime.
      const stream = msg.stream !== undefined ? { bytes: 0 } : null;
      const writer = msg.stream !== undefined
        ? SnapshotWriter.create(
          countedWritable(portWritable(msg.stream, STREAM_WINDOW), stream!),
          { ...attached!.description, createdAt: Date.now() },
          { batchBytes: 64 * 1024, workers: 0, index: false },
        )
        : msg.incremental
        ? null
        : createFile(msg.path, null);
      writer?.catch(() => {}); // reported when the job awaits it
      targets.set(msg.tag, {
        path: msg.path,
        stream,
        precopy: msg.precopy ?? {},
        writer,
      });
      break;
    }
    case "state": {
      const w = stateWaiters.get(msg.tag);
      if (w !== undefined) {
        stateWaiters.delete(msg.tag);
        w(msg.state);
      } else {
        states.set(msg.tag, msg.state);
      }
      break;
    }
    case "drained": {
      const r = drained.get(msg.tag);
      drained.delete(msg.tag);
      r?.();
      break;
    }
    case "drop": {
      const t = targets.get(msg.tag);
      targets.delete(msg.tag);
      t?.writer?.then((w) => w.abort()).catch(() => {});
      break;
    }
    case "close":
      closing = true;
      if (attached === null) port.postMessage({ type: "closed" });
      break;
  }
};
// Messages posted to a Worker while its module graph is still evaluating (format/ awaits the
// zstd WebAssembly module at top level) can be lost: the host waits for this before attaching.
port.postMessage({ type: "ready" });
