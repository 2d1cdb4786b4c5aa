// Reads `nft -j list table inet plexd` back into the canonical form. A live rule is plexd's
// only if its expressions are exactly what plexd renders for the rule they describe, with a
// counter and a "plexd:<id>" comment; anything else is reported unrecognised (a rogue or
// tampered rule), so the agent's drift check sees it and the next apply replaces it.
import { isDeepStrictEqual } from "node:util";
import { PlexdError } from "../../proto/lib/errors.js";
import { parseCidr } from "../../proto/lib/net.js";
import { actionOf, baseChains, isBaseChain, type Action, type Hook, type NormRule, type Proto } from "./model.js";
import { logPrefixRe } from "./validate.js";

/** `rule`: what the expressions describe (id "" without a plexd comment); `raw`: an unrecognised rule's JSON. */
export interface LiveRule { rule: NormRule | undefined; recognised: boolean; packets: bigint; bytes: bigint; raw: string }

export interface LiveChain { name: string; hook: Hook; recognised: boolean; rules: LiveRule[] }

export interface LiveFirewall { tableExists: boolean; chains: LiveChain[] }

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown): string => (typeof v === "string" ? v : "");
const num = (v: unknown): number => (typeof v === "number" && Number.isInteger(v) && v >= 0 ? v : 0);

/** The JSON expressions nft lists for a rule plexd rendered (firewall/render.ts), counter aside. */
export function exprOf(r: NormRule): unknown[] {
  const match = (left: unknown, right: unknown, op = "==") => ({ match: { op, left, right } });
  const addr = (cidr: string, field: string) => {
    const c = parseCidr(cidr, true)!;
    const full = c.bits === (c.family === 4 ? 32 : 128);
    return match({ payload: { protocol: c.family === 4 ? "ip" : "ip6", field } }, full ? c.text : { prefix: { addr: c.text, len: c.bits } });
  };
  const out: unknown[] = [];
  if (r.iifname) out.push(match({ meta: { key: "iifname" } }, r.iifname));
  if (r.oifname) out.push(match({ meta: { key: "oifname" } }, r.oifname));
  if (r.ct) out.push(match({ ct: { key: "state" } }, ["established", "related"], "in"));
  if (r.src) out.push(addr(r.src, "saddr"));
  if (r.dst) out.push(addr(r.dst, "daddr"));
  if (r.portFrom > 0) out.push(match({ payload: { protocol: r.protocol, field: "dport" } }, r.portTo > 0 ? { range: [r.portFrom, r.portTo] } : r.portFrom));
  else if (r.protocol) out.push(match({ meta: { key: "l4proto" } }, r.protocol));
  if (r.action === "log" && r.logRate > 0) out.push({ limit: { rate: r.logRate, burst: 5, per: "second" } });
  out.push("counter");
  if (r.action === "log" || r.action === "log_drop") out.push({ log: { prefix: r.logPrefix } });
  if (r.action === "jump") out.push({ jump: { target: r.jump } });
  else if (r.action === "redirect") out.push({ redirect: { port: r.redirectPort } });
  else if (r.action !== "log") out.push({ [r.action === "log_drop" ? "drop" : r.action]: null });
  return out;
}

