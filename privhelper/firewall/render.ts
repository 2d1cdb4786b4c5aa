// A validated firewall as one nft script for `nft -f -`. A script, not nft's JSON input: nft
// parses it faster (10,000 rules: ~1.0 s against ~1.5 s), and every token comes from the
// canonical form, so quoting is trivial. `add table; delete table; add table; ...` in one
// file is one transaction: no moment without rules, and a failure leaves the old table.
import { baseChains, isBaseChain, table, type DesiredFirewall, type NormRule } from "./model.js";

const t = `${table.family} ${table.name}`;

function addrMatch(cidr: string, dir: "saddr" | "daddr"): string {
  const fam = cidr.includes(":") ? "ip6" : "ip";
  // nft lists a full-length prefix as a bare address; render the same way.
  const text = cidr.endsWith("/32") && fam === "ip" ? cidr.slice(0, -3) : cidr.endsWith("/128") && fam === "ip6" ? cidr.slice(0, -4) : cidr;
  return `${fam} ${dir} ${text}`;
}

/** The statements of one rule, without `add rule inet plexd <chain>`. */
export function renderRuleBody(r: NormRule): string {
  const p: string[] = [];
  if (r.iifname) p.push(`iifname "${r.iifname}"`);
  if (r.oifname) p.push(`oifname "${r.oifname}"`);
  if (r.ct) p.push("ct state established,related");
  if (r.src) p.push(addrMatch(r.src, "saddr"));
  if (r.dst) p.push(addrMatch(r.dst, "daddr"));
  if (r.portFrom > 0) p.push(`${r.protocol} dport ${r.portTo > 0 ? `${r.portFrom}-${r.portTo}` : r.portFrom}`);
  else if (r.protocol) p.push(`meta l4proto ${r.protocol}`);
  // Statements run left to right: only packets within the rate reach `log`.
  if (r.action === "log" && r.logRate > 0) p.push(`limit rate ${r.logRate}/second`);
  p.push("counter");
  switch (r.action) {
    case "accept":
    case "drop":
    case "masquerade":
      p.push(r.action);
      break;
    case "jump":
      p.push(`jump ${r.jump}`);
      break;
    case "log":
      p.push(`log prefix "${r.logPrefix}"`);
      break;
    case "log_drop":
      p.push(`log prefix "${r.logPrefix}" drop`);
      break;
    case "redirect":
      p.push(`redirect to :${r.redirectPort}`);
      break;
  }
  p.push(`comment "plexd:${r.id}"`);
  return p.join(" ");
}

export function renderScript(fw: DesiredFirewall): string {
  // `add table` first makes the delete valid when the table does not exist yet.
  const lines = [`add table ${t}`, `delete table ${t}`];
  if (fw.chains.length > 0) {
    lines.push(`add table ${t}`);
    // Every chain before any rule: a jump needs its target to exist.
    for (const c of fw.chains) {
      if (isBaseChain(c.name)) {
        const b = baseChains[c.name];
        lines.push(`add chain ${t} ${c.name} { type ${b.type} hook ${c.name} priority ${b.prioName}; policy accept; }`);
      } else lines.push(`add chain ${t} ${c.name}`);
    }
    for (const c of fw.chains) for (const r of c.rules) lines.push(`add rule ${t} ${c.name} ${renderRuleBody(r)}`);
  }
  lines.push("");
  return lines.join("\n");
}
