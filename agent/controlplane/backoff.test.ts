import { describe, expect, it } from "vitest";
import { Backoff, parseRetryAfter } from "./backoff.js";

describe("Backoff", () => {
  it("without jitter gives 1, 2, 4 ... 60 s and resets", () => {
    const b = new Backoff({ jitter: 0 });
    expect(Array.from({ length: 9 }, () => b.next())).toEqual([1, 2, 4, 8, 16, 32, 60, 60, 60].map((s) => s * 1000));
    expect(b.attempts).toBe(9);
    b.reset();
    expect(b.next()).toBe(1000);
  });

  it("keeps every jittered delay within ±25 % (extremes of the random source included)", () => {
    for (const r of [0, 0.999999, 0.5, 0.1]) {
      const b = new Backoff({ random: () => r });
      const bases = [1, 2, 4, 8, 16, 32, 60, 60];
      for (const base of bases) {
        const d = b.next();
        expect(d).toBeGreaterThanOrEqual(base * 750);
        expect(d).toBeLessThanOrEqual(base * 1250);
      }
    }
    const lo = new Backoff({ random: () => 0 });
    expect(lo.next()).toBe(750);
    const mid = new Backoff({ random: () => 0.5 });
    expect(mid.next()).toBe(1000);
  });
});

describe("parseRetryAfter", () => {
  it("reads delta-seconds and HTTP dates", () => {
    expect(parseRetryAfter("7")).toBe(7);
    expect(parseRetryAfter(["3", "9"])).toBe(3);
    expect(parseRetryAfter(undefined)).toBe(undefined);
    expect(parseRetryAfter("-1")).toBe(undefined);
    expect(parseRetryAfter("1.5")).toBe(undefined);
    expect(parseRetryAfter("99999999")).toBe(3600);
    const now = Date.parse("2025-01-15T10:30:00Z");
    expect(parseRetryAfter("Wed, 15 Jan 2025 10:30:30 GMT", now)).toBe(30);
    expect(parseRetryAfter("Wed, 15 Jan 2025 10:00:00 GMT", now)).toBe(0);
  });
});
