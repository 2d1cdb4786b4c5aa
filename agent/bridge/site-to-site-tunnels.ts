// Site-to-site tunnels as the control plane sends them (`site_to_site_config.tunnels[]`,
// `site_to_site_tunnel_assigned`), checked one by one and then admitted together
// (docs/bridge.md#site-to-site). A bad tunnel is refused with its reason and never stops the
// others; a tunnel already running keeps its place, its interface and its port, so only the
// newcomer is refused when tunnels collide or the limit is reached. Pure: no I/O here.
import { createHash } from "node:crypto";
import { z } from "zod";
import { isKey32 } from "../../proto/lib/keys.js";
import { routeRefusal, type RoutePolicy } from "../../proto/lib/mesh-peer.js";
import { cidr4Text, cidrContains, cidrOverlaps, meshRange, parseCidr, parseHostPort, type Cidr } from "../../proto/lib/net.js";

/** Most subnets per side of a tunnel: the forward chain holds one accept per (remote, local) pair. */
export const maxSubnetsPerSide = 32;

/** A tunnel that passed its own checks; `key` compares content (upsert by id: same key, no change). */
export interface Tunnel {
  id: string;
  /** `host:port` as sent; the host may be a DNS name, resolved when the tunnel is added. */
  remoteEndpoint: string;
  remotePublicKey: string;
  /** "" when absent. Never logged, never shown. */
  psk: string;
  localSubnets: string[];
  remoteSubnets: string[];
  iface: string;
  /** The port the control plane asked for, or undefined for "lowest free". */
  requestedPort: number | undefined;
  key: string;
}

export interface RejectedTunnel {
  id: string;
  reason: string;
}

export interface TunnelContext {
  /** bridge.site_to_site_defaults */
  prefix: string;
  basePort: number;
  maxTunnels: number;
  /** Ports other parts of the node own (mesh, relay, user access), with their config key. */
  reservedPorts: readonly { port: number; what: string }[];
  /** Subnets a remote subnet must not overlap, with what they are (mesh range, access subnets, peers' allowed IPs). */
  taken: readonly { cidr: string; what: string }[];
  routePolicy: RoutePolicy;
  /** bridge.site_to_site: when non-empty, only pinned tunnels are accepted. */
  pins: readonly { readonly name: string; readonly remote_endpoint: string; readonly remote_subnets: readonly string[] }[];
}

const cidrList = z.array(z.string()).max(maxSubnetsPerSide, `at most ${maxSubnetsPerSide} subnets`);
const wireTunnel = z.object({
  tunnel_id: z.string().min(1, "must not be empty").max(128, "at most 128 characters"),
  type: z.literal("wireguard", { error: "only wireguard is supported" }).nullish(),
  remote_endpoint: z.string(),
  remote_public_key: z.string().refine(isKey32, "must be a 32-byte base64 WireGuard key"),
  psk: z.string().refine((s) => s === "" || isKey32(s), "must be a 32-byte base64 key").nullish(),
  local_subnets: cidrList.default([]),
  remote_subnets: cidrList.min(1, "at least one subnet"),
  interface_name: z.string().nullish(),
  listen_port: z.number().int().min(1, "must be 1–65535").max(65535, "must be 1–65535").nullish(),
});

const ifnameRe = /^[A-Za-z0-9_-]{1,15}$/;

/** `prefix` + the first 8 hex digits of SHA-256(tunnel_id): stable across restarts and bridges. */
export function defaultInterfaceName(prefix: string, tunnelId: string): string {
  return prefix + createHash("sha256").update(tunnelId).digest("hex").slice(0, 8);
}

/**
 * The control plane's name when it is a valid interface name that privhelper accepts for a
 * tunnel (the prefix and at least one more character); else the derived one.
 */
export function interfaceNameFor(prefix: string, tunnelId: string, requested: string | null | undefined): string {
  const r = requested ?? "";
  return ifnameRe.test(r) && r.startsWith(prefix) && r.length > prefix.length ? r : defaultInterfaceName(prefix, tunnelId);
}

