// ApplyFirewall: validate (allow-lists) → read the live table → plan → one atomic
// `nft -f` transaction replacing table inet plexd (node-agent.md 4.5, design.md 2).
// Nothing outside table inet plexd is ever named in the script, so the rest of the
// host's ruleset cannot be touched.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ApplyFirewallRequest, ApplyFirewallResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { CallContext } from "../adapter.js";
import type { PrivConfig } from "../config.js";
import { readLiveFirewall } from "../firewall/live.js";
import { planFirewall } from "../firewall/plan.js";
import { renderScript } from "../firewall/render.js";
import { validateFirewallSpec } from "../firewall/validate.js";
import { createLock, type Lock } from "../lock.js";
import type { Logger } from "../log.js";
import { nftTool, type NftTool } from "../os/nft.js";
import type { Runner } from "../os/runner.js";

export interface FirewallDeps {
  runner: Runner;
  config: PrivConfig;
  log: Logger;
  /** Serialises firewall applies (read-plan-write must not interleave); one is made if absent. */
  firewallLock?: Lock;
  nft?: NftTool;
}

type Response = MessageInitShape<typeof ApplyFirewallResponseSchema>;

export function makeApplyFirewall(deps: FirewallDeps) {
  const lock = deps.firewallLock ?? createLock();
  const nft = deps.nft ?? nftTool(deps.runner);
  return async (req: ApplyFirewallRequest, ctx: CallContext): Promise<Response> => {
    const t0 = performance.now();
    const want = validateFirewallSpec(deps.config, req.spec);
    return lock(async () => {
      const t1 = performance.now();
      // Rendering (CPU) overlaps the live read (nft subprocesses); the script is simply
      // dropped when the plan turns out empty.
      const reading = readLiveFirewall(nft, deps.config, ctx.signal);
      const script = req.dryRun ? "" : renderScript(want);
      const t2 = performance.now();
      const live = await reading;
      const plan = planFirewall(want, live);
      if (req.dryRun || plan.length === 0) return { result: { changed: false, plan } };
      const t3 = performance.now();
      try {
        await nft.applyScript(script, ctx.signal);
      } catch (err) {
        const e = PlexdError.from(err);
        if (e.code === "cancelled") throw e;
        // nft commits a batch whole or not at all: a rejected script left the previous
        // table in place, which is what rolled_back reports.
        deps.log.warn({ caller: ctx.caller, error: e.message }, "firewall apply failed");
        return { result: { changed: false, plan, failedStep: "nft_transaction", rolledBack: true, error: e.message } };
      }
      const rules = want.chains.reduce((n, c) => n + c.rules.length, 0);
      // Phase timings: the apply should cost little more than nft itself (design.md 6).
      const ms = (a: number, b: number) => Math.round(b - a);
      const timings = { validate: ms(t0, t1), render: ms(t1, t2), readAndPlan: ms(t1, t3), nft: ms(t3, performance.now()) };
      deps.log.info({ caller: ctx.caller, chains: want.chains.length, rules, steps: plan.length, ms: timings }, "firewall applied");
      return { result: { changed: true, plan } };
    });
  };
}
