// Table tests for the policy compiler: policies + peers in → visible peers, rendered
// firewall rules and skipped rules out (docs/architecture.md#reconciliation-and-policy).
import { describe, expect, it } from "vitest";
import { Protocol, RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { compilePolicy, type CompileInput, type FirewallRulePlain, type PolicyConfig, type PolicyInput } from "./compile.js";

const local = { id: "n_a", meshIp: "10.100.0.1" };
const peers = [
  { id: "n_b", mesh_ip: "10.100.0.2" },
  { id: "n_c", mesh_ip: "10.100.0.3" },
  { id: "n_d", mesh_ip: "10.100.1.4" },
];
const cfg: PolicyConfig = { enabled: true, default: "deny", logDenied: true, meshInterface: "plexd0", mode: "node" };

const rule = (src: string, dst: string, action = "allow", protocol = "", port = 0) => ({ src, dst, port, protocol, action });
const compile = (policies: PolicyInput[], over: Partial<CompileInput> = {}, config: Partial<PolicyConfig> = {}) =>
  compilePolicy({ policies, local, peers, config: { ...cfg, ...config }, ...over });

const proto = { [Protocol.UNSPECIFIED]: "", [Protocol.TCP]: "tcp", [Protocol.UDP]: "udp", [Protocol.ICMP]: "icmp" } as Record<number, string>;
/** A rule as one line: "accept 10.100.0.2/32>10.100.0.1/32 tcp/8080". */
function show(r: FirewallRulePlain): string {
  if (r.ctEstablished) return "established";
  if (r.action === RuleAction.JUMP) return `jump ${r.jumpTarget}`;
  if (r.action === RuleAction.LOG) return `log "${r.logPrefix}" ${r.logRatePerSecond}/s`;
  const verdict = r.action === RuleAction.ACCEPT ? "accept" : "drop";
  const match = r.srcCidr || r.dstCidr ? ` ${r.srcCidr || "*"}>${r.dstCidr || "*"}` : "";
  const p = proto[r.protocol] ?? "?";
  return `${verdict}${match}${p ? ` ${p}${r.portFrom ? `/${r.portFrom}` : ""}` : ""}`;
}
const meshRules = (res: ReturnType<typeof compile>, chain = "plexd-mesh") => res.firewall?.chains.find((c) => c.name === chain)?.rules.map(show);
const policyRules = (res: ReturnType<typeof compile>) => meshRules(res)?.slice(1, -3);

describe("rendering (4.5)", () => {
  it("renders the fixed layout around an allow by node id", () => {
    const res = compile([{ id: "p1", rules: [rule("n_b", "n_a", "allow", "tcp", 8080)] }]);
    expect(res.firewall?.chains.map((c) => [c.name, c.hook])).toEqual([
      ["input", "input"],
      ["forward", "forward"],
      ["plexd-mesh", ""],
      ["plexd-access-in", ""],
    ]);
    expect(res.firewall?.chains[0]?.rules.map(show)).toEqual(["jump plexd-mesh"]);
    expect(res.firewall?.chains[0]?.rules[0]?.iifname).toBe("plexd0");
    expect(meshRules(res)).toEqual(["established", "accept 10.100.0.2/32>10.100.0.1/32 tcp/8080", "jump plexd-access-in", 'log "plexd-deny " 10/s', "drop"]);
    expect(res.firewall?.chains.flatMap((c) => c.rules).every((r) => r.iifname === "plexd0")).toBe(true);
    expect(res.invalidRules).toEqual([]);
  });

  it.each<[string, PolicyInput[], string[]]>([
    [
      "contradictory allow + deny of the same traffic: deny first",
      [{ id: "p1", rules: [rule("n_b", "n_a"), rule("n_b", "n_a", "deny")] }],
      ["drop 10.100.0.2/32>10.100.0.1/32", "accept 10.100.0.2/32>10.100.0.1/32"],
    ],
    [
      "every deny, then every allow, each by policy id then rule index",
      [
        { id: "p2", rules: [rule("n_c", "n_a", "deny", "udp", 53), rule("n_c", "n_a", "allow", "tcp", 2)] },
        { id: "p1", rules: [rule("n_b", "n_a", "allow", "tcp", 1), rule("n_b", "n_a", "deny", "tcp", 22), rule("*", "n_a", "deny", "tcp", 23)] },
      ],
      ["drop 10.100.0.2/32>10.100.0.1/32 tcp/22", "drop *>10.100.0.1/32 tcp/23", "drop 10.100.0.3/32>10.100.0.1/32 udp/53", "accept 10.100.0.2/32>10.100.0.1/32 tcp/1", "accept 10.100.0.3/32>10.100.0.1/32 tcp/2"],
    ],
    [
      "overlapping: the same traffic allowed twice renders once",
      [
        { id: "p1", rules: [rule("n_b", "n_a", "allow", "tcp", 80)] },
        { id: "p2", rules: [rule("10.100.0.2", "10.100.0.1/32", "allow", "tcp", 80), rule("10.100.0.0/24", "n_a", "allow", "tcp", 80)] },
      ],
      ["accept 10.100.0.2/32>10.100.0.1/32 tcp/80", "accept 10.100.0.0/24>10.100.0.1/32 tcp/80"],
    ],
    [
      "node id and CIDR selectors; protocol without port is l4proto",
      [{ id: "p", rules: [rule("10.100.0.0/24", "n_a", "allow", "udp"), rule("n_d", "10.100.0.0/16", "allow", "", 0), rule("*", "*", "allow", "tcp", 443)] }],
      ["accept 10.100.0.0/24>10.100.0.1/32 udp", "accept 10.100.1.4/32>10.100.0.1/32", "accept *>10.100.0.1/32 tcp/443"],
    ],
    [
      "node mode: CIDRs are clamped to the mesh range and host bits masked",
      [{ id: "p", rules: [rule("10.0.0.0/8", "n_a"), rule("0.0.0.0/0", "n_a", "deny", "tcp", 25), rule("10.100.0.77/24", "n_a", "allow", "tcp", 9)] }],
      ["drop 10.100.0.0/16>10.100.0.1/32 tcp/25", "accept 10.100.0.0/16>10.100.0.1/32", "accept 10.100.0.0/24>10.100.0.1/32 tcp/9"],
    ],
    [
      "rules whose dst is not this node, or that match it only as src, are not rendered",
      [{ id: "p", rules: [rule("n_b", "n_c"), rule("n_a", "n_b", "allow", "tcp", 22), rule("*", "10.100.1.0/24")] }],
      [],
    ],
  ])("%s", (_name, policies, expected) => {
    const res = compile(policies);
    expect(policyRules(res)).toEqual(expected);
    expect(res.invalidRules).toEqual([]);
  });

  it("default allow: rules rendered, no final log/drop", () => {
    const res = compile([{ id: "p", rules: [rule("n_b", "n_a", "deny", "tcp", 22)] }], {}, { default: "allow" });
    expect(meshRules(res)).toEqual(["established", "drop 10.100.0.2/32>10.100.0.1/32 tcp/22", "jump plexd-access-in"]);
  });

  it("log_denied false: drop without the log rule", () => {
    expect(meshRules(compile([], {}, { logDenied: false }))).toEqual(["established", "jump plexd-access-in", "drop"]);
  });

  it("policy.chain_name names the mesh chain and the jumps", () => {
    const res = compile([], {}, { chainName: "mesh-in" });
    expect(res.firewall?.chains.map((c) => c.name)).toEqual(["input", "forward", "mesh-in", "plexd-access-in"]);
    expect(res.firewall?.chains[1]?.rules[0]?.jumpTarget).toBe("mesh-in");
  });

  it("bridge mode also renders forwarded traffic with its real destination", () => {
    const res = compile([{ id: "p", rules: [rule("n_b", "n_c", "allow", "tcp", 80), rule("192.168.1.0/24", "*", "allow", "tcp", 22), rule("n_b", "n_a", "allow", "udp", 5)] }], {}, { mode: "bridge" });
    expect(policyRules(res)).toEqual(["accept 10.100.0.2/32>10.100.0.3/32 tcp/80", "accept 192.168.1.0/24>* tcp/22", "accept 10.100.0.2/32>10.100.0.1/32 udp/5"]);
    expect(res.invalidRules).toEqual([]);
  });

  it("ids: 16 hex chars of the canonical form, unique, stable, independent of policy ids", () => {
    const a = compile([{ id: "p1", rules: [rule("n_b", "n_a", "allow", "tcp", 80)] }]);
    const b = compile([{ id: "zz", rules: [rule("10.100.0.2/32", "10.100.0.0/16", "allow", "tcp", 80)] }]);
    const ids = a.firewall!.chains.flatMap((c) => c.rules.map((r) => r.id));
    expect(ids.every((id) => /^[0-9a-f]{16}$/.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length); // the input and forward jumps differ by chain
    expect(b.firewall).toEqual(a.firewall);
    const c = compile([{ id: "p1", rules: [rule("n_b", "n_a", "allow", "tcp", 81)] }]);
    expect(c.firewall!.chains[2]!.rules[1]!.id).not.toBe(a.firewall!.chains[2]!.rules[1]!.id);
  });

  it("every rule carries every field (a FirewallRule init shape)", () => {
    const r = compile([{ id: "p", rules: [rule("n_b", "n_a", "allow", "tcp", 80)] }]).firewall!.chains[2]!.rules[1]!;
    expect(r).toEqual({ id: r.id, iifname: "plexd0", oifname: "", srcCidr: "10.100.0.2/32", dstCidr: "10.100.0.1/32", protocol: Protocol.TCP, portFrom: 80, portTo: 0, ctEstablished: false, action: RuleAction.ACCEPT, jumpTarget: "", logPrefix: "", logRatePerSecond: 0 });
  });
});

describe("invalid rules (4.3): skipped and listed, the rest still applies", () => {
  it.each([
    ["bad CIDR", rule("10.100.0.0/33", "n_a"), "src: 10.100.0.0/33: malformed prefix length"],
    ["bad address", rule("10.100.300.1", "n_a"), "src: 10.100.300.1: malformed address"],
    ["address with a slash but no prefix", rule("n_b", "10.100.0.1/"), "dst: 10.100.0.1/: malformed prefix length"],
    ["IPv6", rule("fd00::1", "n_a"), "IPv6 selectors are not supported"],
    ["port without protocol", rule("n_b", "n_a", "allow", "", 22), "a port requires protocol tcp or udp"],
    ["port out of range", rule("n_b", "n_a", "allow", "tcp", 70000), "port 70000 must be an integer 0-65535"],
    ["negative port", rule("n_b", "n_a", "allow", "tcp", -1), "port -1 must be an integer 0-65535"],
    ["unknown protocol", rule("n_b", "n_a", "allow", "icmp"), 'protocol "icmp" must be'],
    ["bad action", rule("n_b", "n_a", "permit"), 'action "permit" must be allow or deny'],
    ["unknown node id (never rendered as any)", rule("n_zzz", "n_a"), "src: unknown node id n_zzz (no mesh IP known)"],
    ["empty selector", rule("", "n_a"), "src: empty selector"],
    ["CIDR outside the mesh range (node mode)", rule("192.168.0.0/16", "n_a"), "src: 192.168.0.0/16 contains no mesh address"],
  ])("%s", (_name, bad, reason) => {
    const res = compile([{ id: "p", rules: [rule("n_c", "n_a", "allow", "tcp", 1), bad, rule("n_b", "n_a", "deny", "udp", 2)] }]);
    expect(res.invalidRules).toHaveLength(1);
    expect(res.invalidRules[0]).toMatchObject({ policy_id: "p", index: 1 });
    expect(res.invalidRules[0]?.reason).toContain(reason);
    expect(policyRules(res)).toEqual(["drop 10.100.0.2/32>10.100.0.1/32 udp/2", "accept 10.100.0.3/32>10.100.0.1/32 tcp/1"]);
  });

  it("collects every reason of one rule", () => {
    const res = compile([{ id: "p", rules: [{ src: "x/1", dst: "", port: 5, protocol: "", action: "maybe" }] }]);
    expect(res.invalidRules[0]?.reason.split("; ")).toHaveLength(4);
  });

  it("an unknown node id invisible peer stays invisible", () => {
    const res = compile([{ id: "p", rules: [rule("n_a", "n_ghost")] }]);
    expect(res.visiblePeerIds).toEqual(new Set());
    expect(res.invalidRules[0]?.reason).toContain("unknown node id n_ghost");
  });
});

describe("visibility (4.4)", () => {
  it.each<[string, PolicyInput["rules"], string[]]>([
    ["no rules: nobody", [], []],
    ["allow local → P", [rule("n_a", "n_b", "allow", "tcp", 22)], ["n_b"]],
    ["allow P → local", [rule("n_c", "n_a")], ["n_c"]],
    ["deny never grants", [rule("n_b", "n_a", "deny"), rule("n_a", "n_c", "deny")], []],
    ["deny does not hide what an allow grants", [rule("n_b", "n_a", "deny"), rule("n_b", "n_a", "allow", "tcp", 1)], ["n_b"]],
    ["allow * → local: everyone", [rule("*", "n_a")], ["n_b", "n_c", "n_d"]],
    ["CIDR containing P", [rule("10.100.0.0/24", "n_a")], ["n_b", "n_c"]],
    ["CIDR containing local, P as node id", [rule("n_d", "10.100.0.0/30")], ["n_d"]],
    ["rules between other nodes grant nothing", [rule("n_b", "n_c"), rule("n_c", "10.100.1.0/24")], []],
    ["P → * includes local", [rule("n_c", "*")], ["n_c"]],
    ["local as src matching * dst", [rule("n_a", "*", "allow", "udp", 53)], ["n_b", "n_c", "n_d"]],
  ])("default deny: %s", (_name, rules, visible) => {
    const res = compile([{ id: "p", rules }]);
    expect([...res.visiblePeerIds].sort()).toEqual(visible);
  });

  it("default allow: every peer visible", () => {
    expect([...compile([], {}, { default: "allow" }).visiblePeerIds].sort()).toEqual(["n_b", "n_c", "n_d"]);
  });

  it("policy disabled: every peer visible and no firewall", () => {
    const res = compile([{ id: "p", rules: [rule("n_b", "n_a", "deny")] }], {}, { enabled: false });
    expect(res.firewall).toBeNull();
    expect([...res.visiblePeerIds].sort()).toEqual(["n_b", "n_c", "n_d"]);
  });

  it("the local node is never its own peer", () => {
    const res = compile([], { peers: [...peers, { id: "n_a", mesh_ip: "10.100.0.1" }] }, { default: "allow" });
    expect(res.visiblePeerIds.has("n_a")).toBe(false);
  });
});
