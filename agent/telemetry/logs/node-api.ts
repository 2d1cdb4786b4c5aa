// Node API answers for log forwarding: GetLogStatus and TailLogs (docs/node-api.md), built
// from the running forwarder and pipeline, or from the configuration alone before they run.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { GetLogStatusResponseSchema, TailLogsResponseSchema } from "../../../proto/gen/plexd/node/v1/node_pb.js";
import type { Config } from "../../config/schema.js";
import { logStatusView, recentLogLines } from "./index.js";

const ms = (iso: string | null): number | undefined => (iso === null ? undefined : Date.parse(iso));

export function getLogStatus(cfg: Config["logs"]): MessageInitShape<typeof GetLogStatusResponseSchema> {
  const v = logStatusView(cfg.enabled, cfg.sources, cfg.buffer_size);
  const flushAt = ms(v.last_flush_at);
  const okAt = ms(v.last_success_at);
  return {
    status: {
      enabled: v.enabled,
      sources: v.sources,
      buffered: v.buffered,
      bufferSize: v.buffer_size,
      dropped: BigInt(v.dropped_overflow_total + v.dropped_oversize_total),
      ...(flushAt === undefined ? {} : { lastFlush: { at: timestampFromMs(flushAt), ok: v.last_flush_ok } }),
    },
    sourceDetails: v.details.map((d) => ({ name: d.name, kind: d.kind, via: d.via, state: d.state, detail: d.detail, linesTotal: BigInt(d.lines_total) })),
    droppedOverflowTotal: BigInt(v.dropped_overflow_total),
    droppedOversizeTotal: BigInt(v.dropped_oversize_total),
    sentBatchesTotal: BigInt(v.sent_batches_total),
    lastError: v.last_error,
    ...(okAt === undefined ? {} : { lastSuccessAt: timestampFromMs(okAt) }),
  };
}

export function tailLogs(afterSeq: bigint, limit: number): MessageInitShape<typeof TailLogsResponseSchema> {
  const n = limit === 0 ? 100 : Math.min(Math.max(limit, 1), 1000);
  return {
    lines: recentLogLines(Number(afterSeq), n).map(({ seq, entry: e }) => ({ seq: BigInt(seq), timestamp: e.timestamp, source: e.source, unit: e.unit, path: e.path ?? "", message: e.message, severity: e.severity })),
  };
}
