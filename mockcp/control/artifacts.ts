import { ApiError } from "../state/apierror.js";
import { reply, type ControlRoute } from "./match.js";

/** Control routes for plexd artifacts. The upload body is the raw bytes (gzip allowed). */
export const artifactControlRoutes: ControlRoute[] = [
  {
    pattern: "PUT artifacts/plexd/:version/:os/:arch",
    handle: async ({ state }, ctx, p) => {
      const { bytes } = await ctx.raw();
      reply(ctx, 201, state.artifacts.put(p["version"] ?? "", p["os"] ?? "", p["arch"] ?? "", bytes));
    },
  },
  {
    pattern: "GET artifacts",
    handle: ({ state }, ctx) => reply(ctx, 200, { artifacts: state.artifacts.list() }),
  },
  {
    pattern: "DELETE artifacts/plexd/:version/:os/:arch",
    handle: ({ state }, ctx, p) => {
      if (!state.artifacts.delete(p["version"] ?? "", p["os"] ?? "", p["arch"] ?? "")) throw new ApiError(404, "artifact_not_found", "no such artifact");
      reply(ctx, 200, {});
    },
  },
];
