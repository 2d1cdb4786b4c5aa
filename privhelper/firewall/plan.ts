// Whether an ApplyFirewall has anything to do, and what differs, from the canonical spec and
// the live table. The apply itself always replaces the whole table in one transaction.
import type { Step } from "../mesh/diff.js";
import { ruleKey, type DesiredFirewall, type NormChain } from "./model.js";
import type { LiveChain, LiveFirewall } from "./parse.js";

const sameChain = (want: NormChain, live: LiveChain | undefined): boolean =>
  live !== undefined && live.recognised && live.hook === want.hook && live.rules.length === want.rules.length && live.rules.every((r, i) => r.recognised && r.rule !== undefined && ruleKey(r.rule) === ruleKey(want.rules[i]!));

/** Empty when the live table is exactly the spec (the same spec twice changes nothing). */
export function planFirewall(want: DesiredFirewall, live: LiveFirewall): Step[] {
  if (want.chains.length === 0) return live.tableExists ? [{ kind: "delete_table", detail: "inet plexd" }] : [];
  if (!live.tableExists) return [{ kind: "create_table", detail: `inet plexd: ${want.chains.length} chains` }];
  const liveByName = new Map(live.chains.map((c) => [c.name, c]));
  const steps = want.chains.filter((c) => !sameChain(c, liveByName.get(c.name))).map((c) => ({ kind: "set_chain", detail: `${c.name}: ${c.rules.length} rules` }));
  const wanted = new Set(want.chains.map((c) => c.name));
  return [...steps, ...live.chains.filter((l) => !wanted.has(l.name)).map((l) => ({ kind: "remove_chain", detail: l.name }))];
}
