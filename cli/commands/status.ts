import { GetStatusResponseSchema, type GetStatusResponse } from "../../proto/gen/plexd/node/v1/node_pb.js";
import type { NodeClient } from "../client.js";
import { age, messageJson } from "../format.js";
import { bridgeSection } from "./bridge.js";
import { auditStatusLine } from "./audit.js";

/** "12 buffered, 340 sent, 0 dropped, last flush ok 3s ago" — delivery counters of one pipeline (docs/telemetry.md). */
export function pipelineLine(p: GetStatusResponse["pipelines"][number], now: number): string {
  const dropped = p.droppedOverflowTotal + p.droppedOversizeTotal + p.droppedRejectedTotal;
  const last = p.lastFlushAt === undefined ? "never flushed" : `last flush ${p.lastFlushOutcome || "?"} ${age(p.lastFlushAt, now)}`;
  const paused = p.paused === "" ? "" : `, PAUSED (${p.paused})`;
  return `${p.buffered} buffered, ${p.sentTotal} sent, ${dropped} dropped (${p.droppedOverflowTotal} overflow), ${last}${paused}`;
}

export function statusText(s: GetStatusResponse, now: number): string {
  const sse = s.sse;
  const control = sse?.connected === true ? `connected ${age(sse.since, now).replace(/ ago$/, "")}` : "disconnected";
  const run = (r: GetStatusResponse["lastHeartbeat"], drift = false): string =>
    r === undefined ? "never" : `${r.ok ? "ok" : "FAILED"}, ${age(r.at, now)}${drift ? `, ${r.driftCount} drift` : ""}`;
  const c = s.stateCounts;
  const lines: [string, string][] = [
    ["Node", `${s.nodeId || "(not registered)"}  ${s.meshIp}`],
    ["Version", `${s.version}  mode ${s.mode}`],
    ["Phase", `${s.phase}  up ${s.uptime}`],
    ["Control plane", `${control} (${sse?.reconnects ?? 0} reconnects${sse?.lastEventId ? `, last event ${sse.lastEventId}` : ""})`],
    ["Heartbeat", run(s.lastHeartbeat)],
    ["Reconcile", run(s.lastReconcile, true)],
    ["NAT", s.nat?.publicEndpoint ? `${s.nat.publicEndpoint} (${s.nat.type || "unknown"})` : "unknown"],
    ["Peers", String(s.peerCount)],
    ["privhelper", s.privhelperOk ? "ok" : "UNREACHABLE"],
    ["State", c === undefined ? "-" : `metadata ${c.metadata}, data ${c.data}, secrets ${c.secrets}, reports ${c.reports} (${c.reportsPending} pending)`],
    ["Health", s.health.length === 0 ? "ok" : s.healthStatus],
    ["Log level", s.logLevel || "-"],
    ...s.pipelines.map((p): [string, string] => [`Telemetry ${p.name}`, pipelineLine(p, now)]),
    ...auditStatusLine(s),
  ];
  const width = Math.max(...lines.map(([k]) => k.length));
  const out = lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`.trimEnd());
  for (const h of s.health) out.push(`  ${h.severity.toUpperCase().padEnd(8)} ${h.code}: ${h.text} (since ${age(h.since, now)})`);
  return out.join("\n");
}

/**
 * Prints the status; resolves whether the node is healthy (`--check`). JSON is one document
 * with this node and its peers (docs/status-json.md, schema in docs/schema/).
 */
export async function status(client: NodeClient, json: boolean): Promise<boolean> {
  const res = await client.agent.getStatus({ includePeers: json });
  console.log(json ? messageJson(GetStatusResponseSchema, res) : statusText(res, Date.now()));
  const bridge = !json && res.mode === "bridge" ? await bridgeSection(client) : "";
  if (bridge) console.log(bridge);
  return res.healthStatus === "healthy";
}
