import { readdirSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, nsExec, nftList, ping, tcpConnect, tcpListen, useHarness, wgShow, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { joinNode, meshIp, nodeId } from "./lib/mesh.js";
import type { PlexdNode } from "./lib/node.js";

// Policy enforcement, peer visibility and drift correction on real nftables and WireGuard:
// default deny on the mesh interface, exactly what policies allow, and whatever someone
// changes behind plexd's back put right within one reconcile interval and reported.

useHarness();

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let api: string;
let a: PlexdNode;
let b: PlexdNode;
let c: PlexdNode;

type Rule = { src: string; dst: string; port: number; protocol: string; action: string };
async function setPolicies(rules: Rule[]): Promise<void> {
  const policies = rules.length === 0 ? [] : [{ id: "p1", rules }];
  for (const n of [a, b, c]) await cp.client.setPolicies(nodeId(n), policies);
}
const both = (proto: string, port: number): Rule[] => [
  { src: nodeId(a), dst: nodeId(b), port, protocol: proto, action: "allow" },
  { src: nodeId(b), dst: nodeId(a), port, protocol: proto, action: "allow" },
];
const peerKeys = async (n: PlexdNode): Promise<string[]> => (await wgShow(n.ns, n.iface).catch(() => ({ peers: [] as { publicKey: string }[] }))).peers.map((p) => p.publicKey);

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["a", "b", "c", "d"] });
  cp = await startCpOnHub(topo, { stun: true });
  api = `https://${topo.hub.ip}:${cpPort}`;
  a = await joinNode({ topo, cp, api, users, name: "a" });
  b = await joinNode({ topo, cp, api, users, name: "b" });
  c = await joinNode({ topo, cp, api, users, name: "c" });
  // A table plexd does not own: it must survive everything below untouched.
  await nsExec(a.ns, ["nft", "-f", "-"], { input: "table inet other {\n chain keep {\n  type filter hook input priority 10; policy accept;\n  tcp dport 4242 counter\n }\n}\n" });
});

describe("policy", () => {
  it("without a policy nothing passes and no peer is configured", async () => {
    await setPolicies([]);
    await expect.poll(async () => (await nftList(a.ns)).tables.some((t) => t.name === "plexd"), { timeout: 20_000 }).toBe(true);
    await expect.poll(() => peerKeys(a), { timeout: 60_000 }).toEqual([]);
    expect((await ping(a.ns, meshIp(b), { count: 2, timeoutMs: 3000 })).ok).toBe(false);
  });

  it("an allow-all-protocols policy between two nodes lets ping through; the unauthorized node stays invisible", async () => {
    await setPolicies(both("", 0));
    await expect.poll(async () => (await ping(a.ns, meshIp(b), { count: 1, timeoutMs: 3000 })).ok, { timeout: 60_000, interval: 1000 }).toBe(true);
    expect((await ping(b.ns, meshIp(a), { count: 2, timeoutMs: 3000 })).ok).toBe(true);
    // c received peer_added for a and b but is authorized for neither.
    expect(await peerKeys(c)).toEqual([]);
    expect((await peerKeys(a)).length).toBe(1);
  });

  it("a TCP-port policy lets port P through and blocks port Q and ICMP", async () => {
    const p = 8080;
    const q = 9090;
    await tcpListen(b.ns, meshIp(b), p);
    await tcpListen(b.ns, meshIp(b), q);
    await setPolicies(both("tcp", p));
    await expect.poll(async () => (await tcpConnect(a.ns, meshIp(b), p, 2000)).ok, { timeout: 60_000, interval: 1000 }).toBe(true);
    expect((await tcpConnect(a.ns, meshIp(b), q, 2000)).ok).toBe(false);
    expect((await ping(a.ns, meshIp(b), { count: 2, timeoutMs: 3000 })).ok).toBe(false);
  });

  it("removing the policy blocks traffic again and removes the peer", async () => {
    // First traffic that the policy lets through, so that its removal is what stops it.
    await tcpListen(b.ns, meshIp(b), 8080);
    await setPolicies(both("", 0));
    await expect.poll(async () => (await tcpConnect(a.ns, meshIp(b), 8080, 2000)).ok, { timeout: 60_000, interval: 1000 }).toBe(true);
    await setPolicies([]);
    await expect.poll(() => peerKeys(a), { timeout: 60_000 }).toEqual([]);
    expect((await tcpConnect(a.ns, meshIp(b), 8080, 2000)).ok).toBe(false);
    expect((await ping(a.ns, meshIp(b), { count: 1, timeoutMs: 2000 })).ok).toBe(false);
  });
});

describe("drift", () => {
  it("a peer deleted with wg, a flushed table and a rogue rule are corrected within one interval and reported", async () => {
    await setPolicies(both("", 0));
    await expect.poll(async () => (await ping(a.ns, meshIp(b), { count: 1, timeoutMs: 3000 })).ok, { timeout: 60_000, interval: 1000 }).toBe(true);
    const id = nodeId(a);
    const reported = async (type: string): Promise<boolean> => (await cp.client.drift(id)).some((r) => (r.body as { corrections: { type: string }[] }).corrections.some((c) => c.type === type));

    const [bKey] = await peerKeys(a);
    await nsExec(a.ns, ["wg", "set", a.iface, "peer", bKey!, "remove"]);
    expect(await peerKeys(a)).toEqual([]);
    await expect.poll(() => peerKeys(a), { timeout: 15_000 }).toEqual([bKey]);
    await expect.poll(() => reported("peer_added"), { timeout: 15_000 }).toBe(true);

    await nsExec(a.ns, ["nft", "flush", "table", "inet", "plexd"]);
    await expect.poll(async () => JSON.stringify(await nftList(a.ns)).includes("plexd:"), { timeout: 15_000 }).toBe(true);
    await expect.poll(() => reported("firewall_rule_added"), { timeout: 15_000 }).toBe(true);

    await nsExec(a.ns, ["nft", "insert", "rule", "inet", "plexd", "plexd-mesh", "tcp", "dport", "31337", "accept"]);
    await expect.poll(async () => JSON.stringify(await nftList(a.ns)).includes("31337"), { timeout: 15_000 }).toBe(false);
    await expect.poll(() => reported("firewall_rule_removed"), { timeout: 15_000 }).toBe(true);

    // The rest of the host's ruleset was never touched.
    const other = (await nsExec(a.ns, ["nft", "list", "table", "inet", "other"])).stdout;
    expect(other).toContain("tcp dport 4242");
  });

  it("deregister --purge leaves no plexd table, chain or interface behind", async () => {
    // A node of its own: the others stay registered for the tests that use them.
    const d = await joinNode({ topo, cp, api, users, name: "d" });
    await expect.poll(async () => (await nftList(d.ns)).tables.some((t) => t.name === "plexd"), { timeout: 20_000 }).toBe(true);
    await d.agent!.kill("SIGTERM");
    const r = await d.plexd(["deregister", "--purge"]);
    expect(r.exitCode, r.output).toBe(0);
    const rules = JSON.stringify(await nftList(d.ns));
    expect(rules).not.toContain('"plexd"');
    expect((await nsExec(d.ns, ["ip", "-o", "link"])).stdout).not.toContain(d.iface);
    expect(readdirSync(d.dataDir)).toEqual([]);
  });
});
