// Plain shapes the policy compiler produces: structurally the generated FirewallSpec
// messages (usable as their init shape), with every field present so a rendered spec
// and a ReadFirewall answer compare field by field.
import type { Protocol, RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";

export interface FirewallRulePlain {
  id: string;
  iifname: string;
  oifname: string;
  srcCidr: string;
  dstCidr: string;
  protocol: Protocol;
  portFrom: number;
  portTo: number;
  ctEstablished: boolean;
  action: RuleAction;
  jumpTarget: string;
  logPrefix: string;
  logRatePerSecond: number;
  /** RULE_ACTION_REDIRECT's target port (ingress below port 1024); absent or 0 otherwise. */
  redirectPort?: number;
}

export interface FirewallChainPlain {
  name: string;
  hook: string;
  rules: FirewallRulePlain[];
}

export interface FirewallSpecPlain {
  chains: FirewallChainPlain[];
}

export interface PolicyRuleInput {
  src: string;
  dst: string;
  port: number;
  protocol: string;
  action: string;
}

export interface PolicyInput {
  id: string;
  rules: readonly PolicyRuleInput[];
}

export interface InvalidRule {
  policy_id: string;
  index: number;
  reason: string;
}
