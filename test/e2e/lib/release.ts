import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { makeTempDir, run } from "../harness/index.js";

// The release artifact as an operator gets it: `npm run release` into a temp dir (outside the
// checkout, so nothing it runs can reach the checkout's node_modules), then unpacked.

export const repoRoot = resolve(import.meta.dirname, "../../..");

export interface BuiltRelease {
  /** Directory holding the tarball and SHA256SUMS. */
  dir: string;
  tarball: string;
  version: string;
  /** The unpacked tarball's top directory (bin/, lib/plexd/, install.sh). */
  unpacked: string;
}

export async function buildRelease(): Promise<BuiltRelease> {
  const dir = makeTempDir("release", { mode: 0o755 });
  await run(["node", "scripts/release.mjs"], { cwd: repoRoot, env: { PLEXD_RELEASE_DIR: dir }, timeoutMs: 180_000 });
  const tarball = readdirSync(dir).find((f) => f.endsWith(".tar.gz"));
  if (tarball === undefined) throw new Error(`npm run release left no tarball in ${dir}`);
  const version = (JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { version: string }).version;
  const unpackDir = makeTempDir("release-unpacked", { mode: 0o755 });
  await run(["tar", "-xzf", join(dir, tarball), "-C", unpackDir]);
  return { dir, tarball, version, unpacked: join(unpackDir, tarball.replace(/\.tar\.gz$/, "")) };
}
