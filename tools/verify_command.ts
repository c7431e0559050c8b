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
import type { VerifyResult } from "./verify.ts";

const USAGE = `Usage: livesnap verify [options] FILE

Reads every byte of a .lsnap snapshot (FILE, an http:// or https:// URL read with Range
requests, or - for standard input) and checks its framing,
every record's CRC32C, page numbers against the regions, page data, device sections, the index
against the records, the trailer, the file digest, the content digest and that the file is
complete. It does not stop at the first problem: each one is listed with its record and byte
offset.

Options:
  --content DIGEST   also check that the file holds this content digest (64 hex digits), e.g.
                     the one 'livesnap run --stop-at N --digest' printed
  --max-errors N     stop after N problems (default 100)
  --json             print one JSON object instead of text
  --help             show this help

Examples:
  livesnap verify vm.lsnap
  livesnap verify --content 724818e7...aa83 vm.lsnap
  ssh host cat vm.lsnap | livesnap verify -
  livesnap verify https://bucket.example.com/snaps/vm.lsnap
  livesnap verify --max-errors 1000 --json damaged.lsnap | jq '.problems[].message'

Exit status: 0 intact, 1 damaged, incomplete or not the expected content, 2 usage or I/O error.`;

function text(name: string, r: VerifyResult, color: boolean): string {
  const c = palette(color);
  if (r.ok) {
    const expected = r.content?.matches ? ", the expected content" : "";
    return `${name}: ${c.green("OK")} (${r.records} records, ${
      formatBytes(r.bytes)
    }, content ${r.digests.content}${expected})`;
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
    boolean: ["json"],
    string: ["content", "max-errors"],
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
