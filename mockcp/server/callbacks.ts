import { requireMethod } from "./http.js";
import type { NodeRoute } from "./noderoute.js";

/** Tunnel session callbacks and integrity violations: validated and recorded. */
export const callbackRoute: NodeRoute = async ({ state }, ctx, node, rest) => {
  if (rest.length === 3 && rest[0] === "tunnels" && (rest[2] === "ready" || rest[2] === "closed")) {
    requireMethod(ctx, "POST");
    state.callbacks.tunnel(node.id, rest[1] ?? "", rest[2], await ctx.body());
    return { status: 200, body: {} };
  }
  if (rest.length === 2 && rest[0] === "integrity" && rest[1] === "violations") {
    requireMethod(ctx, "POST");
    state.callbacks.violation(node.id, await ctx.body());
    return { status: 200, body: {} };
  }
  return null;
};
