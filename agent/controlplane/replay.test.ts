import { describe, expect, it } from "vitest";
import { EventIdRing, NonceCache, ReplayGuard } from "./replay.js";

describe("NonceCache", () => {
  it("refuses a live nonce and keeps it through its expiry instant inclusive", () => {
    const c = new NonceCache(10);
    expect(c.record("n", 1000, 0)).toBe(true);
    expect(c.record("n", 5000, 500)).toBe(false);
    expect(c.has("n", 1000)).toBe(true);
    expect(c.record("n", 5000, 1000)).toBe(false);
    expect(c.has("n", 1001)).toBe(false);
    expect(c.record("n", 5000, 1001)).toBe(true);
    expect(c.size).toBe(1);
  });

  it("evicts the entry that expires soonest when full", () => {
    const c = new NonceCache(3);
    c.record("late", 9000, 0);
    c.record("soon", 2000, 0);
    c.record("mid", 5000, 0);
    c.record("new", 7000, 0);
    expect(c.size).toBe(3);
    expect(c.has("soon", 0)).toBe(false);
    expect(["late", "mid", "new"].every((n) => c.has(n, 0))).toBe(true);
  });

  it("purges expired entries in expiry order", () => {
    const c = new NonceCache(100);
    for (let i = 0; i < 50; i++) c.record(`n${i}`, (i * 37) % 50, -1);
    expect(c.purge(25)).toBe(25);
    expect(c.size).toBe(25);
    for (let i = 0; i < 50; i++) expect(c.has(`n${i}`, 0)).toBe(((i * 37) % 50) >= 25);
  });

  it("stays at capacity under a flood and its heap stays consistent", () => {
    const c = new NonceCache(10_000);
    let rnd = 12345;
    for (let i = 0; i < 50_000; i++) {
      rnd = (rnd * 1103515245 + 12345) & 0x7fffffff;
      expect(c.record(`n${i}`, 1_000_000 + (rnd % 600_000), 1_000_000)).toBe(true);
    }
    expect(c.size).toBe(10_000);
    const json = c.toJSON();
    expect(json.length).toBe(10_000);
    // The survivors are the 10,000 latest-expiring entries: eviction always took the minimum.
    const minSurvivor = Math.min(...json.map(([, e]) => e));
    expect(json.every(([, e]) => e >= minSurvivor)).toBe(true);
  });

  it("round-trips through JSON, dropping expired entries", () => {
    const c = new NonceCache();
    c.record("a", 100, 0);
    c.record("b", 200, 0);
    const r = NonceCache.fromJSON(JSON.parse(JSON.stringify(c)), 150);
    expect(r.size).toBe(1);
    expect(r.has("b", 150)).toBe(true);
    expect(() => NonceCache.fromJSON([["x", "y"]], 0)).toThrow(/invalid persisted nonce/);
  });
});

describe("EventIdRing", () => {
  it("remembers the last N ids", () => {
    const r = new EventIdRing(3);
    for (const id of ["a", "b", "c", "d"]) r.add(id);
    expect(r.has("a")).toBe(false);
    expect(r.toJSON()).toEqual(["b", "c", "d"]);
    expect(r.size).toBe(3);
    r.add("c");
    expect(r.toJSON()).toEqual(["b", "c", "d"]);
  });

  it("holds as many ids as the nonce cache holds nonces (10,000) by default and round-trips in order", () => {
    const r = new EventIdRing();
    for (let i = 0; i < 30_000; i++) r.add(`e${i}`);
    expect(r.size).toBe(10_000);
    expect(r.has("e19999")).toBe(false);
    expect(r.has("e20000")).toBe(true);
    const back = EventIdRing.fromJSON(r.toJSON());
    expect(back.toJSON()).toEqual(r.toJSON());
    back.add("x");
    expect(back.has("e20000")).toBe(false);
  });
});

describe("ReplayGuard", () => {
  it("serialises all bookkeeping and refuses corrupt files", () => {
    const g = new ReplayGuard();
    g.nonces.record("n1", 5000, 0);
    g.recent.add("e1");
    g.lastEventId = "e1";
    const json = JSON.parse(JSON.stringify(g)) as unknown;
    expect(json).toEqual({ version: 1, last_event_id: "e1", recent_event_ids: ["e1"], nonces: [["n1", 5000]] });
    const back = ReplayGuard.fromJSON(json, 0);
    expect(back.lastEventId).toBe("e1");
    expect(back.recent.has("e1")).toBe(true);
    expect(back.nonces.has("n1", 0)).toBe(true);
    expect(() => ReplayGuard.fromJSON({ version: 2 }, 0)).toThrow(expect.objectContaining({ code: "data_loss" }));
  });
});
