// Cold start of the release artifact (target: `plexd --version` ≤ 1.5 × `node -e 0`). Builds
// the tarball with `npm run release` into a temp dir outside the checkout, unpacks it, and
// alternates `bin/plexd --version` with `node -e 0` (interleaved, so machine noise hits both
// alike). Beside it: `plexd version` (the whole client CLI loaded), the sizes, and the same
// figure for a Node single-executable application of the CLI (scripts/sea.mjs; what the
// release would be without a system `node`), when postject is installed (or POSTJECT names it).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { median } from "./lib/stats.js";
import type { Benchmark, BenchContext, BenchResult } from "./registry.js";

const runs = 21;

function timed(argv: readonly string[]): number {
  const t0 = performance.now();
  const r = spawnSync(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${argv.join(" ")} exited ${r.status}: ${r.stderr.toString()}`);
  return ms;
}

function duSize(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).reduce((n, e) => n + duSize(join(path, e)), 0);
}

/** Medians of interleaved runs of each command, in ms. */
function race(commands: Record<string, readonly string[]>): Record<string, number> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(commands).map((k) => [k, []]));
  for (const argv of Object.values(commands)) timed(argv); // page cache
  for (let i = 0; i < runs; i++) for (const [k, argv] of Object.entries(commands)) samples[k]!.push(timed(argv));
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
}

export const coldStart: Benchmark = {
  description: "plexd --version of the release tarball vs node -e 0 (target <= 1.5x); plexd version and a SEA build beside it",
  async run(ctx: BenchContext): Promise<BenchResult> {
    const repo = process.cwd();
    if (!existsSync(join(repo, "scripts/release.mjs"))) throw new Error("run from the repository root (npm run bench -- cold-start)");
    const work = mkdtempSync(join(tmpdir(), "plexd-bench-cold-"));
    try {
      ctx.progress("building the release (npm run release)");
      execFileSync(process.execPath, ["scripts/release.mjs"], { cwd: repo, env: { ...process.env, PLEXD_RELEASE_DIR: join(work, "release") }, stdio: ["ignore", "ignore", "inherit"] });
      const tarball = readdirSync(join(work, "release")).find((f) => f.endsWith(".tar.gz"))!;
      execFileSync("tar", ["-xzf", join(work, "release", tarball), "-C", work]);
      const plexd = join(work, tarball.replace(/\.tar\.gz$/, ""), "bin", "plexd");
      const commands: Record<string, readonly string[]> = { node: [process.execPath, "-e", "0"], version: [plexd, "--version"], cli: [plexd, "version"] };
      let seaSize: number | undefined;
      if (existsSync(process.env.POSTJECT ?? join(repo, "node_modules/.bin/postject"))) {
        ctx.progress("building a single-executable application of the CLI (scripts/sea.mjs)");
        execFileSync(process.execPath, ["scripts/sea.mjs"], { cwd: repo, env: { ...process.env, PLEXD_SEA_DIR: join(work, "sea") }, stdio: ["ignore", "ignore", "ignore"] });
        commands.sea = [join(work, "sea", "plexd"), "--version"];
        seaSize = statSync(join(work, "sea", "plexd")).size;
      } else {
        ctx.progress("postject is not installed: no SEA figure");
      }
      if (ctx.signal.aborted) throw new Error("aborted");
      const m = race(commands);
      const f = m.node!;
      ctx.progress(Object.entries(m).map(([k, v]) => `${k} ${v.toFixed(1)} ms`).join(", ") + ` (medians of ${runs})`);
      const mb = (n: number): number => Math.round((n / 1e6) * 10) / 10;
      return {
        name: "cold-start",
        value: m.version!,
        unit: "ms",
        floor: f,
        ratio: m.version! / f,
        target: "<=1.5",
        extra: {
          cli_version_ms: m.cli!,
          cli_version_ratio: m.cli! / f,
          tarball_mb: mb(statSync(join(work, "release", tarball)).size),
          unpacked_mb: mb(duSize(join(work, tarball.replace(/\.tar\.gz$/, "")))),
          ...(m.sea !== undefined && seaSize !== undefined ? { sea_ms: m.sea, sea_ratio: m.sea / f, sea_mb: mb(seaSize) } : {}),
        },
      };
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  },
};
