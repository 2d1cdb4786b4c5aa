// Merges the services' kernel parts into what privhelper takes: one RouteSpec and the bridge's
// chains of the FirewallSpec (docs/bridge.md). Pure, so the merge is tested without a kernel.
import { Protocol, RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { FirewallChainPlain, FirewallRulePlain } from "../policy/types.js";
import { ruleId } from "../policy/rule-id.js";
import type { BridgeFirewallRule, BridgeKernelPart } from "./service.js";

export interface RouteSpecPlain { routes: { destination: string; interface: string }[]; forwarding: string[] }

export function mergeRoutes(parts: readonly BridgeKernelPart[]): RouteSpecPlain {
  const routes = new Map<string, { destination: string; interface: string }>();
  for (const p of parts) for (const r of p.routes ?? []) routes.set(`${r.dst} ${r.dev}`, { destination: r.dst, interface: r.dev });
  const forwarding = new Set(parts.flatMap((p) => p.forwarding ?? []));
  return { routes: [...routes.values()].sort((a, b) => a.destination.localeCompare(b.destination)), forwarding: [...forwarding].sort() };
}

/** A part without what names a device in `gone` (its ApplyMesh failed): all or nothing per item. */
export function withoutDevices(part: BridgeKernelPart, gone: ReadonlySet<string>): BridgeKernelPart {
  if (gone.size === 0) return part;
  const keep = (r: BridgeFirewallRule) => !gone.has(r.iifname ?? "") && !gone.has(r.oifname ?? "");
  return {
    ...part,
    ...(part.interfaces ? { interfaces: part.interfaces.filter((i) => !gone.has(i.name)) } : {}),
    ...(part.routes ? { routes: part.routes.filter((r) => !gone.has(r.dev)) } : {}),
    ...(part.forwarding ? { forwarding: part.forwarding.filter((f) => !gone.has(f)) } : {}),
    ...(part.forward ? { forward: part.forward.filter(keep) } : {}),
    ...(part.postrouting ? { postrouting: part.postrouting.filter(keep) } : {}),
    ...(part.prerouting ? { prerouting: part.prerouting.filter(keep) } : {}),
  };
}

const protoOf = { tcp: Protocol.TCP, udp: Protocol.UDP, icmp: Protocol.ICMP } as const;
const actionOf = { accept: RuleAction.ACCEPT, drop: RuleAction.DROP, masquerade: RuleAction.MASQUERADE, redirect: RuleAction.REDIRECT } as const;

function plain(chain: string, r: BridgeFirewallRule): FirewallRulePlain | undefined {
  const fields = {
    iifname: r.iifname ?? "",
    oifname: r.oifname ?? "",
    srcCidr: r.srcCidr ?? "",
    dstCidr: r.dstCidr ?? "",
    protocol: r.protocol ? protoOf[r.protocol] : Protocol.UNSPECIFIED,
    portFrom: r.portFrom ?? 0,
    portTo: r.portTo ?? 0,
    ctEstablished: r.ctEstablished ?? false,
    action: actionOf[r.verdict],
    jumpTarget: "",
    logPrefix: "",
    logRatePerSecond: 0,
    // Ingress below port 1024 (docs/bridge.md#ports-below-1024).
    ...(r.verdict === "redirect" ? { redirectPort: r.redirectPort ?? 0 } : {}),
  };
  return { id: ruleId(chain, fields), ...fields };
}

export const bridgeForwardChain = "plexd-bridge-fwd";

/** The bridge's chains: nat `postrouting`/`prerouting` and `plexd-bridge-fwd`, jumped to from `forward`. */
export function bridgeChains(parts: readonly BridgeKernelPart[]): FirewallChainPlain[] {
  const chain = (name: string, hook: string, rules: BridgeFirewallRule[]): FirewallChainPlain[] => {
    const seen = new Set<string>();
    const out = rules.flatMap((r) => plain(name, r) ?? []).filter((r) => !seen.has(r.id) && seen.add(r.id));
    return out.length > 0 ? [{ name, hook, rules: out }] : [];
  };
  const fwd = parts.flatMap((p) => p.forward ?? []);
  const ifaces = [...new Set(fwd.map((r) => r.iifname ?? "").filter((i) => i !== ""))].sort();
  const jumps: FirewallRulePlain[] = ifaces.map((iifname) => {
    const f = { iifname, oifname: "", srcCidr: "", dstCidr: "", protocol: Protocol.UNSPECIFIED, portFrom: 0, portTo: 0, ctEstablished: false, action: RuleAction.JUMP, jumpTarget: bridgeForwardChain, logPrefix: "", logRatePerSecond: 0 };
    return { id: ruleId("forward", f), ...f };
  });
  return [
    ...(jumps.length > 0 ? [{ name: "forward", hook: "forward", rules: jumps }] : []),
    ...chain(bridgeForwardChain, "", fwd),
    ...chain("postrouting", "postrouting", parts.flatMap((p) => p.postrouting ?? [])),
    ...chain("prerouting", "prerouting", parts.flatMap((p) => p.prerouting ?? [])),
  ];
}

/** The policy's chains with the bridge's merged in: rules of a chain both have are appended. */
export function withBridgeChains(base: readonly FirewallChainPlain[], extra: readonly FirewallChainPlain[]): FirewallChainPlain[] {
  const out = base.map((c) => ({ ...c, rules: [...c.rules] }));
  for (const c of extra) {
    const have = out.find((o) => o.name === c.name);
    if (have) have.rules.push(...c.rules);
    else out.push({ ...c, rules: [...c.rules] });
  }
  return out;
}
