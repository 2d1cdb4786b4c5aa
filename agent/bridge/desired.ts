// The bridge's desired state from the control plane (docs/bridge.md#overview): the state pull's
// blocks, with single events folded in by id. Assign = upsert by id (same content: no change);
// revoke = remove by id (unknown id: no change). `*_config_updated` changes nothing here: it
// only asks for a reconcile, whose pull brings the block.
import type { BridgeBlockName, BridgeDesired } from "./service.js";

export const bridgeBlockNames: readonly BridgeBlockName[] = ["bridge_config", "relay_config", "user_access_config", "ingress_config", "site_to_site_config"];

/** Keyed lists: the event prefix, its block, the list in the block and the item's id field. */
const keyed = [
  { prefix: "relay_session", block: "relay_config", list: "sessions", id: "session_id" },
  { prefix: "user_access_peer", block: "user_access_config", list: "peers", id: "public_key" },
  { prefix: "ingress_rule", block: "ingress_config", list: "rules", id: "rule_id" },
  { prefix: "site_to_site_tunnel", block: "site_to_site_config", list: "tunnels", id: "tunnel_id" },
] as const;

type Rec = Record<string, unknown>;
const isRec = (v: unknown): v is Rec => typeof v === "object" && v !== null && !Array.isArray(v);
const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

export type BridgeEventOutcome = "changed" | "unchanged" | "reconcile" | "invalid_payload" | "not_bridge";

/** Folds one verified bridge event into `desired` (mutated in place). */
export function foldBridgeEvent(desired: BridgeDesired, eventType: string, payload: unknown): BridgeEventOutcome {
  if (eventType.endsWith("_config_updated")) return "reconcile";
  const k = keyed.find((x) => eventType === `${x.prefix}_assigned` || eventType === `${x.prefix}_revoked`);
  if (!k) return "not_bridge";
  if (!isRec(payload) || typeof payload[k.id] !== "string" || payload[k.id] === "") return "invalid_payload";
  const id = payload[k.id] as string;
  const block: Rec = { ...(desired[k.block] ?? {}) };
  const items = (Array.isArray(block[k.list]) ? (block[k.list] as unknown[]) : []).filter(isRec);
  const at = items.findIndex((i) => i[k.id] === id);
  if (eventType.endsWith("_revoked")) {
    if (at < 0) return "unchanged";
    items.splice(at, 1);
  } else if (at >= 0 && same(items[at], payload)) return "unchanged";
  else if (at >= 0) items[at] = payload;
  else items.push(payload);
  desired[k.block] = { ...block, [k.list]: items };
  return "changed";
}

/** The blocks a state document carries; the others stay as they are (absent = leave the feature alone). */
export function foldBridgeBlocks(desired: BridgeDesired, doc: Partial<Record<BridgeBlockName, unknown>>): boolean {
  let changed = false;
  for (const name of bridgeBlockNames) {
    const b = doc[name];
    if (!isRec(b) || same(desired[name], b)) continue;
    desired[name] = b;
    changed = true;
  }
  return changed;
}

/**
 * The blocks as the desired-state cache stores them: ingress TLS private keys stay in memory
 * only (no secret in plaintext on disk). After a restart a terminate rule from the cache lacks
 * its key until the first state pull brings the block again.
 */
export function bridgeForDisk(desired: BridgeDesired): BridgeDesired {
  const ingress = desired.ingress_config;
  if (!isRec(ingress) || !Array.isArray(ingress.rules)) return desired;
  const rules = (ingress.rules as unknown[]).map((r) => (isRec(r) && "key_pem" in r ? { ...r, key_pem: undefined } : r));
  return { ...desired, ingress_config: { ...ingress, rules } };
}
