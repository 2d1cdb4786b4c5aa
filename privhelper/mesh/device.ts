// Creating, finding and removing WireGuard interfaces: kernel links, or wireguard-go
// processes that must outlive privhelper (design.md 2: restarts keep the mesh up). Nothing
// is recorded on disk; a wireguard-go device is found again through its UAPI socket and a
// /proc scan for the process serving that interface in our network namespace.
import { basename, join } from "node:path";
import { PlexdError } from "../../proto/lib/errors.js";
import type { Host } from "../os/host.js";
import type { IpTool } from "../os/ip.js";
import type { Runner } from "../os/runner.js";

export const uapiDir = "/var/run/wireguard";

export interface DeviceDeps {
  runner: Runner;
  host: Host;
  ip: IpTool;
  /** Where wireguard-go's stdout/stderr go (privhelper's runtime directory). */
  logDir: string;
}

/** PIDs of wireguard-go processes serving `name` in privhelper's own network namespace. */
export async function findWireguardGo(deps: Pick<DeviceDeps, "host">, name: string): Promise<number[]> {
  const { host } = deps;
  const self = await host.netns("self");
  const pids: number[] = [];
  for (const p of await host.processes()) {
    if (basename(p.argv[0] ?? "") !== "wireguard-go" || p.argv.at(-1) !== name) continue;
    // The UAPI socket path is global, but the same name may live in another namespace.
    if ((await host.netns(p.pid)) === self) pids.push(p.pid);
  }
  return pids;
}

async function waitUntil(host: Host, cond: () => Promise<boolean>, timeoutMs: number, stepMs = 25): Promise<boolean> {
  for (let waited = 0; ; waited += stepMs) {
    if (await cond()) return true;
    if (waited >= timeoutMs) return false;
    await host.sleep(stepMs);
  }
}

/**
 * Makes the link exist. Kernel WireGuard first; if the kernel has none, wireguard-go in
 * the foreground, detached into its own session (or its own systemd unit when systemd
 * runs), so neither a privhelper crash nor its unit's cgroup takes the tunnel down.
 */
export async function createInterface(deps: DeviceDeps, name: string, signal?: AbortSignal): Promise<"kernel" | "userspace"> {
  const { runner, host, ip } = deps;
  // Whatever happens next, a link of this name gets a new index.
  ip.forget();
  if (await ip.addWireGuard(name, signal)) return "kernel";
  const bin = await host.which("wireguard-go");
  if (!bin) throw new PlexdError("failed_precondition", "no WireGuard: kernel module unavailable and wireguard-go not on PATH");
  const sock = join(uapiDir, `${name}.sock`);
  if (await host.exists("/run/systemd/system")) {
    await runner.run("systemd-run", ["--collect", `--unit=plexd-wireguard-go-${name}`, "--property=Restart=no", bin, "-f", name], { timeoutMs: 15_000, ...(signal ? { signal } : {}) });
  } else {
    runner.spawnDetached(bin, ["-f", name], join(deps.logDir, `wireguard-go-${name}.log`));
  }
  // wireguard-go is ready within ~10-30 ms; until its socket exists a check is one stat.
  const ready = await waitUntil(host, async () => (await host.exists(sock)) && (await ip.show(name, signal)) !== undefined, 10_000, 5);
  if (!ready) throw new PlexdError("internal", `wireguard-go did not bring up ${name} within 10s (see ${join(deps.logDir, `wireguard-go-${name}.log`)})`);
  return "userspace";
}

/** Removes the link and any wireguard-go serving it. Returns what was removed. */
export async function destroyInterface(deps: DeviceDeps, name: string, signal?: AbortSignal): Promise<string[]> {
  const { host, ip } = deps;
  ip.forget();
  const removed: string[] = [];
  const pids = await findWireguardGo(deps, name);
  for (const pid of pids) {
    // SIGTERM makes wireguard-go remove its TUN link and UAPI socket itself.
    if (host.kill(pid, "SIGTERM")) removed.push(`wireguard-go pid ${pid}`);
  }
  if (pids.length > 0) {
    const gone = await waitUntil(host, async () => (await findWireguardGo(deps, name)).length === 0, 5_000);
    if (!gone) for (const pid of pids) host.kill(pid, "SIGKILL");
  }
  if ((await ip.show(name, signal)) !== undefined) {
    await ip.del(name, signal);
    removed.push(`interface ${name}`);
  } else if (pids.length > 0) {
    removed.push(`interface ${name}`);
  }
  return removed;
}
