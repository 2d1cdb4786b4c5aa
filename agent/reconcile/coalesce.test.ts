import { describe, expect, it } from "vitest";
import { CoalescingRunner } from "./coalesce.js";

describe("CoalescingRunner", () => {
  it("runs a burst of triggers once, and one more for triggers during a run", async () => {
    const seen: string[][] = [];
    let release: () => void = () => undefined;
    const ac = new AbortController();
    const r = new CoalescingRunner(
      async (reasons) => {
        seen.push([...reasons]);
        if (seen.length === 1) await new Promise<void>((res) => (release = res));
      },
      ac.signal,
      (e) => {
        throw e;
      },
    );
    for (let i = 0; i < 1000; i++) r.trigger(i % 2 ? "peer_added" : "peer_removed");
    await new Promise((res) => setImmediate(res));
    await new Promise((res) => setImmediate(res));
    expect(seen).toHaveLength(1);
    // While the first run is in flight, more triggers queue exactly one follow-up run.
    r.trigger("timer");
    r.trigger("policy_updated");
    r.trigger("timer");
    release();
    await r.idle();
    expect(seen).toEqual([["peer_removed", "peer_added"], ["timer", "policy_updated"]]);
    expect(r.runs).toBe(2);
  });

  it("reports failures and keeps going", async () => {
    const errors: string[] = [];
    let n = 0;
    const r = new CoalescingRunner(
      async () => {
        n++;
        if (n === 1) throw new Error("boom");
      },
      new AbortController().signal,
      (e) => errors.push(e.message),
    );
    r.trigger("a");
    await new Promise((res) => setImmediate(res));
    await r.idle();
    r.trigger("b");
    await new Promise((res) => setImmediate(res));
    await r.idle();
    expect(errors).toEqual(["boom"]);
    expect(n).toBe(2);
  });
});
