import { failureMode, obsKinds } from "../state/observability.js";
import { parseBody } from "../state/validate.js";
import { reply, type ControlRoute } from "./match.js";

/** Control routes for metrics, logs and audit and their failure mode. */
export const observabilityControlRoutes: ControlRoute[] = [
  ...obsKinds.flatMap((kind): ControlRoute[] => [
    {
      pattern: `GET nodes/:id/${kind}`,
      handle: ({ state }, ctx, p) => reply(ctx, 200, state.observability.view(state.nodeOr404(p["id"] ?? "").id, kind)),
    },
    {
      pattern: `DELETE nodes/:id/${kind}`,
      handle: ({ state }, ctx, p) => {
        state.observability.clear(state.nodeOr404(p["id"] ?? "").id, kind);
        reply(ctx, 200, {});
      },
    },
  ]),
  {
    pattern: "GET observability/failure",
    handle: ({ state }, ctx) => reply(ctx, 200, { failure: state.observability.failure() }),
  },
  {
    pattern: "PUT observability/failure",
    handle: async ({ state }, ctx) => {
      state.observability.setFailure(parseBody(failureMode, await ctx.body()));
      reply(ctx, 200, { failure: state.observability.failure() });
    },
  },
  {
    pattern: "DELETE observability/failure",
    handle: ({ state }, ctx) => {
      state.observability.setFailure(parseBody(failureMode, { mode: "none" }));
      reply(ctx, 200, { failure: state.observability.failure() });
    },
  },
];
