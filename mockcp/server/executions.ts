import { requireMethod } from "./http.js";
import type { NodeRoute } from "./noderoute.js";

/** `POST /v1/nodes/{id}/executions/{execution_id}/ack|result`. */
export const executionRoute: NodeRoute = async ({ state }, ctx, node, rest) => {
  if (rest.length !== 3 || rest[0] !== "executions" || (rest[2] !== "ack" && rest[2] !== "result")) return null;
  requireMethod(ctx, "POST");
  const executionId = rest[1] ?? "";
  const body = await ctx.body();
  if (rest[2] === "ack") state.executions.ack(node.id, executionId, body);
  else state.executions.result(node.id, executionId, body);
  return { status: 200, body: {} };
};
