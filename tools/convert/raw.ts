/**
 * The `raw` input and output formats of `convert`: flat memory images, the form `dd`, QEMU's
 * `pmemsave` and most forensic tools use. `--from raw` takes one image per region
 * (`--region NAME:BASE:FILE`); `--to raw` writes one region (`--region NAME`).
 *
 * @module
 */
import { isZero } from "../../format/_bytes.ts";
import { ContentDigestBuilder } from "../../format/content_digest.ts";
import { type MachineDescription, type Region, validateDescription } from "../../format/header.ts";
import { createOutput, readAll } from "../_io.ts";
import { PageStore } from "../_page_store.ts";
import { placePages, streamRegions } from "./_flat_image.ts";
import { ConvertError } from "./error.ts";
import type { ConvertContext, OutputSummary, SnapshotSource } from "./types.ts";

/** The part of `Deno.FsFile` that {@linkcode readFully} uses. */
interface Readable {
  read(p: Uint8Array): Promise<number | null>;
  close(): void;
}

function memoryFile(bytes: Uint8Array): Readable {
  let at = 0;
  return {
    read(p) {
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, bytes.length - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
    close() {},
  };
}

async function readFully(file: Readable, buf: Uint8Array): Promise<number> {
  let n = 0;
  while (n < buf.length) {
    const k = await file.read(buf.subarray(n));
    if (k === null) break;
    n += k;
  }
  return n;
}

/** `--from raw`: flat memory images, one per `--region NAME:BASE:FILE`. */
export async function openRaw(_input: string, ctx: ConvertContext): Promise<SnapshotSource> {
  const specs = ctx.options.rawRegions ?? [];
  if (specs.length === 0) {
    throw new ConvertError("Cannot convert from raw: give at least one --region NAME:BASE:FILE");
  }
  const pageSize = ctx.options.pageSize ?? 4096;
  if (specs.filter((s) => s.path === "-").length > 1) {
    throw new ConvertError("Cannot convert from raw: only one --region can read standard input");
  }
  // An image on standard input has no size until it ends: it is read whole first.
  let stdinImage: Uint8Array | undefined;
  if (specs.some((s) => s.path === "-")) stdinImage = await readAll(Deno.stdin.readable);
  const regions: Region[] = [];
  for (const s of specs) {
    let size: number;
    try {
      size = s.path === "-" ? stdinImage!.length : (await Deno.stat(s.path)).size;
    } catch (e) {
      throw new ConvertError(`Cannot open ${s.path}: ${(e as Error).message}`, { cause: e });
    }
    if (size === 0) throw new ConvertError(`Cannot convert from raw: ${s.path} is empty`);
    const padded = Math.ceil(size / pageSize) * pageSize;
    if (padded !== size) {
      ctx.warn(`${s.path}: ${size} bytes is not a multiple of the page size; padded with zeros`);
    }
    regions.push({ name: s.name, base: s.base, size: padded, pageSize });
  }
  const description: MachineDescription = {
    regions,
    creator: "livesnap convert --from raw",
    createdAt: Date.now(),
  };
  let digest: ContentDigestBuilder;
  try {
    digest = new ContentDigestBuilder(description);
    // The writer validates too, but a raw user deserves the message before any file is made.
    validateDescription(description);
  } catch (e) {
    throw new ConvertError(`Cannot convert from raw: ${(e as Error).message}`, { cause: e });
  }
  let done = false;
  return {
    name: specs.map((s) => s.path).join(", "),
    description,
    async *items() {
      const chunkPages = Math.max(1, Math.floor((1 << 20) / pageSize));
      const buf = new Uint8Array(chunkPages * pageSize);
      for (let r = 0; r < specs.length; r++) {
        const file = specs[r].path === "-"
          ? memoryFile(stdinImage!)
          : await Deno.open(specs[r].path, { read: true });
        try {
          for (let first = 0; first * pageSize < regions[r].size; first += chunkPages) {
            const want = Math.min(buf.length, regions[r].size - first * pageSize);
            const got = await readFully(file, buf.subarray(0, want));
            ctx.progress.add(got);
            buf.fill(0, got, want);
            // Zero pages stay absent: absent and zero are the same state (FORMAT.md §10).
            const n = want / pageSize;
            let i = 0;
            while (i < n) {
              if (isZero(buf.subarray(i * pageSize, (i + 1) * pageSize))) {
                i++;
                continue;
              }
              let j = i + 1;
              while (j < n && !isZero(buf.subarray(j * pageSize, (j + 1) * pageSize))) j++;
              // A view, not a copy: every consumer copies or writes a page before it asks for
              // the next item (see SourceItem), and fresh memory costs a page fault per 4 KiB.
              const data = buf.subarray(i * pageSize, j * pageSize);
              const pages = new Uint32Array(j - i);
              for (let k = 0; k < pages.length; k++) pages[k] = first + i + k;
              digest.setPageData(r, pages, data);
              yield { kind: "pages", region: r, pages, data };
              i = j;
            }
          }
        } finally {
          file.close();
        }
      }
      done = true;
    },
    contentDigest: async () => (done ? await digest.digest() : null),
    close() {},
  };
}

function pickRegion(description: MachineDescription, name: string | undefined): number {
  const names = description.regions.map((r) => r.name);
  if (name === undefined) {
    if (names.length === 1) return 0;
    throw new ConvertError(
      `Cannot convert to raw: name one region with --region (one of: ${names.join(", ")})`,
    );
  }
  const i = names.indexOf(name);
  if (i < 0) {
    throw new ConvertError(
      `Cannot convert to raw: no region '${name}' (regions: ${names.join(", ")})`,
    );
  }
  return i;
}

/** `--to raw`: one region as a flat image (`--region NAME`). */
export async function writeRawImage(
  source: SnapshotSource,
  output: string,
  ctx: ConvertContext,
): Promise<OutputSummary> {
  const region = pickRegion(source.description, ctx.options.region);
  const size = source.description.regions[region].size;
  const out = await createOutput(output);
  try {
    let pages: number;
    if (out.file !== undefined) {
      await out.file.truncate(size);
      pages = await placePages(source, out.file, new Set([region]), () => 0, () => {});
    } else {
      const store = new PageStore(source.description, new Set([region]));
      for await (const item of source.items()) {
        if (item.kind === "pages") store.put(item.region, item.pages, item.data);
      }
      pages = await streamRegions(store, out, [region], () => 0);
    }
    await out.commit();
    return { bytes: size, pages, devices: 0, contentDigest: null, digestChecked: false };
  } catch (e) {
    await out.abort();
    throw e;
  }
}
