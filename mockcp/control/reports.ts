import { z } from "zod";
import { checkKeyName } from "../server/http.js";
import { parseBody } from "../state/validate.js";
import { reply, type ControlRoute } from "./match.js";

const seedBody = z.object({
  content_type: z.string().min(1).default("application/json"),
  payload: z.unknown(),
  version: z.number().int().min(1),
  updated_at: z.iso.datetime({ offset: true }).optional(),
});

/** Control routes for node reports. */
export const reportControlRoutes: ControlRoute[] = [
  {
    pattern: "GET nodes/:id/reports",
    handle: ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      reply(ctx, 200, { reports: state.reports.list(n.id) });
    },
  },
  {
    // Seeds what mockcp believes is stored, e.g. a higher version to provoke a 409.
    pattern: "PUT nodes/:id/reports/:key",
    handle: async ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      const key = checkKeyName(p["key"] ?? "");
      const b = parseBody(seedBody, await ctx.body());
      const entry = { key, content_type: b.content_type, payload: b.payload ?? null, version: b.version, updated_at: b.updated_at ?? new Date(state.now()).toISOString() };
      state.reports.put(n.id, entry);
      reply(ctx, 200, { report: entry });
    },
  },
  {
    pattern: "DELETE nodes/:id/reports",
    handle: ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      state.reports.clear(n.id);
      reply(ctx, 200, {});
    },
  },
];
