import canonicalize from "canonicalize";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalForm, ruleId, type RuleFields } from "./rule-id.js";

const fields = fc.record({
  iifname: fc.string(),
  oifname: fc.string(),
  srcCidr: fc.string(),
  dstCidr: fc.string(),
  protocol: fc.integer({ min: 0, max: 3 }),
  portFrom: fc.integer({ min: 0, max: 65535 }),
  portTo: fc.integer({ min: 0, max: 65535 }),
  ctEstablished: fc.boolean(),
  action: fc.integer({ min: 0, max: 6 }),
  jumpTarget: fc.string(),
  logPrefix: fc.string({ unit: "grapheme" }),
  logRatePerSecond: fc.integer({ min: 0, max: 1_000_000 }),
}) as fc.Arbitrary<RuleFields>;

describe("rule ids", () => {
  it("the canonical form is RFC 8785 (same bytes as the canonicalize package)", () => {
    fc.assert(
      fc.property(fc.string(), fields, (chain, r) => {
        expect(canonicalForm(chain, r)).toBe(canonicalize({ chain, ...r }));
      }),
    );
  });

  it("16 hex chars; any field change changes the id", () => {
    const base: RuleFields = { iifname: "plexd0", oifname: "", srcCidr: "10.100.0.2/32", dstCidr: "10.100.0.1/32", protocol: 1, portFrom: 22, portTo: 0, ctEstablished: false, action: 1, jumpTarget: "", logPrefix: "", logRatePerSecond: 0 };
    const id = ruleId("plexd-mesh", base);
    expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(ruleId("plexd-mesh", { ...base })).toBe(id);
    expect(ruleId("input", base)).not.toBe(id);
    for (const [k, v] of Object.entries({ iifname: "plexd1", srcCidr: "10.100.0.3/32", protocol: 2, portFrom: 23, action: 2, ctEstablished: true })) {
      expect(ruleId("plexd-mesh", { ...base, [k]: v }), k).not.toBe(id);
    }
  });
});
