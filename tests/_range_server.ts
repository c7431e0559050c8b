/**
 * A small HTTP file server on the loopback address for the tests and the benchmark of
 * `format/http_source.ts`: it honours Range and If-Range as RFC 9110 §14 says, and can be told
 * to misbehave the ways real servers do (ignore Range, drop the connection mid-body, change the
 * file mid-read, hang, send a wrong Content-Range, redirect), or to add a latency per request.
 *
 * @module
 */

/** How the server misbehaves. */
export interface RangeServerOptions {
  /** The file served. */
  body: Uint8Array;
  /** Answers 200 with the whole body to every request, Range or not. */
  ignoreRange?: boolean;
  /** Requests answered well before the misbehaviours below start (default 0). */
  misbehaveAfter?: number;
  /** Cuts this many range answers off halfway. */
  dropBodies?: number;
  /** Never answers (until the server shuts down). */
  hang?: boolean;
  /** Shifts the Content-Range of every range answer by this many bytes. */
  shiftContentRange?: number;
  /** Ignores If-Range (a server that sends ranges of whatever file it has now). */
  ignoreIfRange?: boolean;
  /** Sends no ETag or Last-Modified. */
  noValidators?: boolean;
  /** Serves the file at `/file` only; `/redirect` answers 302 to it. */
  redirect?: boolean;
  /** Delay before each answer, in milliseconds (a network round trip). */
  latencyMs?: number;
}

/** A running server. */
export interface RangeServer {
  /** The file's URL (`/redirect` when `redirect` is set). */
  url: string;
  /** Range headers received, in order ("" for a request without one). */
  ranges: string[];
  /** Replaces the file (a new ETag and Last-Modified). */
  replace(body: Uint8Array): void;
  /** Most requests in flight at once so far. */
  maxInFlight: number;
  /** Stops the server, ending hung requests. */
  close(): Promise<void>;
}

/** Starts a server on 127.0.0.1 on a free port. */
export function startRangeServer(o: RangeServerOptions): RangeServer {
  let body = o.body;
  let version = 1;
  let dropped = 0;
  let answered = 0;
  let inFlight = 0;
  const stop = new AbortController();
  const validators = (): Record<string, string> =>
    o.noValidators ? {} : {
      etag: `"v${version}"`,
      "last-modified": new Date(Date.UTC(2026, 0, 1, 0, 0, version)).toUTCString(),
    };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {}, signal: stop.signal },
    async (req) => {
      inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, inFlight);
      try {
        return await answer(req);
      } finally {
        inFlight--;
      }
    },
  );
  const answer = async (req: Request): Promise<Response> => {
    const path = new URL(req.url).pathname;
    if (o.redirect && path === "/redirect") {
      return new Response(null, { status: 302, headers: { location: "/file" } });
    }
    if (o.redirect && path !== "/file") return new Response("no such file", { status: 404 });
    const range = req.headers.get("range") ?? "";
    state.ranges.push(range);
    if (o.latencyMs) await new Promise((r) => setTimeout(r, o.latencyMs));
    const misbehave = answered++ >= (o.misbehaveAfter ?? 0);
    if (o.hang && misbehave) {
      await new Promise<void>((resolve) => {
        stop.signal.addEventListener("abort", () => resolve(), { once: true });
      });
      return new Response(null, { status: 503 });
    }
    const whole = () =>
      new Response(body.slice(), {
        status: 200,
        headers: { ...validators(), "content-length": `${body.length}` },
      });
    const m = /^bytes=(\d+)-(\d+)$/.exec(range);
    if (o.ignoreRange || m === null) return whole();
    const ifRange = req.headers.get("if-range");
    if (!o.ignoreIfRange && ifRange !== null && ifRange !== validators().etag) return whole();
    const first = Number(m[1]);
    if (first >= body.length) {
      return new Response(null, {
        status: 416,
        headers: { "content-range": `bytes */${body.length}` },
      });
    }
    const last = Math.min(Number(m[2]), body.length - 1);
    const shift = misbehave ? o.shiftContentRange ?? 0 : 0;
    const headers = {
      ...validators(),
      "content-range": `bytes ${first + shift}-${last + shift}/${body.length}`,
      "content-length": `${last - first + 1}`,
    };
    const part = body.slice(first, last + 1);
    if (misbehave && o.dropBodies !== undefined && dropped < o.dropBodies) {
      dropped++;
      // Half the body, then the connection fails: the client sees a body cut short.
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(part.subarray(0, part.length >> 1));
        },
        pull(c) {
          // Fewer bytes than Content-Length said: the server closes the connection.
          c.close();
        },
      });
      return new Response(stream, { status: 206, headers });
    }
    return new Response(part, { status: 206, headers });
  };
  const state: RangeServer = {
    url: `http://127.0.0.1:${server.addr.port}/${o.redirect ? "redirect" : "vm.lsnap"}`,
    ranges: [],
    maxInFlight: 0,
    replace(next) {
      body = next;
      version++;
    },
    async close() {
      stop.abort();
      await server.finished;
    },
  };
  return state;
}
