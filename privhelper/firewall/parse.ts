// Parses `nft -j list table inet plexd` back into the canonical form. Only the exact
// expressions plexd renders are understood; a rule with anything else, without a counter,
// or without a valid "plexd:<id>" comment is reported with recognised = false (a rogue or
// tampered rule), so the agent's drift check sees it and the next apply replaces it.
import { PlexdError } from "../../proto/lib/errors.js";
import { parseCidr } from "../../proto/lib/net.js";
import { baseChains, isBaseChain, type Action, type Hook, type NormRule, type Proto } from "./model.js";
import { ruleIdRe, logPrefixRe } from "./validate.js";

/** `rule`: canonical when every expression is plexd's (id "" without a plexd comment); `raw`: an unrecognised rule's JSON, for humans. */
export interface LiveRule {
  rule: NormRule | undefined;
  recognised: boolean;
  packets: bigint;
  bytes: bigint;
  raw: string;
}

export interface LiveChain {
  name: string;
  hook: Hook;
  recognised: boolean;
  rules: LiveRule[];
}

export interface LiveFirewall {
  tableExists: boolean;
  chains: LiveChain[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

const commentRe = /^plexd:([0-9a-f]{8,32})$/;

function addr(right: unknown, fam: "ip" | "ip6"): string | undefined {
  const bits = fam === "ip" ? 32 : 128;
  if (typeof right === "string") return parseCidr(`${right}/${bits}`, true)?.cidr;
  if (isObj(right) && isObj(right.prefix) && typeof right.prefix.addr === "string" && typeof right.prefix.len === "number") {
    const c = parseCidr(`${right.prefix.addr}/${right.prefix.len}`, true);
    // Family must agree with the payload protocol (ip saddr never holds an IPv6 prefix).
    return c !== undefined && c.family === (fam === "ip6" ? 6 : 4) ? c.cidr : undefined;
  }
  return undefined;
}

const isPort = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 65535;

/** One rule's expressions → canonical rule (id ""), or undefined when anything is foreign. */
export function ruleFromExpr(expr: unknown): { rule: NormRule; counter: { packets: bigint; bytes: bigint } | undefined } | undefined {
  if (!Array.isArray(expr)) return undefined;
  const r: NormRule = { id: "", iifname: "", oifname: "", src: "", dst: "", protocol: "", portFrom: 0, portTo: 0, ct: false, action: "drop", jump: "", logPrefix: "", logRate: 0 };
  let verdict: Action | undefined;
  let log = false;
  let limit = false;
  let l4: Proto | undefined;
  let dportProto: Proto | undefined;
  let counter: { packets: bigint; bytes: bigint } | undefined;
  const seen = new Set<string>();
  const once = (k: string) => !seen.has(k) && seen.add(k) !== undefined;
  for (const e of expr as unknown[]) {
    if (!isObj(e)) return undefined;
    const keys = Object.keys(e);
    if (keys.length !== 1) return undefined;
    const k = keys[0]!;
    const v = e[k];
    if (verdict !== undefined) return undefined; // nothing may follow the verdict
    if (k === "match") {
      if (!isObj(v) || !isObj(v.left)) return undefined;
      const { op, left, right } = v as { op: unknown; left: Obj; right: unknown };
      if (isObj(left.meta) && op === "==") {
        const key = left.meta.key;
        if ((key === "iifname" || key === "oifname") && typeof right === "string" && once(key)) r[key] = right;
        else if (key === "l4proto" && (right === "tcp" || right === "udp" || right === "icmp") && once("l4proto")) l4 = right;
        else return undefined;
      } else if (isObj(left.ct) && left.ct.key === "state" && op === "in" && once("ct")) {
        if (!Array.isArray(right) || right.length !== 2 || !right.includes("established") || !right.includes("related")) return undefined;
        r.ct = true;
      } else if (isObj(left.payload) && op === "==") {
        const { protocol, field } = left.payload;
        if ((protocol === "ip" || protocol === "ip6") && (field === "saddr" || field === "daddr") && once(field)) {
          const c = addr(right, protocol);
          if (c === undefined) return undefined;
          if (field === "saddr") r.src = c;
          else r.dst = c;
        } else if ((protocol === "tcp" || protocol === "udp") && field === "dport" && once("dport")) {
          dportProto = protocol;
          if (isPort(right) && right > 0) r.portFrom = right;
          else if (isObj(right) && Array.isArray(right.range) && isPort(right.range[0]) && isPort(right.range[1]) && right.range[0] > 0 && right.range[1] > right.range[0]) {
            r.portFrom = right.range[0];
            r.portTo = right.range[1];
          } else return undefined;
        } else return undefined;
      } else return undefined;
    } else if (k === "limit" && isObj(v) && once("limit")) {
      // plexd renders `limit rate N/second` only; nft shows its default burst of 5.
      if (v.per !== "second" || typeof v.rate !== "number" || !Number.isInteger(v.rate) || v.rate < 1 || (v.burst !== undefined && v.burst !== 5) || v.inv !== undefined || v.rate_unit !== undefined) return undefined;
      r.logRate = v.rate;
      limit = true;
    } else if (k === "counter" && isObj(v) && once("counter")) {
      if (typeof v.packets !== "number" || typeof v.bytes !== "number") return undefined;
      counter = { packets: BigInt(v.packets), bytes: BigInt(v.bytes) };
    } else if (k === "log" && isObj(v) && once("log")) {
      if (Object.keys(v).length !== 1 || typeof v.prefix !== "string" || !logPrefixRe.test(v.prefix)) return undefined;
      r.logPrefix = v.prefix;
      log = true;
    } else if ((k === "accept" || k === "drop" || k === "masquerade") && v === null) {
      verdict = log ? (k === "drop" ? "log_drop" : undefined) : k;
      if (verdict === undefined) return undefined;
    } else if (k === "jump" && isObj(v) && typeof v.target === "string" && !log) {
      verdict = "jump";
      r.jump = v.target;
    } else return undefined;
  }
  if (verdict === undefined) {
    if (!log) return undefined;
    verdict = "log";
  }
  if (limit && verdict !== "log") return undefined;
  r.action = verdict;
  if (dportProto !== undefined) {
    if (l4 !== undefined) return undefined;
    r.protocol = dportProto;
  } else if (l4 !== undefined) r.protocol = l4;
  // Canonical order of statements is part of what plexd renders; a counter is on every rule.
  return { rule: r, counter };
}

function rawOf(expr: unknown): string {
  const s = JSON.stringify(expr) ?? "";
  return s.length > 2_000 ? `${s.slice(0, 2_000)}…` : s;
}

/** `nft -j list tables`: does table inet plexd exist? */
export function hasPlexdTable(json: string): boolean {
  const doc = parseDoc(json);
  return doc.some((o) => isObj(o.table) && o.table.family === "inet" && o.table.name === "plexd");
}

function parseDoc(json: string): Obj[] {
  const doc: unknown = (() => {
    try {
      return JSON.parse(json);
    } catch (err) {
      throw new PlexdError("internal", "nft printed invalid JSON", { cause: err });
    }
  })();
  if (!isObj(doc) || !Array.isArray(doc.nftables)) throw new PlexdError("internal", "nft JSON output without an nftables array");
  return doc.nftables.filter(isObj);
}

/**
 * `nft -j list table inet plexd` → live chains in listing order, rules in chain order.
 * `regular` names the non-base chains plexd may own; any other chain is unrecognised.
 */
export function parseTable(json: string, regular: ReadonlySet<string>): LiveFirewall {
  const chains = new Map<string, LiveChain>();
  let tableExists = false;
  for (const o of parseDoc(json)) {
    if (isObj(o.table)) {
      if (o.table.family === "inet" && o.table.name === "plexd") tableExists = true;
      continue;
    }
    const c = o.chain;
    if (isObj(c) && c.family === "inet" && c.table === "plexd" && typeof c.name === "string") {
      const hook = typeof c.hook === "string" ? c.hook : "";
      let recognised: boolean;
      if (isBaseChain(c.name)) {
        const b = baseChains[c.name];
        recognised = hook === c.name && c.type === b.type && c.prio === b.prio && c.policy === "accept";
      } else recognised = hook === "" && regular.has(c.name);
      chains.set(c.name, { name: c.name, hook: (recognised ? hook : "") as Hook, recognised, rules: [] });
      continue;
    }
    const rule = o.rule;
    if (!isObj(rule) || rule.family !== "inet" || rule.table !== "plexd" || typeof rule.chain !== "string") continue;
    const chain = chains.get(rule.chain);
    if (!chain) continue;
    const parsed = ruleFromExpr(rule.expr);
    const m = typeof rule.comment === "string" ? commentRe.exec(rule.comment) : null;
    const id = m?.[1] ?? "";
    if (parsed) parsed.rule.id = id;
    const recognised = parsed !== undefined && parsed.counter !== undefined && ruleIdRe.test(id);
    const raw = recognised ? "" : rawOf({ expr: rule.expr, ...(rule.comment !== undefined ? { comment: rule.comment } : {}) });
    chain.rules.push({ rule: parsed?.rule, recognised, packets: parsed?.counter?.packets ?? 0n, bytes: parsed?.counter?.bytes ?? 0n, raw });
  }
  return { tableExists, chains: [...chains.values()] };
}
