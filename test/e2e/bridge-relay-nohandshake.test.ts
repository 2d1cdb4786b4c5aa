import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { addNatSite, createTopology, ensureSystemUsers, nftApply, nftList, ping, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub, stunPort } from "./lib/cp.js";
import { joinNode, meshIp, nodeId, peerEndpoint as endpointOf } from "./lib/mesh.js";
import type { PlexdNode } from "./lib/node.js";

// Relay when no handshake follows (docs/bridge.md#relay, docs/mockcp.md#relay-sessions). Topology:
//
//   "internet" (hub ns, 192.0.2.0/24): mockcp (HTTPS + STUN responder .200) and stund on .1;
//                                       a bridge-family nftables "wall" drops UDP between r1 and r2
//   bridge 192.0.2.4   mode: bridge, relay on UDP 51821, announced through its capabilities
//   r1 192.0.2.2  plain masquerade (endpoint-independent) ── 198.18.1.0/24 ── node nha
//   r2 192.0.2.3  plain masquerade (endpoint-independent) ── 198.18.2.0/24 ── node nhb
//   c  192.0.2.5  no NAT: reaches both, so its pairs do handshake
//
// Neither NAT is symmetric, so the symmetric rule never fires; but nha and nhb cannot reach each
// other. Their agents report `handshake_succeeded: false` for each other in tunnel_health, and
// after the grace period mockcp pairs them through the bridge on its own (no control-API call).

useHarness();

const relayPort = 51821;
const stunA = "192.0.2.200";
const graceSeconds = 15;

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let api: string;
let bridge: PlexdNode;
let a: PlexdNode;
let b: PlexdNode;
let c: PlexdNode;
let relayAddress: string;

/** Metrics often enough for the short grace: collection every 5 s, sent within a second. */
const nodeConfig = (extra: Record<string, unknown> = {}) => ({
  policy: { default: "allow" },
  mesh: { persistent_keepalive: "5s" },
  observe: { interval: "5s", batch_interval: "1s" },
  nat_traversal: { enabled: true, stun_servers: [`${topo.hub.ip}:${stunPort}`, `${stunA}:3478`], refresh_interval: "10s", timeout: "1s" },
  ...extra,
});

/** Drops every UDP datagram between the two routers' public addresses, counting them. */
const wall = (x: string, y: string) => `table bridge plexd_e2e_wall {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ip saddr ${x} ip daddr ${y} meta l4proto udp counter drop
    ip saddr ${y} ip daddr ${x} meta l4proto udp counter drop
  }
}
`;

async function wallDrops(): Promise<number> {
  const rules = (await nftList(topo.hub.ns)).rules.filter((r) => r.table === "plexd_e2e_wall");
  let packets = 0;
  for (const r of rules) for (const e of r.expr as { counter?: { packets: number } }[]) packets += e.counter?.packets ?? 0;
  return packets;
}

const peerEndpoint = (from: PlexdNode, to: PlexdNode) => endpointOf(cp, from, to);

const pingOk = async (from: PlexdNode, to: PlexdNode) => (await ping(from.ns, meshIp(to), { count: 2, timeoutMs: 4000 })).ok;

/** When `n` first reported its endpoint to mockcp (ms). */
async function firstEndpointReport(n: PlexdNode): Promise<number> {
  const reqs = await cp.client.requests({ path: `/v1/nodes/${nodeId(n)}/endpoint`, method: "PUT" });
  return Date.parse(reqs.find((r) => r.status === 200)!.time);
}

