import { assertEquals, assertThrows } from "@std/assert/mod.js";
import { UsageError } from "./_command.ts";
import { parseLiveArgs, parsePrecopyOptions } from "./_live_run.ts";

Deno.test("parsePrecopyOptions() reads --precopy-max-passes and --downtime-ms, and refuses junk", () => {
  assertEquals(parsePrecopyOptions(undefined, undefined), {});
  assertEquals(parsePrecopyOptions("12", "30"), { maxPasses: 12, downtimeMs: 30 });
  assertEquals(parsePrecopyOptions(undefined, "0"), { downtimeMs: 0 });
  assertThrows(
    () => parsePrecopyOptions("-1", undefined),
    UsageError,
    "Cannot parse --precopy-max-passes: '-1' is not a number of passes",
  );
  assertThrows(
    () => parsePrecopyOptions(undefined, "2.5"),
    UsageError,
    "Cannot parse --downtime-ms: '2.5' is not a whole number of milliseconds",
  );
});

Deno.test("parseLiveArgs() is what run and restore share: live options, refusals, stop-at, max-instructions", () => {
  assertEquals(parseLiveArgs({ "stop-at": "500" }), {
    stopAt: 500,
    maxInstructions: undefined,
    live: null,
  });
  assertEquals(parseLiveArgs({ "max-instructions": "900" }), {
    stopAt: undefined,
    maxInstructions: 900,
    live: null,
  });
  assertEquals(
    parseLiveArgs({ "max-instructions": "900", control: "vm.sock" }).live?.maxInstructions,
    900,
  );
  assertThrows(
    () => parseLiveArgs({ "max-instructions": "9e9" }),
    UsageError,
    "Cannot parse --max-instructions: '9e9' is not an instruction count",
  );
  assertThrows(() => parseLiveArgs({ out: "x.lsnap" }), UsageError, "--out needs --snapshot-at");
  assertThrows(() => parseLiveArgs({ "snapshot-every": "0" }), UsageError, "--snapshot-every 0");
  assertThrows(() => parseLiveArgs({ "stop-at": "1e6" }), UsageError, "not an instruction count");
  const { live } = parseLiveArgs({
    "snapshot-at": ["100", "200"],
    out: "s-{n}.lsnap",
    mode: "precopy",
    "cow-buffer": "64K",
    "downtime-ms": "20",
    digest: true,
  });
  assertEquals(live?.snapshotAt, [100, 200]);
  assertEquals([live?.mode, live?.cowBuffer, live?.precopy], ["precopy", 65536, {
    downtimeMs: 20,
  }]);
  assertEquals([live?.out, live?.digest], ["s-{n}.lsnap", true]);
});
