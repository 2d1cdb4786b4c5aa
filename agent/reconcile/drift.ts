import type { MeshSpec, ReadFirewallResponse, ReadMeshResponse } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { pskFingerprint } from "../../proto/lib/keys.js";
import { firewallDrift } from "../policy/drift.js";
import type { FirewallSpecPlain } from "../policy/types.js";
import type { DesiredState, Policy } from "../state/desired.js";
import type { StateDocument } from "../controlplane/state-pull.js";

// Drift (docs/architecture.md#reconciliation-and-policy, docs/mockcp.md#control-plane-api-what-agents-use): what the kernel or the store
// had that the rendered target did not. Pure functions, so the rules are table-testable.

export type CorrectionType =
  | "peer_added"
  | "peer_removed"
  | "peer_updated"
  | "policy_added"
  | "policy_removed"
  | "signing_keys_updated"
  | "metadata_updated"
  | "data_updated"
  | "secret_refs_updated"
  | "firewall_rule_added"
  | "firewall_rule_removed"
  | "interface_recreated";

export interface Correction {
  type: CorrectionType;
  detail: string;
}

/** WireGuard roaming is not drift: a changed endpoint counts only after 180 s without a handshake. */
export const roamingGraceMs = 180_000;

const sortedJoin = (xs: readonly string[]): string => [...xs].sort().join(",");

/** Live WireGuard state against the target; `idOf` maps public keys to peer ids for the report. */
export function meshDrift(target: MeshSpec, live: ReadMeshResponse, idOf: (publicKey: string) => string | undefined, now: number): Correction[] {
  if (!live.exists) return [{ type: "interface_recreated", detail: `interface ${target.interface} was missing` }];
  const out: Correction[] = [];
  const name = (pub: string): string => idOf(pub) ?? `key ${pub.slice(0, 8)}…`;
  const liveByKey = new Map(live.peers.map((p) => [p.publicKey, p]));
  for (const want of target.peers) {
    const got = liveByKey.get(want.publicKey);
    if (!got) {
      out.push({ type: "peer_added", detail: `peer ${name(want.publicKey)}` });
      continue;
    }
    const fields: string[] = [];
    if (sortedJoin(want.allowedIps) !== sortedJoin(got.allowedIps)) fields.push("allowed_ips");
    if (want.presharedKey !== "" && pskFingerprint(want.presharedKey) !== got.pskSha256) fields.push("psk");
    const handshakeMs = got.lastHandshake ? Number(got.lastHandshake.seconds) * 1000 : 0;
    if (want.endpoint !== "" && want.endpoint !== got.endpoint && now - handshakeMs > roamingGraceMs) fields.push("endpoint");
    if (fields.length > 0) out.push({ type: "peer_updated", detail: `peer ${name(want.publicKey)}: ${fields.join(", ")}` });
  }
  const wanted = new Set(target.peers.map((p) => p.publicKey));
  for (const got of live.peers) if (!wanted.has(got.publicKey)) out.push({ type: "peer_removed", detail: `peer ${name(got.publicKey)}` });
  if (!live.up) out.push({ type: "interface_recreated", detail: `interface ${target.interface} was down` });
  return out;
}

export function firewallCorrections(expected: FirewallSpecPlain | null, live: Pick<ReadFirewallResponse, "tableExists" | "chains">): Correction[] {
  return firewallDrift(expected, live).map((d) => ({
    type: /extra|unrecognised|exists but policy is disabled/.test(d) ? "firewall_rule_removed" : "firewall_rule_added",
    detail: d,
  }));
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** The pulled state against the store as events left it: what the event stream missed. */
export function stateDrift(store: Readonly<DesiredState>, doc: StateDocument, signingKeysChanged: boolean): Correction[] {
  const out: Correction[] = [];
  const pulled = new Map(doc.peers.map((p) => [p.id, p]));
  for (const [id, p] of pulled) {
    const had = store.peers[id];
    if (!had) out.push({ type: "peer_added", detail: `peer ${id}` });
    else {
      const fields: string[] = (["public_key", "mesh_ip", "endpoint", "psk"] as const).filter((f) => had[f] !== p[f]);
      if (sortedJoin(had.allowed_ips) !== sortedJoin(p.allowed_ips)) fields.push("allowed_ips");
      if (fields.length > 0) out.push({ type: "peer_updated", detail: `peer ${id}: ${fields.join(", ")}` });
    }
  }
  for (const id of Object.keys(store.peers)) if (!pulled.has(id)) out.push({ type: "peer_removed", detail: `peer ${id}` });
  const ids = (ps: readonly Policy[]): Set<string> => new Set(ps.map((p) => p.id));
  const had = ids(store.policies);
  const now = ids(doc.policies);
  for (const id of now) if (!had.has(id)) out.push({ type: "policy_added", detail: `policy ${id}` });
  for (const id of had) if (!now.has(id)) out.push({ type: "policy_removed", detail: `policy ${id}` });
  if (signingKeysChanged) out.push({ type: "signing_keys_updated", detail: "signing keys rotated" });
  if (!same(store.metadata, doc.metadata)) out.push({ type: "metadata_updated", detail: `${countChanged(store.metadata, doc.metadata)} keys changed` });
  const dataChanged = keyedChanges(store.data, doc.data);
  if (dataChanged > 0) out.push({ type: "data_updated", detail: `${dataChanged} keys changed` });
  const refsChanged = keyedChanges(store.secret_refs, doc.secret_refs);
  if (refsChanged > 0) out.push({ type: "secret_refs_updated", detail: `${refsChanged} keys changed` });
  return out;
}

function countChanged(a: Record<string, string>, b: Record<string, string>): number {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((k) => a[k] !== b[k]).length;
}

function keyedChanges(a: readonly { key: string; version: number }[], b: readonly { key: string; version: number }[]): number {
  const av = new Map(a.map((x) => [x.key, x.version]));
  const bv = new Map(b.map((x) => [x.key, x.version]));
  const keys = new Set([...av.keys(), ...bv.keys()]);
  return [...keys].filter((k) => av.get(k) !== bv.get(k)).length;
}
