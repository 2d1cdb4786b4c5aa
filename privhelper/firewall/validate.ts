// Allow-list validation of a FirewallSpec. Every value is checked and re-serialised here; the
// nft script is rendered only from the result, so nothing the caller wrote reaches nft as text.
import type { FirewallRule, FirewallSpec } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { isRouteInterface } from "../bridge-config.js";
import type { PrivConfig } from "../config.js";
import { parseCidr } from "../../proto/lib/net.js";
import { Issues, checkInterface } from "../validate.js";
import { actionFromEnum, baseChains, isBaseChain, protoFromEnum, regularChainNames, type DesiredFirewall, type Hook, type NormChain, type NormRule } from "./model.js";

export const firewallLimits = { rules: 50_000, chains: 16 } as const;
export const ruleIdRe = /^[0-9a-f]{8,32}$/;
// nft log prefixes may hold up to 127 bytes; a small charset keeps quoting trivial.
export const logPrefixRe = /^[A-Za-z0-9 _.:-]{1,64}$/;

const familyOf = (cidr: string): 4 | 6 => (cidr.includes(":") ? 6 : 4);

/** Per-request memo: 10,000 rules repeat a handful of CIDRs (the local address, the mesh). */
type Memo = Map<string, string | undefined>;

function validateRule(cfg: PrivConfig, chain: NormChain, r: FirewallRule, at: string, issues: Issues, regular: Set<string>, memo: Memo): NormRule {
  if (!ruleIdRe.test(r.id)) issues.add(`${at}.id`, "must be 8-32 lower-case hex characters");
  // Bridge rules also name the access, user-access and site-to-site interfaces (mode: bridge only).
  if (r.iifname !== "" && !isRouteInterface(cfg, r.iifname)) checkInterface(cfg, r.iifname, issues, `${at}.iifname`);
  if (r.oifname !== "" && !isRouteInterface(cfg, r.oifname)) checkInterface(cfg, r.oifname, issues, `${at}.oifname`);
  // Base chains see every packet of the host: a plexd rule there must name a plexd interface.
  if (chain.hook !== "" && r.iifname === "" && r.oifname === "") issues.add(at, `rules in base chain ${chain.name} must match iifname or oifname`);

  const cidr = (v: string, field: string): string => {
    if (v === "") return "";
    let c = memo.get(v);
    if (c === undefined && !memo.has(v)) memo.set(v, (c = parseCidr(v, true)?.cidr));
    if (!c) issues.add(`${at}.${field}`, "must be an IPv4 or IPv6 CIDR");
    else if (c.endsWith("/0")) issues.add(`${at}.${field}`, "a /0 prefix matches everything: leave the field empty instead");
    return c ?? "";
  };
  const src = cidr(r.srcCidr, "src_cidr");
  const dst = cidr(r.dstCidr, "dst_cidr");
  if (src !== "" && dst !== "" && familyOf(src) !== familyOf(dst)) issues.add(at, "src_cidr and dst_cidr must be the same address family");

  const protocol = protoFromEnum.get(r.protocol);
  if (protocol === undefined) issues.add(`${at}.protocol`, "unknown protocol");
  if (r.portFrom > 65535 || r.portTo > 65535) issues.add(at, "ports must be 0-65535");
  if (r.portTo !== 0 && r.portTo < r.portFrom) issues.add(`${at}.port_to`, "must be 0 or >= port_from");
  if (r.portFrom === 0 && r.portTo !== 0) issues.add(`${at}.port_from`, "required when port_to is set");
  if (r.portFrom !== 0 && protocol !== "tcp" && protocol !== "udp") issues.add(`${at}.protocol`, "a port needs protocol TCP or UDP");

  const action = actionFromEnum.get(r.action);
  if (action === undefined) issues.add(`${at}.action`, "must be set to a known action");
  if (action === "jump") {
    if (!regular.has(r.jumpTarget)) issues.add(`${at}.jump_target`, "must name a regular chain of this spec");
    else if (r.jumpTarget === chain.name) issues.add(`${at}.jump_target`, "a chain cannot jump to itself");
  } else if (r.jumpTarget !== "") issues.add(`${at}.jump_target`, "only for action JUMP");
  if (action === "log" || action === "log_drop") {
    if (!logPrefixRe.test(r.logPrefix)) issues.add(`${at}.log_prefix`, "must be 1-64 of [A-Za-z0-9 _.:-]");
    if (r.logRatePerSecond > 1_000_000) issues.add(`${at}.log_rate_per_second`, "at most 1000000");
    // A limit on a log-and-drop rule would let packets over the limit skip the drop.
    if (action === "log_drop" && r.logRatePerSecond !== 0) issues.add(`${at}.log_rate_per_second`, "not allowed with LOG_DROP (use LOG, then DROP)");
  } else if (r.logPrefix !== "" || r.logRatePerSecond !== 0) issues.add(at, "log_prefix/log_rate_per_second only for LOG and LOG_DROP");
  if (action === "masquerade" && chain.name !== "postrouting") issues.add(`${at}.action`, "MASQUERADE only in chain postrouting");
  if (r.ctEstablished && action !== "accept") issues.add(`${at}.ct_established`, "only with action ACCEPT");

  const [portTo, ct, jump, logRate] = [r.portTo === r.portFrom ? 0 : r.portTo, r.ctEstablished, r.jumpTarget, r.logRatePerSecond];
  return { id: r.id, iifname: r.iifname, oifname: r.oifname, src, dst, protocol: protocol ?? "", portFrom: r.portFrom, portTo, ct, action: action ?? "drop", jump, logPrefix: r.logPrefix, logRate };
}

