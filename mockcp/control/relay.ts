import { z } from "zod";
import { assignRelay, autoRelay, revokeRelayByHand } from "../state/relay.js";
import { relayAllWithoutHandshake } from "../state/relay-nohandshake.js";
import type { MockState } from "../state/store.js";
import { ipEndpoint, parseBody } from "../state/validate.js";
import { reply, type ControlRoute } from "./match.js";

// Control routes for relay sessions (docs/mockcp.md#relay-sessions): name a relay bridge, assign
// a session by hand, revoke one, switch auto-assignment and set its no-handshake grace period.

const bridgeBody = z.object({ address: ipEndpoint().optional() });
const sessionBody = z.object({
  peer_a: z.string().min(1),
  peer_b: z.string().min(1),
  bridge: z.string().min(1).optional(),
  ttl_seconds: z.number().positive().optional(),
  relay_port: z.number().int().min(1).max(65535).optional(),
  session_id: z.string().min(1).max(128).optional(),
});
const settingsBody = z.object({ auto: z.boolean().optional(), ttl_seconds: z.number().positive().optional(), no_handshake_grace_seconds: z.number().min(0).optional() });

const settings = (state: MockState) => ({ auto: state.relay.auto, ttl_seconds: state.relay.ttlMs / 1000, no_handshake_grace_seconds: state.relay.handshakes.graceMs / 1000 });
/** Sessions either automatic rule makes at once. */
const assignNow = (state: MockState) => [...autoRelay(state), ...relayAllWithoutHandshake(state)];

export const relayControlRoutes: ControlRoute[] = [
  {
    pattern: "GET relay",
    handle: ({ state }, ctx) => reply(ctx, 200, { ...settings(state), bridges: [...state.relay.bridges.values()], sessions: [...state.relay.sessions.values()] }),
  },
  {
    pattern: "PUT relay",
    handle: async ({ state }, ctx) => {
      const b = parseBody(settingsBody, await ctx.body());
      if (b.auto !== undefined) state.relay.auto = b.auto;
      if (b.ttl_seconds !== undefined) state.relay.ttlMs = b.ttl_seconds * 1000;
      if (b.no_handshake_grace_seconds !== undefined) state.relay.handshakes.graceMs = b.no_handshake_grace_seconds * 1000;
      reply(ctx, 200, { ...settings(state), assigned: assignNow(state) });
    },
  },
  {
    pattern: "PUT relay/bridges/:id",
    handle: async ({ state }, ctx, p) => {
      const node = state.nodeOr404(p["id"] ?? "");
      const b = parseBody(bridgeBody, await ctx.body());
      state.relay.bridges.set(node.id, { node_id: node.id, address: b.address });
      reply(ctx, 200, { bridge: state.relay.bridges.get(node.id), assigned: assignNow(state) });
    },
  },
  {
    pattern: "DELETE relay/bridges/:id",
    handle: ({ state }, ctx, p) => reply(ctx, 200, { deleted: state.relay.bridges.delete(p["id"] ?? "") }),
  },
  {
    pattern: "POST relay/sessions",
    handle: async ({ state }, ctx) => {
      const b = parseBody(sessionBody, await ctx.body());
      const s = assignRelay(state, state.nodeOr404(b.peer_a), state.nodeOr404(b.peer_b), {
        ...(b.bridge !== undefined ? { bridgeId: b.bridge } : {}),
        ...(b.ttl_seconds !== undefined ? { ttlMs: b.ttl_seconds * 1000 } : {}),
        ...(b.relay_port !== undefined ? { relayPort: b.relay_port } : {}),
        ...(b.session_id !== undefined ? { sessionId: b.session_id } : {}),
      });
      reply(ctx, 201, s);
    },
  },
  {
    pattern: "DELETE relay/sessions/:sid",
    handle: ({ state }, ctx, p) => reply(ctx, 200, revokeRelayByHand(state, p["sid"] ?? "")),
  },
];
