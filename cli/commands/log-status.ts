import { GetLogStatusResponseSchema, type GetLogStatusResponse } from "../../proto/gen/plexd/node/v1/node_pb.js";
import type { NodeClient } from "../client.js";
import { age, messageJson, table } from "../format.js";

// `plexd log-status` (docs/telemetry.md#logs): what is read, what waits in the buffer, what
// was lost and why. `plexd status` shows the logs pipeline's counters beside the others.

export function logCountersLine(r: GetLogStatusResponse, now: number): string {
  const s = r.status;
  if (s === undefined || !s.enabled) return "off";
  const flush = s.lastFlush === undefined ? "never sent" : `last flush ${s.lastFlush.ok ? "ok" : "FAILED"} ${age(s.lastFlush.at, now)}`;
  return `${s.buffered}/${s.bufferSize} buffered, dropped ${r.droppedOverflowTotal} overflow + ${r.droppedOversizeTotal} oversize, ${r.sentBatchesTotal} batches sent, ${flush}`;
}

export function logStatusText(r: GetLogStatusResponse, now: number): string {
  const s = r.status;
  const lines: [string, string][] = [
    ["Enabled", s?.enabled === true ? "yes" : "no"],
    ["Sources", s?.sources.join(", ") || "-"],
    ["Counters", logCountersLine(r, now)],
    ["Last success", r.lastSuccessAt === undefined ? "never" : age(r.lastSuccessAt, now)],
    ["Last error", r.lastError || "-"],
  ];
  const out = lines.map(([k, v]) => `${k.padEnd(12)}  ${v}`);
  if (r.sourceDetails.length > 0) {
    out.push("", table(["SOURCE", "VIA", "STATE", "LINES", "DETAIL"], r.sourceDetails.map((d) => [d.name, d.via, d.state, String(d.linesTotal), d.detail || "-"])));
  }
  return out.join("\n");
}

export async function logStatus(client: NodeClient, json: boolean): Promise<void> {
  const res = await client.agent.getLogStatus({});
  console.log(json ? messageJson(GetLogStatusResponseSchema, res) : logStatusText(res, Date.now()));
}
