import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { createTopology, ensureSystemUsers, nsExec, ping, registerCleanup, useHarness, wgShow, type SystemUsers, type Topology, until } from "./harness/vitest.js";
import { cpPort, startCpOnHub } from "./lib/cp.js";
import { joinNode, meshIp, nodeId } from "./lib/mesh.js";
import type { PlexdNode } from "./lib/node.js";

// Full tunnel (issue 14): a peer that routes 0.0.0.0/0. Node b runs with the defaults: the
// peer is quarantined with its reason and b's routes and rules do not change. Node a runs with
// mesh.allow_default_route: the default route goes through the peer (x, the exit) the way
// wg-quick does it — table 51820, fwmark 51820 on a's WireGuard device, two policy rules —
// while a's main table, and its uplink's default route in it, stay as they were; removing the
// peer leaves a's routes and rules exactly as before.
//
// a's uplink is a /32 with a default route via the gateway (the hub, which forwards): x's
// WireGuard endpoint is reached through that default route only, so the tunnel works only if
// WireGuard's own packets (marked) keep using the uplink while everything else goes into it.
// 198.51.100.1 is an "outside" address that only x holds.

useHarness();

const outside = "198.51.100.1";
let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
const nodes: Record<string, PlexdNode> = {};

const sh = async (n: PlexdNode, argv: string[]): Promise<string> => (await nsExec(n.ns, argv)).stdout.trim();

/** Every route of every table and every policy rule, both families: what must come back unchanged. */
async function routing(n: PlexdNode): Promise<string> {
  const parts = await Promise.all([["-4", "route", "show", "table", "all"], ["-6", "route", "show", "table", "all"], ["-4", "rule", "show"], ["-6", "rule", "show"]].map((a) => sh(n, ["ip", ...a])));
  return parts.join("\n--\n");
}

async function quarantineReason(n: PlexdNode, peerId: string): Promise<string | undefined> {
  const r = await n.plexd(["peers", "--all", "-o", "json"]);
  const peers = (JSON.parse(r.output.slice(r.output.indexOf("{"))) as { peers: { peer_id: string; quarantine_reason?: string }[] }).peers;
  return peers.find((p) => p.peer_id === peerId)?.quarantine_reason || undefined;
}

/** The policy rules with privhelper's protocol number (`ip rule show` cannot filter by it). */
const plexdRules = async (n: PlexdNode, family: "-4" | "-6"): Promise<string[]> => (await sh(n, ["ip", family, "rule", "show"])).split("\n").filter((l) => / proto 80\b/.test(l));

const hasPeer = async (n: PlexdNode, key: string | null): Promise<boolean> => (await wgShow(n.ns, n.iface)).peers.some((p) => p.publicKey === key);

