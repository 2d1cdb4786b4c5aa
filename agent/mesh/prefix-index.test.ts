import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { cidrOverlaps, parseCidr, type Cidr } from "../../proto/lib/net.js";
import { outermost, PrefixIndex } from "./prefix-index.js";

const c = (s: string): Cidr => parseCidr(s, true)!;

describe("PrefixIndex", () => {
  it("finds the holder of any overlapping range, in both directions and per family", () => {
    const ix = new PrefixIndex();
    ix.add(c("10.1.0.0/16"), "a");
    ix.add(c("10.3.0.7/32"), "b");
    ix.add(c("fd00::/16"), "c");
    expect(ix.overlapping(c("10.1.2.0/24"))).toEqual({ owner: "a", cidr: "10.1.0.0/16" });
    expect(ix.overlapping(c("10.0.0.0/8"))?.owner).toMatch(/^[ab]$/);
    expect(ix.overlapping(c("10.2.0.0/16"))).toBeUndefined();
    expect(ix.overlapping(c("fd00:1::/32"))?.owner).toBe("c");
    expect(ix.overlapping(c("::/0"))?.owner).toBe("c");
    ix.remove(c("10.1.0.0/16"), "a");
    expect(ix.overlapping(c("10.1.2.0/24"))).toBeUndefined();
    expect(ix.size).toBe(2);
  });

  it("agrees with a linear scan (property)", () => {
    const v4 = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 8, max: 32 })).map(([a, b, bits]) => c(`10.${a}.${b}.0/${bits}`));
    fc.assert(
      fc.property(fc.array(v4, { maxLength: 40 }), fc.array(v4, { maxLength: 20 }), (adds, queries) => {
        const ix = new PrefixIndex();
        const held: Cidr[] = [];
        for (const p of adds) {
          const hit = ix.overlapping(p);
          expect(hit !== undefined).toBe(held.some((h) => cidrOverlaps(h, p)));
          if (hit === undefined) {
            ix.add(p, p.cidr);
            held.push(p);
          }
        }
        for (const q of queries) expect(ix.overlapping(q) !== undefined).toBe(held.some((h) => cidrOverlaps(h, q)));
      }),
    );
  });
});

describe("outermost", () => {
  it("keeps only prefixes not inside another of the same list", () => {
    expect(outermost(["10.1.2.0/24", "10.1.0.0/16", "10.2.0.0/16", "10.1.0.0/16", "fd00::/8"].map(c)).map((x) => x.cidr)).toEqual(["10.1.0.0/16", "10.2.0.0/16", "fd00::/8"]);
  });
});