/** One rule's expressions → the rule they describe (id ""), and its counter. */
export function ruleFromExpr(expr: unknown): { rule: NormRule; counter: { packets: bigint; bytes: bigint } | undefined } | undefined {
  if (!Array.isArray(expr)) return undefined;
  const r: NormRule = { id: "", iifname: "", oifname: "", src: "", dst: "", protocol: "", portFrom: 0, portTo: 0, ct: false, action: "accept", jump: "", logPrefix: "", logRate: 0, redirectPort: 0 };
  let counter: { packets: bigint; bytes: bigint } | undefined;
  let log = false;
  const rest: unknown[] = [];
  for (const e of expr as unknown[]) {
    const m = isObj(e) && isObj(e.match) ? e.match : undefined;
    const left = isObj(m?.left) ? m.left : {};
    const meta = isObj(left.meta) ? str(left.meta.key) : "";
    const payload = isObj(left.payload) ? left.payload : undefined;
    const right = m?.right;
    if (meta === "iifname" || meta === "oifname") r[meta] = str(right);
    else if (meta === "l4proto") r.protocol = str(right) as Proto;
    else if (isObj(left.ct)) r.ct = true;
    else if (payload && (payload.field === "saddr" || payload.field === "daddr")) {
      const [addr, len] = isObj(right) && isObj(right.prefix) ? [str(right.prefix.addr), num(right.prefix.len)] : [str(right), payload.protocol === "ip" ? 32 : 128];
      r[payload.field === "saddr" ? "src" : "dst"] = parseCidr(`${addr}/${len}`, true)?.cidr ?? "";
    } else if (payload?.field === "dport") {
      r.protocol = str(payload.protocol) as Proto;
      [r.portFrom, r.portTo] = isObj(right) && Array.isArray(right.range) ? [num(right.range[0]), num(right.range[1])] : [num(right), 0];
    } else if (isObj(e) && isObj(e.limit)) r.logRate = num(e.limit.rate);
    else if (isObj(e) && isObj(e.counter)) {
      counter = { packets: BigInt(num(e.counter.packets)), bytes: BigInt(num(e.counter.bytes)) };
      rest.push("counter");
      continue;
    } else if (isObj(e) && isObj(e.log)) [log, r.logPrefix] = [true, str(e.log.prefix)];
    else if (isObj(e) && isObj(e.jump)) [r.action, r.jump] = ["jump", str(e.jump.target)];
    else if (isObj(e) && isObj(e.redirect)) [r.action, r.redirectPort] = ["redirect", num(e.redirect.port)];
    else if (isObj(e) && Object.keys(e).length === 1) r.action = (log ? (Object.keys(e)[0] === "drop" ? "log_drop" : "") : Object.keys(e)[0]) as Action;
    rest.push(e);
  }
  if (log && r.action === "accept") r.action = "log";
  // Only values validation admits can be plexd's; the rest must be exactly what plexd renders.
  const admissible = ["", "tcp", "udp", "icmp"].includes(r.protocol) && Object.hasOwn(actionOf, r.action) && (!log || logPrefixRe.test(r.logPrefix));
  // A rule without a counter still says what it is; it is not plexd's (parseTable).
  const rendered = exprOf(r).filter((x) => counter !== undefined || x !== "counter");
  return admissible && isDeepStrictEqual(rendered, rest) ? { rule: r, counter } : undefined;
}

/** `nft -j list tables`: does table inet plexd exist? */
export function hasPlexdTable(json: string): boolean {
  return parseDoc(json).some((o) => isObj(o.table) && o.table.family === "inet" && o.table.name === "plexd");
}

function parseDoc(json: string): Obj[] {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    throw new PlexdError("internal", "nft printed invalid JSON", { cause: err });
  }
  if (!isObj(doc) || !Array.isArray(doc.nftables)) throw new PlexdError("internal", "nft JSON output without an nftables array");
  return doc.nftables.filter(isObj);
}

/** Live chains in listing order, rules in chain order; `regular` names the non-base chains plexd may own. */
export function parseTable(json: string, regular: ReadonlySet<string>): LiveFirewall {
  const chains = new Map<string, LiveChain>();
  let tableExists = false;
  for (const o of parseDoc(json)) {
    if (isObj(o.table) && o.table.family === "inet" && o.table.name === "plexd") tableExists = true;
    const c = isObj(o.chain) && o.chain.family === "inet" && o.chain.table === "plexd" ? o.chain : undefined;
    if (c && typeof c.name === "string") {
      const hook = str(c.hook);
      const b = isBaseChain(c.name) ? baseChains[c.name] : undefined;
      const recognised = b ? hook === c.name && c.type === b.type && c.prio === b.prio && c.policy === "accept" : hook === "" && regular.has(c.name);
      chains.set(c.name, { name: c.name, hook: (recognised ? hook : "") as Hook, recognised, rules: [] });
    }
    const rule = isObj(o.rule) && o.rule.family === "inet" && o.rule.table === "plexd" ? o.rule : undefined;
    const chain = rule ? chains.get(str(rule.chain)) : undefined;
    if (!rule || !chain) continue;
    const parsed = ruleFromExpr(rule.expr);
    const id = /^plexd:([0-9a-f]{8,32})$/.exec(str(rule.comment))?.[1] ?? "";
    if (parsed) parsed.rule.id = id;
    const recognised = parsed !== undefined && parsed.counter !== undefined && id !== "";
    const raw = recognised ? "" : JSON.stringify({ expr: rule.expr, ...(rule.comment !== undefined ? { comment: rule.comment } : {}) }).slice(0, 2_000);
    chain.rules.push({ rule: parsed?.rule, recognised, packets: parsed?.counter?.packets ?? 0n, bytes: parsed?.counter?.bytes ?? 0n, raw });
  }
  return { tableExists, chains: [...chains.values()] };
}
