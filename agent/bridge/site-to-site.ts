// Site-to-site VPN (docs/bridge.md#site-to-site): WireGuard tunnels from this bridge to gateways
// of other networks. Tunnels come from the control plane's `site_to_site_config` block (single
// events already folded in), keyed by `tunnel_id`; each is checked on its own and the running set
// converges to the admitted ones (same id and content: untouched; changed: replaced). The service
// is its kernel part: one WireGuard device per tunnel (ApplyMesh also routes the remote subnets
// into it), forwarding on it, and the forward rules that let exactly the agreed traffic through.
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { formatEndpoint, parseHostPort } from "../../proto/lib/net.js";
import type { Logger } from "../util/log.js";
import { accessRoutingConfig } from "./access.js";
import type { BridgeFirewallRule, BridgeInput, BridgeKernelPart, BridgeService, BridgeServiceStatus, BridgeWgInterface } from "./service.js";
import { admitTunnels, parseTunnel, takenSubnets, type AdmittedTunnel, type RejectedTunnel, type Tunnel, type TunnelContext } from "./site-to-site-tunnels.js";

export interface DeviceKey {
  privateKey: string;
  publicKey: string;
}

export interface SiteToSiteDeps {
  log: Logger;
  dataDir: string;
  /** The tunnel device's key, generated once and kept in data_dir (docs/bridge.md#site-to-site). */
  deviceKey: (dataDir: string, name: string) => Promise<DeviceKey>;
  /** The mesh peers' allowed_ips: a remote subnet must not compete with them for routes. */
  peerPrefixes?: () => readonly string[];
  /** Host name → IPv4 address (tests replace it). */
  resolve?: (host: string) => Promise<string>;
}

/** WireGuard's usual keepalive: keeps NAT mappings on the way to the remote gateway open. */
const keepaliveSeconds = 25;

interface RunningTunnel {
  tunnel: AdmittedTunnel;
  /** `ip:port` the remote endpoint resolved to when the tunnel was added. */
  endpoint: string;
  key: DeviceKey;
}

async function resolveIPv4(host: string): Promise<string> {
  return (await lookup(host, { family: 4 })).address;
}

export class SiteToSiteService implements BridgeService {
  readonly name = "site_to_site" as const;
  readonly #d: SiteToSiteDeps;
  readonly #tunnels = new Map<string, RunningTunnel>();
  /** The last `site_to_site_config.tunnels` seen; an absent block leaves it (and the tunnels) as they are. */
  #wanted: readonly unknown[] = [];
  #rejected: RejectedTunnel[] = [];
  #meshInterface = "";
  #lanInterface = "";
  #maxTunnels = 0;
  #running = false;

  constructor(deps: SiteToSiteDeps) {
    this.#d = deps;
  }

  /** Always, in bridge mode: with no tunnels the service runs empty (and says so to the control plane). */
  wanted(): boolean {
    return true;
  }

