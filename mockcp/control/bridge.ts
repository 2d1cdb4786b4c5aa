import { z } from "zod";
import { badRequest } from "../state/apierror.js";
import { blockUpdatedEvent, bridgeBlockNames, type BridgeBlockName } from "../state/bridge-blocks.js";
import { parseBody } from "../state/validate.js";
import { reply, type ControlRoute } from "./match.js";

const blockOf = (name: string): BridgeBlockName => {
  if (!(bridgeBlockNames as readonly string[]).includes(name)) throw badRequest(`unknown bridge block ${JSON.stringify(name)} (one of: ${bridgeBlockNames.join(", ")})`);
  return name as BridgeBlockName;
};

/** Control routes for a bridge's state blocks: set one (and send its `*_config_updated`), or remove it. */
export const bridgeControlRoutes: ControlRoute[] = [
  {
    pattern: "PUT nodes/:id/bridge/:block",
    handle: async ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      const block = blockOf(p["block"] ?? "");
      state.bridgeBlocks.set(n.id, block, parseBody(z.record(z.string(), z.unknown()), await ctx.body()));
      const event = blockUpdatedEvent[block];
      const e = event === undefined ? undefined : state.publish(n.id, event, {});
      // A bridge's user-access clients are in its allowed IPs on the other nodes.
      if (block === "user_access_config") state.announcePeer(n);
      reply(ctx, 200, { blocks: state.bridgeBlocks.of(n.id), event_id: e?.event_id ?? null });
    },
  },
  {
    pattern: "DELETE nodes/:id/bridge/:block",
    handle: ({ state }, ctx, p) => {
      const n = state.nodeOr404(p["id"] ?? "");
      const block = blockOf(p["block"] ?? "");
      state.bridgeBlocks.set(n.id, block, undefined);
      if (block === "user_access_config") state.announcePeer(n);
      reply(ctx, 200, { blocks: state.bridgeBlocks.of(n.id) });
    },
  },
];
