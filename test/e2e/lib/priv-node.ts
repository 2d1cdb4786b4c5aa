// One privhelper under test, as root inside a network namespace of the test: the built bundle,
// its own config, socket directory and TMPDIR (so /tmp/plexd-priv-* leftovers of this
// privhelper are told apart from those of other runs on the machine), restartable and
// killable by PID. Plus the bundled independent caller other users run.
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { build } from "esbuild";
import { stringify } from "yaml";
import { keptLogsRoot, makeTempDir, spawnInNamespace, type ProcessHandle } from "../harness/index.js";
import { logLines, type LogLine } from "./logs.js";
import { distDir } from "./node.js";

const repo = resolve(import.meta.dirname, "../../..");

export interface PrivNodeOptions {
  /** Short label for temp dirs and log names. */
  name: string;
  ns: string;
  /** The mesh interface: unique machine-wide (wireguard-go's UAPI socket path is global). */
  iface: string;
  logLevel?: "debug" | "info" | "warn";
  /** Merged into the YAML config privhelper reads. */
  config?: Record<string, unknown>;
}

export interface PrivNode {
  readonly ns: string;
  readonly iface: string;
  readonly root: string;
  readonly configFile: string;
  readonly socket: string;
  /** The socket's directory: privhelper's runtime directory (wireguard-go logs go here). */
  readonly runDir: string;
  /** privhelper's TMPDIR. */
  readonly tmpDir: string;
  readonly tokenFile: string;
  /** The running (or last) privhelper. */
  readonly proc: ProcessHandle | undefined;
  /** Starts privhelper and waits until it serves; `args` are extra flags. */
  start(args?: readonly string[]): Promise<ProcessHandle>;
  /** kill -9 of privhelper's PID alone (its children live on, as after a real crash). */
  kill9(): Promise<void>;
  /** SIGTERM, waiting for the exit. */
  stop(): Promise<void>;
  /** JSON log lines of every privhelper started so far, oldest first. */
  log(): LogLine[];
  /** Raw stderr of every privhelper started so far. */
  stderr(): string;
  /** `plexd-privhelper --cleanup` with this config, in the namespace; resolves with its exit and log. */
  cleanup(): Promise<{ exitCode: number | null; output: string }>;
  /**
   * privhelper's temporary files left behind: plexd-priv-* in its TMPDIR, and the FIFOs it
   * feeds keys through (*.fifo) in its runtime directory.
   */
  tmpLeftovers(): string[];
}

export const privhelperBundle = join(distDir, "plexd-privhelper.js");

export function createPrivNode(opts: PrivNodeOptions): PrivNode {
  // 0755 all the way down to the socket's directory, which privhelper makes root:plexd 0750:
  // members of group plexd must reach the socket, nobody else must.
  const root = makeTempDir(`priv-${opts.name}`, { mode: 0o755 });
  const runDir = join(root, "run");
  const tmpDir = join(root, "tmp");
  const logDir = join(root, "logs");
  mkdirSync(tmpDir, { mode: 0o700 });
  mkdirSync(logDir, { mode: 0o755 });
  const socket = join(runDir, "privhelper.sock");
  const tokenFile = join(root, "bootstrap-token");
  const configFile = join(root, "config.yaml");
  const config = {
    mesh: { interface: opts.iface },
    privhelper: { socket },
    token: { file: tokenFile },
    hooks: { dir: join(root, "hooks.d") },
    ...opts.config,
  };
  writeFileSync(configFile, stringify(config), { mode: 0o600 });
  let proc: ProcessHandle | undefined;
  const earlier: string[] = [];
  let starts = 0;
  const allStderr = () => [...earlier, proc?.stderr() ?? ""].join("");

  const node: PrivNode = {
    ns: opts.ns,
    iface: opts.iface,
    root,
    configFile,
    socket,
    runDir,
    tmpDir,
    tokenFile,
    get proc() {
      return proc;
    },
    async start(args = []) {
      if (proc && !proc.exited) throw new Error("privhelper already running");
      if (proc) earlier.push(proc.stderr());
      starts++;
      proc = spawnInNamespace({
        ns: opts.ns,
        name: `${opts.name}-privhelper-${starts}`,
        logDir,
        env: { TMPDIR: tmpDir },
        argv: [privhelperBundle, "--config", configFile, "--socket", socket, "--log-level", opts.logLevel ?? "info", ...args],
      });
      await proc.waitForLine(/listening|serving/i, 30_000);
      return proc;
    },
    async kill9() {
      if (!proc || proc.exited) return;
      proc.signal("SIGKILL", { group: false });
      await proc.waitForExit(10_000);
    },
    async stop() {
      if (!proc || proc.exited) return;
      await proc.kill("SIGTERM", { graceMs: 10_000, group: false });
    },
    log: () => logLines(allStderr()),
    stderr: allStderr,
    async cleanup() {
      const p = spawnInNamespace({ ns: opts.ns, name: `${opts.name}-cleanup`, logDir, env: { TMPDIR: tmpDir }, argv: [privhelperBundle, "--config", configFile, "--socket", socket, "--cleanup"] });
      const exit = await p.waitForExit(60_000);
      return { exitCode: exit.exitCode, output: p.output() };
    },
    tmpLeftovers: () => [
      ...(existsSync(tmpDir) ? readdirSync(tmpDir).filter((e) => e.startsWith("plexd-priv-")) : []),
      ...(existsSync(runDir) ? readdirSync(runDir).filter((e) => e.endsWith(".fifo")).map((e) => join("run", e)) : []),
    ],
  };
  return node;
}

/** VmRSS of a process in MiB, or undefined once it is gone. */
export function rssMiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The independent caller (lib/priv-caller-main.ts) as one self-contained script in a
 * world-readable directory of its own, so any test user can run it with plain `node`.
 */
export async function bundleCaller(): Promise<string> {
  const dir = makeTempDir("priv-caller", { mode: 0o755 });
  const out = join(dir, "priv-caller.mjs");
  await build({
    entryPoints: [join(repo, "test/e2e/lib/priv-caller-main.ts")],
    outfile: out,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "error",
    banner: { js: 'import { createRequire } from "node:module"; const require = createRequire(import.meta.url);' },
  });
  chmodSync(out, 0o644);
  return out;
}

/**
 * For a failed test: privhelper's whole stderr (every start) is kept under the harness's
 * kept-logs folder and its tail printed. The harness keeps only logs of processes started
 * inside the failed test; privhelper usually starts in beforeAll.
 */
export function keepPrivLog(node: PrivNode, label: string, tailLines = 60): void {
  const dir = join(keptLogsRoot(), label.replace(/[^A-Za-z0-9_.-]+/g, "_").slice(0, 80));
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "privhelper.stderr.log");
  writeFileSync(file, node.stderr());
  const tail = node.stderr().trimEnd().split("\n").slice(-tailLines).join("\n");
  console.error(`\n[privhelper] ---- last ${tailLines} lines of privhelper's stderr (full: ${file}) ----\n${tail}\n[privhelper] ---- end ----`);
}
