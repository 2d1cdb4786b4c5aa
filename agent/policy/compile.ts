// The policy compiler (docs/architecture.md#reconciliation-and-policy): a pure function from policies, the local
// node, the peer list and config to the visible peer set, the complete FirewallSpec for
// privhelper, and the rules that had to be skipped. It never touches the kernel; the
// firewall and mesh reconcilers feed its output to ApplyFirewall / ApplyMesh.
import { Protocol, RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { ruleId } from "./rule-id.js";
import { cidr4Contains, cidr4Text, parseIPv4Int } from "../../proto/lib/net.js";
import { clampToMesh, parseSelector, type Selector } from "./selector.js";
import type { FirewallChainPlain, FirewallRulePlain, FirewallSpecPlain, InvalidRule, PolicyInput } from "./types.js";

export type { FirewallChainPlain, FirewallRulePlain, FirewallSpecPlain, InvalidRule, PolicyInput, PolicyRuleInput } from "./types.js";

export interface PolicyConfig {
  /** policy.enabled: false → every peer visible, no firewall. */
  enabled: boolean;
  default: "deny" | "allow";
  logDenied: boolean;
  /** mesh.interface */
  meshInterface: string;
  mode: "node" | "bridge";
  /** policy.chain_name (default plexd-mesh). */
  chainName?: string;
}

export interface CompileInput {
  policies: readonly PolicyInput[];
  local: { id: string; meshIp: string };
  peers: Iterable<{ id: string; mesh_ip: string }>;
  config: PolicyConfig;
}

export interface CompiledPolicy {
  visiblePeerIds: Set<string>;
  /** null when policy.enabled is false: table inet plexd must not exist. */
  firewall: FirewallSpecPlain | null;
  invalidRules: InvalidRule[];
}

export const accessChain = "plexd-access-in";
export const denyLogPrefix = "plexd-deny ";
export const denyLogRate = 10;

type Addr = { kind: "any" } | { kind: "cidr"; network: number; bits: number; node?: string };

interface ValidRule {
  policyId: string;
  index: number;
  allow: boolean;
  protocol: "" | "tcp" | "udp";
  port: number;
  src: Addr;
  dst: Addr;
}

const protocolEnum = { "": Protocol.UNSPECIFIED, tcp: Protocol.TCP, udp: Protocol.UDP } as const;

function matches(a: Addr, nodeId: string, ip: number | undefined): boolean {
  if (a.kind === "any") return true;
  if (a.node !== undefined) return a.node === nodeId;
  return ip !== undefined && cidr4Contains(a, ip);
}

function addrText(a: Addr): string {
  return a.kind === "any" ? "" : cidr4Text(a);
}

/** Validates one rule and resolves its selectors; a string is the reason it is skipped. */
function resolveRule(
  raw: PolicyInput["rules"][number],
  ipById: { get(id: string): number | undefined },
  mode: PolicyConfig["mode"],
): Omit<ValidRule, "policyId" | "index"> | string {
  const reasons: string[] = [];
  const r = raw as unknown as Record<string, unknown>;
  const allow = r.action === "allow";
  if (r.action !== "allow" && r.action !== "deny") reasons.push(`action ${JSON.stringify(r.action)} must be allow or deny`);
  const protocol = r.protocol === undefined ? "" : r.protocol;
  if (protocol !== "" && protocol !== "tcp" && protocol !== "udp") reasons.push(`protocol ${JSON.stringify(protocol)} must be "", tcp or udp`);
  const port = r.port === undefined ? 0 : r.port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) reasons.push(`port ${JSON.stringify(port)} must be an integer 0-65535`);
  else if (port > 0 && protocol !== "tcp" && protocol !== "udp") reasons.push("a port requires protocol tcp or udp");
  const resolve = (field: "src" | "dst"): Addr | undefined => {
    const sel: Selector | { error: string } = parseSelector(r[field]);
    if ("error" in sel) {
      reasons.push(`${field}: ${sel.error}`);
      return undefined;
    }
    if (sel.kind === "any") return sel;
    if (sel.kind === "node") {
      // Never "any": an unresolvable node id would otherwise open the rule to everyone.
      const ip = ipById.get(sel.id);
      if (ip === undefined) {
        reasons.push(`${field}: unknown node id ${sel.id} (no mesh IP known)`);
        return undefined;
      }
      return { kind: "cidr", network: ip, bits: 32, node: sel.id };
    }
    const c = mode === "node" ? clampToMesh(sel) : sel;
    if (!c) {
      reasons.push(`${field}: ${cidr4Text(sel)} contains no mesh address (10.100.0.0/16)`);
      return undefined;
    }
    return { kind: "cidr", network: c.network, bits: c.bits };
  };
  const src = resolve("src");
  const dst = resolve("dst");
  if (reasons.length > 0 || !src || !dst) return reasons.join("; ");
  return { allow, protocol: protocol as ValidRule["protocol"], port: port as number, src, dst };
}

