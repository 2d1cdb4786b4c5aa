// Kernel WireGuard links, or wireguard-go processes that outlive privhelper (restarts keep the
// mesh up); nothing is recorded: a wireguard-go device is found through its socket and /proc.
import { rm } from "node:fs/promises";
import { basename, join } from "node:path";
import { PlexdError } from "../../proto/lib/errors.js";
import type { Host } from "../os/host.js";
import type { IpTool } from "../os/ip.js";
import type { Runner } from "../os/run.js";

export const uapiDir = "/var/run/wireguard";
export const uapiSocket = (iface: string): string => join(uapiDir, `${iface}.sock`);

/** `runDir`: privhelper's runtime directory, where wireguard-go's output goes. */
export interface DeviceDeps { runner: Runner; host: Host; ip: IpTool; runDir: string }

const logOf = (deps: DeviceDeps, name: string): string => join(deps.runDir, `wireguard-go-${name}.log`);

/** PIDs of wireguard-go processes serving `name` in privhelper's own network namespace. */
export async function findWireguardGo(host: Host, name: string): Promise<number[]> {
  const self = await host.netns("self");
  const pids: number[] = [];
  for (const p of await host.processes()) {
    if (basename(p.argv[0] ?? "") !== "wireguard-go" || p.argv.at(-1) !== name) continue;
    // The UAPI socket path is global, but the same name may live in another namespace.
    if ((await host.netns(p.pid)) === self) pids.push(p.pid);
  }
  return pids;
}

async function waitUntil(host: Host, cond: () => Promise<boolean>, timeoutMs: number, stepMs: number): Promise<boolean> {
  for (let waited = 0; ; waited += stepMs) {
    if (await cond()) return true;
    if (waited >= timeoutMs) return false;
    await host.sleep(stepMs);
  }
}

// Kernel WireGuard first; else wireguard-go in its own session or unit (a privhelper crash or stop
// spares it), with no capability privhelper lacks: else privhelper could not see it in /proc.
export async function createInterface(deps: DeviceDeps, name: string): Promise<"kernel" | "userspace"> {
  if (await deps.ip.addWireGuard(name)) return "kernel";
  const bin = await deps.host.which("wireguard-go");
  if (!bin) throw new PlexdError("failed_precondition", "no WireGuard: kernel module unavailable and wireguard-go not on PATH");
  const unit = ["--collect", `--unit=plexd-wireguard-go-${name}`, "--property=Restart=no", "--property=CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW"];
  if (await deps.host.exists("/run/systemd/system")) await deps.runner.run("systemd-run", [...unit, bin, "-f", name], { timeoutMs: 15_000 });
  else deps.runner.spawnDetached(bin, ["-f", name], logOf(deps, name));
  // wireguard-go is ready within ~10-30 ms; until its socket exists a check is one stat.
  const ready = await waitUntil(deps.host, async () => (await deps.host.exists(uapiSocket(name))) && (await deps.ip.read(name)).link !== undefined, 10_000, 5);
  if (!ready) throw new PlexdError("internal", `wireguard-go did not bring up ${name} within 10s (see ${logOf(deps, name)})`);
  return "userspace";
}

/** Removes the link, any wireguard-go serving it and its output file. Returns what was removed. */
export async function destroyInterface(deps: DeviceDeps, name: string): Promise<string[]> {
  const removed: string[] = [];
  const pids = await findWireguardGo(deps.host, name);
  // SIGTERM makes wireguard-go remove its TUN link and UAPI socket itself.
  for (const pid of pids) if (deps.host.kill(pid, "SIGTERM")) removed.push(`wireguard-go pid ${pid}`);
  if (pids.length > 0 && !(await waitUntil(deps.host, async () => (await findWireguardGo(deps.host, name)).length === 0, 5_000, 25))) {
    for (const pid of pids) deps.host.kill(pid, "SIGKILL");
    // It could not remove its socket; the path is global, so only after killing its owner.
    await rm(uapiSocket(name), { force: true });
  }
  const link = (await deps.ip.read(name)).link !== undefined;
  if (link) await deps.ip.del(name);
  if (link || pids.length > 0) removed.push(`interface ${name}`);
  await rm(logOf(deps, name), { force: true });
  return removed;
}
