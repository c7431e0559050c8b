/**
 * A small driver of headless Chromium over the Chrome DevTools Protocol (a WebSocket to
 * `--remote-debugging-port`), for the report's browser tests, its screenshot script and its
 * benchmark: open a page, wait for it, evaluate expressions, collect what it logs and the
 * requests it makes, take screenshots. Every wait has a bound.
 *
 * @module
 */

/** Where Chromium is looked for, in order (the `CHROMIUM` environment variable first). */
const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];

/** The Chromium binary on this machine, or null. */
export function findChromium(): string | null {
  const fromEnv = Deno.env.get("CHROMIUM");
  for (const path of fromEnv ? [fromEnv, ...CANDIDATES] : CANDIDATES) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not there: try the next.
    }
  }
  return null;
}

/** Something the page logged: console messages, uncaught exceptions, browser log entries. */
export interface PageMessage {
  level: string;
  text: string;
}

interface Pending {
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

type Listener = (params: Record<string, unknown>, sessionId?: string) => void;

/** A DevTools connection to one browser. */
class Connection {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Map<string, Listener[]>();

  private constructor(private readonly ws: WebSocket) {
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data as string);
      if (msg.id !== undefined) {
        const p = this.pending.get(msg.id);
        if (p === undefined) return;
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.error) p.reject(new Error(`DevTools: ${msg.error.message} (${msg.error.code})`));
        else p.resolve(msg.result ?? {});
      } else if (msg.method) {
        for (const l of this.listeners.get(msg.method) ?? []) l(msg.params ?? {}, msg.sessionId);
      }
    };
    ws.onclose = () => {
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new Error("DevTools: the browser closed the connection"));
      }
      this.pending.clear();
    };
  }

  static open(url: string, timeoutMs: number): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      const timer = setTimeout(() => {
        ws.close();
        reject(new Error(`Cannot connect to Chromium at ${url} within ${timeoutMs} ms`));
      }, timeoutMs);
      ws.onopen = () => {
        clearTimeout(timer);
        resolve(new Connection(ws));
      };
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new Error(`Cannot connect to Chromium at ${url}`));
      };
    });
  }

  send(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
    timeoutMs = 30_000,
  ): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`DevTools: no answer to ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ id, method, params, sessionId }));
    });
  }

  on(method: string, listener: Listener): void {
    const list = this.listeners.get(method) ?? [];
    list.push(listener);
    this.listeners.set(method, list);
  }

  close(): void {
    this.ws.close();
  }
}

/** One tab. */
export class Page {
  /** Errors and warnings the page logged, and uncaught exceptions. */
  readonly messages: PageMessage[] = [];
  /** URLs the page requested (its own document included). */
  readonly requests: string[] = [];

  constructor(private readonly conn: Connection, private readonly sessionId: string) {
    conn.on("Runtime.consoleAPICalled", (p, s) => {
      if (s !== sessionId) return;
      const args = (p.args as { value?: unknown; description?: string }[]) ?? [];
      this.messages.push({
        level: String(p.type),
        text: args.map((a) => a.description ?? String(a.value)).join(" "),
      });
    });
    conn.on("Runtime.exceptionThrown", (p, s) => {
      if (s !== sessionId) return;
      const d = p.exceptionDetails as { text: string; exception?: { description?: string } };
      this.messages.push({ level: "exception", text: d.exception?.description ?? d.text });
    });
    conn.on("Log.entryAdded", (p, s) => {
      if (s !== sessionId) return;
      const e = p.entry as { level: string; text: string };
      this.messages.push({ level: e.level, text: e.text });
    });
    conn.on("Network.requestWillBeSent", (p, s) => {
      if (s !== sessionId) return;
      this.requests.push((p.request as { url: string }).url);
    });
  }

  /** Sends a DevTools command to this tab. */
  send(method: string, params: Record<string, unknown> = {}, timeoutMs?: number) {
    return this.conn.send(method, params, this.sessionId, timeoutMs);
  }

  /** Sets the viewport (CSS pixels). */
  async setViewport(width: number, height: number): Promise<void> {
    await this.send("Emulation.setDeviceMetricsOverride", {
      width,
      height,
      deviceScaleFactor: 1,
      mobile: false,
    });
  }

  /** Opens `url` and waits until `ready` (an expression) is true, at most `timeoutMs`. */
  async goto(url: string, ready = "true", timeoutMs = 60_000): Promise<void> {
    await this.send("Page.navigate", { url }, timeoutMs);
    await this.waitFor(ready, timeoutMs);
  }

  /** Polls `expression` until it is truthy; throws after `timeoutMs`. */
  async waitFor(expression: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try {
        if (await this.evaluate<boolean>(`Boolean(${expression})`)) return;
      } catch {
        // The page may be between documents: try again.
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`The page did not satisfy ${expression} within ${timeoutMs} ms`);
  }

  /** Evaluates `expression` in the page (awaiting a promise) and returns its value as JSON. */
  async evaluate<T>(expression: string, timeoutMs = 30_000): Promise<T> {
    const r = await this.send("Runtime.evaluate", {
      expression,
      returnByValue: true,
      awaitPromise: true,
    }, timeoutMs);
    if (r.exceptionDetails) {
      const d = r.exceptionDetails as { text: string; exception?: { description?: string } };
      throw new Error(`In the page: ${d.exception?.description ?? d.text}`);
    }
    return (r.result as { value: T }).value;
  }

  /** Moves the mouse to (x, y) in CSS pixels of the viewport. */
  async hover(x: number, y: number): Promise<void> {
    await this.send("Input.dispatchMouseEvent", { type: "mouseMoved", x, y });
  }

  /** A PNG of the whole page (or the viewport), written to `path`. */
  async screenshot(path: string, options: { fullPage?: boolean } = {}): Promise<void> {
    const params: Record<string, unknown> = { format: "png" };
    if (options.fullPage) {
      const m = await this.send("Page.getLayoutMetrics");
      const size = m.cssContentSize as { width: number; height: number };
      params.clip = { x: 0, y: 0, width: size.width, height: size.height, scale: 1 };
      params.captureBeyondViewport = true;
    }
    const r = await this.send("Page.captureScreenshot", params, 60_000);
    await Deno.writeFile(path, Uint8Array.from(atob(r.data as string), (c) => c.charCodeAt(0)));
  }
}

/** A headless Chromium process and its DevTools connection. */
export class Chromium {
  private constructor(
    private readonly child: Deno.ChildProcess,
    private readonly conn: Connection,
    private readonly profile: string,
  ) {}

  /**
   * Starts headless Chromium (`binary`, else {@linkcode findChromium}) with a fresh profile.
   * Throws when none is installed or it does not start within `timeoutMs`.
   */
  static async launch(options: { binary?: string; timeoutMs?: number } = {}): Promise<Chromium> {
    const binary = options.binary ?? findChromium();
    if (binary === null) throw new Error("Cannot start Chromium: none is installed");
    const timeoutMs = options.timeoutMs ?? 30_000;
    const profile = await Deno.makeTempDir({ prefix: "livesnap-chromium-" });
    const child = new Deno.Command(binary, {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--mute-audio",
        `--user-data-dir=${profile}`,
        "--remote-debugging-port=0",
        "about:blank",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let url: string;
    try {
      url = await readDevToolsUrl(child.stderr, timeoutMs);
    } catch (e) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
      await child.status;
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      throw e;
    }
    const conn = await Connection.open(url, timeoutMs);
    return new Chromium(child, conn, profile);
  }

  /** Opens a new tab with logging and network events on. */
  async newPage(): Promise<Page> {
    const { targetId } = await this.conn.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.conn.send("Target.attachToTarget", {
      targetId,
      flatten: true,
    });
    const page = new Page(this.conn, sessionId as string);
    await page.send("Runtime.enable");
    await page.send("Log.enable");
    await page.send("Network.enable");
    await page.send("Page.enable");
    return page;
  }

  /** Ends the browser (waits for it at most 10 s, then kills it) and removes its profile. */
  async close(): Promise<void> {
    try {
      await this.conn.send("Browser.close", {}, undefined, 5_000);
    } catch {
      // It may be gone already; the kill below makes sure.
    }
    this.conn.close();
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, 10_000);
    await this.child.status;
    clearTimeout(timer);
    await Deno.remove(this.profile, { recursive: true }).catch(() => {});
  }
}

/** Reads Chromium's standard error until it names its DevTools WebSocket, then drains the rest. */
async function readDevToolsUrl(
  stderr: ReadableStream<Uint8Array>,
  timeoutMs: number,
): Promise<string> {
  const reader = stderr
    .pipeThrough(new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>)
    .getReader();
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `Cannot start Chromium: no DevTools address within ${timeoutMs} ms; it said: ${
              text.slice(-500)
            }`,
          ),
        ),
      timeoutMs,
    );
  });
  const find = (async () => {
    for (;;) {
      const r = await reader.read();
      if (r.done) throw new Error(`Cannot start Chromium: it exited; it said: ${text.slice(-500)}`);
      text += r.value;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(text);
      if (m) return m[1];
    }
  })();
  try {
    return await Promise.race([find, timeout]);
  } finally {
    clearTimeout(timer);
    // Keep reading so that Chromium never blocks on a full pipe; ends with the process.
    (async () => {
      try {
        for (;;) if ((await reader.read()).done) break;
      } catch {
        // The process ended.
      }
    })();
  }
}
