// Rule identity (design.md 2): nft comments hold at most 128 bytes, so each rendered rule
// carries a short hash of its canonical form. The chain name is part of the form, so the
// same match in two chains (the input and forward jumps) still has distinct ids, and ids
// are unique in a whole FirewallSpec.
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import type { FirewallRulePlain } from "./types.js";

export function ruleId(chain: string, rule: Omit<FirewallRulePlain, "id">): string {
  const { iifname, oifname, srcCidr, dstCidr, protocol, portFrom, portTo, ctEstablished, action, jumpTarget, logPrefix, logRatePerSecond } = rule;
  const form = canonicalize({ chain, iifname, oifname, srcCidr, dstCidr, protocol, portFrom, portTo, ctEstablished, action, jumpTarget, logPrefix, logRatePerSecond }) ?? "";
  return createHash("sha256").update(form).digest("hex").slice(0, 16);
}
