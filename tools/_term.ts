/**
 * Terminal helpers shared by the commands: sizes and rates in human units, colour that honours
 * `NO_COLOR`, and a progress line on standard error that appears only when standard error is a
 * terminal (so logs and pipes stay clean).
 *
 * @module
 */

const BINARY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"] as const;

/**
 * Formats a byte count in binary units with three significant digits at most.
 *
 * @example
 * ```ts
 * import { formatBytes } from "./_term.ts";
 * formatBytes(1536); // "1.50 KiB"
 * formatBytes(1024 ** 3); // "1.00 GiB"
 * ```
 */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const sign = bytes < 0 ? "-" : "";
  let value = Math.abs(bytes);
  if (value < 1024) return `${sign}${value} B`;
  let unit = 0;
  while (value >= 1024 && unit < BINARY_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${sign}${value.toFixed(digits)} ${BINARY_UNITS[unit]}`;
}

/** Formats a rate in bytes per second, e.g. "512 MiB/s". */
export function formatRate(bytesPerSecond: number): string {
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond < 0) return "? B/s";
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

/** Formats a duration in seconds as "42s", "3m05s" or "1h02m". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** Formats a ratio such as a compression ratio: "3.21x". */
export function formatRatio(ratio: number): string {
  return Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : "n/a";
}

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    // Without --allow-env we cannot know; treat the variable as unset.
    return undefined;
  }
}

/**
 * Whether colour may be used on a stream: never when `NO_COLOR` is set to a non-empty value
 * (https://no-color.org), never when the stream is not a terminal.
 */
export function colorEnabled(stream: { isTerminal(): boolean } = Deno.stdout): boolean {
  const noColor = readEnv("NO_COLOR");
  if (noColor !== undefined && noColor !== "") return false;
  try {
    return stream.isTerminal();
  } catch {
    return false;
  }
}

/** A small palette that prints plain text when colour is off. */
export interface Palette {
  bold(text: string): string;
  dim(text: string): string;
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
}

/** Returns a palette that wraps text in ANSI codes only when `enabled`. */
export function palette(enabled: boolean): Palette {
  const wrap = (open: number, close: number) => (text: string) =>
    enabled ? `\x1b[${open}m${text}\x1b[${close}m` : text;
  return {
    bold: wrap(1, 22),
    dim: wrap(2, 22),
    red: wrap(31, 39),
    green: wrap(32, 39),
    yellow: wrap(33, 39),
  };
}

/** Options of {@linkcode createProgress}. */
export interface ProgressOptions {
  /** Shown before the figures, e.g. "verify". */
  label: string;
  /** Total bytes expected, when known; enables the percentage and the time left. */
  total?: number;
  /** Print at all? Default: only when standard error is a terminal. */
  enabled?: boolean;
  /** Where the line goes; default: standard error. */
  write?: (text: string) => void;
  /** Clock in milliseconds; default `performance.now`. */
  now?: () => number;
  /** Minimum milliseconds between two redraws; default 100. */
  intervalMs?: number;
}

/** A progress line: feed it byte counts, call `done()` at the end. */
export interface Progress {
  /** Adds `bytes` to the count done so far. */
  add(bytes: number): void;
  /** Sets the count done so far. */
  set(bytes: number): void;
  /** Erases the line (when one was drawn). */
  done(): void;
  /** Bytes counted so far. */
  readonly bytes: number;
}

function stderrIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

const encoder = new TextEncoder();

/**
 * Creates a progress reporter showing bytes done, rate and time left on standard error. It draws
 * nothing unless standard error is a terminal (or `enabled` says so), so that scripts and pipes
 * never see it.
 *
 * @example
 * ```ts
 * import { createProgress } from "./_term.ts";
 * const lines: string[] = [];
 * const p = createProgress({ label: "copy", total: 100, enabled: true, write: (t) => lines.push(t), intervalMs: 0 });
 * p.add(50);
 * p.done();
 * ```
 */
export function createProgress(options: ProgressOptions): Progress {
  const enabled = options.enabled ?? stderrIsTerminal();
  const write = options.write ?? ((text: string) => Deno.stderr.writeSync(encoder.encode(text)));
  const now = options.now ?? (() => performance.now());
  const interval = options.intervalMs ?? 100;
  const start = now();
  let last = -Infinity;
  let bytes = 0;
  let drawn = false;

  const draw = () => {
    const t = now();
    if (t - last < interval) return;
    last = t;
    const elapsed = (t - start) / 1000;
    const rate = elapsed > 0 ? bytes / elapsed : 0;
    const parts = [`${options.label}: ${formatBytes(bytes)}`];
    if (options.total !== undefined && options.total > 0) {
      const pct = Math.min(100, (bytes / options.total) * 100);
      parts[0] += ` of ${formatBytes(options.total)} (${pct.toFixed(0)}%)`;
    }
    parts.push(formatRate(rate));
    if (options.total !== undefined && rate > 0 && bytes <= options.total) {
      parts.push(`${formatDuration((options.total - bytes) / rate)} left`);
    }
    write(`\r\x1b[2K${parts.join(", ")}`);
    drawn = true;
  };

  return {
    add(n: number) {
      bytes += n;
      if (enabled) draw();
    },
    set(n: number) {
      bytes = n;
      if (enabled) draw();
    },
    done() {
      if (enabled && drawn) write("\r\x1b[2K");
      drawn = false;
    },
    get bytes() {
      return bytes;
    },
  };
}
