import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { execa } from "execa";
import { distDir } from "../../e2e/lib/node.js";
import { median } from "./stats.js";
import type { RssSample } from "./rss.js";

// What each dependency adds to a process's resident memory: a bare node that imports one
// more module per step (cumulatively, in the order a plexd process loads them), settles,
// and reports its own VmRSS parts and V8 heap. Each step runs `rounds` times (median).
// Shared files of the node binary are part of RssFile, so the anon column is what a
// module truly costs; file grows too when a module makes node touch more of its own code.

export interface DepStep {
  label: string;
  /** Module specifiers added at this step: a package name, or "priv_pb"/"node_pb" for generated code. */
  imports: readonly string[];
}

export interface DepRow extends RssSample {
  label: string;
  heapTotal: number;
  heapUsed: number;
  /** V8's new space (both semi-spaces), MB: the young generation. */
  newSpace: number;
}

const generated: Record<string, string> = {
  priv_pb: "proto/gen/plexd/priv/v1/priv_pb.ts",
  node_pb: "proto/gen/plexd/node/v1/node_pb.ts",
};

// The child: imports, waits 3 s (long enough for start-up garbage to be scavenged and for no
// compile job to be running), then prints its figures.
const childSource = `
import { readFileSync } from "node:fs";
import v8 from "node:v8";
for (const m of JSON.parse(process.env.PLEXD_DEP_IMPORTS)) await import(m);
setTimeout(() => {
  const status = readFileSync("/proc/self/status", "utf8");
  const kb = (f) => Number(new RegExp(f + ":\\\\s+(\\\\d+) kB").exec(status)[1]) / 1024;
  const m = process.memoryUsage();
  const nw = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
  console.log(JSON.stringify({ rss: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile"), heapTotal: m.heapTotal / 1048576, heapUsed: m.heapUsed / 1048576, newSpace: (nw?.space_size ?? 0) / 1048576 }));
  process.exit(0);
}, 3000);
`;

/** Compiles the generated protobuf modules named in `steps` to plain JS in `dir`; their imports point at node_modules by absolute URL. */
async function compileGenerated(steps: readonly DepStep[], dir: string): Promise<Record<string, string>> {
  const wanted = new Set(steps.flatMap((s) => s.imports).filter((i) => i in generated));
  if (wanted.size === 0) return {};
  // esbuild is a dev dependency, as is this benchmark; loaded only here.
  const { build } = await import("esbuild");
  const out: Record<string, string> = {};
  for (const name of wanted) {
    const outfile = join(dir, `${name}.mjs`);
    await build({
      entryPoints: [resolve(distDir, "..", generated[name]!)],
      bundle: true,
      format: "esm",
      platform: "node",
      outfile,
      logLevel: "warning",
      plugins: [{ name: "node-modules-by-url", setup: (b) => b.onResolve({ filter: /^@/ }, (a) => ({ path: import.meta.resolve(a.path), external: true })) }],
    });
    out[name] = pathToFileURL(outfile).href;
  }
  return out;
}

export async function dependencyTable(steps: readonly DepStep[], nodeFlags: readonly string[], rounds = 3): Promise<DepRow[]> {
  const dir = await mkdtemp(join(tmpdir(), "plexd-rssdeps-"));
  try {
    const child = join(dir, "child.mjs");
    await writeFile(child, childSource);
    const gen = await compileGenerated(steps, dir);
    const rows: DepRow[] = [];
    const acc: string[] = [];
    for (const step of steps) {
      for (const i of step.imports) acc.push(gen[i] ?? (i.startsWith("node:") ? i : import.meta.resolve(i)));
      // Rounds of one step side by side: memory does not depend on the CPU share.
      const runs = await Promise.all(
        Array.from({ length: rounds }, async () => {
          const r = await execa(process.execPath, [...nodeFlags, child], { env: { PLEXD_DEP_IMPORTS: JSON.stringify(acc) }, timeout: 60_000 });
          return JSON.parse(r.stdout.trim().split("\n").at(-1)!) as Omit<DepRow, "label">;
        }),
      );
      const med = (k: keyof Omit<DepRow, "label">) => median(runs.map((r) => r[k]));
      rows.push({ label: step.label, rss: med("rss"), anon: med("anon"), file: med("file"), heapTotal: med("heapTotal"), heapUsed: med("heapUsed"), newSpace: med("newSpace") });
    }
    return rows;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function formatDependencyTable(rows: readonly DepRow[], nodeFlags: readonly string[]): string {
  const f = (x: number) => x.toFixed(1).padStart(6);
  const lines = [`node ${nodeFlags.join(" ") || "(no flags)"}: cumulative imports, medians, MB`, `${"step".padEnd(44)}   rss   +rss   anon   file  heapT  heapU    new`];
  let prev: DepRow | undefined;
  for (const r of rows) {
    lines.push(`${r.label.padEnd(44)} ${f(r.rss)} ${f(prev ? r.rss - prev.rss : 0)} ${f(r.anon)} ${f(r.file)} ${f(r.heapTotal)} ${f(r.heapUsed)} ${f(r.newSpace)}`);
    prev = r;
  }
  return lines.join("\n");
}

/** privhelper's dependencies in the order its bundle loads them. */
export const privhelperSteps: DepStep[] = [
  { label: "bare node", imports: [] },
  { label: "+ @grpc/grpc-js", imports: ["@grpc/grpc-js"] },
  { label: "+ @bufbuild/protobuf + generated priv_pb", imports: ["@bufbuild/protobuf", "priv_pb"] },
  { label: "+ pino", imports: ["pino"] },
  { label: "+ execa", imports: ["execa"] },
  { label: "+ yaml", imports: ["yaml"] },
  { label: "+ commander", imports: ["commander"] },
];

/** The agent's dependencies (`plexd up`: the agent bundle's imports), heaviest first. */
export const agentSteps: DepStep[] = [
  { label: "bare node", imports: [] },
  { label: "+ @grpc/grpc-js", imports: ["@grpc/grpc-js"] },
  { label: "+ @bufbuild/protobuf + generated priv_pb, node_pb", imports: ["@bufbuild/protobuf", "priv_pb", "node_pb"] },
  { label: "+ @connectrpc/connect + connect-node", imports: ["@connectrpc/connect", "@connectrpc/connect-node"] },
  { label: "+ zod", imports: ["zod"] },
  { label: "+ pino", imports: ["pino"] },
  { label: "+ yaml", imports: ["yaml"] },
  { label: "+ commander", imports: ["commander"] },
  { label: "+ eventsource-parser, canonicalize", imports: ["eventsource-parser", "canonicalize"] },
];
