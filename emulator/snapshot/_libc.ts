/**
 * The C library's few calls the snapshot engine makes through Deno's FFI (Linux only, and only
 * where the process may use FFI: `deno run -A` or `--allow-ffi`): `madvise` for
 * discard_pages.ts, `setpriority` for thread_priority.ts. Opened once per thread, on first use.
 *
 * @module
 */

/** The symbols used, with the types Deno's FFI gives them. */
export type Libc = {
  symbols: {
    madvise: (p: Deno.PointerValue, n: bigint, advice: number) => number;
    setpriority: (which: number, who: number, prio: number) => number;
  };
};

let opened: Libc | null | undefined;

/** This thread's handle on libc, or null where it cannot be had (not Linux, FFI denied). */
export function libc(): Libc | null {
  if (opened === undefined) opened = open();
  return opened;
}

function open(): Libc | null {
  if (Deno.build.os !== "linux") return null;
  // glibc, then musl (Alpine). A denied FFI permission throws: then there is no libc for us.
  for (const name of ["libc.so.6", `libc.musl-${Deno.build.arch}.so.1`]) {
    try {
      return Deno.dlopen(name, {
        madvise: { parameters: ["pointer", "usize", "i32"], result: "i32" },
        setpriority: { parameters: ["i32", "u32", "i32"], result: "i32" },
      }) as unknown as Libc;
    } catch {
      // try the next one
    }
  }
  return null;
}
