import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { LaunchedMockcp } from "../../mockcp/launch.js";
import { addNatSite, createTopology, ensureSystemUsers, makeTempDir, ping, spawnInNamespace, useHarness, type SystemUsers, type Topology } from "./harness/vitest.js";
import { cpPort, startCpOnHub, stunPort } from "./lib/cp.js";
import { linesWith } from "./lib/logs.js";
import { continuousPing, joinNode, meshIp, nodeId, peerEndpoint as endpointOf } from "./lib/mesh.js";
import { createNode, type PlexdNode } from "./lib/node.js";
import { udpPayloads } from "./lib/pcap.js";

// The bridge's NAT relay end to end (docs/bridge.md#relay). Topology:
//
//   "internet" (hub ns, 192.0.2.0/24): mockcp (HTTPS + STUN responder .200) and stund on .1
//   bridge 192.0.2.4   mode: bridge, relay on UDP 51821 (max_sessions 1)
//   r1 192.0.2.2  masquerade fully-random (symmetric) ── 198.18.1.0/24 ── node syma
//   r2 192.0.2.3  masquerade fully-random (symmetric) ── 198.18.2.0/24 ── node symb
//
// Both nodes classify their NAT as symmetric; mockcp then pairs them through the bridge's relay.

useHarness();

const relayPort = 51821;
const stunA = "192.0.2.200";
/** The ping payload pattern; it must never cross the bridge in the clear. */
const pattern = "a5c3e1f00d15ea5e5eedbeefcafef00d";

let users: SystemUsers;
let topo: Topology;
let cp: LaunchedMockcp;
let api: string;
let bridge: PlexdNode;
let a: PlexdNode;
let b: PlexdNode;
let relayAddress: string;
let sessionId: string;

async function joinBehindNat(name: string, ns: string): Promise<PlexdNode> {
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
      nat_traversal: { enabled: true, stun_servers: [`${topo.hub.ip}:${stunPort}`, `${stunA}:3478`], refresh_interval: "10s", timeout: "1s" },
    },
  });
  await n.startPrivhelper();
  n.startAgent();
  await n.agent!.waitForLine(/"msg":"registered"|identity loaded/, 30_000);
  return n;
}

const peerEndpoint = (from: PlexdNode, to: PlexdNode) => endpointOf(cp, from, to);

const pingOk = async (from: PlexdNode, to: PlexdNode) => (await ping(from.ns, meshIp(to), { count: 2, timeoutMs: 4000 })).ok;

beforeAll(async () => {
  users = await ensureSystemUsers();
  topo = await createTopology({ nodes: ["r1", "r2", "bridge"] });
  cp = await startCpOnHub(topo, { stun: true, stunResponders: [`${stunA}:3478`] });
  api = `https://${topo.hub.ip}:${cpPort}`;
  bridge = await joinNode({
    topo,
    cp,
    api,
    users,
    name: "bridge",
    config: { mode: "bridge", policy: { default: "allow" }, nat_traversal: { enabled: false }, bridge: { relay: { listen_port: relayPort, max_sessions: 1, session_ttl: "30s" } } },
  });
  await bridge.agent!.waitForLine(/"msg":"relay started"/, 30_000);
  relayAddress = `${topo.node("bridge").ip}:${relayPort}`;
  await cp.client.setRelayBridge(nodeId(bridge), relayAddress);
  const s1 = await addNatSite(topo, { router: "r1", index: 1, mapping: "symmetric" });
  const s2 = await addNatSite(topo, { router: "r2", index: 2, mapping: "symmetric" });
  a = await joinBehindNat("syma", s1.ns);
  b = await joinBehindNat("symb", s2.ns);
}, 180_000);

