import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, nsExec, ping, registerCleanup, useHarness, wgShow, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { startDns, useTestDns, type TestDns } from "./lib/dns.js";
import { joinNode, meshIp, nodeId } from "./lib/mesh.js";
import type { PlexdNode } from "./lib/node.js";

// DNS-name endpoints (issue 14): the control plane gives node v its peer p as
// `peer-p.plexd.test:51820`. v's agent resolves the name through v's resolver (dnsmasq on the
// hub), privhelper gets IP:port, and when the name moves v follows it on the next reconcile.
// p holds two extra underlay addresses the name points at in turn; it never initiates (no
// endpoint for v, no keepalive), so v's WireGuard endpoint is the one v was given, not one
// learned from p's packets. A name that does not resolve yet quarantines the peer until it does.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let dns: TestDns;
let v: PlexdNode;
let p: PlexdNode;
const [first, second] = ["192.0.2.200", "192.0.2.201"];

const endpointOfP = async (): Promise<string | null | undefined> => {
  const key = (await wgShow(p.ns, p.iface)).publicKey;
  return (await wgShow(v.ns, v.iface)).peers.find((x) => x.publicKey === key)?.endpoint;
};

async function quarantineReason(n: PlexdNode, peerId: string): Promise<string | undefined> {
  const r = await n.plexd(["peers", "--all", "-o", "json"]);
  const peers = (JSON.parse(r.output.slice(r.output.indexOf("{"))) as { peers: { peer_id: string; quarantine_reason?: string }[] }).peers;
  return peers.find((x) => x.peer_id === peerId)?.quarantine_reason || undefined;
}

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["v", "p"] });
  cp = await startCpOnHub(topo);
  dns = await startDns(topo, { "peer-p.plexd.test": first });
  useTestDns(topo, topo.node("v").ns);
  const pNode = topo.node("p");
  for (const ip of [first, second]) await nsExec(pNode.ns, ["ip", "addr", "add", `${ip}/${topo.prefixLen}`, "dev", pNode.iface]);
  const api = `https://${topo.hub.ip}:${cpPort}`;
  const base = { policy: { default: "allow" }, nat_traversal: { enabled: false }, reconcile: { interval: "10s" } };
  p = await joinNode({ topo, cp, api, users, name: "p", config: { ...base, mesh: { persistent_keepalive: "0s" } } });
  v = await joinNode({ topo, cp, api, users, name: "v", config: base });
  registerCleanup("state overrides", () => cp.client.clearStateOverrides(nodeId(v)));
  // Neither knows the other's endpoint yet (no NAT discovery): p is never the one to start.
  await cp.client.injectPeerDrift(nodeId(p), nodeId(v), { endpoint: "" });
}, 180_000);

describe("DNS-name endpoints", () => {
  it("a name is resolved through the node's resolver and sent as IP:port; the tunnel comes up through it", async () => {
    await cp.client.injectPeerDrift(nodeId(v), nodeId(p), { endpoint: "peer-p.plexd.test:51820" });
    await expect.poll(endpointOfP, { timeout: 30_000, interval: 500 }).toBe(`${first}:51820`);
    await expect.poll(async () => (await ping(v.ns, meshIp(p), { count: 1, timeoutMs: 3000 })).ok, { timeout: 30_000, interval: 1000 }).toBe(true);
  });

  it("a moved name is followed on the next reconcile; the tunnel keeps working through the new address only", async () => {
    await dns.set({ "peer-p.plexd.test": second });
    await expect.poll(endpointOfP, { timeout: 30_000, interval: 500 }).toBe(`${second}:51820`);
    await expect.poll(() => v.agent!.output(), { timeout: 5_000 }).toMatch(/"msg":"endpoint name moved"/);
    await nsExec(p.ns, ["ip", "addr", "del", `${first}/${topo.prefixLen}`, "dev", topo.node("p").iface]);
    await expect.poll(async () => (await ping(v.ns, meshIp(p), { count: 1, timeoutMs: 3000 })).ok, { timeout: 30_000, interval: 1000 }).toBe(true);
    expect(await endpointOfP()).toBe(`${second}:51820`);
  });

  it("a name that does not resolve quarantines the peer with the resolver's answer; once it resolves, the peer is back", async () => {
    await cp.client.injectPeerDrift(nodeId(v), nodeId(p), { endpoint: "late.plexd.test:51820" });
    await expect.poll(() => quarantineReason(v, nodeId(p)), { timeout: 30_000, interval: 1000 }).toMatch(/^endpoint: late\.plexd\.test does not resolve \(ENOTFOUND\)/);
    await expect.poll(async () => (await wgShow(v.ns, v.iface)).peers.length, { timeout: 15_000 }).toBe(0);
    await dns.set({ "peer-p.plexd.test": second, "late.plexd.test": second });
    await expect.poll(endpointOfP, { timeout: 30_000, interval: 500 }).toBe(`${second}:51820`);
    expect(await quarantineReason(v, nodeId(p))).toBeUndefined();
    await expect.poll(async () => (await ping(v.ns, meshIp(p), { count: 1, timeoutMs: 3000 })).ok, { timeout: 30_000, interval: 1000 }).toBe(true);
  });
});
