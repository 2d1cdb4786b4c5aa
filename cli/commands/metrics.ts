import { GetMetricsResponseSchema } from "../../proto/gen/plexd/node/v1/node_pb.js";
import type { NodeClient } from "../client.js";
import { messageJson } from "../format.js";

/**
 * `plexd metrics`: the running agent's metrics and telemetry counters in Prometheus text
 * exposition, the same text GET /metrics serves (docs/telemetry.md#prometheus). Handy with
 * node_exporter's textfile collector or a quick `grep`.
 */
export async function metrics(client: NodeClient, json: boolean): Promise<void> {
  const res = await client.agent.getMetrics({});
  if (json) console.log(messageJson(GetMetricsResponseSchema, res));
  else process.stdout.write(res.text);
}
