/**
 * Opening a {@linkcode RandomAccessSource} from what a user types: a path, or an `http://` or
 * `https://` URL.
 *
 * @module
 */
import { FileSource } from "./file_source.ts";
import { HttpSource, type HttpSourceOptions } from "./http_source.ts";
import type { RandomAccessSource, SourceIdentity } from "./random_access_source.ts";

/** Options of {@linkcode openSource}. */
export interface OpenSourceOptions {
  /** Options for a URL (concurrency, timeouts, retries, headers). */
  http?: HttpSourceOptions;
  /**
   * The `identity` of a source opened earlier on the same input (for example by the thread that
   * hands this one the work): the open fails with `SourceChangedError` unless the file is that
   * same version.
   */
  expect?: SourceIdentity;
}

/** True when `input` is an http(s) URL rather than a path. */
export function isHttpUrl(input: string | URL): boolean {
  if (input instanceof URL) return input.protocol === "http:" || input.protocol === "https:";
  return /^https?:\/\//i.test(input);
}

/**
 * Opens `input`: an http(s) URL as an {@linkcode HttpSource}, anything else (a path, or a
 * `file:` URL) as a {@linkcode FileSource}. `-` and pipes are refused with
 * `NotRandomAccessError`.
 *
 * @example
 * ```ts
 * import { assertEquals, assertRejects } from "@std/assert/mod.js";
 * import { openSource } from "./open_source.ts";
 * import { NotRandomAccessError } from "./random_access_source.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array(10));
 * const source = await openSource(path);
 * assertEquals(source.size, 10);
 * source.close();
 * await assertRejects(() => openSource("-"), NotRandomAccessError, "it is a pipe");
 * await Deno.remove(path);
 * ```
 */
export async function openSource(
  input: string | URL,
  options: OpenSourceOptions = {},
): Promise<RandomAccessSource> {
  if (isHttpUrl(input)) {
    return await HttpSource.open(input, { expect: options.expect, ...options.http });
  }
  if (input instanceof URL) {
    if (input.protocol !== "file:") {
      throw new TypeError(`Cannot open ${input.href}: only http, https and file URLs are read`);
    }
    return await FileSource.open(decodeURIComponent(input.pathname), { expect: options.expect });
  }
  return await FileSource.open(input, { expect: options.expect });
}
