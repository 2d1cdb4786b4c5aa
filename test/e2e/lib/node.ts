import { chownSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { stringify } from "yaml";
import { makeTempDir, registerCleanup, RUN_PREFIX, spawnInNamespace, type ProcessHandle, type SystemUsers } from "../harness/index.js";
import { executableArgv } from "./bundle-argv.js";

// One plexd node as it runs in production, inside a network namespace: a root privhelper
// on its own socket and the agent as user plexd, both the built bundles, with a config
// file, data_dir and token file laid out as docs/upgrade.md#what-lives-where says (under a temp root).

/** The built bundles: beside this code when it is itself bundled (the demo), else ../../../dist. */
export const distDir = existsSync(join(import.meta.dirname, "plexd-privhelper.js")) ? import.meta.dirname : resolve(import.meta.dirname, "../../../dist");

/** The programs a node runs: by default the built bundles in dist/. */
export interface Executables {
  plexd: string;
  privhelper: string;
}

export const builtExecutables: Executables = { plexd: join(distDir, "plexd.js"), privhelper: join(distDir, "plexd-privhelper.js") };

/** The executables of a release installed under `root` (`plexd install --root`, test/e2e/install.test.ts). */
export function installedExecutables(root: string): Executables {
  return { plexd: join(root, "usr/local/bin/plexd"), privhelper: join(root, "usr/local/bin/plexd-privhelper") };
}

export interface NodeOptions {
  name: string;
  ns: string;
  api: string;
  caFile: string;
  users: SystemUsers;
  /** Written to the token file (root:plexd 0640) when given. */
  token?: string;
  /** Extra config merged over the defaults the fixture writes. */
  config?: Record<string, unknown>;
  logLevel?: string;
  /** Mesh interface name; default `plexd<run id><name>`. Must be unique machine-wide (see `iface` below). */
  iface?: string;
  /** Default: builtExecutables. */
  executables?: Executables;
  /** Restrictions around privhelper's and the agent's argv (lib/unit-sandbox.ts). */
  wrap?: LaunchWrap;
  /**
   * Run privhelper, the agent and commands in the harness's own network namespace (the host's
   * initial one, where the kernel multicasts audit records) instead of `ns`, which then only
   * names the node's run directory. Whatever the node makes there, the test must remove.
   */
  hostNetns?: boolean;
}

/**
 * Wraps the argv of a node's privhelper or agent, e.g. in its unit's sandbox. The result runs
 * as root in the node's namespace and takes on the process's identity itself (the agent is
 * then not started through the harness's own `setpriv`).
 */
export type LaunchWrap = (role: "privhelper" | "agent", argv: readonly string[], node: PlexdNode) => string[];

/** How the agent's node process is started, for benchmarks that measure it. */
export interface AgentLaunch {
  /** Node flags after the bundle's own (lib/bundle-argv.ts). */
  nodeFlags?: readonly string[];
  /** Extra environment. */
  env?: Record<string, string>;
}

export interface PlexdNode {
  name: string;
  ns: string;
  root: string;
  configFile: string;
  dataDir: string;
  tokenFile: string;
  privSocket: string;
  apiSocket: string;
  /** The mesh interface: unique per node, because wireguard-go's UAPI socket path
   * (/var/run/wireguard/NAME.sock) is shared by every network namespace. */
  iface: string;
  agent?: ProcessHandle;
  privhelper?: ProcessHandle;
  startPrivhelper(): Promise<ProcessHandle>;
  /** Starts `plexd up` as user plexd; resolves once the process is spawned. */
  startAgent(extraArgs?: string[], launch?: AgentLaunch): ProcessHandle;
  /** Runs a one-shot plexd command as user plexd in the namespace and waits for it. */
  plexd(args: string[], opts?: { asRoot?: boolean; timeoutMs?: number; stdin?: string }): Promise<{ exitCode: number | null; output: string }>;
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = v && typeof v === "object" && !Array.isArray(v) && prev && typeof prev === "object" && !Array.isArray(prev) ? deepMerge(prev as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

export function createNode(opts: NodeOptions): PlexdNode {
  const { plexd } = opts.users;
  const inNs = opts.hostNetns ? {} : { ns: opts.ns };
  const exe = opts.executables ?? builtExecutables;
  const root = makeTempDir(`node-${opts.name}`, { mode: 0o755 });
  const etc = join(root, "etc");
  mkdirSync(etc, { mode: 0o755 });
  const tokenDir = join(root, "token");
  mkdirSync(tokenDir, { mode: 0o750 });
  chownSync(tokenDir, 0, opts.users.groups.plexd);
  const dataDir = join(root, "data");
  mkdirSync(dataDir, { mode: 0o700 });
  chownSync(dataDir, plexd.uid, plexd.gid);
  const runDir = `/run/plexd/${opts.ns}`;
  mkdirSync(runDir, { recursive: true, mode: 0o755 });
  chownSync(runDir, plexd.uid, plexd.gid);
  registerCleanup(`run dir ${runDir}`, async () => rmSync(runDir, { recursive: true, force: true }));
  const privSocket = join(root, "priv", "privhelper.sock");
  const tokenFile = join(tokenDir, "bootstrap-token");
  const configFile = join(etc, "config.yaml");
  // With the run's id in it, so that runs of the same test by several people at once do not
  // share /var/run/wireguard/NAME.sock (mesh.interface allows 10 characters after "plexd").
  const iface = opts.iface ?? `plexd${RUN_PREFIX.slice(2)}${opts.name.replace(/[^a-z0-9]/g, "").slice(0, 6)}`;
  const config = deepMerge(
    {
      api: opts.api,
      log_level: opts.logLevel ?? "info",
      data_dir: dataDir,
      control_plane: { ca_file: opts.caFile },
      token: { file: tokenFile },
      registration: { hostname: opts.name },
      privhelper: { socket: privSocket },
      mesh: { interface: iface },
      node_api: { socket: join(runDir, "api.sock") },
      actions: { socket: join(runDir, "actions.sock") },
      nat_traversal: { enabled: false },
      hooks: { dir: join(etc, "hooks.d") },
    },
    opts.config ?? {},
  );
  writeFileSync(configFile, stringify(config), { mode: 0o640 });
  chownSync(configFile, 0, opts.users.groups.plexd);
  if (opts.token !== undefined) {
    writeFileSync(tokenFile, opts.token + "\n", { mode: 0o640 });
    chownSync(tokenFile, 0, opts.users.groups.plexd);
  }
  const node: PlexdNode = {
    name: opts.name,
    ns: opts.ns,
    root,
    configFile,
    dataDir,
    tokenFile,
    privSocket,
    apiSocket: join(runDir, "api.sock"),
    iface,
    async startPrivhelper() {
      const argv = [exe.privhelper, "--config", configFile];
      const p = spawnInNamespace({ ...inNs, name: `${opts.name}-privhelper`, argv: opts.wrap ? opts.wrap("privhelper", argv, node) : argv });
      node.privhelper = p;
      await p.waitForLine(/listening|serving/i, 15_000);
      return p;
    },
    startAgent(extraArgs = [], launch = {}) {
      const argv = [...executableArgv(exe.plexd, launch.nodeFlags), "up", "--config", configFile, ...extraArgs];
      const p = spawnInNamespace({
        ...inNs,
        name: `${opts.name}-agent`,
        ...(opts.wrap ? { argv: opts.wrap("agent", argv, node) } : { user: "plexd" as const, argv }),
        ...(launch.env ? { env: launch.env } : {}),
      });
      node.agent = p;
      return p;
    },
    async plexd(args, o = {}) {
      const p = spawnInNamespace({
        ...inNs,
        name: `${opts.name}-plexd-${args[0] ?? "cmd"}`,
        ...(o.asRoot ? {} : { user: "plexd" as const }),
        argv: [exe.plexd, ...args, "--config", configFile],
        stdin: o.stdin !== undefined,
      });
      if (o.stdin !== undefined) {
        p.writeStdin(o.stdin);
        p.closeStdin();
      }
      const exit = await p.waitForExit(o.timeoutMs ?? 30_000);
      return { exitCode: exit.exitCode, output: p.output() };
    },
  };
  return node;
}

export function identityFilesPresent(dataDir: string): string[] {
  return ["identity.json", "private_key", "node_secret_key", "identity_token", "signing_keys.json"].filter((f) => existsSync(join(dataDir, f)));
}
