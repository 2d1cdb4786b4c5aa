// The firewall as privhelper reasons about it: a validated, canonical form of FirewallSpec.
// Rendering, parsing the live table and planning all work on this shape, so "the same spec
// twice changes nothing" is a comparison of canonical keys.
import { Protocol, RuleAction, type FirewallRule } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { PrivConfig } from "../config.js";

export const table = { family: "inet", name: "plexd" } as const;

export type Hook = "" | "input" | "forward" | "postrouting" | "prerouting";
export type Proto = "" | "tcp" | "udp" | "icmp";
export type Action = "accept" | "drop" | "jump" | "log" | "log_drop" | "masquerade" | "redirect";

/** CIDRs canonical ("10.100.0.2/32") or "" for any; portTo 0 for a single port. */
export interface NormRule {
  id: string;
  iifname: string;
  oifname: string;
  src: string;
  dst: string;
  protocol: Proto;
  portFrom: number;
  portTo: number;
  ct: boolean;
  action: Action;
  jump: string;
  logPrefix: string;
  logRate: number;
  /** Target port of a redirect; 0 otherwise. */
  redirectPort: number;
}

export interface NormChain { name: string; hook: Hook; rules: NormRule[] }

/** No chains: table inet plexd must not exist (policy.enabled: false). */
export interface DesiredFirewall { chains: NormChain[] }

/** Base chains and their fixed properties; a base chain's name is its hook. */
export const baseChains = {
  input: { type: "filter", prio: 0, prioName: "filter" },
  forward: { type: "filter", prio: 0, prioName: "filter" },
  postrouting: { type: "nat", prio: 100, prioName: "srcnat" },
  prerouting: { type: "nat", prio: -100, prioName: "dstnat" },
} as const;

export const isBaseChain = (name: string): name is keyof typeof baseChains => Object.hasOwn(baseChains, name);

/** Regular chains plexd may own: the fixed names plus the configured policy.chain_name. */
export function regularChainNames(cfg: Pick<PrivConfig, "chainName">): Set<string> {
  const names = new Set(["plexd-mesh", "plexd-access-in", "plexd-bridge-fwd", cfg.chainName]);
  for (const b of Object.keys(baseChains)) names.delete(b);
  return names;
}

export function ruleKey(r: NormRule): string {
  return `${r.id}|${r.iifname}|${r.oifname}|${r.src}|${r.dst}|${r.protocol}|${r.portFrom}|${r.portTo}|${r.ct ? 1 : 0}|${r.action}|${r.jump}|${r.logPrefix}|${r.logRate}|${r.redirectPort}`;
}

export const protoOf: Record<Proto, Protocol> = { "": Protocol.UNSPECIFIED, tcp: Protocol.TCP, udp: Protocol.UDP, icmp: Protocol.ICMP };
export const actionOf: Record<Action, RuleAction> = { accept: RuleAction.ACCEPT, drop: RuleAction.DROP, jump: RuleAction.JUMP, log: RuleAction.LOG, log_drop: RuleAction.LOG_DROP, masquerade: RuleAction.MASQUERADE, redirect: RuleAction.REDIRECT };
export const protoFromEnum = new Map<number, Proto>(Object.entries(protoOf).map(([k, v]) => [v, k as Proto]));
export const actionFromEnum = new Map<number, Action>(Object.entries(actionOf).map(([k, v]) => [v, k as Action]));

/** The wire shape of a canonical rule (every field set, so callers can compare directly). */
export function toWire(r: NormRule): Omit<FirewallRule, "$typeName" | "$unknown"> {
  const { id, iifname, oifname, src, dst, protocol, portFrom, portTo, ct, action, jump, logPrefix, logRate, redirectPort } = r;
  return { id, iifname, oifname, srcCidr: src, dstCidr: dst, protocol: protoOf[protocol], portFrom, portTo, ctEstablished: ct, action: actionOf[action], jumpTarget: jump, logPrefix, logRatePerSecond: logRate, redirectPort };
}
