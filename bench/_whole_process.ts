/**
 * Whole-process timing for the benchmarks that compare a `livesnap` command with a native tool
 * (`bench/write_bench.ts`, `bench/verify_bench.ts`): each contender is a shell command run under
 * `/usr/bin/time` (wall seconds, and CPU seconds as user + system of the command and its
 * children), the contenders in turn (A B C A B C ...) so that a change in the machine's load moves
 * neighbouring runs alike, and every ratio taken pair by pair, between runs of the same round.
 *
 * @module
 */

/** One command in the rotation. */
export interface Contender {
  /** As the table names it. */
  name: string;
  /** A shell command (`sh -c`). */
  command: string;
  /**
   * A shell command run before each run of `command`, outside the timing (for example removing
   * the previous run's output, whose deletion is the file system's work, not the command's).
   */
  setup?: string;
  /** Wall seconds of each measured run, in round order. */
  wall: number[];
  /** CPU seconds (user + system) of each measured run, in round order. */
  cpu: number[];
}

/** A contender with no runs yet. */
export function contender(name: string, command: string, setup?: string): Contender {
  return { name, command, setup, wall: [], cpu: [] };
}

/** Runs `setup`, untimed; throws when it fails. */
async function prepare(c: Contender): Promise<void> {
  if (c.setup === undefined) return;
  const o = await new Deno.Command("sh", { args: ["-c", c.setup], stdout: "null" }).output();
  if (!o.success) throw new Error(`Cannot prepare benchmark: ${c.setup} failed`);
}

/** Runs `command` under /usr/bin/time; throws with its standard error when it fails. */
export async function timed(command: string): Promise<{ wall: number; cpu: number }> {
  const o = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "%e %U %S", "sh", "-c", command],
    stdout: "null",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(o.stderr).trim().split("\n");
  if (!o.success) throw new Error(`Cannot run benchmark: ${command} failed: ${err.join("\n")}`);
  const [wall, user, sys] = err[err.length - 1].split(" ").map(Number);
  return { wall, cpu: user + sys };
}

/**
 * One unmeasured round (caches of every program), then `rounds` measured rounds of every
 * contender in turn, each run after its contender's `setup`; each run is reported on standard
 * error as it ends.
 */
export async function rotate(contenders: Contender[], rounds: number): Promise<void> {
  for (const c of contenders) {
    await prepare(c);
    await timed(c.command);
  }
  for (let r = 0; r < rounds; r++) {
    for (const c of contenders) {
      await prepare(c);
      const t = await timed(c.command);
      c.wall.push(t.wall);
      c.cpu.push(t.cpu);
      console.error(`${c.name}: ${t.wall.toFixed(2)} s wall, ${t.cpu.toFixed(2)} s CPU`);
    }
  }
}

/** The median (the mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** "median (min-max)" with `digits` decimals, `suffix` after each number. */
export function spread(xs: number[], digits: number, suffix = ""): string {
  const f = (x: number) => `${x.toFixed(digits)}${suffix}`;
  return `${f(median(xs))} (${f(Math.min(...xs))}-${f(Math.max(...xs))})`;
}

/**
 * How many times faster `c` is than `baseline`, round by round: the baseline's seconds over
 * `c`'s, by the wall clock and by CPU time.
 */
export function speedRatios(
  c: Contender,
  baseline: Contender,
): { wall: number[]; cpu: number[] } {
  return {
    wall: c.wall.map((w, i) => baseline.wall[i] / w),
    cpu: c.cpu.map((t, i) => baseline.cpu[i] / t),
  };
}

/** The 1, 5 and 15 minute load averages, as /proc/loadavg gives them ("?" elsewhere). */
export async function loadAverage(): Promise<string> {
  try {
    return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  } catch {
    return "? ? ?";
  }
}

/** The command that runs this checkout's (or another checkout's) `livesnap`, as users run it. */
export function livesnapCommand(tree: string, args: string): string {
  return `exec '${tree}/bin/livesnap' ${args}`;
}