function plainRule(chain: string, fields: Partial<Omit<FirewallRulePlain, "id">>): FirewallRulePlain {
  const rule: Omit<FirewallRulePlain, "id"> = {
    iifname: "",
    oifname: "",
    srcCidr: "",
    dstCidr: "",
    protocol: Protocol.UNSPECIFIED,
    portFrom: 0,
    portTo: 0,
    ctEstablished: false,
    action: RuleAction.UNSPECIFIED,
    jumpTarget: "",
    logPrefix: "",
    logRatePerSecond: 0,
    ...fields,
  };
  return { id: ruleId(chain, rule), ...rule };
}

/**
 * Who a node may see (docs/architecture.md#reconciliation-and-policy), independent of the peer list: everyone, named node ids,
 * or peers whose mesh IP falls in a CIDR. Testing one peer costs O(CIDR grants), so a peer
 * event re-decides that one peer only.
 */
export interface Visibility {
  everyone: boolean;
  nodes: ReadonlySet<string>;
  cidrs: readonly Addr[];
}

export function isVisible(v: Visibility, peerId: string, meshIp: string): boolean {
  if (v.everyone || v.nodes.has(peerId)) return true;
  if (v.cidrs.length === 0) return false;
  const ip = parseIPv4Int(meshIp);
  return v.cidrs.some((c) => matches(c, peerId, ip));
}

export interface RulesInput {
  policies: readonly PolicyInput[];
  local: { id: string; meshIp: string };
  /** The mesh IP of a node id named by a rule; undefined when no such peer is known. */
  ipOf: (nodeId: string) => number | undefined;
  config: PolicyConfig;
}

export interface CompiledRules {
  visibility: Visibility;
  firewall: FirewallSpecPlain | null;
  invalidRules: InvalidRule[];
  /**
   * Node ids the rules name (known or not): only a change to one of these peers can change
   * the rules, so every other peer event leaves them as they are.
   */
  referenced: ReadonlySet<string>;
}

