import { verifySnapshot } from "../tools/verify.ts";
const f = await Deno.open(Deno.args[1]);
const r = await verifySnapshot(f.readable, { workers: Number(Deno.args[0]), sizeHint: 1e9 });
if (!r.ok) Deno.exit(1);
