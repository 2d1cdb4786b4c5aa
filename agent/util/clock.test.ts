import { describe, expect, it } from "vitest";
import { FakeClock, isAbortError, realClock } from "./clock.js";

describe("FakeClock", () => {
  it("fires sleeps in time order while advancing, including ones scheduled on the way", async () => {
    const c = new FakeClock(0);
    const seen: number[] = [];
    // A FakeClock sleep without a signal never rejects.
    void (async () => {
      for (let i = 0; i < 3; i++) {
        await c.sleep(1000);
        seen.push(c.now());
      }
    })();
    await c.advance(2500);
    expect(seen).toEqual([1000, 2000]);
    expect(c.now()).toBe(2500);
    await c.advance(500);
    expect(seen).toEqual([1000, 2000, 3000]);
    expect(c.sleepLog).toEqual([1000, 1000, 1000]);
  });

  it("rejects an aborted sleep with an AbortError and forgets it", async () => {
    const c = new FakeClock(0);
    const ac = new AbortController();
    const p = c.sleep(1000, ac.signal);
    expect(c.pending).toBe(1);
    ac.abort();
    await expect(p).rejects.toSatisfy(isAbortError);
    expect(c.pending).toBe(0);
    await expect(c.sleep(1, ac.signal)).rejects.toSatisfy(isAbortError);
  });

  it("runNext jumps to the earliest sleep", async () => {
    const c = new FakeClock(0);
    let done = false;
    // No signal: this sleep never rejects.
    void c.sleep(5000).then(() => (done = true));
    expect(await c.runNext()).toBe(true);
    expect(done).toBe(true);
    expect(c.now()).toBe(5000);
    expect(await c.runNext()).toBe(false);
  });
});

describe("realClock", () => {
  it("sleeps and aborts", async () => {
    const ac = new AbortController();
    const p = realClock.sleep(10_000, ac.signal);
    ac.abort();
    await expect(p).rejects.toSatisfy(isAbortError);
    const t0 = Date.now();
    await realClock.sleep(5);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(4);
  });
});
