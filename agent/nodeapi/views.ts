import { Protocol, RuleAction, type FirewallRule, type ReadFirewallResponse, type ReadMeshResponse } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { parseCidr } from "../../proto/lib/net.js";
import type { Peer } from "../mesh/peer.js";
import type { PeerInfo, PoliciesInfo } from "./backend.js";

// Pure views for AgentService: the desired peers joined with what the kernel reports, and
// firewall rules read back from the kernel in nft's own notation (what an operator would
// type or see in `nft list ruleset`), with their hit counters.

const quote = (s: string): string => JSON.stringify(s);
/** An address match as nft prints it: `ip` or `ip6`, and a single host without its /32 or /128. */
function addrMatch(dir: "saddr" | "daddr", cidr: string): string {
  const c = parseCidr(cidr, false);
  if (c === undefined) return `ip ${dir} ${cidr}`; // privhelper validated it; shown as read if not
  const host = c.bits === (c.family === 4 ? 32 : 128);
  return `${c.family === 4 ? "ip" : "ip6"} ${dir} ${host ? c.text : c.cidr}`;
}

export function ruleText(r: FirewallRule): string {
  const parts: string[] = [];
  if (r.iifname !== "") parts.push(`iifname ${quote(r.iifname)}`);
  if (r.oifname !== "") parts.push(`oifname ${quote(r.oifname)}`);
  if (r.srcCidr !== "") parts.push(addrMatch("saddr", r.srcCidr));
  if (r.dstCidr !== "") parts.push(addrMatch("daddr", r.dstCidr));
  const proto = r.protocol === Protocol.TCP ? "tcp" : r.protocol === Protocol.UDP ? "udp" : r.protocol === Protocol.ICMP ? "icmp" : "";
  if (proto !== "" && r.portFrom > 0) parts.push(`${proto} dport ${r.portTo > r.portFrom ? `${r.portFrom}-${r.portTo}` : r.portFrom}`);
  else if (proto !== "") parts.push(`meta l4proto ${proto}`);
  if (r.ctEstablished) parts.push("ct state established,related");
  switch (r.action) {
    case RuleAction.ACCEPT:
      parts.push("accept");
      break;
    case RuleAction.DROP:
      parts.push("drop");
      break;
    case RuleAction.JUMP:
      parts.push(`jump ${r.jumpTarget}`);
      break;
    case RuleAction.LOG_DROP:
      parts.push(`log prefix ${quote(r.logPrefix)}`, "drop");
      break;
    case RuleAction.LOG:
      if (r.logRatePerSecond > 0) parts.push(`limit rate ${r.logRatePerSecond}/second`);
      parts.push(`log prefix ${quote(r.logPrefix)}`);
      break;
    case RuleAction.MASQUERADE:
      parts.push("masquerade");
      break;
    case RuleAction.REDIRECT:
      parts.push(`redirect to :${r.redirectPort ?? 0}`);
      break;
    default:
      break;
  }
  return parts.join(" ");
}

/** Every rule of table inet plexd as read back, with counters; foreign rules show their raw form. */
export function firewallRulesView(live: Pick<ReadFirewallResponse, "chains">): PoliciesInfo["firewallRules"] {
  return live.chains.flatMap((c) =>
    c.rules.map((r) => ({
      id: r.rule?.id ?? "",
      chain: c.name,
      text: r.recognised && r.rule !== undefined ? ruleText(r.rule) : `(not plexd's) ${r.raw}`,
      packets: r.packets,
      bytes: r.bytes,
    })),
  );
}

/**
 * The peers of the desired state with live tunnel data matched by public key. Visibility is
 * the policy's verdict (the last compiled policy); before the first compile, a peer counts as
 * visible when the kernel has it. Invisible peers only with `all`.
 */
export function peersView(
  peers: Iterable<Peer>,
  live: Pick<ReadMeshResponse, "peers"> | undefined,
  visible: ReadonlySet<string> | undefined,
  all: boolean,
  quarantined: ReadonlyMap<string, string> = new Map(),
): PeerInfo[] {
  const byKey = new Map((live?.peers ?? []).map((p) => [p.publicKey, p]));
  const out: PeerInfo[] = [];
  for (const p of peers) {
    const reason = quarantined.get(p.id);
    // A quarantined peer is not in the kernel: a live peer with its key is somebody else's.
    const l = reason === undefined ? byKey.get(p.public_key) : undefined;
    const isVisible = visible !== undefined ? visible.has(p.id) : l !== undefined;
    if (!isVisible && !all) continue;
    const hs = l?.lastHandshake === undefined ? 0 : Number(l.lastHandshake.seconds) * 1000 + Math.floor(l.lastHandshake.nanos / 1e6);
    out.push({
      peerId: p.id,
      meshIp: p.mesh_ip,
      publicKey: p.public_key,
      // The kernel's endpoint is the one in use (WireGuard roams); the desired one until then.
      endpoint: l !== undefined && l.endpoint !== "" ? l.endpoint : p.endpoint,
      visible: isVisible,
      ...(hs > 0 ? { lastHandshake: hs } : {}),
      rxBytes: l?.rxBytes ?? 0n,
      txBytes: l?.txBytes ?? 0n,
      relayed: false,
      ...(p.hostname === undefined ? {} : { hostname: p.hostname }),
      ...(reason === undefined ? {} : { quarantineReason: reason }),
    });
  }
  return out.sort((a, b) => a.peerId.localeCompare(b.peerId));
}