export function validateFirewallSpec(cfg: PrivConfig, spec: FirewallSpec | undefined): DesiredFirewall {
  const issues = new Issues();
  if (!spec) {
    issues.add("spec", "required");
    issues.throwIfAny();
  }
  const s = spec as FirewallSpec;
  if (s.chains.length > firewallLimits.chains) issues.add("spec.chains", `at most ${firewallLimits.chains}`);
  const total = s.chains.reduce((n, c) => n + c.rules.length, 0);
  if (total > firewallLimits.rules) issues.add("spec.chains", `at most ${firewallLimits.rules} rules in all (got ${total})`);
  issues.throwIfAny();

  const allowedRegular = regularChainNames(cfg);
  const names = new Set<string>();
  const regularInSpec = new Set<string>();
  s.chains.forEach((c, i) => {
    if (names.has(c.name)) issues.add(`spec.chains[${i}].name`, `duplicate chain ${c.name}`);
    names.add(c.name);
    if (isBaseChain(c.name)) {
      if (c.hook !== c.name) issues.add(`spec.chains[${i}].hook`, `base chain ${c.name} must have hook ${c.name}`);
    } else if (allowedRegular.has(c.name)) {
      if (c.hook !== "") issues.add(`spec.chains[${i}].hook`, `${c.name} is a regular chain: hook must be empty`);
      regularInSpec.add(c.name);
    } else {
      issues.add(`spec.chains[${i}].name`, `${JSON.stringify(c.name.slice(0, 40))} is not a plexd chain (allowed: ${[...Object.keys(baseChains), ...allowedRegular].join(", ")})`);
    }
  });
  issues.throwIfAny();

  const ids = new Set<string>();
  const memo: Memo = new Map();
  const chains = s.chains.map((c, i) => {
    const chain: NormChain = { name: c.name, hook: c.hook as Hook, rules: [] };
    c.rules.forEach((r, j) => {
      const at = `spec.chains[${i}].rules[${j}]`;
      const rule = validateRule(cfg, chain, r, at, issues, regularInSpec, memo);
      // Ids map live rules back to spec rules (docs/architecture.md#privhelper), so they must be unique.
      if (ids.has(rule.id)) issues.add(`${at}.id`, `duplicate rule id ${rule.id}`);
      ids.add(rule.id);
      chain.rules.push(rule);
    });
    return chain;
  });
  issues.throwIfAny();
  return { chains };
}
