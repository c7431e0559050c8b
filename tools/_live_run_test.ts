import { assertEquals, assertThrows } from "@std/assert/mod.js";
import { parsePrecopyOptions } from "./_live_run.ts";

Deno.test("parsePrecopyOptions() reads --precopy-max-passes and --downtime-ms, and refuses junk", () => {
  assertEquals(parsePrecopyOptions(undefined, undefined), {});
  assertEquals(parsePrecopyOptions("12", "30"), { maxPasses: 12, downtimeMs: 30 });
  assertEquals(parsePrecopyOptions(undefined, "0"), { downtimeMs: 0 });
  assertThrows(
    () => parsePrecopyOptions("-1", undefined),
    RangeError,
    "Cannot use --precopy-max-passes '-1': not a number of passes",
  );
  assertThrows(
    () => parsePrecopyOptions(undefined, "2.5"),
    RangeError,
    "Cannot use --downtime-ms '2.5': not a whole number of milliseconds",
  );
});
