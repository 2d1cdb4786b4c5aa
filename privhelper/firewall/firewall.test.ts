// Render → real nft listing → parse, against fixtures recorded from nft 1.0.6 (see
// test/support/firewall-spec.ts), plus validation and planning.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { FirewallSpecSchema, Protocol, RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { privConfigFrom } from "../config.js";
import { regularChainNames, ruleKey, toWire } from "./model.js";
import { hasPlexdTable, parseTable, ruleFromExpr } from "./parse.js";
import { planFirewall } from "./plan.js";
import { renderScript } from "./render.js";
import { firewallLimits, validateFirewallSpec } from "./validate.js";
import { fixtureSpec } from "../../test/support/firewall-spec.js";

const cfg = privConfigFrom({ mesh: { interface: "plexd0" } });
const data = (f: string) => readFileSync(join(import.meta.dirname, "testdata", f), "utf8");
const want = validateFirewallSpec(cfg, create(FirewallSpecSchema, fixtureSpec));
const live = parseTable(data("table.json"), regularChainNames(cfg));

const minimal = (rules: object[], chains: object[] = []) =>
  create(FirewallSpecSchema, { chains: [{ name: "plexd-mesh", hook: "", rules: rules.map((r, i) => ({ id: `aaaaaaa${i}`, action: RuleAction.ACCEPT, ...r })) }, ...chains] });

function issuesOf(spec: ReturnType<typeof minimal>, config = cfg): string {
  try {
    validateFirewallSpec(config, spec);
  } catch (err) {
    expect(PlexdError.from(err).code).toBe("invalid_argument");
    return (err as Error).message;
  }
  throw new Error("expected invalid_argument");
}

describe("render", () => {
  it("renders the recorded script: one transaction replacing table inet plexd", () => {
    expect(renderScript(want)).toBe(data("table.nft"));
  });

  it("an empty spec deletes the table (and only it)", () => {
    expect(renderScript({ chains: [] })).toBe("add table inet plexd\ndelete table inet plexd\n");
  });
});

describe("parse (nft -j list output)", () => {
  it("recovers every rendered rule with its id, in order", () => {
    const byName = new Map(live.chains.map((c) => [c.name, c]));
    expect(live.tableExists).toBe(true);
    for (const c of want.chains) {
      const l = byName.get(c.name)!;
      expect(l.recognised, c.name).toBe(true);
      expect(l.hook).toBe(c.hook);
      const mine = l.rules.slice(0, c.rules.length);
      expect(mine.every((r) => r.recognised)).toBe(true);
      expect(mine.map((r) => r.rule)).toEqual(c.rules);
      expect(mine.every((r) => r.packets === 0n && r.bytes === 0n && r.raw === "")).toBe(true);
    }
  });

  it("flags rogue rules and chains as unrecognised", () => {
    const mesh = live.chains.find((c) => c.name === "plexd-mesh")!;
    const rogue = mesh.rules.slice(want.chains[2]!.rules.length);
    expect(rogue).toHaveLength(4);
    expect(rogue.every((r) => !r.recognised && r.raw.length > 0)).toBe(true);
    // no comment and no counter: structure known, id empty
    expect(rogue[0]!.rule).toMatchObject({ id: "", protocol: "tcp", portFrom: 22, action: "accept" });
    // a plexd-looking comment on a foreign match is still foreign
    expect(rogue[1]!.rule).toBeUndefined();
    expect(rogue[1]!.raw).toContain("ttl");
    expect(rogue[2]!.rule?.id).toBe("");
    // valid id but no counter: not something plexd rendered
    expect(rogue[3]!.rule?.id).toBe("00000010");
    const stray = live.chains.find((c) => c.name === "stray")!;
    expect(stray.recognised).toBe(false);
  });

  it("parses counters", () => {
    const parsed = ruleFromExpr([{ counter: { packets: 7, bytes: 588 } }, { drop: null }]);
    expect(parsed?.counter).toEqual({ packets: 7n, bytes: 588n });
    expect(parsed?.rule.action).toBe("drop");
  });

  it("refuses expression shapes plexd never renders", () => {
    const iif = { match: { op: "==", left: { meta: { key: "iifname" } }, right: "plexd0" } };
    expect(ruleFromExpr([iif, { match: { op: "!=", left: { meta: { key: "iifname" } }, right: "x" } }, { accept: null }])).toBeUndefined();
    expect(ruleFromExpr([iif, iif, { accept: null }])).toBeUndefined();
    expect(ruleFromExpr([iif, { accept: null }, { counter: { packets: 0, bytes: 0 } }])).toBeUndefined();
    expect(ruleFromExpr([{ limit: { rate: 10, burst: 50, per: "second" } }, { log: { prefix: "x" } }])).toBeUndefined();
    expect(ruleFromExpr([{ log: { prefix: "x", level: "crit" } }])).toBeUndefined();
    expect(ruleFromExpr([{ match: { op: "==", left: { payload: { protocol: "ip", field: "saddr" } }, right: { prefix: { addr: "fd00::", len: 8 } } } }, { accept: null }])).toBeUndefined();
    expect(ruleFromExpr([iif])).toBeUndefined(); // no verdict
  });

  it("tells whether table inet plexd exists from `nft -j list tables`", () => {
    const tables = (names: string[]) => JSON.stringify({ nftables: [{ metainfo: {} }, ...names.map((n) => ({ table: { family: "inet", name: n, handle: 1 } }))] });
    expect(hasPlexdTable(tables(["other", "plexd"]))).toBe(true);
    expect(hasPlexdTable(tables(["other"]))).toBe(false);
    expect(() => hasPlexdTable("not json")).toThrow(PlexdError);
  });
});

