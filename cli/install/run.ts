import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { addAccounts, ensureHostAccounts, hostIds, idsFrom, readTreeAccounts, removeAccounts, removeHostAccounts, treeAccountEntries, type AccountIds } from "./accounts.js";
import { buildInfo } from "../../proto/lib/version.js";
import { readArtifact, runningLibDir } from "./artifact.js";
import { checkApiUrl, checkToken, minimalConfig, sshAccess, sshdDropIn } from "./inputs.js";
import { installLayout, paths, uninstallLayout, under } from "./layout.js";
import { activate, deactivate, skippedBecause, systemdManages } from "./systemd.js";
import { apply, describe, plan, type Action, type Owner } from "./tree.js";

// `plexd install` and `plexd uninstall` (docs/install.md). Both check everything first, then
// change only what differs, and print one line per change.

export class InstallError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
  }
}

export interface InstallOptions {
  root: string;
  apiUrl?: string;
  tokenFile?: string;
  tokenStdin?: boolean;
  start: boolean;
  /** The artifact's lib directory; default: the one this executable runs from. */
  from?: string;
  out: (line: string) => void;
}

function rootOf(dir: string | undefined): string {
  return dir === undefined || dir === "" ? "/" : resolve(dir);
}

function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new InstallError(["must run as root (it creates system accounts and root-owned files)"]);
}

function namer(ids: AccountIds): (o: Owner) => string {
  return (o) => `${ids.userNames.get(o.uid) ?? o.uid}:${ids.groupNames.get(o.gid) ?? o.gid}`;
}

function walk(dir: string, base = dir): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return [relative(base, p), ...(e.isDirectory() ? walk(p, base) : [])];
  });
}

