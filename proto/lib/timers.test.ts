import { describe, expect, it } from "vitest";
import { pause } from "./timers.js";

describe("pause", () => {
  it("waits the time, or until the signal aborts, and never rejects", async () => {
    let t0 = performance.now();
    await pause(30, new AbortController().signal);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(25);

    const ac = new AbortController();
    t0 = performance.now();
    const p = pause(10_000, ac.signal);
    ac.abort(new Error("stop"));
    await expect(p).resolves.toBeUndefined();
    expect(performance.now() - t0).toBeLessThan(1000);
    await expect(pause(10_000, ac.signal)).resolves.toBeUndefined(); // already aborted
  });
});
