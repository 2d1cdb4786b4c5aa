import { describe, expect, it } from "vitest";
import { HealthRegistry } from "./registry.js";

describe("HealthRegistry", () => {
  it("keeps `since` while a condition persists and reports healthiness", () => {
    let t = 1000;
    const h = new HealthRegistry(() => t);
    const seen: number[] = [];
    h.subscribe((c) => seen.push(c.length));
    expect(h.healthy()).toBe(true);
    h.set("privhelper_unavailable", "critical", "socket missing");
    t = 2000;
    h.set("privhelper_unavailable", "critical", "connection refused");
    expect(h.get("privhelper_unavailable")?.since).toBe(1000);
    expect(h.healthy()).toBe(false);
    h.set("note", "info", "just so you know");
    h.clear("privhelper_unavailable");
    expect(h.healthy()).toBe(true);
    expect(seen).toEqual([1, 1, 2, 1]);
  });
});
