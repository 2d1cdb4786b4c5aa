// The kernel state privhelper manages, read with the real tools (wg, ip, nft) and reduced to
// comparable text: the tests judge privhelper by what the kernel holds, not by its answers.
// Keys are public; PSKs are reduced to a short digest so a failure message never prints one.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { namespacePids, nsExec } from "../harness/index.js";
import type { Peer } from "./priv-specs.js";

const digest = (s: string): string => (s === "" ? "-" : createHash("sha256").update(s).digest("hex").slice(0, 12));

/** One peer as "endpoint|allowed ips|psk digest|keepalive" (allowed IPs sorted). */
export function peerLine(p: Peer): string {
  return `${p.endpoint || "-"}|${[...p.allowedIps].sort().join(",")}|${digest(p.presharedKey)}|${p.persistentKeepalive}`;
}

export interface LiveMesh {
  listenPort: number;
  publicKey: string;
  /** public key → peerLine */
  peers: Map<string, string>;
}

/** `wg show IFACE dump`, or undefined when the device does not exist. */
export async function liveMesh(ns: string, iface: string): Promise<LiveMesh | undefined> {
  const r = await nsExec(ns, ["wg", "show", iface, "dump"], { reject: false, timeoutMs: 30_000 });
  if (r.exitCode !== 0) return undefined;
  const [head, ...rows] = r.stdout.trim().split("\n");
  const h = (head ?? "").split("\t");
  const peers = new Map<string, string>();
  for (const row of rows) {
    if (row === "") continue;
    const f = row.split("\t");
    const none = (v: string | undefined) => (v === undefined || v === "(none)" || v === "off" ? "" : v);
    const ips = none(f[3]);
    peers.set(f[0]!, peerLine({ publicKey: f[0]!, presharedKey: none(f[1]), endpoint: none(f[2]), allowedIps: ips === "" ? [] : ips.split(","), persistentKeepalive: Number(none(f[7]) || 0) }));
  }
  return { listenPort: Number(h[2]), publicKey: h[1] ?? "", peers };
}

export const expectedPeers = (peers: readonly Peer[]): Map<string, string> => new Map(peers.map((p) => [p.publicKey, peerLine(p)]));

/** A mesh as one comparable text: sorted peer lines. */
export function meshText(peers: Map<string, string>): string {
  return [...peers].map(([k, v]) => `${k} ${v}`).sort().join("\n");
}

export interface RouteRow {
  dst: string;
  dev: string;
  table: string;
  type: string;
  protocol: string;
  scope: string;
}

/** IPv4 routes of every table in the namespace (`ip -j route show table all`). */
export async function liveRoutes(ns: string): Promise<RouteRow[]> {
  const r = await nsExec(ns, ["ip", "-j", "route", "show", "table", "all"], { timeoutMs: 30_000 });
  const rows = JSON.parse(r.stdout || "[]") as Partial<Record<keyof RouteRow, string>>[];
  return rows.map((x) => {
    const dst = x.dst ?? "";
    return { dst: dst === "default" || dst.includes("/") ? dst : `${dst}/32`, dev: x.dev ?? "", table: x.table ?? "main", type: x.type ?? "unicast", protocol: x.protocol ?? "boot", scope: x.scope ?? "global" };
  });
}

/** Routes via `iface` as sorted text lines (every table, kernel-made ones included). */
export async function routesVia(ns: string, iface: string): Promise<string> {
  return (await liveRoutes(ns))
    .filter((r) => r.dev === iface)
    .map((r) => `${r.table} ${r.type} ${r.dst} ${r.protocol} ${r.scope}`)
    .sort()
    .join("\n");
}

/** Routes not made by the kernel for an address or link: in these namespaces, privhelper's. */
export async function madeRoutes(ns: string): Promise<RouteRow[]> {
  return (await liveRoutes(ns)).filter((r) => r.protocol !== "kernel" && r.type === "unicast" && r.table !== "local");
}

/** Table inet plexd as "chain hook: comment comment ..." lines, or undefined when absent. */
export async function liveFirewall(ns: string): Promise<string | undefined> {
  const r = await nsExec(ns, ["nft", "-j", "list", "table", "inet", "plexd"], { reject: false, timeoutMs: 60_000 });
  if (r.exitCode !== 0) return undefined;
  const objs = (JSON.parse(r.stdout) as { nftables: Record<string, Record<string, unknown>>[] }).nftables;
  const chains = new Map<string, string[]>();
  for (const o of objs) {
    if (o.chain) chains.set(String(o.chain.name), [`${String(o.chain.name)} ${String(o.chain.hook ?? "-")}:`]);
  }
  for (const o of objs) {
    if (o.rule) chains.get(String(o.rule.chain))?.push(String(o.rule.comment ?? "(no comment)"));
  }
  return [...chains.values()]
    .map((c) => c.join(" "))
    .sort()
    .join("\n");
}

/** Every nft table of the namespace as "family name". */
export async function nftTables(ns: string): Promise<string[]> {
  const r = await nsExec(ns, ["nft", "list", "tables"], { timeoutMs: 30_000 });
  return r.stdout
    .split("\n")
    .map((l) => l.replace(/^table /, "").trim())
    .filter(Boolean)
    .sort();
}

/** Processes in the namespace other than the ones named (privhelper's orphaned children). */
export async function namespacePidsExcept(ns: string, keep: readonly number[]): Promise<number[]> {
  return (await namespacePids(ns)).filter((p) => !keep.includes(p));
}

/** PIDs of wireguard-go processes serving `iface` (its last argument), anywhere on the machine. */
export function wireguardGoPids(iface: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0").filter(Boolean);
      if (argv[0]?.endsWith("wireguard-go") && argv.at(-1) === iface) out.push(Number(e));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}
