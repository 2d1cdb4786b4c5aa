import { describe, expect, it } from "vitest";
import { parseConfig } from "./schema.js";
import { planReload } from "./reload.js";

const base = { api: "https://cp.example.com", reconcile: { interval: "60s" }, mesh: { listen_port: 51820 } };

describe("planReload", () => {
  it("applies live keys and keeps the running value of every other changed key", () => {
    const running = parseConfig(base);
    const next = parseConfig({ ...base, log_level: "debug", reconcile: { interval: "15s" }, mesh: { listen_port: 51999 }, api: "https://other.example.com" });
    const plan = planReload(running, next);
    expect(plan.applied).toEqual(["log_level", "reconcile.interval"]);
    expect(plan.restartRequired).toEqual(["api", "mesh.listen_port"]);
    expect(plan.config.log_level).toBe("debug");
    expect(plan.config.reconcile.interval.ms).toBe(15_000);
    expect(plan.config.mesh.listen_port).toBe(51820);
    expect(plan.config.api).toBe("https://cp.example.com");
    expect(Object.isFrozen(plan.config.reconcile)).toBe(true);
  });

  it("hooks apply live, except hooks.dir (privhelper's allow-list, read at its start)", () => {
    const plan = planReload(parseConfig(base), parseConfig({ ...base, hooks: { dir: "/srv/hooks", require_signature: false, definitions: [{ name: "h", path: "/srv/hooks/h.sh" }] } }));
    expect(plan.applied).toEqual(["hooks.definitions"]);
    expect(plan.restartRequired).toEqual(["hooks.dir"]);
  });

  it("an unchanged file changes nothing", () => {
    const plan = planReload(parseConfig(base), parseConfig(base));
    expect(plan).toMatchObject({ applied: [], restartRequired: [] });
  });
});
