// ApplyFirewall: validate → read table inet plexd → plan → one atomic `nft -f` replacing the
// table; nothing else is ever named, so the rest of the host's ruleset cannot be touched.
// ReadFirewall: the table as structured rules with counters, foreign ones unrecognised.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ApplyFirewallRequest, ApplyFirewallResponseSchema, ReadFirewallRequest, ReadFirewallResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { CallContext } from "../adapter.js";
import type { PrivConfig } from "../config.js";
import { regularChainNames, toWire } from "../firewall/model.js";
import { hasPlexdTable, parseTable, type LiveFirewall } from "../firewall/parse.js";
import { planFirewall } from "../firewall/plan.js";
import { renderScript } from "../firewall/render.js";
import { validateFirewallSpec } from "../firewall/validate.js";
import type { Lock } from "../handlers.js";
import type { Logger } from "../log.js";
import type { Runner } from "../os/run.js";

export interface FirewallDeps { runner: Runner; config: PrivConfig; log: Logger }

const nftTimeoutMs = 120_000; // tens of thousands of rules take seconds on a busy host

async function readLiveFirewall(deps: FirewallDeps, signal: AbortSignal): Promise<LiveFirewall> {
  const nft = async (args: string[]) => (await deps.runner.run("nft", args, { timeoutMs: nftTimeoutMs, signal })).stdout;
  // The table list first: a missing table is then not an nft error whose only signal is stderr.
  if (!hasPlexdTable(await nft(["-j", "list", "tables", "inet"]))) return { tableExists: false, chains: [] };
  return parseTable(await nft(["-j", "list", "table", "inet", "plexd"]), regularChainNames(deps.config));
}

export function makeApplyFirewall(deps: FirewallDeps, lock: Lock) {
  return async (req: ApplyFirewallRequest, ctx: CallContext): Promise<MessageInitShape<typeof ApplyFirewallResponseSchema>> => {
    const started = performance.now();
    const want = validateFirewallSpec(deps.config, req.spec);
    return lock(async () => {
      const plan = planFirewall(want, await readLiveFirewall(deps, ctx.signal));
      if (req.dryRun || plan.length === 0) return { result: { changed: false, plan } };
      // From here the transaction runs to its end: nft commits it whole or not at all.
      ctx.signal.throwIfAborted();
      try {
        await deps.runner.run("nft", ["-f", "-"], { input: renderScript(want), timeoutMs: nftTimeoutMs });
      } catch (err) {
        const e = PlexdError.from(err);
        // A rejected script left the previous table in place, which is what rolled_back reports.
        deps.log.warn({ uid: ctx.uid, pid: ctx.pid, error: e.message }, "firewall apply failed");
        return { result: { changed: false, plan, failedStep: "nft_transaction", rolledBack: true, error: e.message } };
      }
      const rules = want.chains.reduce((n, c) => n + c.rules.length, 0);
      deps.log.info({ uid: ctx.uid, pid: ctx.pid, chains: want.chains.length, rules, steps: plan.length, ms: Math.round(performance.now() - started) }, "firewall applied");
      return { result: { changed: true, plan } };
    });
  };
}

export function makeReadFirewall(deps: FirewallDeps) {
  return async (_req: ReadFirewallRequest, ctx: CallContext): Promise<MessageInitShape<typeof ReadFirewallResponseSchema>> => {
    const live = await readLiveFirewall(deps, ctx.signal);
    return {
      tableExists: live.tableExists,
      chains: live.chains.map((c) => ({
        name: c.name,
        hook: c.hook,
        recognised: c.recognised,
        rules: c.rules.map((r) => ({ ...(r.rule ? { rule: toWire(r.rule) } : {}), packets: r.packets, bytes: r.bytes, recognised: r.recognised, raw: r.raw })),
      })),
    };
  };
}
