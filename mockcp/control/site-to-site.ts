import { z } from "zod";
import { parseBody } from "../state/validate.js";
import { queryPush, reply, type ControlRoute } from "./match.js";

// Control routes for a bridge's site-to-site tunnels one by one (docs/mockcp.md#bridges): each
// changes the node's `site_to_site_config` block (so the next state pull agrees) and pushes
// `site_to_site_tunnel_assigned` / `_revoked`. The tunnel's fields pass through unchecked, so
// bad tunnels can be sent.
type Rec = Record<string, unknown>;
const isRec = (v: unknown): v is Rec => typeof v === "object" && v !== null && !Array.isArray(v);

const tunnelsOf = (block: Rec | undefined): Rec[] => (Array.isArray(block?.tunnels) ? (block.tunnels as unknown[]).filter(isRec) : []);

export const siteToSiteControlRoutes: ControlRoute[] = [
  {
    pattern: "PUT nodes/:id/site-to-site-tunnels/:tunnel",
    handle: async ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      const { push, ...fields } = parseBody(z.object({ push: z.boolean().default(true) }).loose(), await ctx.body());
      const tunnel = { ...fields, tunnel_id: p["tunnel"] ?? "" };
      const block = state.bridgeBlocks.of(n.id).site_to_site_config;
      const tunnels = tunnelsOf(block);
      const at = tunnels.findIndex((t) => t.tunnel_id === tunnel.tunnel_id);
      if (at >= 0) tunnels[at] = tunnel;
      else tunnels.push(tunnel);
      state.bridgeBlocks.set(n.id, "site_to_site_config", { ...block, tunnels });
      const ev = push ? state.publish(n.id, "site_to_site_tunnel_assigned", tunnel) : undefined;
      reply(ctx, 200, { tunnels, event_id: ev?.event_id ?? null });
    },
  },
  {
    pattern: "DELETE nodes/:id/site-to-site-tunnels/:tunnel",
    handle: ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      const id = p["tunnel"] ?? "";
      const block = state.bridgeBlocks.of(n.id).site_to_site_config;
      const tunnels = tunnelsOf(block).filter((t) => t.tunnel_id !== id);
      state.bridgeBlocks.set(n.id, "site_to_site_config", { ...block, tunnels });
      const ev = queryPush(ctx) ? state.publish(n.id, "site_to_site_tunnel_revoked", { tunnel_id: id }) : undefined;
      reply(ctx, 200, { tunnels, event_id: ev?.event_id ?? null });
    },
  },
];
