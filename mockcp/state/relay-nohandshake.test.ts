import { afterEach, describe, expect, it } from "vitest";
import { cleanup, registerNode as register, startCp, type TestNode as Node } from "../../test/support/mockcp-testkit.js";
import type { MockcpClient } from "../control/client.js";
import { HandshakeWatch } from "./relay-handshakes.js";

// The "no handshake follows" relay rule, through mockcp's real HTTP API with a fake clock.

afterEach(cleanup);

const t0 = Date.parse("2026-01-01T00:00:00Z");
let t = t0;
const at = (seconds: number) => {
  t = t0 + seconds * 1000;
};

async function start(): Promise<MockcpClient> {
  t = t0;
  return (await startCp({ now: () => t })).client;
}

const putEndpoint = async (c: MockcpClient, n: Node, ep: string, extra: Record<string, unknown> = {}) => {
  const r = await c.request("PUT", `/v1/nodes/${n.node_id}/endpoint`, { token: n.identity_token, body: { public_endpoint: ep, nat_type: "full_cone", relay_fallback: true, ...extra } });
  expect(r.status).toBe(200);
};

/** One metrics upload from `from`: a tunnel_health point per peer (plus an unrelated group). */
async function health(c: MockcpClient, from: Node, peers: [Node, boolean][]): Promise<void> {
  const timestamp = new Date(t).toISOString();
  const points = peers.map(([p, ok]) => ({
    timestamp,
    group: "tunnel_health",
    peer_id: p.node_id,
    data: { peer_id: p.node_id, endpoint: "", last_handshake_time: ok ? timestamp : null, handshake_age_seconds: ok ? 0 : null, rx_bytes: 0, tx_bytes: 0, handshake_succeeded: ok, packet_loss_percent: null },
  }));
  const r = await c.request("POST", `/v1/nodes/${from.node_id}/metrics`, { token: from.identity_token, body: [{ timestamp, group: "node_resources", data: {} }, ...points] });
  expect(r.status).toBe(202);
}

const sessions = async (c: MockcpClient) => (await c.relay()).sessions;
const pairsOf = async (c: MockcpClient) => (await sessions(c)).map((s) => [s.peer_a_id, s.peer_b_id].sort().join("+"));
const pair = (a: Node, b: Node) => [a.node_id, b.node_id].sort().join("+");

async function meshWithBridge(c: MockcpClient, names: string[]): Promise<{ bridge: Node; nodes: Node[] }> {
  const bridge = await register(c, "bridge");
  await c.setRelayBridge(bridge.node_id, "192.0.2.9:51821");
  const nodes: Node[] = [];
  for (const [i, name] of names.entries()) {
    const n = await register(c, name);
    await putEndpoint(c, n, `192.0.2.${20 + i}:51820`);
    nodes.push(n);
  }
  return { bridge, nodes };
}

