import { z } from "zod";
import { parseBody } from "../state/validate.js";
import { withUserAccessPeer } from "../state/user-access.js";
import { queryPush, reply, type ControlRoute } from "./match.js";

// Control routes for a bridge's user-access peers (docs/mockcp.md#user-access): assign or revoke
// one client of the bridge's `user_access_config` block with its single event, and give the
// other nodes the bridge's peer entry again (the client's addresses join its allowed IPs).
const peerBody = z
  .object({
    allowed_ips: z.array(z.string()),
    label: z.string().optional(),
    psk: z.string().optional(),
    push: z.boolean().default(true),
  })
  .loose();

export const userAccessControlRoutes: ControlRoute[] = [
  {
    pattern: "PUT nodes/:id/user-access/peers/:key",
    handle: async ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      const { push, ...fields } = parseBody(peerBody, await ctx.body());
      const peer = { ...fields, public_key: p["key"] ?? "" };
      const block = withUserAccessPeer(state.bridgeBlocks.of(n.id).user_access_config, peer.public_key, peer);
      state.bridgeBlocks.set(n.id, "user_access_config", block);
      const ev = push ? state.publish(n.id, "user_access_peer_assigned", peer) : undefined;
      state.announcePeer(n);
      reply(ctx, 200, { user_access_config: block, event_id: ev?.event_id ?? null });
    },
  },
  {
    pattern: "DELETE nodes/:id/user-access/peers/:key",
    handle: ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      const key = p["key"] ?? "";
      const block = withUserAccessPeer(state.bridgeBlocks.of(n.id).user_access_config, key, undefined);
      state.bridgeBlocks.set(n.id, "user_access_config", block);
      const ev = queryPush(ctx) ? state.publish(n.id, "user_access_peer_revoked", { public_key: key }) : undefined;
      state.announcePeer(n);
      reply(ctx, 200, { user_access_config: block, event_id: ev?.event_id ?? null });
    },
  },
];
