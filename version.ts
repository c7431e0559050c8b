/**
 * The package's version (deno.json's `version`).
 *
 * @module
 */

/** livesnap's version, as in deno.json. */
export const VERSION = "0.1.0";
