/**
 * Byte streams between threads over a `MessagePort`, with flow control: the sending side keeps
 * at most a window of bytes unacknowledged, so a slow consumer (a capped network link, a guest
 * thread restoring pages) slows the producer down instead of piling messages up in memory.
 *
 * Used by live migration: the writer thread's `.lsnap` stream goes to the host thread, which
 * sends it over TCP; on the destination the host thread hands the received stream to the guest
 * thread, which restores from it.
 *
 * @module
 */

/** The messages on the port. */
export type PortStreamMessage =
  | { type: "chunk"; bytes: Uint8Array }
  | { type: "end" }
  | { type: "error"; message: string }
  /** Receiver → sender: `bytes` consumed. */
  | { type: "ack"; bytes: number }
  /** Receiver → sender: the receiver gave up; the sender's writes fail with this. */
  | { type: "cancel"; message: string };

/** Bytes in flight before the sender waits for acknowledgements (default). */
export const PORT_STREAM_WINDOW = 4 * 1024 * 1024;

/**
 * The sending end: a `WritableStream` whose chunks are posted on `port` (copied, so the caller
 * may reuse its buffers). A write resolves once the chunk is within the window; it rejects once
 * the receiver cancelled. `onAck` hears the total the receiver has consumed.
 */
export function portWritable(
  port: MessagePort,
  window = PORT_STREAM_WINDOW,
  onAck?: (consumed: number) => void,
): WritableStream<Uint8Array> {
  let inFlight = 0;
  let consumed = 0;
  let cancelled: Error | null = null;
  let wake: (() => void) | null = null;
  port.onmessage = (e: MessageEvent<PortStreamMessage>) => {
    const m = e.data;
    if (m.type === "ack") {
      inFlight -= m.bytes;
      consumed += m.bytes;
      onAck?.(consumed);
    } else if (m.type === "cancel") cancelled = new Error(m.message);
    const w = wake;
    wake = null;
    w?.();
  };
  const post = (m: PortStreamMessage, transfer: Transferable[] = []) =>
    port.postMessage(m, transfer);
  return new WritableStream<Uint8Array>({
    async write(chunk) {
      if (cancelled !== null) throw cancelled;
      const copy = chunk.slice();
      inFlight += copy.length;
      post({ type: "chunk", bytes: copy }, [copy.buffer]);
      while (inFlight > window && cancelled === null) {
        await new Promise<void>((r) => wake = r);
      }
      if (cancelled !== null) throw cancelled;
    },
    close() {
      if (cancelled !== null) throw cancelled;
      post({ type: "end" });
    },
    abort(reason) {
      if (cancelled === null) {
        post({ type: "error", message: (reason as Error)?.message ?? String(reason) });
      }
      port.close();
    },
  });
}

/**
 * The receiving end: a `ReadableStream` of the chunks posted on `port`. Each chunk is
 * acknowledged once it has been read; cancelling the stream makes the sender's writes fail.
 */
export function portReadable(port: MessagePort): ReadableStream<Uint8Array> {
  const queue: PortStreamMessage[] = [];
  let wake: (() => void) | null = null;
  port.onmessage = (e: MessageEvent<PortStreamMessage>) => {
    queue.push(e.data);
    const w = wake;
    wake = null;
    w?.();
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      while (queue.length === 0) await new Promise<void>((r) => wake = r);
      const m = queue.shift()!;
      if (m.type === "chunk") {
        controller.enqueue(m.bytes);
        port.postMessage({ type: "ack", bytes: m.bytes.length } satisfies PortStreamMessage);
      } else if (m.type === "end") {
        controller.close();
        port.close();
      } else if (m.type === "error") {
        controller.error(new Error(m.message));
        port.close();
      }
    },
    cancel(reason) {
      port.postMessage(
        {
          type: "cancel",
          message: (reason as Error)?.message ?? String(reason ?? "cancelled"),
        } satisfies PortStreamMessage,
      );
    },
  });
}
