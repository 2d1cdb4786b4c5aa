import { existsSync, readFileSync, rmSync } from "node:fs";
import { registerCleanup } from "./cleanup.js";
import { run, runSync } from "./exec.js";
import { RUN_PREFIX } from "./runId.js";

// Composable builders for namespace topologies (the default star in topology.ts, and routers
// with NAT for traversal tests). Every object is created *inside* a namespace of this run,
// never in the machine's own namespace: deleting the namespace removes its interfaces,
// addresses and routes, so only namespaces and processes need disposers.

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const NSNAME = /^[A-Za-z0-9_.-]{1,64}$/;

export function assertIfName(name: string): void {
  if (!IFNAME.test(name)) throw new Error(`invalid interface name ${JSON.stringify(name)} (1-15 chars of [A-Za-z0-9_.-])`);
}

/** Full namespace name for `name`: names are forced under this run's prefix. */
export function namespaceName(name: string): string {
  const full = name.startsWith(RUN_PREFIX) ? name : `${RUN_PREFIX}-${name}`;
  if (!NSNAME.test(full)) throw new Error(`invalid namespace name ${JSON.stringify(full)}`);
  return full;
}

function assertOurs(ns: string): void {
  if (!ns.startsWith(RUN_PREFIX)) throw new Error(`namespace ${ns} does not belong to this run (${RUN_PREFIX})`);
}

/** PIDs of every process whose network namespace is `ns`. */
export async function namespacePids(ns: string): Promise<number[]> {
  const r = await run(["ip", "netns", "pids", ns], { reject: false, timeoutMs: 10_000 });
  return parsePids(r.stdout);
}

