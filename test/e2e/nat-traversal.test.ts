import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { addNatSite, createTopology, ensureSystemUsers, nsExec, ping, registerCleanup, useHarness, wgShow, type NatMapping, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub, stunPort } from "./lib/cp.js";
import { meshIp, nodeId } from "./lib/mesh.js";
import { createNode, type PlexdNode } from "./lib/node.js";

// NAT traversal end to end (docs/architecture.md#the-control-plane-channel). The topology:
//
//   "internet" (hub ns, 192.0.2.0/24): mockcp (HTTPS + two STUN responders on .200/.201)
//                                       and Debian's stund on .1
//   r1 192.0.2.2   plain masquerade   ── site 198.18.1.0/24 ── node nata
//   r2 192.0.2.3   plain masquerade   ── site 198.18.2.0/24 ── node natb
//   r3 192.0.2.4   masquerade fully-random (a new port per destination) ── 198.18.3.0/24 ── natc
//
// The routers and sites are built by harness/nat.ts (shared with `npm run demo -- --nat`).

useHarness();

const refresh = "10s";
const refreshMs = 10_000;
const stunA = "192.0.2.200";
const stunB = "192.0.2.201";

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let api: string;
const nodes: Record<string, PlexdNode> = {};
const routers: Record<string, { ns: string; ip: string }> = {};

async function buildSite(router: string, index: number, mapping: NatMapping): Promise<string> {
  const site = await addNatSite(topo, { router, index, mapping });
  routers[router] = site.router;
  return site.ns;
}

async function join(name: string, ns: string): Promise<PlexdNode> {
  const { token } = await cp.client.createToken();
  const n = createNode({
    name,
    ns,
    api,
    caFile: cp.caFile,
    users,
    token,
    config: {
      reconcile: { interval: "10s" },
      heartbeat: { interval: "5s" },
      policy: { default: "allow" },
      mesh: { persistent_keepalive: "5s" },
      // stund first, then mockcp's two responders: any two answers classify the NAT.
      nat_traversal: { enabled: true, stun_servers: [`${topo.hub.ip}:${stunPort}`, `${stunA}:3478`, `${stunB}:3479`], refresh_interval: refresh, timeout: "1s" },
    },
  });
  await n.startPrivhelper();
  n.startAgent();
  await n.agent!.waitForLine(/"msg":"registered"|identity loaded/, 30_000);
  nodes[name] = n;
  return n;
}

const endpointOf = async (n: PlexdNode) => (await cp.client.getNode(nodeId(n))).endpoint;

async function reportsOf(n: PlexdNode): Promise<{ public_endpoint: string; nat_type: string; relay_fallback: boolean }[]> {
  const reqs = await cp.client.requests({ path: `/v1/nodes/${nodeId(n)}/endpoint`, method: "PUT" });
  return reqs.filter((r) => r.status === 200).map((r) => r.body as { public_endpoint: string; nat_type: string; relay_fallback: boolean });
}

async function peerEndpoint(from: PlexdNode, to: PlexdNode): Promise<string | null> {
  const dev = await wgShow(from.ns, from.iface).catch(() => undefined);
  const key = (await cp.client.getNode(nodeId(to))).public_key;
  return dev?.peers.find((p) => p.publicKey === key)?.endpoint ?? null;
}

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["r1", "r2", "r3"] });
  cp = await startCpOnHub(topo, { stun: true, stunResponders: [`${stunA}:3478`, `${stunB}:3479`] });
  api = `https://${topo.hub.ip}:${cpPort}`;
  const s1 = await buildSite("r1", 1, "endpoint-independent");
  const s2 = await buildSite("r2", 2, "endpoint-independent");
  const s3 = await buildSite("r3", 3, "symmetric");
  await join("nata", s1);
  await join("natb", s2);
  await join("natc", s3);
}, 180_000);

