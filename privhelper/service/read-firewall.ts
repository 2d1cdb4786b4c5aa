// ReadFirewall: table inet plexd read back as structured rules with counters; rules that
// plexd did not render (no valid plexd comment, foreign expressions) are flagged
// recognised = false for the agent's drift check.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ReadFirewallRequest, ReadFirewallResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { CallContext } from "../adapter.js";
import type { PrivConfig } from "../config.js";
import { readLiveFirewall } from "../firewall/live.js";
import { toWire } from "../firewall/model.js";
import { nftTool, type NftTool } from "../os/nft.js";
import type { Runner } from "../os/runner.js";

type Response = MessageInitShape<typeof ReadFirewallResponseSchema>;

export function makeReadFirewall(deps: { runner: Runner; config: PrivConfig; nft?: NftTool }) {
  const nft = deps.nft ?? nftTool(deps.runner);
  return async (_req: ReadFirewallRequest, ctx: CallContext): Promise<Response> => {
    const live = await readLiveFirewall(nft, deps.config, ctx.signal);
    return {
      tableExists: live.tableExists,
      chains: live.chains.map((c) => ({
        name: c.name,
        hook: c.hook,
        recognised: c.recognised,
        rules: c.rules.map((r) => ({
          ...(r.rule ? { rule: toWire(r.rule) } : {}),
          packets: r.packets,
          bytes: r.bytes,
          recognised: r.recognised,
          raw: r.raw,
        })),
      })),
    };
  };
}
