import type { CpClient } from "../controlplane/http.js";
import { describeError } from "../controlplane/http.js";
import type { PipelineName, SendResult } from "./delivery.js";

// The `send` of a pipeline: POST /v1/nodes/{id}/{metrics|logs|audit} with the gzip body
// (docs/telemetry.md#delivery). The client's request timeout (30 s) bounds each attempt;
// a network error rejects, and the pipeline keeps the batch.

const contentTypes: Record<PipelineName, string> = {
  metrics: "application/json",
  logs: "application/x-ndjson",
  audit: "application/x-ndjson",
};

/** Format of each pipeline's body on the wire. */
export const pipelineFormat: Record<PipelineName, "json-array" | "ndjson"> = { metrics: "json-array", logs: "ndjson", audit: "ndjson" };

export function cpSender(cp: CpClient, name: PipelineName, nodeId: () => string, token: () => string): (body: Buffer, count: number, signal: AbortSignal) => Promise<SendResult> {
  return async (body, _count, signal) => {
    const res = await cp.request({
      method: "POST",
      path: `/v1/nodes/${encodeURIComponent(nodeId())}/${name}`,
      token: token(),
      signal,
      rawBody: { data: body, contentType: contentTypes[name], contentEncoding: "gzip" },
    });
    const retry = res.headers["retry-after"];
    return {
      status: res.status,
      ...(retry !== undefined ? { retryAfter: Array.isArray(retry) ? retry[0] : retry } : {}),
      ...(res.status !== 202 ? { detail: describeError(res).replace(/^HTTP \d+:? ?/, "") } : {}),
    };
  };
}
