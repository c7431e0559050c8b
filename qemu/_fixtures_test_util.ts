/**
 * Loads the committed QEMU stream fixtures (tests/fixtures/qemu/) for the tests.
 *
 * @module
 */
import { zstdDecompressExact, zstdFrameContentSize } from "../format/_zstd.ts";
import type { StreamKind } from "./_make_stream.ts";

const DIR = new URL("../tests/fixtures/qemu/", import.meta.url);

/** What the fixture maker recorded from QEMU itself for one stream. */
export interface FixtureFacts {
  file: string;
  size: number;
  passes: number;
  normalPages: number;
  zeroPages: number;
  pmemsaveSha256?: string;
}

/** The manifest written by qemu/testdata/make_fixtures.ts. */
export interface FixtureManifest {
  ram: { block: string; address: number; size: number };
  streams: Record<StreamKind, FixtureFacts>;
}

/** The manifest. */
export async function loadManifest(): Promise<FixtureManifest> {
  return JSON.parse(await Deno.readTextFile(new URL("manifest.json", DIR)));
}

/** One fixture stream, decompressed. */
export async function loadFixture(kind: StreamKind): Promise<Uint8Array> {
  const z = await Deno.readFile(new URL(`${kind}.qemu.zst`, DIR));
  const size = zstdFrameContentSize(z);
  const out = typeof size === "number" ? zstdDecompressExact(z, size) : size;
  if (typeof out === "string") throw new Error(`Cannot read fixture ${kind}: ${out}`);
  return out.slice();
}

/** SHA-256 in lowercase hex. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}