export function tunnelIdOf(raw: unknown): string {
  return typeof raw === "object" && raw !== null && typeof (raw as { tunnel_id?: unknown }).tunnel_id === "string" ? (raw as { tunnel_id: string }).tunnel_id : "?";
}

/** The context's subnets that are not routable through a tunnel, with what they are. */
export function takenSubnets(accessSubnets: readonly string[], peerPrefixes: readonly string[]): { cidr: string; what: string }[] {
  return [
    { cidr: cidr4Text(meshRange), what: "the mesh range" },
    ...accessSubnets.map((cidr) => ({ cidr, what: "an access subnet of this bridge" })),
    ...peerPrefixes.map((cidr) => ({ cidr, what: "a mesh peer's allowed_ips" })),
  ];
}

/** One tunnel, or every reason it is refused (with its field). Never echoes the PSK. */
export function parseTunnel(raw: unknown, ctx: TunnelContext): Tunnel | RejectedTunnel {
  const id = tunnelIdOf(raw);
  const parsed = wireTunnel.safeParse(raw);
  if (!parsed.success) return { id, reason: parsed.error.issues.map((i) => `${i.path.join(".") || "tunnel"}: ${i.message}`).join("; ") };
  const t = parsed.data;
  const problems: string[] = [];
  const ep = parseHostPort(t.remote_endpoint, { names: true });
  if (ep === undefined) problems.push("remote_endpoint: must be host:port");
  const cidrs = (field: "local_subnets" | "remote_subnets"): Cidr[] =>
    t[field].flatMap((s, i) => {
      const c = parseCidr(s, true);
      if (c === undefined) problems.push(`${field}[${i}]: ${s} is not a CIDR`);
      return c ?? [];
    });
  const local = cidrs("local_subnets");
  const remote = cidrs("remote_subnets");
  remote.forEach((c, i) => {
    const at = `remote_subnets[${i}]: ${c.cidr}`;
    // A tunnel never carries a default route, whatever mesh.allow_default_route says: it would take the bridge's own uplink.
    if (c.bits === 0) return problems.push(`${at} is a default route`);
    const short = routeRefusal(c, { ...ctx.routePolicy, allowDefaultRoute: false });
    if (short !== undefined) return problems.push(`remote_subnets[${i}]: ${short}`);
    const twin = remote.findIndex((o, j) => j < i && cidrOverlaps(o, c));
    if (twin >= 0) return problems.push(`${at} overlaps remote_subnets[${twin}]`);
    const clash = ctx.taken.find((x) => overlaps(x.cidr, c));
    if (clash !== undefined) return problems.push(`${at} overlaps ${clash.what} (${clash.cidr})`);
    const own = local.find((l) => cidrOverlaps(l, c));
    if (own !== undefined) return problems.push(`${at} overlaps local_subnets ${own.cidr}`);
    return undefined;
  });
  const port = t.listen_port ?? undefined;
  const reserved = ctx.reservedPorts.find((p) => p.port === port);
  if (reserved !== undefined) problems.push(`listen_port: ${port} is ${reserved.what}`);
  if (ctx.pins.length > 0) {
    const pin = ctx.pins.find((p) => p.name === t.tunnel_id);
    if (pin === undefined) problems.push(`not in bridge.site_to_site (pinned tunnels only: ${ctx.pins.map((p) => p.name).join(", ")})`);
    else {
      if (pin.remote_endpoint !== t.remote_endpoint) problems.push(`remote_endpoint: ${t.remote_endpoint} is not the pinned ${pin.remote_endpoint}`);
      remote.forEach((c, i) => {
        if (!pin.remote_subnets.some((p) => contains(p, c))) problems.push(`remote_subnets[${i}]: ${c.cidr} is not inside the pinned subnets of ${pin.name}`);
      });
    }
  }
  if (problems.length > 0 || ep === undefined) return { id, reason: problems.join("; ") };
  const psk = t.psk ?? "";
  const tunnel = {
    id: t.tunnel_id,
    remoteEndpoint: t.remote_endpoint,
    remotePublicKey: t.remote_public_key,
    psk,
    localSubnets: local.map((c) => c.cidr),
    remoteSubnets: remote.map((c) => c.cidr),
    iface: interfaceNameFor(ctx.prefix, t.tunnel_id, t.interface_name),
    requestedPort: port,
  };
  // The PSK takes part in the identity through its hash only: keys are compared, never kept twice.
  const key = JSON.stringify([tunnel.remoteEndpoint, tunnel.remotePublicKey, psk === "" ? "" : createHash("sha256").update(psk).digest("hex"), tunnel.localSubnets, tunnel.remoteSubnets, tunnel.iface, port ?? 0]);
  return { ...tunnel, key };
}

