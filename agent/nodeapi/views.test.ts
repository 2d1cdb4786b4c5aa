import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { FirewallRuleSchema, Protocol, ReadFirewallResponseSchema, ReadMeshResponseSchema, RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { firewallRulesView, peersView, ruleText } from "./views.js";

const rule = (f: Parameters<typeof create<typeof FirewallRuleSchema>>[1]) => create(FirewallRuleSchema, f);
const peer = (id: string, n: number, endpoint = "") => ({ id, public_key: `${id}-key`, mesh_ip: `10.100.0.${n}`, endpoint, allowed_ips: [`10.100.0.${n}/32`], psk: "" });

describe("ruleText", () => {
  it("renders rules in nft notation", () => {
    expect(ruleText(rule({ id: "a", iifname: "plexd0", srcCidr: "10.100.0.2/32", dstCidr: "10.100.0.1/32", protocol: Protocol.TCP, portFrom: 5432, action: RuleAction.ACCEPT }))).toBe(
      'iifname "plexd0" ip saddr 10.100.0.2 ip daddr 10.100.0.1 tcp dport 5432 accept',
    );
    expect(ruleText(rule({ srcCidr: "10.100.0.0/24", protocol: Protocol.UDP, portFrom: 1000, portTo: 2000, action: RuleAction.DROP }))).toBe("ip saddr 10.100.0.0/24 udp dport 1000-2000 drop");
    expect(ruleText(rule({ protocol: Protocol.ICMP, action: RuleAction.ACCEPT }))).toBe("meta l4proto icmp accept");
    expect(ruleText(rule({ srcCidr: "fd00::2/128", dstCidr: "fd00::/64", action: RuleAction.ACCEPT }))).toBe("ip6 saddr fd00::2 ip6 daddr fd00::/64 accept");
    expect(ruleText(rule({ iifname: "plexd0", ctEstablished: true, action: RuleAction.ACCEPT }))).toBe('iifname "plexd0" ct state established,related accept');
    expect(ruleText(rule({ action: RuleAction.JUMP, jumpTarget: "plexd-mesh" }))).toBe("jump plexd-mesh");
    expect(ruleText(rule({ action: RuleAction.LOG, logPrefix: "plexd-deny ", logRatePerSecond: 10 }))).toBe('limit rate 10/second log prefix "plexd-deny "');
    expect(ruleText(rule({ oifname: "eth0", action: RuleAction.MASQUERADE }))).toBe('oifname "eth0" masquerade');
  });

  it("lists every chain's rules with counters; foreign rules show their raw form", () => {
    const live = create(ReadFirewallResponseSchema, {
      tableExists: true,
      chains: [
        {
          name: "plexd-mesh",
          recognised: true,
          rules: [
            { rule: { id: "r1", action: RuleAction.ACCEPT, ctEstablished: true }, packets: 12n, bytes: 3456n, recognised: true },
            { packets: 1n, bytes: 60n, recognised: false, raw: '{"expr":[]}' },
          ],
        },
      ],
    });
    expect(firewallRulesView(live)).toEqual([
      { id: "r1", chain: "plexd-mesh", text: "ct state established,related accept", packets: 12n, bytes: 3456n },
      { id: "", chain: "plexd-mesh", text: `(not plexd's) {"expr":[]}`, packets: 1n, bytes: 60n },
    ]);
  });
});

describe("peersView", () => {
  const now = Date.parse("2025-01-15T10:30:00Z");
  const live = create(ReadMeshResponseSchema, {
    exists: true,
    peers: [{ publicKey: "n_b-key", endpoint: "192.0.2.3:51820", lastHandshake: timestampFromMs(now - 5000), rxBytes: 100n, txBytes: 200n }],
  });

  it("joins desired peers with the kernel's data by public key, sorted by id", () => {
    const out = peersView([peer("n_c", 4, "192.0.2.4:51820"), peer("n_b", 3, "198.51.100.3:51820")], live, new Set(["n_b", "n_c"]), false);
    expect(out).toEqual([
      // The kernel's endpoint wins: WireGuard roamed to where the peer really is.
      { peerId: "n_b", meshIp: "10.100.0.3", publicKey: "n_b-key", endpoint: "192.0.2.3:51820", visible: true, lastHandshake: now - 5000, rxBytes: 100n, txBytes: 200n, relayed: false },
      { peerId: "n_c", meshIp: "10.100.0.4", publicKey: "n_c-key", endpoint: "192.0.2.4:51820", visible: true, rxBytes: 0n, txBytes: 0n, relayed: false },
    ]);
  });

  it("invisible peers only with all; without a compiled policy the kernel decides", () => {
    const peers = [peer("n_b", 3), peer("n_x", 9)];
    expect(peersView(peers, live, new Set(["n_b"]), false).map((p) => p.peerId)).toEqual(["n_b"]);
    expect(peersView(peers, live, new Set(["n_b"]), true).map((p) => [p.peerId, p.visible])).toEqual([
      ["n_b", true],
      ["n_x", false],
    ]);
    expect(peersView(peers, live, undefined, false).map((p) => p.peerId)).toEqual(["n_b"]);
    // privhelper unreachable: the desired peers still show, without tunnel data.
    expect(peersView(peers, undefined, new Set(["n_b", "n_x"]), false).map((p) => [p.peerId, p.lastHandshake, p.rxBytes])).toEqual([
      ["n_b", undefined, 0n],
      ["n_x", undefined, 0n],
    ]);
  });

  it("a quarantined peer carries its reason and never the live data of the peer whose key it copied", () => {
    const dup = { ...peer("n_dup", 8), public_key: "n_b-key" };
    const out = peersView([peer("n_b", 3), dup], live, new Set(["n_b", "n_dup"]), false, new Map([["n_dup", "public_key: already used by peer n_b"]]));
    expect(out[0]).toMatchObject({ peerId: "n_b", rxBytes: 100n });
    expect(out[0]!.quarantineReason).toBeUndefined();
    expect(out[1]).toMatchObject({ peerId: "n_dup", rxBytes: 0n, quarantineReason: "public_key: already used by peer n_b" });
    expect(out[1]!.lastHandshake).toBeUndefined();
  });
});
