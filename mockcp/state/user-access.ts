// A bridge's user-access clients as the other nodes see them (docs/mockcp.md#user-access): the
// tunnel addresses of the peers in the bridge's `user_access_config` block join the bridge's
// allowed IPs on every other node, so that their replies to a user go back through the bridge.
import { parseCidr } from "../../proto/lib/net.js";

type Rec = Record<string, unknown>;
const isRec = (v: unknown): v is Rec => typeof v === "object" && v !== null && !Array.isArray(v);

export function userAccessAddresses(block: Rec | undefined): string[] {
  if (!block || block.enabled === false || !Array.isArray(block.peers)) return [];
  const out: string[] = [];
  for (const p of block.peers) {
    if (!isRec(p) || !Array.isArray(p.allowed_ips)) continue;
    for (const a of p.allowed_ips) {
      const c = typeof a === "string" ? parseCidr(a.includes("/") ? a : `${a}/32`, true) : undefined;
      if (c && c.bits > 0) out.push(c.cidr);
    }
  }
  return [...new Set(out)].sort();
}

/** The block with one peer upserted (by public_key) or removed; a block not yet set starts enabled and empty. */
export function withUserAccessPeer(block: Rec | undefined, publicKey: string, peer: Rec | undefined): Rec {
  const b: Rec = { enabled: true, ...(block ?? {}) };
  const peers = (Array.isArray(b.peers) ? b.peers : []).filter((p) => !(isRec(p) && p.public_key === publicKey));
  return { ...b, peers: peer === undefined ? peers : [...peers, peer] };
}
