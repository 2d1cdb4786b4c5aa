// User-access peers (docs/bridge.md#user-access): which of the control plane's peers the bridge
// admits to its WireGuard access device, and which forward rules the policy gives them. Pure, so
// every refusal and every rule is tested without a kernel.
import { isKey32 } from "../../proto/lib/keys.js";
import { cidrContains, cidrOverlaps, parseCidr, type Cidr } from "../../proto/lib/net.js";
import { compileRules } from "../policy/compile.js";
import type { PolicyInput } from "../policy/types.js";
import { Protocol, RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { BridgeFirewallRule } from "./service.js";

export interface AccessPeer {
  publicKey: string;
  /** Canonical IPv4 CIDRs: the client's tunnel addresses. */
  allowedIps: string[];
  psk?: string;
  label: string;
}

export interface RefusedPeer {
  publicKey: string;
  label: string;
  reason: string;
}

/** What admission checks against: the limit, and the addresses the mesh already routes. */
export interface AdmitContext {
  maxPeers: number;
  /** The device's own public key (a client cannot have it). */
  devicePublicKey: string;
  /** The bridge's mesh IP and every mesh peer's allowed_ips: a client address must not overlap them. */
  meshPrefixes: readonly string[];
}

type Rec = Record<string, unknown>;
const isRec = (v: unknown): v is Rec => typeof v === "object" && v !== null && !Array.isArray(v);
const short = (key: string) => `${key.slice(0, 8)}…`;

/** One peer's shape, or every problem with it (the overlap checks come later, in admitPeers). */
export function parsePeer(raw: unknown, index: number): AccessPeer | RefusedPeer {
  const r = isRec(raw) ? raw : {};
  const publicKey = typeof r.public_key === "string" ? r.public_key : "";
  const label = typeof r.label === "string" ? r.label : "";
  const reasons: string[] = [];
  if (!isRec(raw)) reasons.push(`peers[${index}]: must be an object`);
  else if (!isKey32(publicKey)) reasons.push("public_key: not a WireGuard key (44 characters of base64)");
  const ips = Array.isArray(r.allowed_ips) ? r.allowed_ips : undefined;
  const allowedIps: string[] = [];
  if (isRec(raw) && (ips === undefined || ips.length === 0)) reasons.push("allowed_ips: must list the client's tunnel addresses");
  (ips ?? []).forEach((v, i) => {
    const c = typeof v === "string" ? parseCidr(v.includes("/") ? v : `${v}/32`, true) : undefined;
    if (!c) reasons.push(`allowed_ips[${i}]: ${JSON.stringify(v)} is not a CIDR`);
    else if (c.bits === 0) reasons.push(`allowed_ips[${i}]: ${c.cidr} is a default route`);
    else if (c.family !== 4) reasons.push(`allowed_ips[${i}]: ${c.cidr} is IPv6 (the mesh and its policies are IPv4)`);
    else allowedIps.push(c.cidr);
  });
  if (r.psk !== undefined && r.psk !== "" && (typeof r.psk !== "string" || !isKey32(r.psk))) reasons.push("psk: not a WireGuard key (44 characters of base64)");
  if (reasons.length > 0) return { publicKey, label, reason: reasons.join("; ") };
  return { publicKey, label, allowedIps: [...new Set(allowedIps)], ...(typeof r.psk === "string" && r.psk !== "" ? { psk: r.psk } : {}) };
}

const isRefused = (p: AccessPeer | RefusedPeer): p is RefusedPeer => "reason" in p;

/**
 * The peers to run, in list order: the ones already running first keep their place when the
 * list outgrows max_peers (only a newcomer is refused), then the others while there is room.
 */
export function admitPeers(list: readonly unknown[], running: ReadonlySet<string>, ctx: AdmitContext): { peers: AccessPeer[]; refused: RefusedPeer[] } {
  const parsed = list.map((raw, i) => parsePeer(raw, i));
  const order = [...parsed.filter((p) => !isRefused(p) && running.has(p.publicKey)), ...parsed.filter((p) => isRefused(p) || !running.has(p.publicKey))];
  const mesh = ctx.meshPrefixes.flatMap((s) => parseCidr(s.includes("/") ? s : `${s}/32`, true) ?? []);
  const taken: { cidr: Cidr; owner: string }[] = [];
  const peers: AccessPeer[] = [];
  const refused: RefusedPeer[] = [];
  const keys = new Set<string>();
  for (const p of order) {
    if (isRefused(p)) {
      refused.push(p);
      continue;
    }
    const refuse = (reason: string) => refused.push({ publicKey: p.publicKey, label: p.label, reason });
    if (keys.has(p.publicKey)) {
      refuse("public_key: listed twice");
      continue;
    }
    if (p.publicKey === ctx.devicePublicKey) {
      refuse("public_key: is the bridge's own access key");
      continue;
    }
    const reasons: string[] = [];
    for (const text of p.allowedIps) {
      const c = parseCidr(text, true)!;
      const m = mesh.find((x) => cidrOverlaps(x, c));
      if (m) reasons.push(`allowed_ips: ${c.cidr} overlaps ${m.cidr}, which the mesh routes to a node`);
      const t = taken.find((x) => cidrOverlaps(x.cidr, c));
      if (t) reasons.push(`allowed_ips: ${c.cidr} overlaps ${t.cidr.cidr} of peer ${t.owner}`);
    }
    if (reasons.length > 0) {
      refuse(reasons.join("; "));
      continue;
    }
    if (peers.length >= ctx.maxPeers) {
      refuse(`max_peers (${ctx.maxPeers}) reached`);
      continue;
    }
    keys.add(p.publicKey);
    peers.push(p);
    for (const text of p.allowedIps) taken.push({ cidr: parseCidr(text, true)!, owner: p.label || short(p.publicKey) });
  }
  return { peers, refused };
}

export interface PolicyView {
  policies: readonly PolicyInput[];
  local: { id: string; meshIp: string };
  /** The mesh IP of a node id named by a rule. */
  ipOf: (nodeId: string) => number | undefined;
}

const protoName = { [Protocol.TCP]: "tcp", [Protocol.UDP]: "udp", [Protocol.ICMP]: "icmp" } as Partial<Record<Protocol, "tcp" | "udp" | "icmp">>;

/**
 * Chain `plexd-bridge-fwd` for the access device: established replies, then, for every policy
 * rule whose `src` is an address or CIDR meeting a client's allowed_ips, that rule on the device
 * with `saddr` narrowed to the shared part (deny rules before allow rules, as in the mesh
 * chain), and last a drop of everything else from the device. A `*` or node-id `src` never
 * names a client: users get only what a rule grants their addresses.
 */
export function accessForwardRules(device: string, peers: readonly AccessPeer[], view: PolicyView | undefined): BridgeFirewallRule[] {
  const rules: BridgeFirewallRule[] = [{ id: "user_access:established", ctEstablished: true, verdict: "accept" }];
  const clients = peers.flatMap((p) => p.allowedIps.map((a) => parseCidr(a, true)!));
  if (view && clients.length > 0) {
    // The mesh chain as a bridge renders it (destinations behind the bridge included), on the
    // access device; policy.enabled does not matter here: the device is closed unless a rule opens it.
    const compiled = compileRules({ policies: view.policies, local: view.local, ipOf: view.ipOf, config: { enabled: true, default: "deny", logDenied: false, meshInterface: device, mode: "bridge" } });
    const localDst = `${view.local.meshIp}/32`;
    for (const chain of compiled.firewall?.chains ?? []) {
      for (const r of chain.rules) {
        if (r.iifname !== device || r.srcCidr === "" || (r.action !== RuleAction.ACCEPT && r.action !== RuleAction.DROP) || r.dstCidr === localDst) continue;
        const src = parseCidr(r.srcCidr, true);
        if (!src) continue;
        for (const c of clients) {
          if (!cidrOverlaps(src, c)) continue;
          const saddr = cidrContains(src, c) ? c.cidr : src.cidr;
          const proto = protoName[r.protocol];
          rules.push({
            id: `user_access:${r.id}:${saddr}`,
            iifname: device,
            srcCidr: saddr,
            ...(r.dstCidr !== "" ? { dstCidr: r.dstCidr } : {}),
            ...(proto ? { protocol: proto } : {}),
            ...(r.portFrom > 0 ? { portFrom: r.portFrom } : {}),
            verdict: r.action === RuleAction.ACCEPT ? "accept" : "drop",
          });
        }
      }
    }
  }
  rules.push({ id: `user_access:drop:${device}`, iifname: device, verdict: "drop" });
  return rules;
}
