import { z } from "zod";
import { checkKeyName } from "../server/http.js";
import type { SecretRef } from "../state/secrets.js";
import type { MockState } from "../state/store.js";
import { parseBody } from "../state/validate.js";
import { queryPush, reply, type ControlRoute } from "./match.js";

const secretBody = z.object({
  value: z.string().optional(),
  version: z.number().int().min(1).optional(),
  denied: z.boolean().optional(),
  listed: z.boolean().optional(),
  push: z.boolean().default(true),
});

/** Pushes `node_secrets_updated` with the full index when asked to. */
function pushRefs(state: MockState, nodeId: string, push: boolean): { secret_refs: SecretRef[]; event_id: string | null } {
  const refs = state.secrets.refs(nodeId);
  const ev = push ? state.publish(nodeId, "node_secrets_updated", { secret_refs: refs }) : undefined;
  return { secret_refs: refs, event_id: ev?.event_id ?? null };
}

/** Control routes for secrets. */
export const secretControlRoutes: ControlRoute[] = [
  {
    pattern: "GET nodes/:id/secrets",
    handle: ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      reply(ctx, 200, { secrets: state.secrets.list(n.id), secret_refs: state.secrets.refs(n.id) });
    },
  },
  {
    pattern: "PUT nodes/:id/secrets/:key",
    handle: async ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      const key = checkKeyName(p["key"] ?? "");
      const b = parseBody(secretBody, await ctx.body());
      const secret = state.secrets.set(n.id, key, b);
      reply(ctx, 200, { secret, ...pushRefs(state, n.id, b.push) });
    },
  },
  {
    pattern: "DELETE nodes/:id/secrets/:key",
    handle: ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      const deleted = state.secrets.delete(n.id, p["key"] ?? "");
      reply(ctx, 200, { deleted, ...pushRefs(state, n.id, deleted && queryPush(ctx)) });
    },
  },
];
