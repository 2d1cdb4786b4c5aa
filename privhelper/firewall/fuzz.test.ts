// Property tests: whatever a caller sends, validation either refuses it with
// INVALID_ARGUMENT or the rendered script holds only privhelper's own tokens — caller
// text never reaches nft (docs/architecture.md#privhelper).
import { create } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FirewallSpecSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { privConfigFrom } from "../config.js";
import { renderScript } from "./render.js";
import { validateFirewallSpec } from "./validate.js";

const cfg = privConfigFrom({ mesh: { interface: "plexd0" } });
const hostile = fc.oneof(
  fc.constantFrom("", "plexd0", "eth0", "10.100.0.0/16", "10.100.0.2/32", "fd00::/64", "plexd-mesh", "plexd-access-in", "input", "plexd-deny ", "0000abcd", "deadbeef00"),
  fc.string(),
  fc.string().map((s) => `plexd0${s}`),
  fc.string().map((s) => `10.100.0.1/32${s}`),
  fc.constantFrom('x" ; flush ruleset ; "', "a\nadd table ip evil", "}", "plexd-mesh { }"),
);
// Mostly well-formed values with a hostile one mixed in: pure noise would be refused at
// the first field and never exercise rendering.
const mostly = <T>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<T>) => fc.oneof({ weight: 40, arbitrary: good }, { weight: 1, arbitrary: bad });
const port = fc.oneof(fc.constantFrom(0, 1, 22, 65535, 65536), fc.nat());
const rule = fc.record({
  id: mostly(fc.stringMatching(/^[0-9a-f]{8,20}$/), hostile),
  iifname: mostly(fc.constantFrom("", "plexd0"), hostile),
  oifname: mostly(fc.constantFrom("", "plexd0"), hostile),
  srcCidr: mostly(fc.constantFrom("", "10.100.0.0/16", "10.100.0.2/32", "10.100.0.77/24"), hostile),
  dstCidr: mostly(fc.constantFrom("", "10.100.0.1/32"), hostile),
  protocol: mostly(fc.constantFrom(0, 1, 2, 3), fc.integer({ min: 0, max: 9 })),
  portFrom: mostly(fc.constant(0), port),
  portTo: mostly(fc.constant(0), port),
  ctEstablished: mostly(fc.constant(false), fc.boolean()),
  action: mostly(fc.constantFrom(1, 2), fc.integer({ min: 0, max: 7 })),
  jumpTarget: mostly(fc.constant(""), hostile),
  logPrefix: mostly(fc.constant(""), hostile),
  logRatePerSecond: mostly(fc.constant(0), fc.nat()),
});
const chainName = fc.oneof(
  fc.constantFrom(["plexd-mesh", ""], ["plexd-access-in", ""], ["input", "input"], ["postrouting", "postrouting"]),
  fc.tuple(hostile, fc.oneof(hostile, fc.constantFrom("input", "forward", "postrouting", "prerouting"))),
);
const chain = fc.record({ name: chainName, rules: fc.array(rule, { maxLength: 3 }) }).map(({ name: [name, hook], rules }) => ({ name, hook, rules }));

// Every line privhelper may emit; quoted strings come only from the allow-listed forms.
const lineRe =
  /^(?:add table inet plexd|delete table inet plexd|add chain inet plexd [A-Za-z0-9_-]+(?: \{ type (?:filter|nat) hook [a-z]+ priority [a-z]+; policy accept; \})?|add rule inet plexd [A-Za-z0-9_-]+ (?:(?:iifname|oifname) "[A-Za-z0-9_-]{1,15}" |ct state established,related |ip6? [sd]addr [0-9a-f.:/]+ |(?:tcp|udp) dport \d+(?:-\d+)? |meta l4proto (?:tcp|udp|icmp) |limit rate \d+\/second )*counter (?:accept|drop|masquerade|jump [A-Za-z0-9_-]+|log prefix "[A-Za-z0-9 _.:-]{1,64}"(?: drop)?) comment "plexd:[0-9a-f]{8,32}")?$/;

describe("firewall spec fuzz", () => {
  it("refuses with invalid_argument or renders only privhelper's own tokens", () => {
    let rendered = 0;
    fc.assert(
      fc.property(fc.array(chain, { maxLength: 3 }), (chains) => {
        let script: string;
        try {
          script = renderScript(validateFirewallSpec(cfg, create(FirewallSpecSchema, { chains })));
        } catch (err) {
          expect(PlexdError.from(err).code).toBe("invalid_argument");
          return;
        }
        if (script.includes("add rule")) rendered++;
        for (const line of script.split("\n")) if (line !== "") expect(line).toMatch(lineRe);
      }),
      { numRuns: 3000 },
    );
    // The generator must reach rendering of real rules, or the property proves little.
    expect(rendered).toBeGreaterThan(50);
  });
});
