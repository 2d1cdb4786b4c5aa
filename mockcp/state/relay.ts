import { randomBytes } from "node:crypto";
import { ApiError, badRequest } from "./apierror.js";
import { HandshakeWatch, pairKey } from "./relay-handshakes.js";
import type { MockState, NodeRecord } from "./store.js";

// Relay sessions (docs/mockcp.md#relay-sessions): mockcp pairs two nodes through a bridge's UDP
// relay when both report a symmetric NAT, when no handshake follows between them
// (relay-nohandshake.ts), or when a test asks for it through the control API. The bridge gets
// `relay_session_assigned` and `relay_config` in its state; both nodes get `peer_endpoint_changed`
// to the relay address, and their Peer objects keep showing it while the session lasts.

export interface RelaySession {
  session_id: string;
  peer_a_id: string;
  peer_b_id: string;
  peer_a_endpoint: string;
  peer_b_endpoint: string;
  expires_at: string;
  relay_port?: number;
  /** mockcp's own bookkeeping (not sent to the bridge). */
  bridge_id: string;
  relay_address: string;
  /** Why the pair was relayed: both `symmetric`, no handshake followed, or by hand (control API). */
  reason: RelayReason;
}

export type RelayReason = "symmetric" | "no_handshake" | "manual";

export interface RelayBridge {
  node_id: string;
  /** `ip:port` the nodes send to; default: the bridge's reported IP and its `relay_listen_port` capability. */
  address: string | undefined;
}

export class RelayStore {
  /** Bridges named through the control API (others announce `bridge.relay` in their capabilities). */
  readonly bridges = new Map<string, RelayBridge>();
  readonly sessions = new Map<string, RelaySession>();
  /** Assign sessions on their own when both nodes of a pair are symmetric. */
  auto = true;
  /** Pairs whose session was revoked through the control API: not re-paired on their own. */
  readonly revokedPairs = new Set<string>();
  ttlMs = 3_600_000;
  /** Who has been online since when, and who reported a handshake with whom (the no-handshake rule). */
  readonly handshakes = new HandshakeWatch();

  forPair(a: string, b: string): RelaySession | undefined {
    for (const s of this.sessions.values()) if ((s.peer_a_id === a && s.peer_b_id === b) || (s.peer_a_id === b && s.peer_b_id === a)) return s;
    return undefined;
  }
}

const capsRelay = (n: NodeRecord): { relay?: unknown; relay_listen_port?: unknown } | undefined => {
  const caps = n.capabilities as { bridge?: { relay?: unknown; relay_listen_port?: unknown } } | null;
  return caps?.bridge;
};

/** The relay address of `node` if it is a relay bridge. */
export function relayAddressOf(state: MockState, node: NodeRecord): string | undefined {
  const named = state.relay.bridges.get(node.id);
  const caps = capsRelay(node);
  if (named === undefined && caps?.relay !== "true") return undefined;
  if (named?.address !== undefined) return named.address;
  const ip = node.endpoint?.public_endpoint.replace(/:\d+$/, "");
  const port = Number(caps?.relay_listen_port ?? 51821);
  return ip === undefined ? undefined : `${ip}:${port}`;
}

/** The endpoint `viewerId` should use for `peer`: the relay's while a session pairs them. */
export function relayedEndpoint(state: MockState, viewerId: string, peerId: string): string | undefined {
  return state.relay.forPair(viewerId, peerId)?.relay_address;
}

/** Sessions the bridge must run, for its state document; expired ones are dropped first. */
export function relayConfigOf(state: MockState, bridgeId: string): { sessions: WireSession[] } | undefined {
  const now = state.now();
  for (const s of [...state.relay.sessions.values()]) if (Date.parse(s.expires_at) <= now) state.relay.sessions.delete(s.session_id);
  const node = state.nodes.get(bridgeId);
  if (node === undefined || relayAddressOf(state, node) === undefined) return undefined;
  return { sessions: [...state.relay.sessions.values()].filter((s) => s.bridge_id === bridgeId).map(wire) };
}

/** A revocation through the control API: the pair stays unrelayed until assigned by hand. */
export function revokeRelayByHand(state: MockState, sessionId: string): RelaySession {
  const s = revokeRelay(state, sessionId);
  state.relay.revokedPairs.add(pairKey(s.peer_a_id, s.peer_b_id));
  return s;
}

type WireSession = Omit<RelaySession, "bridge_id" | "relay_address" | "reason">;
const wire = ({ bridge_id: _b, relay_address: _r, reason: _why, ...rest }: RelaySession): WireSession => rest;

export interface AssignOptions {
  bridgeId?: string;
  ttlMs?: number;
  relayPort?: number;
  sessionId?: string;
  /** Default `manual`. */
  reason?: RelayReason;
}

