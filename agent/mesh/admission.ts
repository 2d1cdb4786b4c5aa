import { checkMeshPeer, meshLimits, type RoutePolicy } from "../../proto/lib/mesh-peer.js";
import { formatEndpoint, isMeshIp, parseCidr, parseHostPort, type Cidr } from "../../proto/lib/net.js";
import type { Peer } from "./peer.js";
import { outermost, PrefixIndex } from "./prefix-index.js";

// Peer admission (docs/operations.md#quarantined-peers). A validly signed control plane can still send a peer that
// would harm the node or make privhelper refuse the whole mesh: a malformed endpoint, a prefix
// that takes the node's uplink, a key or addresses another peer already holds. Each peer is
// checked on its own with the rules privhelper applies (proto/lib/mesh-peer.ts) plus the
// agent's own, against what the admitted peers already hold. A peer that fails is quarantined:
// kept out of the kernel with a reason, never blocking the others. A collision is lost by the
// peer whose claim is new — the holder keeps what it has — and a quarantined peer is looked at
// again whenever something it collided with is given up.

export interface AdmissionContext {
  policy: RoutePolicy;
  /** This node's WireGuard public key: a peer with it would be the node itself. */
  ownPublicKey: string;
  /**
   * The current address of a DNS-name endpoint as `ip:port`; undefined while its first look-up
   * runs (the peer is then configured without an endpoint: WireGuard learns it from the peer's
   * handshake); `error` when the name has never resolved (the peer is quarantined with it).
   */
  resolve: (host: string, port: number, peerId: string) => string | undefined | { error: string };
}

/** The allowed IPs a peer is configured with: its own list, else its mesh /32. */
export function effectiveAllowedIps(p: Pick<Peer, "allowed_ips" | "mesh_ip">): string[] {
  return p.allowed_ips.length > 0 ? p.allowed_ips : [`${p.mesh_ip}/32`];
}

interface Decision {
  source: Peer;
  ownKey: string;
  /** The endpoint the decision was made with (a DNS name resolved, "", or why it did not resolve). */
  endpoint: string;
  /** The peer as configured (canonical endpoint and allowed IPs), when admitted. */
  admitted?: Peer;
  claims?: { key: string; prefixes: Cidr[]; wide: string[] };
  reason?: string;
  /** Quarantined because another peer holds its key or addresses: re-checked when they go. */
  collision?: boolean;
}

export type QuarantineListener = (id: string, reason: string | undefined, peer: Peer | undefined) => void;

export class PeerAdmission {
  readonly #decisions = new Map<string, Decision>();
  readonly #keyOwner = new Map<string, string>();
  readonly #prefixes = new PrefixIndex();
  /** Full-tunnel prefixes (shorter than mesh.min_route_prefix_v4/_v6) by holder. */
  readonly #wide = new Map<string, string>();
  /** Quarantined by a collision, in the order they were quarantined. */
  readonly #blocked = new Set<string>();
  #admittedCount = 0;
  readonly #listeners = new Set<QuarantineListener>();

