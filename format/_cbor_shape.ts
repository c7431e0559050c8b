/**
 * The shape check of device state CBOR (FORMAT.md §7.1), apart from the CBOR codec so that a
 * reader that only checks (verify) does not load one.
 *
 * @module
 */
import { MAX_CBOR_DEPTH } from "./constants.ts";

/**
 * Walks CBOR structure without building values, checking that every declared length fits in the
 * bytes that remain and that nesting stays under the cap. Returns a reason or null.
 */
export function checkCborShape(b: Uint8Array): string | null {
  // Stack of remaining item counts; -1 means indefinite length.
  const stack: number[] = [];
  let pos = 0;
  let items = 0;
  const len = (info: number): number | null => {
    if (info < 24) return info;
    const n = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
    if (n === 0 || pos + n > b.length) return null;
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + b[pos + i];
    pos += n;
    return v;
  };
  do {
    if (pos >= b.length) return `CBOR ends inside an item at byte ${pos}`;
    const ib = b[pos++];
    const major = ib >> 5;
    const info = ib & 31;
    items++;
    if (ib === 0xff) {
      if (stack.length === 0 || stack[stack.length - 1] !== -1) {
        return `stray CBOR break at byte ${pos - 1}`;
      }
      stack.pop();
      items--;
    } else if (info === 31) {
      if (major < 2 || major > 5) return `bad indefinite CBOR item at byte ${pos - 1}`;
      if (major >= 4) {
        if (stack.length >= MAX_CBOR_DEPTH) return `CBOR nests deeper than ${MAX_CBOR_DEPTH}`;
        stack.push(-1);
        continue;
      }
      // Indefinite strings: chunks follow until a break; treat as a container of strings.
      stack.push(-1);
      continue;
    } else {
      const n = len(info);
      if (n === null) return `bad CBOR length at byte ${pos - 1}`;
      if (major === 2 || major === 3) {
        if (n > b.length - pos) return `CBOR string of ${n} bytes runs past the end`;
        pos += n;
      } else if (major === 4 || major === 5) {
        const count = major === 5 ? n * 2 : n;
        if (count > b.length - pos) {
          return `CBOR container of ${n} items cannot fit in ${b.length - pos} bytes`;
        }
        if (count > 0) {
          if (stack.length >= MAX_CBOR_DEPTH) return `CBOR nests deeper than ${MAX_CBOR_DEPTH}`;
          stack.push(count);
          continue;
        }
      } else if (major === 6) {
        if (stack.length >= MAX_CBOR_DEPTH) return `CBOR nests deeper than ${MAX_CBOR_DEPTH}`;
        stack.push(1);
        continue;
      }
    }
    // One item finished: pop completed containers.
    while (stack.length > 0 && stack[stack.length - 1] > 0) {
      stack[stack.length - 1]--;
      if (stack[stack.length - 1] === 0) stack.pop();
      else break;
    }
  } while (stack.length > 0);
  if (pos !== b.length) return `${b.length - pos} bytes follow the CBOR item`;
  return null;
}
