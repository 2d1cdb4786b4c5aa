import { chmodSync, chownSync, existsSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { run, spawnInNamespace, type RunAs, type SystemUsers } from "../harness/index.js";
import { distDir, type PlexdNode } from "./node.js";

// Talking to a live agent's node API the way local users do: the built `plexd` CLI and curl,
// run as a chosen uid with chosen groups (setpriv) inside the node's namespace.

const repo = resolve(import.meta.dirname, "../../..");
const addon = join(repo, "proto/lib/peercred/build/Release/peercred.node");

/**
 * The SO_PEERCRED addon decides the secrets class (docs/node-api.md); without it every secret read
 * is refused, so the tests that need it build it first (`npm run build:native`, as the
 * README's set-up does) rather than run against an agent that cannot tell callers apart.
 */
export async function ensurePeerCredAddon(): Promise<void> {
  if (existsSync(addon)) return;
  console.log("[nodeapi] building the SO_PEERCRED addon (npm run build:native)");
  await run(["npm", "run", "build:native"], { cwd: repo, timeoutMs: 300_000 });
  if (!existsSync(addon)) throw new Error(`peer-credential addon still missing at ${addon}`);
}

export type Caller = "root" | "reader" | "secrets" | "outsider";

/** root; a member of plexd only; a member of plexd and plexd-secrets; a user in neither. */
export function callerIdentity(users: SystemUsers, who: Caller): RunAs | undefined {
  const { plexd, plexdSecrets } = users.groups;
  switch (who) {
    case "root":
      return undefined;
    case "reader":
      return { uid: users.plexd.uid, gid: plexd, groups: [plexd] };
    case "secrets":
      return { uid: users.plexd.uid, gid: plexd, groups: [plexd, plexdSecrets] };
    case "outsider":
      return { uid: users.outsider.uid, gid: users.outsider.gid };
  }
}

export interface CallResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

async function runAs(n: PlexdNode, users: SystemUsers, who: Caller, name: string, argv: string[], timeoutMs = 30_000): Promise<CallResult> {
  const user = callerIdentity(users, who);
  const p = spawnInNamespace({ ns: n.ns, name: `${n.name}-${name}-${who}`, argv, ...(user === undefined ? {} : { user }) });
  const exit = await p.waitForExit(timeoutMs);
  return { exitCode: exit.exitCode, stdout: p.stdout().trim(), stderr: p.stderr().trim() };
}

/** `plexd ARGS --socket <node's api.sock>` as `who`. */
export function cliAs(n: PlexdNode, users: SystemUsers, who: Caller, args: string[]): Promise<CallResult> {
  return runAs(n, users, who, `plexd-${args[0] ?? "cmd"}`, ["node", join(distDir, "plexd.js"), ...args, "--socket", n.apiSocket]);
}

/**
 * curl over the node API socket as `who`; the status code is the last stdout line.
 * Returns curl's own exit code too (7 = could not connect).
 */
export async function curlAs(n: PlexdNode, users: SystemUsers, who: Caller, path: string, opts: { method?: string; body?: unknown; headers?: Record<string, string> } = {}) {
  // -i rather than -D /dev/stderr: Debian 12's curl crashes writing headers to /dev/stderr as a non-root uid.
  const argv = ["curl", "-sS", "-i", "--max-time", "15", "--unix-socket", n.apiSocket, "-X", opts.method ?? "GET", "-w", "\n%{http_code}"];
  for (const [k, v] of Object.entries(opts.headers ?? {})) argv.push("-H", `${k}: ${v}`);
  if (opts.body !== undefined) argv.push("-H", "Content-Type: application/json", "--data-binary", JSON.stringify(opts.body));
  argv.push(`http://localhost${path}`);
  const r = await runAs(n, users, who, "curl", argv);
  const lines = r.stdout.split("\n");
  const status = Number(lines.pop());
  const all = lines.join("\n");
  const split = all.indexOf("\r\n\r\n");
  const text = split < 0 ? "" : all.slice(split + 4);
  return {
    curlExit: r.exitCode,
    status,
    headers: split < 0 ? "" : all.slice(0, split).toLowerCase(),
    text,
    json: <T = Record<string, unknown>>(): T => JSON.parse(text) as T,
  };
}

/**
 * A node API bearer token file (node_api.http) with the given owner and mode, in `dir`.
 * The layout docs/upgrade.md#what-lives-where and docs/decisions.md give: the reader token
 * root:plexd 0640, the secrets token owned by the agent's user, 0600.
 */
export function writeTokenFile(dir: string, name: string, value: string, owner: { uid: number; gid: number }, mode: number): string {
  const path = join(dir, name);
  writeFileSync(path, `${value}\n`, { mode });
  chmodSync(path, mode);
  chownSync(path, owner.uid, owner.gid);
  return path;
}
