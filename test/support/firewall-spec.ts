// A spec exercising every rule form privhelper renders. privhelper/firewall/testdata/table.nft is
// renderScript(validate(this)); privhelper/firewall/testdata/table.json is what nft 1.0.6 printed for
// `nft -j list table inet plexd` after `nft -f table.nft` in a fresh namespace, followed by
// the rogue rules listed in privhelper/firewall/testdata/rogue.nft (see privhelper/firewall/firewall.test.ts).
import { Protocol, RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";

const r = (id: string, fields: object) => ({ id, ...fields });

export const fixtureSpec = {
  chains: [
    { name: "input", hook: "input", rules: [r("00000001", { iifname: "plexd0", action: RuleAction.JUMP, jumpTarget: "plexd-mesh" })] },
    { name: "forward", hook: "forward", rules: [r("00000002", { iifname: "plexd0", action: RuleAction.JUMP, jumpTarget: "plexd-mesh" })] },
    {
      name: "plexd-mesh",
      hook: "",
      rules: [
        r("00000003", { iifname: "plexd0", ctEstablished: true, action: RuleAction.ACCEPT }),
        r("00000004", { iifname: "plexd0", srcCidr: "10.100.0.0/16", dstCidr: "10.100.0.1/32", protocol: Protocol.UDP, action: RuleAction.DROP }),
        r("00000005", { iifname: "plexd0", srcCidr: "10.100.0.2/32", dstCidr: "10.100.0.1/32", protocol: Protocol.TCP, portFrom: 8080, action: RuleAction.ACCEPT }),
        r("00000006", { iifname: "plexd0", srcCidr: "10.100.7.0/24", protocol: Protocol.TCP, portFrom: 1000, portTo: 2000, action: RuleAction.ACCEPT }),
        r("00000007", { iifname: "plexd0", protocol: Protocol.ICMP, action: RuleAction.ACCEPT }),
        r("00000008", { srcCidr: "fd00::/64", dstCidr: "fd00::1/128", protocol: Protocol.UDP, portFrom: 53, action: RuleAction.ACCEPT }),
        r("00000009", { iifname: "plexd0", action: RuleAction.JUMP, jumpTarget: "plexd-access-in" }),
        r("0000000a", { iifname: "plexd0", action: RuleAction.LOG, logPrefix: "plexd-deny ", logRatePerSecond: 10 }),
        r("0000000b", { oifname: "plexd0", action: RuleAction.LOG_DROP, logPrefix: "plexd-x" }),
        r("0000000c", { iifname: "plexd0", action: RuleAction.DROP }),
      ],
    },
    { name: "plexd-access-in", hook: "", rules: [r("0000000d", { dstCidr: "10.100.0.1/32", protocol: Protocol.TCP, portFrom: 2222, action: RuleAction.ACCEPT })] },
    { name: "postrouting", hook: "postrouting", rules: [r("0000000e", { oifname: "plexd0", srcCidr: "192.168.0.0/16", action: RuleAction.MASQUERADE })] },
  ],
};