describe("NAT traversal", () => {
  it("nodes behind endpoint-independent NATs discover their router's public address, mesh port kept (full_cone)", async () => {
    for (const [name, router] of [
      ["nata", "r1"],
      ["natb", "r2"],
    ] as const) {
      const n = nodes[name]!;
      await expect.poll(() => endpointOf(n), { timeout: 45_000, interval: 1000 }).toMatchObject({ public_endpoint: `${routers[router]!.ip}:51820`, nat_type: "full_cone" });
      expect((await reportsOf(n)).at(-1)).toEqual({ public_endpoint: `${routers[router]!.ip}:51820`, nat_type: "full_cone", relay_fallback: true });
      // The heartbeat carries the same block (docs/architecture.md#lifecycle).
      const hb = await cp.client.requests({ path: `/v1/nodes/${nodeId(n)}/heartbeat`, method: "POST" });
      await expect
        .poll(async () => (await cp.client.requests({ path: `/v1/nodes/${nodeId(n)}/heartbeat`, method: "POST", since: hb.at(-1)?.seq ?? 0 })).map((r) => (r.body as { nat?: unknown }).nat).at(-1), { timeout: 15_000 })
        .toEqual({ public_endpoint: `${routers[router]!.ip}:51820`, type: "full_cone" });
    }
  });

  it("they exchange endpoints through mockcp and ping each other directly over the mesh", async () => {
    const a = nodes.nata!;
    const b = nodes.natb!;
    // WireGuard's endpoint for the peer is the other router's public address.
    await expect.poll(() => peerEndpoint(a, b), { timeout: 45_000, interval: 1000 }).toMatch(new RegExp(`^${routers.r2!.ip.replaceAll(".", "\\.")}:\\d+$`));
    await expect.poll(() => peerEndpoint(b, a), { timeout: 45_000, interval: 1000 }).toMatch(new RegExp(`^${routers.r1!.ip.replaceAll(".", "\\.")}:\\d+$`));
    await expect.poll(async () => (await ping(a.ns, meshIp(b), { count: 2, timeoutMs: 5000 })).ok, { timeout: 45_000, interval: 1000 }).toBe(true);
    expect((await ping(b.ns, meshIp(a), { count: 3, timeoutMs: 6000 })).ok).toBe(true);
    // Direct: the tunnel's traffic crosses the routers to each other, never the hub's addresses.
    const dev = await wgShow(a.ns, a.iface);
    const peer = dev.peers.find((p) => p.endpoint?.startsWith(`${routers.r2!.ip}:`));
    expect(peer?.latestHandshake ?? 0).toBeGreaterThan(0);
    expect(peer?.rxBytes ?? 0).toBeGreaterThan(0);
  });

  it("a node behind a symmetric NAT is classified symmetric and asks for relay fallback", async () => {
    const c = nodes.natc!;
    await expect.poll(() => endpointOf(c), { timeout: 45_000, interval: 1000 }).toMatchObject({ nat_type: "symmetric" });
    const last = (await reportsOf(c)).at(-1)!;
    expect(last.nat_type).toBe("symmetric");
    expect(last.relay_fallback).toBe(true);
    expect(last.public_endpoint.startsWith(`${routers.r3!.ip}:`)).toBe(true);
  });

  it("a router that changes its public address is noticed within one refresh, and the peer follows", async () => {
    const a = nodes.nata!;
    const b = nodes.natb!;
    const r1 = routers.r1!;
    const newIp = "192.0.2.12";
    // The old address goes away: masquerade drops its conntrack mappings, the next datagrams
    // leave from the new address.
    const readdress = async (from: string, to: string): Promise<void> => {
      await nsExec(r1.ns, ["ip", "addr", "del", `${from}/24`, "dev", "eth0"]);
      await nsExec(r1.ns, ["ip", "addr", "add", `${to}/24`, "dev", "eth0"]);
      await nsExec(r1.ns, ["ip", "route", "replace", "default", "via", topo.hub.ip]);
    };
    await readdress(r1.ip, newIp);
    // The other tests here expect r1 at its own address: it gets it back however this ends
    // (the nodes notice within one refresh, which those tests wait for).
    registerCleanup("router r1 back at its address", () => readdress(newIp, r1.ip));
    const t0 = Date.now();
    await expect.poll(async () => (await endpointOf(a))?.public_endpoint, { timeout: refreshMs + 20_000, interval: 500 }).toBe(`${newIp}:51820`);
    const noticedMs = Date.now() - t0;
    // One refresh interval, plus the probes of that cycle (1 s timeout each, at most 2 × 3 servers).
    expect(noticedMs).toBeLessThan(refreshMs + 7_000);
    console.log(`NAT re-mapping noticed after ${noticedMs} ms (refresh_interval ${refresh})`);
    // The control plane told the peer (peer_endpoint_changed), and the peer's WireGuard follows.
    await expect
      .poll(async () => (await cp.client.events(nodeId(b))).some((e) => e.event_type === "peer_endpoint_changed" && e.payload.peer_id === nodeId(a) && e.payload.endpoint === `${newIp}:51820`), { timeout: 15_000 })
      .toBe(true);
    await expect.poll(() => peerEndpoint(b, a), { timeout: 30_000, interval: 1000 }).toMatch(new RegExp(`^${newIp.replaceAll(".", "\\.")}:\\d+$`));
    await expect.poll(async () => (await ping(b.ns, meshIp(a), { count: 2, timeoutMs: 5000 })).ok, { timeout: 45_000, interval: 1000 }).toBe(true);
  });
});