  /** Called when a peer enters quarantine, changes its reason, or leaves it (reason undefined). */
  subscribe(l: QuarantineListener): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }

  /** The peer as it goes to the kernel, or undefined (unknown or quarantined). */
  admitted(id: string): Peer | undefined {
    return this.#decisions.get(id)?.admitted;
  }

  /** Every peer decided and not gone. */
  ids(): IterableIterator<string> {
    return this.#decisions.keys();
  }

  reasonOf(id: string): string | undefined {
    return this.#decisions.get(id)?.reason;
  }

  /** Every quarantined peer with its reason. */
  quarantined(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [id, d] of this.#decisions) if (d.reason !== undefined) out.set(id, d.reason);
    return out;
  }

  /** The id of the admitted peer holding `publicKey`. */
  ownerOfKey(publicKey: string): string | undefined {
    return this.#keyOwner.get(publicKey);
  }

  /**
   * Decides peer `id` (`peer` undefined: it is gone). Returns every id whose admitted form
   * changed — this one, and quarantined peers admitted because this one gave something up.
   */
  decide(id: string, peer: Peer | undefined, ctx: AdmissionContext): string[] {
    const prev = this.#decisions.get(id);
    if (peer === undefined) {
      if (prev === undefined) return [];
      this.#release(id, prev);
      this.#decisions.delete(id);
      if (prev.reason !== undefined) this.#emit(id, undefined, undefined);
      return [id, ...this.#recheckBlocked(ctx)];
    }
    const endpoint = resolvedEndpoint(peer, id, ctx);
    if (prev !== undefined && prev.source === peer && prev.ownKey === ctx.ownPublicKey && prev.endpoint === endpointKey(endpoint)) return [];
    const released = prev?.claims !== undefined;
    if (prev !== undefined) this.#release(id, prev);
    const d = this.#judge(id, peer, endpoint, ctx);
    this.#decisions.set(id, d);
    if (d.claims !== undefined) this.#hold(id, d.claims);
    if (d.collision === true) this.#blocked.add(id);
    if (d.reason !== prev?.reason) this.#emit(id, d.reason, peer);
    const changed = prev?.admitted === undefined && d.admitted === undefined ? [] : [id];
    return released ? [...changed, ...this.#recheckBlocked(ctx)] : changed;
  }

  #judge(id: string, peer: Peer, resolved: Resolved, ctx: AdmissionContext): Decision {
    const base = { source: peer, ownKey: ctx.ownPublicKey, endpoint: endpointKey(resolved) };
    const endpoint = typeof resolved === "object" ? "" : resolved;
    const quarantine = (reason: string, collision = false): Decision => ({ ...base, reason, ...(collision ? { collision } : {}) });
    if (peer.malformed !== undefined) return quarantine(peer.malformed);
    const problems: string[] = [];
    const add = (path: string, msg: string): void => void problems.push(`${path.replace(/^\./, "")}: ${msg}`);
    if (!isMeshIp(peer.mesh_ip)) add("mesh_ip", "must be an IPv4 address in 10.100.0.0/16");
    if (endpoint === undefined) add("endpoint", "must be empty or host:port (an IP address or a DNS name)");
    if (typeof resolved === "object") add("endpoint", resolved.error);
    const allowed = effectiveAllowedIps(peer);
    // Exactly what the mesh target will send, checked with privhelper's own rules.
    const checked = checkMeshPeer({ publicKey: peer.public_key, presharedKey: peer.psk, endpoint: endpoint ?? "", allowedIps: allowed, persistentKeepalive: 0 }, ctx.policy, "", add);
    if (problems.length > 0) return quarantine(problems.join("; "));
    if (peer.public_key === ctx.ownPublicKey) return quarantine("public_key: is this node's own key");

    const keyHolder = this.#keyOwner.get(peer.public_key);
    if (keyHolder !== undefined && keyHolder !== id) return quarantine(`public_key: already used by peer ${keyHolder}`, true);
    // A full-tunnel prefix (0.0.0.0/0, admitted only with mesh.allow_default_route) is the
    // fallback under every other peer's more specific ones — WireGuard routes by longest match —
    // so it collides only with the same prefix of another peer. The others may not overlap.
    const cidrs = checked.allowedIps.map((c) => parseCidr(c, true)!);
    const isWide = (c: Cidr): boolean => c.bits < ctx.policy.minRoutePrefix[c.family];
    const wide = cidrs.filter(isWide).map((c) => c.cidr);
    for (const c of wide) {
      const holder = this.#wide.get(c);
      if (holder !== undefined && holder !== id) return quarantine(`allowed_ips: ${c} is already routed to peer ${holder}`, true);
    }
    const prefixes = outermost(cidrs.filter((c) => !isWide(c)));
    for (const c of prefixes) {
      const holder = this.#prefixes.overlapping(c);
      if (holder !== undefined && holder.owner !== id) return quarantine(`allowed_ips: ${c.cidr} overlaps ${holder.cidr} of peer ${holder.owner}`, true);
    }
    if (this.#admittedCount >= meshLimits.peers) return quarantine(`the mesh already holds ${meshLimits.peers} peers`, true);
    const admitted: Peer = { ...peer, endpoint: checked.endpoint, allowed_ips: checked.allowedIps };
    return { ...base, admitted, claims: { key: peer.public_key, prefixes, wide } };
  }

  #hold(id: string, claims: NonNullable<Decision["claims"]>): void {
    this.#keyOwner.set(claims.key, id);
    for (const c of claims.prefixes) this.#prefixes.add(c, id);
    for (const c of claims.wide) this.#wide.set(c, id);
    this.#admittedCount++;
  }

  #release(id: string, d: Decision): void {
    this.#blocked.delete(id);
    if (d.claims === undefined) return;
    if (this.#keyOwner.get(d.claims.key) === id) this.#keyOwner.delete(d.claims.key);
    for (const c of d.claims.prefixes) this.#prefixes.remove(c, id);
    for (const c of d.claims.wide) if (this.#wide.get(c) === id) this.#wide.delete(c);
    this.#admittedCount--;
  }

  /** Peers quarantined by a collision get another look; returns those now admitted. */
  #recheckBlocked(ctx: AdmissionContext): string[] {
    const out: string[] = [];
    for (const b of [...this.#blocked]) {
      const d = this.#decisions.get(b);
      if (d === undefined) continue;
      this.#blocked.delete(b);
      const again = this.#judge(b, d.source, resolvedEndpoint(d.source, b, ctx), ctx);
      this.#decisions.set(b, again);
      if (again.claims !== undefined) this.#hold(b, again.claims);
      if (again.collision === true) this.#blocked.add(b);
      if (again.reason !== d.reason) this.#emit(b, again.reason, d.source);
      if (again.admitted !== undefined) out.push(b);
    }
    return out;
  }

  #emit(id: string, reason: string | undefined, peer: Peer | undefined): void {
    for (const l of this.#listeners) l(id, reason, peer);
  }
}

type Resolved = ReturnType<AdmissionContext["resolve"]>;
const endpointKey = (r: Resolved): string => (typeof r === "object" ? `unresolved: ${r.error}` : (r ?? ""));

/** The endpoint to configure: "" , a canonical IP endpoint, a DNS name's current address; undefined when invalid. */
function resolvedEndpoint(peer: Peer, id: string, ctx: AdmissionContext): Resolved {
  if (peer.endpoint === "") return "";
  const hp = parseHostPort(peer.endpoint, { names: true });
  if (hp === undefined) return undefined;
  if (hp.family !== undefined) return formatEndpoint(hp.host, hp.port);
  return ctx.resolve(hp.host, hp.port, id) ?? "";
}
