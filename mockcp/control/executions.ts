import { randomBytes } from "node:crypto";
import { z } from "zod";
import { ApiError } from "../state/apierror.js";
import { parseBody } from "../state/validate.js";
import { reply, type ControlRoute } from "./match.js";

const actionBody = z.object({
  action: z.string().min(1),
  type: z.enum(["builtin", "hook"]).optional(),
  parameters: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  timeout: z.string().optional(),
  checksum: z.string().optional(),
  triggered_by: z.record(z.string(), z.string()).optional(),
  execution_id: z.string().min(1).optional(),
  event_id: z.string().min(1).max(128).optional(),
});

/** Control routes for executions. */
export const executionControlRoutes: ControlRoute[] = [
  {
    // Builds and pushes an action_request; the execution then counts as known.
    pattern: "POST nodes/:id/actions",
    handle: async ({ state, hub }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      const b = parseBody(actionBody, await ctx.body());
      const executionId = b.execution_id ?? `exec_${randomBytes(8).toString("hex")}`;
      const host = ctx.req.headers.host ?? "mockcp.invalid";
      const payload: Record<string, unknown> = {
        execution_id: executionId,
        action: b.action,
        type: b.type ?? (b.action.startsWith("hooks/") ? "hook" : "builtin"),
        parameters: b.parameters ?? {},
        timeout: b.timeout ?? "30s",
        // Informational only: agents must post to their configured base URL regardless.
        callback_url: `http://${host}/v1/nodes/${n.id}/executions/${executionId}`,
        triggered_by: { type: "control_plane", session_id: "", user_id: "", email: "", ...b.triggered_by },
        ...(b.checksum !== undefined ? { checksum: b.checksum } : {}),
      };
      const ev = state.publish(n.id, "action_request", payload, b.event_id);
      reply(ctx, 201, { execution_id: executionId, event_id: ev.event_id, payload, delivered: hub.count(n.id) });
    },
  },
  {
    pattern: "GET nodes/:id/executions",
    handle: ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      reply(ctx, 200, { executions: state.executions.list(n.id) });
    },
  },
  {
    pattern: "GET nodes/:id/executions/:eid",
    handle: ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      const rec = state.executions.get(n.id, p["eid"] ?? "");
      if (rec === undefined) throw new ApiError(404, "execution_not_found", `unknown execution ${p["eid"]}`);
      reply(ctx, 200, rec);
    },
  },
];
