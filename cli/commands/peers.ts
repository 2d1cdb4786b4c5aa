import { ListPeersResponseSchema, ListPoliciesResponseSchema, type ListPeersResponse, type ListPoliciesResponse } from "../../proto/gen/plexd/node/v1/node_pb.js";
import type { NodeClient } from "../client.js";
import { age, bytes, messageJson, table } from "../format.js";

export function peersText(res: ListPeersResponse, now: number, all: boolean): string {
  if (res.peers.length === 0) return "no peers";
  const hosts = res.peers.some((p) => p.hostname !== "");
  // Peers the agent refused (admission) say why; the column appears only when there are some.
  const quarantine = res.peers.some((p) => p.quarantineReason !== "");
  // Loss comes from the latency probes of the metrics pipeline; shown once one has run.
  const probed = res.peers.some((p) => p.lossPercent !== undefined);
  const header = ["PEER", ...(hosts ? ["HOST"] : []), "MESH IP", "ENDPOINT", "HANDSHAKE", "RX", "TX", "RTT", ...(probed ? ["LOSS"] : []), ...(all ? ["VISIBLE"] : []), ...(quarantine ? ["QUARANTINED"] : [])];
  const rows = res.peers.map((p) => [
    p.peerId,
    ...(hosts ? [p.hostname || "-"] : []),
    p.meshIp,
    (p.endpoint || "-") + (p.relayed ? " (relayed)" : ""),
    age(p.lastHandshake, now),
    bytes(p.rxBytes),
    bytes(p.txBytes),
    p.rttMs > 0 ? `${p.rttMs.toFixed(1)} ms` : "-",
    ...(probed ? [p.lossPercent === undefined ? "-" : `${Math.round(p.lossPercent)}%`] : []),
    ...(all ? [p.visible ? "yes" : "no"] : []),
    ...(quarantine ? [p.quarantineReason || "-"] : []),
  ]);
  return table(header, rows);
}

export async function peers(client: NodeClient, json: boolean, all: boolean): Promise<void> {
  const res = await client.agent.listPeers({ all });
  console.log(json ? messageJson(ListPeersResponseSchema, res) : peersText(res, Date.now(), all));
}

export function policiesText(res: ListPoliciesResponse, rules: boolean): string {
  const out: string[] = [`default: ${res.default || "-"}`];
  if (res.policies.length === 0) out.push("no policies");
  for (const p of res.policies) {
    out.push(`policy ${p.id}`);
    for (const r of p.rules) out.push(`  ${r.action.padEnd(5)} ${r.src} -> ${r.dst} ${r.protocol}${r.port > 0 ? `/${r.port}` : ""}`);
  }
  for (const r of res.invalidRules) out.push(`invalid rule ${r.policyId}[${r.index}]: ${r.reason}`);
  if (rules) {
    out.push("");
    out.push(
      res.firewallRules.length === 0
        ? "no firewall rules"
        : table(
            ["ID", "CHAIN", "PACKETS", "BYTES", "RULE"],
            res.firewallRules.map((r) => [r.id, r.chain, String(r.packets), bytes(r.bytes), r.text]),
          ),
    );
  }
  return out.join("\n");
}

export async function policies(client: NodeClient, json: boolean, rules: boolean): Promise<void> {
  const res = await client.agent.listPolicies({ rules });
  console.log(json ? messageJson(ListPoliciesResponseSchema, res) : policiesText(res, rules));
}