function parsePids(text: string): number[] {
  return text
    .split("\n")
    .map((l) => Number.parseInt(l.trim(), 10))
    .filter((n) => Number.isInteger(n) && n > 1 && n !== process.pid);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** wireguard-go keeps its UAPI socket at /var/run/wireguard/IFACE.sock; a SIGKILL leaves it behind. */
function wireguardGoIface(pid: number): string | undefined {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((a) => a.length > 0);
    if (!argv[0]?.endsWith("wireguard-go")) return undefined;
    const last = argv[argv.length - 1];
    return last && IFNAME.test(last) && argv.length > 1 ? last : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Stops every process inside `ns`: SIGTERM, then SIGKILL after `graceMs`. These are processes
 * this run started (directly, or daemons such as wireguard-go that a process of ours spawned):
 * deleting a namespace does not end them, so they are found through `ip netns pids`.
 */
export async function killNamespaceProcesses(ns: string, graceMs = 3_000): Promise<number[]> {
  assertOurs(ns);
  const pids = await namespacePids(ns);
  if (pids.length === 0) return [];
  const wgIfaces = new Map(pids.map((p) => [p, wireguardGoIface(p)]));
  for (const pid of pids) signal(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const pid of pids.filter(alive)) {
    signal(pid, "SIGKILL");
    const iface = wgIfaces.get(pid);
    if (iface) removeStaleWgSocket(iface);
  }
  return pids;
}

function removeStaleWgSocket(iface: string): void {
  const path = `/var/run/wireguard/${iface}.sock`;
  if (existsSync(path)) rmSync(path, { force: true });
}

async function deleteNamespace(ns: string): Promise<void> {
  await killNamespaceProcesses(ns);
  const r = await run(["ip", "netns", "del", ns], { reject: false, timeoutMs: 10_000 });
  if (r.failed && !/No such file|Invalid argument|does not exist/i.test(r.stderr)) {
    throw new Error(`ip netns del ${ns}: ${r.stderr || `exit ${String(r.exitCode)}`}`);
  }
}

function deleteNamespaceSync(ns: string): void {
  const r = runSync(["ip", "netns", "pids", ns], { reject: false, timeoutMs: 5_000 });
  for (const pid of parsePids(r.stdout)) {
    const iface = wireguardGoIface(pid);
    signal(pid, "SIGKILL");
    if (iface) removeStaleWgSocket(iface);
  }
  runSync(["ip", "netns", "del", ns], { reject: false, timeoutMs: 5_000 });
}

/**
 * Creates a network namespace (name forced under the run prefix) with `lo` up, and registers
 * its removal (after stopping every process inside it). Returns the full name.
 */
export async function addNamespace(name: string): Promise<string> {
  const ns = namespaceName(name);
  await run(["ip", "netns", "add", ns]);
  registerCleanup(`netns ${ns}`, () => deleteNamespace(ns), () => deleteNamespaceSync(ns));
  await run(["ip", "-n", ns, "link", "set", "lo", "up"]);
  return ns;
}

/** Removes a namespace of this run now (stopping its processes first). */
export async function removeNamespace(ns: string): Promise<void> {
  assertOurs(ns);
  await deleteNamespace(ns);
}

export interface VethOptions {
  mtu?: number;
  /** Bring both ends up (default true). */
  up?: boolean;
}

/** A veth pair with `ifA` in `nsA` and `ifB` in `nsB`, created directly inside the namespaces. */
export async function addVethPair(nsA: string, ifA: string, nsB: string, ifB: string, opts: VethOptions = {}): Promise<void> {
  assertOurs(nsA);
  assertOurs(nsB);
  assertIfName(ifA);
  assertIfName(ifB);
  await run(["ip", "-n", nsA, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", nsB]);
  // Removing one end removes both; the namespace's deletion would as well.
  registerCleanup(`veth ${nsA}/${ifA}`, async () => {
    await run(["ip", "-n", nsA, "link", "del", ifA], { reject: false, timeoutMs: 10_000 });
  });
  if (opts.mtu !== undefined) {
    await run(["ip", "-n", nsA, "link", "set", ifA, "mtu", String(opts.mtu)]);
    await run(["ip", "-n", nsB, "link", "set", ifB, "mtu", String(opts.mtu)]);
  }
  if (opts.up ?? true) {
    await linkUp(nsA, ifA);
    await linkUp(nsB, ifB);
  }
}

/** A Linux bridge `name` in `ns`, up. */
export async function addBridge(ns: string, name: string): Promise<void> {
  assertOurs(ns);
  assertIfName(name);
  await run(["ip", "-n", ns, "link", "add", name, "type", "bridge"]);
  registerCleanup(`bridge ${ns}/${name}`, async () => {
    await run(["ip", "-n", ns, "link", "del", name], { reject: false, timeoutMs: 10_000 });
  });
  await linkUp(ns, name);
}

/** Enslaves `ifName` to `bridge` (both in `ns`). */
export async function setMaster(ns: string, ifName: string, bridge: string): Promise<void> {
  await run(["ip", "-n", ns, "link", "set", ifName, "master", bridge]);
}

export async function linkUp(ns: string, ifName: string): Promise<void> {
  await run(["ip", "-n", ns, "link", "set", ifName, "up"]);
}

export async function linkDown(ns: string, ifName: string): Promise<void> {
  await run(["ip", "-n", ns, "link", "set", ifName, "down"]);
}

/** `ip addr add CIDR dev IF` (IPv4 or IPv6; `nodad` for IPv6 so it is usable at once). */
export async function addAddress(ns: string, ifName: string, cidr: string): Promise<void> {
  const extra = cidr.includes(":") ? ["nodad"] : [];
  await run(["ip", "-n", ns, "addr", "add", cidr, "dev", ifName, ...extra]);
}

export interface RouteOptions {
  via?: string;
  dev?: string;
  metric?: number;
}

/** `ip route add DEST [via GW] [dev IF]`; DEST may be `default`. */
export async function addRoute(ns: string, dest: string, opts: RouteOptions): Promise<void> {
  if (!opts.via && !opts.dev) throw new Error("addRoute: via or dev required");
  const v6 = dest.includes(":") || (opts.via?.includes(":") ?? false);
  await run([
    "ip",
    ...(v6 ? ["-6"] : []),
    "-n",
    ns,
    "route",
    "add",
    dest,
    ...(opts.via ? ["via", opts.via] : []),
    ...(opts.dev ? ["dev", opts.dev] : []),
    ...(opts.metric !== undefined ? ["metric", String(opts.metric)] : []),
  ]);
}

/** `sysctl -w KEY=VALUE` inside `ns` (net.* sysctls are per namespace, e.g. net.ipv4.ip_forward). */
export async function setSysctl(ns: string, key: string, value: string | number): Promise<void> {
  if (!/^[a-z0-9_.\-/]+$/i.test(key)) throw new Error(`invalid sysctl key ${key}`);
  await run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", `${key}=${String(value)}`]);
}

/** Loads an nftables ruleset (text, `nft -f -` syntax) into `ns`, e.g. masquerade on a router. */
export async function nftApply(ns: string, ruleset: string): Promise<void> {
  await run(["ip", "netns", "exec", ns, "nft", "-f", "-"], { input: ruleset });
}

/** Namespaces whose name starts with `prefix`. */
export async function listNamespaces(prefix = RUN_PREFIX): Promise<string[]> {
  const r = await run(["ip", "netns", "list"], { reject: false });
  return r.stdout
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((n) => n.length > 0 && n.startsWith(prefix));
}
