// The manager with the privhelper interface faked: services start and stop on their own, one
// failing leaves the others running, kernel parts merge into one RouteSpec and the bridge chains.
import { describe, expect, it } from "vitest";
import { RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { parseConfig } from "../config/schema.js";
import { createLogger } from "../util/log.js";
import { BridgeManager } from "./manager.js";
import { AccessRouting } from "./access.js";
import type { BridgeDesired, BridgeInput, BridgeService } from "./service.js";

const config = (bridge: object) => parseConfig({ api: "https://cp.example.com", mode: "bridge", bridge });

function setup(cfg: ReturnType<typeof config>, desired: BridgeDesired = {}) {
  const calls: { routes: [string, string][]; forwarding: string[] }[] = [];
  const health = new Map<string, string>();
  let firewallChanges = 0;
  const m = new BridgeManager({
    priv: {
      applyRoutes: (req) => {
        calls.push({ routes: (req?.spec?.routes ?? []).map((r) => [r.destination ?? "", r.interface ?? ""]), forwarding: [...(req?.spec?.forwarding ?? [])] });
        return Promise.resolve({ result: { changed: true, plan: [] } } as never);
      },
    },
    config: () => cfg,
    store: { state: { peers: {}, policies: [], metadata: {}, data: [], secret_refs: [], deferred: {}, bridge: desired }, subscribe: () => () => undefined },
    health: { set: (code, _s, text) => void health.set(code, text), clear: (code) => void health.delete(code) },
    log: createLogger({ name: "test", level: "silent" }),
    signal: new AbortController().signal,
    onFirewallChange: () => void firewallChanges++,
  });
  return { m, calls, health, firewallChanges: () => firewallChanges };
}

class Broken implements BridgeService {
  readonly name = "relay" as const;
  stopped = 0;
  wanted = (i: BridgeInput) => i.config.bridge.relay.enabled;
  apply = () => Promise.reject(new Error("port 51821 in use"));
  stop = () => Promise.resolve(void this.stopped++);
  status = () => ({ name: this.name, running: false, detail: "", counters: {} });
}

describe("BridgeManager", () => {
  it("runs access routing from config: routes, forwarding on mesh and access interfaces, masquerade with enable_nat", async () => {
    const { m, calls, firewallChanges } = setup(config({ access_interface: "eth1", access_subnets: ["192.168.50.0/24"] }));
    m.register(new AccessRouting());
    await m.sync("test");
    expect(calls).toEqual([{ routes: [["192.168.50.0/24", "eth1"]], forwarding: ["eth1", "plexd0"] }]);
    const chains = m.bridgeChains();
    expect(chains.map((c) => [c.name, c.rules.map((r) => [r.oifname, r.action])])).toEqual([["postrouting", [["eth1", RuleAction.MASQUERADE]]]]);
    expect(chains[0]?.rules[0]?.id).toMatch(/^[0-9a-f]{16}$/);
    expect(firewallChanges()).toBe(1);
    expect(m.status().services[0]).toMatchObject({ name: "access_routing", running: true, counters: { routes: 1 } });
    expect(m.heartbeat()).toEqual({ bridge: { enabled: true, access_interface: "eth1", active_routes: 1 } });
    expect(m.capabilities()).toEqual({ enabled: "true", access_interface: "eth1", access_subnet_0: "192.168.50.0/24" });
  });

  it("the control plane's bridge_config replaces the subnets and switches; without enable_nat no masquerade", async () => {
    const { m, calls } = setup(config({ access_interface: "eth1", access_subnets: ["192.168.50.0/24"] }), { bridge_config: { access_subnets: ["10.20.0.0/16", "10.21.0.0/16"], enable_nat: false } });
    m.register(new AccessRouting());
    await m.sync("test");
    expect(calls[0]?.routes).toEqual([["10.20.0.0/16", "eth1"], ["10.21.0.0/16", "eth1"]]);
    expect(m.bridgeChains()).toEqual([]);
  });

  it("a failing service is marked failed and the others run; nothing wanted means empty specs", async () => {
    const { m, calls, health } = setup(config({ access_interface: "eth1", access_subnets: ["192.168.50.0/24"] }));
    const broken = new Broken();
    m.register(broken);
    m.register(new AccessRouting());
    await m.sync("test");
    expect(m.status().services.map((s) => [s.name, s.running, s.error])).toEqual([["relay", false, "port 51821 in use"], ["access_routing", true, undefined]]);
    expect(health.get("bridge_relay_failed")).toBe("bridge relay: port 51821 in use");
    expect(calls[0]?.routes).toEqual([["192.168.50.0/24", "eth1"]]);
    await m.teardown();
    expect(calls.at(-1)).toEqual({ routes: [], forwarding: [] });
    expect(m.bridgeChains()).toEqual([]);
  });
});
