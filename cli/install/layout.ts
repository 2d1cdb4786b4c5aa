import { executables, releaseLayout, releasePaths, under, unitNames } from "../../proto/lib/install/layout.js";
import type { Artifact } from "./artifact.js";
import type { Owner, Wanted } from "./tree.js";

// Where everything of plexd lives on a host (docs/install.md has the same table for people).
// Paths are absolute on the host; under `--root DIR` every one of them is inside DIR.

export const paths = {
  ...releasePaths,
  etc: "/etc/plexd",
  hooks: "/etc/plexd/hooks.d",
  config: "/etc/plexd/config.yaml",
  token: "/etc/plexd/bootstrap-token",
  environment: "/etc/plexd/environment",
  nodeApiToken: "/etc/plexd/node-api-token",
  data: "/var/lib/plexd",
  sshdDropIn: "/etc/ssh/sshd_config.d/plexd.conf",
} as const;

export { executables, unitNames, under };

export interface InstallLayout {
  root: string;
  artifact: Artifact;
  /** What is in the installed lib directory now (relative paths, files and directories). */
  libNow: readonly string[];
  owners: { root: Owner; plexd: Owner; rootPlexd: Owner };
  /** Content for config.yaml when none exists; undefined keeps (and needs) the existing one. */
  newConfig?: Buffer;
  token?: Buffer;
  /** The sshd drop-in, or undefined when SSH access is off (an old drop-in is removed). */
  sshdDropIn?: Buffer;
}

/** Everything `plexd install` puts in place, parents first. */
export function installLayout(l: InstallLayout): Wanted[] {
  const at = (p: string): string => under(l.root, p);
  const { root, plexd, rootPlexd } = l.owners;
  const dir = (p: string, mode: number, owner: Owner = root): Wanted => ({ kind: "dir", path: at(p), mode, owner });
  // The system's directories: made when missing, otherwise left as the distribution has them.
  const sysDir = (p: string): Wanted => ({ kind: "dir", path: at(p), mode: 0o755, owner: root, onlyCreate: true });
  const out: Wanted[] = [];

  // The release, replaced as a whole: files the new release lacks are removed.
  out.push(...releaseLayout({ root: l.root, artifact: l.artifact, libNow: l.libNow, owner: root }));

  // Configuration: root's, readable by the agent's group; what exists is kept, only its
  // owner and mode are set.
  out.push(dir(paths.etc, 0o755));
  out.push(dir(paths.hooks, 0o755));
  out.push({ kind: "file", path: at(paths.config), mode: 0o640, owner: rootPlexd, ...(l.newConfig ? { content: l.newConfig } : {}), keep: true });
  out.push({ kind: "file", path: at(paths.token), mode: 0o640, owner: rootPlexd, ...(l.token ? { content: l.token } : {}) });
  out.push({ kind: "file", path: at(paths.environment), mode: 0o600, owner: root });
  out.push({ kind: "file", path: at(paths.nodeApiToken), mode: 0o640, owner: rootPlexd });
  out.push(dir(paths.data, 0o700, plexd));

  if (l.sshdDropIn !== undefined) {
    out.push(sysDir("/etc/ssh/sshd_config.d"));
    out.push({ kind: "file", path: at(paths.sshdDropIn), mode: 0o644, owner: root, content: l.sshdDropIn });
  } else {
    out.push({ kind: "absent", path: at(paths.sshdDropIn) });
  }
  return out;
}

/** What `plexd uninstall` removes; with `purge` also configuration and state. */
export function uninstallLayout(root: string, purge: boolean): Wanted[] {
  const at = (p: string): string => under(root, p);
  const gone = (p: string): Wanted => ({ kind: "absent", path: at(p) });
  const out = [...unitNames.map((u) => gone(`${paths.units}/${u}`)), ...executables.map((e) => gone(`${paths.bin}/${e}`)), gone(paths.lib), gone(paths.doc), gone(paths.sshdDropIn)];
  if (purge) out.push(gone(paths.etc), gone(paths.data));
  return out;
}

