import type { PrivClient } from "../privclient/client.js";
import type { Peer } from "../mesh/peer.js";
import type { LatencySample } from "./metrics-peers.js";

// Peer latency through privhelper's PingPeers: ICMP echo over the mesh interface, count 3 with
// a 1 s reply timeout, at most 32 peers per call. An unreachable peer is data (loss 100 %,
// rtt -1), not an error; a failing call is.

export const pingBatch = 32;
export const probesPerPeer = 3;

export interface LatencyRound {
  at: number;
  samples: Map<string, LatencySample>;
}

/** Probes every peer with a mesh address; resolves with one sample per answered call. */
export async function probePeers(priv: PrivClient, peers: Peer[], now: () => number, signal: AbortSignal): Promise<LatencyRound> {
  const byIp = new Map<string, string>();
  for (const p of peers) if (p.mesh_ip !== "" && p.malformed === undefined) byIp.set(p.mesh_ip, p.id);
  const ips = [...byIp.keys()];
  const samples = new Map<string, LatencySample>();
  for (let i = 0; i < ips.length; i += pingBatch) {
    const chunk = ips.slice(i, i + pingBatch);
    const res = await priv.pingPeers({ addresses: chunk, count: probesPerPeer }, { signal, timeoutMs: 30_000 });
    const at = now();
    for (const r of res.results) {
      const id = byIp.get(r.address);
      if (id === undefined) continue;
      const sent = r.sent > 0 ? r.sent : probesPerPeer;
      samples.set(id, {
        rttMs: r.received > 0 ? Math.round(r.rttAvgMs * 1000) / 1000 : -1,
        sent,
        received: r.received,
        lossPercent: Math.round(((sent - r.received) / sent) * 10_000) / 100,
        at,
      });
    }
  }
  return { at: now(), samples };
}
