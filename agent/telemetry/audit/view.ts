// GetAuditStatus (node API, `plexd audit`, the audit line of `plexd status`): the spec's
// TelemetryStatus plus each source's state and the last events.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { GetAuditStatusResponseSchema } from "../../../proto/gen/plexd/node/v1/node_pb.js";
import type { Config } from "../../config/schema.js";
import { pipelineMsg } from "../../nodeapi/services.js";
import type { AuditService } from "./service.js";

export const maxRecent = 200;

export function auditStatusMsg(cfg: Config["audit"], svc: AuditService | undefined, recent: number): MessageInitShape<typeof GetAuditStatusResponseSchema> {
  if (svc === undefined) return { status: { enabled: false, sources: [...cfg.sources], bufferSize: cfg.buffer_size } };
  const st = svc.status();
  const c = st.counters;
  const at = c?.last_flush_at ? Date.parse(c.last_flush_at) : undefined;
  return {
    status: {
      enabled: true,
      sources: st.sources.map((s) => s.name),
      buffered: c?.buffered ?? 0,
      bufferSize: st.buffer_size,
      dropped: BigInt((c?.dropped_overflow_total ?? 0) + (c?.dropped_oversize_total ?? 0)),
      ...(at === undefined ? {} : { lastFlush: { at: timestampFromMs(at), ok: c?.last_flush_outcome === "ok" } }),
    },
    sources: st.sources.map((s) => ({
      name: s.name,
      state: s.state,
      detail: s.detail,
      eventsTotal: BigInt(s.events_total),
      recordsTotal: BigInt(s.records_total),
      malformedTotal: BigInt(s.malformed_total),
      ...(s.last_event_at === null ? {} : { lastEventAt: timestampFromMs(Date.parse(s.last_event_at)) }),
    })),
    recentEvents: recent > 0 ? svc.recent(Math.min(recent, maxRecent)).map((e) => JSON.stringify(e)) : [],
    ...(c === undefined ? {} : { pipeline: pipelineMsg("audit", c) }),
  };
}