/** `from`'s tunnel_health points about `to`, as mockcp received them. */
async function healthAbout(from: PlexdNode, to: PlexdNode): Promise<{ timestamp: string; handshake_succeeded: boolean }[]> {
  const items = (await cp.client.observability(nodeId(from), "metrics")).items as { timestamp: string; group: string; peer_id?: string; data: { handshake_succeeded: boolean } }[];
  return items.filter((p) => p.group === "tunnel_health" && p.peer_id === nodeId(to)).map((p) => ({ timestamp: p.timestamp, handshake_succeeded: p.data.handshake_succeeded }));
}

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["r1", "r2", "bridge", "c"] });
  cp = await startCpOnHub(topo, { stun: true, stunResponders: [`${stunA}:3478`] });
  api = `https://${topo.hub.ip}:${cpPort}`;
  // A setting, not an assignment: the grace is 60 s by default.
  expect(await cp.client.setRelaySettings({ no_handshake_grace_seconds: graceSeconds })).toMatchObject({ auto: true, no_handshake_grace_seconds: graceSeconds });
  await nftApply(topo.hub.ns, wall(topo.node("r1").ip, topo.node("r2").ip));
  bridge = await joinNode({ topo, cp, api, users, name: "bridge", config: nodeConfig({ mode: "bridge", bridge: { relay: { listen_port: relayPort } } }) });
  await bridge.agent!.waitForLine(/"msg":"relay started"/, 30_000);
  relayAddress = `${topo.node("bridge").ip}:${relayPort}`;
  c = await joinNode({ topo, cp, api, users, name: "c", config: nodeConfig() });
  const s1 = await addNatSite(topo, { router: "r1", index: 1, mapping: "endpoint-independent" });
  const s2 = await addNatSite(topo, { router: "r2", index: 2, mapping: "endpoint-independent" });
  a = await joinNode({ topo, cp, api, users, name: "nha", ns: s1.ns, config: nodeConfig() });
  b = await joinNode({ topo, cp, api, users, name: "nhb", ns: s2.ns, config: nodeConfig() });
}, 180_000);

describe("bridge relay when no handshake follows", () => {
  let sessionId: string;

  it("after the grace period mockcp pairs two non-symmetric nodes that cannot meet: wg names the relay, they ping over the mesh", async () => {
    await expect.poll(async () => (await cp.client.relay()).sessions.length, { timeout: 120_000, interval: 1000 }).toBe(1);
    const [s] = (await cp.client.relay()).sessions;
    sessionId = s!.session_id;
    expect([s!.peer_a_id, s!.peer_b_id].sort()).toEqual([nodeId(a), nodeId(b)].sort());
    expect(s!).toMatchObject({ relay_address: relayAddress, reason: "no_handshake" });
    // Not the symmetric rule: both NATs are endpoint-independent.
    for (const n of [a, b]) expect((await cp.client.getNode(nodeId(n))).endpoint).toMatchObject({ nat_type: "full_cone", relay_fallback: true });
    // Not before the grace period after both were online with endpoints.
    const assignedAt = Date.parse(s!.expires_at) - (await cp.client.relay()).ttl_seconds * 1000;
    const bothOnline = Math.max(await firstEndpointReport(a), await firstEndpointReport(b));
    expect(assignedAt - bothOnline).toBeGreaterThanOrEqual((graceSeconds - 1) * 1000);
    // What it went by: the agents said "no handshake" about each other, and the wall did drop their tries.
    const said = [...(await healthAbout(a, b)), ...(await healthAbout(b, a))].filter((p) => Date.parse(p.timestamp) <= assignedAt);
    expect(said.length).toBeGreaterThan(0);
    expect(said.every((p) => !p.handshake_succeeded)).toBe(true);
    expect(await wallDrops()).toBeGreaterThan(0);

    await bridge.agent!.waitForLine(new RegExp(`"session_id":"${sessionId}".*"msg":"relay session added"|"msg":"relay session added".*"session_id":"${sessionId}"`), 30_000);
    await expect.poll(() => peerEndpoint(a, b), { timeout: 30_000, interval: 1000 }).toBe(relayAddress);
    await expect.poll(() => peerEndpoint(b, a), { timeout: 30_000, interval: 1000 }).toBe(relayAddress);
    await expect.poll(() => pingOk(a, b), { timeout: 45_000, interval: 1000 }).toBe(true);
    expect(await pingOk(b, a)).toBe(true);
    // The relay carries it: the wall still stands, and the agents now report the handshake.
    await expect.poll(async () => (await healthAbout(a, b)).at(-1)?.handshake_succeeded, { timeout: 30_000, interval: 1000 }).toBe(true);
  }, 300_000);

  it("pairs that do handshake are never relayed", async () => {
    // c reaches both directly; by now both of its pairs are well past the grace period.
    expect(await pingOk(c, a)).toBe(true);
    expect(await pingOk(c, b)).toBe(true);
    expect((await healthAbout(c, a)).at(-1)?.handshake_succeeded).toBe(true);
    expect(await peerEndpoint(c, a)).toMatch(new RegExp(`^${topo.node("r1").ip.replaceAll(".", "\\.")}:`));
    expect((await cp.client.relay()).sessions.map((s) => s.session_id)).toEqual([sessionId]);
  });
});
