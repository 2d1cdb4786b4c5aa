// `plexd status` wall time (docs/testing.md#performance-targets: ≤ 2.5 × `node -e 0`). The bench starts a node API
// server with the fake backend on a temp socket, then alternates `node -e 0` and
// `node dist/plexd.js status -o json` runs (interleaved, so machine noise hits both alike)
// and reports the medians.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { shippedFlags } from "../e2e/lib/bundle-argv.js";
import { startFakeNodeApi } from "../support/nodeapi-fake-backend.js";
import type { Benchmark, BenchContext, BenchResult } from "./registry.js";

const runs = 15;

function cliPath(): string {
  const here = fileURLToPath(new URL("./plexd.js", import.meta.url));
  return existsSync(here) ? here : join(process.cwd(), "dist", "plexd.js");
}

/** Wall time of one child process, in ms; rejects on a non-zero exit. */
function timed(args: string[], signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    // Async spawn: the node API server lives in this process and must keep answering.
    const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"], signal });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`node ${args.join(" ")} exited ${code}: ${stderr}`))));
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

export const cliStatus: Benchmark = {
  description: "plexd status -o json wall time against a fake-backend node API vs node -e 0 (target <= 2.5x)",
  async run(ctx: BenchContext): Promise<BenchResult> {
    const cli = cliPath();
    if (!existsSync(cli)) throw new Error(`${cli} missing: run npm run build`);
    const dir = await mkdtemp(join(tmpdir(), "plexd-bench-cli-"));
    const ac = new AbortController();
    const onAbort = (): void => ac.abort();
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    try {
      const sock = join(dir, "api.sock");
      const { server } = await startFakeNodeApi({ socketPath: sock, dataDir: dir, signal: ac.signal });
      try {
        // As installed: with the V8 flags of the bundle's first line.
        const status = [...shippedFlags(cli), cli, "--socket", sock, "status", "-o", "json"];
        // Warm the page cache for both.
        await timed(["-e", "0"], ac.signal);
        await timed(status, ac.signal);
        const floor: number[] = [];
        const value: number[] = [];
        for (let i = 0; i < runs; i++) {
          floor.push(await timed(["-e", "0"], ac.signal));
          value.push(await timed(status, ac.signal));
        }
        const v = median(value);
        const f = median(floor);
        ctx.progress(`medians over ${runs} runs: plexd status ${v.toFixed(1)} ms, node -e 0 ${f.toFixed(1)} ms`);
        return { name: "cli-status", value: v, unit: "ms", floor: f, ratio: v / f, target: "<=2.5" };
      } finally {
        await server.close();
      }
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
      ac.abort();
      await rm(dir, { recursive: true, force: true });
    }
  },
};
