import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { connectPrivhelper, type PrivClient } from "../../../agent/privclient/client.js";
import { addNamespace, cleanupMark, cleanupSince, makeTempDir, namespacePids, registerCleanup, spawnInNamespace } from "../../e2e/harness/index.js";
import { bundleArgv } from "../../e2e/lib/bundle-argv.js";
import { distDir } from "../../e2e/lib/node.js";
import { privhelperNodeFlags } from "./node-flags.js";

// A throw-away privhelper for benchmarks: the built bundle, as root, in a network namespace
// of its own, configured through a temp YAML (privhelper.socket, mesh.interface) passed with
// --config. Everything is registered with the e2e harness's cleanup registry as it is
// created, so `close()` — or the harness's signal/exit handlers if the benchmark dies —
// removes the privhelper, every process started inside the namespace (wireguard-go
// included), the namespace and the temp dir.

export interface BenchPrivhelper {
  ns: string;
  /** The allow-listed mesh interface: unique per run (wireguard-go's UAPI socket path is global). */
  iface: string;
  /** Temp dir (0700, root) holding the config, the socket and the logs. */
  work: string;
  client: PrivClient;
  /** privhelper's own PID (from GetInfo). */
  pid: number;
  /** Runs argv inside the namespace; rejects on a non-zero exit. */
  inNs(argv: string[], opts?: { input?: string; reject?: boolean }): Promise<string>;
  /** privhelper's log so far (stderr); for error messages. */
  output(): string;
  close(): Promise<void>;
}

/** A fresh interface name matching privhelper's mesh.interface rule `^plexd[a-z0-9_-]{0,10}$`. */
export function uniqueIface(): string {
  return `plexd${randomBytes(4).toString("hex")}`;
}

export interface BenchPrivhelperOptions {
  /** Node flags after the bundle's own and privhelperNodeFlags(). */
  nodeFlags?: readonly string[];
  /** Extra environment for privhelper. */
  env?: Record<string, string>;
  /** hooks.dir in privhelper's config (HashFiles, RunSandboxed). */
  hooksDir?: string;
}

export async function startBenchPrivhelper(name: string, opts: BenchPrivhelperOptions = {}): Promise<BenchPrivhelper> {
  const mark = cleanupMark();
  const close = async (): Promise<void> => {
    const failures = await cleanupSince(mark);
    if (failures.length > 0) throw new Error(`cleanup failed: ${failures.map((f) => f.label).join(", ")}`);
  };
  try {
    const ns = await addNamespace(`b${name}`);
    const iface = uniqueIface();
    const work = makeTempDir(`bench-${name}`);
    const socket = join(work, "run", "privhelper.sock");
    const config = join(work, "privhelper.yaml");
    await writeFile(config, `privhelper:\n  socket: ${socket}\nmesh:\n  interface: ${iface}\n${opts.hooksDir ? `hooks:\n  dir: ${opts.hooksDir}\n` : ""}`, { mode: 0o600 });
    // PLEXD_BENCH_PROFILE_DIR=/some/dir: privhelper writes a V8 CPU profile there on exit.
    const profDir = process.env.PLEXD_BENCH_PROFILE_DIR;
    const proc = spawnInNamespace({
      ns,
      name: `privhelper-${name}`,
      logDir: work,
      ...(opts.env ? { env: opts.env } : {}),
      // As installed (the bundle's own V8 flags), plus whatever the benchmark adds.
      argv: [...bundleArgv(distDir, "plexd-privhelper", [...privhelperNodeFlags(), ...(opts.nodeFlags ?? []), ...(profDir ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : [])]), "--config", config, "--group", "root", "--log-level", "info"],
    });
    // Registered after the namespace, so it runs first (newest first): privhelper removes
    // its own device and wireguard-go, then the namespace disposer kills whatever is left.
    const client = connectPrivhelper({ socketPath: socket });
    registerCleanup(`privhelper ${ns}`, async () => {
      await client.teardown({}, { timeoutMs: 30_000 }).catch(() => undefined);
      client.close();
      await proc.kill("SIGTERM", { graceMs: 5_000 });
    });
    await client.waitReady({ timeoutMs: 20_000 }).catch((err: unknown) => {
      throw new Error(`privhelper did not start: ${String(err)}\n${proc.output()}`);
    });
    const info = await client.getInfo({});
    const inNs = async (argv: string[], opts: { input?: string; reject?: boolean } = {}) =>
      (await execa("ip", ["netns", "exec", ns, ...argv], { timeout: 120_000, reject: opts.reject ?? true, ...(opts.input !== undefined ? { input: opts.input } : {}) })).stdout;
    return { ns, iface, work, client, pid: info.pid, inNs, output: () => proc.output(), close };
  } catch (err) {
    await cleanupSince(mark);
    throw err;
  }
}

/** PIDs of wireguard-go processes serving `iface` inside `ns`. */
export async function wireguardGoPids(ns: string, iface: string): Promise<number[]> {
  const out: number[] = [];
  for (const pid of await namespacePids(ns)) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((a) => a !== "");
      if (argv[0]?.endsWith("wireguard-go") && argv.at(-1) === iface) out.push(pid);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Stops the wireguard-go serving `iface` in `ns` (SIGTERM: it removes its link and UAPI socket). */
export async function stopWireguardGo(ns: string, iface: string): Promise<void> {
  const pids = await wireguardGoPids(ns, iface);
  for (const pid of pids) process.kill(pid, "SIGTERM");
  const until = Date.now() + 5_000;
  while ((await wireguardGoPids(ns, iface)).length > 0) {
    if (Date.now() > until) {
      for (const pid of pids) process.kill(pid, "SIGKILL");
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resident set size of a process in MB (VmRSS of /proc/PID/status). */
export function processRssMb(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  return kb === undefined ? NaN : Number(kb) / 1024;
}

/** utime + stime of a process in ms (clock ticks are 100 Hz on Linux). */
export function processCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
