// What an ApplyFirewall would change, from the desired canonical form and the live table.
// An empty plan means the kernel already holds exactly the spec (same spec twice →
// nothing applied). The apply itself always replaces the whole table in one transaction;
// the plan exists to decide whether to, and to tell the caller what differed.
import type { DesiredFirewall, NormChain } from "./model.js";
import { ruleKey } from "./model.js";
import type { LiveChain, LiveFirewall } from "./parse.js";

export interface FirewallPlanStep {
  kind: "create_table" | "delete_table" | "add_chain" | "remove_chain" | "reset_chain" | "set_chain";
  detail: string;
}

function chainDiff(want: NormChain, live: LiveChain): string | undefined {
  const wantKeys = want.rules.map(ruleKey);
  const liveKeys = live.rules.map((r) => (r.recognised && r.rule ? ruleKey(r.rule) : undefined));
  if (wantKeys.length === liveKeys.length && wantKeys.every((k, i) => k === liveKeys[i])) return undefined;
  const liveSet = new Set(liveKeys);
  const wantSet = new Set(wantKeys);
  const added = wantKeys.filter((k) => !liveSet.has(k)).length;
  const removed = liveKeys.filter((k) => k !== undefined && !wantSet.has(k)).length;
  const rogue = liveKeys.filter((k) => k === undefined).length;
  const parts = [`${added} added`, `${removed} removed`];
  if (rogue > 0) parts.push(`${rogue} unrecognised removed`);
  if (added === 0 && removed === 0 && rogue === 0) parts.push("reordered");
  return `${want.name}: ${want.rules.length} rules (${parts.join(", ")})`;
}

export function planFirewall(want: DesiredFirewall, live: LiveFirewall): FirewallPlanStep[] {
  if (want.chains.length === 0) return live.tableExists ? [{ kind: "delete_table", detail: "inet plexd" }] : [];
  const steps: FirewallPlanStep[] = [];
  if (!live.tableExists) steps.push({ kind: "create_table", detail: "inet plexd" });
  const liveByName = new Map(live.chains.map((c) => [c.name, c]));
  for (const c of want.chains) {
    const l = liveByName.get(c.name);
    if (!l) {
      steps.push({ kind: "add_chain", detail: `${c.name}${c.hook ? ` (hook ${c.hook})` : ""}: ${c.rules.length} rules` });
      continue;
    }
    if (!l.recognised || l.hook !== c.hook) steps.push({ kind: "reset_chain", detail: `${c.name}: type, hook, priority or policy differ` });
    const d = chainDiff(c, l);
    if (d !== undefined) steps.push({ kind: "set_chain", detail: d });
  }
  const wanted = new Set(want.chains.map((c) => c.name));
  for (const l of live.chains) if (!wanted.has(l.name)) steps.push({ kind: "remove_chain", detail: `${l.name}: ${l.rules.length} rules` });
  return steps;
}
