import { checkKeyName, requireMethod } from "./http.js";
import type { NodeRoute } from "./noderoute.js";

/** `GET /v1/nodes/{id}/secrets/{key}`: 400 bad key name, 404 missing, 403 denied. */
export const secretRoute: NodeRoute = ({ state }, ctx, node, rest) => {
  if (rest[0] !== "secrets" || rest.length !== 2) return Promise.resolve(null);
  requireMethod(ctx, "GET");
  const key = checkKeyName(rest[1] ?? "");
  return Promise.resolve({ status: 200, body: state.secrets.read(node.id, key, node.nsk) });
};
