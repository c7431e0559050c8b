import { assertEquals, assertThrows } from "@std/assert/mod.js";
import { loadFixture } from "./_fixtures_test_util.ts";
import { STREAM_KINDS } from "./_make_stream.ts";
import { readQemuSnapshot } from "./snapshot.ts";
import { decodeVmState } from "./vmstate_decode.ts";
import { encodeVmState, VmStateEncodeError } from "./vmstate_encode.ts";

Deno.test("encodeVmState() gives back every device section of the real QEMU streams", async () => {
  for (const kind of STREAM_KINDS) {
    const snap = await readQemuSnapshot([await loadFixture(kind)]);
    for (const d of snap.devices) {
      const desc = snap.vmdesc!.devices.find((v) =>
        v.name === d.idstr && v.instance_id === d.instanceId
      )!;
      const decoded = decodeVmState(d.data, desc);
      assertEquals(decoded.complete, true, `${kind} ${d.idstr}`);
      assertEquals(encodeVmState(decoded.fields, desc), d.data, `${kind} ${d.idstr}`);
    }
  }
});

Deno.test("encodeVmState() names the field that is missing or does not fit", () => {
  const desc = {
    fields: [{ name: "a", type: "uint8", size: 1 }, {
      name: "r",
      type: "uint32",
      size: 4,
      array_len: 2,
    }],
  };
  assertThrows(() => encodeVmState({ a: 1 }, desc), VmStateEncodeError, "field 'r' has no value");
  assertThrows(
    () => encodeVmState({ a: 256, r: [0, 0] }, desc),
    VmStateEncodeError,
    "field 'a' 256 does not fit in 1 bytes",
  );
  assertThrows(
    () => encodeVmState({ a: 1, r: [0] }, desc),
    VmStateEncodeError,
    "field 'r' is not an array of 2",
  );
});

Deno.test("decodeVmState() with subsections 'as-found' reads those present, by name", () => {
  const desc = {
    vmsd_name: "dev",
    fields: [{ name: "a", type: "uint8", size: 1 }],
    subsections: [
      { vmsd_name: "dev/one", version: 1, fields: [{ name: "x", type: "uint8", size: 1 }] },
      { vmsd_name: "dev/two", version: 1, fields: [{ name: "y", type: "uint16", size: 2 }] },
    ],
  };
  const only2 = encodeVmState({ a: 1, "dev/two": { y: 7 } }, {
    ...desc,
    subsections: [desc.subsections[1]],
  });
  const r = decodeVmState(only2, desc, { subsections: "as-found" });
  assertEquals(r, { complete: true, fields: { a: "0x01", "dev/two": { y: "0x0007" } } });
  // The listed reading wants dev/one first.
  assertEquals(decodeVmState(only2, desc).complete, false);
});