describe("plan", () => {
  it("is empty when the live table is exactly the spec", () => {
    const clean = {
      tableExists: true,
      chains: live.chains.filter((c) => c.name !== "stray").map((c) => ({ ...c, rules: c.rules.filter((r) => r.recognised) })),
    };
    expect(planFirewall(want, clean)).toEqual([]);
  });

  it("lists rogue rules, extra chains and reordering", () => {
    const steps = planFirewall(want, live);
    expect(steps).toContainEqual({ kind: "set_chain", detail: "plexd-mesh: 10 rules" });
    expect(steps).toContainEqual({ kind: "remove_chain", detail: "stray" });
    const swapped = structuredClone(want);
    const rules = swapped.chains[2]!.rules;
    [rules[1], rules[2]] = [rules[2]!, rules[1]!];
    const clean = { tableExists: true, chains: live.chains.filter((c) => c.name !== "stray").map((c) => ({ ...c, rules: c.rules.filter((r) => r.recognised) })) };
    expect(planFirewall(swapped, clean)).toEqual([{ kind: "set_chain", detail: "plexd-mesh: 10 rules" }]);
  });

  it("creates a missing table; deletes it for an empty spec", () => {
    expect(planFirewall(want, { tableExists: false, chains: [] })[0]).toEqual({ kind: "create_table", detail: `inet plexd: ${want.chains.length} chains` });
    expect(planFirewall({ chains: [] }, live)).toEqual([{ kind: "delete_table", detail: "inet plexd" }]);
    expect(planFirewall({ chains: [] }, { tableExists: false, chains: [] })).toEqual([]);
  });
});

