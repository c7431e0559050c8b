/**
 * Loads the committed QEMU stream fixtures (tests/fixtures/qemu/) for the tests.
 *
 * @module
 */
import { decompress, init } from "@bokuweb/zstd-wasm";
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

let ready: Promise<void> | undefined;

/** The manifest. */
export async function loadManifest(): Promise<FixtureManifest> {
  return JSON.parse(await Deno.readTextFile(new URL("manifest.json", DIR)));
}

/** One fixture stream, decompressed. */
export async function loadFixture(kind: StreamKind): Promise<Uint8Array> {
  ready ??= init();
  await ready;
  const z = await Deno.readFile(new URL(`${kind}.qemu.zst`, DIR));
  return new Uint8Array(decompress(z));
}

/** SHA-256 in lowercase hex. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}
