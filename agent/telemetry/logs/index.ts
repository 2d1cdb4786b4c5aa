// Starts log forwarding for the running agent (docs/telemetry.md#logs): the logs pipeline of
// the delivery engine, registered for the status surfaces, fed by the forwarder. The node
// API reads the running one through activeLogs().
import { PlexdError } from "../../../proto/lib/errors.js";
import type { AgentContext } from "../../system.js";
import { cpSender, pipelineFormat } from "../cp-send.js";
import { createPipeline, type Pipeline } from "../delivery.js";
import { registerPipeline } from "../registry.js";
import { LogForwarder, type ForwarderDeps, type LogSourceView, type RecentLine } from "./forwarder.js";

export interface LogsHandle {
  readonly forwarder: LogForwarder;
  /** Entries go in as their NDJSON lines (the forwarder encodes them). */
  readonly pipeline: Pipeline<string>;
  /** Stops reading, makes the pipeline's final flush, then persists the committed positions. */
  close(): Promise<void>;
}

let active: LogsHandle | undefined;
export const activeLogs = (): LogsHandle | undefined => active;

/** Undefined when `logs.enabled` is false. Options are for tests (another journalctl, faster polls). */
export async function startLogs(ctx: AgentContext, identity: () => { nodeId: string; identityToken: string }, opts: Partial<Pick<ForwarderDeps, "journalctl" | "pollMs" | "discoverMs">> = {}): Promise<LogsHandle | undefined> {
  const cfg = ctx.config.logs;
  if (!cfg.enabled) return undefined;
  const log = ctx.log.child({ component: "logs" });
  const pipeline = createPipeline<string>({
    name: "logs",
    batchIntervalMs: cfg.batch_interval.ms,
    batchMaxSize: cfg.batch_max_size,
    bufferSize: cfg.buffer_size,
    format: pipelineFormat.logs,
    encode: (line) => line,
    send: cpSender(ctx.cp, "logs", () => identity().nodeId, () => identity().identityToken),
    closeTimeoutMs: ctx.config.node_api.shutdown_timeout.ms,
    log,
  });
  const unregister = registerPipeline("logs", pipeline);
  const forwarder = new LogForwarder({ config: () => ctx.config.logs, dataDir: ctx.config.data_dir, writer: ctx.fence, priv: ctx.priv, pipeline, log, ...opts });
  await forwarder.start();
  const handle: LogsHandle = {
    forwarder,
    pipeline,
    async close() {
      await forwarder.stopReading();
      await pipeline.close().catch((err: unknown) => log.warn({ err: PlexdError.from(err).message }, "final log flush failed"));
      await forwarder.close();
      unregister();
      if (active === handle) active = undefined;
    },
  };
  active = handle;
  return handle;
}

/** GetLogStatus: the spec's summary plus per-source detail and the separate drop counters. */
export function logStatusView(enabled: boolean, sources: readonly string[], bufferSize: number) {
  const h = active;
  const c = h?.pipeline.counters();
  const details: LogSourceView[] = h?.forwarder.sources() ?? [];
  return {
    enabled,
    sources: [...sources],
    buffered: c?.buffered ?? 0,
    buffer_size: bufferSize,
    dropped_overflow_total: c?.dropped_overflow_total ?? 0,
    dropped_oversize_total: c?.dropped_oversize_total ?? 0,
    sent_batches_total: c?.sent_batches_total ?? 0,
    last_flush_at: c?.last_flush_at ?? null,
    last_flush_ok: c?.last_flush_outcome === "ok",
    last_success_at: c?.last_success_at ?? null,
    last_error: c?.last_error ?? "",
    running: h !== undefined,
    details,
  };
}

export const recentLogLines = (afterSeq: number, limit: number): RecentLine[] => active?.forwarder.recent(afterSeq, limit) ?? [];
