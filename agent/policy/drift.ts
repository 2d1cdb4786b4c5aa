// Firewall drift (docs/architecture.md#reconciliation-and-policy): the rendered target against ReadFirewall, compared
// as rule lists in render order per plexd chain. Rules are compared by their id and every
// structured field, so a live rule whose comment was kept but whose match was edited
// still counts, and rules privhelper could not recognise always count.
import type { ReadFirewallResponse } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { FirewallRulePlain, FirewallSpecPlain } from "./types.js";

const fields = ["id", "iifname", "oifname", "srcCidr", "dstCidr", "protocol", "portFrom", "portTo", "ctEstablished", "action", "jumpTarget", "logPrefix", "logRatePerSecond"] as const;

function sameRule(a: FirewallRulePlain, b: Partial<FirewallRulePlain> | undefined): boolean {
  return b !== undefined && fields.every((f) => a[f] === b[f]) && (a.redirectPort ?? 0) === (b.redirectPort ?? 0);
}

/** Human-readable differences; empty when the live table is exactly the target. */
export function firewallDrift(expected: FirewallSpecPlain | null, live: Pick<ReadFirewallResponse, "tableExists" | "chains">): string[] {
  if (expected === null || expected.chains.length === 0) return live.tableExists ? ["table inet plexd exists but policy is disabled"] : [];
  if (!live.tableExists) return ["table inet plexd is missing"];
  const out: string[] = [];
  const byName = new Map(live.chains.map((c) => [c.name, c]));
  for (const want of expected.chains) {
    const got = byName.get(want.name);
    if (!got) {
      out.push(`chain ${want.name} is missing`);
      continue;
    }
    if (!got.recognised || got.hook !== want.hook) out.push(`chain ${want.name}: type, hook, priority or policy differ`);
    const n = Math.max(want.rules.length, got.rules.length);
    for (let i = 0; i < n; i++) {
      const w = want.rules[i];
      const g = got.rules[i];
      if (w && g && g.recognised && sameRule(w, g.rule)) continue;
      if (!w) out.push(`chain ${want.name}[${i}]: extra ${g?.recognised ? `rule ${g.rule?.id ?? ""}` : `unrecognised rule ${g?.raw ?? ""}`}`);
      else if (!g) out.push(`chain ${want.name}[${i}]: rule ${w.id} is missing`);
      else if (!g.recognised) out.push(`chain ${want.name}[${i}]: unrecognised rule ${g.raw} where ${w.id} belongs`);
      else out.push(`chain ${want.name}[${i}]: rule ${g.rule?.id ?? ""} where ${w.id} belongs`);
    }
  }
  const wanted = new Set(expected.chains.map((c) => c.name));
  for (const c of live.chains) if (!wanted.has(c.name)) out.push(`extra chain ${c.name}`);
  return out;
}
