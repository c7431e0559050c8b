/**
 * `--address-order` (and `--drop-duplicates` where a second pass over the input is impossible):
 * a source that holds every page and emits the last occurrences in address order.
 *
 * @module
 */
import type { DeviceSection } from "../../format/device_section.ts";
import { PageStore } from "../_page_store.ts";
import type { SnapshotSource, SourceItem } from "./types.ts";

/**
 * `source` with its pages in address order, each page once (its last occurrence), then the last
 * occurrence of each device section, then the extension records. Holds the pages' contents in
 * memory (zero pages cost nothing).
 */
export function inAddressOrder(source: SnapshotSource): SnapshotSource {
  return {
    ...source,
    name: source.name,
    description: source.description,
    async *items() {
      const store = new PageStore(source.description);
      const devices = new Map<string, DeviceSection>();
      const extensions: SourceItem[] = [];
      for await (const item of source.items()) {
        if (item.kind === "pages") store.put(item.region, item.pages, item.data);
        else if (item.kind === "device") {
          devices.set(`${item.device.id}\u0000${item.device.instance}`, item.device);
        } else extensions.push(item);
      }
      for (const run of store.runs()) {
        const pages = new Uint32Array(run.count);
        for (let i = 0; i < run.count; i++) pages[i] = run.firstPage + i;
        yield { kind: "pages", region: run.region, pages, data: run.data };
      }
      for (const d of devices.values()) yield { kind: "device", device: d };
      yield* extensions;
    },
    contentDigest: () => source.contentDigest(),
    close: () => source.close(),
  };
}
