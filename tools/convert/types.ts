/**
 * What `convert`'s formats share: a {@linkcode SnapshotSource} that an input format opens and an
 * output format consumes, the options of a conversion and what it reports. A format module
 * imports this file (and `error.ts`, `read_back.ts`), never another format; only `registry.ts`
 * imports the formats.
 *
 * @module
 */
import type { DeviceSection } from "../../format/device_section.ts";
import type { MachineDescription } from "../../format/header.ts";

/** One item of a snapshot, in the order a source produces them. */
export type SourceItem =
  | {
    kind: "pages";
    region: number;
    /** Page numbers in the region. */
    pages: Uint32Array;
    /**
     * `pages.length × pageSize` bytes, or null when every page is zero. It may be a view of a
     * buffer the source reuses once the next item is asked for: a consumer copies what it keeps.
     */
    data: Uint8Array | null;
  }
  | { kind: "device"; device: DeviceSection }
  | { kind: "extension"; type: number; payload: Uint8Array };

/** What an input format yields: the machine description, then items; later items win. */
export interface SnapshotSource {
  /** The input's name for messages. */
  readonly name: string;
  /** The regions of the machine the items belong to. */
  readonly description: MachineDescription;
  /** The items, in input order. Throws on malformed input. */
  items(): AsyncIterable<SourceItem>;
  /**
   * After `items()` is exhausted: the content digest of the state the input holds (declared by
   * an `.lsnap` trailer and checked by the reader, or computed from raw images), or null.
   */
  contentDigest(): Promise<Uint8Array | null>;
  /** Releases the input. */
  close(): void;
}

/** How pages are to be stored in an `.lsnap` output. */
export interface CompressionChoice {
  /** `raw` stores pages as they are (`--compress none`). */
  codec: "raw" | "zstd";
  /** zstd level (1..19), when codec is zstd. */
  level?: number;
}

/** One flat memory image for `convert --from raw`. */
export interface RawRegionSpec {
  /** The region's name. */
  name: string;
  /** Its guest-physical base address. */
  base: number;
  /** The image file; `-` is standard input. */
  path: string;
}

/** Options of `convertSnapshot`. */
export interface ConvertOptions {
  /**
   * Input format: "lsnap", "raw", "qemu", or a registered one. Default: "qemu" for a file that
   * starts with a QEMU stream's magic, else "lsnap".
   */
  from?: string;
  /** Output format: "lsnap" (default), "raw", "elf-core", "qemu", or a registered one. */
  to?: string;
  /** Page storage of an `.lsnap` output (default zstd level 1). */
  compress?: CompressionChoice;
  /** Uncompressed bytes per PAGES record of an `.lsnap` output (default: the writer's, 1 MiB; at most 16 MiB). */
  batchBytes?: number;
  /** Compression workers of an `.lsnap` output (default: the writer's; 0 compresses in this thread). */
  workers?: number;
  /** Write pages in address order (each page once). */
  addressOrder?: boolean;
  /** Keep only the last occurrence of each page and device section. */
  dropDuplicates?: boolean;
  /** Write an INDEX record (default true; this is how a missing index is rebuilt). */
  index?: boolean;
  /** `--to raw`: the region to write (may be omitted when the snapshot has one region). */
  region?: string;
  /** `--from raw`: the flat images and where they live. */
  rawRegions?: RawRegionSpec[];
  /**
   * `--from raw`: page size of the regions (default 4096); `--from qemu`: the target page size
   * when the stream does not state it (default 4096).
   */
  pageSize?: number;
  /**
   * `--from qemu`: guest-physical base address of RAM blocks by name (the riscv `virt` board's
   * are known; other blocks are placed above 1 TiB).
   */
  bases?: Record<string, number>;
  /** Show progress on standard error (default: when it is a terminal). */
  progress?: boolean;
  /** Receives warnings (default: collected in the result only). */
  warn?: (message: string) => void;
  /**
   * Read the output back in a worker thread (true) or in this thread (false). Default: in a
   * worker when the input is 32 MiB or more, or of unknown size (a pipe).
   */
  checkInWorker?: boolean;
}

/** What `convertSnapshot` reports. */
export interface ConvertResult {
  /** The input format used (given, or recognised). */
  from: string;
  /** The output format. */
  to: string;
  /** The output path, as given. */
  output: string;
  /** Bytes read from the input(s). */
  bytesIn: number;
  /** Bytes written. */
  bytesOut: number;
  /** Page occurrences written (an `.lsnap` output) or page slots filled (raw, ELF). */
  pages: number;
  /** Device sections written. */
  devices: number;
  /** The content digest of the output (hex) for state-keeping conversions, else null. */
  contentDigest: string | null;
  /** True when the output's content digest was recomputed and equals the input's. */
  digestChecked: boolean;
  /** The warnings given meanwhile (also sent to `options.warn`). */
  warnings: string[];
}

/** What a conversion hands its formats. */
export interface ConvertContext {
  /** The options of the conversion, as given. */
  options: ConvertOptions;
  /** Bytes of input, when known. */
  inputSize: number | undefined;
  /** Counts the input bytes an input format reads (they drive the progress display). */
  progress: { add(bytes: number): void };
  /** Reports a warning (printed by the command, collected in the result). */
  warn(message: string): void;
}

/** An input format (`--from NAME`): opens a source. */
export interface InputFormat {
  /** One line for `convert --help`. */
  summary: string;
  /** Opens `input` (a path; `-` is standard input); throws on an input it cannot read. */
  open(input: string, ctx: ConvertContext): Promise<SnapshotSource>;
  /**
   * True when the regular file at `path` is in this format, so that it is read as such without
   * `--from`. Never asked about a pipe: the bytes looked at would be lost to the input format.
   */
  recognise?(path: string): Promise<boolean>;
}

/** What an output format reports. */
export interface OutputSummary {
  /** Bytes written. */
  bytes: number;
  /** Pages written (see {@linkcode ConvertResult.pages}). */
  pages: number;
  /** Device sections written. */
  devices: number;
  /** The output's content digest, for an output that keeps the state; else null. */
  contentDigest: Uint8Array | null;
  /** True when the output was read back and its digest equals the input's. */
  digestChecked: boolean;
}

/** An output format (`--to NAME`): consumes a source. */
export interface OutputFormat {
  /** One line for `convert --help`. */
  summary: string;
  /** True when the output holds the whole state (its content digest is checked). */
  keepsState: boolean;
  /** Writes `source` to `output` (a path; `-` is standard output); leaves nothing on failure. */
  write(source: SnapshotSource, output: string, ctx: ConvertContext): Promise<OutputSummary>;
}
