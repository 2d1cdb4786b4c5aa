import { readFileSync, writeFileSync } from "node:fs";
import { parse, stringify } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { connectPrivhelper } from "../../agent/privclient/client.js";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { addAddress, addNamespace, addRoute, addVethPair, createTopology, ensureSystemUsers, nftList, nsExec, ping, registerCleanup, setSysctl, useHarness, wgShow, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { joinNode, nodeId } from "./lib/mesh.js";
import type { PlexdNode } from "./lib/node.js";

// Access routing on real kernel networking: a bridge with a LAN behind its interface `lan0`
// (192.168.77.0/24 connected, 192.168.78.0/24 a second address of the LAN host, reached by a
// privhelper route), a mesh node `a` that reaches the LAN host through the bridge, masquerade
// on and off with enable_nat, and removal that leaves everything not plexd's as it was.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let a: PlexdNode;
let br: PlexdNode;
let lan: string;
const lanHost = "192.168.77.10";
const lanHost2 = "192.168.78.10";

const bridgeConfig = (bridge: Record<string, unknown>) => ({ mode: "bridge", policy: { default: "allow" }, bridge: { access_interface: "lan0", relay: { enabled: false }, ...bridge } });

/** Rewrites the bridge's config and restarts its agent (a restart keeps the kernel; the first sync converges it). */
async function restartBridgeWith(bridge: Record<string, unknown>): Promise<void> {
  const doc = parse(readFileSync(br.configFile, "utf8")) as Record<string, unknown>;
  writeFileSync(br.configFile, stringify({ ...doc, ...bridgeConfig(bridge) }));
  await br.agent?.kill("SIGTERM", { graceMs: 10_000 });
  br.startAgent();
  await br.agent!.waitForLine(/identity loaded/, 30_000);
}

const sysctl = async (ns: string, key: string) => (await nsExec(ns, ["sysctl", "-n", key])).stdout.trim();
const routes = async (ns: string) => (await nsExec(ns, ["ip", "-4", "route", "show", "table", "main"])).stdout.split("\n").map((l) => l.trim()).filter((l) => l !== "").sort();
const masquerades = async (ns: string) => (await nftList(ns)).rules.filter((r) => r.table === "plexd" && JSON.stringify(r.expr).includes('"masquerade"')).map((r) => JSON.stringify(r.expr));

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["a", "br"] });
  cp = await startCpOnHub(topo, { stun: true });
  const api = `https://${topo.hub.ip}:${cpPort}`;
  const brNs = topo.node("br").ns;
  // The LAN: one host, no route to the mesh (only masquerade lets it answer).
  lan = await addNamespace(`${topo.id}-lan`);
  await addVethPair(brNs, "lan0", lan, "eth0");
  await addAddress(brNs, "lan0", "192.168.77.1/24");
  await addAddress(lan, "eth0", `${lanHost}/24`);
  await addAddress(lan, "eth0", `${lanHost2}/24`);
  // Things plexd must never touch: a route of another owner via lan0, forwarding turned on by
  // someone else on eth0, and the global switch off.
  await addRoute(brNs, "10.99.0.0/16", { dev: "lan0" });
  // (Writing `all` sets every interface, so eth0 comes after it.)
  await setSysctl(brNs, "net.ipv4.conf.all.forwarding", 0);
  await setSysctl(brNs, "net.ipv4.conf.eth0.forwarding", 1);
  a = await joinNode({ topo, cp, api, users, name: "a", config: { policy: { default: "allow" } } });
  br = await joinNode({ topo, cp, api, users, name: "br", config: bridgeConfig({ access_subnets: ["192.168.77.0/24", "192.168.78.0/24"], enable_nat: true }) });
});