describe("validate (allow-lists)", () => {
  it("re-serialises CIDRs and ports into the canonical form", () => {
    const fw = validateFirewallSpec(cfg, minimal([{ srcCidr: "10.100.1.5/24", protocol: Protocol.TCP, portFrom: 80, portTo: 80 }]));
    expect(fw.chains[0]!.rules[0]).toMatchObject({ src: "10.100.1.0/24", portFrom: 80, portTo: 0 });
    expect(toWire(fw.chains[0]!.rules[0]!)).toMatchObject({ srcCidr: "10.100.1.0/24", protocol: Protocol.TCP, portTo: 0 });
  });

  it.each([
    ["interface not on the allow-list", [{ iifname: "eth0" }], "not an interface plexd may manage"],
    ["bad interface syntax", [{ oifname: 'plexd0" accept' }], "not an interface plexd may manage"],
    ["malformed CIDR", [{ srcCidr: "10.100.0.0/33" }], "src_cidr: must be an IPv4 or IPv6 CIDR"],
    ["rule text in a CIDR", [{ dstCidr: "10.0.0.1 accept" }], "dst_cidr: must be an IPv4 or IPv6 CIDR"],
    ["/0", [{ srcCidr: "0.0.0.0/0" }], "leave the field empty"],
    ["mixed families", [{ srcCidr: "10.0.0.0/8", dstCidr: "fd00::/8" }], "same address family"],
    ["port range backwards", [{ protocol: Protocol.TCP, portFrom: 90, portTo: 80 }], "port_to: must be 0 or >= port_from"],
    ["port out of range", [{ protocol: Protocol.TCP, portFrom: 70000 }], "ports must be 0-65535"],
    ["port without tcp/udp", [{ portFrom: 22 }], "a port needs protocol TCP or UDP"],
    ["icmp with a port", [{ protocol: Protocol.ICMP, portFrom: 22 }], "a port needs protocol TCP or UDP"],
    ["bad id", [{ id: "XYZ" }], "must be 8-32 lower-case hex"],
    ["duplicate id", [{ id: "abcdef01" }, { id: "abcdef01" }], "duplicate rule id"],
    ["no action", [{ action: RuleAction.UNSPECIFIED }], "must be set to a known action"],
    ["jump to a foreign chain", [{ action: RuleAction.JUMP, jumpTarget: "INPUT" }], "must name a regular chain"],
    ["jump to itself", [{ action: RuleAction.JUMP, jumpTarget: "plexd-mesh" }], "cannot jump to itself"],
    ["log prefix with a quote", [{ action: RuleAction.LOG, logPrefix: 'x" accept' }], "log_prefix: must be"],
    ["rate on LOG_DROP", [{ action: RuleAction.LOG_DROP, logPrefix: "x", logRatePerSecond: 5 }], "not allowed with LOG_DROP"],
    ["log fields on accept", [{ logPrefix: "x" }], "only for LOG and LOG_DROP"],
    ["masquerade outside postrouting", [{ action: RuleAction.MASQUERADE }], "MASQUERADE only in chain postrouting"],
    ["ct with drop", [{ ctEstablished: true, action: RuleAction.DROP }], "only with action ACCEPT"],
  ])("refuses %s", (_name, rules, msg) => {
    expect(issuesOf(minimal(rules))).toContain(msg);
  });

  it("refuses foreign chains, wrong hooks and unconfined base-chain rules", () => {
    expect(issuesOf(minimal([], [{ name: "INPUT", hook: "input" }]))).toContain("is not a plexd chain");
    expect(issuesOf(minimal([], [{ name: "input", hook: "forward" }]))).toContain("must have hook input");
    expect(issuesOf(minimal([], [{ name: "plexd-access-in", hook: "input" }]))).toContain("hook must be empty");
    expect(issuesOf(minimal([], [{ name: "plexd-mesh", hook: "" }]))).toContain("duplicate chain");
    expect(issuesOf(minimal([], [{ name: "input", hook: "input", rules: [{ id: "bbbbbbbb", action: RuleAction.DROP }] }]))).toContain("must match iifname or oifname");
    // no chains at all is valid: it means "no table inet plexd" (policy.enabled: false)
    expect(validateFirewallSpec(cfg, create(FirewallSpecSchema, {}))).toEqual({ chains: [] });
    expect(() => validateFirewallSpec(cfg, undefined)).toThrow("spec: required");
  });

  it("allows the configured policy.chain_name", () => {
    const custom = privConfigFrom({ policy: { chain_name: "mesh-in" } });
    const spec = create(FirewallSpecSchema, { chains: [{ name: "mesh-in", rules: [{ id: "cccccccc", action: RuleAction.ACCEPT }] }] });
    expect(validateFirewallSpec(custom, spec).chains[0]!.name).toBe("mesh-in");
    expect(issuesOf(spec)).toContain("is not a plexd chain");
  });

  it("bounds the rule count", () => {
    const rules = Array.from({ length: firewallLimits.rules + 1 }, (_, i) => ({ id: i.toString(16).padStart(8, "0"), action: RuleAction.ACCEPT }));
    expect(issuesOf(create(FirewallSpecSchema, { chains: [{ name: "plexd-mesh", rules }] }))).toContain(`at most ${firewallLimits.rules} rules`);
  });

  it("keys compare canonical rules exactly", () => {
    const a = want.chains[2]!.rules[1]!;
    expect(ruleKey(a)).toBe(ruleKey({ ...a }));
    expect(ruleKey(a)).not.toBe(ruleKey({ ...a, portFrom: 1 }));
  });
});
