/**
 * The synthetic guest RAM the format and tools benchmarks measure: 4 KiB pages, about 60% zero,
 * 25% text-like (words from a small vocabulary) and 15% random bytes, from a fixed xorshift seed
 * so every run and every benchmark sees the same bytes.
 *
 * @module
 */

const PAGE = 4096;

/** `pages` pages of mixed content (deterministic). */
export function mixedRam(pages: number): Uint8Array {
  const ram = new Uint8Array(pages * PAGE);
  let s = 0x9e37_79b9;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  const vocab =
    ("the of and to in is was for on that with as by at from kernel page memory guest " +
      "snapshot device queue buffer interrupt timer virtio block console return error static const " +
      "struct void int unsigned while if else printf malloc free").split(" ").map((w) =>
        new TextEncoder().encode(w + " ")
      );
  for (let p = 0; p < pages; p++) {
    const kind = next() % 100;
    const page = ram.subarray(p * PAGE, (p + 1) * PAGE);
    if (kind < 60) continue;
    if (kind < 85) {
      let i = 0;
      while (i < PAGE) {
        const w = vocab[next() % vocab.length];
        page.set(w.subarray(0, Math.min(w.length, PAGE - i)), i);
        i += w.length;
      }
    } else {
      const words = new Uint32Array(page.buffer, page.byteOffset, PAGE / 4);
      for (let i = 0; i < words.length; i++) words[i] = next();
    }
  }
  return ram;
}