describe("bridge relay", () => {
  it("pairs two symmetric-NAT nodes through the bridge: wg names the relay, they ping over the mesh", async () => {
    await expect.poll(async () => (await cp.client.relay()).sessions.length, { timeout: 60_000, interval: 1000 }).toBe(1);
    const s = (await cp.client.relay()).sessions[0]!;
    sessionId = s.session_id;
    expect([s.peer_a_id, s.peer_b_id].sort()).toEqual([nodeId(a), nodeId(b)].sort());
    await bridge.agent!.waitForLine(new RegExp(`"session_id":"${sessionId}".*"msg":"relay session added"|"msg":"relay session added".*"session_id":"${sessionId}"`), 30_000);
    await expect.poll(() => peerEndpoint(a, b), { timeout: 30_000, interval: 1000 }).toBe(relayAddress);
    await expect.poll(() => peerEndpoint(b, a), { timeout: 30_000, interval: 1000 }).toBe(relayAddress);
    await expect.poll(() => pingOk(a, b), { timeout: 45_000, interval: 1000 }).toBe(true);
    expect(await pingOk(b, a)).toBe(true);
    // Each side was learned at the port its symmetric NAT picked for the relay, not the STUN one.
    const learned = linesWith(bridge.agent!.output(), "relay learned a side's address", { session_id: sessionId });
    expect(learned.map((l) => l.peer_id).sort()).toEqual([nodeId(a), nodeId(b)].sort());
    // The bridge tells the control plane: heartbeat `bridge` block and `bridge` capabilities.
    const heartbeats = async () => (await cp.client.requests({ path: `/v1/nodes/${nodeId(bridge)}/heartbeat`, method: "POST" })).map((r) => (r.body as { bridge?: unknown }).bridge);
    await expect.poll(async () => (await heartbeats()).at(-1), { timeout: 20_000, interval: 1000 }).toMatchObject({ enabled: true, relay_enabled: true, active_relay_sessions: 1 });
    const caps = async () => ((await cp.client.getNode(nodeId(bridge))).capabilities as { bridge?: unknown } | null)?.bridge;
    await expect.poll(caps, { timeout: 30_000, interval: 1000 }).toMatchObject({ enabled: "true", relay: "true", relay_listen_port: String(relayPort) });
  });

  it("the bridge sees only WireGuard ciphertext: the ping pattern appears on the mesh interface, never on the bridge's wire", async () => {
    const dir = makeTempDir("relay-pcap", { mode: 0o755 });
    const onBridge = join(dir, "bridge.pcap");
    const onMesh = join(dir, "mesh.pcap");
    const capBridge = spawnInNamespace({ ns: bridge.ns, name: "tcpdump-bridge", argv: ["tcpdump", "-n", "-U", "-Z", "root", "-i", "eth0", "-w", onBridge, "udp", "port", String(relayPort)] });
    const capMesh = spawnInNamespace({ ns: a.ns, name: "tcpdump-mesh", argv: ["tcpdump", "-n", "-U", "-Z", "root", "-i", a.iface, "-w", onMesh, "icmp"] });
    await capBridge.waitForLine(/listening on/, 10_000);
    await capMesh.waitForLine(/listening on/, 10_000);
    // "listening on" comes just before the capture runs; give it a moment under load.
    await new Promise((r) => setTimeout(r, 500));
    const p = await ping(a.ns, meshIp(b), { count: 5, timeoutMs: 8000 });
    // ping -p fills the payload with the pattern; the harness's ping has no -p, so run it here.
    const patterned = spawnInNamespace({ ns: a.ns, name: "ping-pattern", argv: ["ping", "-n", "-c", "5", "-i", "0.2", "-s", "256", "-p", pattern, meshIp(b)] });
    const pe = await patterned.waitForExit(15_000);
    capBridge.signal("SIGINT");
    capMesh.signal("SIGINT");
    await capBridge.waitForExit(5000);
    await capMesh.waitForExit(5000);
    expect(p.ok).toBe(true);
    expect(pe.exitCode).toBe(0);
    const needle = Buffer.from(pattern, "hex");
    // Positive control: the plaintext is there before WireGuard encrypts it.
    expect(readFileSync(onMesh).includes(needle)).toBe(true);
    const raw = readFileSync(onBridge);
    expect(raw.includes(needle)).toBe(false);
    const payloads = udpPayloads(raw);
    // The patterned ping alone: 5 requests and 5 replies, each into and out of the bridge.
    expect(payloads.length).toBeGreaterThanOrEqual(20);
    // WireGuard messages: type 1-4 then three reserved zero bytes; ping data rides in type 4.
    for (const d of payloads) {
      expect(d[0]! >= 1 && d[0]! <= 4 && d[1] === 0 && d[2] === 0 && d[3] === 0).toBe(true);
    }
    expect(payloads.filter((d) => d[0] === 4).length).toBeGreaterThanOrEqual(20);
  });

  it("a third party sending from a side's IP at another port does not take the confirmed session over", async () => {
    const r1 = topo.node("r1");
    // From the router itself: the same public IP as node syma, a port of its own.
    const script = `
      const s = require("node:dgram").createSocket("udp4");
      let got = 0, sent = 0;
      s.on("message", () => got++);
      s.bind(0, ${JSON.stringify(r1.ip)}, () => {
        const junk = Buffer.alloc(148, 7); junk[0] = 4; junk[1] = junk[2] = junk[3] = 0;
        const t = setInterval(() => { s.send(junk, ${relayPort}, ${JSON.stringify(topo.node("bridge").ip)}); sent++; }, 50);
        setTimeout(() => { clearInterval(t); console.log(JSON.stringify({ sent, got, port: s.address().port })); s.close(); }, 6000);
      });`;
    const learnedBefore = linesWith(bridge.agent!.output(), "relay learned a side's address").length;
    const pinger = continuousPing(b, meshIp(a));
    const spoofer = spawnInNamespace({ ns: r1.ns, name: "spoofer", argv: [process.execPath, "-e", script] });
    const exit = await spoofer.waitForExit(15_000);
    const counts = await pinger.stop();
    expect(exit.exitCode).toBe(0);
    const r = JSON.parse(/\{.*\}/.exec(spoofer.output())![0]) as { sent: number; got: number; port: number };
    expect(r.sent).toBeGreaterThan(50);
    // Nothing of symb's traffic went to the spoofer, and symb kept reaching syma.
    expect(r.got).toBe(0);
    expect(counts.sent).toBeGreaterThan(10);
    expect(counts.received).toBeGreaterThanOrEqual(counts.sent - 2);
    // The router's masquerade picks the spoofer's outside port, so no port is compared: nothing was learned at all.
    expect(linesWith(bridge.agent!.output(), "relay learned a side's address").length).toBe(learnedBefore);
    expect(await peerEndpoint(b, a)).toBe(relayAddress);
  });

  it("a session beyond max_sessions is refused with the reason, and the running one is untouched", async () => {
    await cp.client.pushEvent(nodeId(bridge), {
      event_type: "relay_session_assigned",
      payload: {
        session_id: "rs_over_limit",
        peer_a_id: "n_000000000001",
        peer_b_id: "n_000000000002",
        peer_a_endpoint: "192.0.2.50:40000",
        peer_b_endpoint: "192.0.2.51:40000",
        expires_at: new Date(Date.now() + 600_000).toISOString(),
      },
    });
    await bridge.agent!.waitForLine(/"msg":"relay session rejected"/, 15_000);
    const [rej] = linesWith(bridge.agent!.output(), "relay session rejected", { session_id: "rs_over_limit" });
    expect(rej?.reason).toBe("max_sessions (1) reached");
    expect(await pingOk(a, b)).toBe(true);
  });

  it("revoking the session stops the traffic", async () => {
    await cp.client.revokeRelay(sessionId);
    await bridge.agent!.waitForLine(/"msg":"relay session revoked"/, 15_000);
    await expect.poll(() => pingOk(a, b), { timeout: 30_000, interval: 1000 }).toBe(false);
    // And it stays stopped: the symmetric NATs let nothing through directly.
    const later = await ping(a.ns, meshIp(b), { count: 5, timeoutMs: 5000 });
    expect(later.received).toBe(0);
    expect((await cp.client.relay()).sessions).toEqual([]);
  });

  it("bad input: a relay port equal to the mesh port is a config error naming the key", async () => {
    const n = createNode({
      name: "badrelay",
      ns: bridge.ns,
      api,
      caFile: cp.caFile,
      users,
      config: { mode: "bridge", mesh: { listen_port: 51830 }, bridge: { relay: { listen_port: 51830 } } },
    });
    const r = await n.plexd(["up"]);
    expect(r.exitCode).toBe(2);
    expect(r.output).toContain("bridge.relay.listen_port");
    expect(r.output).toContain("must differ from mesh.listen_port (51830)");
  });
});