/** Pairs `a` and `b` through a bridge: events to the bridge and to both nodes. */
export function assignRelay(state: MockState, a: NodeRecord, b: NodeRecord, o: AssignOptions = {}): RelaySession {
  if (a.id === b.id) throw badRequest("peer_a and peer_b must differ");
  const bridge = o.bridgeId !== undefined ? state.nodeOr404(o.bridgeId) : state.activeNodes().find((n) => n.id !== a.id && n.id !== b.id && relayAddressOf(state, n) !== undefined);
  if (bridge === undefined) throw new ApiError(409, "no_relay_bridge", "no active bridge offers a relay");
  let address = relayAddressOf(state, bridge);
  if (address === undefined) throw new ApiError(409, "no_relay_bridge", `node ${bridge.id} is not a relay bridge (or has no known address)`);
  if (o.relayPort !== undefined) address = `${address.replace(/:\d+$/, "")}:${o.relayPort}`;
  const s: RelaySession = {
    session_id: o.sessionId ?? `rs_${randomBytes(6).toString("hex")}`,
    peer_a_id: a.id,
    peer_b_id: b.id,
    peer_a_endpoint: a.endpoint?.public_endpoint ?? "",
    peer_b_endpoint: b.endpoint?.public_endpoint ?? "",
    expires_at: new Date(state.now() + (o.ttlMs ?? state.relay.ttlMs)).toISOString(),
    ...(o.relayPort !== undefined ? { relay_port: o.relayPort } : {}),
    bridge_id: bridge.id,
    relay_address: address,
    reason: o.reason ?? "manual",
  };
  if (s.peer_a_endpoint === "" || s.peer_b_endpoint === "") throw new ApiError(409, "endpoint_unknown", "both nodes must have reported an endpoint");
  state.relay.revokedPairs.delete(pairKey(a.id, b.id));
  const previous = state.relay.forPair(a.id, b.id);
  if (previous) revokeRelay(state, previous.session_id, { restoreEndpoints: false });
  state.relay.sessions.set(s.session_id, s);
  state.publish(bridge.id, "relay_session_assigned", wire(s));
  state.publish(a.id, "peer_endpoint_changed", { peer_id: b.id, endpoint: address });
  state.publish(b.id, "peer_endpoint_changed", { peer_id: a.id, endpoint: address });
  return s;
}

/** Ends a session: `relay_session_revoked` to the bridge, the nodes' own endpoints back to each other. */
export function revokeRelay(state: MockState, sessionId: string, o: { restoreEndpoints?: boolean } = {}): RelaySession {
  const s = state.relay.sessions.get(sessionId);
  if (s === undefined) throw new ApiError(404, "session_not_found", `unknown relay session ${sessionId}`);
  state.relay.sessions.delete(sessionId);
  if (state.nodes.get(s.bridge_id)?.status === "active") state.publish(s.bridge_id, "relay_session_revoked", { session_id: s.session_id });
  if (o.restoreEndpoints !== false) {
    for (const [viewer, peer] of [
      [s.peer_a_id, s.peer_b_id],
      [s.peer_b_id, s.peer_a_id],
    ] as const) {
      const v = state.nodes.get(viewer);
      const p = state.nodes.get(peer);
      if (v?.status === "active" && p !== undefined) state.publish(viewer, "peer_endpoint_changed", { peer_id: peer, endpoint: p.endpoint?.public_endpoint ?? "" });
    }
  }
  return s;
}

/** A node that is in the mesh right now with a reported endpoint. */
export const onlineWithEndpoint = (n: NodeRecord): boolean => n.status === "active" && n.offlineSince === undefined && n.endpoint !== undefined;

/** A node the control plane may relay: it did not ask for `fallback: none`, and is no relay itself. */
export const relayable = (state: MockState, n: NodeRecord): boolean => n.endpoint?.relay_fallback !== false && relayAddressOf(state, n) === undefined;

/** After `node` reported its NAT (or a bridge appeared): pair every two symmetric nodes without a session. */
export function autoRelay(state: MockState): RelaySession[] {
  const now = state.now();
  for (const n of state.activeNodes()) state.relay.handshakes.online(n.id, onlineWithEndpoint(n), now);
  if (!state.relay.auto) return [];
  const out: RelaySession[] = [];
  const symmetric = state.activeNodes().filter((n) => n.endpoint?.nat_type === "symmetric" && relayable(state, n));
  for (let i = 0; i < symmetric.length; i++) {
    for (let j = i + 1; j < symmetric.length; j++) {
      const a = symmetric[i]!;
      const b = symmetric[j]!;
      if (state.relay.forPair(a.id, b.id) || state.relay.revokedPairs.has(pairKey(a.id, b.id))) continue;
      try {
        out.push(assignRelay(state, a, b, { reason: "symmetric" }));
      } catch (err) {
        if (err instanceof ApiError && err.status === 409) return out;
        throw err;
      }
    }
  }
  return out;
}