  async apply(input: BridgeInput): Promise<void> {
    const block = input.desired.site_to_site_config;
    if (block !== undefined) this.#wanted = Array.isArray(block.tunnels) ? block.tunnels : [];
    const ctx = tunnelContext(input, this.#d.peerPrefixes?.() ?? []);
    this.#meshInterface = input.config.mesh.interface;
    this.#lanInterface = input.config.bridge.access_interface;
    this.#maxTunnels = ctx.maxTunnels;
    this.#running = true;
    await this.#converge(ctx);
  }

  stop(): Promise<void> {
    this.#tunnels.clear();
    this.#rejected = [];
    this.#running = false;
    return Promise.resolve();
  }

  async #converge(ctx: TunnelContext): Promise<void> {
    const rejected: RejectedTunnel[] = [];
    const candidates: Tunnel[] = [];
    const seen = new Set<string>();
    for (const raw of this.#wanted) {
      const t = parseTunnel(raw, ctx);
      if ("reason" in t) rejected.push(t);
      else if (seen.has(t.id)) rejected.push({ id: t.id, reason: "duplicate tunnel_id in site_to_site_config.tunnels" });
      else {
        seen.add(t.id);
        candidates.push(t);
      }
    }
    const unchanged = new Map([...this.#tunnels].filter(([id, rt]) => candidates.some((c) => c.id === id && c.key === rt.tunnel.key)).map(([id, rt]) => [id, rt.tunnel.port]));
    const previous = new Map([...this.#tunnels].map(([id, rt]) => [id, rt.tunnel.port]));
    const admission = admitTunnels(candidates, unchanged, ctx, previous);
    rejected.push(...admission.rejected);

    const next = new Map<string, RunningTunnel>();
    for (const t of admission.admitted) {
      const had = this.#tunnels.get(t.id);
      if (had && had.tunnel.key === t.key && had.tunnel.port === t.port) {
        next.set(t.id, had);
        continue;
      }
      const added = await this.#prepare(t);
      if (typeof added === "string") rejected.push({ id: t.id, reason: added });
      else next.set(t.id, added);
    }
    for (const [id, rt] of this.#tunnels) {
      const now = next.get(id);
      if (now === rt) continue;
      this.#d.log.info({ tunnel_id: id, interface: rt.tunnel.iface }, now ? "site-to-site tunnel replaced" : "site-to-site tunnel removed");
    }
    for (const [id, rt] of next) {
      if (this.#tunnels.get(id) === rt) continue;
      const t = rt.tunnel;
      this.#d.log.info({ tunnel_id: id, interface: t.iface, listen_port: t.port, endpoint: rt.endpoint, remote_subnets: t.remoteSubnets, local_subnets: t.localSubnets }, "site-to-site tunnel added");
    }
    this.#tunnels.clear();
    for (const [id, rt] of next) this.#tunnels.set(id, rt);

    const before = new Map(this.#rejected.map((r) => [r.id, r.reason]));
    for (const r of rejected) if (before.get(r.id) !== r.reason) this.#d.log.warn({ tunnel_id: r.id, reason: r.reason }, "site-to-site tunnel refused");
    this.#rejected = rejected;
  }

  /** The agent-side work of adding a tunnel: its endpoint's address and its device key. A failure refuses only this tunnel. */
  async #prepare(t: AdmittedTunnel): Promise<RunningTunnel | string> {
    const hp = parseHostPort(t.remoteEndpoint, { names: true })!;
    let host = hp.host;
    if (isIP(host) === 0) {
      try {
        host = await (this.#d.resolve ?? resolveIPv4)(host);
      } catch (err) {
        return `remote_endpoint: cannot resolve ${hp.host}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
      }
    }
    try {
      const key = await this.#d.deviceKey(this.#d.dataDir, t.iface);
      return { tunnel: t, endpoint: formatEndpoint(host, hp.port), key };
    } catch (err) {
      return `device key for ${t.iface}: ${(err as Error).message}`;
    }
  }

  get rejected(): readonly RejectedTunnel[] {
    return this.#rejected;
  }

  /** The running tunnels, for status views and tests (no key material but the public key). */
  tunnels(): { id: string; iface: string; port: number; endpoint: string; publicKey: string; remoteSubnets: string[]; localSubnets: string[] }[] {
    return [...this.#tunnels.values()].map(({ tunnel: t, endpoint, key }) => ({ id: t.id, iface: t.iface, port: t.port, endpoint, publicKey: key.publicKey, remoteSubnets: t.remoteSubnets, localSubnets: t.localSubnets }));
  }

  kernel(): BridgeKernelPart {
    const interfaces: BridgeWgInterface[] = [];
    const forward: BridgeFirewallRule[] = [];
    const forwarding = new Set<string>();
    for (const { tunnel: t, endpoint, key } of this.#tunnels.values()) {
      interfaces.push({
        name: t.iface,
        privateKey: key.privateKey,
        listenPort: t.port,
        peers: [{ publicKey: t.remotePublicKey, allowedIps: t.remoteSubnets, endpoint, ...(t.psk !== "" ? { presharedKey: t.psk } : {}), keepaliveSeconds }],
      });
      forwarding.add(t.iface);
      const id = (what: string) => `site_to_site:${t.id}:${what}`;
      // Replies to what the mesh or the LAN started toward the remote site (their destinations need not be in local_subnets).
      forward.push({ id: id("established"), iifname: t.iface, ctEstablished: true, verdict: "accept" });
      // One accept per (remote, local) pair of the same address family (a rule cannot mix them).
      for (const src of t.remoteSubnets) {
        for (const dst of t.localSubnets) if (src.includes(":") === dst.includes(":")) forward.push({ id: id(`${src}>${dst}`), iifname: t.iface, srcCidr: src, dstCidr: dst, verdict: "accept" });
      }
      // Anything else the remote site sends is not forwarded.
      forward.push({ id: id("drop"), iifname: t.iface, verdict: "drop" });
    }
    // Traffic toward the remote site enters from the mesh or from the LAN (forwarding is decided on the incoming interface).
    if (interfaces.length > 0) {
      forwarding.add(this.#meshInterface);
      if (this.#lanInterface !== "") forwarding.add(this.#lanInterface);
    }
    // Routes to the remote subnets come with the device: ApplyMesh routes every peer's allowed IPs.
    return { interfaces, forwarding: [...forwarding], forward };
  }

  status(): BridgeServiceStatus {
    const list = this.tunnels();
    const refused = this.#rejected.map((r) => `${r.id}: ${r.reason}`);
    const running = list.map((t) => `${t.id} ${t.iface} :${t.port} → ${t.endpoint} (${t.remoteSubnets.join(", ")})`);
    const detail = !this.#running
      ? "not running"
      : `${list.length} tunnel${list.length === 1 ? "" : "s"}${running.length > 0 ? `: ${running.join("; ")}` : ""}` + (refused.length > 0 ? `; refused: ${refused.join("; ")}` : "");
    return {
      name: this.name,
      running: this.#running,
      detail,
      counters: { tunnels: list.length, tunnels_refused: this.#rejected.length },
      heartbeat: { enabled: this.#running, tunnel_count: list.length },
      bridgeHeartbeat: { site_to_site_enabled: this.#running, active_site_to_site_tunnels: list.length },
      // The remote gateway needs this bridge's key and port: both are announced per tunnel.
      capabilities: this.#running
        ? {
            site_to_site: "true",
            max_site_to_site_tunnels: String(this.#maxTunnels),
            ...Object.fromEntries(list.flatMap((t) => [[`site_to_site_public_key_${t.id}`, t.publicKey], [`site_to_site_listen_port_${t.id}`, String(t.port)]])),
          }
        : {},
    };
  }
}

/** What a tunnel is checked against: the site-to-site defaults, the node's other ports and subnets, the pinning list. */
export function tunnelContext(input: BridgeInput, peerPrefixes: readonly string[]): TunnelContext {
  const { config } = input;
  const b = config.bridge;
  const reservedPorts = [{ port: config.mesh.listen_port, what: "mesh.listen_port" }];
  if (b.relay.enabled) reservedPorts.push({ port: b.relay.listen_port, what: "bridge.relay.listen_port" });
  b.access.forEach((a, i) => {
    if (a.type === "wireguard") reservedPorts.push({ port: a.listen_port, what: `bridge.access[${i}].listen_port` });
  });
  return {
    prefix: b.site_to_site_defaults.interface_prefix,
    basePort: b.site_to_site_defaults.listen_port,
    maxTunnels: b.site_to_site_defaults.max_tunnels,
    reservedPorts,
    taken: takenSubnets(accessRoutingConfig(input).subnets, peerPrefixes),
    routePolicy: { allowDefaultRoute: false, minRoutePrefix: { 4: config.mesh.min_route_prefix_v4, 6: config.mesh.min_route_prefix_v6 } },
    pins: b.site_to_site,
  };
}
