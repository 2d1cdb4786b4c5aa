import type { ReadMeshResponse } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { Peer } from "../mesh/peer.js";

// tunnel_health and peer_latency (docs/telemetry.md#metrics): per-peer points keyed by the
// control plane's peer id. The kernel knows peers by public key only; the desired state maps
// keys to ids.

/** A handshake newer than this counts as a working tunnel (WireGuard rekeys every 2 minutes). */
export const handshakeFreshSec = 180;

export interface LatencySample {
  rttMs: number;
  sent: number;
  received: number;
  lossPercent: number;
  at: number;
}

export interface TunnelHealth {
  peer_id: string;
  endpoint: string;
  last_handshake_time: string | null;
  handshake_age_seconds: number | null;
  rx_bytes: number;
  tx_bytes: number;
  handshake_succeeded: boolean;
  packet_loss_percent: number | null;
}

export interface PeerLatency {
  peer_id: string;
  rtt_ms: number;
  probes_sent: number;
  probes_received: number;
}

/** One tunnel_health entry per desired peer the kernel has, in peer id order. */
export function tunnelHealth(peers: Record<string, Peer>, mesh: ReadMeshResponse, latency: ReadonlyMap<string, LatencySample> | undefined, now: number): TunnelHealth[] {
  const byKey = new Map<string, string>();
  for (const p of Object.values(peers)) byKey.set(p.public_key, p.id);
  const out: TunnelHealth[] = [];
  for (const k of mesh.peers) {
    const id = byKey.get(k.publicKey);
    if (id === undefined) continue;
    const hs = k.lastHandshake === undefined ? 0 : Number(k.lastHandshake.seconds) * 1000 + Math.floor(k.lastHandshake.nanos / 1e6);
    const age = hs > 0 ? Math.max(0, Math.floor((now - hs) / 1000)) : null;
    const l = latency?.get(id);
    out.push({
      peer_id: id,
      endpoint: k.endpoint,
      last_handshake_time: hs > 0 ? new Date(hs).toISOString() : null,
      handshake_age_seconds: age,
      rx_bytes: Number(k.rxBytes),
      tx_bytes: Number(k.txBytes),
      handshake_succeeded: age !== null && age <= handshakeFreshSec,
      packet_loss_percent: latency === undefined ? null : (l?.lossPercent ?? null),
    });
  }
  return out.sort((a, b) => (a.peer_id < b.peer_id ? -1 : a.peer_id > b.peer_id ? 1 : 0));
}

export function latencyPoint(peerId: string, s: LatencySample): PeerLatency {
  return { peer_id: peerId, rtt_ms: s.received > 0 ? s.rttMs : -1, probes_sent: s.sent, probes_received: s.received };
}