function readToken(o: InstallOptions, problems: string[]): Buffer | undefined {
  if (o.tokenFile !== undefined && o.tokenStdin === true) {
    problems.push("--token-file and --token-stdin: give only one");
    return undefined;
  }
  let raw: Buffer;
  let from: string;
  try {
    if (o.tokenFile !== undefined) [raw, from] = [readFileSync(o.tokenFile), o.tokenFile];
    else if (o.tokenStdin === true) [raw, from] = [readFileSync(0), "--token-stdin"];
    else return undefined;
  } catch (err) {
    problems.push(`${o.tokenFile ?? "stdin"}: cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    return undefined;
  }
  const t = checkToken(raw, from);
  if (t.problem !== undefined) problems.push(t.problem);
  return t.token === undefined ? undefined : Buffer.from(`${t.token}\n`);
}

export function install(o: InstallOptions): void {
  const root = rootOf(o.root);
  requireRoot();
  const problems: string[] = [];
  const { artifact, problems: artifactProblems } = readArtifact(o.from ?? runningLibDir());
  problems.push(...artifactProblems);
  const token = readToken(o, problems);
  const configPath = under(root, paths.config);
  let configText: string | undefined;
  let newConfig: Buffer | undefined;
  if (existsSync(configPath)) {
    configText = readFileSync(configPath, "utf8");
    if (o.apiUrl !== undefined) o.out(`kept the existing ${configPath} (--api-url applies only when there is none)`);
  } else if (o.apiUrl === undefined) {
    problems.push(`${configPath} does not exist: give --api-url (the control plane's URL) to write a minimal one, or write it first`);
  } else {
    const p = checkApiUrl(o.apiUrl);
    if (p !== undefined) problems.push(p);
    else newConfig = Buffer.from((configText = minimalConfig(o.apiUrl)));
  }
  const ssh = configText === undefined ? undefined : sshAccess(configText, configPath);
  if (ssh?.problem !== undefined) problems.push(ssh.problem);
  if (problems.length > 0 || artifact === undefined) throw new InstallError(problems);

  // Accounts first: the files below are owned by them.
  let ids: AccountIds | undefined;
  const actions: Action[] = [];
  if (root === "/") {
    for (const line of ensureHostAccounts()) o.out(line);
    ids = hostIds();
  } else {
    const files = addAccounts(readTreeAccounts(root));
    ids = idsFrom(files);
    actions.push(...plan(treeAccountEntries(root, files)));
  }
  if (ids === undefined) throw new InstallError(["the plexd user or group is missing after creating them"]);
  const owners = { root: ids.root, plexd: ids.plexd, rootPlexd: { uid: 0, gid: ids.plexd.gid } };
  const wanted = installLayout({
    root,
    artifact,
    libNow: walk(under(root, paths.lib)),
    owners,
    ...(newConfig ? { newConfig } : {}),
    ...(token ? { token } : {}),
    ...(ssh?.ssh?.enabled === true ? { sshdDropIn: Buffer.from(sshdDropIn(ssh.ssh, root)) } : {}),
  });
  actions.push(...plan(wanted));
  apply(actions);
  const name = namer(ids);
  // The release's own files in one line: dozens of bundles and chunks say nothing one by one.
  const lib = under(root, paths.lib) + "/";
  const libActions = actions.filter((a) => a.path.startsWith(lib));
  for (const a of actions.filter((x) => !x.path.startsWith(lib))) o.out(describe(a, name));
  if (libActions.length > 0) o.out(`updated ${libActions.length} files and directories under ${lib} (plexd ${buildInfo.version}, commit ${buildInfo.commit})`);
  if (actions.length === 0) o.out("nothing to change: plexd is installed as this artifact has it");

  if (!systemdManages(root)) {
    o.out(`skipped systemctl daemon-reload, enable${o.start ? " and start" : ""}: ${skippedBecause(root)}`);
  } else {
    const changed = actions.some((a) => a.path.startsWith(paths.lib) || a.path.startsWith(paths.units) || a.path === paths.config);
    for (const line of activate({ changed, start: o.start })) o.out(line);
    if (actions.some((a) => a.path === paths.sshdDropIn)) o.out(`${paths.sshdDropIn} changed: reload sshd to apply it (systemctl reload ssh)`);
  }
}

export interface UninstallOptions {
  root: string;
  purge: boolean;
  out: (line: string) => void;
}

export function uninstall(o: UninstallOptions): void {
  const root = rootOf(o.root);
  requireRoot();
  const host = root === "/";
  if (systemdManages(root)) for (const line of deactivate()) o.out(line);
  else o.out(`skipped stopping and disabling the units: ${skippedBecause(root)}`);
  // Interfaces, routes and the nftables table go with the helper that made them.
  const helper = paths.bin + "/plexd-privhelper";
  if (host && existsSync(helper)) {
    try {
      execFileSync(helper, ["--cleanup", "--config", paths.config, "--log-level", "warn"], { stdio: ["ignore", "ignore", "inherit"] });
      o.out("removed plexd's interfaces, routes and nftables table (plexd-privhelper --cleanup)");
    } catch {
      o.out("warning: plexd-privhelper --cleanup failed; remove the plexd interface and `nft delete table inet plexd` by hand");
    }
  }
  const registered = existsSync(join(under(root, paths.data), "identity.json"));
  const actions = plan(uninstallLayout(root, o.purge));
  if (o.purge && !host) {
    actions.push(...plan(treeAccountEntries(root, removeAccounts(readTreeAccounts(root)))));
  }
  apply(actions);
  for (const a of actions) o.out(describe(a, (x) => `${x.uid}:${x.gid}`));
  if (o.purge && host) for (const line of removeHostAccounts()) o.out(line);
  if (systemdManages(root)) {
    execFileSync("systemctl", ["daemon-reload"], { stdio: "inherit" });
    o.out("systemctl daemon-reload");
  }
  if (actions.length === 0) o.out("nothing to remove");
  if (!o.purge) o.out(`kept ${paths.etc} and ${paths.data} (--purge removes them and the plexd accounts)`);
  if (registered) {
    o.out(
      o.purge
        ? "warning: this node's identity is gone but the control plane still lists it as registered: remove it there"
        : "warning: this node is still registered with the control plane (identity in /var/lib/plexd); `plexd deregister` removes it from the mesh",
    );
  }
}
