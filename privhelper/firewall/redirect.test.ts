// The ingress redirect (REDIRECT in chain prerouting): rendering, reading back what nft 1.0.6
// lists for it, and the validation that keeps it to one privileged port on a bridge with ingress.
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { FirewallSpecSchema, Protocol, RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { privConfigFrom } from "../config.js";
import { regularChainNames, toWire } from "./model.js";
import { parseTable } from "./parse.js";
import { renderScript } from "./render.js";
import { validateFirewallSpec } from "./validate.js";

const bridge = privConfigFrom({ mode: "bridge", mesh: { interface: "plexd0" }, bridge: { ingress: { enabled: true } } });
const node = privConfigFrom({ mesh: { interface: "plexd0" } });

const redirect = { id: "0123456789abcdef", protocol: Protocol.TCP, portFrom: 443, dstCidr: "10.1.2.3/32", action: RuleAction.REDIRECT, redirectPort: 40123 };
const spec = (rule: object, chain = "prerouting") => create(FirewallSpecSchema, { chains: [{ name: chain, hook: chain === "prerouting" ? chain : "", rules: [rule] }] });

function issuesOf(s: ReturnType<typeof spec>, cfg = bridge): string {
  try {
    validateFirewallSpec(cfg, s);
  } catch (err) {
    expect(PlexdError.from(err).code).toBe("invalid_argument");
    return (err as Error).message;
  }
  throw new Error("expected invalid_argument");
}

// `nft -j list table inet plexd` after applying the script below (recorded with nft 1.0.6).
const listed = JSON.stringify({
  nftables: [
    { table: { family: "inet", name: "plexd", handle: 1 } },
    { chain: { family: "inet", table: "plexd", name: "prerouting", handle: 1, type: "nat", hook: "prerouting", prio: -100, policy: "accept" } },
    {
      rule: {
        family: "inet",
        table: "plexd",
        chain: "prerouting",
        handle: 2,
        comment: "plexd:0123456789abcdef",
        expr: [
          { match: { op: "==", left: { payload: { protocol: "ip", field: "daddr" } }, right: "10.1.2.3" } },
          { match: { op: "==", left: { payload: { protocol: "tcp", field: "dport" } }, right: 443 } },
          { counter: { packets: 3, bytes: 180 } },
          { redirect: { port: 40123 } },
        ],
      },
    },
  ],
});

describe("ingress redirect", () => {
  it("renders one nat rule and reads it back as the same canonical rule", () => {
    const fw = validateFirewallSpec(bridge, spec(redirect));
    expect(renderScript(fw)).toContain('add rule inet plexd prerouting ip daddr 10.1.2.3 tcp dport 443 counter redirect to :40123 comment "plexd:0123456789abcdef"');
    const live = parseTable(listed, regularChainNames(bridge));
    const rule = live.chains[0]!.rules[0]!;
    expect(rule.recognised).toBe(true);
    expect(rule.packets).toBe(3n);
    expect(rule.rule).toEqual(fw.chains[0]!.rules[0]);
    expect(toWire(rule.rule!).redirectPort).toBe(40123);
  });

  it("is refused unless the root-owned config runs a bridge with ingress", () => {
    expect(issuesOf(spec(redirect), node)).toMatch(/REDIRECT needs mode: bridge with bridge\.ingress\.enabled: true/);
    const envOnly = privConfigFrom({ mode: "node", bridge: { ingress: { enabled: true } } });
    expect(issuesOf(spec(redirect), envOnly)).toMatch(/REDIRECT needs mode: bridge/);
  });

  it("is kept to one privileged TCP port, redirected to an unprivileged one, in prerouting", () => {
    expect(issuesOf(spec({ ...redirect, portFrom: 8443 }))).toMatch(/one port_from of 1-1023/);
    expect(issuesOf(spec({ ...redirect, portFrom: 80, portTo: 90 }))).toMatch(/one port_from of 1-1023/);
    expect(issuesOf(spec({ ...redirect, protocol: Protocol.UDP }))).toMatch(/protocol TCP/);
    expect(issuesOf(spec({ ...redirect, redirectPort: 22 }))).toMatch(/redirect_port: must be 1024-65535/);
    expect(issuesOf(spec({ ...redirect, iifname: "plexd0" }, "plexd-mesh"))).toMatch(/REDIRECT only in chain prerouting/);
    expect(issuesOf(spec({ ...redirect, action: RuleAction.ACCEPT, iifname: "plexd0" }))).toMatch(/redirect_port: only for action REDIRECT/);
  });

  it("without a port match, a prerouting rule must still name a plexd interface", () => {
    expect(issuesOf(spec({ id: "0123456789abcdef", action: RuleAction.ACCEPT }))).toMatch(/must match iifname or oifname/);
  });
});
