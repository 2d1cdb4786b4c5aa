import { createHash } from "node:crypto";
import { existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import { dirname, join } from "node:path";

// The release artifact `plexd install` installs from: the lib/plexd directory the running
// `plexd` was started from (a link in bin/ resolves to it). Its SHA256SUMS lists every file
// the release holds (bundles, addon, units, docs), so an install copies exactly those, checked
// byte for byte, and a damaged unpack is refused before anything changes.

export const manifestName = "SHA256SUMS";

export interface ArtifactFile {
  /** Relative to the lib directory, `/`-separated. */
  rel: string;
  content: Buffer;
  executable: boolean;
}

export interface Artifact {
  dir: string;
  files: ArtifactFile[];
}

/** The lib directory of the running executable (its real path, through any link). */
export function runningLibDir(): string {
  return dirname(realpathSync(process.argv[1] ?? "."));
}

/** The artifact in `dir`, or the problems that make it unusable. */
export function readArtifact(dir: string): { artifact?: Artifact; problems: string[] } {
  const manifest = join(dir, manifestName);
  if (!existsSync(manifest)) {
    return { problems: [`${dir}: not a release artifact (no ${manifestName}); run plexd install from an unpacked release tarball (npm run release builds one)`] };
  }
  const problems: string[] = [];
  const files: ArtifactFile[] = [];
  for (const line of readFileSync(manifest, "utf8").split("\n")) {
    if (line.trim() === "") continue;
    const m = /^([0-9a-f]{64}) {2}(\S.*)$/.exec(line);
    if (m === null || m[2]!.split("/").includes("..") || m[2]!.startsWith("/")) {
      problems.push(`${manifest}: malformed line ${JSON.stringify(line)}`);
      continue;
    }
    const rel = m[2]!;
    const path = join(dir, rel);
    if (!existsSync(path)) {
      problems.push(`${path}: missing from the artifact`);
      continue;
    }
    const content = readFileSync(path);
    if (createHash("sha256").update(content).digest("hex") !== m[1]) {
      problems.push(`${path}: SHA-256 does not match ${manifestName} (damaged or altered)`);
      continue;
    }
    files.push({ rel, content, executable: (statSync(path).mode & 0o111) !== 0 });
  }
  // The list itself goes along: an installed lib directory is an artifact again.
  files.push({ rel: manifestName, content: readFileSync(manifest), executable: false });
  return problems.length > 0 ? { problems } : { artifact: { dir, files }, problems };
}
