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
// endpoint for v, no keepalive), and v drops p's packets from its primary address, so v's
// WireGuard endpoint is the one v was given, not one learned from p's packets. A name that does not resolve yet quarantines the peer until it does.

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
  // p answers from the address v sent to; v drops what p sends from its primary address, so v's
  // endpoint for p is only ever an address the name gave (WireGuard roams to a packet's source).
  for (const cmd of ["add table ip e2e_block", "add chain ip e2e_block input { type filter hook input priority -10; }", `add rule ip e2e_block input ip saddr ${pNode.ip} udp sport 51820 drop`]) {
    await nsExec(topo.node("v").ns, ["nft", cmd]);
  }
}, 180_000);

const reachesP = async (): Promise<boolean> => (await ping(v.ns, meshIp(p), { count: 1, timeoutMs: 3000 })).ok;

/** The control plane gives v the peer p as the name, which resolves to `ip`: v's WireGuard ends up with ip:51820 and reaches p. */
async function pointAt(ip: string): Promise<void> {
  await dns.set({ "peer-p.plexd.test": ip });
  await cp.client.injectPeerDrift(nodeId(v), nodeId(p), { endpoint: "peer-p.plexd.test:51820" });
  await expect.poll(async () => (await reachesP()) && (await endpointOfP()) === `${ip}:51820`, { timeout: 30_000, interval: 1000 }).toBe(true);
}

describe("DNS-name endpoints", () => {
  it("a name is resolved through the node's resolver and sent as IP:port; the tunnel comes up through it", async () => {
    await pointAt(first);
    await expect.poll(reachesP, { timeout: 30_000, interval: 1000 }).toBe(true);
  });

  it("a moved name is followed on the next reconcile; the tunnel keeps working through the new address only", async () => {
    await pointAt(first);
    // The old address goes away, then the name moves. (p's packets can no longer come from the
    // old address, and those from its primary one v drops, so WireGuard's roaming cannot put an
    // endpoint back that v was not given.)
    const pIface = topo.node("p").iface;
    await nsExec(p.ns, ["ip", "addr", "del", `${first}/${topo.prefixLen}`, "dev", pIface]);
    registerCleanup(`${first} back on p`, async () => void (await nsExec(p.ns, ["ip", "addr", "add", `${first}/${topo.prefixLen}`, "dev", pIface], { reject: false })));
    await dns.set({ "peer-p.plexd.test": second });
    await expect.poll(endpointOfP, { timeout: 30_000, interval: 500 }).toBe(`${second}:51820`);
    const moved = (): boolean => v.agent!.output().split("\n").some((l) => l.includes('"msg":"endpoint name moved"') && l.includes(`"from":"${first}","to":"${second}"`));
    await expect.poll(moved, { timeout: 5_000 }).toBe(true);
    await expect.poll(reachesP, { timeout: 30_000, interval: 1000 }).toBe(true);
    expect(await endpointOfP()).toBe(`${second}:51820`);
  });

  it("a name that does not resolve quarantines the peer with the resolver's answer; once it resolves, the peer is back", async () => {
    await dns.set({ "peer-p.plexd.test": second });
    await cp.client.injectPeerDrift(nodeId(v), nodeId(p), { endpoint: "late.plexd.test:51820" });
    await expect.poll(() => quarantineReason(v, nodeId(p)), { timeout: 30_000, interval: 1000 }).toMatch(/^endpoint: late\.plexd\.test does not resolve \(ENOTFOUND\)/);
    await expect.poll(async () => (await wgShow(v.ns, v.iface)).peers.length, { timeout: 15_000 }).toBe(0);
    await dns.set({ "peer-p.plexd.test": second, "late.plexd.test": second });
    await expect.poll(endpointOfP, { timeout: 30_000, interval: 500 }).toBe(`${second}:51820`);
    expect(await quarantineReason(v, nodeId(p))).toBeUndefined();
    await expect.poll(reachesP, { timeout: 30_000, interval: 1000 }).toBe(true);
  });
});
