import { describe, expect, it } from "vitest";
import { compilePolicy } from "./compile.js";
import { firewallDrift } from "./drift.js";
import type { FirewallSpecPlain } from "./types.js";

const spec = compilePolicy({
  policies: [{ id: "p", rules: [{ src: "n_b", dst: "n_a", port: 22, protocol: "tcp", action: "allow" }] }],
  local: { id: "n_a", meshIp: "10.100.0.1" },
  peers: [{ id: "n_b", mesh_ip: "10.100.0.2" }],
  config: { enabled: true, default: "deny", logDenied: true, meshInterface: "plexd0", mode: "node" },
}).firewall as FirewallSpecPlain;

/** What ReadFirewall answers for a table that holds exactly `s`. */
const liveOf = (s: FirewallSpecPlain) => ({
  tableExists: true,
  chains: s.chains.map((c) => ({ name: c.name, hook: c.hook, recognised: true, rules: c.rules.map((r) => ({ rule: { ...r }, recognised: true, raw: "" })) })),
});

describe("firewallDrift", () => {
  it("none when live equals the target", () => {
    expect(firewallDrift(spec, liveOf(spec) as never)).toEqual([]);
  });

  it("a missing table, an edited rule, a rogue rule, an extra chain", () => {
    expect(firewallDrift(spec, { tableExists: false, chains: [] })).toEqual(["table inet plexd is missing"]);
    const edited = liveOf(spec);
    edited.chains[2]!.rules[1]!.rule.portFrom = 23; // same id, different match
    expect(firewallDrift(spec, edited as never)).toEqual([`chain plexd-mesh[1]: rule ${spec.chains[2]!.rules[1]!.id} where ${spec.chains[2]!.rules[1]!.id} belongs`]);
    const rogue = liveOf(spec);
    rogue.chains[2]!.rules.push({ rule: { ...spec.chains[2]!.rules[0]!, id: "" }, recognised: false, raw: "tcp dport 22 accept" });
    rogue.chains.push({ name: "stray", hook: "", recognised: false, rules: [] });
    expect(firewallDrift(spec, rogue as never)).toEqual([`chain plexd-mesh[${spec.chains[2]!.rules.length}]: extra unrecognised rule tcp dport 22 accept`, "extra chain stray"]);
  });

  it("policy disabled: any table is drift", () => {
    expect(firewallDrift(null, liveOf(spec) as never)).toEqual(["table inet plexd exists but policy is disabled"]);
    expect(firewallDrift(null, { tableExists: false, chains: [] })).toEqual([]);
  });
});
