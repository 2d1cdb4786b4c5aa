import { describe, expect, it } from "vitest";
import { MeshIpPool } from "./meship.js";

describe("MeshIpPool", () => {
  it("starts at 10.100.1.1 and skips host octets 0 and 255", () => {
    const pool = new MeshIpPool();
    const got = Array.from({ length: 256 }, () => pool.allocate(0));
    expect(got[0]).toBe("10.100.1.1");
    expect(got[253]).toBe("10.100.1.254");
    expect(got[254]).toBe("10.100.2.1");
    expect(new Set(got).size).toBe(got.length);
    expect(got.some((ip) => /\.(0|255)$/.test(ip))).toBe(false);
  });

  it("reuses a released address only after the cooldown", () => {
    const pool = new MeshIpPool(1000);
    const a = pool.allocate(0);
    pool.release(a, 0);
    // Exhaust the pool: the cooling address must not come back early.
    const seen = new Set<string>();
    expect(() => {
      for (;;) seen.add(pool.allocate(10));
    }).toThrow(/no free mesh IP/);
    expect(seen.size).toBe(255 * 254 - 1);
    expect(seen.has(a)).toBe(false);
    expect(pool.allocate(2000)).toBe(a);
  });
});
