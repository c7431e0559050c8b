/**
 * `livesnap flatten D.lsnap [--parent FILE]... --out OUT`: the front end of
 * {@linkcode flattenSnapshot}.
 *
 * @module
 */
import {
  prestartReadBackWorker,
  releaseReadBackWorker,
} from "../format/_read_back_worker_spare.ts";
import { parseCommand } from "./_command.ts";
import { formatBytes } from "./_term.ts";

const USAGE = `Usage: livesnap flatten [options] DIFF --out OUT

Writes one full snapshot (OUT, or - for standard output) of the state that DIFF and its chain
of parents stand for. The parents are found by the name each diff records, in the diff's
directory, or among the --parent files (matched by their file digest, whatever their name).
Every link is checked first (each parent's file digest and content digest as the diff records
them, one machine, one chain, no cycle), so a missing or swapped parent is refused before
anything is written.

The compressed page records are copied as they are, never recompressed: a record is left out
when later files hold all of its pages. The output is read back as it is written and appears at
OUT only when its content digest is the one DIFF declares, which is also the digest of a full
snapshot taken at that instant. OUT may not be one of the chain's files (compared by inode, so
another name of the same file is refused too); on failure nothing is left at OUT.

Options:
  --out OUT        the output file, or - for standard output (required)
  --parent FILE    a parent file to use (repeatable), for parents renamed or kept elsewhere
  --json           print a JSON summary instead of text
  --help           show this help

Examples:
  livesnap run guest.elf --snapshot-at 5000000 --snapshot-at 6000000 --out 's-{n}.lsnap' --incremental
  livesnap flatten s-1.lsnap --out full.lsnap
  livesnap flatten s-9.lsnap --parent /archive/s-0.lsnap --out full.lsnap
  livesnap flatten s-3.lsnap --out - | ssh host 'cat > vm.lsnap'
  livesnap verify --content "$(livesnap inspect --json s-3.lsnap | jq -r .contentDigest)" full.lsnap

Exit status: 0 written and checked, 1 the chain is refused, damaged or does not read back,
2 usage or I/O error.`;

/** Entry point; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  const command = parseCommand(args, {
    name: "livesnap flatten",
    usage: USAGE,
    boolean: ["json"],
    string: ["out"],
    list: ["parent"],
  });
  if (typeof command === "number") return command;
  const { options: flags, positional: files, usageError } = command;
  if (files.length !== 1) return usageError("expected one DIFF");
  if (flags.out === undefined) return usageError("--out OUT is required");
  // The read-back's worker loads its modules while this thread loads the rest and opens the
  // chain (on a 2-core machine the other core is idle meanwhile); stopped if no read-back takes it.
  prestartReadBackWorker();
  const [{ ChainError }, { LsnapError }, { FlattenError }, { flattenSnapshot }] = await Promise.all(
    [
      import("../format/chain.ts"),
      import("../format/errors.ts"),
      import("../format/flatten.ts"),
      import("./flatten.ts"),
    ],
  ).catch((e) => {
    releaseReadBackWorker();
    throw e;
  });
  try {
    const r = await flattenSnapshot({ path: files[0], parents: flags.parent, out: flags.out });
    // With --out - the snapshot is on standard output: the summary goes to standard error.
    const print = flags.out === "-" ? console.error : console.log;
    if (flags.json) {
      print(JSON.stringify(
        {
          out: flags.out,
          chain: r.chain,
          bytes: r.bytes,
          records: r.records,
          copiedRecords: r.copiedRecords,
          skippedRecords: r.skippedRecords,
          supersededEntries: r.supersededEntries,
          contentDigest: r.contentDigestHex,
        },
        null,
        2,
      ));
    } else {
      print(
        `${flags.out}: ${formatBytes(r.bytes)}, ${r.chain.length} files flattened ` +
          `(${r.copiedRecords} page records copied, ${r.skippedRecords} left out), ` +
          `content ${r.contentDigestHex}`,
      );
    }
    return 0;
  } catch (e) {
    if (e instanceof ChainError || e instanceof LsnapError || e instanceof FlattenError) {
      console.error(`livesnap flatten: ${e.message}`);
      return 1;
    }
    console.error(`livesnap flatten: Cannot flatten '${files[0]}': ${(e as Error).message}`);
    return 2;
  } finally {
    releaseReadBackWorker();
  }
}
