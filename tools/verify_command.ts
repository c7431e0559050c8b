/**
 * `livesnap verify FILE`: check a snapshot's integrity and completeness; the front end of
 * {@linkcode verifySnapshot}.
 *
 * @module
 */
import { startPageDigestPool } from "../format/page_digest_pool.ts";
import { parseCount } from "./_args.ts";
import { parseCommand } from "./_command.ts";
import { openInput } from "./_io.ts";
import { SourceError } from "../format/random_access_source.ts";
import { colorEnabled, createProgress, formatBytes, palette } from "./_term.ts";
// Types only: verify.ts (and its WebAssembly) loads after the page workers have started.
import type { VerifyChainResult, VerifyResult } from "./verify.ts";

const USAGE = `Usage: livesnap verify [options] FILE

Reads every byte of a .lsnap snapshot (FILE, an http:// or https:// URL read with Range
requests, or - for standard input) and checks its framing,
every record's CRC32C, page numbers against the regions, page data, device sections, the index
against the records, the trailer, the file digest, the content digest and that the file is
complete. It does not stop at the first problem: each one is listed with its record and byte
offset.

A diff (a snapshot of the changes since a parent, written with --incremental) is checked on its
own in the same way, except its content digest: that is the digest of the whole state, parent
and changes, so it is checked only with --chain, which finds the diff's parents (beside it, by
the names it records, or among the --parent files), checks every link (each parent's file and
content digest as the child records them, one machine, one chain) and verifies every file of
the chain, the full snapshot first, each diff's content digest over its parent's state.

Options:
  --content DIGEST   also check that the file holds this content digest (64 hex digits), e.g.
                     the one 'livesnap run --stop-at N --digest' printed
  --max-errors N     stop after N problems (default 100)
  --chain            FILE is the newest of a chain: verify every file and every link
  --parent FILE      with --chain: a parent file to use (repeatable), matched by file digest
  --json             print one JSON object instead of text
  --help             show this help

Examples:
  livesnap verify vm.lsnap
  livesnap verify --content 724818e7...aa83 vm.lsnap
  ssh host cat vm.lsnap | livesnap verify -
  livesnap verify https://bucket.example.com/snaps/vm.lsnap
  livesnap verify --max-errors 1000 --json damaged.lsnap | jq '.problems[].message'
  livesnap verify s-3.lsnap                          # a diff on its own
  livesnap verify --chain s-3.lsnap                  # and its chain: s-2, s-1, s-0 beside it
  livesnap verify --chain --parent /archive/s-0.lsnap s-3.lsnap

Exit status: 0 intact, 1 damaged, incomplete, not the expected content, or (--chain) a link
refused or not proved, 2 usage or I/O error.`;

function text(name: string, r: VerifyResult, color: boolean): string {
  const c = palette(color);
  if (r.ok) {
    const expected = r.content?.matches ? ", the expected content" : "";
    const content = r.diff !== null && !r.diff.contentChecked
      ? `a diff on ${r.diff.parent} at depth ${r.diff.depth}: content digest not checked ` +
        "without its chain (--chain)"
      : `content ${r.digests.content}${expected}`;
    return `${name}: ${c.green("OK")} (${r.records} records, ${formatBytes(r.bytes)}, ${content})`;
  }
  const lines = [`${name}: ${c.red("FAILED")}: ${r.error?.message ?? "incomplete"}`];
  for (const p of r.problems.slice(1)) lines.push(`  ${p.message}`);
  const count = r.problems.length;
  lines.push(
    `${count} problem${count === 1 ? "" : "s"}${
      r.stoppedEarly ? " (stopped there; raise --max-errors to see more)" : ""
    }` +
      `; ${
        r.stoppedEarly
          ? "the rest of the file was not checked"
          : r.complete
          ? "the file reaches its footer"
          : "the file is incomplete"
      }`,
  );
  return lines.join("\n");
}

/** Entry point; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  const command = parseCommand(args, {
    name: "livesnap verify",
    usage: USAGE,
    boolean: ["json", "chain"],
    string: ["content", "max-errors"],
    list: ["parent"],
  });
  if (typeof command === "number") return command;
  const { options: flags, positional: files, usageError } = command;
  if (files.length !== 1) return usageError("expected one FILE");
  let maxErrors: number | undefined;
  try {
    if (flags["max-errors"] !== undefined) {
      maxErrors = parseCount(flags["max-errors"], "--max-errors", { min: 1 });
    }
  } catch (e) {
    return usageError(e);
  }
  if (flags.content !== undefined && !/^[0-9a-fA-F]{64}$/.test(flags.content)) {
    return usageError(`Cannot parse --content: '${flags.content}' is not 64 hex digits`);
  }
  if (flags.parent.length > 0 && !flags.chain) return usageError("--parent needs --chain");
  if (flags.chain) {
    if (files[0] === "-") return usageError("--chain needs a file, not standard input");
    return await chain(files[0], flags, maxErrors);
  }
  let result: VerifyResult;
  let progress;
  try {
    const input = await openInput(files[0]);
    // A pipe may be long: let threads hash its pages too.
    const sizeHint = input.size ?? Infinity;
    const pool = startPageDigestPool({ sizeHint });
    let verify: typeof import("./verify.ts");
    try {
      verify = await import("./verify.ts");
    } catch (e) {
      pool?.close();
      throw e;
    }
    progress = createProgress({ label: "verify", total: input.size });
    const p = progress;
    try {
      result = await verify.verifySnapshot(input.readable, {
        maxErrors,
        content: flags.content,
        onBytes: (n) => p.add(n),
        sizeHint,
        pool,
      });
    } finally {
      p.done();
      input.close();
    }
  } catch (e) {
    // A source's errors already say what they could not read, and where.
    console.error(
      `livesnap verify: ${
        e instanceof SourceError ? e.message : `Cannot read '${files[0]}': ${(e as Error).message}`
      }`,
    );
    return 2;
  }
  if (flags.json) console.log(JSON.stringify(result, null, 2));
  else console.log(text(files[0], result, colorEnabled(Deno.stdout)));
  return result.ok ? 0 : 1;
}

/** `verify --chain`: every file of the chain and every link. */
async function chain(
  path: string,
  flags: { json: boolean; content: string | undefined; parent: string[] },
  maxErrors: number | undefined,
): Promise<number> {
  let r: VerifyChainResult;
  try {
    const { verifyChain } = await import("./verify.ts");
    r = await verifyChain(path, { parents: flags.parent, content: flags.content, maxErrors });
  } catch (e) {
    console.error(`livesnap verify: Cannot read the chain of '${path}': ${(e as Error).message}`);
    return 2;
  }
  if (flags.json) {
    console.log(JSON.stringify(r, null, 2));
    return r.ok ? 0 : 1;
  }
  const color = colorEnabled(Deno.stdout);
  for (const f of r.files) console.log(text(f.path, f, color));
  const c = palette(color);
  if (r.ok) {
    const expected = r.content?.matches ? ", the expected content" : "";
    console.log(
      `chain of ${r.files.length} files: ${
        c.green("OK")
      }, every link proved, content ${r.digests.content}${expected}`,
    );
    return 0;
  }
  console.log(`chain: ${c.red("FAILED")}: ${r.chainError?.message ?? "not the expected content"}`);
  return 1;
}