/** Waits (a state pull or more away) until `n`'s kernel has x or not; on a timeout, says what n's agent logged meanwhile. */
async function waitPeer(n: PlexdNode, key: string | null, present: boolean): Promise<void> {
  const since = n.agent!.output().length;
  const end = Date.now() + 60_000;
  while ((await hasPeer(n, key).catch(() => !present)) !== present) {
    if (Date.now() > end) throw new Error(`${n.name}: peer ${present ? "never came" : "never left"}; agent log meanwhile:\n${n.agent!.output().slice(since).split("\n").slice(-40).join("\n")}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}


beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["a", "b", "x"] });
  cp = await startCpOnHub(topo, { stun: true });
  const api = `https://${topo.hub.ip}:${cpPort}`;
  // The gateway forwards, and sends no redirects that would route around it.
  await nsExec(topo.hub.ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0", `net.ipv4.conf.${topo.hub.bridge}.send_redirects=0`]);
  const a = topo.node("a");
  for (const argv of [
    ["ip", "addr", "del", a.cidr, "dev", a.iface],
    ["ip", "addr", "add", `${a.ip}/32`, "dev", a.iface],
    ["ip", "route", "add", `${topo.hub.ip}/32`, "dev", a.iface],
    ["ip", "route", "add", "default", "via", topo.hub.ip, "dev", a.iface],
  ]) {
    await nsExec(a.ns, argv);
  }
  await nsExec(topo.node("x").ns, ["ip", "addr", "add", `${outside}/32`, "dev", "lo"]);
  const base = { policy: { default: "allow" }, reconcile: { interval: "10s" } };
  nodes.x = await joinNode({ topo, cp, api, users, name: "x", config: base });
  nodes.a = await joinNode({ topo, cp, api, users, name: "a", config: { ...base, mesh: { allow_default_route: true } } });
  nodes.b = await joinNode({ topo, cp, api, users, name: "b", config: base });
  registerCleanup("state overrides", async () => {
    for (const n of [nodes.a!, nodes.b!]) await cp.client.clearStateOverrides(nodeId(n));
  });
  const xKey = (await wgShow(nodes.x.ns, nodes.x.iface)).publicKey;
  for (const n of [nodes.a, nodes.b]) await until(`x in ${n.name}'s kernel`, () => hasPeer(n, xKey), 60_000);
}, 180_000);

describe("full tunnel", () => {
  it("without mesh.allow_default_route a peer with 0.0.0.0/0 is quarantined with its reason, and no route or rule changes", async () => {
    const [b, x] = [nodes.b!, nodes.x!];
    const xKey = (await wgShow(x.ns, x.iface)).publicKey;
    // Start from b without x, so that "unchanged" is about everything b has.
    await cp.client.injectPeerDrift(nodeId(b), nodeId(x), { remove: true });
    await waitPeer(b, xKey, false);
    const before = await routing(b);
    expect(await sh(b, ["ip", "route", "show", "default"])).toBe(`default via ${topo.hub.ip} dev ${topo.node("b").iface}`);

    await cp.client.injectPeerDrift(nodeId(b), nodeId(x), { allowed_ips: ["0.0.0.0/0"] });
    await expect.poll(() => quarantineReason(b, nodeId(x)), { timeout: 30_000, interval: 1000 }).toMatch(/0\.0\.0\.0\/0 is shorter than \/8 \(mesh\.min_route_prefix_v4\); refused unless mesh\.allow_default_route is true/);
    // Kept out of the kernel: b's WireGuard has no such peer, and every route and rule is as it was.
    expect(await hasPeer(b, xKey)).toBe(false);
    expect(await routing(b)).toBe(before);
    // Once, not per reconcile cycle.
    await new Promise((r) => setTimeout(r, 12_000));
    expect(b.agent!.output().split("\n").filter((l) => l.includes('"peer quarantined') && l.includes(nodeId(x))).length).toBe(1);
    await cp.client.clearStateOverrides(nodeId(b), nodeId(x));
  });

  it("with mesh.allow_default_route the default route goes through the peer; the endpoint stays on the uplink; removing the peer restores routes and rules exactly", async () => {
    const [a, b, x] = [nodes.a!, nodes.b!, nodes.x!];
    const xKey = (await wgShow(x.ns, x.iface)).publicKey;
    const uplink = topo.node("a").iface;
    await cp.client.injectPeerDrift(nodeId(a), nodeId(x), { remove: true });
    await waitPeer(a, xKey, false);
    const before = await routing(a);
    const defaultRoute = `default via ${topo.hub.ip} dev ${uplink}`;
    expect(await sh(a, ["ip", "route", "show", "default"])).toBe(defaultRoute);
    // The outside address is unreachable through the gateway.
    expect((await ping(a.ns, outside, { count: 1, timeoutMs: 2000 })).ok).toBe(false);

    await cp.client.injectPeerDrift(nodeId(a), nodeId(x), { allowed_ips: ["0.0.0.0/0", `${meshIp(x)}/32`] });
    await expect.poll(async () => (await wgShow(a.ns, a.iface)).peers.find((p) => p.publicKey === xKey)?.allowedIps.sort(), { timeout: 30_000, interval: 500 }).toEqual(["0.0.0.0/0", `${meshIp(x)}/32`]);
    // plexd's default route is in table 51820; main keeps the uplink's; two rules of protocol 80 lead there.
    await expect.poll(() => sh(a, ["ip", "route", "show", "table", "51820"]), { timeout: 15_000 }).toBe(`default dev ${a.iface} proto 80 scope link`);
    expect(await sh(a, ["ip", "route", "show", "default"])).toBe(defaultRoute);
    await expect.poll(() => plexdRules(a, "-4"), { timeout: 15_000 }).toEqual([
      expect.stringMatching(/from all lookup main suppress_prefixlength 0 proto 80/),
      expect.stringMatching(/not from all fwmark 0xca6c lookup 51820 proto 80/),
    ]);
    expect(await plexdRules(a, "-6")).toEqual([]); // no ::/0: no IPv6 rules
    expect((await wgShow(a.ns, a.iface)).fwmark).toBe("0xca6c");
    // Everything goes into the tunnel but WireGuard's own (marked) packets, which take the uplink.
    expect(await sh(a, ["ip", "route", "get", outside])).toMatch(new RegExp(`dev ${a.iface} `));
    expect(await sh(a, ["ip", "route", "get", topo.node("x").ip, "mark", "51820"])).toMatch(new RegExp(`via ${topo.hub.ip} dev ${uplink} `));
    // Traffic to the outside reaches the host only x has, through x; the mesh keeps working.
    await expect.poll(async () => (await ping(a.ns, outside, { count: 1, timeoutMs: 3000 })).ok, { timeout: 30_000, interval: 1000 }).toBe(true);
    expect((await ping(a.ns, meshIp(b), { count: 2, timeoutMs: 5000 })).ok).toBe(true);
    // The handshake with x (its endpoint behind the gateway) keeps working: a fresh one now.
    const handshake = (await wgShow(a.ns, a.iface)).peers.find((p) => p.publicKey === xKey)?.latestHandshake ?? 0;
    expect(Date.now() / 1000 - handshake).toBeLessThan(60);

    // The peer goes: a's routes and rules are exactly what they were before it came.
    await cp.client.injectPeerDrift(nodeId(a), nodeId(x), { remove: true });
    await waitPeer(a, xKey, false);
    await expect.poll(() => routing(a), { timeout: 15_000, interval: 500 }).toBe(before);
    expect(await sh(a, ["ip", "route", "show", "default"])).toBe(defaultRoute);
    expect((await ping(a.ns, outside, { count: 1, timeoutMs: 2000 })).ok).toBe(false);
    await cp.client.clearStateOverrides(nodeId(a), nodeId(x));
  });

  it("--cleanup removes the full tunnel's routes and rules", async () => {
    const [a, x] = [nodes.a!, nodes.x!];
    await cp.client.injectPeerDrift(nodeId(a), nodeId(x), { allowed_ips: ["0.0.0.0/0", `${meshIp(x)}/32`] });
    await expect.poll(async () => (await plexdRules(a, "-4")).length, { timeout: 30_000 }).toBe(2);
    await a.agent!.kill("SIGTERM");
    const r = await nsExec(a.ns, [`${import.meta.dirname}/../../dist/plexd-privhelper.js`, "--config", a.configFile, "--cleanup"]);
    expect(r.exitCode).toBe(0);
    expect(await plexdRules(a, "-4")).toEqual([]);
    expect(await sh(a, ["ip", "route", "show", "table", "51820"])).toBe("");
    expect(await sh(a, ["ip", "route", "show", "default"])).toBe(`default via ${topo.hub.ip} dev ${topo.node("a").iface}`);
    // Leave a as found: its agent back, x an ordinary peer again.
    await cp.client.clearStateOverrides(nodeId(a), nodeId(x));
    a.startAgent();
    await a.agent!.waitForLine(/identity loaded/, 30_000);
    const xKey = (await wgShow(x.ns, x.iface)).publicKey;
    await expect.poll(() => hasPeer(a, xKey), { timeout: 60_000, interval: 1000 }).toBe(true);
  });
});
