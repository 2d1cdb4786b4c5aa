import { ApiError } from "./apierror.js";
import { pairKey } from "./relay-handshakes.js";
import { assignRelay, onlineWithEndpoint, relayable, type RelaySession } from "./relay.js";
import type { MockState } from "./store.js";

// Relay when no handshake follows (docs/mockcp.md#relay-sessions). Two nodes whose NATs look
// harmless can still fail to meet (a port-restricted NAT facing a symmetric one, a firewall between
// them). Agents report each tunnel in `tunnel_health` metrics; when a pair has gone a grace period
// without a handshake after both came online with endpoints, mockcp pairs them through a relay
// bridge exactly as it pairs two symmetric nodes. The bookkeeping lives in relay-handshakes.ts.

interface MetricPoint {
  group?: unknown;
  timestamp?: unknown;
  peer_id?: unknown;
  data?: { peer_id?: unknown; handshake_succeeded?: unknown };
}

/** Records the `tunnel_health` points of one metrics upload and relays the reporter's pairs that are due. */
export function noteTunnelHealth(state: MockState, reporterId: string, items: readonly unknown[]): RelaySession[] {
  const now = state.now();
  const peers = new Set<string>();
  for (const item of items) {
    const p = item as MetricPoint;
    if (p.group !== "tunnel_health") continue;
    const peer = typeof p.peer_id === "string" ? p.peer_id : p.data?.peer_id;
    // A peer that has left the mesh may linger in the agent's kernel for a moment: not kept.
    if (typeof peer !== "string" || peer === reporterId || state.nodes.get(peer)?.status !== "active") continue;
    // The point's own time (a batch may have waited in the agent's buffer), never in the future.
    const at = Math.min(Date.parse(String(p.timestamp)) || now, now);
    state.relay.handshakes.report(reporterId, peer, p.data?.handshake_succeeded === true, at);
    peers.add(peer);
  }
  return peers.size === 0 ? [] : relayWithoutHandshake(state, [...peers].map((peer) => [reporterId, peer] as [string, string]));
}

/** Every pair some side has reported on (after a settings change or a new bridge). */
export const relayAllWithoutHandshake = (state: MockState): RelaySession[] => relayWithoutHandshake(state, state.relay.handshakes.pairs());

/** Assigns a session to each of `pairs` that is due; never to a pair revoked by hand, a bridge, or a node with `relay_fallback: false`. */
export function relayWithoutHandshake(state: MockState, pairs: readonly [string, string][]): RelaySession[] {
  const out: RelaySession[] = [];
  const watch = state.relay.handshakes;
  const now = state.now();
  for (const [aId, bId] of pairs) {
    const a = state.nodes.get(aId);
    const b = state.nodes.get(bId);
    for (const [id, n] of [
      [aId, a],
      [bId, b],
    ] as const) {
      if (n?.status === "active") watch.online(id, onlineWithEndpoint(n), now);
      else watch.forget(id);
    }
    if (!state.relay.auto || a === undefined || b === undefined || !relayable(state, a) || !relayable(state, b)) continue;
    if (state.relay.forPair(aId, bId) !== undefined || state.relay.revokedPairs.has(pairKey(aId, bId)) || !watch.due(aId, bId)) continue;
    try {
      out.push(assignRelay(state, a, b, { reason: "no_handshake" }));
    } catch (err) {
      // No relay bridge (yet): the next report tries again.
      if (err instanceof ApiError && err.status === 409) return out;
      throw err;
    }
  }
  return out;
}
