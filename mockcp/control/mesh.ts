import { peerOverride } from "../state/overrides.js";
import { parseBody } from "../state/validate.js";
import { reply, type ControlRoute } from "./match.js";

/**
 * Control routes around the mesh: the desired state as a node sees it, drift injection
 * (state overrides), policies, liveness, tunnel callbacks and integrity violations.
 */
export const meshControlRoutes: ControlRoute[] = [
  {
    pattern: "GET nodes/:id/state",
    handle: ({ state }, ctx, p) => reply(ctx, 200, state.state(state.nodeOr404(p["id"] ?? ""))),
  },
  {
    pattern: "GET nodes/:id/policies",
    handle: ({ state }, ctx, p) => reply(ctx, 200, { policies: state.nodeOr404(p["id"] ?? "").policies }),
  },
  {
    pattern: "GET nodes/:id/state-overrides",
    handle: ({ state }, ctx, p) => reply(ctx, 200, { overrides: state.overrides.list(state.nodeOr404(p["id"] ?? "").id) }),
  },
  {
    pattern: "PUT nodes/:id/state-overrides/peers/:peer",
    handle: async ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      const peerId = p["peer"] ?? "";
      const o = parseBody(peerOverride, await ctx.body());
      state.overrides.set(n.id, peerId, o, state.peersOf(n.id).some((x) => x.id === peerId));
      reply(ctx, 200, { overrides: state.overrides.list(n.id), peers: state.desiredPeers(n.id) });
    },
  },
  {
    pattern: "DELETE nodes/:id/state-overrides/peers/:peer",
    handle: ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      state.overrides.clear(n.id, p["peer"] ?? "");
      reply(ctx, 200, { overrides: state.overrides.list(n.id) });
    },
  },
  {
    pattern: "DELETE nodes/:id/state-overrides",
    handle: ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      state.overrides.clear(n.id);
      reply(ctx, 200, { overrides: {} });
    },
  },
  {
    pattern: "GET nodes/:id/tunnels",
    handle: ({ state }, ctx, p) => reply(ctx, 200, { tunnels: state.callbacks.tunnels(state.nodeOr404(p["id"] ?? "").id) }),
  },
  {
    pattern: "GET nodes/:id/integrity-violations",
    handle: ({ state }, ctx, p) => reply(ctx, 200, { violations: state.callbacks.violations(state.nodeOr404(p["id"] ?? "").id) }),
  },
];
