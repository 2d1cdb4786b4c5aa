import { requireMethod } from "./http.js";
import type { NodeRoute } from "./noderoute.js";

/** `POST /v1/nodes/{id}/report`: atomic, version-checked, 409 with `conflicts`. */
export const reportRoute: NodeRoute = async ({ state }, ctx, node, rest) => {
  if (rest.length !== 1 || rest[0] !== "report") return null;
  requireMethod(ctx, "POST");
  state.reports.apply(node.id, await ctx.body());
  return { status: 200, body: {} };
};
