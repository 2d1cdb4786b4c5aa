// The rules a WireGuard peer must meet before it reaches the kernel: one implementation for
// privhelper (which refuses a request that breaks them) and the agent (which quarantines a
// peer that breaks them, so that one bad peer never makes privhelper refuse the whole mesh).
// Values are parsed and re-serialised; what comes out is canonical text produced here.
//
// Pure, no module-level state: privhelper imports this.
import { isKey32 } from "./keys.js";
import { parseCidr, parseIpEndpoint, type Cidr, type Family } from "./net.js";

export const meshLimits = { peers: 20_000, allowedIpsPerPeer: 1_024, addresses: 16 } as const;

/** mesh.allow_default_route and mesh.min_route_prefix_v4/_v6, as both processes read them. */
export interface RoutePolicy {
  /** A peer may route any prefix, 0.0.0.0/0 and ::/0 included (full tunnel). */
  readonly allowDefaultRoute: boolean;
  /** Otherwise prefixes shorter than these are refused (0.0.0.0/1 + 128.0.0.0/1 is a default route too). */
  readonly minRoutePrefix: { readonly 4: number; readonly 6: number };
}

/** A peer as it crosses the privhelper socket (WireGuardPeer's fields). */
export interface MeshPeerInput {
  publicKey: string;
  presharedKey: string;
  endpoint: string;
  allowedIps: readonly string[];
  persistentKeepalive: number;
}

/** The same peer, canonical: allowed IPs without duplicates, sorted. */
export interface CheckedMeshPeer {
  publicKey: string;
  presharedKey: string;
  endpoint: string;
  allowedIps: string[];
  keepalive: number;
}

/** Receives one problem: where (a field path) and what. */
export type AddIssue = (path: string, msg: string) => unknown;

/** Why a prefix may not be routed to a peer, or undefined when it may. */
export function routeRefusal(c: Pick<Cidr, "family" | "bits" | "cidr">, policy: RoutePolicy): string | undefined {
  const min = policy.minRoutePrefix[c.family as Family];
  // A peer route for a default-like prefix would take the node's own uplink.
  if (c.bits < min && !policy.allowDefaultRoute) return `${c.cidr} is shorter than /${min} (mesh.min_route_prefix_v${c.family}); refused unless mesh.allow_default_route is true`;
  return undefined;
}

/** Checks one peer; every problem goes to `add` under `at`. The result is only meaningful without problems. */
export function checkMeshPeer(p: MeshPeerInput, policy: RoutePolicy, at: string, add: AddIssue): CheckedMeshPeer {
  if (!isKey32(p.publicKey)) add(`${at}.public_key`, "must be a 32-byte base64 key");
  if (p.presharedKey !== "" && !isKey32(p.presharedKey)) add(`${at}.preshared_key`, "must be empty or a 32-byte base64 key");
  const endpoint = p.endpoint === "" ? "" : parseIpEndpoint(p.endpoint);
  if (endpoint === undefined) add(`${at}.endpoint`, "must be empty or IP:port / [IPv6]:port");
  if (p.persistentKeepalive > 65535) add(`${at}.persistent_keepalive`, "must be 0-65535");
  if (p.allowedIps.length > meshLimits.allowedIpsPerPeer) add(`${at}.allowed_ips`, `at most ${meshLimits.allowedIpsPerPeer}`);
  const allowedIps = p.allowedIps.map((a, j) => {
    const c = parseCidr(a, true);
    if (!c) add(`${at}.allowed_ips[${j}]`, "must be an IPv4 or IPv6 CIDR");
    else {
      const refusal = routeRefusal(c, policy);
      if (refusal !== undefined) add(`${at}.allowed_ips[${j}]`, refusal);
    }
    return c?.cidr ?? "";
  });
  return { publicKey: p.publicKey, presharedKey: p.presharedKey, endpoint: endpoint ?? "", allowedIps: [...new Set(allowedIps)].sort(), keepalive: p.persistentKeepalive };
}

/** Keys and allowed IPs must be unique across the whole peer set (WireGuard keeps one owner per prefix). */
export function checkUniquePeers(peers: readonly Pick<CheckedMeshPeer, "publicKey" | "allowedIps">[], add: AddIssue, where: (i: number) => string): void {
  const keys = new Set<string>();
  const owners = new Map<string, number>();
  peers.forEach((p, i) => {
    if (keys.has(p.publicKey)) add(`${where(i)}.public_key`, "duplicate peer");
    keys.add(p.publicKey);
    for (const c of p.allowedIps) {
      const owner = owners.get(c);
      if (owner !== undefined) add(`${where(i)}.allowed_ips`, `${c} is also claimed by ${where(owner)}`);
      owners.set(c, i);
    }
  });
}
