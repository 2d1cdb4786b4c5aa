import { createSocket } from "node:dgram";
import { existsSync, rmSync } from "node:fs";
import { run, spawnInNamespace } from "../harness/index.js";
import { wireguardGoPids } from "./priv-state.js";

// For the few tests that must run a node in the machine's own (initial) network namespace, the
// one where the kernel multicasts audit records: what such a node would change there is checked
// before, serialised between runs, and removed after, by name and PID only.

/**
 * Holds a machine-wide lock named `name` until the test's cleanup (or this process's end: the
 * holder is a `flock` whose `cat` reads our stdin pipe, so the lock goes with us however we
 * end). Two runs at once (several people, CI) would otherwise undo each other's host changes,
 * such as the kernel's audit-enabled flag.
 */
export async function holdHostLock(name: string, timeoutMs = 60_000): Promise<void> {
  const file = `/run/lock/plexd-e2e-${name}.lock`;
  const p = spawnInNamespace({ name: `host-lock-${name}`, argv: ["flock", "--exclusive", "--wait", String(Math.ceil(timeoutMs / 1000)), file, "sh", "-c", "echo held; exec cat"], stdin: true });
  await p.waitForLine(/^held$/, timeoutMs + 5_000).catch((err: unknown) => {
    throw new Error(`lock ${file} not acquired within ${timeoutMs} ms (another run holds it?): ${String(err)}`);
  });
}

/**
 * plexd state in the machine's own namespace that a node there would change: table inet plexd
 * (an agent with `policy.enabled: false` deletes it), routes and rules of privhelper's route
 * protocols (80 mesh, 81 bridge). A test must find none, or it would change what is not its own.
 */
export async function foreignPlexdState(): Promise<string[]> {
  const found: string[] = [];
  if ((await run(["nft", "list", "table", "inet", "plexd"], { reject: false })).exitCode === 0) found.push("nftables table inet plexd");
  for (const family of ["-4", "-6"]) {
    for (const proto of ["80", "81"]) {
      const routes = JSON.parse((await run(["ip", family, "-j", "route", "show", "table", "all", "proto", proto])).stdout || "[]") as { dst: string; dev?: string }[];
      found.push(...routes.map((r) => `route ${r.dst} dev ${r.dev ?? "-"} proto ${proto}`));
    }
    const rules = JSON.parse((await run(["ip", family, "-d", "-j", "rule"])).stdout || "[]") as { priority: number; protocol?: string | number }[];
    found.push(...rules.filter((r) => ["80", "81"].includes(String(r.protocol))).map((r) => `rule ${family} priority ${r.priority} protocol ${String(r.protocol)}`));
  }
  return found;
}

const linkExists = async (iface: string): Promise<boolean> => (await run(["ip", "link", "show", "dev", iface], { reject: false })).exitCode === 0;

/**
 * Removes a node's mesh interface from the machine's own namespace: its wireguard-go (found by
 * the interface name, which carries the run's prefix) by SIGTERM, then SIGKILL, the link if it
 * is still there, and a UAPI socket a killed wireguard-go left. Returns what was removed.
 */
export async function removeHostMesh(iface: string): Promise<string[]> {
  const removed: string[] = [];
  const pids = wireguardGoPids(iface);
  const signal = (pid: number, sig: NodeJS.Signals): void => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  for (const pid of pids) signal(pid, "SIGTERM");
  for (let waited = 0; wireguardGoPids(iface).length > 0 && waited < 5_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
  for (const pid of wireguardGoPids(iface)) signal(pid, "SIGKILL");
  removed.push(...pids.map((p) => `wireguard-go pid ${p}`));
  if (await linkExists(iface)) {
    await run(["ip", "link", "del", "dev", iface]);
    removed.push(`link ${iface}`);
  }
  const uapi = `/var/run/wireguard/${iface}.sock`;
  if (existsSync(uapi)) {
    rmSync(uapi, { force: true });
    removed.push(uapi);
  }
  return removed;
}

/** What of a host mesh interface is left: the link, its wireguard-go, its UAPI socket. */
export async function hostMeshLeftovers(iface: string): Promise<string[]> {
  return [
    ...((await linkExists(iface)) ? [`link ${iface}`] : []),
    ...wireguardGoPids(iface).map((p) => `wireguard-go pid ${p}`),
    ...(existsSync(`/var/run/wireguard/${iface}.sock`) ? [`/var/run/wireguard/${iface}.sock`] : []),
  ];
}

/** A UDP port free on the machine's own namespace just now (for a mesh listen port there). */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createSocket("udp4");
    s.once("error", reject);
    s.bind(0, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}
