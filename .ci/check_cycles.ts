/**
 * Fails when the repository's modules import each other in a circle, type-only imports and
 * dynamic `import()` included, and names every circle it finds.
 *
 * The layering rule (format at the bottom, the emulator and qemu on it, tools on top) says which
 * way imports run; a circle means two modules cannot be read or tested apart. The graph comes from
 * `deno info --json` over one synthetic root that imports every `.ts` file of the repository, so a
 * module that nothing imports (a test, a bench, a worker) is in it too.
 *
 * Usage: `deno run -A .ci/check_cycles.ts [ROOT]` (ROOT defaults to the repository). Exit status 0
 * when there is no circle, 1 when there is one (each printed as `a.ts -> b.ts -> a.ts`), 2 when
 * `deno info` itself fails.
 *
 * @module
 */

const SKIPPED_DIRECTORIES = new Set(["node_modules", ".git", "fixtures", "build"]);

interface ModuleInfo {
  specifier: string;
  dependencies?: {
    specifier: string;
    code?: { specifier: string };
    type?: { specifier: string };
  }[];
}

/** Every `.ts` file under `dir`, as absolute paths, in a stable order. */
async function listSources(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory && !SKIPPED_DIRECTORIES.has(entry.name)) {
      found.push(...await listSources(path));
    } else if (entry.isFile && entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) {
      found.push(path);
    }
  }
  return found.sort();
}

/** The import graph of the repository's own modules: file URL -> the file URLs it imports. */
async function importGraph(root: string): Promise<Map<string, Set<string>>> {
  const sources = await listSources(root);
  const tempDir = await Deno.makeTempDir({ prefix: "check_cycles_" });
  try {
    const entry = `${tempDir}/all.ts`;
    await Deno.writeTextFile(
      entry,
      sources.map((path) => `import ${JSON.stringify(toFileUrl(path))};\n`).join(""),
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "--config", `${root}/deno.json`, entry],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    if (!output.success) {
      throw new Error(
        `Cannot read the import graph: deno info exited with ${output.code}: ` +
          new TextDecoder().decode(output.stderr).trim(),
      );
    }
    const info = JSON.parse(new TextDecoder().decode(output.stdout)) as {
      modules: ModuleInfo[];
    };
    const ownPrefix = toFileUrl(root) + "/";
    const graph = new Map<string, Set<string>>();
    for (const module of info.modules) {
      if (!module.specifier.startsWith(ownPrefix)) continue;
      const targets = new Set<string>();
      for (const dependency of module.dependencies ?? []) {
        for (const resolved of [dependency.code?.specifier, dependency.type?.specifier]) {
          if (resolved?.startsWith(ownPrefix)) targets.add(resolved);
        }
      }
      graph.set(module.specifier, targets);
    }
    return graph;
  } finally {
    await Deno.remove(tempDir, { recursive: true });
  }
}

function toFileUrl(path: string): string {
  return new URL(`file://${path}`).href;
}

/**
 * The strongly connected components of more than one module (or one that imports itself), by
 * Tarjan's algorithm, iteratively so that a deep import chain cannot overflow the stack.
 */
function circularComponents(graph: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let next = 0;
  for (const start of graph.keys()) {
    if (index.has(start)) continue;
    const work: { node: string; edges: Iterator<string> }[] = [];
    const visit = (node: string) => {
      index.set(node, next);
      low.set(node, next);
      next++;
      stack.push(node);
      onStack.add(node);
      work.push({ node, edges: (graph.get(node) ?? new Set()).values() });
    };
    visit(start);
    while (work.length > 0) {
      const frame = work[work.length - 1];
      const step = frame.edges.next();
      if (!step.done) {
        const target = step.value;
        if (!index.has(target)) visit(target);
        else if (onStack.has(target)) {
          low.set(frame.node, Math.min(low.get(frame.node)!, index.get(target)!));
        }
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1].node;
        low.set(parent, Math.min(low.get(parent)!, low.get(frame.node)!));
      }
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: string[] = [];
        let member: string;
        do {
          member = stack.pop()!;
          onStack.delete(member);
          component.push(member);
        } while (member !== frame.node);
        if (component.length > 1 || graph.get(frame.node)?.has(frame.node)) {
          components.push(component);
        }
      }
    }
  }
  return components;
}

/** One concrete circle through `component`'s first member (a breadth-first shortest path back). */
function oneCircle(graph: Map<string, Set<string>>, component: string[]): string[] {
  const members = new Set(component);
  const start = [...component].sort()[0];
  const previous = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const node = queue.shift()!;
    for (const target of graph.get(node) ?? []) {
      if (!members.has(target)) continue;
      if (target === start) {
        const path = [start];
        for (let at = node; at !== start; at = previous.get(at)!) path.splice(1, 0, at);
        return [...path, start];
      }
      if (!previous.has(target)) {
        previous.set(target, node);
        queue.push(target);
      }
    }
  }
  return [start, start];
}

if (import.meta.main) {
  const root = Deno.realPathSync(Deno.args[0] ?? new URL("..", import.meta.url).pathname)
    .replace(/\/$/, "");
  let graph: Map<string, Set<string>>;
  try {
    graph = await importGraph(root);
  } catch (error) {
    console.error(`check_cycles: ${(error as Error).message}`);
    Deno.exit(2);
  }
  const relative = (url: string) => decodeURIComponent(url.slice(toFileUrl(root).length + 1));
  const components = circularComponents(graph);
  if (components.length === 0) {
    console.log(`check_cycles: no import cycle among ${graph.size} modules`);
  } else {
    console.error(`check_cycles: ${components.length} import cycle(s):`);
    for (const component of components) {
      const circle = oneCircle(graph, component).map(relative).join(" -> ");
      const others = component.length > circle.split(" -> ").length - 1
        ? ` (component of ${component.length} modules: ${
          component.map(relative).sort().join(", ")
        })`
        : "";
      console.error(`  ${circle}${others}`);
    }
    Deno.exit(1);
  }
}