describe("bridge access routing", () => {
  it("a mesh node reaches hosts in the bridge's access subnets; masquerade on, forwarding per interface only", async () => {
    await expect.poll(async () => (await wgShow(a.ns, a.iface).catch(() => ({ peers: [] }))).peers.flatMap((p) => p.allowedIps).filter((x) => x.startsWith("192.168.")).sort(), { timeout: 60_000, interval: 1000 }).toEqual(["192.168.77.0/24", "192.168.78.0/24"]);
    await expect.poll(async () => (await ping(a.ns, lanHost, { count: 1, timeoutMs: 3000 })).ok, { timeout: 60_000, interval: 1000 }).toBe(true);
    expect((await ping(a.ns, lanHost2, { count: 2, timeoutMs: 3000 })).ok).toBe(true);
    const brNs = br.ns;
    expect(await routes(brNs)).toContain("192.168.78.0/24 dev lan0 proto 81 scope link");
    expect([await sysctl(brNs, "net.ipv4.conf.lan0.forwarding"), await sysctl(brNs, `net.ipv4.conf.${br.iface}.forwarding`), await sysctl(brNs, "net.ipv4.conf.all.forwarding")]).toEqual(["1", "1", "0"]);
    expect(await masquerades(brNs)).toHaveLength(1);
    expect((await masquerades(brNs))[0]).toContain('"lan0"');
    // The control plane hears of it: capabilities name the subnets, the heartbeat the routes.
    await expect.poll(async () => (await cp.client.capabilities(nodeId(br))).capabilities, { timeout: 30_000, interval: 1000 }).toMatchObject({ bridge: { enabled: "true", access_interface: "lan0", access_subnet_0: "192.168.77.0/24", access_subnet_1: "192.168.78.0/24" } });
    await expect.poll(async () => (await cp.client.heartbeats(nodeId(br))).at(-1)?.body, { timeout: 20_000, interval: 1000 }).toMatchObject({ bridge: { enabled: true, access_interface: "lan0", active_routes: 2 } });
    // plexd status and the node API show the service.
    const st = await br.plexd(["status"]);
    expect(st.output).toMatch(/access_routing\s+running\s+192\.168\.77\.0\/24, 192\.168\.78\.0\/24 via lan0, masquerade {2}\(routes 2\)/);
    expect(st.output).toMatch(/routes\s+ok\s+2 routes, forwarding on lan0, plexd/);
  });

  it("enable_nat: false drops the masquerade rule; the LAN then needs its own route back", async () => {
    await restartBridgeWith({ access_subnets: ["192.168.77.0/24", "192.168.78.0/24"], enable_nat: false });
    await expect.poll(() => masquerades(br.ns), { timeout: 30_000, interval: 500 }).toEqual([]);
    expect((await ping(a.ns, lanHost, { count: 2, timeoutMs: 2000 })).ok).toBe(false);
    await addRoute(lan, "10.100.0.0/16", { via: "192.168.77.1" });
    registerCleanup("lan route back", async () => void (await nsExec(lan, ["ip", "route", "del", "10.100.0.0/16"], { reject: false })));
    await expect.poll(async () => (await ping(a.ns, lanHost, { count: 1, timeoutMs: 3000 })).ok, { timeout: 30_000, interval: 1000 }).toBe(true);
  });

  it("removing the access subnets removes routes, forwarding and rules, and nothing else", async () => {
    const before = (await routes(br.ns)).filter((r) => !r.includes("proto 81"));
    await restartBridgeWith({ access_subnets: [], enable_nat: true });
    await expect.poll(() => sysctl(br.ns, "net.ipv4.conf.lan0.forwarding"), { timeout: 30_000, interval: 500 }).toBe("0");
    expect(await sysctl(br.ns, `net.ipv4.conf.${br.iface}.forwarding`)).toBe("0");
    expect(await sysctl(br.ns, "net.ipv4.conf.eth0.forwarding")).toBe("1");
    expect((await routes(br.ns)).filter((r) => r.includes("proto 81"))).toEqual([]);
    expect((await routes(br.ns)).filter((r) => !r.includes("proto 81"))).toEqual(before);
    expect(await routes(br.ns)).toContain("10.99.0.0/16 dev lan0 scope link");
    expect(await masquerades(br.ns)).toEqual([]);
  });

  it("the control plane's bridge_config replaces the configured subnets; the mesh follows", async () => {
    await restartBridgeWith({ access_subnets: ["192.168.77.0/24"], enable_nat: true });
    await expect.poll(() => masquerades(br.ns), { timeout: 30_000, interval: 500 }).toHaveLength(1);
    await cp.client.setBridgeBlock(nodeId(br), "bridge_config", { access_subnets: ["192.168.78.0/24"], enable_nat: true });
    registerCleanup("bridge_config block", async () => void (await cp.client.setBridgeBlock(nodeId(br), "bridge_config", undefined)));
    await expect.poll(() => routes(br.ns), { timeout: 30_000, interval: 500 }).toContain("192.168.78.0/24 dev lan0 proto 81 scope link");
    await expect.poll(async () => (await wgShow(a.ns, a.iface).catch(() => ({ peers: [] }))).peers.flatMap((p) => p.allowedIps).filter((x) => x.startsWith("192.168.")), { timeout: 60_000, interval: 1000 }).toEqual(["192.168.78.0/24"]);
    await expect.poll(async () => (await ping(a.ns, lanHost2, { count: 1, timeoutMs: 3000 })).ok, { timeout: 30_000, interval: 1000 }).toBe(true);
    expect((await ping(a.ns, lanHost, { count: 2, timeoutMs: 2000 })).ok).toBe(false);
  });

  it("bad input to ApplyRoutes is refused with every reason and nothing is applied (real privhelper)", async () => {
    const client = connectPrivhelper({ socketPath: br.privSocket });
    registerCleanup("privhelper client", async () => client.close());
    const before = { routes: await routes(br.ns), fwd: await sysctl(br.ns, "net.ipv4.conf.lan0.forwarding") };
    const err = await client
      .applyRoutes({ spec: { routes: [{ destination: "0.0.0.0/0", interface: "lan0" }, { destination: "10.50.0.0/16", interface: "lan0" }, { destination: "10.50.1.0/24", interface: "lan0" }, { destination: "10.60.0.0/16", interface: "eth0" }], forwarding: ["lan0"] } })
      .then(() => undefined, (e: unknown) => PlexdError.from(e));
    expect(err?.code).toBe("invalid_argument");
    expect(err?.message).toContain("spec.routes[0].destination: 0.0.0.0/0 is a default route");
    expect(err?.message).toContain("spec.routes[2].destination: 10.50.1.0/24 overlaps 10.50.0.0/16");
    expect(err?.message).toContain('spec.routes[3].interface: "eth0" is not an interface the bridge may route through');
    expect({ routes: await routes(br.ns), fwd: await sysctl(br.ns, "net.ipv4.conf.lan0.forwarding") }).toEqual(before);
  });
});