describe("relay when no handshake follows", () => {
  it("pairs two non-symmetric nodes once the grace period passes without a handshake, like a symmetric pair", async () => {
    const c = await start();
    expect((await c.relay()).no_handshake_grace_seconds).toBe(60);
    const {
      bridge,
      nodes: [a, b],
    } = await meshWithBridge(c, ["a", "b"]);
    at(30);
    await health(c, a!, [[b!, false]]);
    await health(c, b!, [[a!, false]]);
    expect(await sessions(c)).toEqual([]);
    at(59.9);
    await health(c, a!, [[b!, false]]);
    expect(await sessions(c)).toEqual([]);
    at(60);
    await health(c, a!, [[b!, false]]);
    const [s] = await sessions(c);
    expect(s).toMatchObject({ peer_a_id: a!.node_id, peer_b_id: b!.node_id, peer_a_endpoint: "192.0.2.20:51820", peer_b_endpoint: "192.0.2.21:51820", bridge_id: bridge.node_id, relay_address: "192.0.2.9:51821", reason: "no_handshake" });
    expect((await c.events(bridge.node_id)).find((e) => e.event_type === "relay_session_assigned")?.payload).toMatchObject({ session_id: s!.session_id });
    expect((await c.events(a!.node_id)).filter((e) => e.event_type === "peer_endpoint_changed").at(-1)?.payload).toEqual({ peer_id: b!.node_id, endpoint: "192.0.2.9:51821" });
    expect((await c.events(b!.node_id)).filter((e) => e.event_type === "peer_endpoint_changed").at(-1)?.payload).toEqual({ peer_id: a!.node_id, endpoint: "192.0.2.9:51821" });
    // Reports over the relay (with a handshake now) leave the session alone.
    at(90);
    await health(c, a!, [[b!, true]]);
    expect((await sessions(c)).map((x) => x.session_id)).toEqual([s!.session_id]);
  });

  it("never pairs nodes that have a handshake, whichever side reports it", async () => {
    const c = await start();
    const {
      nodes: [a, b, d, e],
    } = await meshWithBridge(c, ["a", "b", "d", "e"]);
    at(120);
    // a–b: only b sees the handshake; d–e: only d does. The other side's "no" does not count.
    await health(c, b!, [[a!, true]]);
    await health(c, a!, [[b!, false]]);
    await health(c, d!, [[e!, true]]);
    await health(c, e!, [[d!, false]]);
    at(300);
    await health(c, a!, [[b!, false]]);
    await health(c, e!, [[d!, false]]);
    expect(await sessions(c)).toEqual([]);
    // Once both sides say the handshake is gone, the grace counts from the last one seen (120 s).
    at(301);
    await health(c, b!, [[a!, false]]);
    expect(await pairsOf(c)).toEqual([pair(a!, b!)]);
    at(400);
    await health(c, e!, [[d!, false]]);
    expect(await pairsOf(c)).toEqual([pair(a!, b!)]);
  });

  it("counts the grace from when both nodes were online with endpoints", async () => {
    const c = await start();
    const {
      nodes: [a],
    } = await meshWithBridge(c, ["a"]);
    const late = await register(c, "late");
    at(50);
    await putEndpoint(c, late, "192.0.2.40:51820");
    at(100);
    await health(c, a!, [[late, false]]);
    expect(await sessions(c)).toEqual([]);
    at(110);
    await health(c, a!, [[late, false]]);
    expect(await pairsOf(c)).toEqual([pair(a!, late)]);
  });

  it("keeps a pair revoked by hand unpaired, and never relays a node that asked for fallback none", async () => {
    const c = await start();
    const {
      nodes: [a, b, x],
    } = await meshWithBridge(c, ["a", "b", "x"]);
    await putEndpoint(c, x!, "192.0.2.22:51820", { relay_fallback: false });
    at(61);
    await health(c, a!, [
      [b!, false],
      [x!, false],
    ]);
    const [s] = await sessions(c);
    expect(await pairsOf(c)).toEqual([pair(a!, b!)]);
    await c.revokeRelay(s!.session_id);
    at(200);
    await health(c, a!, [
      [b!, false],
      [x!, false],
    ]);
    await health(c, b!, [[a!, false]]);
    expect(await sessions(c)).toEqual([]);
    // By hand it can still be paired again.
    await c.assignRelay({ peer_a: a!.node_id, peer_b: b!.node_id });
    expect(await pairsOf(c)).toEqual([pair(a!, b!)]);
  });

  it("waits for a relay bridge and for auto, and takes its grace from the control API", async () => {
    const c = await start();
    const a = await register(c, "a");
    const b = await register(c, "b");
    await putEndpoint(c, a, "192.0.2.20:51820");
    await putEndpoint(c, b, "192.0.2.21:51820");
    expect(await c.setRelaySettings({ no_handshake_grace_seconds: 5, auto: false })).toMatchObject({ no_handshake_grace_seconds: 5, auto: false, assigned: [] });
    at(5);
    await health(c, a, [[b, false]]);
    expect(await sessions(c)).toEqual([]);
    expect((await c.setRelaySettings({ auto: true })).assigned).toEqual([]);
    // Due, but no bridge yet: naming one assigns at once.
    const bridge = await register(c, "bridge");
    const named = await c.setRelayBridge(bridge.node_id, "192.0.2.9:51821");
    expect(named.assigned.map((s) => [s.peer_a_id, s.peer_b_id].sort().join("+"))).toEqual([pair(a, b)]);
    expect(await c.setRelaySettings({ no_handshake_grace_seconds: -1 }).catch((e: unknown) => String(e))).toMatch(/no_handshake_grace_seconds/);
  });
});

describe("HandshakeWatch", () => {
  it("wants evidence: no report, or a node not online, is never due", () => {
    const w = new HandshakeWatch();
    w.graceMs = 10;
    w.online("a", true, 0);
    w.online("b", true, 0);
    expect(w.due("a", "b")).toBe(false);
    w.report("a", "b", false, 10);
    expect(w.due("a", "b")).toBe(true);
    expect(w.due("b", "a")).toBe(true);
    // b went offline: its clock stops, and starts again when it is back.
    w.online("b", false, 11);
    expect(w.due("a", "b")).toBe(false);
    w.online("b", true, 12);
    w.report("a", "b", false, 21);
    expect(w.due("a", "b")).toBe(false);
    w.report("a", "b", false, 22);
    expect(w.due("a", "b")).toBe(true);
    // An older point arriving late does not replace the newer one.
    w.report("b", "a", true, 30);
    w.report("b", "a", false, 5);
    expect(w.due("a", "b")).toBe(false);
    expect(w.pairs()).toEqual([["a", "b"]]);
    w.forget("b");
    expect(w.pairs()).toEqual([]);
  });
});
