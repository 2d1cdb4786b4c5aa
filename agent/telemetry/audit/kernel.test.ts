import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PlexdError } from "../../../proto/lib/errors.js";
import { HealthRegistry } from "../../health/registry.js";
import { FakeClock } from "../../util/clock.js";
import { createLogger } from "../../util/log.js";
import type { AuditEvent } from "./event.js";
import { KernelAuditSource, unavailableCode } from "./kernel.js";
import type { AuditRecord } from "./record.js";

const recorded = readFileSync(join(import.meta.dirname, "testdata/live-user-config.jsonl"), "utf8")
  .split("\n")
  .filter(Boolean)
  .map((l) => JSON.parse(l) as AuditRecord);

/** privhelper's WatchAudit as the agent sees it: each call plays the next script. */
function fakePriv(scripts: (AuditRecord[] | PlexdError)[]) {
  let calls = 0;
  return {
    get calls() {
      return calls;
    },
    watchAudit: (_req?: unknown, opts?: { signal?: AbortSignal }) => ({
      async *[Symbol.asyncIterator]() {
        const script = scripts[calls++];
        if (script === undefined) {
          // No more scripts: an open stream that stays quiet until cancelled.
          await new Promise((_r, reject) => opts?.signal?.addEventListener("abort", () => reject(new PlexdError("cancelled", "cancelled")), { once: true }));
          return;
        }
        if (script instanceof PlexdError) throw script;
        for (const r of script) yield { ...r, $typeName: "plexd.priv.v1.WatchAuditResponse" as const };
      },
    }),
  };
}

const until = async (cond: () => boolean) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(cond()).toBe(true);
};

describe("KernelAuditSource", () => {
  it("raises audit_unavailable with privhelper's reason, backs off, and clears it once records flow", async () => {
    const clock = new FakeClock();
    const health = new HealthRegistry(() => clock.now());
    const events: AuditEvent[] = [];
    const priv = fakePriv([new PlexdError("unavailable", "privhelper is not in the host's initial network namespace; the kernel sends audit records only there"), new PlexdError("unavailable", "same"), recorded]);
    const src = new KernelAuditSource({ priv, health, clock, log: createLogger({ name: "t", level: "silent" }), hostname: "node-a", push: (e) => void events.push(e), retryMs: { min: 1000, max: 1500 } });
    const ac = new AbortController();
    const run = src.run(ac.signal);
    await until(() => health.get(unavailableCode) !== undefined);
    expect(health.get(unavailableCode)).toMatchObject({ severity: "info", text: expect.stringMatching(/cannot be read: privhelper is not in the host's initial network namespace/) });
    expect(health.healthy()).toBe(true); // audit alone never marks the node degraded
    expect(src.view).toMatchObject({ state: "unavailable" });
    await clock.advance(1000);
    await until(() => priv.calls === 2);
    await clock.advance(1500);
    await until(() => events.length === 2);
    expect(clock.sleepLog).toEqual([1000, 1500]);
    expect(health.get(unavailableCode)).toBeUndefined();
    // The CONFIG_CHANGE event closes on its EOE; the lone USER record when the stream ends.
    expect(events.map((e) => e.event_type).sort()).toEqual(["CONFIG_CHANGE", "USER"]);
    expect(src.view).toMatchObject({ records_total: 5, events_total: 2, malformed_total: 0 });
    ac.abort();
    await run;
  });

  it("counts malformed records and keeps going", async () => {
    const clock = new FakeClock();
    const events: AuditEvent[] = [];
    const bad = [{ type: 1300, serial: 0, text: "\u0000garbage" }, ...recorded];
    const src = new KernelAuditSource({ priv: fakePriv([bad]), health: new HealthRegistry(), clock, log: createLogger({ name: "t", level: "silent" }), hostname: "h", push: (e) => void events.push(e) });
    const ac = new AbortController();
    const run = src.run(ac.signal);
    await until(() => events.length === 2);
    expect(src.view.malformed_total).toBe(1);
    ac.abort();
    await run;
  });
});
