import { randomBytes } from "node:crypto";
import { z } from "zod";
import { badRequest } from "./apierror.js";
import type { Peer } from "./store.js";

/** A change to one peer in one node's desired state, made without pushing any event. */
export const peerOverride = z.object({
  remove: z.boolean().optional(),
  public_key: z.string().optional(),
  mesh_ip: z.string().optional(),
  endpoint: z.string().optional(),
  allowed_ips: z.array(z.string()).optional(),
  psk: z.string().optional(),
});
export type PeerOverride = z.infer<typeof peerOverride>;

/**
 * Drift injection: per viewing node, overrides applied to the peers its `GET /state`
 * returns. Nothing is pushed, so only the agent's periodic state pull can notice. Overrides
 * stay until cleared, also when the real peer changes.
 */
export class StateOverrides {
  readonly #byNode = new Map<string, Map<string, PeerOverride>>();
  // An extra peer's PSK must not change between state pulls, or every pull would look like drift.
  readonly #extraPsks = new Map<string, string>();

  set(viewerId: string, peerId: string, o: PeerOverride, known: boolean): void {
    if (!known && o.remove !== true && (o.public_key === undefined || o.mesh_ip === undefined)) {
      throw badRequest(`peer ${peerId} is not in this node's mesh: an extra peer needs public_key and mesh_ip`);
    }
    let m = this.#byNode.get(viewerId);
    if (m === undefined) {
      m = new Map();
      this.#byNode.set(viewerId, m);
    }
    m.set(peerId, o);
  }

  clear(viewerId: string, peerId?: string): void {
    if (peerId === undefined) this.#byNode.delete(viewerId);
    else this.#byNode.get(viewerId)?.delete(peerId);
  }

  list(viewerId: string): Record<string, PeerOverride> {
    return Object.fromEntries(this.#byNode.get(viewerId) ?? []);
  }

  /** `peers` as the viewer's desired state shows them: patched, hidden, or with extra peers. */
  apply(viewerId: string, peers: Peer[]): Peer[] {
    const m = this.#byNode.get(viewerId);
    if (m === undefined) return peers;
    const out: Peer[] = [];
    for (const p of peers) {
      const o = m.get(p.id);
      if (o === undefined) out.push(p);
      else if (o.remove !== true) out.push(patch(p, o));
    }
    const present = new Set(peers.map((p) => p.id));
    for (const [id, o] of m) {
      if (present.has(id) || o.remove === true || o.public_key === undefined || o.mesh_ip === undefined) continue;
      const mesh_ip = o.mesh_ip;
      out.push(patch({ id, public_key: o.public_key, mesh_ip, endpoint: "", allowed_ips: [`${mesh_ip}/32`], psk: this.#extraPsk(viewerId, id) }, o));
    }
    return out;
  }

  #extraPsk(viewerId: string, peerId: string): string {
    const k = `${viewerId}|${peerId}`;
    let v = this.#extraPsks.get(k);
    if (v === undefined) {
      v = randomBytes(32).toString("base64");
      this.#extraPsks.set(k, v);
    }
    return v;
  }
}

function patch(p: Peer, o: PeerOverride): Peer {
  return {
    ...p,
    ...(o.public_key !== undefined ? { public_key: o.public_key } : {}),
    ...(o.mesh_ip !== undefined ? { mesh_ip: o.mesh_ip } : {}),
    ...(o.endpoint !== undefined ? { endpoint: o.endpoint } : {}),
    ...(o.allowed_ips !== undefined ? { allowed_ips: o.allowed_ips } : {}),
    ...(o.psk !== undefined ? { psk: o.psk } : {}),
  };
}

