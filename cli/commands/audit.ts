// `plexd audit`: audit forwarding state (GetAuditStatus) and the last events sent; and the
// audit line of `plexd status` (docs/telemetry.md#audit).
import { GetAuditStatusResponseSchema, type GetAuditStatusResponse, type GetStatusResponse } from "../../proto/gen/plexd/node/v1/node_pb.js";
import type { NodeClient } from "../client.js";
import { age, messageJson, table } from "../format.js";

interface EventLine {
  timestamp?: string;
  source?: string;
  event_type?: string;
  action?: string;
  result?: string;
  subject?: Record<string, unknown>;
  object?: Record<string, unknown>;
}

function who(s: Record<string, unknown> = {}): string {
  if (typeof s.username === "string") return s.username;
  const parts = [s.exe ?? s.comm, s.uid !== undefined ? `uid ${String(s.uid)}` : undefined].filter((p) => p !== undefined);
  return parts.length > 0 ? parts.map(String).join(" ") : "-";
}

function what(o: Record<string, unknown> = {}): string {
  if (typeof o.path === "string") return o.path;
  if (typeof o.resource === "string") return [o.namespace, o.resource, o.name].filter((p) => typeof p === "string").join("/");
  return "-";
}

export function auditText(res: GetAuditStatusResponse, now: number): string {
  const st = res.status;
  if (st === undefined || !st.enabled) return `Audit forwarding is off (audit.enabled: false)${st?.sources.length ? `; configured sources: ${st.sources.join(", ")}` : ""}`;
  const flush = st.lastFlush === undefined ? "never" : `${st.lastFlush.ok ? "ok" : "FAILED"}, ${age(st.lastFlush.at, now)}`;
  const p = res.pipeline;
  const out = [
    `Sources     ${st.sources.join(", ") || "-"}`,
    `Buffer      ${st.buffered} / ${st.bufferSize}, dropped ${st.dropped}${p ? ` (overflow ${p.droppedOverflowTotal}, oversize ${p.droppedOversizeTotal})` : ""}`,
    `Sent        ${p ? `${p.sentTotal} events in ${p.sentBatchesTotal} batches` : "-"}`,
    `Last flush  ${flush}${p?.lastError ? `; last error: ${p.lastError}` : ""}${p?.paused ? `; paused (${p.paused})` : ""}`,
    "",
    table(
      ["SOURCE", "STATE", "EVENTS", "RECORDS", "MALFORMED", "LAST EVENT", "DETAIL"],
      res.sources.map((s) => [s.name, s.state, String(s.eventsTotal), String(s.recordsTotal), String(s.malformedTotal), s.lastEventAt ? age(s.lastEventAt, now) : "never", s.detail || "-"]),
    ),
  ];
  if (res.recentEvents.length > 0) {
    const events = res.recentEvents.map((l) => JSON.parse(l) as EventLine);
    out.push("", table(["TIME", "SOURCE", "TYPE", "ACTION", "RESULT", "SUBJECT", "OBJECT"], events.map((e) => [e.timestamp ?? "-", e.source ?? "-", e.event_type ?? "-", e.action ?? "-", e.result ?? "-", who(e.subject), what(e.object)])));
  }
  return out.join("\n");
}

export async function audit(client: NodeClient, json: boolean, recent: number): Promise<void> {
  const res = await client.agent.getAuditStatus({ recent });
  console.log(json ? messageJson(GetAuditStatusResponseSchema, res) : auditText(res, Date.now()));
}

/**
 * The `Audit` line of `plexd status`, beside the pipeline's own `Telemetry audit` counters:
 * whether audit forwarding runs and whether the kernel delivers records.
 */
export function auditStatusLine(s: GetStatusResponse): [string, string][] {
  if (!s.pipelines.some((x) => x.name === "audit")) return [["Audit", "not running (audit.enabled is false, or the node is not registered yet)"]];
  const unavailable = s.health.some((h) => h.code === "audit_unavailable");
  return [["Audit", `${unavailable ? "kernel records UNAVAILABLE (see audit_unavailable)" : "forwarding"}; sources and recent events: plexd audit`]];
}
