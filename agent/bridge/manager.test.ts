// The manager with the privhelper interface faked: services start and stop on their own, one
// failing leaves the others running, kernel parts merge into one RouteSpec and the bridge chains.
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RuleAction } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { parseConfig } from "../config/schema.js";
import { createLogger } from "../util/log.js";
import { BridgeManager } from "./manager.js";
import { AccessRouting } from "./access.js";
import type { BridgeDesired, BridgeInput, BridgeService } from "./service.js";

const dataDir = mkdtempSync(join(tmpdir(), "plexd-bridge-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
const config = (bridge: object) => parseConfig({ api: "https://cp.example.com", mode: "bridge", data_dir: dataDir, bridge });

type MeshCall = { iface: string; remove: boolean; peers: number };
function setup(cfg: ReturnType<typeof config>, desired: BridgeDesired = {}, failMesh: ReadonlySet<string> = new Set()) {
  const calls: { routes: [string, string][]; forwarding: string[] }[] = [];
  const mesh: MeshCall[] = [];
  const health = new Map<string, string>();
  let firewallChanges = 0;
  const m = new BridgeManager({
    priv: {
      applyRoutes: (req) => {
        calls.push({ routes: (req?.spec?.routes ?? []).map((r) => [r.destination ?? "", r.interface ?? ""]), forwarding: [...(req?.spec?.forwarding ?? [])] });
        return Promise.resolve({ result: { changed: true, plan: [] } } as never);
      },
      applyMesh: (req) => {
        const iface = req?.spec?.interface ?? "";
        mesh.push({ iface, remove: req?.remove ?? false, peers: req?.spec?.peers?.length ?? 0 });
        const failed = !req?.remove && failMesh.has(iface);
        return Promise.resolve({ result: { changed: true, plan: [], ...(failed ? { error: "wireguard-go exited", failedStep: "create_interface", rolledBack: true } : {}) } } as never);
      },
    },
    config: () => cfg,
    store: { state: { peers: {}, policies: [], metadata: {}, data: [], secret_refs: [], deferred: {}, bridge: desired }, subscribe: () => () => undefined },
    health: { set: (code, _s, text) => void health.set(code, text), clear: (code) => void health.delete(code) },
    log: createLogger({ name: "test", level: "silent" }),
    signal: new AbortController().signal,
    onFirewallChange: () => void firewallChanges++,
  });
  return { m, calls, mesh, health, firewallChanges: () => firewallChanges };
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

  it("applies the services' WireGuard devices before the routes; a failed one is removed with its routes and rules; one no longer wanted is removed, also after a restart", async () => {
    const cfg = config({});
    const devices = { list: ["wg-s2s-aaaa", "wg-s2s-bbbb"] };
    const service: BridgeService = {
      name: "site_to_site",
      wanted: () => devices.list.length > 0,
      apply: () => Promise.resolve(),
      stop: () => Promise.resolve(),
      status: () => ({ name: "site_to_site", running: true, detail: "", counters: {} }),
      kernel: () => ({
        interfaces: devices.list.map((name, i) => ({ name, privateKey: "k", listenPort: 51823 + i, peers: [{ publicKey: "p", allowedIps: [`192.168.${20 + i}.0/24`] }] })),
        forwarding: [...devices.list, "plexd0"],
        forward: devices.list.map((name) => ({ id: `s2s:${name}`, iifname: name, verdict: "accept" as const })),
      }),
    };
    const first = setup(cfg, {}, new Set(["wg-s2s-bbbb"]));
    first.m.register(service);
    await first.m.sync("test");
    // bbbb failed: applied, then removed; its forwarding and rules left out.
    expect(first.mesh).toEqual([{ iface: "wg-s2s-aaaa", remove: false, peers: 1 }, { iface: "wg-s2s-bbbb", remove: false, peers: 1 }, { iface: "wg-s2s-bbbb", remove: true, peers: 0 }]);
    expect(first.calls[0]?.forwarding).toEqual(["plexd0", "wg-s2s-aaaa"]);
    expect(first.m.bridgeChains().flatMap((c) => c.rules.map((r) => r.iifname))).toEqual(["wg-s2s-aaaa", "wg-s2s-aaaa"]);
    expect(first.m.status().devices).toEqual([{ name: "wg-s2s-aaaa", listenPort: 51823, peers: 1 }, { name: "wg-s2s-bbbb", listenPort: 51824, peers: 1, error: "ApplyMesh failed at create_interface: wireguard-go exited (rolled back)" }]);
    const record = join(dataDir, "bridge-devices.json");
    expect(JSON.parse(readFileSync(record, "utf8"))).toEqual(["wg-s2s-aaaa", "wg-s2s-bbbb"]);
    expect(statSync(record).mode & 0o777).toBe(0o600);

    // A new agent (restart) while the tunnels were revoked: the recorded devices are removed.
    devices.list = ["wg-s2s-cccc"];
    const second = setup(cfg);
    second.m.register(service);
    await second.m.sync("test");
    expect(second.mesh).toEqual([{ iface: "wg-s2s-cccc", remove: false, peers: 1 }, { iface: "wg-s2s-aaaa", remove: true, peers: 0 }, { iface: "wg-s2s-bbbb", remove: true, peers: 0 }]);
    expect(JSON.parse(readFileSync(record, "utf8"))).toEqual(["wg-s2s-cccc"]);
    await second.m.teardown();
    expect(second.mesh.at(-1)).toEqual({ iface: "wg-s2s-cccc", remove: true, peers: 0 });
    expect(JSON.parse(readFileSync(record, "utf8"))).toEqual([]);
    expect(second.m.status().devices).toEqual([]);
  });
});
