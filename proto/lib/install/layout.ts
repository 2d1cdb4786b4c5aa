import { existsSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import type { Artifact } from "./artifact.js";
import type { Owner, Wanted } from "./tree.js";

// Where a plexd release lives on a host (docs/install.md has the same table for people):
// the lib directory with every file of the release, links in bin/, the docs and the units.
// `plexd install` puts this in place together with configuration and state; service.upgrade
// (privhelper InstallUpgrade) puts only this in place. Paths are absolute on the host; under
// another root every one of them is inside it.

export const releasePaths = {
  lib: "/usr/local/lib/plexd",
  bin: "/usr/local/bin",
  doc: "/usr/local/share/doc/plexd",
  units: "/etc/systemd/system",
} as const;

/** Executables linked from /usr/local/bin to their bundle in the lib directory. */
export const executables = ["plexd", "plexd-agent", "plexd-privhelper", "plexd-mockcp"] as const;
export const unitNames = ["plexd-privhelper.service", "plexd.service"] as const;
/** Inside the artifact's lib directory: the units and the docs, installed elsewhere too. */
const unitsDir = "systemd";
const docDir = "doc";

export const under = (root: string, p: string): string => (root === "/" ? p : join(root, p));

function parents(rel: string): string[] {
  const parts = rel.split("/");
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join("/"));
}

/** Every path below `dir` (files and directories), relative to it; none when it is missing. */
export function walk(dir: string, base = dir): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return [relative(base, p), ...(e.isDirectory() ? walk(p, base) : [])];
  });
}

/**
 * The release part of an install, parents first. `libNow`: what is in the installed lib
 * directory now (relative paths); files the new release lacks are removed.
 */
export function releaseLayout(l: { root: string; artifact: Artifact; libNow: readonly string[]; owner: Owner }): Wanted[] {
  const at = (p: string): string => under(l.root, p);
  const dir = (p: string): Wanted => ({ kind: "dir", path: at(p), mode: 0o755, owner: l.owner });
  // The system's directories: made when missing, otherwise left as the distribution has them.
  const sysDir = (p: string): Wanted => ({ kind: "dir", path: at(p), mode: 0o755, owner: l.owner, onlyCreate: true });
  const out: Wanted[] = [];

  // All of it, units and docs too: an installed host can run `plexd install` again from there.
  out.push(dir(releasePaths.lib));
  const libFiles = l.artifact.files;
  const libDirs = [...new Set(libFiles.flatMap((f) => parents(f.rel)))].sort();
  for (const d of libDirs) out.push(dir(`${releasePaths.lib}/${d}`));
  for (const f of libFiles) out.push({ kind: "file", path: at(`${releasePaths.lib}/${f.rel}`), mode: f.executable ? 0o755 : 0o644, owner: l.owner, content: f.content });
  const keep = new Set([...libDirs, ...libFiles.map((f) => f.rel)]);
  for (const rel of l.libNow) if (!keep.has(rel) && !parents(rel).some((p) => !keep.has(p))) out.push({ kind: "absent", path: at(`${releasePaths.lib}/${rel}`) });

  out.push(sysDir(releasePaths.bin));
  for (const e of executables) out.push({ kind: "link", path: at(`${releasePaths.bin}/${e}`), target: `../lib/plexd/${e}.js` });
  out.push(dir(releasePaths.doc));
  for (const f of libFiles.filter((x) => x.rel.startsWith(`${docDir}/`))) {
    out.push({ kind: "file", path: at(`${releasePaths.doc}/${f.rel.slice(docDir.length + 1)}`), mode: 0o644, owner: l.owner, content: f.content });
  }
  out.push(sysDir(releasePaths.units));
  for (const u of unitNames) {
    const f = libFiles.find((x) => x.rel === `${unitsDir}/${u}`);
    if (f === undefined) throw new Error(`the artifact has no ${unitsDir}/${u}`);
    out.push({ kind: "file", path: at(`${releasePaths.units}/${u}`), mode: 0o644, owner: l.owner, content: f.content });
  }
  return out;
}