/** The peer-independent half of the compiler: rules, firewall and visibility. */
export function compileRules(input: RulesInput): CompiledRules {
  const { config } = input;
  const referenced = new Set<string>();
  const ipById = {
    get: (id: string): number | undefined => {
      if (id === input.local.id) return localIp;
      referenced.add(id);
      return input.ipOf(id);
    },
  };
  const localIp = parseIPv4Int(input.local.meshIp);
  if (localIp === undefined) throw new Error(`local mesh IP ${JSON.stringify(input.local.meshIp)} is not an IPv4 address`);

  // Policy id, then rule index: the render order of docs/architecture.md#reconciliation-and-policy (stable for equal ids).
  const ordered = input.policies.map((p, i) => ({ p, i })).sort((a, b) => (a.p.id < b.p.id ? -1 : a.p.id > b.p.id ? 1 : a.i - b.i));
  const valid: ValidRule[] = [];
  const invalidRules: InvalidRule[] = [];
  for (const { p } of ordered) {
    (Array.isArray(p.rules) ? p.rules : []).forEach((raw, index) => {
      const r = resolveRule(raw, ipById, config.mode);
      if (typeof r === "string") invalidRules.push({ policy_id: p.id, index, reason: r });
      else valid.push({ policyId: p.id, index, ...r });
    });
  }

  const local = input.local.id;
  let visibility: Visibility;
  if (!config.enabled || config.default === "allow") visibility = { everyone: true, nodes: new Set(), cidrs: [] };
  else {
    // P is visible iff an allow rule pairs the local node with P in either direction. Per
    // rule, the side that matches the local node grants every peer its other side matches:
    // node ids directly, `*` everyone, CIDRs by a test per peer — linear in rules, and
    // constant per peer.
    const nodes = new Set<string>();
    let everyone = false;
    const cidrs: Addr[] = [];
    const grant = (a: Addr) => {
      if (a.kind === "any") everyone = true;
      else if (a.node !== undefined) {
        if (a.node !== local) nodes.add(a.node);
      } else cidrs.push(a);
    };
    for (const r of valid) {
      if (!r.allow) continue;
      if (matches(r.src, local, localIp)) grant(r.dst);
      if (matches(r.dst, local, localIp)) grant(r.src);
    }
    visibility = { everyone, nodes, cidrs };
  }
  if (!config.enabled) return { visibility, firewall: null, invalidRules, referenced };

  const mesh = config.meshInterface;
  const meshChain = config.chainName ?? "plexd-mesh";
  const localCidr = `${input.local.meshIp}/32`;
  const policyRules: FirewallRulePlain[] = [];
  const seen = new Set<string>();
  const push = (r: FirewallRulePlain) => {
    // Two policies allowing the same traffic render one identical rule: keep the first.
    if (seen.has(r.id)) return;
    seen.add(r.id);
    policyRules.push(r);
  };
  for (const allowGroup of [false, true]) {
    for (const r of valid) {
      if (r.allow !== allowGroup) continue;
      const base = {
        iifname: mesh,
        srcCidr: addrText(r.src),
        protocol: protocolEnum[r.protocol],
        portFrom: r.port,
        action: r.allow ? RuleAction.ACCEPT : RuleAction.DROP,
      };
      if (config.mode === "bridge" && r.dst.kind === "any") {
        // Bridge: `*` covers this node and every node behind the bridge alike.
        push(plainRule(meshChain, base));
        continue;
      }
      if (matches(r.dst, local, localIp)) push(plainRule(meshChain, { ...base, dstCidr: localCidr }));
      // Bridge mode: traffic to other nodes is forwarded through this one (docs/architecture.md#reconciliation-and-policy).
      if (config.mode === "bridge" && r.dst.kind === "cidr" && r.dst.node !== local && addrText(r.dst) !== localCidr) {
        push(plainRule(meshChain, { ...base, dstCidr: addrText(r.dst) }));
      }
    }
  }

  const meshRules: FirewallRulePlain[] = [
    plainRule(meshChain, { iifname: mesh, ctEstablished: true, action: RuleAction.ACCEPT }),
    ...policyRules,
    plainRule(meshChain, { iifname: mesh, action: RuleAction.JUMP, jumpTarget: accessChain }),
  ];
  if (config.default === "deny") {
    if (config.logDenied) meshRules.push(plainRule(meshChain, { iifname: mesh, action: RuleAction.LOG, logPrefix: denyLogPrefix, logRatePerSecond: denyLogRate }));
    meshRules.push(plainRule(meshChain, { iifname: mesh, action: RuleAction.DROP }));
  }
  const jumpIn = (chain: string) => plainRule(chain, { iifname: mesh, action: RuleAction.JUMP, jumpTarget: meshChain });
  const chains: FirewallChainPlain[] = [
    { name: "input", hook: "input", rules: [jumpIn("input")] },
    { name: "forward", hook: "forward", rules: [jumpIn("forward")] },
    { name: meshChain, hook: "", rules: meshRules },
    { name: accessChain, hook: "", rules: [] },
  ];
  return { visibility, firewall: { chains }, invalidRules, referenced };
}

/** The whole compile over a peer list (tests, benchmarks, one-shot callers). */
export function compilePolicy(input: CompileInput): CompiledPolicy {
  const ipById = new Map<string, number>();
  const peers = [...input.peers];
  for (const p of peers) {
    const ip = parseIPv4Int(p.mesh_ip);
    if (ip !== undefined) ipById.set(p.id, ip);
  }
  const rules = compileRules({ policies: input.policies, local: input.local, config: input.config, ipOf: (id) => ipById.get(id) });
  const visiblePeerIds = new Set<string>();
  for (const p of peers) if (p.id !== input.local.id && isVisible(rules.visibility, p.id, p.mesh_ip)) visiblePeerIds.add(p.id);
  return { visiblePeerIds, firewall: rules.firewall, invalidRules: rules.invalidRules };
}