function overlaps(text: string, c: Cidr): boolean {
  const o = parseCidr(text, true);
  return o !== undefined && cidrOverlaps(o, c);
}

function contains(outerText: string, inner: Cidr): boolean {
  const o = parseCidr(outerText, true);
  return o !== undefined && cidrContains(o, inner);
}

export interface AdmittedTunnel extends Tunnel {
  port: number;
}

/**
 * Admits tunnels in two passes: the running ones first (`runningPorts`: id → port, only those
 * whose content is unchanged), then the newcomers in list order. Later tunnels that collide
 * with earlier ones (interface, port, overlapping remote subnets) or pass `maxTunnels` are refused.
 */
export function admitTunnels(
  candidates: readonly Tunnel[],
  runningPorts: ReadonlyMap<string, number>,
  ctx: TunnelContext,
  /** Ports running tunnels hold, also those whose content changed: a replaced tunnel keeps its port when it is still free. */
  previousPorts: ReadonlyMap<string, number> = runningPorts,
): { admitted: AdmittedTunnel[]; rejected: RejectedTunnel[] } {
  const admitted: AdmittedTunnel[] = [];
  const rejected: RejectedTunnel[] = [];
  const order = [...candidates.filter((c) => runningPorts.has(c.id)), ...candidates.filter((c) => !runningPorts.has(c.id))];
  for (const t of order) {
    const problems: string[] = [];
    const sameIface = admitted.find((a) => a.iface === t.iface);
    if (sameIface) problems.push(`interface ${t.iface} belongs to tunnel ${sameIface.id}`);
    const samePort = t.requestedPort !== undefined ? admitted.find((a) => a.port === t.requestedPort) : undefined;
    if (samePort) problems.push(`listen_port ${t.requestedPort} belongs to tunnel ${samePort.id}`);
    for (const r of t.remoteSubnets) {
      const other = admitted.find((a) => a.remoteSubnets.some((o) => overlaps(o, parseCidr(r, true)!)));
      if (other) problems.push(`remote subnet ${r} overlaps a remote subnet of tunnel ${other.id}`);
    }
    if (problems.length === 0 && admitted.length >= ctx.maxTunnels) problems.push(`more than bridge.site_to_site_defaults.max_tunnels (${ctx.maxTunnels}) tunnels`);
    if (problems.length > 0) {
      rejected.push({ id: t.id, reason: problems.join("; ") });
      continue;
    }
    // Port 0: chosen below, once every fixed port is known (the interface and subnets are taken now).
    admitted.push({ ...t, port: t.requestedPort ?? runningPorts.get(t.id) ?? 0 });
  }
  const used = new Set([...ctx.reservedPorts.map((p) => p.port), ...admitted.map((a) => a.port)]);
  const out: AdmittedTunnel[] = [];
  for (const a of admitted) {
    if (a.port !== 0) {
      out.push(a);
      continue;
    }
    const prev = previousPorts.get(a.id);
    const port = prev !== undefined && !used.has(prev) && prev >= ctx.basePort && prev < ctx.basePort + ctx.maxTunnels ? prev : lowestFree(ctx.basePort, ctx.maxTunnels, used);
    if (port === undefined) {
      rejected.push({ id: a.id, reason: `no free port in ${ctx.basePort}–${ctx.basePort + ctx.maxTunnels - 1}` });
      continue;
    }
    used.add(port);
    out.push({ ...a, port });
  }
  return { admitted: out, rejected };
}

function lowestFree(base: number, count: number, used: ReadonlySet<number>): number | undefined {
  for (let p = base; p < base + count && p <= 65535; p++) if (!used.has(p)) return p;
  return undefined;
}
