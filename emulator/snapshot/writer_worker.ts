/**
 * The writer thread: a Worker that writes one snapshot file at a time while the guest runs. It
 * reads guest RAM and the copy buffer through shared memory, compresses pages (format/'s
 * writer, zstd) and writes them; device sections arrive as a message (from the snapshot
 * instant, or for precopy from its final pause).
 *
 * @module
 */

import { SnapshotWriter } from "../../format/writer.ts";
import { toHex } from "../../format/checksum.ts";
import type { MachineDescription } from "../../format/header.ts";
import type { MachineState } from "../machine.ts";
import { FormatPageSink } from "./file_sink.ts";
import { sectionsFromState } from "./machine_state.ts";
import type { SessionBuffers } from "./session.ts";
import { abandonSession, SnapshotWriterLoop, type WriterSideMetrics } from "./writer_loop.ts";
import { epochMs } from "./metrics.ts";

/** A job: write one snapshot. */
export interface WriterJob {
  type: "job";
  tag: string;
  path: string;
  buffers: SessionBuffers;
  ram: SharedArrayBuffer;
  gate: SharedArrayBuffer;
  description: MachineDescription;
  /** The device state, if known when the job starts (stop, cow). */
  state: MachineState | null;
}

/** The device state of a precopy job, from its final pause. */
export interface WriterDeviceState {
  type: "state";
  tag: string;
  state: MachineState;
}

/** What the writer reports. */
export type WriterEvent =
  | { type: "ready" }
  | {
    type: "done";
    tag: string;
    writer: WriterSideMetrics;
    bytesWritten: number;
    contentDigest: string;
    finishedAt: number;
  }
  | { type: "failed"; tag: string; message: string };

const port = globalThis as unknown as {
  postMessage(message: WriterEvent): void;
  onmessage: ((e: MessageEvent<WriterJob | WriterDeviceState>) => void) | null;
};

const states = new Map<string, (s: MachineState) => void>();
const early = new Map<string, MachineState>();

function deviceState(tag: string): Promise<MachineState> {
  const s = early.get(tag);
  if (s !== undefined) {
    early.delete(tag);
    return Promise.resolve(s);
  }
  return new Promise((resolve) => states.set(tag, resolve));
}

let queue: Promise<void> = Promise.resolve();

async function write(job: WriterJob): Promise<void> {
  let writer: SnapshotWriter | null = null;
  try {
    writer = await SnapshotWriter.createFile(job.path, job.description);
    const loop = new SnapshotWriterLoop(
      job.buffers,
      new Uint8Array(job.ram),
      new Int32Array(job.gate),
      new FormatPageSink(writer),
    );
    const metrics = await loop.run();
    const state = job.state ?? await deviceState(job.tag);
    for (const section of sectionsFromState(state)) await writer.writeDevice(section);
    const summary = await writer.close();
    port.postMessage({
      type: "done",
      tag: job.tag,
      writer: metrics,
      bytesWritten: summary.bytes,
      contentDigest: toHex(summary.contentDigest),
      finishedAt: epochMs(),
    });
  } catch (e) {
    // Release a guest that may wait on this writer (the loop does so itself if it ran), and
    // remove the temporary file.
    abandonSession(job.buffers);
    if (writer !== null) await writer.abort().catch(() => {});
    port.postMessage({ type: "failed", tag: job.tag, message: (e as Error).message });
  }
}

port.onmessage = (e) => {
  const msg = e.data;
  if (msg.type === "state") {
    const resolve = states.get(msg.tag);
    if (resolve !== undefined) {
      states.delete(msg.tag);
      resolve(msg.state);
    } else {
      early.set(msg.tag, msg.state);
    }
    return;
  }
  queue = queue.then(() => write(msg));
};
port.postMessage({ type: "ready" });
